"""
The benchmark report of the finished runs under ROOT: ``results.csv`` and ``final.csv``, and ``results.md`` with its
tables (final returns and scores, evaluation returns at each evaluation point, scores with bootstrap intervals) of the
packaged algorithms, the random policy's scores (``random_policy.csv``, where measured), the aggregate over envs, the
same tables of the variants ``ALGO@NAME``, and the learning curves' plots (the packaged algorithms'; the variants'
beside their algorithm's).
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from sb3_dreamer.benchmark.aggregate import (
    AGGREGATE_CURVES_PLOT,
    AGGREGATE_PLOT,
    Aggregate,
    aggregate,
    aggregate_section,
    default_aggregate_choice,
    plot_aggregate,
)
from sb3_dreamer.benchmark.extras import benchmark_extra
from sb3_dreamer.benchmark.grid import FINAL_EVAL_SEED_OFFSET
from sb3_dreamer.benchmark.layout import base_algo, is_variant
from sb3_dreamer.benchmark.random_policy import random_policy_section, read_random_scores
from sb3_dreamer.benchmark.records import FINAL_CSV, RESULTS_CSV, RUN_KEY, collect, run_scores
from sb3_dreamer.benchmark.stats import BOOTSTRAP_REPS, BOOTSTRAP_SEED, CONFIDENCE, bootstrap_interval

with benchmark_extra():
    import pandas as pd

RESULTS_MD = "results.md"
LEARNING_CURVES_PLOT = "learning_curves.png"
VARIANT_CURVES_PLOT = "learning_curves_variants.png"
PANELS_PER_ROW = 5


def format_duration(seconds: float) -> str:
    """Human-readable duration; "n/a" for NaN (not recorded)."""
    if np.isnan(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def markdown_table(results: pd.DataFrame, finals: pd.DataFrame) -> str:
    """
    Per algo x env x frame budget: final evaluation return over seeds, final score over the seeds that have one, seeds,
    wall-clock, CPU time and frames/s.
    """
    final = results.sort_values("timesteps").groupby(["algo", "env", "frames", "seed"]).tail(1)
    scored = finals.dropna(subset=["final_mean_return"]).groupby(["algo", "env", "frames"])["final_mean_return"]
    scores = {key: group.to_numpy() for key, group in scored}
    lines = [
        "| algo | env | final return (mean ± std over seeds) | final score (mean ± std over seeds, n) | frames | seeds "
        "| wall-clock per run | CPU time per run | frames/s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (algo, env, frames), group in final.groupby(["algo", "env", "frames"]):
        returns = group["mean_return"].to_numpy()
        score = scores.get((algo, env, frames))
        score_cell = "n/a" if score is None else f"{score.mean():.2f} ± {score.std():.2f} (n={len(score)})"
        wall_clock = group["wall_clock_s"].to_numpy()
        frames_per_s = known_mean(frames / wall_clock, lambda value: f"{value:.0f}")
        lines.append(
            f"| {algo} | {env} | {returns.mean():.2f} ± {returns.std():.2f} | {score_cell} | {frames:,} | {len(group)} "
            f"| {known_mean(wall_clock, format_duration)} | {known_mean(group['cpu_s'].to_numpy(), format_duration)} "
            f"| {frames_per_s} |"
        )
    return "\n".join(lines) + "\n"


def known_mean(values: np.ndarray, text: Callable[[float], str]) -> str:
    """The mean of the known (not NaN) ``values`` as ``text`` makes it, with their number where some are not known."""
    known = values[~np.isnan(values)]
    if not len(known):
        return "n/a"
    return text(known.mean()) + (f" (n={len(known)})" if len(known) < len(values) else "")


def curve_table(results: pd.DataFrame) -> str:
    """Per algo x env x frame budget: the evaluation return at every evaluation point, mean over seeds."""
    groups = results.groupby(["algo", "env", "frames"])
    curves = results.groupby(["algo", "env", "frames", "timesteps"])["mean_return"].mean().unstack("timesteps")
    points = [f"{timesteps / 1000:g}k" for timesteps in curves.columns]
    lines = [f"| algo | env | frames | seeds | {' | '.join(points)} |", f"|---|---|---:|---:|{'---:|' * len(points)}"]
    for (algo, env, frames), curve in curves.iterrows():
        values = " | ".join("" if np.isnan(x) else f"{x:.2f}" for x in curve)
        lines.append(f"| {algo} | {env} | {frames:,} | {groups.get_group((algo, env, frames))['seed'].nunique()} | {values} |")
    return "\n".join(lines) + "\n"


def plot_learning_curves(results: pd.DataFrame, colors: dict[str, Any], path: Path) -> None:
    """
    Evaluation return against env frames: mean over seeds and min-max band, a panel per env (at most
    ``PANELS_PER_ROW`` in a row), a line per algo in its colour of ``colors``.
    """
    envs = sorted(results["env"].unique())
    n_columns = min(len(envs), PANELS_PER_ROW)
    n_rows = -(-len(envs) // n_columns)
    figure, axes = plt.subplots(n_rows, n_columns, figsize=(5 * n_columns, 3.8 * n_rows), squeeze=False)
    for axis in axes.flat[len(envs) :]:
        axis.remove()
    for axis, env in zip(axes.flat, envs, strict=False):
        for algo, runs in results[results["env"] == env].groupby("algo"):
            curve = runs.groupby("timesteps")["mean_return"].agg(["mean", "min", "max"])
            n_seeds = runs["seed"].nunique()
            label = f"{algo} ({n_seeds} seed{'s' if n_seeds > 1 else ''})"
            axis.plot(curve.index, curve["mean"], color=colors[algo], label=label)
            axis.fill_between(curve.index, curve["min"], curve["max"], color=colors[algo], alpha=0.2, linewidth=0)
        axis.set(title=env, xlabel="env frames", ylabel="evaluation return")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def variants_with_base(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of the variants ``ALGO@NAME`` in ``results``, with those of each one's ``ALGO`` on the same envs."""
    variant_rows = results["algo"].map(is_variant).astype(bool)
    variants = results[variant_rows]
    bases = pd.MultiIndex.from_arrays([variants["algo"].map(base_algo), variants["env"]])
    return results[variant_rows | results.set_index(["algo", "env"]).index.isin(bases)]


