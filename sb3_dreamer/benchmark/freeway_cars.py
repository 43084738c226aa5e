"""
Whether a Freeway run's world model knows when each car moves. MinAtar's Freeway moves a car by one cell every
``speed + 1`` steps, its speed (1-5) drawn anew at each crossing; the full observation shows each car's speed (its
trail's channel) and the partially observed one does not, and neither shows how long a car has waited since it last
moved. A prior that foresees a hit must so count each car's steps, and a prior that does not knows where a car will be
only up to that count: the cars' hits are the moves it must foresee where the chicken is.

The run's final model plays episodes as for its hit predictions (``scripts/freeway_hits.py``: its sampled policy, on
the zoo's test env seeded as the final score's; ``--deterministic``: the modes). At every step (but the first, and each
episode's last, after which the env has reset), each of the eight cars either moves one cell in its direction or
stays, and the decoder's probabilities of
the car's channel in the cell it moves to and in the cell it leaves, from the prior (what an imagined trajectory
sees) and from the posterior (after the frame), tell which of the two the model predicts: it is right where the
cell the car is in after the step is the more likely one (ties count half).

Whether the count is there to be read, by the prior or by anything else, two linear probes tell (logistic regressions
per lane, fit on the first half of the steps read and ranked on the second, :func:`~sb3_dreamer.benchmark.probes.
linear_probe_auc`): one of the recurrent state that the prior reads (the sequence model's step from the acting state
and the action, before the frame), one of what the frames' history tells, the steps the car has still to wait: its
speed less the steps since it last moved (counted from the first step read, at most 7), one-hot. The history's probe
is near 1 (the game moves a car after ``speed`` steps of waiting); a recurrent state that counts has a probe near the
history's, one that does not a probe near 0.5.

Per run, a row of a markdown table: episodes, car steps an episode (eight a step), the share of them where the car
moves, the share where the prior is right where the car moves, where it stays, and overall, the posterior's, the
AUC of the prior's lead of the cell moved to over the cell left (the probability that a moving car's exceeds a
staying one's, ties counted half: 0.5 for a prior that does not tell them apart), and the two probes' AUCs (means over
the lanes). A prior that knows the speeds but not the waits predicts the likelier outcome, staying, at every step (a
car waits 1-5 steps for each move): right where cars stay, wrong where they move, an AUC of 0.5 or a little above; one
that counts is right at both.

Usage:
  python scripts/freeway_cars.py --root benchmarks/minatar-100k --algos dreamerv3@width2x \\
      --envs Freeway-MinAtar FreewayPOMDP-MinAtar --seeds 0 --episodes 4
"""

import copy
from dataclasses import dataclass

import numpy as np
from minatar.environments import freeway
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.benchmark.freeway_hits import freeway_game
from sb3_dreamer.benchmark.model_play import (
    ModelStep,
    final_model_table,
    play_steps,
    rank_auc,
    share_above_zero,
    table_measure,
)
from sb3_dreamer.benchmark.probes import linear_probe_auc
from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.world_model.rssm import LatentState

#: where Freeway draws the cars (the channel both ids keep), and the width of its road
CAR_CHANNEL, COLUMNS_OF_ROAD = 1, 10
#: the steps since a car last moved that the history's probe tells apart (more count as this), and Freeway's top speed
MAX_WAIT, MAX_SPEED = 7, 5
COLUMNS = (
    "episodes",
    "car steps an episode",
    "share moving",
    "prior right, moving",
    "prior right, staying",
    "prior right",
    "posterior right",
    "prior AUC",
    "state probe AUC",
    "history probe AUC",
)


@dataclass(frozen=True)
class CarPredictions:
    """
    For every car at every step read (car steps,, the cars of a step together): whether it moved, and by how much more
    likely the model makes the cell it moves to than the cell it leaves (the decoder's probabilities of the car channel
    there); what the history tells of it; the recurrent states that the prior read.
    """

    moved: np.ndarray
    #: from the prior state (before the frame)
    prior_lead: np.ndarray
    #: from the posterior state (after it)
    posterior_lead: np.ndarray
    #: return of each episode, (episodes,)
    episode_returns: np.ndarray
    #: the steps read since the car last moved (at most :data:`MAX_WAIT`), and its speed (1-5)
    waited: np.ndarray
    speeds: np.ndarray
    #: the recurrent state of the prior at each step read, (steps, deter_size)
    states: np.ndarray


def car_moves(before: freeway.Env, after: freeway.Env) -> list[tuple[int, int, int, bool]]:
    """
    Each car's step from the game state ``before`` to ``after`` (one step later): its lane's row, the column it was
    in, the column it moves to (one cell in its direction, around the road's ends) and whether it moved there.
    """
    moves = []
    for (column, row, _, speed), (column_after, row_after, _, _) in zip(before.cars, after.cars, strict=True):
        assert row == row_after, "Freeway's cars keep their lanes"
        target = (column + (1 if speed > 0 else -1)) % COLUMNS_OF_ROAD
        if column_after not in (column, target):
            raise ValueError(f"a car in row {row} went from column {column} to {column_after}: not one step apart")
        moves.append((row, column, target, column_after == target))
    return moves


