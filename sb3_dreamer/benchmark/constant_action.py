"""
Which final scores of a benchmark root are those of one action played at every step: for each env and each seed of
its runs, the constant action's score over the final score's episodes and env seed (the run's seed +
``FINAL_EVAL_SEED_OFFSET``), beside the runs of that seed that score it exactly, above it and below it. A final score
equal to the constant action's, to the last digit over 100 episodes, is a policy that played that action (or played
the same episodes); on Freeway-MinAtar, "up" at every step scores 15-19.

Usage:
  python scripts/constant_action.py --root benchmarks/minatar-100k --envs Freeway-MinAtar FreewayPOMDP-MinAtar --action 1
"""

import argparse
from pathlib import Path

import numpy as np

from sb3_dreamer.benchmark.extras import benchmark_extra
from sb3_dreamer.benchmark.grid import FINAL_EVAL_SEED_OFFSET
from sb3_dreamer.benchmark.random_policy import ConstantPolicy, policy_returns
from sb3_dreamer.benchmark.records import FINAL_CSV

with benchmark_extra():
    import pandas as pd

#: how far a final score may lie from the constant action's and count as equal (``final.csv`` holds the mean of the
#: returns as a float; two means of 100 integer returns are equal or differ by 0.01 at least)
SAME_SCORE = 1e-6


def constant_action_rows(finals: pd.DataFrame, envs: list[str], action: int) -> pd.DataFrame:
    """
    One row per env of ``envs`` and seed of its runs in ``finals`` (rows of ``final.csv``): ``score``, the mean return
    of ``action`` at every step over the runs' final episodes in the env of their final score, and the runs (``algo
    (score)``) of that seed ``at``, ``above`` and ``below`` it.
    """
    rows = []
    for env in envs:
        runs = finals[(finals["env"] == env) & finals["final_mean_return"].notna()]
        if runs.empty:
            raise ValueError(f"no final scores of {env} in {FINAL_CSV}")
        for (seed, episodes), seed_runs in runs.groupby(["seed", "final_episodes"]):
            eval_seed = FINAL_EVAL_SEED_OFFSET + int(seed)
            returns = policy_returns(env, int(episodes), eval_seed, lambda space: ConstantPolicy(space, action))
            score = float(np.mean(returns))
            difference = seed_runs["final_mean_return"] - score
            listed = {
                side: ", ".join(f"{run.algo} ({run.final_mean_return:.2f})" for run in seed_runs[mask].itertuples())
                for side, mask in (
                    ("at", difference.abs() <= SAME_SCORE),
                    ("above", difference > SAME_SCORE),
                    ("below", difference < -SAME_SCORE),
                )
            }
            rows.append({"env": env, "seed": int(seed), "episodes": int(episodes), "score": score, **listed})
    return pd.DataFrame(rows)


def constant_action_table(rows: pd.DataFrame, action: int) -> str:
    """:func:`constant_action_rows` as a Markdown table."""
    lines = [
        f"| env | seed | action {action} at every step | runs at its score | runs above | runs below |",
        "|---|---:|---:|---|---|---|",
        *(f"| {row.env} | {row.seed} | {row.score:.2f} | {row.at} | {row.above} | {row.below} |" for row in rows.itertuples()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="the benchmark root, with its final.csv")
    parser.add_argument("--envs", nargs="+", required=True, help="the envs to play the action on")
    parser.add_argument("--action", type=int, required=True, help="the action, an index of the Discrete action space")
    args = parser.parse_args(argv)
    finals = pd.read_csv(args.root / FINAL_CSV)
    print(constant_action_table(constant_action_rows(finals, args.envs, args.action), args.action))


if __name__ == "__main__":
    main()
