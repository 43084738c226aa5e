"""The reconstruction diagnostic of benchmark runs (``scripts/reconstruction.py``)."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import tiny_model
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_dreamer.benchmark.reconstruction import COLUMNS, ChannelSums, cells, channel_names, play, summary


def one_env(env_id: str) -> DummyVecEnv:
    env = DummyVecEnv([lambda: Monitor(gym.make(env_id))])
    env.seed(3)
    return env


def test_summary_of_known_sums():
    sums = ChannelSums(
        names=("paddle", "ball"),
        frames=4,
        on_pixels=np.array([12.0, 4.0]),
        posterior_on=np.array([12.0, 1.0]),
        posterior_off=np.array([0.4, 2.0]),
        prior_on=np.array([6.0, 0.0]),
        prior_off=np.array([1.6, 0.4]),
        episode_returns=np.array([1.0, 3.0]),
    )
    values = summary(sums)
    assert values["episodes"] == 2
    assert values["on pixels a frame"] == 4.0
    assert values["posterior at on pixels"] == pytest.approx(13 / 16)
    assert values["posterior mass off, a frame"] == pytest.approx(2.4 / 4)
    assert values["prior at on pixels"] == pytest.approx(6 / 16)
    assert values["prior mass off, a frame"] == pytest.approx(0.5)
    assert values[f"{COLUMNS[-1]}: paddle"] == 1.0 and values[f"{COLUMNS[-1]}: ball"] == 0.25
    row = cells(values)
    assert len(row) == len(COLUMNS)
    assert row[:3] == ["2", "4.00", "0.812"] and row[-1] == "paddle 1.00, ball 0.25"


def test_a_channel_without_on_pixels_is_nan():
    sums = ChannelSums(("a", "b"), 2, *(np.array([3.0, 0.0]),) * 5, episode_returns=np.array([0.0]))
    values = summary(sums)
    assert values[f"{COLUMNS[-1]}: a"] == 1.0 and np.isnan(values[f"{COLUMNS[-1]}: b"])


def test_channel_names_of_minatar_and_its_pomdp_ids():
    assert channel_names(one_env("Breakout-MinAtar"), 4) == ("paddle", "ball", "trail", "brick")
    assert channel_names(one_env("BreakoutPOMDP-MinAtar"), 3) == ("paddle", "ball", "brick")
    assert channel_names(one_env("CartPole-v1"), 2) == ("channel 0", "channel 1")
    with pytest.raises(ValueError, match=r"reads 5 image channels, MinAtar's observation has 4 \(3 in the POMDP id\)"):
        channel_names(one_env("Breakout-MinAtar"), 5)


def test_play_sums_every_frame_of_the_episodes():
    """With a decoder that predicts 0.25 everywhere, the sums are the frames' own pixel counts."""
    model = tiny_model().learn(60)
    env = one_env("Breakout-MinAtar")
    model.policy.world_model.decode = lambda state: th.full((state.deter.shape[0], 4, 10, 10), 0.25)
    frames = []
    step = env.step

    def recording_step(actions):
        observations, rewards, dones, infos = step(actions)
        frames.append(infos[0]["terminal_observation"] if dones[0] else observations[0])
        return observations, rewards, dones, infos

    env.step = recording_step
    sums = play(model, env, episodes=2)
    on = np.stack(frames).astype(bool)
    assert sums.frames == len(frames) == sum(env.envs[0].get_episode_lengths())
    np.testing.assert_array_equal(sums.on_pixels, on.sum((0, 2, 3)))
    np.testing.assert_allclose(sums.posterior_on, 0.25 * on.sum((0, 2, 3)))
    np.testing.assert_allclose(sums.prior_off, 0.25 * (~on).sum((0, 2, 3)))
    values = summary(sums)
    assert values["posterior at on pixels"] == values["prior at on pixels"] == 0.25
    assert sums.names == ("paddle", "ball", "trail", "brick")


def test_play_refuses_observations_that_are_not_binary_images():
    model = tiny_model("CartPole-v1", "MlpPolicy")
    with pytest.raises(ValueError, match="binary image observations"):
        play(model, one_env("CartPole-v1"), episodes=1)
