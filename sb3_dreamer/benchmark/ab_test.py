"""
An A/B of two algorithms (or variants ``ALGO@NAME``) of a benchmark root, env by env: each run's score normalised as
the report's aggregate normalises it (the random policy's score 0, the best run's 1), the difference of the two mean
normalised scores per env, their mean over the envs, and a one-sided permutation test of that mean that shuffles the
two labels among each env's runs (the envs stay apart: an env with more runs of one side keeps them).

``--seeds`` keeps the runs of those seeds only (an A/B decided on the seeds that had finished then stays
reproducible as later seeds land); the normalisation still counts every run.

Usage:
  python scripts/ab_test.py --root benchmarks/minatar-100k --a dreamerv2 --b dreamerv2@concatinit \\
      --exclude-envs Freeway-MinAtar FreewayPOMDP-MinAtar
"""

import argparse
from pathlib import Path

import numpy as np

from sb3_dreamer.benchmark.extras import benchmark_extra
from sb3_dreamer.benchmark.stats import BOOTSTRAP_SEED

with benchmark_extra():
    import pandas as pd

#: permutations of the test (``--permutations``)
PERMUTATIONS = 20_000


def normalised_scores(root: Path) -> pd.DataFrame:
    """Every finished run's score (``run_scores``) under ``root`` with its ``normalised`` score (the report's bounds)."""
    from sb3_dreamer.benchmark.aggregate import normalisation_bounds
    from sb3_dreamer.benchmark.random_policy import read_random_scores
    from sb3_dreamer.benchmark.records import collect, run_scores
    from sb3_dreamer.benchmark.stats import normalise

    results, finals = collect(root)
    scores = run_scores(results, finals)
    bounds = normalisation_bounds(scores, results, read_random_scores(root)).reindex(scores["env"])
    scores["normalised"] = normalise(scores["score"].to_numpy(), bounds["low"].to_numpy(), bounds["high"].to_numpy())
    return scores


def mean_difference(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean over envs of ``a.mean() - b.mean()``, for ``pairs`` of each env's normalised scores (runs_a,), (runs_b,)."""
    return float(np.mean([a.mean() - b.mean() for a, b in pairs]))


def permutation_p_value(
    pairs: list[tuple[np.ndarray, np.ndarray]], permutations: int = PERMUTATIONS, seed: int = BOOTSTRAP_SEED
) -> float:
    """
    One-sided p-value of :func:`mean_difference` (A above B): the share of ``permutations`` relabellings, within each
    env, whose mean difference is at least the observed one, counting the observed labelling ((k + 1) / (n + 1)).
    """
    observed = mean_difference(pairs)
    rng = np.random.default_rng(seed)
    at_least = 0
    for _ in range(permutations):
        shuffled = []
        for a, b in pairs:
            runs = rng.permutation(np.concatenate([a, b]))
            shuffled.append((runs[: len(a)], runs[len(a) :]))
        at_least += mean_difference(shuffled) >= observed
    return (at_least + 1) / (permutations + 1)


def ab_table(scores: pd.DataFrame, algo_a: str, algo_b: str, exclude: list[str]) -> tuple[str, list]:
    """The markdown table of the envs where both have runs (not ``exclude``), and their (a, b) normalised scores."""
    lines = [
        f"| env | {algo_a}: runs | {algo_b}: runs | {algo_a}: normalised | {algo_b}: normalised | difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    pairs = []
    for env in sorted(set(scores["env"]) - set(exclude)):
        runs = [
            scores[(scores["env"] == env) & (scores["algo"] == algo)]["normalised"].to_numpy() for algo in (algo_a, algo_b)
        ]
        if not (len(runs[0]) and len(runs[1])):
            continue
        a, b = runs
        pairs.append((a, b))
        lines.append(f"| {env} | {len(a)} | {len(b)} | {a.mean():.3f} | {b.mean():.3f} | {a.mean() - b.mean():+.3f} |")
    return "\n".join(lines), pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="the benchmark root (scripts/benchmark.py --root)")
    parser.add_argument("--a", required=True, help="the algorithm or variant tested for being above")
    parser.add_argument("--b", required=True, help="the one it is compared with")
    parser.add_argument("--exclude-envs", nargs="*", default=[], help="envs left out (e.g. where every score is chance)")
    parser.add_argument("--seeds", type=int, nargs="+", help="the seeds whose runs are compared (default: all)")
    parser.add_argument("--permutations", type=int, default=PERMUTATIONS, help="relabellings of the permutation test")
    args = parser.parse_args(argv)
    scores = normalised_scores(args.root)
    if args.seeds is not None:
        scores = scores[scores["seed"].isin(args.seeds)]
    table, pairs = ab_table(scores, args.a, args.b, args.exclude_envs)
    if not pairs:
        raise SystemExit(f"no env under {args.root} has runs of both {args.a} and {args.b}")
    means = [float(np.mean([a.mean() for a, _ in pairs])), float(np.mean([b.mean() for _, b in pairs]))]
    print(table)
    print(
        f"\nOver the {len(pairs)} envs: mean normalised score {args.a} {means[0]:.3f}, {args.b} {means[1]:.3f}, "
        f"difference {mean_difference(pairs):+.3f}; one-sided permutation p-value "
        f"{permutation_p_value(pairs, args.permutations):.4f} ({args.permutations} relabellings within each env)"
    )
