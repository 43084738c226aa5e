"""
How well a benchmark run's final world model predicts the rewards of its own episodes: where imagination can see the
rewards that its actor learns from, and where the world model knows only how often they come.

The run's final model plays ``--episodes`` episodes (its sampled policy, as in training; ``--deterministic``: the
modes, which replays the episodes of its final score) on the zoo's test env of the run's saved settings, seeded as
the final score's. At each env step it records the reward that arrived with the new observation and the reward head's
prediction of it from two states:

- the prior: one step of the sequence model from the previous state and the action taken, with the prior's most
  likely latent: what an imagined trajectory sees, before the observation;
- the posterior: the state after observing the new frame (the most likely latent): what the model recognises.

It also records the critic's value of the state that acted (the posterior of the frame before the reward arrived),
which DreamerV3's critic also learns from the replayed rewards themselves (``replay_critic_scale``).

Per run, a row of a markdown table: the mean return of the episodes played, the share of steps with a reward, the
prior's mean prediction at those steps (alone, and summed with the two steps either side, for a reward predicted a
step early or late) and at the others, the predicted reward over the real one, summed over all steps, and the AUC of
each state's prediction (the probability that a rewarded step's prediction exceeds an unrewarded one's, ties counted
half: 0.5 for a prediction that does not tell them apart, 1 for one that always does), and the AUC of the critic's
value of the acting state by the same rule. For sparse non-negative rewards, as MinAtar's 0 or 1 a step.

Usage:
  python scripts/reward_prediction.py --root benchmarks/minatar-100k --algos dreamerv3 --envs Asterix-MinAtar \\
      Breakout-MinAtar --seeds 2 --episodes 30
"""

from dataclasses import dataclass

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.benchmark.model_play import ModelStep, final_model_table, play_steps, rank_auc, table_measure
from sb3_dreamer.common.base_class import DreamerAlgorithm

#: steps either side of a rewarded step whose predictions the windowed column adds
WINDOW_STEPS = 2
COLUMNS = (
    "episodes",
    "mean return",
    "rewarded steps",
    "prior at rewarded steps",
    f"prior, +-{WINDOW_STEPS} steps summed",
    "prior elsewhere",
    "predicted / real reward",
    "prior AUC",
    "posterior AUC",
    "value AUC",
)


@dataclass(frozen=True)
class RewardPredictions:
    """The played episodes' steps (steps,): the rewards that arrived, and the reward head's predictions of them."""

    rewards: np.ndarray
    #: from the prior state (before the observation)
    prior: np.ndarray
    #: from the posterior state (after it)
    posterior: np.ndarray
    #: the critic's value of the state that took the action the reward followed
    values: np.ndarray
    #: return of each episode, (episodes,)
    episode_returns: np.ndarray


def play(model: DreamerAlgorithm, env: VecEnv, episodes: int, deterministic: bool = False) -> RewardPredictions:
    """``episodes`` episodes of ``model`` on the one-env ``env``, with the reward head's predictions of every reward."""
    policy, world_model = model.policy, model.policy.world_model
    rewards: list[float] = []
    prior: list[float] = []
    posterior: list[float] = []
    values: list[float] = []

    def record(step: ModelStep) -> None:
        rewards.append(step.reward)
        prior.append(world_model.reward(step.prior).item())
        posterior.append(world_model.reward(step.posterior).item())
        values.append(policy.value_dist.predict(policy.critic(step.acting)).item())

    episode_returns = play_steps(model, env, episodes, record, deterministic)
    return RewardPredictions(np.array(rewards), np.array(prior), np.array(posterior), np.array(values), episode_returns)


def summary(predictions: RewardPredictions) -> dict[str, float]:
    """The table's columns (:data:`COLUMNS`) for one run's predictions."""
    rewards, prior, posterior = predictions.rewards, predictions.prior, predictions.posterior
    if (rewards < 0).any():
        raise ValueError(f"the reward-prediction table reads non-negative rewards, got {rewards.min():g}")
    rewarded = rewards > 0
    windowed = np.convolve(prior, np.ones(2 * WINDOW_STEPS + 1), mode="same")
    at_rewards = (prior[rewarded].mean(), windowed[rewarded].mean()) if rewarded.any() else (np.nan, np.nan)
    values = (
        len(predictions.episode_returns),
        predictions.episode_returns.mean(),
        rewarded.mean(),
        *at_rewards,
        prior[~rewarded].mean() if (~rewarded).any() else np.nan,
        prior.sum() / rewards.sum() if rewards.sum() > 0 else np.nan,
        rank_auc(prior[rewarded], prior[~rewarded]),
        rank_auc(posterior[rewarded], posterior[~rewarded]),
        rank_auc(predictions.values[rewarded], predictions.values[~rewarded]),
    )
    return {column: float(value) for column, value in zip(COLUMNS, values, strict=True)}


def cells(values: dict[str, float]) -> list[str]:
    """A table row's cells: shares and AUCs to 3 decimals, predictions to 3 significant digits."""
    counts = [f"{values['episodes']:.0f}", f"{values['mean return']:.2f}"]
    return (
        counts + [f"{values[column]:.3g}" for column in COLUMNS[2:-3]] + [f"{values[column]:.3f}" for column in COLUMNS[-3:]]
    )


#: the table's cells after the run's (:data:`COLUMNS`) for a model playing episodes on an env
measure = table_measure(play, summary, cells)


def main(argv: list[str] | None = None) -> None:
    """Command line of ``scripts/reward_prediction.py``: print the table of the selected runs."""
    final_model_table(argv, __doc__, "rewards", COLUMNS, measure)
