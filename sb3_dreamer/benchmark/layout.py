"""Where a benchmark run keeps its files under ROOT, and reading its evaluations and state from them."""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RUNS_DIR = "runs"
TENSORBOARD_DIR = "tensorboard"
#: TensorBoard event files (under ``RUN/tensorboard``) and the CSV of every scalar in them that a finished run keeps
EVENT_FILES = "events.out.tfevents.*"
SCALARS_FILE = "scalars.csv"
#: Dream video of the first finished run of GIF_ALGO on ENV with one, in ROOT: at most one GIF per id
DREAM_GIF = "dream_{algo}_{env}.gif"
GIF_ALGO = "dreamerv2"
RUN_FILE = "run.json"
LOG_FILE = "train.log"
SEGMENTS_FILE = "segments.json"
#: Where the final evaluation's subprocess writes its score, read into ``run.json`` and then removed
FINAL_EVAL_FILE = "final_eval.json"
#: Checkpoint directory of a DreamerV2 run
CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True)
class Run:
    """One training run of the grid."""

    #: ``ALGO`` or a variant ``ALGO@NAME``
    algo: str
    env: str
    seed: int

    @property
    def zoo_algo(self) -> str:
        """The zoo's ``--algo``: the algorithm without the variant name."""
        return base_algo(self.algo)

    def directory(self, root: Path) -> Path:
        """Deterministic folder of the run."""
        return root / RUNS_DIR / self.algo / self.env / f"seed_{self.seed}"

    def parts(self, root: Path) -> list[Path]:
        """The zoo log folders of the run (``ALGO/ENV_1``, ``ENV_2``, ...: one per part of a resumed run), in order."""
        parts = self.directory(root).glob(f"{self.zoo_algo}/{self.env}_*")
        return sorted(parts, key=lambda path: int(path.name.rsplit("_", 1)[1]))

    def final_model(self, root: Path) -> Path:
        """The model that the zoo saved at the end of the run: ``ENV.zip`` in the zoo log folder of its last part."""
        return self.parts(root)[-1] / f"{self.env}.zip"

    def __str__(self) -> str:
        return f"{self.algo} {self.env} seed {self.seed}"


def base_algo(algo: str) -> str:
    """The algorithm of ``ALGO`` or of a variant ``ALGO@NAME``."""
    return algo.split("@", 1)[0]


def is_variant(algo: str) -> bool:
    """Whether ``algo`` names a variant ``ALGO@NAME`` (other hyperparameters of ALGO), not a packaged algorithm."""
    return base_algo(algo) != algo


def add_run_selection(parser: argparse.ArgumentParser) -> None:
    """The options that select runs under a benchmark root: ``--root``, ``--algos``, ``--envs``, ``--seeds``."""
    parser.add_argument("--root", type=Path, default=Path("benchmarks/minatar-100k"))
    parser.add_argument("--algos", nargs="+", default=[], help="algos or variants ALGO@NAME (default: all)")
    parser.add_argument("--envs", nargs="+", default=[], help="env ids (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[], help="seeds (default: all)")


def selected_runs(root: Path, algos: list[str], envs: list[str], seeds: list[int]) -> list[Run]:
    """The runs with a folder under ``root`` (finished or not) of ``algos``, ``envs`` and ``seeds`` (empty: all), by path."""
    runs = []
    for run_dir in sorted((root / RUNS_DIR).glob("*/*/seed_*")):
        run = Run(run_dir.parent.parent.name, run_dir.parent.name, int(run_dir.name.removeprefix("seed_")))
        if (not algos or run.algo in algos) and (not envs or run.env in envs) and (not seeds or run.seed in seeds):
            runs.append(run)
    return runs


def finished_runs(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``run.json`` and its content of every finished run under ``root``, sorted by path."""
    return [(path, json.loads(path.read_text())) for path in sorted(root.glob(f"{RUNS_DIR}/*/*/seed_*/{RUN_FILE}"))]


def find_evaluations(run_dir: Path) -> list[Path]:
    """
    The zoo's ``evaluations.npz`` files of a run (the zoo writes them to ``-f``/ALGO/ENV_ID_N/), one per part of a
    resumed run, in the order of the parts.
    """
    return sorted(run_dir.glob("*/*/evaluations.npz"), key=lambda path: int(path.parent.name.rsplit("_", 1)[1]))


def read_evaluations(run_dir: Path) -> dict[int, np.ndarray]:
    """Episode returns (eval_episodes,) by timesteps of every part of a run; a later part's replace an earlier one's."""
    evaluations: dict[int, np.ndarray] = {}
    for path in find_evaluations(run_dir):
        with np.load(path) as data:
            evaluations.update(zip(data["timesteps"].tolist(), data["results"], strict=True))
    return dict(sorted(evaluations.items()))


def is_finished(run_dir: Path, frames: int) -> bool:
    """Whether the run has finished successfully with at least ``frames`` frames."""
    run_file = run_dir / RUN_FILE
    if not run_file.is_file() or not find_evaluations(run_dir):
        return False
    return json.loads(run_file.read_text())["frames"] >= frames


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to a temporary file renamed onto ``path``, so that the file is always whole."""
    path.with_name(f"{path.name}.tmp").write_text(json.dumps(data, indent=2) + "\n")
    path.with_name(f"{path.name}.tmp").replace(path)
