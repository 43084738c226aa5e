"""
Benchmark grid: algorithms x env ids x seeds, each run trained and evaluated by the RL Zoo
(``python -m sb3_dreamer.zoo train``), in parallel subprocesses, its final model then scored over
``--final-episodes`` episodes, then summarised in ROOT:

- ``results.csv``: one row per evaluation point (algo, env, seed, frames and eval_episodes of the run, timesteps =
  env frames, mean_return, std_return, wall_clock_s and cpu_s of the run: elapsed time and CPU time, user plus
  system, of its zoo process),
- ``final.csv``: one row per run (algo, env, seed, frames, final_episodes, final_mean_return and final_std_return of
  its final score, empty for a run that has none, wall_clock_s and cpu_s of its training),
- ``results.md``: per algo x env, mean +- std over seeds of the final evaluation return and of the final score (over
  the seeds that have one), frames, seeds, mean wall-clock and CPU time per run and frames per second of wall-clock
  time; then the evaluation return at every evaluation point (mean over seeds) of each algo x env; then per algo x env
  the mean score over seeds with a 95% bootstrap interval; then the aggregate over envs (below),
- ``learning_curves.png``: evaluation return against env frames, mean over seeds with a min-max band,
  one panel per env and one line per algo,
- ``aggregate.png`` and ``aggregate_curves.png``: rliable's plots of the aggregate, its metrics with their intervals
  and the IQM of the normalised evaluation returns against env frames.

The score of a run is its final score (below) or, for a run without one, its last evaluation, which the report marks
and names. Per algo x env, the mean score over seeds has a percentile bootstrap interval: ``--bootstrap-reps`` (2000)
resamples of the seeds with replacement from a generator seeded with ``BOOTSTRAP_SEED`` (0), so that the same runs
give the same report. The aggregate (with rliable, the ``benchmark`` extra) covers ``--aggregate-algos`` (default:
every algorithm with finished runs, no variant ``ALGO@NAME``) over the envs where each of them has runs of the largest
frame budget of their runs. It normalises each score per env: (score - low) / (high - low), with high (= 1) the best
score of any run on the env and low (= 0) the lowest return any run on it scored (its score or any evaluation: in
practice an early evaluation), over every run of the report at that budget, also those outside the aggregate; no
random policy is measured. rliable's score matrices need as many runs on every env, so an algorithm's runs are cut to
its lowest seeds on the env where it has fewest (the report names those left out). On these it computes rliable's
IQM, mean and optimality gap, the probability of improvement of each algorithm over each other one (rliable's
``probability_of_improvement``; its bootstrap counts the same without scipy's test, which would take a minute), and the
IQM of the normalised evaluation returns at each evaluation point, each with a 95% stratified-bootstrap interval (rliable's
``get_interval_estimates``: runs resampled within each env, percentile intervals, ``--bootstrap-reps`` replications,
NumPy's global random numbers, from which rliable draws, seeded with ``BOOTSTRAP_SEED`` for each estimate).

Run ``ALGO ENV SEED`` lives in ``ROOT/runs/ALGO/ENV/seed_SEED/``: the zoo's log folder (``-f``), ``train.log``
(its output), with ``--tensorboard`` its TensorBoard logs (``tensorboard/``, for DreamerV2 the world-model losses,
actor entropy and dream videos) and, once it has finished, ``run.json`` (its settings, wall-clock and CPU time and
final score). TensorBoard event files are not committed (``.gitignore``): once a run with them has finished, every
scalar in them goes to ``scalars.csv`` in its folder (tag, step, value; ``scripts/tb_scalars.py`` reads it where the
event files are gone), and the first run of the packaged DreamerV2 (``dreamerv2``, not its variants: one GIF per id)
of each env to finish with a dream video writes its last one to ``ROOT/dream_dreamerv2_ENV.gif``
(``scripts/dream_gif.py``). Every command, ``--report-only`` included, does the same
for the finished runs that have event files and no up-to-date ``scalars.csv`` or GIF (by seed: the lowest one's GIF).
The grid is resumable: runs with a ``run.json`` of at least ``--frames`` frames are skipped. A DreamerV2 run keeps a
checkpoint (``checkpoint/``, :class:`sb3_dreamer.ResumeCheckpointCallback`, every ``--eval-freq`` frames and at its
end) and an unfinished one resumes from it through the zoo's ``-i checkpoint/model.zip``: an interrupted run loses
at most ``--eval-freq`` frames of work, and a finished run given a larger ``--frames`` trains on to the new budget.
Each resumed part is a zoo log folder of its own (``dreamerv2/ENV_1``, ``ENV_2``, ...), whose evaluations are merged,
and ``segments.json`` records the time of each part (a part killed with the machine is not counted). Runs of the other
algorithms restart from scratch (the zoo's ``-i`` would restart their timestep count, evaluations and schedules).
Ctrl-C or SIGTERM stops the running trainings and evaluations; the same command then picks up where the grid stopped.
Each run gets cores // ``--processes`` torch threads and glibc allocator settings that keep large
tensors in the heap (``GLIBC_MALLOC_SETTINGS``, recorded in ``run.json``; with them a DreamerV2 gradient step at
batch 16 with 1 thread measured 4% and 9% faster in two sets of interleaved runs).
The final score of a run: once its training has ended, the model that the zoo saved at its end (``ENV.zip`` in the
zoo log folder of its last part) plays ``--final-episodes`` episodes (default 100) of its deterministic policy, with
stable_baselines3's ``evaluate_policy``, in a subprocess with the run's torch threads and allocator settings, on a
fresh env made by the zoo's ``create_test_env`` from the run's saved settings (for the MinAtar ids the zoo's eval env:
``gym.make`` in a Monitor), with the env, torch and numpy seeded with the run's seed + ``FINAL_EVAL_SEED_OFFSET``
(the zoo's training and evaluation envs have the run's seed). ``run.json`` records its mean and std (population) of
the returns, episodes, seed and wall-clock and CPU time (final_mean_return, final_std_return, final_episodes,
final_eval_seed, final_eval_s, final_eval_cpu_s); its wall_clock_s and cpu_s are the training's alone. A run whose
final evaluation fails or is interrupted writes no ``run.json``: it is not finished. ``--final-eval-missing`` trains
nothing: it scores the finished runs under ROOT that have no final score (finished before it existed) and whose model
is still on disk, adds the fields to their ``run.json`` and rebuilds the report; runs whose model is gone stay without.
The report covers every finished run under ROOT, so a grid can be run in parts (e.g. fewer seeds of dreamerv2),
and keeps the rows of ``results.csv`` and ``final.csv`` whose run folder is gone: the CSVs are the lasting record of
every run (``final.csv`` gets a row without a final score for a run known only from ``results.csv``); delete its rows
from both to drop a run from the report.

``--eval-freq`` is in env frames: the zoo divides it by the number of envs. MinAtar has no frame skip.
Algorithms other than dreamerv2 read ``hyperparams/ALGO.yml``; dreamerv2 reads the plug-in's packaged file.

A variant ``ALGO@NAME`` in ``--algos`` is ALGO with the hyperparameters given by ``--algo-hyperparams ALGO@NAME ...``
on top of ALGO's own: it has its own runs folder and its own rows in the report, e.g. a smaller batch or a
DreamerV3-style option compared with the defaults.

Usage:
  python scripts/benchmark.py --algos dreamerv2 ppo dqn qrdqn --envs Breakout-MinAtar BreakoutPOMDP-MinAtar \\
      --seeds 0 1 2 --frames 100000 --eval-freq 10000 --eval-episodes 10 --processes 2 --root benchmarks/minatar-100k
  python scripts/benchmark.py --algos dreamerv2 dreamerv2@batch16 --algo-hyperparams dreamerv2@batch16 batch_size:16 \\
      --envs Breakout-MinAtar --seeds 0 --root /tmp/bench
  python scripts/benchmark.py --quick --algos dreamerv2 dqn --envs Breakout-MinAtar --seeds 0 --root /tmp/bench
  python scripts/benchmark.py --final-eval-missing --root benchmarks/minatar-100k
  python scripts/benchmark.py --report-only --root benchmarks/minatar-100k
  python scripts/benchmark.py --report-only --root benchmarks/minatar-100k --aggregate-algos dreamerv2@ratio2bf16 qrdqn
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "hyperparams"
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
FINAL_CSV = "final.csv"
#: Where the final evaluation's subprocess writes its score, read into ``run.json`` and then removed
FINAL_EVAL_FILE = "final_eval.json"
#: The final evaluation's seed is the run's seed + this: the zoo seeds the training envs with seed + rank (rank < n_envs)
#: and its evaluation env with the seed itself
FINAL_EVAL_SEED_OFFSET = 10_000
#: Body of the final evaluation's subprocess: :func:`evaluate_final_model` with the keyword arguments of its JSON argument
FINAL_EVAL_CODE = (
    f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
    "from benchmark import evaluate_final_model; evaluate_final_model(**json.loads(sys.argv[1]))"
)
#: Checkpoint directory of a DreamerV2 run, and the algorithms that keep one
CHECKPOINT_DIR = "checkpoint"
RESUMABLE_ALGOS = ("dreamerv2",)
#: glibc allocator settings of the runs (an env var of the same name set by the caller wins): large tensors freed and
#: allocated at every gradient step stay in the heap instead of being unmapped and faulted in again (README, Performance)
GLIBC_MALLOC_SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "4000000000",
    "MALLOC_TOP_PAD_": "1000000000",
}
COLUMNS = ["algo", "env", "seed", "frames", "eval_episodes", "timesteps", "mean_return", "std_return", "wall_clock_s", "cpu_s"]
#: Columns that identify a run in ``results.csv`` and ``final.csv``
RUN_KEY = ["algo", "env", "seed", "frames"]
FINAL_COLUMNS = [*RUN_KEY, "final_episodes", "final_mean_return", "final_std_return", "wall_clock_s", "cpu_s"]
#: Bootstrap of the report's intervals: replications (default of ``--bootstrap-reps``), seed of its random numbers (the
#: same runs give the same report) and coverage
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
#: The aggregates of the report's normalised scores, with rliable's functions (:func:`import_rliable`)
AGGREGATE_METRICS = ("IQM", "mean", "optimality gap")
AGGREGATE_PLOT = "aggregate.png"
AGGREGATE_CURVES_PLOT = "aggregate_curves.png"
#: (frames, eval_freq, eval_episodes, final_episodes) of the full grid and of ``--quick``
FULL_BUDGET = (100_000, 10_000, 10, 100)
QUICK_BUDGET = (300, 100, 2, 5)
#: Tiny DreamerV2 networks of ``--quick``: a few hundred steps take seconds of a CPU core
QUICK_POLICY_KWARGS = (
    "embedding_dim=16,deter_size=16,stoch_size=4,class_size=4,rssm_hidden_size=16,cnn_depth=4,mlp_units=16,mlp_layers=1,"
    "head_units=16,head_layers=1"
)
#: Tiny settings of ``--quick``, before ``--hyperparams`` and ``--algo-hyperparams`` (the zoo tests use them too)
QUICK_HYPERPARAMS = {
    "dreamerv2": [
        "learning_starts:100",
        "batch_size:4",
        "sequence_length:8",
        "train_freq:16",
        "gradient_steps:1",
        "imagination_horizon:3",
        "buffer_size:2000",
        f"policy_kwargs:dict({QUICK_POLICY_KWARGS})",
    ],
    "dqn": ["learning_starts:50", "buffer_size:2000"],
    "qrdqn": ["learning_starts:50", "buffer_size:2000"],
    "ppo": ["n_envs:2", "n_steps:64", "batch_size:32"],
}


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

    def final_model(self, root: Path) -> Path:
        """The model that the zoo saved at the end of the run: ``ENV.zip`` in the zoo log folder of its last part."""
        parts = self.directory(root).glob(f"{self.zoo_algo}/{self.env}_*")
        return max(parts, key=lambda path: int(path.name.rsplit("_", 1)[1])) / f"{self.env}.zip"

    def __str__(self) -> str:
        return f"{self.algo} {self.env} seed {self.seed}"


def base_algo(algo: str) -> str:
    """The algorithm of ``ALGO`` or of a variant ``ALGO@NAME``."""
    return algo.split("@", 1)[0]


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


def process_environment(threads: int, malloc: dict[str, str]) -> dict[str, str]:
    """Environment variables of a run's subprocesses: ``threads`` OpenMP and MKL threads, allocator settings ``malloc``."""
    return {**os.environ, **malloc, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def merge_hyperparams(*groups: list[str]) -> list[str]:
    """``key:value`` strings of several groups, a later value of a key replacing an earlier one."""
    merged: dict[str, str] = {}
    for group in groups:
        for item in group:
            merged[item.split(":", 1)[0]] = item
    return list(merged.values())


class Launcher:
    """Starts the zoo and evaluation subprocesses and stops them all on interruption."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        #: torch threads of a run
        self.threads = max(1, len(os.sched_getaffinity(0)) // args.processes)
        self.lock = threading.Lock()
        self.processes: set[subprocess.Popen] = set()
        self.stopped = False

    def command(self, run: Run, run_dir: Path, resume: bool) -> list[str]:
        """Command line of the zoo for ``run``, resuming from its checkpoint if ``resume``."""
        args = self.args
        command = [sys.executable, "-m", "sb3_dreamer.zoo", "train", "--algo", run.zoo_algo, "--env", run.env]
        if run.zoo_algo != "dreamerv2":
            command += ["-conf", str(CONF_DIR / f"{run.zoo_algo}.yml")]
        command += [
            "--seed", str(run.seed),
            "-n", str(args.frames),
            "--eval-freq", str(args.eval_freq),
            "--eval-episodes", str(args.eval_episodes),
            "--n-eval-envs", "1",
            "--num-threads", str(self.threads),
            "--device", args.device,
            "--verbose", "0",
            "-f", str(run_dir),
        ]  # fmt: skip
        if args.tensorboard:
            command += ["--tensorboard-log", str(run_dir / TENSORBOARD_DIR)]
        hyperparams = self.hyperparams(run.algo)
        if run.zoo_algo in RESUMABLE_ALGOS:
            checkpoint = dict(save_freq=args.eval_freq, save_path=str(run_dir / CHECKPOINT_DIR))
            hyperparams = [*hyperparams, f"callback:[{{'sb3_dreamer.ResumeCheckpointCallback': {checkpoint!r}}}]"]
            if resume:
                command += ["-i", str(run_dir / CHECKPOINT_DIR / "model.zip")]
        if hyperparams:
            command += ["--hyperparams", *hyperparams]
        return command

    def hyperparams(self, algo: str) -> list[str]:
        """
        ``--hyperparams`` of the zoo for ``algo`` (or a variant ``ALGO@NAME``): quick settings, then common ones,
        then the algorithm's own, then the variant's own.
        """
        base = base_algo(algo)
        quick = QUICK_HYPERPARAMS.get(base, []) if self.args.quick else []
        groups = self.args.algo_hyperparams
        own = [item for name in dict.fromkeys((base, algo)) for group in groups if group[0] == name for item in group[1:]]
        return merge_hyperparams(quick, self.args.hyperparams, own)

    def train(self, run: Run) -> str | None:
        """Train ``run``, from its checkpoint if it has one, else from scratch; ``None`` on success, else why it failed."""
        run_dir = run.directory(self.args.root)
        resume = (run_dir / CHECKPOINT_DIR / "checkpoint.pkl").is_file()
        if resume:
            (run_dir / RUN_FILE).unlink(missing_ok=True)  # a finished run given a larger budget is unfinished again
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
        segments = json.loads((run_dir / SEGMENTS_FILE).read_text()) if resume and (run_dir / SEGMENTS_FILE).is_file() else []
        command = self.command(run, run_dir, resume)
        # The caller's allocator settings win over the script's
        malloc = {name: os.environ.get(name, value) for name, value in GLIBC_MALLOC_SETTINGS.items()}
        with open(run_dir / LOG_FILE, "a" if resume else "w") as log:
            ended = self.execute(command, process_environment(self.threads, malloc), log)
        if ended is None:
            return "interrupted"
        returncode, wall_clock_s, cpu_s = ended
        segments.append({"resumed": resume, "returncode": returncode, "wall_clock_s": wall_clock_s, "cpu_s": cpu_s})
        write_json(run_dir / SEGMENTS_FILE, segments)
        if self.stopped:
            return "interrupted"
        if returncode != 0:
            return f"exit code {returncode}, see {run_dir / LOG_FILE}"
        if not find_evaluations(run_dir):
            return f"no evaluations.npz, see {run_dir / LOG_FILE}"
        info = {
            "algo": run.algo,
            "env": run.env,
            "seed": run.seed,
            "frames": self.args.frames,
            "eval_freq": self.args.eval_freq,
            "eval_episodes": self.args.eval_episodes,
            "hyperparams": self.hyperparams(run.algo),
            "threads": self.threads,
            "processes": self.args.processes,
            "malloc": malloc,
            "segments": len(segments),
            "wall_clock_s": round(sum(segment["wall_clock_s"] for segment in segments), 3),
            "cpu_s": round(sum(segment["cpu_s"] for segment in segments), 3),
            "command": command,
        }
        # run.json comes last: a run without its final score is not finished
        error = self.evaluate(run, info)
        if error is None:
            write_json(run_dir / RUN_FILE, info)
            for message in export_tensorboard(run, self.args.root):
                tqdm.write(message)
        return error

    def evaluate(self, run: Run, info: dict[str, Any]) -> str | None:
        """
        Score the final model of ``run`` over ``--final-episodes`` episodes in a subprocess with the threads and
        allocator settings of ``info`` (its ``run.json``), and add the final_* fields to ``info``; ``None`` on success,
        else why it failed.
        """
        run_dir = run.directory(self.args.root)
        output = run_dir / FINAL_EVAL_FILE
        settings = {
            "model": str(run.final_model(self.args.root)),
            "algo": run.zoo_algo,
            "env_id": run.env,
            "episodes": self.args.final_episodes,
            "seed": run.seed + FINAL_EVAL_SEED_OFFSET,
            "threads": info["threads"],
            "device": self.args.device,
            "output": str(output),
        }
        command = [sys.executable, "-c", FINAL_EVAL_CODE, json.dumps(settings)]
        with open(run_dir / LOG_FILE, "a") as log:
            ended = self.execute(command, process_environment(info["threads"], info.get("malloc", {})), log)
        if ended is None or self.stopped:
            return "interrupted"
        returncode, wall_clock_s, cpu_s = ended
        if returncode != 0:
            return f"final evaluation: exit code {returncode}, see {run_dir / LOG_FILE}"
        info.update(json.loads(output.read_text()))
        info.update(final_eval_seed=settings["seed"], final_eval_s=wall_clock_s, final_eval_cpu_s=cpu_s)
        output.unlink()
        return None

    def add_final_score(self, run: Run) -> str | None:
        """Score the final model of the finished ``run`` and add the fields to its ``run.json``; ``None`` on success."""
        run_file = run.directory(self.args.root) / RUN_FILE
        info = json.loads(run_file.read_text())
        error = self.evaluate(run, info)
        if error is None:
            write_json(run_file, info)
        return error

    def execute(self, command: list[str], env: dict[str, str], log: IO[str]) -> tuple[int, float, float] | None:
        """
        Run ``command`` to its end with the environment ``env`` and its output in ``log``: its exit code, wall-clock
        and CPU time (user + system, s), or ``None`` when the grid was stopped before it started.
        """
        start = time.monotonic()
        with self.lock:
            if self.stopped:
                return None
            # Own session: Ctrl-C reaches the benchmark only, which stops the runs (the zoo would save and exit 0)
            process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.processes.add(process)
        # wait4 also gives the CPU time of the run, which unlike its wall-clock time does not grow on a busy machine
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        with self.lock:
            self.processes.discard(process)
        return process.returncode, round(time.monotonic() - start, 3), round(usage.ru_utime + usage.ru_stime, 3)

    def stop(self) -> None:
        """Terminate the running subprocesses; those not started yet will not start."""
        with self.lock:
            self.stopped = True
            for process in self.processes:
                process.terminate()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to a temporary file renamed onto ``path``, so that the file is always whole."""
    path.with_name(f"{path.name}.tmp").write_text(json.dumps(data, indent=2) + "\n")
    path.with_name(f"{path.name}.tmp").replace(path)


def evaluate_final_model(
    model: str, algo: str, env_id: str, episodes: int, seed: int, threads: int, device: str, output: str
) -> None:
    """
    The final evaluation's subprocess: ``episodes`` episodes of the deterministic policy of the zoo model ``model``
    (of ``rl_zoo3.ALGOS[algo]``) with stable_baselines3's ``evaluate_policy`` on the zoo's test env of the run's saved
    settings (``config.yml`` next to the model; for the MinAtar ids the zoo's eval env, ``gym.make`` in a Monitor), the
    env, torch and numpy seeded with ``seed``; writes the mean and std of the returns and the episodes to ``output``.
    Imports torch and the zoo here only: the grid's own process does without them.
    """
    import torch
    from rl_zoo3 import ALGOS, create_test_env, get_saved_hyperparams
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.utils import set_random_seed

    from sb3_dreamer.zoo import apply

    apply()  # dreamerv2 in ALGOS and the MinAtar ids, also without the start-up hook
    torch.set_num_threads(threads)  # as the zoo's --num-threads
    # The zoo's own reading of the saved settings (as rl_zoo3.enjoy): env wrapper, frame stack, VecNormalize statistics
    hyperparams, stats_path = get_saved_hyperparams(str(Path(model).parent / env_id))
    env_kwargs = hyperparams.pop("env_kwargs", None)
    env = create_test_env(
        env_id, stats_path=stats_path, seed=seed, should_render=False, hyperparams=hyperparams, env_kwargs=env_kwargs
    )
    agent = ALGOS[algo].load(model, device=device)
    set_random_seed(seed)
    returns, _ = evaluate_policy(agent, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True)
    score = {"final_mean_return": float(np.mean(returns)), "final_std_return": float(np.std(returns))}
    write_json(Path(output), {**score, "final_episodes": len(returns)})


def write_scalars(run_dir: Path) -> None:
    """Every scalar of the TensorBoard event files of the run in ``run_dir``, to ``RUN/scalars.csv``: tag, step, value."""
    from tb_scalars import read_scalars  # tensorboard's event reader, only for runs that have event files

    temporary = run_dir / f"{SCALARS_FILE}.tmp"
    read_scalars(run_dir / TENSORBOARD_DIR).to_csv(temporary, index=False)
    temporary.replace(run_dir / SCALARS_FILE)


def write_dream_gif(run: Run, root: Path) -> str:
    """
    The last dream video of the DreamerV2 ``run`` to ``ROOT/dream_ALGO_ENV.gif`` by ``scripts/dream_gif.py``, in a
    subprocess (it imports torch, which the grid's own process does without); what it wrote, or why it wrote nothing.
    """
    output = root / DREAM_GIF.format(algo=run.algo, env=run.env)
    temporary = output.with_name(f"{output.name}.tmp")
    command = [sys.executable, str(Path(__file__).with_name("dream_gif.py")), str(run.directory(root)), str(temporary)]
    written = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if written.returncode != 0:
        temporary.unlink(missing_ok=True)
        return f"{run}: no dream GIF: {(written.stderr.strip().splitlines() or ['no output'])[-1]}"
    temporary.replace(output)
    # dream_gif.py's "wrote OUTPUT: the dream video at N frames"
    return f"{run}: wrote {output.name}: {written.stdout.strip().removeprefix(f'wrote {temporary}: ')}"


def export_tensorboard(run: Run, root: Path) -> list[str]:
    """
    What the finished ``run`` keeps of its TensorBoard logs, whose event files are not committed: every scalar in
    ``RUN/scalars.csv`` (rewritten when an event file is newer), and if it logged images (DreamerV2's dream videos)
    and it is a run of ``GIF_ALGO`` whose env has no GIF yet, its last dream video there. Returns what it did, nothing
    for a run without event files or with nothing to do.
    """
    from tb_scalars import image_tags  # tensorboard's event reader, only for runs that have event files

    run_dir = run.directory(root)
    events = list((run_dir / TENSORBOARD_DIR).rglob(EVENT_FILES))
    if not events:
        return []
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
    runs = []
    for run_file in root.glob(f"{RUNS_DIR}/*/*/seed_*/{RUN_FILE}"):
        info = json.loads(run_file.read_text())
        runs.append(Run(info["algo"], info["env"], info["seed"]))
    for run in sorted(runs, key=lambda run: (run.algo, run.env, run.seed)):
        for message in export_tensorboard(run, root):
            print(message, flush=True)


def _raise_interrupt(signum: int, frame: Any) -> NoReturn:
    """Signal handler: stop the grid as Ctrl-C does."""
    raise KeyboardInterrupt


def run_parallel(launcher: Launcher, task: Callable[[Run], str | None], runs: list[Run]) -> list[Run]:
    """
    ``task`` (a method of ``launcher``, ``None`` on success, else why it failed) on every run, ``--processes`` at a
    time; return the runs it failed on. Ctrl-C or SIGTERM stops the launcher's subprocesses.
    """
    failed = []
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with ThreadPoolExecutor(launcher.args.processes) as pool, tqdm(total=len(runs), unit="run") as progress:
        futures = {pool.submit(task, run): run for run in runs}
        try:
            for future in as_completed(futures):
                error = future.result()
                if error is not None:
                    failed.append(futures[future])
                    tqdm.write(f"FAILED {futures[future]}: {error}")
                progress.update()
        except KeyboardInterrupt:
            launcher.stop()
            pool.shutdown(cancel_futures=True)
            raise
    return failed


def run_grid(args: argparse.Namespace, runs: list[Run]) -> list[Run]:
    """Train and score the unfinished ``runs``, ``args.processes`` at a time; return the failed ones."""
    pending = [run for run in runs if not is_finished(run.directory(args.root), args.frames)]
    print(f"{len(runs)} runs: skipped {len(runs) - len(pending)} finished, {len(pending)} to train", flush=True)
    if not pending:
        return []
    launcher = Launcher(args)
    return run_parallel(launcher, launcher.train, pending)


def score_missing(args: argparse.Namespace) -> list[Run]:
    """
    Score the final model of every finished run under ``args.root`` that has no final score and whose model is
    still on disk, ``args.processes`` at a time; return the runs whose evaluation failed.
    """
    unscored = []
    for run_file in sorted(args.root.glob(f"{RUNS_DIR}/*/*/seed_*/{RUN_FILE}")):
        info = json.loads(run_file.read_text())
        if "final_mean_return" not in info:
            unscored.append(Run(info["algo"], info["env"], info["seed"]))
    pending = [run for run in unscored if run.final_model(args.root).is_file()]
    gone = "".join(f"\n  no model: {run}" for run in unscored if run not in pending)
    print(f"{len(unscored)} finished runs without a final score: {len(pending)} to evaluate{gone}", flush=True)
    if not pending:
        return []
    launcher = Launcher(args)
    return run_parallel(launcher, launcher.add_final_score, pending)


def collect(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """
    Evaluation points (:data:`COLUMNS`) and final scores (:data:`FINAL_COLUMNS`, one row per run) of every finished
    run under ``root``, and those of ``root/results.csv`` and ``root/final.csv`` for the runs whose folder is gone: the
    CSVs are the lasting record of a grid, its runs folders may be partial. A run known only from ``results.csv``
    gets a final row without a final score.
    """
    rows, finals = [], []
    for run_file in sorted(root.glob(f"{RUNS_DIR}/*/*/seed_*/{RUN_FILE}")):
        info = json.loads(run_file.read_text())
        for timesteps, returns in read_evaluations(run_file.parent).items():
            rows.append(
                {
                    "algo": info["algo"],
                    "env": info["env"],
                    "seed": info["seed"],
                    "timesteps": int(timesteps),
                    "mean_return": float(np.mean(returns)),
                    "std_return": float(np.std(returns)),
                    "wall_clock_s": info["wall_clock_s"],
                    "cpu_s": info["cpu_s"],
                    "frames": info["frames"],
                    "eval_episodes": info["eval_episodes"],
                }
            )
        finals.append({name: info.get(name, np.nan) for name in FINAL_COLUMNS})
    results = with_recorded(pd.DataFrame(rows, columns=COLUMNS), root / "results.csv")
    final = with_recorded(pd.DataFrame(finals, columns=FINAL_COLUMNS), root / FINAL_CSV)
    runs = results.groupby(RUN_KEY, as_index=False)[["wall_clock_s", "cpu_s"]].first()
    unknown = runs[~runs.set_index(RUN_KEY).index.isin(final.set_index(RUN_KEY).index)]
    return results, pd.concat([final, unknown.reindex(columns=FINAL_COLUMNS)], ignore_index=True).infer_objects()


def with_recorded(rows: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``rows`` of the runs on disk and those of the CSV ``path`` (if any) of the other runs."""
    if not path.is_file():
        return rows
    recorded = pd.read_csv(path)
    if list(recorded.columns) != list(rows.columns):
        raise SystemExit(f"{path} has the columns {list(recorded.columns)}, expected {list(rows.columns)}")
    on_disk = recorded.set_index(RUN_KEY).index.isin(rows.set_index(RUN_KEY).index)
    # infer_objects: the columns of runs are untyped when no run is on disk
    return pd.concat([rows, recorded[~on_disk]], ignore_index=True).infer_objects()


def _duration(seconds: float) -> str:
    """Human-readable duration; "n/a" for NaN (not recorded)."""
    if np.isnan(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def markdown_table(results: pd.DataFrame, finals: pd.DataFrame) -> str:
    """
    Per algo x env x frame budget: final evaluation return over seeds, final score over the seeds that have one, seeds,
    wall-clock, CPU time and frames/s.
    """
    final = results.sort_values("timesteps").groupby(["algo", "env", "frames", "seed"]).tail(1)
    scored = finals.dropna(subset=["final_mean_return"]).groupby(["algo", "env", "frames"])["final_mean_return"]
    scores = {key: group.to_numpy() for key, group in scored}
    lines = [
        "| algo | env | final return (mean ± std over seeds) | final score (mean ± std over seeds, n) | frames | seeds "
        "| wall-clock per run | CPU time per run | frames/s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (algo, env, frames), group in final.groupby(["algo", "env", "frames"]):
        returns = group["mean_return"].to_numpy()
        score = scores.get((algo, env, frames))
        score_cell = "n/a" if score is None else f"{score.mean():.2f} ± {score.std():.2f} (n={len(score)})"
        wall_clock = group["wall_clock_s"].to_numpy()
        lines.append(
            f"| {algo} | {env} | {returns.mean():.2f} ± {returns.std():.2f} | {score_cell} | {frames:,} | {len(group)} "
            f"| {_duration(wall_clock.mean())} | {_duration(group['cpu_s'].mean())} | {np.mean(frames / wall_clock):.0f} |"
        )
    return "\n".join(lines) + "\n"


def curve_table(results: pd.DataFrame) -> str:
    """Per algo x env x frame budget: the evaluation return at every evaluation point, mean over seeds."""
    groups = results.groupby(["algo", "env", "frames"])
    curves = results.groupby(["algo", "env", "frames", "timesteps"])["mean_return"].mean().unstack("timesteps")
    points = [f"{timesteps / 1000:g}k" for timesteps in curves.columns]
    lines = [f"| algo | env | frames | seeds | {' | '.join(points)} |", f"|---|---|---:|---:|{'---:|' * len(points)}"]
    for (algo, env, frames), curve in curves.iterrows():
        values = " | ".join("" if np.isnan(x) else f"{x:.2f}" for x in curve)
        lines.append(f"| {algo} | {env} | {frames:,} | {groups.get_group((algo, env, frames))['seed'].nunique()} | {values} |")
    return "\n".join(lines) + "\n"


def plot_learning_curves(results: pd.DataFrame, path: Path) -> None:
    """Evaluation return against env frames: mean over seeds and min-max band, a panel per env, a line per algo."""
    envs = sorted(results["env"].unique())
    colors = algo_colors(list(results["algo"].unique()))
    figure, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), squeeze=False)
    for axis, env in zip(axes[0], envs, strict=True):
        for algo, runs in results[results["env"] == env].groupby("algo"):
            curve = runs.groupby("timesteps")["mean_return"].agg(["mean", "min", "max"])
            n_seeds = runs["seed"].nunique()
            label = f"{algo} ({n_seeds} seed{'s' if n_seeds > 1 else ''})"
            axis.plot(curve.index, curve["mean"], color=colors[algo], label=label)
            axis.fill_between(curve.index, curve["min"], curve["max"], color=colors[algo], alpha=0.2, linewidth=0)
        axis.set(title=env, xlabel="env frames", ylabel="evaluation return")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_scores(results: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """
    The score of each run (:data:`RUN_KEY`, one row per run of ``results``): its final score where it has one, else its
    last evaluation's mean return; ``final`` tells which, ``episodes`` over how many episodes.
    """
    last = results.sort_values("timesteps").groupby(RUN_KEY).tail(1)[[*RUN_KEY, "mean_return", "eval_episodes"]]
    scores = last.merge(finals[[*RUN_KEY, "final_mean_return", "final_episodes"]], on=RUN_KEY, how="left")
    scores["final"] = scores["final_mean_return"].notna()
    scores["score"] = scores["final_mean_return"].where(scores["final"], scores["mean_return"])
    scores["episodes"] = scores["final_episodes"].where(scores["final"], scores["eval_episodes"]).astype(int)
    return scores[[*RUN_KEY, "score", "final", "episodes"]].sort_values(RUN_KEY, ignore_index=True)


def bootstrap_interval(values: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """
    Percentile bootstrap interval (coverage :data:`CONFIDENCE`) of the mean of ``values``: ``reps`` resamples with
    replacement drawn by a generator seeded with ``seed``.
    """
    resamples = np.random.default_rng(seed).integers(len(values), size=(reps, len(values)))
    tail = 50 * (1 - CONFIDENCE)
    low, high = np.percentile(values[resamples].mean(axis=1), [tail, 100 - tail])
    return float(low), float(high)


def _sources(runs: pd.DataFrame) -> str:
    """Which of ``runs`` (rows of :func:`run_scores`) are scored by their final score and which by their last evaluation."""
    parts = []
    for (final, episodes), group in runs.groupby(["final", "episodes"], sort=False):
        seeds = ", ".join(map(str, sorted(group["seed"])))
        kind = "final score" if final else "**last evaluation**"
        parts.append(f"{kind} ({episodes} episodes): seed{'s' if len(group) > 1 else ''} {seeds}")
    return "; ".join(parts)


def score_table(scores: pd.DataFrame, reps: int) -> str:
    """
    Per algo x env x frame budget: the runs' scores (:func:`run_scores`), mean and bootstrap interval (``reps``
    resamples) over seeds.
    """
    lines = [
        f"| algo | env | frames | seeds | score: mean [{CONFIDENCE:.0%} interval] | scored by |",
        "|---|---|---:|---:|---|---|",
    ]
    for (algo, env, frames), runs in scores.groupby(["algo", "env", "frames"]):
        values = runs["score"].to_numpy()
        low, high = bootstrap_interval(values, reps)
        interval = f"{values.mean():.2f} [{low:.2f}, {high:.2f}]"
        lines.append(f"| {algo} | {env} | {frames:,} | {len(runs)} | {interval} | {_sources(runs)} |")
    return "\n".join(lines) + "\n"


def import_rliable() -> tuple[Any, Any, Any]:
    """rliable's ``library``, ``metrics`` and ``plot_utils`` (the ``benchmark`` extra; training does without them)."""
    from rliable import library, metrics, plot_utils

    return library, metrics, plot_utils


def normalisation_bounds(scores: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """
    Per env (index): ``low``, the lowest return that any run of ``scores``/``results`` scored on it (its score or any
    evaluation), and ``high``, the best score of any run on it: a normalised score is (score - low) / (high - low).
    """
    returns = pd.concat([scores[["env", "score"]], results[["env", "mean_return"]].set_axis(["env", "score"], axis=1)])
    return pd.DataFrame({"low": returns.groupby("env")["score"].min(), "high": scores.groupby("env")["score"].max()})


def normalise(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``(values - low) / (high - low)`` (broadcast), 0 where ``high == low`` (every run scored the same)."""
    span = high - low
    return (values - low) / np.where(span > 0, span, 1.0)


def _improvement_probability(scores_x: np.ndarray, scores_y: np.ndarray) -> np.ndarray:
    """
    rliable's ``metrics.probability_of_improvement`` of ``scores_x`` (runs_x, envs) over ``scores_y`` (runs_y, envs)
    (per env Mann-Whitney's U / (runs_x runs_y): P(X > Y) + P(X = Y) / 2, averaged over the envs), counted without
    scipy's test, which takes a millisecond a call, for the bootstrap.
    """
    pairs = scores_x[:, None, :] - scores_y[None, :, :]  # (runs_x, runs_y, envs)
    return np.array([np.mean((pairs > 0).mean(axis=(0, 1)) + (pairs == 0).mean(axis=(0, 1)) / 2)])


def _iqm_curve(scores: np.ndarray) -> np.ndarray:
    """
    rliable's ``aggregate_iqm`` (scipy's 25% trimmed mean of the scores of all runs on all envs) at each evaluation
    point of ``scores`` (runs, envs, points), in one NumPy sort rather than a scipy call a point, for the bootstrap.
    """
    scores = np.sort(scores.reshape(-1, scores.shape[-1]), axis=0)  # (runs x envs, points)
    cut = int(0.25 * len(scores))  # as scipy's trim_mean
    return scores[cut : len(scores) - cut].mean(axis=0)


def _seeded_estimates(
    library: Any, scores: np.ndarray | tuple[np.ndarray, ...], function: Callable, reps: int
) -> tuple[Any, Any]:
    """
    rliable's stratified-bootstrap point estimate and interval (``reps`` replications) of ``function`` of ``scores``,
    with NumPy's global random numbers (rliable's resampling draws from them) seeded with :data:`BOOTSTRAP_SEED` and
    restored afterwards.
    """
    state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        points, intervals = library.get_interval_estimates(
            {"scores": scores}, function, reps=reps, confidence_interval_size=CONFIDENCE
        )
    finally:
        np.random.set_state(state)
    return points["scores"], intervals["scores"]


@dataclass
class Aggregate:
    """The report's aggregate of the normalised scores of ``algos`` over ``envs`` (:func:`aggregate`)."""

    algos: list[str]
    envs: list[str]
    frames: int
    #: bootstrap replications of the intervals
    reps: int
    #: per env: the normalisation's ``low`` (0) and ``high`` (1)
    bounds: pd.DataFrame
    #: per algo: its runs (rows of :func:`run_scores`, ``rank`` k for the k-th lowest seed on each env), the runs left
    #: out to have as many on every env, and per algo its normalised scores (runs, envs)
    runs: dict[str, pd.DataFrame]
    left_out: pd.DataFrame
    normalised: dict[str, np.ndarray]
    #: per algo: :data:`AGGREGATE_METRICS` and their intervals (2, metrics)
    metrics: dict[str, np.ndarray]
    intervals: dict[str, np.ndarray]
    #: per pair (X, Y), X != Y: the probability of improvement of X over Y and its interval (2,)
    improvement: dict[tuple[str, str], tuple[float, np.ndarray]]
    #: evaluation points (env frames) of every run, and per algo the IQM of the normalised evaluations at each and its
    #: interval (2, points)
    timesteps: list[int]
    curves: dict[str, np.ndarray]
    curve_intervals: dict[str, np.ndarray]


def aggregate(scores: pd.DataFrame, results: pd.DataFrame, algos: list[str], reps: int = BOOTSTRAP_REPS) -> Aggregate | str:
    """
    Aggregate of ``algos`` over the envs where each has runs of the largest frame budget of their runs: rliable's IQM,
    mean and optimality gap of the normalised scores (:func:`normalisation_bounds`, from every run on the env, also
    of other algos), the probability of improvement of each algo over each other one, and the IQM of the normalised
    evaluations at each evaluation point, each with a stratified-bootstrap interval of ``reps`` replications.
    rliable's score matrices need as many runs on every env: an algo's runs are cut to its lowest seeds on the env
    where it has fewest. A string says why there is no aggregate.
    """
    library, rliable_metrics, _ = import_rliable()
    missing = sorted(set(algos) - set(scores["algo"]))
    if missing:
        return f"no finished runs of {', '.join(missing)}"
    frames = int(scores[scores["algo"].isin(algos)]["frames"].max())
    scores, results = scores[scores["frames"] == frames], results[results["frames"] == frames]
    envs = sorted(set.intersection(*(set(scores[scores["algo"] == algo]["env"]) for algo in algos)))
    if not envs:
        return f"no env where each of {', '.join(algos)} has runs of {frames:,} frames"
    bounds = normalisation_bounds(scores[scores["env"].isin(envs)], results[results["env"].isin(envs)]).loc[envs]
    low, high = bounds["low"].to_numpy(), bounds["high"].to_numpy()
    runs, left_out, normalised, evaluations = {}, [], {}, {}
    for algo in algos:
        own = scores[(scores["algo"] == algo) & scores["env"].isin(envs)].sort_values(["env", "seed"])
        kept = own.groupby("env").head(own.groupby("env").size().min())
        left_out.append(own.drop(kept.index))
        runs[algo] = kept.assign(rank=kept.groupby("env").cumcount()).reset_index(drop=True)  # rank: k-th lowest seed
        normalised[algo] = normalise(runs[algo].pivot(index="rank", columns="env", values="score")[envs].to_numpy(), low, high)
        evaluations[algo] = results.merge(runs[algo][[*RUN_KEY, "rank"]], on=RUN_KEY)
    timesteps = sorted(
        set.intersection(*(set(steps) for algo in algos for _, steps in evaluations[algo].groupby(RUN_KEY)["timesteps"]))
    )
    # AGGREGATE_METRICS
    functions = (rliable_metrics.aggregate_iqm, rliable_metrics.aggregate_mean, rliable_metrics.aggregate_optimality_gap)
    metrics, intervals, curves, curve_intervals = {}, {}, {}, {}
    for algo in algos:
        metrics[algo], intervals[algo] = _seeded_estimates(
            library, normalised[algo], lambda x: np.array([function(x) for function in functions]), reps
        )
        curve = evaluations[algo].pivot(index="rank", columns=["env", "timesteps"], values="mean_return")
        curve = curve.reindex(columns=pd.MultiIndex.from_product([envs, timesteps])).to_numpy()
        curve = normalise(curve.reshape(-1, len(envs), len(timesteps)), low[:, None], high[:, None])  # (runs, envs, points)
        curves[algo], curve_intervals[algo] = _seeded_estimates(library, curve, _iqm_curve, reps)
    improvement = {}
    for index, x in enumerate(algos):
        for y in algos[index + 1 :]:
            _, interval = _seeded_estimates(library, (normalised[x], normalised[y]), _improvement_probability, reps)
            point = float(rliable_metrics.probability_of_improvement(normalised[x], normalised[y]))
            improvement[(x, y)] = (point, interval[:, 0])
            # P(Y > X) = 1 - P(X > Y), in every resample too
            improvement[(y, x)] = (1 - point, 1 - interval[::-1, 0])
    return Aggregate(
        algos, envs, frames, reps, bounds, runs, pd.concat(left_out), normalised, metrics, intervals, improvement, timesteps,
        curves, curve_intervals,
    )  # fmt: skip


def _estimate(point: float, interval: np.ndarray) -> str:
    """A point estimate and its interval (low, high), for the report."""
    return f"{point:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def aggregate_section(result: Aggregate) -> str:
    """The report's section on the aggregate ``result``: how it was computed, its tables and its two plots."""
    share = f"{CONFIDENCE:.0%}"
    used = pd.concat(result.runs.values())
    left_out = ", ".join(f"{row.algo} {row.env} seed {row.seed}" for row in result.left_out.itertuples())
    counts = ", ".join(f"{algo} {len(runs) // len(result.envs)}" for algo, runs in result.runs.items())
    if left_out:
        counts += f"; left out, to have as many runs of an algorithm on every env (its lowest seeds are kept): {left_out}"
    lines = [
        "## Aggregate over envs\n",
        f"Algorithms: {', '.join(result.algos)} (`--aggregate-algos`; by default every algorithm with finished runs, "
        f"variants ALGO@NAME only when named). Envs where each has runs of {result.frames:,} frames "
        f"({len(result.envs)}): {', '.join(result.envs)}. Runs per env: {counts}. Of these {len(used)} runs, "
        f"{int((~used['final']).sum())} are scored by their last evaluation (see above).\n",
        "Normalised score: (score - low) / (high - low) per env, with high (= 1) the best score of any run on the env "
        "and low (= 0) the lowest return of any run on it, its score or any of its evaluations (in practice an early "
        "evaluation); every run of the report at this frame budget counts, also those of algorithms and variants "
        "outside the aggregate, so a run's normalised score does not depend on `--aggregate-algos`. No random policy "
        "is measured.\n",
        "| env | low (= 0) | high (= 1) |",
        "|---|---:|---:|",
        *(f"| {env} | {row.low:.2f} | {row.high:.2f} |" for env, row in result.bounds.iterrows()),
        "",
        f"IQM (mean of the middle 50% of the normalised scores of all runs on all envs), mean (of the per-env means) and "
        f"optimality gap (1 - mean of min(score, 1); lower is better) by rliable, with {share} stratified-bootstrap "
        f"intervals (rliable's `get_interval_estimates`: runs resampled with replacement within each env, "
        f"{result.reps} replications, percentile intervals, NumPy's random numbers seeded with {BOOTSTRAP_SEED} "
        f"for each algorithm):\n",
        f"| algo | runs | {' | '.join(AGGREGATE_METRICS)} |",
        f"|---|---:|{'---|' * len(AGGREGATE_METRICS)}",
    ]
    for algo in result.algos:
        cells = " | ".join(_estimate(point, result.intervals[algo][:, i]) for i, point in enumerate(result.metrics[algo]))
        lines.append(f"| {algo} | {len(result.runs[algo])} | {cells} |")
    lines.append(f"\n![Aggregate metrics with {share} intervals]({AGGREGATE_PLOT})\n")
    if len(result.algos) > 1:
        lines += [
            "Probability of improvement P(X > Y) of the row's algorithm X over the column's Y (rliable's "
            "`probability_of_improvement`: on each env the probability that a run of X scores more than one of Y, ties "
            f"counting half, averaged over the envs), with {share} stratified-bootstrap intervals (each algorithm's runs "
            "resampled within each env independently of the other's; P(Y > X) = 1 - P(X > Y)):\n",
            f"| P(row > column) | {' | '.join(result.algos)} |",
            f"|---|{'---|' * len(result.algos)}",
        ]
        for x in result.algos:
            cells = " | ".join("" if x == y else _estimate(*result.improvement[(x, y)]) for y in result.algos)
            lines.append(f"| {x} | {cells} |")
        lines.append("")
    points = [f"{timesteps / 1000:g}k" for timesteps in result.timesteps]
    lines += [
        f"Sample efficiency: IQM of the normalised evaluation returns (mean over their episodes; same normalisation) at "
        f"each evaluation point, env frames, with {share} stratified-bootstrap intervals:\n",
        f"| algo | {' | '.join(points)} |",
        f"|---|{'---|' * len(points)}",
        *(
            f"| {algo} | {' | '.join(_estimate(point, result.curve_intervals[algo][:, t]) for t, point in enumerate(curve))} |"
            for algo, curve in result.curves.items()
        ),
        f"\n![IQM of the normalised evaluation returns against env frames]({AGGREGATE_CURVES_PLOT})\n",
    ]
    return "\n".join(lines)


def plot_aggregate(result: Aggregate, colors: dict[str, Any], root: Path) -> None:
    """rliable's plots of ``result``: its metrics with their intervals, and its IQM curves against env frames."""
    _, _, plot_utils = import_rliable()
    figure, _ = plot_utils.plot_interval_estimates(
        result.metrics,
        result.intervals,
        metric_names=AGGREGATE_METRICS,
        algorithms=result.algos,
        colors=colors,
        row_height=0.6,
        xlabel=f"normalised score ({len(result.envs)} envs, {result.frames:,} frames)",
        xlabel_y_coordinate=-0.4 if len(result.algos) < 3 else -0.2,
    )
    figure.savefig(root / AGGREGATE_PLOT, dpi=120, bbox_inches="tight")
    plt.close(figure)
    axis = plot_utils.plot_sample_efficiency_curve(
        result.timesteps,
        result.curves,
        result.curve_intervals,
        algorithms=result.algos,
        colors=colors,
        xlabel="env frames",
        ylabel="IQM of normalised evaluation return",
        labelsize="large",
        ticklabelsize="large",
    )
    axis.set_title(f"{len(result.envs)} envs: {', '.join(result.envs)}", fontsize="small")
    axis.legend(fontsize="small")
    axis.figure.savefig(root / AGGREGATE_CURVES_PLOT, dpi=120, bbox_inches="tight")
    plt.close(axis.figure)


def algo_colors(algos: list[str]) -> dict[str, Any]:
    """Colour of each algo in the report's plots: the same in all of them."""
    return dict(zip(sorted(algos), plt.get_cmap("tab10").colors * (len(algos) // 10 + 1), strict=False))


def write_report(root: Path, aggregate_algos: list[str] | None = None, reps: int = BOOTSTRAP_REPS) -> None:
    """
    Write ``results.csv``, ``final.csv``, ``results.md``, ``learning_curves.png``, ``aggregate.png`` and
    ``aggregate_curves.png`` of the finished runs under ``root``; the aggregate covers ``aggregate_algos`` (default:
    every algorithm with finished runs, no variant ``ALGO@NAME``); the intervals take ``reps`` bootstrap replications.
    """
    results, finals = collect(root)
    if results.empty:
        print(f"no finished runs under {root}")
        return
    results.sort_values([*RUN_KEY, "timesteps"]).to_csv(root / "results.csv", index=False)
    finals = finals.astype({"final_episodes": "Int64"}).sort_values(RUN_KEY)
    finals.to_csv(root / FINAL_CSV, index=False)
    episodes = sorted(results["eval_episodes"].unique())
    final_episodes = sorted(finals["final_episodes"].dropna().unique())
    header = (
        "# Benchmark results\n\n"
        f"Final return: each run's last evaluation (mean over {'/'.join(map(str, episodes))} episodes of the "
        "deterministic policy), then mean ± std (population) over seeds. Final score: the mean return of the run's "
        f"final model over {'/'.join(map(str, final_episodes)) or 'n/a'} episodes of the deterministic policy on a fresh "
        f"env seeded with the run's seed + {FINAL_EVAL_SEED_OFFSET:,}, then mean ± std (population) over the n seeds that "
        "have one (runs from before the final evaluation whose model is gone have none). Frames: training budget in env "
        "frames (MinAtar has no frame skip). Wall-clock and CPU time (user + system, all threads): whole zoo process, "
        "evaluations included, final score not included; frames/s = frames / wall-clock. "
        f"Machine: {os.cpu_count()} CPU cores.\n\n"
    )
    curves = "\nEvaluation return (mean over seeds) at each evaluation point, in env frames:\n\n" + curve_table(results)
    scores = run_scores(results, finals)
    intervals = (
        f"\n## Scores with {CONFIDENCE:.0%} bootstrap intervals\n\n"
        "The score of a run: its final score, or for a run without one its last evaluation (marked in bold in the last "
        "column, which names the seeds scored each way); then the mean over seeds and a percentile bootstrap interval "
        f"of that mean ({reps} resamples of the seeds with replacement, random numbers seeded with "
        f"{BOOTSTRAP_SEED}; a single seed gives no interval, shown as its score twice).\n\n" + score_table(scores, reps)
    )
    algos = list(dict.fromkeys(aggregate_algos or sorted(algo for algo in scores["algo"].unique() if "@" not in algo)))
    try:
        result = aggregate(scores, results, algos, reps) if algos else "no algorithm without a variant name: name them"
    except ImportError as error:
        result = f"rliable is not installed ({error}): `pip install -e '.[benchmark]'`"
    written = ["results.csv", FINAL_CSV, "results.md", "learning_curves.png"]
    if isinstance(result, Aggregate):
        section = aggregate_section(result)
        plot_aggregate(result, algo_colors(list(results["algo"].unique())), root)
        written += [AGGREGATE_PLOT, AGGREGATE_CURVES_PLOT]
    else:
        section = f"## Aggregate over envs\n\nNone: {result}.\n"
        for name in (AGGREGATE_PLOT, AGGREGATE_CURVES_PLOT):
            (root / name).unlink(missing_ok=True)  # an earlier report's
    (root / "results.md").write_text(header + markdown_table(results, finals) + curves + intervals + "\n" + section)
    plot_learning_curves(results, root / "learning_curves.png")
    print(f"wrote {', '.join(str(root / name) for name in written)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line; ``--quick`` changes the defaults of the budget options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["dreamerv2", "ppo", "dqn", "qrdqn"])
    parser.add_argument("--envs", nargs="+", default=["Breakout-MinAtar", "BreakoutPOMDP-MinAtar"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--seeds-per-algo", nargs="+", default=[], metavar="ALGO=N", help="run only the first N of --seeds for ALGO"
    )
    parser.add_argument("--frames", type=int, help=f"env frames per run (default {FULL_BUDGET[0]}, quick {QUICK_BUDGET[0]})")
    parser.add_argument("--eval-freq", type=int, help=f"env frames between evaluations (default {FULL_BUDGET[1]})")
    parser.add_argument("--eval-episodes", type=int, help=f"episodes per evaluation (default {FULL_BUDGET[2]})")
    parser.add_argument(
        "--final-episodes",
        type=int,
        help=f"episodes of the final score of a run (default {FULL_BUDGET[3]}, quick {QUICK_BUDGET[3]})",
    )
    parser.add_argument("--processes", type=int, default=2, help="runs in parallel; torch threads = cores // processes")
    parser.add_argument("--root", type=Path, default=Path("benchmarks/minatar-100k"))
    parser.add_argument("--device", default="auto", help="--device of the zoo")
    parser.add_argument("--tensorboard", action="store_true", help="TensorBoard logs of each run in RUN/tensorboard")
    parser.add_argument("--hyperparams", nargs="+", default=[], metavar="KEY:VALUE", help="zoo --hyperparams, all algos")
    parser.add_argument(
        "--algo-hyperparams",
        nargs="+",
        action="append",
        default=[],
        metavar="ALGO KEY:VALUE",
        help="zoo --hyperparams for one algo or variant ALGO@NAME (repeatable), e.g. --algo-hyperparams ppo n_envs:4",
    )
    parser.add_argument("--quick", action="store_true", help="tiny budgets and models, for tests")
    parser.add_argument(
        "--aggregate-algos",
        nargs="+",
        metavar="ALGO",
        help="algorithms and variants ALGO@NAME of the report's aggregate over envs (default: every algorithm with "
        "finished runs, no variant)",
    )
    parser.add_argument(
        "--bootstrap-reps",
        type=int,
        default=BOOTSTRAP_REPS,
        help=f"bootstrap replications of the report's intervals (default {BOOTSTRAP_REPS})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild the report, and the scalars.csv and dream GIFs of the finished runs, from the finished runs",
    )
    mode.add_argument(
        "--final-eval-missing",
        action="store_true",
        help="train nothing: score the finished runs under --root without a final score whose model is on disk, "
        "then rebuild the report",
    )
    args = parser.parse_args(argv)
    budget = QUICK_BUDGET if args.quick else FULL_BUDGET
    for name, default in zip(("frames", "eval_freq", "eval_episodes", "final_episodes"), budget, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.root = args.root.resolve()
    try:
        args.seeds_per_algo = {algo: int(count) for algo, count in (item.split("=") for item in args.seeds_per_algo)}
    except ValueError:
        parser.error("--seeds-per-algo takes ALGO=N items")
    missing = sorted({base_algo(algo) for algo in args.algos} - {"dreamerv2"})
    missing = [algo for algo in missing if not (CONF_DIR / f"{algo}.yml").is_file()]
    if missing and not (args.report_only or args.final_eval_missing):
        parser.error(f"no hyperparameter file {', '.join(str(CONF_DIR / f'{algo}.yml') for algo in missing)}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Train the grid (``--final-eval-missing``: score the unscored runs instead; ``--report-only``: neither), then report."""
    args = parse_args(argv)
    failed = []
    try:
        if args.final_eval_missing:
            failed = score_missing(args)
        elif not args.report_only:
            runs = [
                Run(algo, env, seed)
                for algo in args.algos
                for env in args.envs
                for seed in args.seeds[: args.seeds_per_algo.get(algo, len(args.seeds))]
            ]
            failed = run_grid(args, runs)
    except KeyboardInterrupt:
        print("interrupted: the running subprocesses were stopped; run the same command again to resume", flush=True)
        raise SystemExit(130) from None
    export_finished_runs(args.root)
    write_report(args.root, args.aggregate_algos, args.bootstrap_reps)
    if failed:
        raise SystemExit(f"{len(failed)} runs failed: {', '.join(map(str, failed))}")


if __name__ == "__main__":
    main()
