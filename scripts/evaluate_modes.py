"""
Evaluate a saved DreamerV2 model with its deterministic policy (mode of the latent and of the action) and with its
stochastic one (sampled latents and actions), over the same seeded episodes: one line per mode, mean ± std return.

Usage: python scripts/evaluate_modes.py MODEL.zip ENV_ID [--episodes 30] [--seed 123]
"""

import argparse

import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_dreamer import DreamerV2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("env")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    model = DreamerV2.load(args.model, device="cpu")
    for deterministic in (True, False):
        env = make_vec_env(args.env, n_envs=1, seed=args.seed)
        returns, _ = evaluate_policy(
            model, env, n_eval_episodes=args.episodes, deterministic=deterministic, return_episode_rewards=True
        )
        mode = "deterministic" if deterministic else "stochastic"
        print(f"{mode}: {np.mean(returns):.2f} ± {np.std(returns):.2f} over {args.episodes} episodes")


if __name__ == "__main__":
    main()
