"""
The lasting record of a benchmark grid: ``results.csv`` (one row per evaluation point of a run) and ``final.csv`` (one
row per run, its final score), from the finished runs and from the earlier CSVs for the runs whose folder is gone;
and the score of each run.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np

from sb3_dreamer.benchmark.extras import benchmark_extra
from sb3_dreamer.benchmark.layout import SEGMENTS_FILE, finished_runs, read_evaluations

with benchmark_extra():
    import pandas as pd

RESULTS_CSV = "results.csv"
FINAL_CSV = "final.csv"
COLUMNS = ["algo", "env", "seed", "frames", "eval_episodes", "timesteps", "mean_return", "std_return", "wall_clock_s", "cpu_s"]
#: Columns that identify a run in ``results.csv`` and ``final.csv``
RUN_KEY = ["algo", "env", "seed", "frames"]
FINAL_COLUMNS = [*RUN_KEY, "final_episodes", "final_mean_return", "final_std_return", "wall_clock_s", "cpu_s"]


def collect(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """
    Evaluation points (:data:`COLUMNS`) and final scores (:data:`FINAL_COLUMNS`, one row per run) of every finished
    run under ``root``, and those of ``root/results.csv`` and ``root/final.csv`` for the runs whose folder is gone: the
    CSVs are the lasting record of a grid, its runs folders may be partial. A run known only from ``results.csv``
    gets a final row without a final score.
    """
    rows, finals = [], []
    for run_file, info in finished_runs(root):
        info = {**info, **recorded_times(run_file.parent, info)}
        for timesteps, returns in read_evaluations(run_file.parent).items():
            rows.append(
                {
                    "algo": info["algo"],
                    "env": info["env"],
                    "seed": info["seed"],
                    "timesteps": int(timesteps),
                    "mean_return": float(np.mean(returns)),
                    "std_return": float(np.std(returns)),
                    "wall_clock_s": info["wall_clock_s"],
                    "cpu_s": info["cpu_s"],
                    "frames": info["frames"],
                    "eval_episodes": info["eval_episodes"],
                }
            )
        finals.append({name: info.get(name, np.nan) for name in FINAL_COLUMNS})
    results = with_recorded(pd.DataFrame(rows, columns=COLUMNS), root / RESULTS_CSV)
    final = with_recorded(pd.DataFrame(finals, columns=FINAL_COLUMNS), root / FINAL_CSV)
    runs = results.groupby(RUN_KEY, as_index=False)[["wall_clock_s", "cpu_s"]].first()
    unknown = runs[~runs.set_index(RUN_KEY).index.isin(final.set_index(RUN_KEY).index)]
    return results, pd.concat([final, unknown.reindex(columns=FINAL_COLUMNS)], ignore_index=True).infer_objects()


def recorded_times(run_dir: Path, info: dict[str, Any]) -> dict[str, float]:
    """
    ``wall_clock_s`` and ``cpu_s`` of the finished run in ``run_dir`` (``info``: its ``run.json``), NaN where they are
    not known: a run whose first recorded part resumed a checkpoint lost its earlier parts' times (a grid from before
    the parts' times were written while they ran), so its sums would undercount.
    """
    segments_file = run_dir / SEGMENTS_FILE
    if segments_file.is_file() and json.loads(segments_file.read_text())[0]["resumed"]:
        return {"wall_clock_s": np.nan, "cpu_s": np.nan}
    return {"wall_clock_s": info["wall_clock_s"], "cpu_s": info["cpu_s"]}


def with_recorded(rows: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``rows`` of the runs on disk and those of the CSV ``path`` (if any) of the other runs."""
    if not path.is_file():
        return rows
    recorded = pd.read_csv(path)
    if list(recorded.columns) != list(rows.columns):
        raise SystemExit(f"{path} has the columns {list(recorded.columns)}, expected {list(rows.columns)}")
    on_disk = recorded.set_index(RUN_KEY).index.isin(rows.set_index(RUN_KEY).index)
    # infer_objects: the columns of runs are untyped when no run is on disk
    return pd.concat([rows, recorded[~on_disk]], ignore_index=True).infer_objects()


def run_scores(results: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """
    The score of each run (:data:`RUN_KEY`, one row per run of ``results``): its final score where it has one, else its
    last evaluation's mean return; ``final`` tells which, ``episodes`` over how many episodes.
    """
    last = results.sort_values("timesteps").groupby(RUN_KEY).tail(1)[[*RUN_KEY, "mean_return", "eval_episodes"]]
    scores = last.merge(finals[[*RUN_KEY, "final_mean_return", "final_episodes"]], on=RUN_KEY, how="left")
    scores["final"] = scores["final_mean_return"].notna()
    scores["score"] = scores["final_mean_return"].where(scores["final"], scores["mean_return"])
    scores["episodes"] = scores["final_episodes"].where(scores["final"], scores["eval_episodes"]).astype(int)
    return scores[[*RUN_KEY, "score", "final", "episodes"]].sort_values(RUN_KEY, ignore_index=True)
