"""
Running a benchmark grid: each run trained by the RL Zoo in a subprocess (resumed from its checkpoint where it has one),
then its final model scored in another, ``--processes`` runs at a time (or as tasks of a Ray cluster with ``--ray``,
:mod:`sb3_dreamer.benchmark.ray_grid`), stopped together by Ctrl-C or SIGTERM.
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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import IO, Any, NoReturn

from tqdm import tqdm

from sb3_dreamer.benchmark.export import export_tensorboard
from sb3_dreamer.benchmark.layout import (
    CHECKPOINT_DIR,
    FINAL_EVAL_FILE,
    LOG_FILE,
    RUN_FILE,
    SEGMENTS_FILE,
    TENSORBOARD_DIR,
    Run,
    base_algo,
    find_evaluations,
    finished_runs,
    is_finished,
    write_json,
)
from sb3_dreamer.benchmark.machine import code_facts, machine_facts
from sb3_dreamer.benchmark.quick import QUICK_HYPERPARAMS
from sb3_dreamer.zoo.plugin import ALGORITHMS, HYPERPARAMS_DIR

#: The repository (or the install's folder above the package): the subprocesses' working directory
REPO = Path(__file__).resolve().parents[2]
#: The algorithms whose runs keep a checkpoint and resume from it (the others read the packaged ``ALGO.yml`` as -conf)
RESUMABLE_ALGOS = tuple(ALGORITHMS)
#: glibc allocator settings of the runs (an env var of the same name set by the caller wins): large tensors freed and
#: allocated at every gradient step stay in the heap instead of being unmapped and faulted in again (README, Performance)
GLIBC_MALLOC_SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "4000000000",
    "MALLOC_TOP_PAD_": "1000000000",
}
#: The final evaluation's seed is the run's seed + this: the zoo seeds the training envs with seed + rank (rank < n_envs)
#: and its evaluation env with the seed itself
FINAL_EVAL_SEED_OFFSET = 10_000
#: Command of the final evaluation's subprocess, before its settings (:mod:`sb3_dreamer.benchmark.final_eval`)
FINAL_EVAL_COMMAND = [sys.executable, "-m", "sb3_dreamer.benchmark.final_eval"]


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
        self.threads = args.threads
        self.lock = threading.Lock()
        self.processes: set[subprocess.Popen] = set()
        self.stopped = False

    def command(self, run: Run, run_dir: Path, resume: bool) -> list[str]:
        """Command line of the zoo for ``run``, resuming from its checkpoint if ``resume``."""
        args = self.args
        command = [sys.executable, "-m", "sb3_dreamer.zoo", "train", "--algo", run.zoo_algo, "--env", run.env]
        if run.algo in args.algo_conf:
            command += ["-conf", str(args.algo_conf[run.algo])]
        elif run.zoo_algo not in ALGORITHMS:
            command += ["-conf", str(HYPERPARAMS_DIR / f"{run.zoo_algo}.yml")]
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
            checkpoint = dict(save_freq=args.checkpoint_freq, save_path=str(run_dir / CHECKPOINT_DIR))
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
        code = code_facts()

        def record(returncode: int | None, wall_clock_s: float, cpu_s: float) -> dict[str, Any]:
            """Write the segments with this part's times and commit; a part still running (or killed) has no returncode."""
            part = {
                "resumed": resume,
                "returncode": returncode,
                "wall_clock_s": wall_clock_s,
                "cpu_s": cpu_s,
                "commit": code["commit"],
            }
            write_json(run_dir / SEGMENTS_FILE, [*segments, part])
            return part

        with open(run_dir / LOG_FILE, "a" if resume else "w") as log:
            ended = self.execute(command, process_environment(self.threads, malloc), log, progress=record)
        if ended is None:
            return "interrupted"
        returncode = ended[0]
        segments.append(record(*ended))
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
            "machine": machine_facts(),
            "code": code,
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
        command = [*FINAL_EVAL_COMMAND, json.dumps(settings)]
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

    def execute(
        self,
        command: list[str],
        env: dict[str, str],
        log: IO[str],
        progress: Callable[[None, float, float], object] | None = None,
    ) -> tuple[int, float, float] | None:
        """
        Run ``command`` to its end with the environment ``env`` and its output in ``log``: its exit code, wall-clock
        and CPU time (user + system, s), or ``None`` when the grid was stopped before it started.

        :param progress: called every :data:`PROGRESS_INTERVAL` s while the command runs with ``(None, wall-clock s,
            CPU s so far)``, so that a part killed with the machine has left its times
        """
        start = time.monotonic()
        with self.lock:
            if self.stopped:
                return None
            process = start_in_own_session(
                command, self.args.niceness, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            self.processes.add(process)
        done = threading.Event()
        reporter = threading.Thread(target=report_progress, args=(process.pid, start, done, progress), daemon=True)
        if progress is not None:
            reporter.start()
        # wait4 also gives the CPU time of the run, which unlike its wall-clock time does not grow on a busy machine
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        if progress is not None:
            reporter.join()  # its last record comes before the caller's final one
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


def start_in_own_session(command: list[str], niceness: int, **popen_kwargs: Any) -> subprocess.Popen:
    """
    Start ``command`` in a session of its own, so that Ctrl-C reaches the benchmark only, which stops the runs (the zoo
    would save and exit 0). On Linux, a new session is also a new scheduling group (autogroup), whose own nice value,
    0, would weigh it against other sessions whatever the process's: a positive ``niceness`` (the grid's, so that
    ``nice python scripts/benchmark.py`` yields to other work on the machine) becomes the group's (nothing changes
    where the process is in no autogroup: a kernel without them, or a CPU cgroup such as a container's).
    """
    process = subprocess.Popen(command, start_new_session=True, **popen_kwargs)
    if niceness > 0:
        try:
            Path(f"/proc/{process.pid}/autogroup").write_text(str(niceness))
        except OSError:  # no autogroups, or the run already ended
            pass
    return process


#: Seconds between two records of a running part's times (:meth:`Launcher.execute`)
PROGRESS_INTERVAL = 60.0


def report_progress(pid: int, start: float, done: threading.Event, progress: Callable[[None, float, float], object]) -> None:
    """
    Until ``done`` is set, call ``progress(None, wall-clock s since start, CPU s of process pid)`` every
    :data:`PROGRESS_INTERVAL` s (psutil reads the CPU time of a process that is still running).
    """
    import psutil

    try:
        process = psutil.Process(pid)
        while not done.wait(PROGRESS_INTERVAL):
            times = process.cpu_times()
            progress(None, round(time.monotonic() - start, 3), round(times.user + times.system, 3))
    except psutil.Error:  # the process ended between two records
        return


#: A run's job, a method of :class:`Launcher` (``train`` or ``add_final_score``): ``None`` on success, else why it failed
Task = Callable[[Launcher, Run], str | None]


def _raise_interrupt(signum: int, frame: Any) -> NoReturn:
    """Signal handler: stop the grid as Ctrl-C does."""
    raise KeyboardInterrupt


def interrupt_on_sigterm() -> None:
    """From now on SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def track(outcomes: Iterable[tuple[Run, str | None]], total: int) -> list[Run]:
    """
    Count the runs of ``outcomes`` (each run as it ends, and why it failed or ``None``) on a progress bar of ``total``
    runs, writing each failure; return the failed runs.
    """
    failed = []
    with tqdm(total=total, unit="run") as progress:
        for run, error in outcomes:
            if error is not None:
                failed.append(run)
                tqdm.write(f"FAILED {run}: {error}")
            progress.update()
    return failed


def run_parallel(args: argparse.Namespace, task: Task, runs: list[Run]) -> list[Run]:
    """
    ``task`` on every run, ``--processes`` at a time on this machine; return the runs it failed on. Ctrl-C or SIGTERM
    stops the subprocesses.
    """
    launcher = Launcher(args)
    interrupt_on_sigterm()
    with ThreadPoolExecutor(args.processes) as pool:
        futures = {pool.submit(task, launcher, run): run for run in runs}
        try:
            return track(((futures[future], future.result()) for future in as_completed(futures)), len(runs))
        except KeyboardInterrupt:
            launcher.stop()
            pool.shutdown(cancel_futures=True)
            raise


def run_tasks(args: argparse.Namespace, task: Task, runs: list[Run]) -> list[Run]:
    """``task`` on every run, as tasks of the Ray cluster of ``--ray``, else on this machine; return the failed runs."""
    if args.ray is None:
        return run_parallel(args, task, runs)
    # Ray is an optional extra: imported only for --ray
    from sb3_dreamer.benchmark.ray_grid import run_on_ray

    return run_on_ray(args, task, runs)


def run_grid(args: argparse.Namespace, runs: list[Run]) -> list[Run]:
    """Train and score the unfinished ``runs``; return the failed ones."""
    pending = [run for run in runs if not is_finished(run.directory(args.root), args.frames)]
    print(f"{len(runs)} runs: skipped {len(runs) - len(pending)} finished, {len(pending)} to train", flush=True)
    if not pending:
        return []
    return run_tasks(args, Launcher.train, pending)


def score_missing(args: argparse.Namespace) -> list[Run]:
    """
    Score the final model of every finished run under ``args.root`` that has no final score and whose model is
    still on disk; return the runs whose evaluation failed.
    """
    unscored = [
        Run(info["algo"], info["env"], info["seed"]) for _, info in finished_runs(args.root) if "final_mean_return" not in info
    ]
    pending = [run for run in unscored if run.final_model(args.root).is_file()]
    gone = "".join(f"\n  no model: {run}" for run in unscored if run not in pending)
    print(f"{len(unscored)} finished runs without a final score: {len(pending)} to evaluate{gone}", flush=True)
    if not pending:
        return []
    return run_tasks(args, Launcher.add_final_score, pending)
