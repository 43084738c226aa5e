"""
Give the runs of one algorithm name under a benchmark root another name: when a variant ``ALGO@NAME`` becomes the
packaged setting, its runs become ``ALGO``'s rows and the earlier packaged runs a variant, without training again.
"""

import json
from pathlib import Path

from sb3_dreamer.benchmark.extras import benchmark_extra
from sb3_dreamer.benchmark.layout import DREAM_GIF, GIF_ALGO, RUN_FILE, RUNS_DIR, base_algo, write_json
from sb3_dreamer.benchmark.records import FINAL_CSV, RESULTS_CSV

with benchmark_extra():
    import pandas as pd

#: the ``run.json`` key that lists the names a relabelled run had before, oldest first
EARLIER_NAMES = "relabelled_from"


def relabel_runs(root: Path, source: str, target: str) -> list[Path]:
    """
    Move every run of ``source`` under ``root`` to ``target``: its folder (``runs/SOURCE/ENV/seed_N`` to
    ``runs/TARGET/ENV/seed_N``), the ``algo`` of its ``run.json`` (which adds ``source`` to :data:`EARLIER_NAMES`; the
    recorded command and hyperparameters stay as they ran), and its rows of ``results.csv`` and ``final.csv``, also
    those of runs whose folder is gone. Where ``source`` or ``target`` is the algorithm of the dream GIFs
    (:data:`GIF_ALGO`), the GIFs of the moved envs are removed: they showed the other setting's runs (the report
    writes them again from the event files of the runs on disk, where kept).
    Nothing moves (``ValueError``) where the two names are of different algorithms, ``source`` has no runs or an
    unfinished one, or ``target`` already has runs or rows.

    :return: the moved runs' new folders
    """
    if base_algo(source) != base_algo(target) or source == target:
        raise ValueError(f"relabel {source} as {target}: give another name of the same algorithm {base_algo(source)}")
    source_dir, target_dir = root / RUNS_DIR / source, root / RUNS_DIR / target
    csvs = {name: pd.read_csv(root / name) for name in (RESULTS_CSV, FINAL_CSV) if (root / name).is_file()}
    recorded = sum(int((table["algo"] == target).sum()) for table in csvs.values())
    if target_dir.exists() or recorded:
        raise ValueError(f"{target} already has runs ({target_dir}, {recorded} rows of the CSVs): relabel them first")
    runs = sorted(source_dir.glob("*/seed_*"))
    unfinished = [run for run in runs if not (run / RUN_FILE).is_file()]
    if unfinished:
        raise ValueError(f"unfinished runs of {source}: {', '.join(map(str, unfinished))}; finish or remove them first")
    if not runs and not any((table["algo"] == source).any() for table in csvs.values()):
        raise ValueError(f"no runs of {source} under {root}")
    moved = []
    for run in runs:
        info = json.loads((run / RUN_FILE).read_text())
        info.update(algo=target, **{EARLIER_NAMES: [*info.get(EARLIER_NAMES, []), source]})
        write_json(run / RUN_FILE, info)
        destination = target_dir / run.relative_to(source_dir)
        destination.parent.mkdir(parents=True, exist_ok=True)
        moved.append(run.rename(destination))
    for folder in [*source_dir.glob("*"), source_dir]:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    for name, table in csvs.items():
        table["algo"] = table["algo"].replace(source, target)
        table.to_csv(root / name, index=False)
    if GIF_ALGO in (source, target):
        for env in sorted({path.parent.name for path in moved}):
            (root / DREAM_GIF.format(algo=GIF_ALGO, env=env)).unlink(missing_ok=True)
    return moved
