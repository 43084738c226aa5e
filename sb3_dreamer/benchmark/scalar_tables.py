"""
TensorBoard scalars of benchmark runs at chosen env frames, as markdown tables: one table per tag, a row per
algo x env (mean over seeds), a column per frame. The value of a run at frame F is the mean of the values it logged
in the window (F - ``--window``, F] (a run that logged none there is left out of that frame's mean over seeds); a
resumed run's later event files replace its earlier ones at the same step.

It reads the runs that ``scripts/benchmark.py --tensorboard`` trained under ROOT, finished or not, e.g. to compare the
world-model loss or the actor's entropy of two variants: a run's TensorBoard event files (``ROOT/runs/ALGO/ENV/seed_N/
tensorboard``) where it has them, else the ``scalars.csv`` that the benchmark wrote from them when the run finished
(every scalar: tag, step, value). The event files are not committed, so a clone of the repository has only the latter.

Usage:
  python scripts/tb_scalars.py --root benchmarks/minatar-100k --algos dreamerv2@bf16 dreamerv2@ratio2bf16 \\
      --envs Breakout-MinAtar --tags train/world_model_loss train/lambda_return_mean --at 10000 20000 40000 80000
"""

import argparse
from pathlib import Path

import numpy as np

from sb3_dreamer.benchmark.extras import benchmark_extra
from sb3_dreamer.benchmark.layout import RUNS_DIR, SCALARS_FILE, add_run_selection, selected_runs
from sb3_dreamer.benchmark.scalars import run_scalars

with benchmark_extra():
    import pandas as pd

DEFAULT_TAGS = [
    "train/world_model_loss",
    "train/kl",
    "train/actor_entropy",
    "train/lambda_return_mean",
    "rollout/ep_rew_mean",
]


def values_at(scalars: pd.DataFrame, frames: list[int], window: int) -> pd.DataFrame:
    """Per tag (rows) and frame F (columns): mean of the values logged at steps in (F - window, F]; NaN if none."""
    columns = {}
    for frame in frames:
        in_window = scalars[(scalars["step"] > frame - window) & (scalars["step"] <= frame)]
        columns[frame] = in_window.groupby("tag")["value"].mean()
    return pd.DataFrame(columns, columns=frames)


def collect(root: Path, algos: list[str], envs: list[str], seeds: list[int], tags: list[str], frames: list[int],
            window: int) -> pd.DataFrame:  # fmt: skip
    """
    Values at ``frames`` of every selected run under ``root`` with TensorBoard logs (event files or ``scalars.csv``),
    indexed by tag, algo, env, seed.
    """
    tables = {}
    for run in selected_runs(root, algos, envs, seeds):
        scalars = run_scalars(run.directory(root), tags)
        if scalars is not None:
            tables[(run.algo, run.env, run.seed)] = values_at(scalars, frames, window)
    if not tables:
        logs = f"TensorBoard logs under {root / RUNS_DIR} (event files or {SCALARS_FILE})"
        raise SystemExit(f"no run with {logs} matches the selection")
    values = pd.concat(tables, names=["algo", "env", "seed", "tag"])
    return values.reorder_levels(["tag", "algo", "env", "seed"]).sort_index()


def markdown_tables(values: pd.DataFrame, tags: list[str]) -> str:
    """A table per tag: a row per algo x env with the mean over its seeds at each frame."""
    points = [f"{frame / 1000:g}k" for frame in values.columns]
    tables = []
    for tag in tags:
        lines = [f"`{tag}`", "", f"| algo | env | seeds | {' | '.join(points)} |", f"|---|---|---:|{'---:|' * len(points)}"]
        if tag in values.index.get_level_values("tag"):
            for (algo, env), runs in values.loc[tag].groupby(level=["algo", "env"]):
                means = runs.mean(axis=0)  # NaN (not logged yet) is left out of the mean, as a seed without the point
                cells = " | ".join("" if np.isnan(x) else f"{x:.3g}" for x in means)
                lines.append(f"| {algo} | {env} | {len(runs)} | {cells} |")
        else:
            lines.append(f"| (no run logged {tag}) |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Command line of ``scripts/tb_scalars.py``: print the tables of the selected runs' scalars."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_selection(parser)
    parser.add_argument("--tags", nargs="+", default=DEFAULT_TAGS, help="scalar tags")
    parser.add_argument("--at", nargs="+", type=int, default=list(range(10_000, 100_001, 10_000)), help="env frames")
    parser.add_argument("--window", type=int, default=2_000, help="env frames averaged up to each frame of --at")
    args = parser.parse_args(argv)
    if args.window <= 0:
        parser.error(f"--window must be a positive number of env frames, got {args.window}")
    values = collect(args.root, args.algos, args.envs, args.seeds, args.tags, sorted(args.at), args.window)
    print(markdown_tables(values, args.tags), end="")
