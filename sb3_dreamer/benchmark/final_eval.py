"""
The final score of a benchmark run, in a subprocess of its own (with the run's torch threads and allocator settings):
``python -m sb3_dreamer.benchmark.final_eval SETTINGS``, with the keyword arguments of :func:`evaluate_final_model`
as the JSON object SETTINGS.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch as th
from rl_zoo3 import ALGOS, create_test_env, get_saved_hyperparams
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.benchmark.layout import write_json
from sb3_dreamer.zoo import apply


def zoo_test_env(model: Path, env_id: str, seed: int) -> VecEnv:
    """
    The zoo's test env of ``env_id`` for the zoo model ``model`` (a one-env VecEnv seeded with ``seed``), as
    ``rl_zoo3.enjoy`` makes it from the run's saved settings (``config.yml`` next to the model): env wrapper, frame
    stack, VecNormalize statistics; for the MinAtar ids, ``gym.make`` in a Monitor.
    """
    hyperparams, stats_path = get_saved_hyperparams(str(model.parent / env_id))
    env_kwargs = hyperparams.pop("env_kwargs", None)
    return create_test_env(
        env_id, stats_path=stats_path, seed=seed, should_render=False, hyperparams=hyperparams, env_kwargs=env_kwargs
    )


def evaluate_final_model(
    model: str,
    algo: str,
    env_id: str,
    episodes: int,
    seed: int,
    threads: int,
    device: str,
    output: str,
    deterministic: bool = True,
) -> None:
    """
    ``episodes`` episodes of the deterministic policy (the benchmark's final score; ``deterministic=False``: the
    sampled one) of the zoo model ``model`` (of ``rl_zoo3.ALGOS[algo]``) with
    stable_baselines3's ``evaluate_policy`` on :func:`zoo_test_env`, the env, torch and numpy seeded with
    ``seed``, ``threads`` torch threads; writes the mean and std of the returns and the episodes to ``output``.
    """
    apply()  # dreamerv2 in ALGOS and the MinAtar ids, also without the start-up hook
    th.set_num_threads(threads)  # as the zoo's --num-threads
    env = zoo_test_env(Path(model), env_id, seed)
    agent = ALGOS[algo].load(model, device=device)
    set_random_seed(seed)
    returns, _ = evaluate_policy(agent, env, episodes, deterministic=deterministic, return_episode_rewards=True)
    assert isinstance(returns, list), "return_episode_rewards=True gives the list of the episodes' returns"
    score = {"final_mean_return": float(np.mean(returns)), "final_std_return": float(np.std(returns))}
    write_json(Path(output), {**score, "final_episodes": len(returns)})


if __name__ == "__main__":
    evaluate_final_model(**json.loads(sys.argv[1]))
