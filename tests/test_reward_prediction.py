"""The reward-prediction diagnostic of benchmark runs (``scripts/reward_prediction.py``)."""

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import tiny_model
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_dreamer.benchmark.model_play import rank_auc
from sb3_dreamer.benchmark.reward_prediction import COLUMNS, RewardPredictions, play, summary


def test_rank_auc_counts_pairs_and_half_ties():
    rng = np.random.default_rng(0)
    positives, negatives = rng.integers(0, 4, 7).astype(float), rng.integers(0, 4, 9).astype(float)
    pairs = list(itertools.product(positives, negatives))
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert rank_auc(positives, negatives) == pytest.approx(expected)
    assert rank_auc(np.array([2.0]), np.array([1.0, 0.0])) == 1.0
    assert np.isnan(rank_auc(np.array([]), negatives))


def test_summary_of_known_predictions():
    predictions = RewardPredictions(
        rewards=np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]),
        prior=np.array([0.0, 0.1, 0.5, 0.2, 0.0, 0.0, 0.3]),
        posterior=np.array([0.0, 0.0, 0.9, 0.0, 0.0, 0.0, 0.9]),
        values=np.array([0.5, 1.0, 2.0, 0.5, 0.5, 1.0, 1.0]),
        episode_returns=np.array([1.0, 1.0]),
    )
    values = summary(predictions)
    assert list(values) == list(COLUMNS)
    assert values["episodes"] == 2 and values["mean return"] == 1.0
    assert values["rewarded steps"] == pytest.approx(2 / 7)
    assert values["prior at rewarded steps"] == pytest.approx(0.4)
    # Summed over t - 2 .. t + 2, cut at the ends: 0.0 + 0.1 + 0.5 + 0.2 + 0.0 and 0.0 + 0.0 + 0.3
    assert values["prior, +-2 steps summed"] == pytest.approx((0.8 + 0.3) / 2)
    assert values["prior elsewhere"] == pytest.approx(0.3 / 5)
    assert values["predicted / real reward"] == pytest.approx(1.1 / 2)
    # The rewarded steps' 0.5 and 0.3 are above every other step's prediction
    assert values["prior AUC"] == 1.0
    assert values["posterior AUC"] == 1.0
    # 2.0 above all five others, 1.0 above three and level with two
    assert values["value AUC"] == pytest.approx((5 + 3 + 1) / 10)


def test_summary_refuses_negative_rewards():
    predictions = RewardPredictions(*(np.array([-1.0, 0.0]),) * 4, episode_returns=np.array([-1.0]))
    with pytest.raises(ValueError, match="non-negative rewards, got -1"):
        summary(predictions)


def test_play_records_every_step_of_the_episodes():
    """One record per env step, the terminal ones included, with the rewards and returns the Monitor saw."""
    model = tiny_model().learn(60)
    env = DummyVecEnv([lambda: Monitor(gym.make("Breakout-MinAtar"))])
    env.seed(3)
    # A reward head that predicts 0.25 everywhere: the predictions reach the table as they are
    model.policy.world_model.reward = lambda state: th.full((state.deter.shape[0],), 0.25)
    predictions = play(model, env, episodes=8)
    monitor = env.envs[0]
    assert len(predictions.rewards) == sum(monitor.get_episode_lengths()) == len(predictions.prior)
    assert predictions.episode_returns.tolist() == pytest.approx(monitor.get_episode_rewards())
    assert predictions.rewards.sum() == pytest.approx(sum(monitor.get_episode_rewards()))
    assert (predictions.prior == 0.25).all() and (predictions.posterior == 0.25).all()
    assert len(predictions.values) == len(predictions.rewards) and np.isfinite(predictions.values).all()
    assert predictions.rewards.sum() > 0
    values = summary(predictions)
    assert values["prior AUC"] == values["posterior AUC"] == 0.5
    assert values["predicted / real reward"] == pytest.approx(0.25 * len(predictions.rewards) / predictions.rewards.sum())


def test_prior_is_one_sequence_model_step_from_the_acting_state():
    """The prior's prediction is the reward head on ``imagine_step`` of the state and action that acted, its modes."""
    model = tiny_model().learn(60)
    policy = model.policy
    acting_states = []
    act = policy.act

    def recording_act(*args, **kwargs):
        actions, state = act(*args, **kwargs)
        acting_states.append(state)
        return actions, state

    policy.act = recording_act
    env = DummyVecEnv([lambda: Monitor(gym.make("Breakout-MinAtar"))])
    env.seed(3)
    predictions = play(model, env, episodes=2)
    with th.inference_mode():
        steps = [policy.rssm.imagine_step(state.latent, state.action, deterministic=True) for state in acting_states]
        expected = [policy.world_model.reward(step).item() for step in steps]
    assert len(set(expected)) > 1
    np.testing.assert_array_equal(predictions.prior, expected)
