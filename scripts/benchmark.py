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
  time; then the evaluation return at every evaluation point (mean over seeds) of each algo x env,
- ``learning_curves.png``: evaluation return against env frames, mean over seeds with a min-max band,
  one panel per env and one line per algo.

Run ``ALGO ENV SEED`` lives in ``ROOT/runs/ALGO/ENV/seed_SEED/``: the zoo's log folder (``-f``), ``train.log``
(its output), with ``--tensorboard`` its TensorBoard logs (``tensorboard/``, for DreamerV2 the world-model losses,
actor entropy and dream videos) and, once it has finished, ``run.json`` (its settings, wall-clock and CPU time and
final score).
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
    algos = sorted(results["algo"].unique())
    colors = dict(zip(algos, plt.get_cmap("tab10").colors, strict=False))
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


def write_report(root: Path) -> None:
    """Write ``results.csv``, ``final.csv``, ``results.md`` and ``learning_curves.png`` of the finished runs under ``root``."""
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
    (root / "results.md").write_text(header + markdown_table(results, finals) + curves)
    plot_learning_curves(results, root / "learning_curves.png")
    print(f"wrote {root / 'results.csv'}, {root / FINAL_CSV}, {root / 'results.md'} and {root / 'learning_curves.png'}")


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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--report-only", action="store_true", help="only rebuild the report from the finished runs")
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
    write_report(args.root)
    if failed:
        raise SystemExit(f"{len(failed)} runs failed: {', '.join(map(str, failed))}")


if __name__ == "__main__":
    main()
