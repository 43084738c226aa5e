"""
How well a Freeway run's world model sees the cars' hits coming, and whether it tells the action that runs into a car
from the one that waits: a hit sends the chicken back to the bottom row, and an actor that learns in imagination can
learn to wait for a gap only where its prior predicts the hit before the frame shows it, for the action taken.

The run's final model plays episodes as for its reward predictions (``scripts/reward_prediction.py``: its sampled
policy, as in training; ``--deterministic``: the modes, which replays the episodes of its final score; on the zoo's test
env, seeded as the final score's). Before each step a copy of the game is kept, on which the step's outcome under any
action can be played out (Freeway moves its cars without chance; MinAtar's sticky actions, which may repeat the
previous action, are the env's, and the action that the game executed is read from it). The steps read are those whose
move puts the chicken in a lane (rows 1-8, where the cars drive; its move comes before the cars'); a hit is one after
which the cars have sent it back to the bottom row. Each episode's last step is left out (the env's reset clears the
executed action). At each step read, the decoder gives, from the prior (one sequence-model step from the acting state
and the action, the prior's most likely latent: what an imagined trajectory sees) and from the posterior (after the
frame), the probability of the chicken in the bottom row.

A decisive step is one that starts in a lane where waiting and "up" end differently, one of them in a hit. There the
prior is imagined one step under each of the two, and it is right where its probability of the bottom row is higher
after the action that is hit (ties count half); the actor is safe where the action it chose is not hit.

Per run, a row of a markdown table: the episodes' mean return (crossings an episode), hits an episode, the share of
"up" among the actions taken, the prior's mean probability of the bottom row at the hits and at the other steps read,
the AUC of each state's probability (the probability that a hit's exceeds another step's, ties counted half: 0.5 for a
model that does not tell them apart, 1 for one that always does), decisive steps an episode, the share of them where
"up" is the action hit, where the prior is right, and where the actor is safe. For Freeway-MinAtar and
FreewayPOMDP-MinAtar, which both keep the chicken's channel.

Usage:
  python scripts/freeway_hits.py --root benchmarks/minatar-100k --algos dreamerv3@width2x \\
      --envs Freeway-MinAtar FreewayPOMDP-MinAtar --seeds 0 --episodes 4
"""

import copy
from dataclasses import dataclass

import numpy as np
import torch as th
from minatar import Environment
from minatar.environments import freeway
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.benchmark.model_play import (
    ModelStep,
    final_model_table,
    play_steps,
    rank_auc,
    share_above_zero,
    table_measure,
)
from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.world_model.rssm import LatentState

#: where Freeway draws the chicken: channel, column, and the row it starts in and returns to
CHICKEN_CHANNEL, CHICKEN_COLUMN, BOTTOM_ROW = 0, 4, 9
#: the rows of the lanes, where the cars drive
LANES = range(1, 9)
#: Freeway's actions (its minimal action set, in order, by MinAtar's names): wait, up, down
ACTIONS = WAIT, UP, DOWN = ("n", "u", "d")
COLUMNS = (
    "episodes",
    "mean return",
    "hits an episode",
    '"up" share',
    "prior at hits",
    "prior elsewhere",
    "prior AUC",
    "posterior AUC",
    "decisive steps an episode",
    '"up" hit there',
    "prior right there",
    "actor safe there",
)


@dataclass(frozen=True)
class HitPredictions:
    """
    The steps read (steps,): whether a car hit the chicken, and the probability of the chicken in the bottom row that
    the model predicts there; the decisive steps (decisive,): which action is hit and what the model makes of it.
    """

    hits: np.ndarray
    #: from the prior state (before the frame)
    prior: np.ndarray
    #: from the posterior state (after it)
    posterior: np.ndarray
    #: of every step played, whether the action was "up", (steps played,)
    up: np.ndarray
    #: whether "up" (not waiting) is the action hit
    up_hit: np.ndarray
    #: the prior's probability of the bottom row after the action hit, minus after the other
    prior_difference: np.ndarray
    #: whether the action the actor chose is not hit
    actor_safe: np.ndarray
    #: return of each episode, (episodes,)
    episode_returns: np.ndarray


def hit(game: freeway.Env, action: str) -> bool | None:
    """
    Whether the cars send the chicken back to the bottom row when ``game`` (a state of MinAtar's Freeway, not changed)
    takes ``action``; None where the move leaves the chicken outside the lanes (in the bottom row, or across the road).
    """
    row = game.pos
    if game.move_timer == 0 and action in (UP, DOWN):  # the game's rule: one move every freeway.player_speed steps
        row = min(max(row + (1 if action == DOWN else -1), 0), BOTTOM_ROW)
    if row not in LANES:
        return None
    outcome = copy.deepcopy(game)
    outcome.act(outcome.action_map.index(action))
    return outcome.pos == BOTTOM_ROW


