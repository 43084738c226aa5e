"""
How far the unfinished runs under ROOT have come (``--status``): for a grid that trains across sessions, what each run
has done, read from its files while it runs or after it was stopped.
"""

import json
import re
from pathlib import Path
from typing import TypedDict

import numpy as np
import yaml

from sb3_dreamer.benchmark.extras import benchmark_extra
from sb3_dreamer.benchmark.layout import LOG_FILE, RUN_FILE, RUNS_DIR, SEGMENTS_FILE, Run, read_evaluations
from sb3_dreamer.benchmark.report import format_duration

with benchmark_extra():
    import pandas as pd

#: Training episodes whose mean return the status shows
RECENT_EPISODES = 30
#: The line of the zoo plug-in where a part of a run resumes a checkpoint
RESUMED = re.compile(r"Resuming from the checkpoint in .* at (\d+) timesteps")


def monitor_episodes(part: Path) -> pd.DataFrame:
    """Training episodes (``r`` return, ``l`` length) of one zoo log folder, from its Monitor files, in order of time."""
    frames = [pd.read_csv(path, skiprows=1) for path in sorted(part.glob("*.monitor.csv"))]
    episodes = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["r", "l", "t"])
    return episodes.sort_values("t", ignore_index=True)


def zoo_file(part: Path, env: str, name: str) -> dict | None:
    """The zoo's ``ENV/name`` YAML file in the log folder ``part`` (an OrderedDict there) as a dict, if written yet."""
    path = part / env / name
    return dict(yaml.unsafe_load(path.read_text())) if path.is_file() else None


def frame_budget(part: Path, env: str) -> int | None:
    """The frames that the zoo trains to in the log folder ``part`` (``-n``, in its ``ENV/args.yml``), if written yet."""
    args = zoo_file(part, env, "args.yml")
    return None if args is None else int(args["n_timesteps"])


def learning_starts(part: Path, env: str) -> int:
    """
    The random frames before the first update in the log folder ``part`` (``learning_starts`` in its
    ``ENV/config.yml``, the hyperparameters the zoo trained with); 0 where it has none or has not written it yet.
    """
    return int((zoo_file(part, env, "config.yml") or {}).get("learning_starts", 0))


class RunStatus(TypedDict):
    """What :func:`run_status` reads of an unfinished run (see there)."""

    frames: int
    checkpoint: int
    evaluations: dict[int, float]
    recent_return: float
    parts: int
    wall_clock_s: float
    left_s: float


def run_status(run: Run, root: Path) -> RunStatus:
    """
    What the unfinished ``run`` under ``root`` has done: ``frames``, the env frames of
    its last part's finished episodes on top of the checkpoint that part resumed (a part killed with its machine
    counts from its checkpoint on); ``checkpoint``, the timesteps of the last resumed checkpoint (0 for a run never
    resumed); ``evaluations``, the mean return of each evaluation so far by timesteps; ``recent_return``, the mean
    return of the last :data:`RECENT_EPISODES` training episodes; ``parts`` and ``wall_clock_s`` (the time
    ``segments.json`` recorded); ``left_s``, the seconds to its frame budget at the pace of its last part (its
    frames after its checkpoint and after ``learning_starts``, whose random steps take next to no time, over its
    wall-clock time: an estimate, NaN before the part has such frames, a record of its time or a budget).
    """
    run_dir = run.directory(root)
    log = run_dir / LOG_FILE
    resumed = RESUMED.findall(log.read_text()) if log.is_file() else []
    checkpoint = int(resumed[-1]) if resumed else 0
    parts = run.parts(root)
    episodes = [monitor_episodes(part) for part in parts]
    frames = checkpoint + int(episodes[-1]["l"].sum()) if episodes else checkpoint
    finished = [part_episodes["r"] for part_episodes in episodes if len(part_episodes)]
    recent = pd.concat(finished, ignore_index=True).tail(RECENT_EPISODES) if finished else pd.Series(dtype=float)
    segments = json.loads((run_dir / SEGMENTS_FILE).read_text()) if (run_dir / SEGMENTS_FILE).is_file() else []
    budget = frame_budget(parts[-1], run.env) if parts else None
    first_trained = max(checkpoint, learning_starts(parts[-1], run.env)) if parts else checkpoint
    # The grid records a part's times a minute after it starts: until then the last record is the part before
    timed = len(segments) >= len(parts) > 0
    part_frames, part_s = frames - first_trained, segments[-1]["wall_clock_s"] if timed else 0.0
    pace = part_frames / part_s if part_frames > 0 and part_s > 0 else float("nan")
    return {
        "frames": frames,
        "checkpoint": checkpoint,
        "evaluations": {timesteps: float(np.mean(returns)) for timesteps, returns in read_evaluations(run_dir).items()},
        "recent_return": float(recent.mean()) if len(recent) else float("nan"),
        "parts": len(segments),
        "wall_clock_s": sum(segment["wall_clock_s"] for segment in segments),
        "left_s": max(budget - frames, 0) / pace if budget is not None else float("nan"),
    }


def status_table(root: Path) -> str:
    """A Markdown table of every unfinished run under ``root`` (a run folder without ``run.json``), by path."""
    lines = [
        "| algo | env | seed | frames | resumed at | evaluations (frames: mean return) "
        f"| last {RECENT_EPISODES} training episodes | parts | wall-clock | left (at the last part's pace) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    run_dirs = [path for path in sorted(root.glob(f"{RUNS_DIR}/*/*/seed_*")) if not (path / RUN_FILE).is_file()]
    for run_dir in run_dirs:
        run = Run(run_dir.parts[-3], run_dir.parts[-2], int(run_dir.name.removeprefix("seed_")))
        status = run_status(run, root)
        evaluations = ", ".join(f"{timesteps // 1000}k: {value:.2f}" for timesteps, value in status["evaluations"].items())
        lines.append(
            f"| {run.algo} | {run.env} | {run.seed} | {status['frames']:,} | {status['checkpoint']:,} "
            f"| {evaluations or 'none yet'} | {status['recent_return']:.2f} | {status['parts']} "
            f"| {format_duration(status['wall_clock_s'])} | {format_duration(status['left_s'])} |"
        )
    if not run_dirs:
        return f"No unfinished runs under {root}"
    return "\n".join(lines)