def _sources(runs: pd.DataFrame) -> str:
    """Which of ``runs`` (rows of :func:`run_scores`) are scored by their final score and which by their last evaluation."""
    parts = []
    for (final, episodes), group in runs.groupby(["final", "episodes"], sort=False):
        seeds = ", ".join(map(str, sorted(group["seed"])))
        kind = "final score" if final else "**last evaluation**"
        parts.append(f"{kind} ({episodes} episodes): seed{'s' if len(group) > 1 else ''} {seeds}")
    return "; ".join(parts)


def score_table(scores: pd.DataFrame, reps: int) -> str:
    """
    Per algo x env x frame budget: the runs' scores (:func:`run_scores`), mean and bootstrap interval (``reps``
    resamples) over seeds.
    """
    lines = [
        f"| algo | env | frames | seeds | score: mean [{CONFIDENCE:.0%} interval] | scored by |",
        "|---|---|---:|---:|---|---|",
    ]
    for (algo, env, frames), runs in scores.groupby(["algo", "env", "frames"]):
        values = runs["score"].to_numpy()
        low, high = bootstrap_interval(values, reps)
        interval = f"{values.mean():.2f} [{low:.2f}, {high:.2f}]"
        lines.append(f"| {algo} | {env} | {frames:,} | {len(runs)} | {interval} | {_sources(runs)} |")
    return "\n".join(lines) + "\n"


def run_tables(runs: list[pd.DataFrame], reps: int, scores_intro: str) -> str:
    """
    The tables of some algorithms' runs: final returns and scores (:func:`markdown_table`), evaluation returns at each
    evaluation point (:func:`curve_table`), then ``scores_intro`` and the scores with bootstrap intervals
    (:func:`score_table`).

    :param runs: the runs' results, final scores and scores (:func:`run_scores`)
    """
    results, finals, scores = runs
    return (
        markdown_table(results, finals)
        + "\nEvaluation return (mean over seeds) at each evaluation point, in env frames:\n\n"
        + curve_table(results)
        + scores_intro
        + score_table(scores, reps)
    )