def play(model: DreamerAlgorithm, env: VecEnv, episodes: int, deterministic: bool = False) -> CarPredictions:
    """``episodes`` episodes of ``model`` on a one-env Freeway ``env``, with the model's predictions of every car's step."""
    minatar = freeway_game(env)
    world_model = model.policy.world_model
    moved: list[bool] = []
    prior_lead: list[float] = []
    posterior_lead: list[float] = []
    speeds: list[int] = []
    waited: list[np.ndarray] = []
    states: list[np.ndarray] = []
    waits = np.zeros(len(minatar.env.cars), dtype=int)
    game: freeway.Env | None = None

    def car_cells(state: LatentState) -> np.ndarray:
        """The decoder's probabilities of the car channel, (10, 10)."""
        return world_model.decode(state)[0, CAR_CHANNEL].float().numpy()

    def record(step: ModelStep) -> None:
        nonlocal game, waits
        before, game = game, copy.deepcopy(minatar.env)  # the game before the next step
        if before is None or step.done:
            return
        prior, posterior = car_cells(step.prior), car_cells(step.posterior)
        moves = car_moves(before, minatar.env)
        for row, column, target, car_moved in moves:
            moved.append(car_moved)
            prior_lead.append(float(prior[row, target] - prior[row, column]))
            posterior_lead.append(float(posterior[row, target] - posterior[row, column]))
        speeds.extend(abs(car[3]) for car in before.cars)
        waited.append(waits)
        states.append(step.prior.deter[0].float().numpy())
        waits = np.where([car_moved for *_, car_moved in moves], 0, np.minimum(waits + 1, MAX_WAIT))

    episode_returns = play_steps(model, env, episodes, record, deterministic)
    return CarPredictions(
        np.array(moved),
        np.array(prior_lead),
        np.array(posterior_lead),
        episode_returns,
        np.concatenate(waited),
        np.array(speeds),
        np.array(states),
    )


def right(moved: np.ndarray, lead: np.ndarray) -> float:
    """
    The share of car steps where the lead of the cell moved to (over the cell left) points the way the car went: above
    0 where it moved, below where it stayed, ties counted half; NaN where there are none.
    """
    return share_above_zero(np.where(moved, lead, -lead))


def probe_aucs(predictions: CarPredictions) -> tuple[float, float]:
    """
    The linear probes' held-out AUCs of each car's moves, from the recurrent states and from the history (the steps
    the car has still to wait: its speed less the steps since it last moved, -1 for any fewer), means over the cars.
    """
    steps = len(predictions.states)
    moved, waited, speeds = (x.reshape(steps, -1).T for x in (predictions.moved, predictions.waited, predictions.speeds))
    state_aucs = [linear_probe_auc(predictions.states, car_moved) for car_moved in moved]
    still_to_wait = np.maximum(speeds - waited, -1)
    history_aucs = [
        linear_probe_auc(np.eye(MAX_SPEED + 2)[car_still_to_wait + 1], car_moved)
        for car_moved, car_still_to_wait in zip(moved, still_to_wait, strict=True)
    ]
    return mean_of_numbers(state_aucs), mean_of_numbers(history_aucs)


def mean_of_numbers(values: list[float]) -> float:
    """The mean of the values that are not NaN; NaN where none is."""
    numbers = [value for value in values if not np.isnan(value)]
    return float(np.mean(numbers)) if numbers else float("nan")


def summary(predictions: CarPredictions) -> dict[str, float]:
    """The table's columns (:data:`COLUMNS`) for one run's predictions."""
    moved, prior = predictions.moved, predictions.prior_lead
    episodes = len(predictions.episode_returns)
    values = (
        episodes,
        moved.size / episodes,
        moved.mean() if moved.size else np.nan,
        right(moved[moved], prior[moved]),
        right(moved[~moved], prior[~moved]),
        right(moved, prior),
        right(moved, predictions.posterior_lead),
        rank_auc(prior[moved], prior[~moved]),
        *probe_aucs(predictions),
    )
    return {column: float(value) for column, value in zip(COLUMNS, values, strict=True)}


def cells(values: dict[str, float]) -> list[str]:
    """A table row's cells: episodes as a whole number, car steps to 1 decimal, shares to 3."""
    counts = {"episodes": ".0f", "car steps an episode": ".1f"}
    return [f"{values[column]:{counts.get(column, '.3f')}}" for column in COLUMNS]


#: the table's cells after the run's (:data:`COLUMNS`) for a model playing episodes on an env
measure = table_measure(play, summary, cells)


def main(argv: list[str] | None = None) -> None:
    """Command line of ``scripts/freeway_cars.py``: print the table of the selected runs."""
    final_model_table(argv, __doc__, "the cars' moves", COLUMNS, measure)
