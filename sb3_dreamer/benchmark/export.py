"""
What a finished benchmark run keeps of its TensorBoard logs, whose event files are not committed: every scalar in its
``scalars.csv`` and, for the first run of each env with dream videos, the last one as a GIF in ROOT.
"""

from pathlib import Path

from sb3_dreamer.benchmark.layout import DREAM_GIF, EVENT_FILES, GIF_ALGO, SCALARS_FILE, TENSORBOARD_DIR, Run, finished_runs


def write_dream_gif(run: Run, root: Path) -> str:
    """
    The last dream video of the DreamerV2 ``run`` to ``ROOT/dream_ALGO_ENV.gif``, as ``scripts/dream_gif.py`` writes
    it; what it wrote, or why it wrote nothing.
    """
    from sb3_dreamer.benchmark.dreams import last_dream  # tensorboard's event reader, as in export_tensorboard

    try:
        step, gif = last_dream(run.directory(root))
    except ValueError as error:
        return f"{run}: no dream GIF: {error}"
    output = root / DREAM_GIF.format(algo=run.algo, env=run.env)
    temporary = output.with_name(f"{output.name}.tmp")
    temporary.write_bytes(gif)
    temporary.replace(output)
    return f"{run}: wrote {output.name}: the dream video at {step} frames"


def export_tensorboard(run: Run, root: Path) -> list[str]:
    """
    What the finished ``run`` keeps of its TensorBoard logs: every scalar in ``RUN/scalars.csv`` (rewritten when an
    event file is newer), and if it logged images (DreamerV2's dream videos) and it is a run of ``GIF_ALGO`` whose env
    has no GIF yet, its last dream video there. Returns what it did, nothing for a run without event files or with
    nothing to do.
    """
    run_dir = run.directory(root)
    events = list((run_dir / TENSORBOARD_DIR).rglob(EVENT_FILES))
    if not events:
        return []
    # tensorboard's event reader and pandas, only for runs that have event files
    from sb3_dreamer.benchmark.scalars import image_tags, write_scalars

    messages = []
    scalars = run_dir / SCALARS_FILE
    if not scalars.is_file() or scalars.stat().st_mtime < max(path.stat().st_mtime for path in events):
        write_scalars(run_dir)
        messages.append(f"{run}: wrote {SCALARS_FILE}")
    gif = root / DREAM_GIF.format(algo=run.algo, env=run.env)
    if run.algo == GIF_ALGO and not gif.is_file() and image_tags(run_dir / TENSORBOARD_DIR):
        messages.append(write_dream_gif(run, root))
    return messages


def export_finished_runs(root: Path) -> None:
    """:func:`export_tensorboard` of every finished run under ``root``, by algo, env and seed (the lowest seed's GIF)."""
    runs = [Run(info["algo"], info["env"], info["seed"]) for _, info in finished_runs(root)]
    for run in sorted(runs, key=lambda run: (run.algo, run.env, run.seed)):
        for message in export_tensorboard(run, root):
            print(message, flush=True)
