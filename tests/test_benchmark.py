"""
End to end test of ``scripts/benchmark.py --quick``: a tiny grid through the RL Zoo, the final scores of its runs, its
report, and resuming.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
TB_SCALARS = SCRIPT.parent / "tb_scalars.py"
sys.path.insert(0, str(SCRIPT.parent))
from benchmark import FINAL_EVAL_SEED_OFFSET, GLIBC_MALLOC_SETTINGS  # noqa: E402 (the script folder is not a package)

# DQN as a variant: its own rows and runs folder, its own hyperparameters on top of the quick ones
ALGOS = ("dreamerv2", "dqn@batch16")
VARIANT = ["--algo-hyperparams", "dqn@batch16", "batch_size:16"]
# Final scores over 3 episodes, not the quick default
FINAL_EPISODES = ["--final-episodes", "3"]
GRID = ["--quick", "--algos", *ALGOS, *VARIANT, "--envs", "Breakout-MinAtar", "--seeds", "0", "--processes", "2"]
GRID += FINAL_EPISODES
REPORT = ("results.csv", "final.csv", "results.md", "learning_curves.png")
FINAL_COLUMNS = ["final_episodes", "final_mean_return", "final_std_return"]
#: Fields of a final score in run.json, apart from its time
SCORE = [*FINAL_COLUMNS, "final_eval_seed"]


def run_script(script: Path, root: Path, *args: str) -> str:
    """Run ``script`` on the grid in ``root``; return its output, failing on a non-zero exit code."""
    result = subprocess.run(
        [sys.executable, str(script), *args, "--root", str(root)], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def benchmark(root: Path, *args: str) -> str:
    """Run the benchmark script into ``root``; return its output."""
    return run_script(SCRIPT, root, *args)


def run_file(root: Path, algo: str) -> Path:
    """``run.json`` of the seed 0 run of ``algo`` on Breakout-MinAtar."""
    return root / "runs" / algo / "Breakout-MinAtar" / "seed_0" / "run.json"


def modification_times(root: Path) -> dict[Path, int]:
    """``st_mtime_ns`` of every file of the runs."""
    return {path: path.stat().st_mtime_ns for path in (root / "runs").rglob("*") if path.is_file()}


@pytest.mark.timeout(300)
def test_quick_grid_reports_and_resumes(tmp_path: Path):
    output = benchmark(tmp_path, *GRID)
    assert "skipped 0 finished, 2 to train" in output

    results = pd.read_csv(tmp_path / "results.csv")
    run_columns = ["algo", "env", "seed", "frames", "eval_episodes"]
    assert list(results.columns) == [*run_columns, "timesteps", "mean_return", "std_return", "wall_clock_s", "cpu_s"]
    assert set(results["algo"]) == set(ALGOS)
    assert set(results["env"]) == {"Breakout-MinAtar"}
    finals = pd.read_csv(tmp_path / "final.csv")
    assert list(finals.columns) == [*run_columns[:4], *FINAL_COLUMNS, "wall_clock_s", "cpu_s"]
    for algo in ALGOS:
        runs = results[results["algo"] == algo]
        assert runs["timesteps"].tolist() == [100, 200, 300]
        assert (runs["mean_return"] >= 0).all() and (runs["wall_clock_s"] > 0).all() and (runs["cpu_s"] > 0).all()
        info = json.loads(run_file(tmp_path, algo).read_text())
        # The allocator settings the run was given: the script's, unless the caller's environment sets them
        assert info["malloc"] == {name: os.environ.get(name, value) for name, value in GLIBC_MALLOC_SETTINGS.items()}
        # The final score: the requested episodes played, a seed apart from the training's, timed apart from it
        assert info["final_episodes"] == 3 and info["final_eval_seed"] == FINAL_EVAL_SEED_OFFSET
        assert 0 <= info["final_mean_return"] and 0 <= info["final_std_return"]
        assert info["final_eval_s"] > 0 and info["final_eval_cpu_s"] > 0
        segments = json.loads((run_file(tmp_path, algo).parent / "segments.json").read_text())
        assert info["wall_clock_s"] == segments[0]["wall_clock_s"] and info["cpu_s"] == segments[0]["cpu_s"]
        keys = [*FINAL_COLUMNS, "wall_clock_s", "cpu_s"]
        assert finals[finals["algo"] == algo][keys].to_numpy().tolist() == [pytest.approx([info[key] for key in keys])]
    config = next((tmp_path / "runs" / "dqn@batch16").glob("*/seed_0/dqn/Breakout-MinAtar_1/Breakout-MinAtar/config.yml"))
    assert dict(yaml.unsafe_load(config.read_text()))["batch_size"] == 16

    table = (tmp_path / "results.md").read_text()
    assert "| algo | env | frames | seeds | 0.1k | 0.2k | 0.3k |" in table
    for algo in ALGOS:
        last = results[results["algo"] == algo]["mean_return"].iloc[-1]
        score = json.loads(run_file(tmp_path, algo).read_text())["final_mean_return"]
        assert f"| {algo} | Breakout-MinAtar | {last:.2f} ± 0.00 | {score:.2f} ± 0.00 (n=1) | 300 | 1 | " in table
        curve = " | ".join(f"{x:.2f}" for x in results[results["algo"] == algo]["mean_return"])
        assert f"| {algo} | Breakout-MinAtar | 300 | 1 | {curve} |" in table
    image = plt.imread(tmp_path / "learning_curves.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    # Re-running the grid trains nothing and touches no file of the runs
    before = modification_times(tmp_path)
    output = benchmark(tmp_path, *GRID)
    assert "skipped 2 finished, 0 to train" in output
    assert modification_times(tmp_path) == before

    # The report is rebuilt from the runs alone
    for name in REPORT:
        (tmp_path / name).unlink()
    benchmark(tmp_path, "--report-only")
    assert all((tmp_path / name).is_file() for name in REPORT)
    assert pd.read_csv(tmp_path / "results.csv").equals(results)
    assert pd.read_csv(tmp_path / "final.csv").equals(finals)

    # Runs finished without a final score (as before it existed) get one from --final-eval-missing: the same score
    # again from the same model and seed; a run whose model is gone stays without one
    scored = json.loads(run_file(tmp_path, "dreamerv2").read_text())
    for algo in ALGOS:
        info = json.loads(run_file(tmp_path, algo).read_text())
        unscored = {key: value for key, value in info.items() if not key.startswith("final_")}
        run_file(tmp_path, algo).write_text(json.dumps(unscored))
    (run_file(tmp_path, "dqn@batch16").parent / "dqn" / "Breakout-MinAtar_1" / "Breakout-MinAtar.zip").unlink()
    output = benchmark(tmp_path, "--final-eval-missing", *FINAL_EPISODES)
    assert "2 finished runs without a final score: 1 to evaluate\n  no model: dqn@batch16 Breakout-MinAtar seed 0" in output
    rescored = json.loads(run_file(tmp_path, "dreamerv2").read_text())
    assert {key: rescored[key] for key in SCORE} == {key: scored[key] for key in SCORE}
    assert "final_mean_return" not in json.loads(run_file(tmp_path, "dqn@batch16").read_text())
    finals = pd.read_csv(tmp_path / "final.csv")
    assert finals[finals["algo"] == "dqn@batch16"][FINAL_COLUMNS].isna().all(axis=None)
    assert finals[finals["algo"] == "dreamerv2"]["final_mean_return"].tolist() == [pytest.approx(scored["final_mean_return"])]
    assert re.search(
        r"\| dqn@batch16 \| Breakout-MinAtar \| \d+\.\d\d ± 0\.00 \| n/a \| 300 \|", (tmp_path / "results.md").read_text()
    )

    # results.csv and final.csv keep the record of a run whose folder is gone
    shutil.rmtree(tmp_path / "runs" / "dqn@batch16")
    benchmark(tmp_path, "--report-only")
    assert pd.read_csv(tmp_path / "results.csv").equals(results)
    assert pd.read_csv(tmp_path / "final.csv").equals(finals)
    assert "| dqn@batch16 | Breakout-MinAtar | " in (tmp_path / "results.md").read_text()
    # A run known only from results.csv gets a row without a final score in final.csv
    (tmp_path / "final.csv").unlink()
    benchmark(tmp_path, "--report-only")
    assert pd.read_csv(tmp_path / "final.csv").equals(finals)


@pytest.mark.timeout(300)
def test_dreamerv2_run_resumes_from_its_checkpoint(tmp_path: Path):
    # Budgets in multiples of the quick train_freq (16): checkpoints and evaluations fall on the same frames
    grid = ["--quick", "--algos", "dreamerv2", "--envs", "Breakout-MinAtar", "--seeds", "0", "--eval-freq", "96"]
    grid += ["--tensorboard"]
    benchmark(tmp_path, *grid, "--frames", "192")
    run_dir = tmp_path / "runs" / "dreamerv2" / "Breakout-MinAtar" / "seed_0"
    assert (run_dir / "checkpoint" / "checkpoint.pkl").is_file()
    # The first part's final model is not needed any more: the resumed run is scored with its last part's
    (run_dir / "dreamerv2" / "Breakout-MinAtar_1" / "Breakout-MinAtar.zip").unlink()

    # A larger budget resumes the finished run from its last checkpoint, as after an interruption
    output = benchmark(tmp_path, *grid, "--frames", "288")
    assert "skipped 0 finished, 1 to train" in output
    assert "Resuming from the checkpoint" in (run_dir / "train.log").read_text()
    assert sorted(path.name for path in (run_dir / "dreamerv2").iterdir()) == ["Breakout-MinAtar_1", "Breakout-MinAtar_2"]
    info = json.loads((run_dir / "run.json").read_text())
    segments = json.loads((run_dir / "segments.json").read_text())
    assert [segment["resumed"] for segment in segments] == [False, True] and info["segments"] == 2
    assert info["frames"] == 288
    # Scored over the quick budget's 5 episodes
    assert info["final_episodes"] == 5 and info["final_eval_seed"] == FINAL_EVAL_SEED_OFFSET
    assert info["cpu_s"] == pytest.approx(sum(segment["cpu_s"] for segment in segments), abs=0.01)
    results = pd.read_csv(tmp_path / "results.csv")
    assert results[results["frames"] == 288]["timesteps"].tolist() == [96, 192, 288]
    # The first part's evaluations are the same in both records
    first = results[results["frames"] == 192].set_index("timesteps")["mean_return"]
    resumed = results[results["frames"] == 288].set_index("timesteps")["mean_return"]
    assert first.equals(resumed.loc[[96, 192]])

    # Its TensorBoard logs go on in the resumed part: scripts/tb_scalars.py reads the losses of both parts
    tables = run_script(TB_SCALARS, tmp_path, "--tags", "train/world_model_loss", "--at", "192", "288", "--window", "96")
    assert re.search(r"\| dreamerv2 \| Breakout-MinAtar \| 1 \| \d[\d.e+-]* \| \d[\d.e+-]* \|", tables), tables
