"""
The scripts that read benchmark runs' TensorBoard logs (scalars at chosen frames, dream GIFs), and what the benchmark
keeps of a finished run's logs (``scalars.csv``, a dream GIF), on hand-written logs.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_model
from PIL import Image
from stable_baselines3.common.logger import configure
from torch.utils.tensorboard import SummaryWriter

from sb3_dreamer.benchmark import dreams
from sb3_dreamer.benchmark.export import export_tensorboard
from sb3_dreamer.benchmark.layout import Run
from sb3_dreamer.benchmark.scalar_tables import main
from sb3_dreamer.benchmark.scalars import read_scalars
from sb3_dreamer.world_model.diagnostics import DREAM_TAG, write_gif_summary


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


def write_dreams(log_dir: Path, shades: dict[int, int]) -> None:
    """One event file in ``log_dir`` with a 3-frame dream video at each step: frame t's pixels are all ``shades[step] + t``."""
    logger = configure(str(log_dir), ["tensorboard"])
    for step, shade in shades.items():
        frames = np.full((3, 8, 12, 3), shade, dtype=np.uint8) + np.arange(3, dtype=np.uint8)[:, None, None, None]
        write_gif_summary(logger, DREAM_TAG, frames, fps=4, step=step)
    logger.close()


def test_dream_gif_at_or_before_a_frame(tmp_path: Path, capsys: pytest.CaptureFixture):
    log_dir = run_logs(tmp_path, "dreamerv2", 0)
    write_dreams(log_dir, {100: 50, 200: 100})
    write_dreams(log_dir, {200: 150, 300: 200})  # a resumed part from the 100-frame checkpoint
    run_dir, output = log_dir.parents[2], tmp_path / "dream.gif"
    for at, step, shade in ((150, 100, 50), (250, 200, 150), (None, 300, 200)):
        dreams.main([str(run_dir), str(output), *([] if at is None else ["--at", str(at)])])
        assert f"the dream video at {step} frames" in capsys.readouterr().out
        gif = Image.open(output)
        assert (gif.n_frames, gif.size) == (3, (12, 8))
        assert np.asarray(gif.convert("RGB"))[0, 0].tolist() == [shade] * 3

    with pytest.raises(SystemExit, match=r"no diagnostics/dream image under .* at or before 99 frames: the first is at 100"):
        dreams.main([str(run_dir), str(output), "--at", "99"])
    write_events(run_logs(tmp_path, "dreamerv2", 1), "train/kl", {100: 1.0})
    with pytest.raises(SystemExit, match="no diagnostics/dream image in the TensorBoard logs under"):
        dreams.main([str(log_dir.parents[2].with_name("seed_1")), str(output)])


def test_finished_run_keeps_its_scalars_and_a_dream_gif(tmp_path: Path, capsys: pytest.CaptureFixture):
    log_dir = run_logs(tmp_path, "dreamerv2", 0)
    write_events(log_dir, "train/kl", {100: 1.0, 200: 2.0})
    write_events(log_dir, "train/world_model_loss", {100: 0.5, 300: 0.25})
    write_dreams(log_dir, {100: 50, 200: 100})
    run, gif = Run("dreamerv2", "Breakout-MinAtar", 0), tmp_path / "dream_dreamerv2_Breakout-MinAtar.gif"
    assert export_tensorboard(run, tmp_path) == [
        "dreamerv2 Breakout-MinAtar seed 0: wrote scalars.csv",
        "dreamerv2 Breakout-MinAtar seed 0: wrote dream_dreamerv2_Breakout-MinAtar.gif: the dream video at 200 frames",
    ]
    # Every scalar tag, as logged
    scalars_file = run.directory(tmp_path) / "scalars.csv"
    scalars = pd.read_csv(scalars_file)
    assert list(scalars.columns) == ["tag", "step", "value"]
    assert scalars.to_numpy().tolist() == [
        ["train/kl", 100, 1.0],
        ["train/kl", 200, 2.0],
        ["train/world_model_loss", 100, 0.5],
        ["train/world_model_loss", 300, 0.25],
    ]
    # The last dream video
    assert np.asarray(Image.open(gif).convert("RGB"))[0, 0].tolist() == [100] * 3

    # Nothing to do again; an event file newer than scalars.csv (a resumed part) has it written again
    assert export_tensorboard(run, tmp_path) == []
    event_file = next(log_dir.glob("events.out.tfevents.*"))
    os.utime(event_file, (event_file.stat().st_atime, scalars_file.stat().st_mtime + 10))
    assert export_tensorboard(run, tmp_path) == ["dreamerv2 Breakout-MinAtar seed 0: wrote scalars.csv"]
    # One GIF per algo x env: another seed's dream video does not replace it
    write_dreams(run_logs(tmp_path, "dreamerv2", 1), {400: 200})
    assert export_tensorboard(Run("dreamerv2", "Breakout-MinAtar", 1), tmp_path) == [
        "dreamerv2 Breakout-MinAtar seed 1: wrote scalars.csv"
    ]
    assert np.asarray(Image.open(gif).convert("RGB"))[0, 0].tolist() == [100] * 3

    # scripts/tb_scalars.py reads scalars.csv once the event files are gone (they are not committed)
    arguments = ["--root", str(tmp_path), "--tags", "train/kl", "train/world_model_loss", "--at", "200", "300"]
    main([*arguments, "--window", "150"])
    from_events = capsys.readouterr().out
    assert "| dreamerv2 | Breakout-MinAtar | 1 | 1.5 | 2 |" in from_events
    assert "| dreamerv2 | Breakout-MinAtar | 1 | 0.5 | 0.25 |" in from_events
    shutil.rmtree(run.directory(tmp_path) / "tensorboard")
    main([*arguments, "--window", "150"])
    assert capsys.readouterr().out == from_events


def test_dream_gif_of_a_saved_model(tmp_path: Path, capsys: pytest.CaptureFixture):
    model = tiny_model().learn(60)
    model.save(tmp_path / "model.zip")
    output = tmp_path / "dream.gif"
    dreams.main([str(tmp_path / "model.zip"), str(output), "--env", "Breakout-MinAtar", "--steps", "12", "--context", "4"])
    assert capsys.readouterr().out.strip() == f"wrote {output}: the dream of 12 steps, 4 observed"
    with Image.open(output) as gif:
        assert gif.n_frames == 12
    with pytest.raises(SystemExit):
        dreams.main([str(tmp_path / "model.zip"), str(output)])  # no --env