def freeway_game(env: VecEnv) -> Environment:
    """
    The MinAtar ``Environment`` of a one-env Freeway VecEnv, whose ``last_action`` is the action it executed last.

    :raises ValueError: for another env, or Freeway actions other than :data:`ACTIONS`
    """
    game = env.get_attr("game")[0] if env.num_envs == 1 else None
    if game != "freeway":
        raise ValueError(f"the hit predictions read one env of MinAtar's Freeway, got {env.num_envs} env(s) of {game}")
    minatar = env.get_attr("minatar")[0]
    names = tuple(minatar.env.action_map[action] for action in minatar.minimal_action_set())
    if names != ACTIONS:
        raise ValueError(f"Freeway's actions are {names}, expected {ACTIONS}")
    return minatar


def play(model: DreamerAlgorithm, env: VecEnv, episodes: int, deterministic: bool = False) -> HitPredictions:
    """``episodes`` episodes of ``model`` on a one-env Freeway ``env``, with the model's predictions of every hit."""
    minatar = freeway_game(env)
    world_model, rssm = model.policy.world_model, model.policy.rssm
    # The one-hot vectors of waiting and "up", (2, n_actions)
    choices = world_model.action_dist.to_vector(th.tensor([ACTIONS.index(WAIT), ACTIONS.index(UP)]))
    hits: list[bool] = []
    prior: list[float] = []
    posterior: list[float] = []
    up: list[bool] = []
    up_hit: list[bool] = []
    prior_difference: list[float] = []
    actor_safe: list[bool] = []
    game: freeway.Env | None = None

    def bottom_row(state: LatentState) -> th.Tensor:
        """The decoder's probability of the chicken in the bottom row, (N,)."""
        return world_model.decode(state)[:, CHICKEN_CHANNEL, BOTTOM_ROW, CHICKEN_COLUMN]

    def record(step: ModelStep) -> None:
        nonlocal game
        before, game = game, copy.deepcopy(minatar.env)  # the game before the next step
        chosen = ACTIONS[int(step.action[0])]
        up.append(chosen == UP)
        if before is None or step.done:
            return
        outcomes = {action: hit(before, action) for action in ACTIONS}
        step_hit = outcomes[minatar.env.action_map[minatar.last_action]]
        if step_hit is not None:
            hits.append(step_hit)
            prior.append(bottom_row(step.prior).item())
            posterior.append(bottom_row(step.posterior).item())
        wait_is_hit, up_is_hit = outcomes[WAIT], outcomes[UP]
        if wait_is_hit is None or up_is_hit is None or wait_is_hit == up_is_hit:
            return  # not a decisive step
        starts = LatentState(*(tensor.expand(2, *tensor.shape[1:]) for tensor in step.acting))
        after_wait, after_up = bottom_row(rssm.imagine_step(starts, choices, deterministic=True)).tolist()
        up_hit.append(up_is_hit)
        prior_difference.append(after_up - after_wait if up_is_hit else after_wait - after_up)
        actor_safe.append(not outcomes[chosen])

    episode_returns = play_steps(model, env, episodes, record, deterministic)
    return HitPredictions(
        np.array(hits),
        np.array(prior),
        np.array(posterior),
        np.array(up),
        np.array(up_hit),
        np.array(prior_difference),
        np.array(actor_safe),
        episode_returns,
    )


def summary(predictions: HitPredictions) -> dict[str, float]:
    """The table's columns (:data:`COLUMNS`) for one run's predictions."""
    hits, prior, posterior = predictions.hits, predictions.prior, predictions.posterior
    episodes, decisive = len(predictions.episode_returns), predictions.prior_difference
    values = (
        episodes,
        predictions.episode_returns.mean(),
        hits.sum() / episodes,
        predictions.up.mean(),
        prior[hits].mean() if hits.any() else np.nan,
        prior[~hits].mean() if (~hits).any() else np.nan,
        rank_auc(prior[hits], prior[~hits]),
        rank_auc(posterior[hits], posterior[~hits]),
        decisive.size / episodes,
        predictions.up_hit.mean() if decisive.size else np.nan,
        share_above_zero(decisive),
        predictions.actor_safe.mean() if decisive.size else np.nan,
    )
    return {column: float(value) for column, value in zip(COLUMNS, values, strict=True)}


def cells(values: dict[str, float]) -> list[str]:
    """A table row's cells: counts to 2 decimals, shares, probabilities and AUCs to 3."""
    counts = {"episodes": ".0f", "mean return": ".2f", "hits an episode": ".2f", "decisive steps an episode": ".1f"}
    return [f"{values[column]:{counts.get(column, '.3f')}}" for column in COLUMNS]


#: the table's cells after the run's (:data:`COLUMNS`) for a model playing episodes on an env
measure = table_measure(play, summary, cells)


def main(argv: list[str] | None = None) -> None:
    """Command line of ``scripts/freeway_hits.py``: print the table of the selected runs."""
    final_model_table(argv, __doc__, "hits", COLUMNS, measure)
