"""Reading the TensorBoard logs of benchmark runs: their event files, or the ``scalars.csv`` a finished run keeps."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sb3_dreamer.benchmark.extras import benchmark_extra
from sb3_dreamer.benchmark.layout import EVENT_FILES, SCALARS_FILE, TENSORBOARD_DIR

with benchmark_extra():
    import pandas as pd


def event_files(tensorboard_dir: Path, size_guidance: dict[str, int]) -> list[EventAccumulator]:
    """
    The event files under ``tensorboard_dir``, loaded with ``size_guidance`` (events kept per kind, 0: all), oldest
    first: a resumed part of a run writes a later file.
    """
    files = []
    for path in tensorboard_dir.rglob(EVENT_FILES):
        events = EventAccumulator(str(path), size_guidance=size_guidance)
        events.Reload()
        files.append(events)
    return sorted(files, key=lambda events: events.FirstEventTimestamp())


def read_scalars(tensorboard_dir: Path, tags: list[str] | None = None) -> pd.DataFrame:
    """
    Scalars ``tags`` (``None``: every scalar tag) of the event files under ``tensorboard_dir``: columns tag, step (env
    frames) and value (float32, as logged); a later event file replaces an earlier one's values at the same tag and step.
    """
    rows = []
    for events in event_files(tensorboard_dir, {"scalars": 0}):
        logged = events.Tags()["scalars"]
        for tag in logged if tags is None else set(tags) & set(logged):
            rows += [(tag, event.step, event.value) for event in events.Scalars(tag)]
    scalars = pd.DataFrame(rows, columns=["tag", "step", "value"]).astype({"step": "int64", "value": "float32"})
    return scalars.drop_duplicates(["tag", "step"], keep="last").sort_values(["tag", "step"], ignore_index=True)


def image_tags(tensorboard_dir: Path) -> set[str]:
    """The tags of the images (e.g. DreamerV2's dream videos) in the event files under ``tensorboard_dir``."""
    return {tag for events in event_files(tensorboard_dir, {"images": 1}) for tag in events.Tags()["images"]}


def write_scalars(run_dir: Path) -> None:
    """Every scalar of the TensorBoard event files of the run in ``run_dir``, to ``RUN/scalars.csv``: tag, step, value."""
    temporary = run_dir / f"{SCALARS_FILE}.tmp"
    read_scalars(run_dir / TENSORBOARD_DIR).to_csv(temporary, index=False)
    temporary.replace(run_dir / SCALARS_FILE)


def run_scalars(run_dir: Path, tags: list[str]) -> pd.DataFrame | None:
    """
    Scalars ``tags`` of the benchmark run in ``run_dir`` (columns as :func:`read_scalars`): from its TensorBoard event
    files if it has any, else from its ``scalars.csv``; ``None`` if it has neither.
    """
    tensorboard_dir = run_dir / TENSORBOARD_DIR
    if any(tensorboard_dir.rglob(EVENT_FILES)):
        return read_scalars(tensorboard_dir, tags)
    if not (run_dir / SCALARS_FILE).is_file():
        return None
    scalars = pd.read_csv(run_dir / SCALARS_FILE, dtype={"tag": str, "step": "int64", "value": "float32"})
    return scalars[scalars["tag"].isin(tags)].sort_values(["tag", "step"], ignore_index=True)
