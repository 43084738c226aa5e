"""
The score of a uniformly random policy on each env of a report (``--random-policy``): the floor that a learnt policy's
score is read against and the report's normalised 0, in ``ROOT/random_policy.csv`` (env, episodes, seed, mean_return,
std_return); and the policies without learning that runs are read against (uniform, one constant action), played as a
final score is.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rl_zoo3 import create_test_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_dreamer.benchmark.extras import benchmark_extra
from sb3_dreamer.zoo import apply

with benchmark_extra():
    import pandas as pd

RANDOM_POLICY_CSV = "random_policy.csv"
RANDOM_POLICY_COLUMNS = ["env", "episodes", "seed", "mean_return", "std_return"]


class BlindPolicy(ABC):
    """
    A policy whose actions do not depend on the observations, with SB3's ``predict`` signature, so that
    ``evaluate_policy`` plays it like a model.
    """

    @abstractmethod
    def actions(self, n_envs: int) -> np.ndarray:
        """One action per env, (n_envs, *action_shape)."""

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """:meth:`actions` for each env of the batch ``observation`` (n_envs, ...); the state is passed through."""
        first = next(iter(observation.values())) if isinstance(observation, dict) else observation
        return self.actions(len(first)), state


class UniformPolicy(BlindPolicy):
    """A policy that draws every action uniformly from ``action_space`` (seeded with ``seed``)."""

    def __init__(self, action_space: gym.Space, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def actions(self, n_envs: int) -> np.ndarray:
        return np.stack([self.action_space.sample() for _ in range(n_envs)])


class ConstantPolicy(BlindPolicy):
    """A policy that plays ``action`` at every step (e.g. Freeway's "up")."""

    def __init__(self, action_space: gym.Space, action: int) -> None:
        if not isinstance(action_space, gym.spaces.Discrete) or not action_space.contains(action_space.dtype.type(action)):
            raise ValueError(f"a constant action needs a Discrete action space that holds it: {action} in {action_space}")
        self.action = action

    def actions(self, n_envs: int) -> np.ndarray:
        return np.full(n_envs, self.action)


def policy_returns(env_id: str, episodes: int, seed: int, make_policy: Callable[[gym.Space], BlindPolicy]) -> list[float]:
    """
    The returns of ``episodes`` episodes of ``make_policy(action_space)`` on the registered ``env_id`` as the zoo's
    ``create_test_env`` makes it without hyperparameters (one env in a Monitor, seeded with ``seed``: for the MinAtar
    ids the env of a run's final score, whose seed is the run's + ``FINAL_EVAL_SEED_OFFSET``), played by SB3's
    ``evaluate_policy``.
    """
    apply()  # the MinAtar ids, as the zoo plug-in registers them
    env = create_test_env(env_id, seed=seed, should_render=False, hyperparams={})
    try:
        returns, _ = evaluate_policy(make_policy(env.action_space), env, episodes, return_episode_rewards=True)
    finally:
        env.close()
    assert isinstance(returns, list), "return_episode_rewards=True gives the list of the episodes' returns"
    return returns


def random_policy_score(env_id: str, episodes: int, seed: int) -> dict[str, Any]:
    """:func:`policy_returns` of :class:`UniformPolicy` (its actions seeded with ``seed``): a row of ``random_policy.csv``."""
    returns = policy_returns(env_id, episodes, seed, lambda action_space: UniformPolicy(action_space, seed))
    row = {"env": env_id, "episodes": episodes, "seed": seed}
    return {**row, "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns))}


def read_random_scores(root: Path) -> pd.DataFrame:
    """The rows of ``root/random_policy.csv`` (none where it does not exist), one per env."""
    path = root / RANDOM_POLICY_CSV
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=RANDOM_POLICY_COLUMNS)


def update_random_scores(root: Path, envs: list[str], episodes: int, seed: int) -> pd.DataFrame:
    """
    Score the random policy on each of ``envs`` that ``root/random_policy.csv`` lacks at these ``episodes`` and
    ``seed`` (:func:`random_policy_score`), keep the file's other envs, write it sorted by env (only where something
    was scored) and return it.
    """
    known = read_random_scores(root)
    done = set(known[(known["episodes"] == episodes) & (known["seed"] == seed)]["env"])
    scored = [random_policy_score(env, episodes, seed) for env in dict.fromkeys(envs) if env not in done]
    if not scored:
        return known
    kept = known[~known["env"].isin([row["env"] for row in scored])]
    parts = [frame for frame in (kept, pd.DataFrame(scored, columns=RANDOM_POLICY_COLUMNS)) if not frame.empty]
    table = pd.concat(parts, ignore_index=True)
    table = table.sort_values("env", ignore_index=True)
    root.mkdir(parents=True, exist_ok=True)  # a grid's root before its first run
    table.to_csv(root / RANDOM_POLICY_CSV, index=False)
    return table


def random_policy_section(random_scores: pd.DataFrame) -> str:
    """The report's section on ``random_scores`` (rows of ``random_policy.csv``); empty without any."""
    if random_scores.empty:
        return ""
    lines = [
        "\n## Random policy\n",
        "Uniformly random actions on each env (`--random-policy`: SB3's `evaluate_policy`, the env made by the zoo's "
        "`create_test_env` without hyperparameters, the env and the action space seeded with the seed below), the floor "
        "that the scores above are read against and the aggregate's normalised 0.\n",
        "| env | episodes | seed | mean return | std (population) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {row.env} | {row.episodes} | {row.seed} | {row.mean_return:.2f} | {row.std_return:.2f} |"
            for row in random_scores.itertuples()
        ),
    ]
    return "\n".join(lines) + "\n"
