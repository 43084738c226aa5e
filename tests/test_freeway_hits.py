"""The hit-prediction diagnostic of Freeway runs (``scripts/freeway_hits.py``)."""

import gymnasium as gym
import numpy as np
import pytest
from conftest import tiny_model
from minatar.environments import freeway
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_dreamer.benchmark.freeway_hits import COLUMNS, HitPredictions, freeway_game, hit, play, summary


class CountingFreeway(freeway.Env):
    """MinAtar's Freeway that counts the times its steps put the chicken back in the bottom row from a lane."""

    returns_from_lanes = 0
    stepping = False

    @property
    def pos(self) -> int:
        return self.__dict__["pos"]

    @pos.setter
    def pos(self, row: int) -> None:
        if self.stepping and row == 9 and self.pos in range(1, 9):
            self.returns_from_lanes += 1
        self.__dict__["pos"] = row

    def act(self, action: int) -> tuple[int, bool]:
        self.stepping = True
        try:
            return super().act(action)
        finally:
            self.stepping = False


def freeway_env(env_id: str = "Freeway-MinAtar") -> DummyVecEnv:
    """A one-env VecEnv of ``env_id``, its episodes cut at 500 steps (Freeway's last 2,500)."""
    env = DummyVecEnv([lambda: Monitor(gym.make(env_id, max_episode_steps=500))])
    env.seed(5)
    return env


def test_hit_plays_the_step_out_on_a_copy():
    game = freeway.Env()
    # One car, in lane 4 left of the chicken's column, that moves right this step
    game.cars, game.pos, game.move_timer = [[3, 4, 0, 1]], 5, 0
    assert hit(game, "u") is True  # the chicken steps into lane 4, the car drives into it
    assert hit(game, "n") is False and hit(game, "d") is False
    assert (game.cars, game.pos, game.move_timer) == ([[3, 4, 0, 1]], 5, 0)
    game.move_timer = 2  # the chicken cannot move yet: "up" waits in lane 5
    assert hit(game, "u") is False
    game.pos, game.move_timer = 9, 0
    assert hit(game, "n") is None  # waiting in the bottom row
    assert hit(game, "d") is None
    game.cars = [[4, 8, 1, 1]]  # a car in lane 8, in the chicken's column
    assert hit(game, "u") is True
    game.pos = 1
    assert hit(game, "u") is None  # across the road


def test_summary_of_known_predictions():
    predictions = HitPredictions(
        hits=np.array([False, True, False, False, True]),
        prior=np.array([0.1, 0.6, 0.2, 0.7, 0.3]),
        posterior=np.array([0.0, 1.0, 0.0, 0.1, 0.9]),
        up=np.array([True, True, False, True]),
        up_hit=np.array([True, False, True, True]),
        prior_difference=np.array([0.2, 0.0, -0.1, 0.3]),
        actor_safe=np.array([False, True, True, True]),
        episode_returns=np.array([3.0, 5.0]),
    )
    values = summary(predictions)
    assert list(values) == list(COLUMNS)
    assert values["episodes"] == 2 and values["mean return"] == 4.0 and values["hits an episode"] == 1.0
    assert values['"up" share'] == 0.75
    assert values["prior at hits"] == pytest.approx(0.45) and values["prior elsewhere"] == pytest.approx(1.0 / 3)
    # 0.6 and 0.3 are each above 0.1 and 0.2, below 0.7
    assert values["prior AUC"] == pytest.approx(4 / 6)
    assert values["posterior AUC"] == 1.0
    assert values["decisive steps an episode"] == 2.0 and values['"up" hit there'] == 0.75
    # Two right, one tie, one wrong
    assert values["prior right there"] == pytest.approx(2.5 / 4)
    assert values["actor safe there"] == 0.75


def test_play_finds_every_hit_the_game_makes():
    """The hits read from the frames are the game's returns of the chicken from a lane, crossings apart."""
    model = tiny_model("Freeway-MinAtar").learn(60)
    env = freeway_env()
    game = freeway_game(env).env
    game.__class__ = CountingFreeway
    # Up or wait, never down (a step down from the lowest lane is no hit and looks like one)
    to_env = model.policy.to_env
    model.policy.to_env = lambda actions: np.minimum(to_env(actions), 1)
    predictions = play(model, env, episodes=2)
    monitor = env.envs[0]
    assert len(predictions.up) == sum(monitor.get_episode_lengths())
    assert predictions.episode_returns.tolist() == monitor.get_episode_rewards()
    assert 0 < predictions.hits.sum() == game.returns_from_lanes
    assert len(predictions.prior) == len(predictions.posterior) == len(predictions.hits) > predictions.hits.sum()
    for probabilities in (predictions.prior, predictions.posterior):
        assert ((probabilities >= 0) & (probabilities <= 1)).all()
    decisive = len(predictions.prior_difference)
    assert 0 < decisive == len(predictions.up_hit) == len(predictions.actor_safe) < len(predictions.hits)
    assert (np.abs(predictions.prior_difference) <= 1).all() and len(set(predictions.prior_difference)) > 1


def test_play_reads_freeway_only():
    model = tiny_model()
    with pytest.raises(ValueError, match="one env of MinAtar's Freeway, got 1 env\\(s\\) of breakout"):
        play(model, freeway_env("Breakout-MinAtar"), episodes=1)
    # The POMDP id keeps the chicken's channel
    assert freeway_game(freeway_env("FreewayPOMDP-MinAtar")).env_name == "freeway"
