"""The car-move diagnostic of Freeway runs (``scripts/freeway_cars.py``)."""

import copy

import gymnasium as gym
import numpy as np
import pytest
from conftest import tiny_model
from minatar.environments import freeway
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_dreamer.benchmark.freeway_cars import (
    COLUMNS,
    MAX_WAIT,
    CarPredictions,
    car_moves,
    play,
    probe_aucs,
    right,
    summary,
)
from sb3_dreamer.benchmark.freeway_hits import freeway_game


class MoveLoggingFreeway(freeway.Env):
    """MinAtar's Freeway that logs, at each of its steps, which of its cars changed column."""

    moves: list[list[bool]]

    def act(self, action: int) -> tuple[int, bool]:
        columns = [car[0] for car in self.cars]
        result = super().act(action)
        self.moves.append([car[0] != column for car, column in zip(self.cars, columns, strict=True)])
        return result


def test_car_moves_of_one_step():
    game = freeway.Env()
    # A car in lane 4 that moves right this step, one in lane 2 that waits two more steps, one in lane 6 that moves
    # left around the road's end
    game.cars = [[3, 4, 0, 1], [5, 2, 2, -3], [0, 6, 0, -2]]
    after = copy.deepcopy(game)
    after.act(0)
    assert car_moves(game, after) == [(4, 3, 4, True), (2, 5, 4, False), (6, 0, 9, True)]
    after.cars[0][0] = 6
    with pytest.raises(ValueError, match="from column 3 to 6: not one step apart"):
        car_moves(game, after)


def test_summary_of_known_predictions():
    predictions = CarPredictions(
        moved=np.array([True, False, False, True, False, False]),
        prior_lead=np.array([-0.5, -0.4, -0.2, 0.0, -0.3, 0.1]),
        posterior_lead=np.array([0.9, -0.8, -0.9, 0.7, -0.9, -0.9]),
        episode_returns=np.array([1.0, 2.0]),
        waited=np.array([3, 0, 1, 1, 0, 2]),
        speeds=np.array([3, 1, 3, 1, 3, 1]),
        states=np.zeros((3, 4)),
    )
    values = summary(predictions)
    assert list(values) == list(COLUMNS)
    assert values["episodes"] == 2 and values["car steps an episode"] == 3 and values["share moving"] == pytest.approx(1 / 3)
    assert values["prior right, moving"] == 0.25  # one wrong, one tie
    assert values["prior right, staying"] == 0.75
    assert values["prior right"] == pytest.approx(3.5 / 6) and values["posterior right"] == 1.0
    # The moving cars' leads -0.5 and 0.0 against the staying ones' -0.4, -0.2, -0.3 and 0.1: 3 of 8 pairs above
    assert values["prior AUC"] == pytest.approx(3 / 8)
    # A step to fit the probes on and two to rank: too few for either label in each half
    assert np.isnan(values["state probe AUC"]) and np.isnan(values["history probe AUC"])
    assert np.isnan(right(np.array([], dtype=bool), np.array([])))


def test_play_reads_every_car_step_the_game_makes():
    model = tiny_model("Freeway-MinAtar").learn(60)
    env = DummyVecEnv([lambda: Monitor(gym.make("Freeway-MinAtar", max_episode_steps=150))])
    env.seed(5)
    game = freeway_game(env).env
    game.__class__, game.moves = MoveLoggingFreeway, []
    predictions = play(model, env, episodes=2)
    # The game's steps but the first and each episode's last, eight cars each
    read = [moves for step, moves in enumerate(game.moves) if step > 0 and (step + 1) % 150]
    assert len(game.moves) == 300
    np.testing.assert_array_equal(predictions.moved, np.concatenate(read))
    assert 0 < predictions.moved.mean() < 1
    for lead in (predictions.prior_lead, predictions.posterior_lead):
        assert lead.shape == predictions.moved.shape and (np.abs(lead) <= 1).all() and len(set(lead)) > 1
    # A state a step, the count of the steps since each car moved, restarted at each move
    assert predictions.states.shape == (len(read), model.policy.rssm.deter_size)
    moved, waited = predictions.moved.reshape(len(read), 8), predictions.waited.reshape(len(read), 8)
    np.testing.assert_array_equal(waited[1:][moved[:-1]], 0)
    np.testing.assert_array_equal(waited[1:][~moved[:-1]], np.minimum(waited[:-1][~moved[:-1]] + 1, MAX_WAIT))
    assert set(predictions.speeds) <= {1, 2, 3, 4, 5}


def simulated_cars(steps: int, counting_cars: int, seed: int = 0) -> CarPredictions:
    """
    Two cars moved as Freeway moves them (one cell after ``speed`` steps of waiting), with recurrent states that hold
    the wait of the first ``counting_cars`` of them (one-hot) and noise otherwise.
    """
    rng = np.random.default_rng(seed)
    speeds = np.array([2, 4])
    waits = np.zeros(2, dtype=int)
    moved, waited, states = [], [], []
    for _ in range(steps):
        step_moved = waits == speeds
        moved.append(step_moved)
        waited.append(waits)
        state = rng.normal(size=(2, MAX_WAIT + 1))
        state[:counting_cars] = np.eye(MAX_WAIT + 1)[waits[:counting_cars]]
        states.append(state.ravel())
        waits = np.where(step_moved, 0, np.minimum(waits + 1, MAX_WAIT))
    zeros = np.zeros(2 * steps)
    return CarPredictions(
        np.concatenate(moved), zeros, zeros, np.ones(1), np.concatenate(waited), np.tile(speeds, steps), np.array(states)
    )


def test_probes_read_the_count_where_the_states_hold_it():
    # The history tells each move exactly; states that count one of the two cars tell half of the moves
    state_auc, history_auc = probe_aucs(simulated_cars(400, counting_cars=1))
    assert history_auc > 0.99
    assert 0.65 < state_auc < 0.85
    state_auc, _ = probe_aucs(simulated_cars(400, counting_cars=2))
    assert state_auc > 0.99
    state_auc, _ = probe_aucs(simulated_cars(400, counting_cars=0))
    assert 0.35 < state_auc < 0.65