def algo_colors(algos: list[str]) -> dict[str, Any]:
    """
    Colour of each algo in the report's plots, the same in all of them: the packaged algorithms take the first of
    ``tab10``'s, the variants ``ALGO@NAME`` the next (then ``tab20b``'s), so that no two of 30 share one.
    """
    ordered = sorted(algos, key=lambda algo: (is_variant(algo), algo))
    # Both are ListedColormaps, whose colors are tuples
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("tab20b").colors  # type: ignore[attr-defined]
    return dict(zip(ordered, palette * (len(algos) // len(palette) + 1), strict=False))


def write_report(root: Path, aggregate_algos: list[str] | None = None, reps: int = BOOTSTRAP_REPS) -> None:
    """
    Write ``results.csv``, ``final.csv``, ``results.md``, ``learning_curves.png`` (packaged algorithms),
    ``learning_curves_variants.png`` (variants, with their algorithm on the same envs), ``aggregate.png`` and
    ``aggregate_curves.png`` of the finished runs under ``root``; the aggregate covers ``aggregate_algos`` (default:
    :func:`default_aggregate_algos` of the packaged algorithms); the intervals take ``reps`` bootstrap replications.
    """
    results, finals = collect(root)
    if results.empty:
        print(f"no finished runs under {root}")
        return
    results.sort_values([*RUN_KEY, "timesteps"]).to_csv(root / RESULTS_CSV, index=False)
    finals = finals.astype({"final_episodes": "Int64"}).sort_values(RUN_KEY)
    finals.to_csv(root / FINAL_CSV, index=False)
    episodes = sorted(results["eval_episodes"].unique())
    final_episodes = sorted(finals["final_episodes"].dropna().unique())
    header = (
        "# Benchmark results\n\n"
        f"Final return: each run's last evaluation (mean over {'/'.join(map(str, episodes))} episodes of the "
        "deterministic policy), then mean ± std (population) over seeds. Final score: the mean return of the run's "
        f"final model over {'/'.join(map(str, final_episodes)) or 'n/a'} episodes of the deterministic policy on a fresh "
        f"env seeded with the run's seed + {FINAL_EVAL_SEED_OFFSET:,}, then mean ± std (population) over the n seeds that "
        "have one (runs from before the final evaluation whose model is gone have none). Frames: training budget in env "
        "frames (MinAtar has no frame skip). Wall-clock and CPU time (user + system, all threads): whole zoo process, "
        "evaluations included, final score not included, mean over the runs whose times are known (n=k where those are k "
        "of the seeds: a run resumed from a checkpoint of a grid that did not yet record its parts' times has none); "
        "frames/s = frames / wall-clock. "
        f"Machine: {os.cpu_count()} CPU cores.\n\n"
    )
    scores = run_scores(results, finals)
    runs = (results, finals, scores)
    variant_rows = [frame["algo"].map(is_variant).astype(bool) for frame in runs]
    packaged = [frame[~rows] for frame, rows in zip(runs, variant_rows, strict=True)]
    variants = [frame[rows] for frame, rows in zip(runs, variant_rows, strict=True)]
    intervals_intro = (
        f"\n## Scores with {CONFIDENCE:.0%} bootstrap intervals\n\n"
        "The score of a run: its final score, or for a run without one its last evaluation (marked in bold in the last "
        "column, which names the seeds scored each way); then the mean over seeds and a percentile bootstrap interval "
        f"of that mean ({reps} resamples of the seeds with replacement, random numbers seeded with "
        f"{BOOTSTRAP_SEED}; a single seed gives no interval, shown as its score twice).\n\n"
    )
    tables = "No finished run of a packaged algorithm.\n"
    if not packaged[0].empty:
        tables = run_tables(packaged, reps, intervals_intro)
    random_scores = read_random_scores(root)
    tables += random_policy_section(random_scores)
    variant_tables = ""
    if not variants[0].empty:
        variant_tables = (
            "\n## Variants\n\nOther hyperparameters of an algorithm (`ALGO@NAME`): settings under test and earlier "
            "ones that the packaged files have replaced, in the same tables as above.\n\n"
            + run_tables(variants, reps, f"\nScores with {CONFIDENCE:.0%} bootstrap intervals:\n\n")
        )
    set_aside: dict[str, int] = {}
    min_runs = 1
    if aggregate_algos:
        algos = list(dict.fromkeys(aggregate_algos))
    else:
        algos, min_runs, set_aside = default_aggregate_choice(scores, sorted(set(packaged[2]["algo"])))
    try:
        result = (
            aggregate(scores, results, algos, reps, min_runs, random_scores)
            if algos
            else "no algorithm without a variant name: name them"
        )
    except ImportError as error:
        result = str(error)
    written = [RESULTS_CSV, FINAL_CSV, RESULTS_MD]
    colors = algo_colors(list(results["algo"].unique()))
    if isinstance(result, Aggregate):
        section = aggregate_section(result, set_aside)
        plot_aggregate(result, colors, root)
        written += [AGGREGATE_PLOT, AGGREGATE_CURVES_PLOT]
    else:
        section = f"## Aggregate over envs\n\nNone: {result}.\n"
        for name in (AGGREGATE_PLOT, AGGREGATE_CURVES_PLOT):
            (root / name).unlink(missing_ok=True)  # an earlier report's
    (root / RESULTS_MD).write_text(header + tables + "\n" + section + variant_tables)
    for name, curves in ((LEARNING_CURVES_PLOT, packaged[0]), (VARIANT_CURVES_PLOT, variants_with_base(results))):
        if curves.empty:
            (root / name).unlink(missing_ok=True)  # an earlier report's
        else:
            plot_learning_curves(curves, colors, root / name)
            written.append(name)
    print(f"wrote {', '.join(str(root / name) for name in written)}")
