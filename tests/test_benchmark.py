"""
End to end test of ``scripts/benchmark.py --quick`` (:mod:`sb3_dreamer.benchmark`): a tiny grid through the RL Zoo, the
final scores of its runs, its report, and resuming; and the report's statistics (bootstrap intervals, normalisation,
rliable's aggregates) on hand-made scores.
"""

import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch as th
import yaml

import sb3_dreamer
from sb3_dreamer.benchmark.aggregate import (
    LOW_FROM_RANDOM,
    LOW_FROM_RUNS,
    aggregate,
    aggregate_section,
    default_aggregate_algos,
    default_aggregate_choice,
    envs_per_algo,
    normalisation_bounds,
)
from sb3_dreamer.benchmark.cli import main, parse_args
from sb3_dreamer.benchmark.extras import import_rliable
from sb3_dreamer.benchmark.grid import (
    FINAL_EVAL_COMMAND,
    FINAL_EVAL_SEED_OFFSET,
    GLIBC_MALLOC_SETTINGS,
    Launcher,
    process_environment,
)
from sb3_dreamer.benchmark.layout import Run
from sb3_dreamer.benchmark.machine import BFLOAT16_CPU_FLAGS, code_facts, cpu_flags, cpu_model, machine_facts
from sb3_dreamer.benchmark.quick import FULL_BUDGET, QUICK_BOOTSTRAP_REPS, QUICK_BUDGET
from sb3_dreamer.benchmark.relabel import relabel_runs
from sb3_dreamer.benchmark.report import algo_colors, markdown_table, plot_learning_curves, variants_with_base
from sb3_dreamer.benchmark.scalars import read_scalars
from sb3_dreamer.benchmark.stats import BOOTSTRAP_REPS, bootstrap_interval, improvement_probability, normalise

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
TB_SCALARS = SCRIPT.parent / "tb_scalars.py"
REWARD_PREDICTION = SCRIPT.parent / "reward_prediction.py"
REPLAY_ACTIONS = SCRIPT.parent / "replay_actions.py"

# DQN as a variant: its own rows and runs folder, its own hyperparameters on top of the quick ones
ALGOS = ("dreamerv2", "dqn@batch16")
VARIANT = ["--algo-hyperparams", "dqn@batch16", "batch_size:16"]
# Final scores over 3 episodes, not the quick default
FINAL_EPISODES = ["--final-episodes", "3"]
GRID = ["--quick", "--algos", *ALGOS, *VARIANT, "--envs", "Breakout-MinAtar", "--seeds", "0", "--processes", "2"]
GRID += FINAL_EPISODES
REPORT = (
    "results.csv",
    "final.csv",
    "results.md",
    "learning_curves.png",
    "learning_curves_variants.png",
    "aggregate.png",
    "aggregate_curves.png",
)
FINAL_COLUMNS = ["final_episodes", "final_mean_return", "final_std_return"]
#: Fields of a final score in run.json, apart from its time
SCORE = [*FINAL_COLUMNS, "final_eval_seed"]


