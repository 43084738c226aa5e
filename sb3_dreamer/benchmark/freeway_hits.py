"""
How well a Freeway run's world model sees the cars' hits coming: a hit sends the chicken back to the bottom row, and
an actor that learns in imagination can learn to wait for a gap only where the prior predicts the hit before the frame
shows it.

The run's final model plays episodes as for its reward predictions (``scripts/reward_prediction.py``: its sampled
policy, as in training; ``--deterministic``: the modes, which replays the episodes of its final score; on the zoo's test
env, seeded as the final score's). The steps read are the moves in the lanes (rows 1-8, where the cars drive) that
bring no reward: the steps that start with the chicken in a lane, and those that take it up from the bottom row. A hit
is such a step whose frame shows the chicken in the bottom row. Left out: waits in the bottom row, a step down from the
lowest lane (it looks like a hit), and each episode's first and last steps. The game's executed action (MinAtar's
sticky actions may repeat the previous one) and its move timer tell a step up from the bottom, sent back at once,
from a wait there. At each step the decoder gives, from the prior (one sequence-model step from the acting state and
the action, the prior's most likely latent: what an imagined trajectory sees) and from the posterior (after the
frame), the probability of the chicken in the bottom row.

Per run, a row of a markdown table: the episodes' mean return (crossings an episode), hits an episode, the share of
"up" among the actions taken, the prior's mean probability of the bottom row at the hits and at the other steps read,
and the AUC of each state's probability (the probability that a hit's exceeds another step's, ties counted half: 0.5
for a model that does not tell them apart, 1 for one that always does). For Freeway-MinAtar and
FreewayPOMDP-MinAtar, which both keep the chicken's channel.

Usage:
  python scripts/freeway_hits.py --root benchmarks/minatar-100k --algos dreamerv3@width2x \\
      --envs Freeway-MinAtar FreewayPOMDP-MinAtar --seeds 0 --episodes 4
"""

from dataclasses import dataclass

import numpy as np
from minatar import Environment
from minatar.environments import freeway
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.benchmark.model_play import ModelStep, final_model_table, play_steps, rank_auc
from sb3_dreamer.common.base_class import DreamerAlgorithm

#: where Freeway draws the chicken: channel, column, and the row it starts in and returns to
CHICKEN_CHANNEL, CHICKEN_COLUMN, BOTTOM_ROW = 0, 4, 9
#: the rows of the lanes, where the cars drive
LANES = range(1, 9)
#: Freeway's actions (its minimal action set, in order, by MinAtar's names): wait, up, down
ACTIONS, UP, DOWN = ("n", "u", "d"), "u", "d"
#: the steps between two moves of the chicken
PLAYER_SPEED = freeway.player_speed
COLUMNS = (
    "episodes",
    "mean return",
    "hits an episode",
    '"up" share',
    "prior at hits",
    "prior elsewhere",
    "prior AUC",
    "posterior AUC",
)


@dataclass(frozen=True)
class HitPredictions:
    """
    The played episodes' lane steps (steps,): whether a car hit the chicken, and the probability of the chicken in the
    bottom row that the model predicts there.
    """

    hits: np.ndarray
    #: from the prior state (before the frame)
    prior: np.ndarray
    #: from the posterior state (after it)
    posterior: np.ndarray
    #: of every step played, whether the action was "up", (steps played,)
    up: np.ndarray
    #: return of each episode, (episodes,)
    episode_returns: np.ndarray


def chicken_row(frame: np.ndarray) -> int | None:
    """The chicken's row in a Freeway frame (channels, 10, 10), None where the frame does not show it."""
    rows = np.flatnonzero(frame[CHICKEN_CHANNEL, :, CHICKEN_COLUMN])
    return int(rows[0]) if rows.size else None


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
    world_model = model.policy.world_model
    hits: list[bool] = []
    prior: list[float] = []
    posterior: list[float] = []
    up: list[bool] = []
    episode_start = True

    def is_hit(step: ModelStep) -> bool | None:
        """Whether a car hit the chicken in ``step``, None for a step that does not start a move in a lane."""
        before, after = chicken_row(step.observation), chicken_row(step.arrived)
        if step.reward != 0 or before is None or after is None:
            return None
        # The game restarts its timer at each move and counts it down every step, from PLAYER_SPEED at an episode's start
        moved = minatar.env.move_timer == PLAYER_SPEED - 1
        executed = minatar.env.action_map[minatar.last_action]
        if before == BOTTOM_ROW:
            # A step up into the lowest lane, sent back at once, or a wait at the bottom (left out)
            return after == BOTTOM_ROW if executed == UP and moved else None
        if before == LANES[-1] and executed == DOWN and moved:
            return None  # a step down from the lowest lane, which looks like a hit
        return after == BOTTOM_ROW

    def record(step: ModelStep) -> None:
        nonlocal episode_start
        up.append(int(step.action[0]) == ACTIONS.index(UP))
        # An episode's first step (its timer counts down from its start) and last (the env's reset cleared the game)
        hit = None if episode_start or step.done else is_hit(step)
        episode_start = step.done
        if hit is None:
            return
        hits.append(hit)
        for column, state in ((prior, step.prior), (posterior, step.posterior)):
            column.append(world_model.decode(state)[0, CHICKEN_CHANNEL, BOTTOM_ROW, CHICKEN_COLUMN].item())

    episode_returns = play_steps(model, env, episodes, record, deterministic)
    return HitPredictions(np.array(hits), np.array(prior), np.array(posterior), np.array(up), episode_returns)


def summary(predictions: HitPredictions) -> dict[str, float]:
    """The table's columns (:data:`COLUMNS`) for one run's predictions."""
    hits, prior, posterior = predictions.hits, predictions.prior, predictions.posterior
    values = (
        len(predictions.episode_returns),
        predictions.episode_returns.mean(),
        hits.sum() / len(predictions.episode_returns),
        predictions.up.mean(),
        prior[hits].mean() if hits.any() else np.nan,
        prior[~hits].mean() if (~hits).any() else np.nan,
        rank_auc(prior[hits], prior[~hits]),
        rank_auc(posterior[hits], posterior[~hits]),
    )
    return {column: float(value) for column, value in zip(COLUMNS, values, strict=True)}


def cells(values: dict[str, float]) -> list[str]:
    """A table row's cells: counts to 2 decimals, shares, probabilities and AUCs to 3."""
    counts = [f"{values['episodes']:.0f}", *(f"{values[column]:.2f}" for column in COLUMNS[1:3])]
    return counts + [f"{values[column]:.3f}" for column in COLUMNS[3:]]


def main(argv: list[str] | None = None) -> None:
    """Command line of ``scripts/freeway_hits.py``: print the table of the selected runs."""
    final_model_table(argv, __doc__, "hits", COLUMNS, lambda *game: cells(summary(play(*game))))
