"""``scripts/tb_scalars.py``: TensorBoard scalars of benchmark runs at chosen frames, on hand-written event files."""

import sys
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
from tb_scalars import main, read_scalars  # noqa: E402 (the script folder is not a package)


def write_events(log_dir: Path, tag: str, points: dict[int, float]) -> None:
    """One event file in ``log_dir`` with ``tag`` at each step: value of ``points``."""
    writer = SummaryWriter(str(log_dir))
    for step, value in points.items():
        writer.add_scalar(tag, value, step)
    writer.close()


def run_logs(root: Path, algo: str, seed: int) -> Path:
    """The TensorBoard folder of a benchmark run, as ``scripts/benchmark.py --tensorboard`` lays it out."""
    return root / "runs" / algo / "Breakout-MinAtar" / f"seed_{seed}" / "tensorboard" / "Breakout-MinAtar" / "DreamerV2_1"


def test_resumed_part_replaces_the_earlier_values(tmp_path: Path):
    log_dir = run_logs(tmp_path, "dreamerv2", 0)
    write_events(log_dir, "train/kl", {100: 1.0, 200: 2.0, 300: 3.0})
    # A resumed part from the 200-frame checkpoint writes a second file into the same folder
    write_events(log_dir, "train/kl", {300: 30.0, 400: 40.0})
    scalars = read_scalars(log_dir.parents[1], ["train/kl", "train/absent"])
    assert scalars["step"].tolist() == [100, 200, 300, 400]
    assert scalars["value"].tolist() == [1.0, 2.0, 30.0, 40.0]


def test_tables_average_the_window_then_the_seeds(tmp_path: Path, capsys: pytest.CaptureFixture):
    write_events(run_logs(tmp_path, "dreamerv2", 0), "train/kl", {100: 1.0, 150: 3.0, 200: 5.0})
    write_events(run_logs(tmp_path, "dreamerv2", 1), "train/kl", {100: 4.0, 200: 8.0})
    write_events(run_logs(tmp_path, "dreamerv2@other", 0), "train/kl", {200: 7.0})
    main(["--root", str(tmp_path), "--tags", "train/kl", "train/absent", "--at", "100", "200", "--window", "60"])
    output = capsys.readouterr().out
    # At 100: the values in (40, 100], 1 and 4; at 200: those in (140, 200], seed 0's mean 4 and seed 1's 8
    assert "| dreamerv2 | Breakout-MinAtar | 2 | 2.5 | 6 |" in output
    # A run that logged nothing in a window has a blank cell there
    assert "| dreamerv2@other | Breakout-MinAtar | 1 |  | 7 |" in output
    assert "| (no run logged train/absent) |" in output

    main(["--root", str(tmp_path), "--algos", "dreamerv2@other", "--tags", "train/kl", "--at", "200"])
    output = capsys.readouterr().out
    assert "| dreamerv2@other |" in output and "| dreamerv2 |" not in output


def test_selection_without_runs_is_an_error(tmp_path: Path):
    write_events(run_logs(tmp_path, "dreamerv2", 0), "train/kl", {100: 1.0})
    with pytest.raises(SystemExit, match=r"no run with TensorBoard logs under .* matches the selection"):
        main(["--root", str(tmp_path), "--envs", "SpaceInvaders-MinAtar"])
