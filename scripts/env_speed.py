"""
Env stepping speed, one JSON line with steps/s on one core, random actions drawn in advance:

- ``raw_act``: MinAtar's ``Environment.act`` alone,
- ``raw_act_state``: ``act`` then ``state()``, the least any observation-returning env must do,
- ``unwrapped``: our ``MinAtarEnv.step`` (channels-first uint8 observation),
- ``registered``: ``gym.make(env_id)`` with its TimeLimit, OrderEnforcing and PassiveEnvChecker wrappers,
- ``overhead_vs_raw_act_state``: 1 - registered / raw_act_state.

Usage: python scripts/env_speed.py [--env Breakout-MinAtar] [--steps 100000]
"""

import argparse
import json
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from minatar import Environment

from sb3_dreamer.envs import register_minatar_envs


def steps_per_second(step: Callable[[int], bool], reset: Callable[[], object], actions: np.ndarray) -> float:
    """Steps per second of ``step(action) -> done`` over ``actions``, calling ``reset`` when an episode ends."""
    reset()
    start = time.perf_counter()
    for action in actions:
        if step(action):
            reset()
    return len(actions) / (time.perf_counter() - start)


def raw_minatar(game: str, actions: np.ndarray, with_state: bool) -> float:
    """Steps per second of MinAtar's own ``Environment``, stepping with its minimal action set."""
    env = Environment(game)
    env.seed(0)
    action_set = env.minimal_action_set()

    def step(action: int) -> bool:
        _, terminal = env.act(action_set[action])
        if with_state:
            env.state()
        return terminal

    return steps_per_second(step, env.reset, actions)


def gym_env(env: gym.Env, actions: np.ndarray) -> float:
    """Steps per second of a Gymnasium env."""

    def step(action: int) -> bool:
        _, _, terminated, truncated, _ = env.step(action)
        return terminated or truncated

    env.reset(seed=0)
    return steps_per_second(step, env.reset, actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Breakout-MinAtar")
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()

    register_minatar_envs()
    env = gym.make(args.env)
    actions = np.random.default_rng(0).integers(env.action_space.n, size=args.steps)
    game = env.unwrapped.game
    result = {
        "env": args.env,
        "steps": args.steps,
        "raw_act": raw_minatar(game, actions, with_state=False),
        "raw_act_state": raw_minatar(game, actions, with_state=True),
        "unwrapped": gym_env(gym.make(args.env).unwrapped, actions),
        "registered": gym_env(env, actions),
    }
    result["overhead_vs_raw_act_state"] = 1 - result["registered"] / result["raw_act_state"]
    print(json.dumps({key: round(value, 3) if isinstance(value, float) else value for key, value in result.items()}))


if __name__ == "__main__":
    main()