def run_script(script: Path, root: Path, *args: str) -> str:
    """Run ``script`` on the grid in ``root``; return its output, failing on a non-zero exit code."""
    result = subprocess.run(
        [sys.executable, str(script), *args, "--root", str(root)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def benchmark(root: Path, *args: str) -> str:
    """
    Run the benchmark script into ``root``, its report's intervals with fewer bootstrap replications than by default
    (the rest of the report does not depend on them), to keep the tests short; return its output.
    """
    return run_script(SCRIPT, root, *args, "--bootstrap-reps", "200")


def run_file(root: Path, algo: str) -> Path:
    """``run.json`` of the seed 0 run of ``algo`` on Breakout-MinAtar."""
    return root / "runs" / algo / "Breakout-MinAtar" / "seed_0" / "run.json"


def modification_times(root: Path) -> dict[Path, int]:
    """``st_mtime_ns`` of every file of the runs."""
    return {path: path.stat().st_mtime_ns for path in (root / "runs").rglob("*") if path.is_file()}


@pytest.mark.parametrize("quick", [False, True])
def test_quick_changes_the_default_budgets_only(quick: bool):
    grid = ["--algos", "dqn", "--envs", "Breakout-MinAtar", "--seeds", "0", *(["--quick"] if quick else [])]
    args = parse_args(grid)
    budget = (args.frames, args.eval_freq, args.eval_episodes, args.final_episodes, args.bootstrap_reps)
    assert budget == ((*QUICK_BUDGET, QUICK_BOOTSTRAP_REPS) if quick else (*FULL_BUDGET, BOOTSTRAP_REPS))
    args = parse_args([*grid, "--frames", "500", "--bootstrap-reps", "50"])
    assert (args.frames, args.bootstrap_reps) == (500, 50)


@pytest.mark.parametrize(
    "hyperparams, message",
    [
        # Two variants in one group: the second variant's name would reach the zoo as a hyperparameter
        (["--algo-hyperparams", "dqn@a", "batch_size:8", "dqn@b", "batch_size:16"], "'dqn@b' is no KEY:VALUE item"),
        (["--algo-hyperparams", "batch_size:8"], "got 'batch_size:8' first"),
        (["--algo-hyperparams", "dqn@a"], "dqn@a has no KEY:VALUE items"),
        (["--hyperparams", "n_envs"], "--hyperparams: 'n_envs' is no KEY:VALUE item"),
    ],
)
def test_malformed_hyperparams_are_named(hyperparams: list[str], message: str, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        parse_args(["--algos", "dqn@a", "dqn@b", "--envs", "Breakout-MinAtar", *hyperparams])
    assert message in capsys.readouterr().err


def test_well_formed_hyperparams_are_kept():
    variant = ["--algo-hyperparams", "dqn@a", "batch_size:8", "gamma:0.9"]
    args = parse_args(["--algos", "dqn@a", *variant, "--hyperparams", "n_envs:2"])
    assert args.algo_hyperparams == [["dqn@a", "batch_size:8", "gamma:0.9"]] and args.hyperparams == ["n_envs:2"]


def test_a_variant_reads_its_own_hyperparameter_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    """``--algo-conf ALGO@NAME FILE`` passes ``-conf FILE`` to the zoo for that variant's runs only."""
    official = Path(__file__).resolve().parents[1] / "sb3_dreamer" / "zoo" / "hyperparams" / "dreamerv2_official.yml"
    launcher = Launcher(
        parse_args(["--algos", "dreamerv2", "dreamerv2@official", "qrdqn", "--algo-conf", "dreamerv2@official", str(official)])
    )

    def conf(algo: str) -> str | None:
        command = launcher.command(Run(algo, "Breakout-MinAtar", 0), tmp_path, resume=False)
        return command[command.index("-conf") + 1] if "-conf" in command else None

    assert conf("dreamerv2@official") == str(official)
    assert conf("dreamerv2") is None
    assert conf("qrdqn") == str(official.parent / "qrdqn.yml")
    with pytest.raises(SystemExit):
        parse_args(["--algos", "dqn@a", "--algo-conf", "dqn@a", str(tmp_path / "missing.yml")])
    assert f"--algo-conf dqn@a: no file {tmp_path / 'missing.yml'}" in capsys.readouterr().err


def test_checkpoint_frequency(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Resumable runs checkpoint every ``--checkpoint-freq`` frames, by default a fifth of ``--eval-freq``."""

    def save_freq(*options: str) -> int | None:
        launcher = Launcher(parse_args(["--algos", "dreamerv3", "dqn", "--eval-freq", "10000", *options]))
        saves = {}
        for algo in ("dreamerv3", "dqn"):
            command = launcher.command(Run(algo, "Breakout-MinAtar", 0), tmp_path, resume=False)
            callbacks = [item for item in command if item.startswith("callback:")]
            saves[algo] = int(re.search(r"'save_freq': (\d+)", callbacks[0]).group(1)) if callbacks else None
        assert saves["dqn"] is None  # the baselines restart from scratch
        return saves["dreamerv3"]

    assert save_freq() == 2000
    assert save_freq("--checkpoint-freq", "500") == 500
    with pytest.raises(SystemExit):
        parse_args(["--algos", "dreamerv2", "--checkpoint-freq", "0"])
    assert "--checkpoint-freq must be a positive number of env frames, got 0" in capsys.readouterr().err


def test_times_per_run_are_means_of_the_known_ones():
    """A run without recorded times (NaN) is left out of the means of its row, which say over how many runs they are."""
    rows = [("dreamerv2", seed, wall, cpu) for seed, wall, cpu in ((0, np.nan, np.nan), (1, 7200.0, 3600.0))]
    rows += [("dqn", seed, 600.0, 300.0) for seed in (0, 1)]
    results = pd.DataFrame(
        [
            {"algo": algo, "env": "Breakout-MinAtar", "seed": seed, "frames": 100_000, "eval_episodes": 10,
             "timesteps": 100_000, "mean_return": 1.0, "std_return": 0.0, "wall_clock_s": wall, "cpu_s": cpu}
            for algo, seed, wall, cpu in rows
        ]
    )  # fmt: skip
    finals = pd.DataFrame(columns=["algo", "env", "seed", "frames", "final_mean_return"])
    table = markdown_table(results, finals)
    times = "| 2.00 h (n=1) | 60.0 min (n=1) | 14 (n=1) |"
    assert f"| dreamerv2 | Breakout-MinAtar | 1.00 ± 0.00 | n/a | 100,000 | 2 {times}" in table
    assert "| dqn | Breakout-MinAtar | 1.00 ± 0.00 | n/a | 100,000 | 2 | 10.0 min | 5.0 min | 167 |" in table


def test_status_of_unfinished_runs(tmp_path: Path, capsys: pytest.CaptureFixture):
    """``--status`` reads an unfinished run's files as the zoo and the grid leave them: a killed part, then a resumed one."""
    main(["--status", "--root", str(tmp_path)])
    assert capsys.readouterr().out.strip() == f"No unfinished runs under {tmp_path}"

    run_dir = tmp_path / "runs" / "dreamerv2@small" / "Breakout-MinAtar" / "seed_3"
    # Part 1 reached 2,500 frames and was killed; part 2 resumed its checkpoint at 2,000 frames
    parts = {1: ([(1.0, 1000), (2.0, 1500)], [1000, 2000]), 2: ([(3.0, 1200)], [3000])}
    for number, (episodes, timesteps) in parts.items():
        part = run_dir / "dreamerv2" / f"Breakout-MinAtar_{number}"
        part.mkdir(parents=True)
        rows = "".join(f"{r},{length},{t}\n" for t, (r, length) in enumerate(episodes))
        (part / "0.monitor.csv").write_text('#{"t_start": 0.0, "env_id": "Breakout-MinAtar"}\nr,l,t\n' + rows)
        results = [[t / 1000 - 1, t / 1000 + 1] for t in timesteps]
        np.savez(part / "evaluations.npz", timesteps=np.array(timesteps), results=np.array(results))
    # The zoo's arguments of the resumed part: it trains to 10,000 frames
    (part / "Breakout-MinAtar").mkdir()
    args = yaml.dump(OrderedDict(algo="dreamerv2", n_timesteps=10_000))
    (part / "Breakout-MinAtar" / "args.yml").write_text(args)
    resume = f"Resuming from the checkpoint in {run_dir / 'checkpoint'} at 2000 timesteps, to 10000\n"
    (run_dir / "train.log").write_text("Seed: 3\n" + resume)
    segments = [{"resumed": False, "returncode": None, "wall_clock_s": 100.0, "cpu_s": 90.0}]
    segments.append({"resumed": True, "returncode": None, "wall_clock_s": 50.0, "cpu_s": 45.0})
    (run_dir / "segments.json").write_text(json.dumps(segments))
    finished = tmp_path / "runs" / "dqn" / "Breakout-MinAtar" / "seed_0"
    finished.mkdir(parents=True)
    (finished / "run.json").write_text("{}")

    main(["--status", "--root", str(tmp_path)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| dreamerv2@small")]
    evaluations = "1k: 1.00, 2k: 2.00, 3k: 3.00"
    # Part 2 trained 1,200 frames in 50 s: the 6,800 frames left take 283 s at its pace
    row = f"| dreamerv2@small | Breakout-MinAtar | 3 | 3,200 | 2,000 | {evaluations} | 2.00 | 2 | 2.5 min | 4.7 min |"
    assert rows == [row]
    # Random steps before learning_starts take next to no time: the pace counts the 700 frames after 2,500
    config = yaml.dump(OrderedDict(batch_size=16, learning_starts=2500))
    (part / "Breakout-MinAtar" / "config.yml").write_text(config)
    main(["--status", "--root", str(tmp_path)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| dreamerv2@small")]
    assert rows == [row.replace("4.7 min", "8.1 min")]  # 6,800 frames at 14 a second
    # Within its first minute, part 2 has finished episodes but no record of its time: the pace is not part 1's
    (run_dir / "segments.json").write_text(json.dumps(segments[:1]))
    main(["--status", "--root", str(tmp_path)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| dreamerv2@small")]
    assert rows == [row.replace("| 2 | 2.5 min | 4.7 min |", "| 1 | 100.0 s | n/a |")]
    (run_dir / "segments.json").write_text(json.dumps(segments))

    # Part 2 just resumed, before its first episode ends: no frames of its own, no pace yet, no warning
    (part / "0.monitor.csv").write_text('#{"t_start": 0.0, "env_id": "Breakout-MinAtar"}\nr,l,t\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        main(["--status", "--root", str(tmp_path)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| dreamerv2@small")]
    row = f"| dreamerv2@small | Breakout-MinAtar | 3 | 2,000 | 2,000 | {evaluations} | 1.50 | 2 | 2.5 min | n/a |"
    assert rows == [row]


@pytest.mark.timeout(900)
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
        # The machine it ran on (the last part's)
        assert info["machine"]["logical_cpus"] == os.cpu_count() and info["machine"]["torch"] == th.__version__
        # The code it ran, as each of its parts
        assert info["code"] == code_facts() and info["code"]["sb3_dreamer"] == sb3_dreamer.__version__
        # The final score: the requested episodes played, a seed apart from the training's, timed apart from it
        assert info["final_episodes"] == 3 and info["final_eval_seed"] == FINAL_EVAL_SEED_OFFSET
        assert 0 <= info["final_mean_return"] and 0 <= info["final_std_return"]
        assert info["final_eval_s"] > 0 and info["final_eval_cpu_s"] > 0
        segments = json.loads((run_file(tmp_path, algo).parent / "segments.json").read_text())
        assert info["wall_clock_s"] == segments[0]["wall_clock_s"] and info["cpu_s"] == segments[0]["cpu_s"]
        assert segments[0]["commit"] == info["code"]["commit"]
        keys = [*FINAL_COLUMNS, "wall_clock_s", "cpu_s"]
        assert finals[finals["algo"] == algo][keys].to_numpy().tolist() == [pytest.approx([info[key] for key in keys])]
    config = next((tmp_path / "runs" / "dqn@batch16").glob("*/seed_0/dqn/Breakout-MinAtar_1/Breakout-MinAtar/config.yml"))
    assert dict(yaml.unsafe_load(config.read_text()))["batch_size"] == 16

    # The final score repeats from its settings, and the sampled policy is scored the same way
    info = json.loads(run_file(tmp_path, "dreamerv2").read_text())
    model = next(run_file(tmp_path, "dreamerv2").parent.glob("dreamerv2/Breakout-MinAtar_1/Breakout-MinAtar.zip"))
    settings = {"model": str(model), "algo": "dreamerv2", "env_id": "Breakout-MinAtar", "episodes": 3}
    settings |= {"seed": info["final_eval_seed"], "threads": info["threads"], "device": "cpu"}
    scores = {}
    for deterministic in (True, False):
        output = tmp_path / f"final_{deterministic}.json"
        command = [*FINAL_EVAL_COMMAND, json.dumps({**settings, "output": str(output), "deterministic": deterministic})]
        subprocess.run(command, check=True, env=process_environment(info["threads"], info["malloc"]))
        scores[deterministic] = json.loads(output.read_text())
    assert scores[True] == {key: info[key] for key in ("final_mean_return", "final_std_return", "final_episodes")}
    assert scores[False]["final_episodes"] == 3 and scores[False]["final_mean_return"] >= 0

    # The reward-prediction table's deterministic play replays the final score's episodes; DQN has no world model
    output = run_script(REWARD_PREDICTION, tmp_path, "--algos", "dreamerv2", "--episodes", "3", "--deterministic")
    cells = next(line for line in output.splitlines() if line.startswith("| dreamerv2 | Breakout-MinAtar | 0 | ")).split("|")
    # The model's frames (the run's budget, rounded up to a whole train_freq), its episodes and their mean return
    final_frames = int(cells[4])
    assert final_frames >= info["frames"] and cells[5].strip() == "3"
    assert float(cells[6]) == pytest.approx(info["final_mean_return"], abs=0.005)
    # The run's latest checkpoint plays too, with its own frames
    output = run_script(REWARD_PREDICTION, tmp_path, "--algos", "dreamerv2", "--episodes", "1", "--checkpoint")
    cells = next(line for line in output.splitlines() if line.startswith("| dreamerv2 | Breakout-MinAtar | 0 | ")).split("|")
    assert 0 < int(cells[4]) <= final_frames and cells[5].strip() == "1"
    # Its replay buffer's actions by the frames they were collected at, by Breakout's names for them
    output = run_script(REPLAY_ACTIONS, tmp_path, "--algos", "dreamerv2", "--bin", "100")
    assert "| frames | NOOP | LEFT | RIGHT | entropy (nats) |" in output and "\n| 0-100 | " in output
    result = subprocess.run(
        [sys.executable, str(REWARD_PREDICTION), "--root", str(tmp_path), "--algos", "dqn@batch16", "--episodes", "1"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "dqn has no world model to predict rewards with" in result.stderr

    table = (tmp_path / "results.md").read_text()
    assert "| algo | env | frames | seeds | 0.1k | 0.2k | 0.3k |" in table
    for algo in ALGOS:
        last = results[results["algo"] == algo]["mean_return"].iloc[-1]
        score = json.loads(run_file(tmp_path, algo).read_text())["final_mean_return"]
        assert f"| {algo} | Breakout-MinAtar | {last:.2f} ± 0.00 | {score:.2f} ± 0.00 (n=1) | 300 | 1 | " in table
        curve = " | ".join(f"{x:.2f}" for x in results[results["algo"] == algo]["mean_return"])
        assert f"| {algo} | Breakout-MinAtar | 300 | 1 | {curve} |" in table
        # A single seed: its final score and an interval of no width
        interval = f"{score:.2f} [{score:.2f}, {score:.2f}]"
        assert f"| {algo} | Breakout-MinAtar | 300 | 1 | {interval} | final score (3 episodes): seed 0 |" in table
    assert "## Scores with 95% bootstrap intervals" in table
    # The grid scored the random policy on its env (as many episodes as a final score), the floor of the normalisation
    random_scores = pd.read_csv(tmp_path / "random_policy.csv")
    assert random_scores[["env", "episodes", "seed"]].to_numpy().tolist() == [["Breakout-MinAtar", 3, FINAL_EVAL_SEED_OFFSET]]
    random_score = random_scores["mean_return"].iloc[0]
    assert f"| Breakout-MinAtar | 3 | {FINAL_EVAL_SEED_OFFSET} | {random_score:.2f} |" in table
    assert f"| Breakout-MinAtar | {random_score:.2f} | random policy |" in table
    # The aggregate leaves the variant out unless asked; one algorithm has no probability of improvement
    assert "## Aggregate over envs" in table and "Algorithms: dreamerv2 (`--aggregate-algos`" in table
    assert "Envs where each has runs of 300 frames (1): Breakout-MinAtar. Runs per env: dreamerv2 1." in table
    assert re.search(r"\| dreamerv2 \| 1 \|( \d\.\d\d \[\d\.\d\d, \d\.\d\d\] \|){3}\n", table), table
    assert "P(row > column)" not in table
    # The packaged algorithm's tables and the aggregate first, the variant's tables in a section of their own
    packaged, variants = table.split("\n## Variants\n")
    assert "## Aggregate over envs" in packaged and "| dqn@batch16 |" not in packaged
    assert variants.count("| dqn@batch16 | Breakout-MinAtar |") == 3 and "| dreamerv2 |" not in variants
    for name in ("learning_curves.png", "learning_curves_variants.png", "aggregate.png", "aggregate_curves.png"):
        image = plt.imread(tmp_path / name)
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
    table = (tmp_path / "results.md").read_text()
    assert re.search(r"\| dqn@batch16 \| Breakout-MinAtar \| \d+\.\d\d ± 0\.00 \| n/a \| 300 \|", table)
    # Its score is its last evaluation, and the report says so
    last = results[results["algo"] == "dqn@batch16"]["mean_return"].iloc[-1]
    interval = f"{last:.2f} [{last:.2f}, {last:.2f}]"
    assert f"| dqn@batch16 | Breakout-MinAtar | 300 | 1 | {interval} | **last evaluation** (2 episodes): seed 0 |" in table

    # Variants in the aggregate when named: both algorithms, their probabilities of improvement
    benchmark(tmp_path, "--report-only", "--aggregate-algos", "dreamerv2", "dqn@batch16")
    table = (tmp_path / "results.md").read_text()
    assert "Algorithms: dreamerv2, dqn@batch16 (" in table and "Runs per env: dreamerv2 1, dqn@batch16 1." in table
    assert "Of these 2 runs, 1 are scored by their last evaluation" in table
    assert "| P(row > column) | dreamerv2 | dqn@batch16 |" in table
    dreamer_score = json.loads(run_file(tmp_path, "dreamerv2").read_text())["final_mean_return"]
    # One run each on one env: the probability of improvement is 1, 0 or 1/2, and resampling cannot change it
    won = 1.0 if dreamer_score > last else 0.0 if dreamer_score < last else 0.5
    assert f"| dreamerv2 |  | {won:.2f} [{won:.2f}, {won:.2f}] |" in table
    assert f"| dqn@batch16 | {1 - won:.2f} [{1 - won:.2f}, {1 - won:.2f}] |  |" in table

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

    # A run whose first recorded part resumed a checkpoint lost its earlier parts' times: they are not known
    segments_file = run_file(tmp_path, "dreamerv2").parent / "segments.json"
    segments = json.loads(segments_file.read_text())
    segments_file.write_text(json.dumps([{**segments[0], "resumed": True}]))
    benchmark(tmp_path, "--report-only")
    finals = pd.read_csv(tmp_path / "final.csv")
    assert finals[finals["algo"] == "dreamerv2"][["wall_clock_s", "cpu_s"]].isna().all(axis=None)
    assert finals[finals["algo"] == "dqn@batch16"][["wall_clock_s", "cpu_s"]].notna().all(axis=None)
    table = (tmp_path / "results.md").read_text()
    assert re.search(r"\| dreamerv2 \| Breakout-MinAtar \| [^\n]* \| n/a \| n/a \| n/a \|\n", table)

    # Runs take another name of their algorithm (a variant promoted to the packaged setting, the packaged runs kept
    # as a variant): folders, run.json and the CSVs' rows, also of a run whose folder is gone (dqn@batch16's)
    results, finals = pd.read_csv(tmp_path / "results.csv"), pd.read_csv(tmp_path / "final.csv")
    (tmp_path / "dream_dreamerv2_Breakout-MinAtar.gif").write_bytes(b"GIF89a")
    benchmark(tmp_path, "--relabel", "dreamerv2", "dreamerv2@earlier")
    benchmark(tmp_path, "--relabel", "dqn@batch16", "dqn")
    assert not (tmp_path / "runs" / "dreamerv2").exists()
    info = json.loads(run_file(tmp_path, "dreamerv2@earlier").read_text())
    assert info["algo"] == "dreamerv2@earlier" and info["relabelled_from"] == ["dreamerv2"]
    # The dream GIF showed the runs that are no longer dreamerv2's
    assert not (tmp_path / "dream_dreamerv2_Breakout-MinAtar.gif").exists()
    renamed = {"dreamerv2": "dreamerv2@earlier", "dqn@batch16": "dqn"}
    for name, before in (("results.csv", results), ("final.csv", finals)):
        assert pd.read_csv(tmp_path / name).equals(before.assign(algo=before["algo"].replace(renamed)))
    packaged, variants = (tmp_path / "results.md").read_text().split("\n## Variants\n")
    assert "| dqn | Breakout-MinAtar |" in packaged and "| dreamerv2@earlier | Breakout-MinAtar |" in variants
    assert "| dreamerv2 |" not in packaged + variants and "dqn@batch16" not in packaged + variants
    # Nothing moves where the names are of two algorithms, or the new name has runs
    shutil.copytree(tmp_path / "runs" / "dreamerv2@earlier", tmp_path / "runs" / "dreamerv2")
    with pytest.raises(ValueError, match="another name of the same algorithm dreamerv2"):
        relabel_runs(tmp_path, "dreamerv2@earlier", "dqn@earlier")
    with pytest.raises(ValueError, match=r"dreamerv2 already has runs .* relabel them first"):
        relabel_runs(tmp_path, "dreamerv2@earlier", "dreamerv2")
    with pytest.raises(ValueError, match="no runs of dqn@batch16"):
        relabel_runs(tmp_path, "dqn@batch16", "dqn@other")
    assert run_file(tmp_path, "dreamerv2@earlier").is_file()
    (run_file(tmp_path, "dreamerv2").parent / "run.json").unlink()
    with pytest.raises(ValueError, match=r"unfinished runs of dreamerv2: .*seed_0; finish or remove them first"):
        relabel_runs(tmp_path, "dreamerv2", "dreamerv2@unfinished")


@pytest.mark.timeout(900)
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
    selection = ["--tags", "train/world_model_loss", "--at", "192", "288", "--window", "96"]
    tables = run_script(TB_SCALARS, tmp_path, *selection)
    assert re.search(r"\| dreamerv2 \| Breakout-MinAtar \| 1 \| \d[\d.e+-]* \| \d[\d.e+-]* \|", tables), tables

    # The finished run keeps every scalar of its event files in scalars.csv, written again after the resumed part
    # (float32 values, as logged, written in their shortest form)
    scalars = pd.read_csv(run_dir / "scalars.csv", dtype={"value": "float32"})
    logged = read_scalars(run_dir / "tensorboard")
    pd.testing.assert_frame_equal(scalars, logged, check_dtype=False, check_exact=True)
    assert scalars[scalars["tag"] == "train/world_model_loss"]["step"].max() > 192
    assert not list(tmp_path.glob("*.gif"))  # no dream video in so few gradient steps
    # scripts/tb_scalars.py reads it once the event files are gone (they are not committed)
    shutil.rmtree(run_dir / "tensorboard")
    assert run_script(TB_SCALARS, tmp_path, *selection) == tables


def test_running_parts_record_their_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A part's times are written while it runs, so that a part killed with the machine still counts."""
    import argparse

    import sb3_dreamer.benchmark.grid as grid

    monkeypatch.setattr(grid, "PROGRESS_INTERVAL", 0.2)
    launcher = Launcher(argparse.Namespace(threads=1, niceness=0))
    records: list[tuple] = []
    burn = "import time\nstart = time.process_time()\nwhile time.process_time() - start < 1.5: pass"
    with open(tmp_path / "log", "w") as log:
        returncode, wall_clock_s, cpu_s = launcher.execute(
            [sys.executable, "-c", burn], dict(os.environ), log, progress=lambda *times: records.append(times)
        )
    assert returncode == 0 and cpu_s >= 1.5
    assert len(records) >= 3 and all(record[0] is None for record in records)
    cpu_so_far = [record[2] for record in records]
    assert cpu_so_far == sorted(cpu_so_far) and 0 < cpu_so_far[-1] <= cpu_s
    assert all(0 < record[1] <= wall_clock_s for record in records)


def exact_bootstrap_quantile(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile of the mean of ``len(values)`` draws with replacement, from all ``n ** n`` equally likely draws."""
    means = np.sort([values[list(draw)].mean() for draw in itertools.product(range(len(values)), repeat=len(values))])
    return float(means[int(np.ceil(q * len(means))) - 1])


AUTOGROUP = Path("/proc/self/autogroup")
# The file is empty where the process belongs to a CPU cgroup (a container's), which then schedules it instead
IN_AN_AUTOGROUP = AUTOGROUP.exists() and bool(AUTOGROUP.read_text().strip())


@pytest.mark.skipif(not IN_AN_AUTOGROUP, reason="the process is in no autogroup (no autogroups, or a CPU cgroup)")
def test_runs_keep_the_benchmarks_nice_value_in_their_own_session():
    """A run's session (its scheduling group) gets the nice value of a niced benchmark process."""
    start_run = (
        "import subprocess; from sb3_dreamer.benchmark.cli import parse_args; from sb3_dreamer.benchmark.grid import "
        "start_in_own_session; niceness = parse_args(['--algos', 'dqn']).niceness; "
        "run = start_in_own_session(['sh', '-c', 'sleep 1; cat /proc/self/autogroup'], niceness, stdout=subprocess.PIPE, "
        "text=True); print(run.communicate()[0])"
    )
    output = subprocess.run(["nice", "-n", "7", sys.executable, "-c", start_run], capture_output=True, text=True, check=True)
    own_group = AUTOGROUP.read_text().split()[0]
    run_group, nice = re.fullmatch(r"(\S+) nice (-?\d+)", output.stdout.strip()).groups()
    assert run_group != own_group and int(nice) == os.nice(0) + 7


def test_variant_curves_sit_beside_their_algorithm_on_their_envs(tmp_path: Path):
    runs = [("dreamerv2", "Breakout-MinAtar"), ("dreamerv2", "Asterix-MinAtar"), ("dreamerv2@slow", "Breakout-MinAtar")]
    runs += [("dqn", "Breakout-MinAtar"), ("ppo@big", "Freeway-MinAtar")]
    results = pd.DataFrame(
        [(algo, env, 0, frames, float(frames)) for algo, env in runs for frames in (100, 200)],
        columns=["algo", "env", "seed", "timesteps", "mean_return"],
    )
    beside = variants_with_base(results)
    # The variants' rows, their algorithm's on the same envs; not its other envs, not other algorithms
    expected = [("dreamerv2", "Breakout-MinAtar"), ("dreamerv2@slow", "Breakout-MinAtar"), ("ppo@big", "Freeway-MinAtar")]
    assert sorted(set(zip(beside["algo"], beside["env"], strict=True))) == expected
    assert len(beside) == 2 * len(expected)
    # Distinct colours, the packaged algorithms' the same however many variants there are
    variants = [f"dreamerv2@v{index}" for index in range(25)]
    colors = algo_colors(["ppo", "dreamerv2", "dqn", *variants])
    assert len(set(colors.values())) == len(colors)
    assert [colors[algo] for algo in ("dqn", "dreamerv2", "ppo")] == list(plt.get_cmap("tab10").colors[:3])
    # Seven envs: two rows of at most five panels, as wide as five
    many = pd.concat([results.assign(env=f"Env{index}-v0") for index in range(7)])
    colors = dict.fromkeys(many["algo"].unique(), "k")
    plot_learning_curves(many, colors, tmp_path / "curves.png")
    height, width, _ = plt.imread(tmp_path / "curves.png").shape
    assert width == 5 * 5 * 120 and height == 2 * 3.8 * 120


def test_bootstrap_interval_of_the_mean():
    values = np.array([1.0, 2.0, 4.0, 8.0])
    low, high = bootstrap_interval(values)
    # The percentiles of 2000 resamples against those of the exact bootstrap distribution (256 draws), within 1% of
    # probability: the jumps of the exact distribution near 2.5% and 97.5% are a few % apart
    assert exact_bootstrap_quantile(values, 0.015) <= low <= exact_bootstrap_quantile(values, 0.035)
    assert exact_bootstrap_quantile(values, 0.965) <= high <= exact_bootstrap_quantile(values, 0.985)
    assert (low, high) == (1.5, 6.5)
    # Seeded: the same values give the same interval; one seed gives an interval of no width
    assert bootstrap_interval(values) == (low, high) and bootstrap_interval(np.array([3.0])) == (3.0, 3.0)


def scores_and_results(scores: dict[tuple[str, str], list[float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """
    Scores (rows of ``run_scores``) of runs of 100 frames, seeds 0, 1, ..., by algo and env, and their evaluations
    (``results`` rows): half the score at 50 frames, the score at 100.
    """
    runs, evaluations = [], []
    for (algo, env), values in scores.items():
        for seed, score in enumerate(values):
            run = {"algo": algo, "env": env, "seed": seed, "frames": 100}
            runs.append({**run, "score": score, "final": True, "episodes": 100})
            evaluations += [
                {**run, "timesteps": 50, "mean_return": score / 2},
                {**run, "timesteps": 100, "mean_return": score},
            ]
    return pd.DataFrame(runs), pd.DataFrame(evaluations)


def test_normalisation_from_the_lowest_return_to_the_best_score():
    scores, results = scores_and_results({("a", "E1"): [2.0, 8.0], ("b", "E1"): [4.0, 6.0], ("a", "E2"): [5.0, 5.0]})
    results.loc[(results["algo"] == "b") & (results["timesteps"] == 50) & (results["seed"] == 0), "mean_return"] = 0.5
    bounds = normalisation_bounds(scores, results)
    # E1: the lowest return is an evaluation (0.5 at 50 frames), the best the score 8; E2: every run scored 5
    assert bounds.loc["E1"].tolist() == [0.5, 8.0, LOW_FROM_RUNS] and bounds.loc["E2"].tolist() == [2.5, 5.0, LOW_FROM_RUNS]
    # Where the random policy was scored, its score is the low; envs it was not scored on, or not in the runs, as before
    random_scores = pd.DataFrame({"env": ["E1", "E9"], "mean_return": [1.25, 7.0]})
    bounds = normalisation_bounds(scores, results, random_scores)
    assert bounds.loc["E1"].tolist() == [1.25, 8.0, LOW_FROM_RANDOM] and bounds.loc["E2"].tolist() == [2.5, 5.0, LOW_FROM_RUNS]
    assert list(bounds.index) == ["E1", "E2"]
    assert normalise(np.array([0.5, 2.0, 8.0]), 0.5, 8.0) == pytest.approx([0.0, 0.2, 1.0])
    # All the same: 0, not a division by zero; no run above a random policy's low: 0 too
    assert normalise(np.array([[3.0, 1.0]]), np.array([3.0, 1.0]), np.array([3.0, 2.0])).tolist() == [[0.0, 0.0]]
    assert normalise(np.array([[1.0, 0.5]]), np.array([2.0, 2.0]), np.array([1.0, 0.5])).tolist() == [[0.0, 0.0]]


def test_aggregate_of_known_scores():
    # E1 from 0 (an evaluation of b) to 10, E2 from 0 to 20; b has a 5th seed on E1, left out (4 runs on E2)
    scores, results = scores_and_results(
        {
            ("a", "E1"): [2.0, 4.0, 6.0, 8.0],  # normalised 0.2, 0.4, 0.6, 0.8
            ("a", "E2"): [0.0, 10.0, 20.0, 20.0],  # 0, 0.5, 1, 1
            ("b", "E1"): [10.0, 0.0, 5.0, 5.0, 3.0],  # 1, 0, 0.5, 0.5; seed 4 left out
            ("b", "E2"): [4.0, 4.0, 4.0, 4.0],  # 0.2 each
            ("c", "E3"): [1.0],  # not in the aggregate, on another env
        }
    )
    # A run's evaluation at a point that the others lack is not on the curve
    extra = results.iloc[[0]].assign(timesteps=75)
    # Fewer bootstrap replications than the report's, to keep the test short: the point estimates do not depend on them
    result = aggregate(scores, pd.concat([results, extra], ignore_index=True), ["a", "b"], reps=200)
    assert result.envs == ["E1", "E2"] and result.frames == 100 and result.timesteps == [50, 100]
    assert result.bounds[["low", "high"]].to_numpy().tolist() == [[0.0, 10.0], [0.0, 20.0]]
    assert result.left_out[["algo", "env", "seed"]].to_numpy().tolist() == [["b", "E1", 4]]
    assert result.normalised["a"] == pytest.approx(np.array([[0.2, 0.0], [0.4, 0.5], [0.6, 1.0], [0.8, 1.0]]))
    # IQM: the mean of the middle 4 of the 8 (0.4, 0.5, 0.6, 0.8); mean of the per-env means (0.5, 0.625); optimality
    # gap 1 - mean of min(score, 1)
    assert result.metrics["a"] == pytest.approx([0.575, 0.5625, 0.4375])
    # b: 0.2, 0.2, 0.2, 0.2, 0, 0.5, 0.5, 1 -> middle 4 0.2, 0.2, 0.2, 0.5; means 0.5 and 0.2
    assert result.metrics["b"] == pytest.approx([0.275, 0.35, 0.65])
    for algo in ("a", "b"):
        low, high = result.intervals[algo]
        assert np.all(low <= result.metrics[algo] + 1e-9) and np.all(result.metrics[algo] <= high + 1e-9)
    # P(a > b): 8 of 16 pairs on E1, 12 of 16 on E2
    point, (low, high) = result.improvement[("a", "b")]
    assert point == pytest.approx(0.625) and low <= point <= high
    assert result.improvement[("b", "a")][0] == pytest.approx(0.375)
    assert result.improvement[("b", "a")][1] == pytest.approx([1 - high, 1 - low])
    # Curves: at 50 frames half the scores (IQM 0.2875: the middle 4 of 0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.5)
    assert result.curves["a"] == pytest.approx([0.2875, 0.575])
    # With a random policy's score of 5 on E1 as its low: a's 2, 4, 6, 8 there become -0.6, -0.2, 0.2, 0.6
    random_scores = pd.DataFrame({"env": ["E1"], "mean_return": [5.0]})
    over_random = aggregate(scores, results, ["a", "b"], reps=50, random_scores=random_scores)
    assert over_random.bounds["low_from"].tolist() == [LOW_FROM_RANDOM, LOW_FROM_RUNS]
    assert over_random.normalised["a"][:, 0] == pytest.approx([-0.6, -0.2, 0.2, 0.6])
    assert over_random.normalised["a"][:, 1] == pytest.approx(result.normalised["a"][:, 1])
    # Seeded: the same report again
    again = aggregate(scores, results, ["a", "b"], reps=200)
    assert all(np.array_equal(again.intervals[algo], result.intervals[algo]) for algo in ("a", "b"))
    # By default the algorithms that share the most envs; the section names the one left out
    assert envs_per_algo(scores, ["a", "b", "c"]) == {"a": {"E1", "E2"}, "b": {"E1", "E2"}, "c": {"E3"}}
    # With two runs or more per env (the report's default choice), c's one run counts no env
    assert envs_per_algo(scores, ["a", "b", "c"], min_runs=2) == {"a": {"E1", "E2"}, "b": {"E1", "E2"}, "c": set()}
    assert envs_per_algo(scores, ["a", "b"], min_runs=5) == {"a": set(), "b": {"E1"}}
    assert default_aggregate_choice(scores, ["a", "b", "c"]) == (["a", "b"], 2, {"c": 0})
    # A one-seed grid: one run per env is enough where no algorithm has two on an env
    first_seeds = scores[scores["seed"] == 0]
    assert default_aggregate_choice(first_seeds, ["a", "b", "c"]) == (["a", "b"], 1, {"c": 1})
    assert default_aggregate_choice(first_seeds, ["c"]) == (["c"], 1, {})
    assert default_aggregate_algos(envs_per_algo(scores, ["a", "b", "c"])) == ["a", "b"]
    assert "variants ALGO@NAME only when named; left out with such runs on fewer envs: c (1 env))" in aggregate_section(
        result, {"c": 1}
    )
    # No env where each algorithm has runs, or no runs at all
    assert aggregate(scores, results, ["c", "a"]) == "no env where each of c, a has runs of 100 frames"
    assert aggregate(scores, results, ["a", "d"]) == "no finished runs of d"


def test_default_aggregate_compares_the_most_algorithm_env_pairs():
    ids = [f"E{i}" for i in range(10)]
    envs = {"dqn": set(ids), "dreamerv2": set(ids[:8]), "dreamerv3": {ids[0]}, "ppo": set(ids), "qrdqn": set(ids)}
    # 4 algorithms on 8 envs (32 pairs) rather than 3 on 10 (30) or 5 on 1
    assert default_aggregate_algos(envs) == ["dqn", "dreamerv2", "ppo", "qrdqn"]
    # Once dreamerv3 covers dreamerv2's envs, 5 on 8 (40)
    assert default_aggregate_algos(envs | {"dreamerv3": set(ids[:8])}) == list(envs)
    # 4 on 10 (40) against 5 on 7 (35)
    assert default_aggregate_algos(envs | {"dreamerv2": set(ids), "dreamerv3": set(ids[:7])}) == [
        "dqn",
        "dreamerv2",
        "ppo",
        "qrdqn",
    ]
    # A tie goes to more algorithms; no algorithm, no aggregate
    assert default_aggregate_algos({"a": {"E1", "E2"}, "b": {"E1"}}) == ["a", "b"]
    assert default_aggregate_algos({}) == []


def test_default_aggregate_is_over_the_envs_it_was_chosen_on():
    # c has two runs on E1 and E2, one on E3: the default choice compares 3 algorithms on E1 and E2 (6 pairs, a tie
    # with 2 on all three envs, which goes to more algorithms)
    two_seeds = [1.0, 2.0]
    scores, results = scores_and_results(
        {(algo, env): two_seeds for algo in ("a", "b", "c") for env in ("E1", "E2", "E3")} | {("c", "E3"): [3.0]}
    )
    algos, min_runs, set_aside = default_aggregate_choice(scores, ["a", "b", "c"])
    assert (algos, min_runs, set_aside) == (["a", "b", "c"], 2, {})
    result = aggregate(scores, results, algos, reps=50, min_runs=min_runs)
    # Every algorithm keeps its two runs an env: none is cut to one, where the bootstrap has nothing to resample
    assert result.envs == ["E1", "E2"] and result.min_runs == 2 and result.left_out.empty
    assert all(len(runs) == 4 for runs in result.runs.values())
    assert "Envs where each has 2 runs or more of 100 frames (2): E1, E2. Runs per env: a 2, b 2, c 2." in aggregate_section(
        result
    )
    # Over every env with a run, c's second seeds on E1 and E2 would go
    every_env = aggregate(scores, results, algos, reps=50)
    assert every_env.left_out[["algo", "env", "seed"]].to_numpy().tolist() == [["c", "E1", 1], ["c", "E2", 1]]
    assert aggregate(scores[scores["algo"] == "c"], results, ["c"], min_runs=3) == (
        "no env where each of c has 3 runs or more of 100 frames"
    )


def test_fast_probability_of_improvement_is_rliables():
    _, metrics, _ = import_rliable()
    generator = np.random.default_rng(0)
    for runs_x, runs_y in ((3, 3), (4, 2), (1, 5)):
        # Few distinct values: ties within and across the algorithms
        x, y = generator.integers(0, 4, size=(runs_x, 3)) / 4, generator.integers(0, 4, size=(runs_y, 3)) / 4
        assert improvement_probability(x, y)[0] == pytest.approx(metrics.probability_of_improvement(x, y))
    assert improvement_probability(x, x)[0] == pytest.approx(0.5)


def test_code_facts_name_the_commit_and_changes_of_the_package(tmp_path: Path):
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True).stdout.strip()

    package = tmp_path / "package"
    package.mkdir()
    (package / "module.py").write_text("A = 1\n")
    (tmp_path / "notes.txt").write_text("outside the package\n")
    assert code_facts(package) == {"sb3_dreamer": sb3_dreamer.__version__, "commit": None, "modified": None}
    git("init", "-q")
    git("add", "notes.txt")
    git("-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "first")
    # A package that the checkout does not track (an installed wheel in a virtual environment inside it) has no commit
    assert code_facts(package)["commit"] is None
    git("add", ".")
    git("-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "second")
    commit = git("rev-parse", "HEAD")
    assert code_facts(package) == {"sb3_dreamer": sb3_dreamer.__version__, "commit": commit, "modified": False}
    # A change outside the package, or a file git does not track, is not a change of the code
    (tmp_path / "notes.txt").write_text("changed\n")
    (package / "scratch.py").write_text("B = 2\n")
    assert not code_facts(package)["modified"]
    (package / "module.py").write_text("A = 2\n")
    assert code_facts(package) == {"sb3_dreamer": sb3_dreamer.__version__, "commit": commit, "modified": True}


def test_machine_facts_from_cpuinfo():
    cpuinfo = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n\n"
    cpuinfo += "processor\t: 1\nmodel name\t: Other CPU\nflags\t\t: fpu\n"
    assert cpu_model(cpuinfo) == "Some CPU @ 2.0GHz"
    assert {"avx512_bf16", "amx_bf16"} <= cpu_flags(cpuinfo) and "avx512f" in cpu_flags(cpuinfo)
    assert cpu_flags("") == set() and cpu_model("") == (platform.processor() or platform.machine())
    facts = machine_facts()
    assert facts["logical_cpus"] == os.cpu_count() and facts["torch"] == th.__version__
    assert set(facts["bfloat16_cpu_flags"]) <= set(BFLOAT16_CPU_FLAGS)
