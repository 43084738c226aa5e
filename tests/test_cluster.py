"""
Beyond one process pool (docs/cluster.md): a benchmark grid whose runs are tasks of a local Ray cluster started by the
grid (``--ray``), and an Optuna study of the RL Zoo filled by two worker processes at once through a journal file.
"""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest
from conftest import ZOO_TINY
from test_benchmark import benchmark, modification_times

from sb3_dreamer.benchmark.layout import Run, read_evaluations
from sb3_dreamer.benchmark.ray_grid import INSTALL, import_ray

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason=f"--ray needs {INSTALL}")
# One local Ray cluster at a time: the tests of this module share a worker under pytest -n
pytestmark = pytest.mark.xdist_group("ray")

#: A local Ray cluster of two CPUs: two runs at a time, one torch thread each
RAY = ["--ray", "--processes", "2", "--threads", "1"]
ALGOS = ("ppo", "dqn")
ENVS = ("Breakout-MinAtar", "Asterix-MinAtar")
GRID = ["--quick", "--algos", *ALGOS, "--envs", *ENVS, "--seeds", "0", "--final-episodes", "2"]


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` every 0.2 s until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {timeout} s")
        time.sleep(0.2)


def processes_naming(path: Path) -> list[psutil.Process]:
    """The running processes whose command line names ``path``."""
    return [process for process in psutil.process_iter(["cmdline"]) if str(path) in " ".join(process.info["cmdline"] or ())]


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=re.escape(INSTALL)):
        import_ray()


@needs_ray
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_grid_on_ray_runs_each_run_once_and_skips_finished_runs(tmp_path: Path):
    output = benchmark(tmp_path, *RAY, *GRID)
    assert "4 runs: skipped 0 finished, 4 to train" in output and "Ray cluster: 2 CPUs" in output
    for run in (Run(algo, env, 0) for algo in ALGOS for env in ENVS):
        run_dir = run.directory(tmp_path)
        # One zoo process made one log folder, one training part ended, one final score
        assert [path.name for path in (run_dir / run.algo).iterdir()] == [f"{run.env}_1"], run
        assert len(json.loads((run_dir / "segments.json").read_text())) == 1, run
        info = json.loads((run_dir / "run.json").read_text())
        assert info["threads"] == 1 and info["final_episodes"] == 2 and info["frames"] == 300, run
    final = pd.read_csv(tmp_path / "final.csv")
    assert len(final) == 4 and final["final_mean_return"].notna().all()

    # Every run is finished: no Ray cluster is started, and nothing is written into the runs
    times = modification_times(tmp_path)
    output = benchmark(tmp_path, *RAY, *GRID)
    assert "4 runs: skipped 4 finished, 0 to train" in output and "Ray cluster" not in output
    assert modification_times(tmp_path) == times


@needs_ray
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_interrupted_dreamerv2_run_resumes_from_its_checkpoint_on_ray(tmp_path: Path):
    root = tmp_path / "bench"
    # Budgets in multiples of the quick train_freq (16): checkpoints and evaluations fall on the same frames
    grid = [*RAY, "--quick", "--algos", "dreamerv2", "--envs", "Breakout-MinAtar", "--seeds", "0"]
    grid += ["--frames", "960", "--eval-freq", "96", "--checkpoint-freq", "96"]
    run_dir = Run("dreamerv2", "Breakout-MinAtar", 0).directory(root)
    command = [sys.executable, "-m", "sb3_dreamer.benchmark", *grid, "--root", str(root)]
    with open(tmp_path / "grid.log", "w") as log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT) as driver:
        # SIGTERM once the run has its first checkpoint, some 860 frames before its end
        wait_for(lambda: (run_dir / "checkpoint" / "checkpoint.pkl").is_file() or driver.poll() is not None, timeout=900)
        driver.send_signal(signal.SIGTERM)
        driver.wait(timeout=120)
    output = (tmp_path / "grid.log").read_text()
    assert driver.returncode == 130 and "interrupted" in output, output
    assert not (run_dir / "run.json").exists()
    # Cancelling the run's task stopped its zoo process: nothing writes into the run any more
    wait_for(lambda: not processes_naming(root), timeout=60)

    output = benchmark(root, *grid)
    assert "1 runs: skipped 0 finished, 1 to train" in output
    assert "Resuming from the checkpoint" in (run_dir / "train.log").read_text()
    assert sorted(path.name for path in (run_dir / "dreamerv2").iterdir()) == ["Breakout-MinAtar_1", "Breakout-MinAtar_2"]
    # The interrupted part left a segment only if it ran long enough to record its times while running (every
    # PROGRESS_INTERVAL s: a slow machine), without a return code; the resumed part ended with 0. The evaluations of
    # both parts make the whole run's
    parts = [(segment["resumed"], segment["returncode"]) for segment in json.loads((run_dir / "segments.json").read_text())]
    assert parts in ([(True, 0)], [(False, None), (True, 0)]), parts
    assert json.loads((run_dir / "run.json").read_text())["frames"] == 960
    assert list(read_evaluations(run_dir)) == list(range(96, 961, 96))


@pytest.mark.timeout(900)
def test_optuna_study_shared_by_two_workers_through_a_journal_file(tmp_path: Path):
    storage = tmp_path / "studies" / "dreamer.log"
    args = ["-m", "rl_zoo3.train", "--algo", "dreamerv2", "--env", "BreakoutPOMDP-MinAtar", "-optimize"]
    args += ["--sampler", "random", "--pruner", "none", "--eval-episodes", "2", "--no-optim-plots", "--n-jobs", "1"]
    args += ["--storage", str(storage), "--study-name", "dreamer", "--env-kwargs", "max_episode_steps:200"]
    # The tiny model with the sampled latent sizes, and a few updates at most whatever the sampled train ratio
    tiny = [hyperparameter for hyperparameter in ZOO_TINY if not hyperparameter.startswith("policy_kwargs")]
    tiny += ["policy_kwargs:dict(embedding_dim=16,rssm_hidden_size=16,cnn_depth=4,head_units=16,head_layers=1)"]
    args += ["--hyperparams", *tiny, "learning_starts:150"]
    # Without GPU, one torch thread each, as conftest.run
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, *args, "-n", "170", "--n-trials", "1", "--seed", str(seed)], cwd=tmp_path, env=environment
        )
        for seed in (0, 1)
    ]
    assert [worker.wait(timeout=600) for worker in workers] == [0, 0]
    journal = optuna.storages.journal.JournalFileBackend(str(storage))
    study = optuna.load_study(study_name="dreamer", storage=optuna.storages.JournalStorage(journal))
    assert sorted(trial.number for trial in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == [0, 1]

    # A worker killed mid-trial leaves its trial running; optuna tell fails it
    with subprocess.Popen([sys.executable, *args, "-n", "100000", "--n-trials", "1"], cwd=tmp_path, env=environment) as worker:
        wait_for(lambda: len(study.trials) == 3, timeout=300)
        worker.kill()
    assert study.trials[2].state == optuna.trial.TrialState.RUNNING
    tell = ["tell", "--storage", str(storage), "--study-name", "dreamer", "--trial-number", "2", "--state", "fail"]
    subprocess.run([Path(sys.executable).with_name("optuna"), *tell], check=True, timeout=120)
    assert study.trials[2].state == optuna.trial.TrialState.FAIL
