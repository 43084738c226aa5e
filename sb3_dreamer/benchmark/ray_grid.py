"""
A benchmark grid on a Ray cluster (``--ray [ADDRESS]``): each run is a Ray task that does, on whichever node Ray
places it, what the local process pool does (a :class:`~sb3_dreamer.benchmark.grid.Launcher`'s ``train``: from scratch
or from the run's checkpoint, then its final score), into ``--root``, which every node must reach. Ray is the ``ray``
extra, imported only here.
"""

import argparse
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from sb3_dreamer.benchmark.grid import Launcher, Task, interrupt_on_sigterm, track
from sb3_dreamer.benchmark.layout import Run

INSTALL = 'pip install "sb3-dreamer[ray]"'
#: ``--ray`` without an address: Ray's name for a new local cluster
LOCAL = "local"


def import_ray() -> ModuleType:
    """The ``ray`` module; an ImportError names the extra."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"{error}: --ray needs the ray extra, {INSTALL}") from error
    return ray


def run_on_node(args: argparse.Namespace, task: Task, run: Run) -> str | None:
    """The Ray task of ``run``: ``task`` of a launcher on the node that runs it; ``None`` on success, else why it failed."""
    return task(Launcher(args), run)


def run_on_ray(args: argparse.Namespace, task: Task, runs: list[Run]) -> list[Run]:
    """
    ``task`` on every run as a task of the Ray cluster at ``args.ray`` (:data:`LOCAL`: a new one of ``--processes`` x
    ``--threads`` CPUs on this machine) with ``--threads`` CPUs, and a GPU with ``--device cuda``; return the failed
    runs. A task whose worker or node dies is not retried: it fails, and the same command runs it again. Ctrl-C or
    SIGTERM cancels the tasks, which stops their subprocesses, and disconnects from the cluster.
    """
    ray = import_ray()
    if args.ray == LOCAL:
        ray.init(address=LOCAL, num_cpus=args.processes * args.threads, include_dashboard=False)
    else:
        ray.init(address=args.ray)
    # After ray.init, whose own handler would abort the process
    interrupt_on_sigterm()
    try:
        resources = ray.cluster_resources()
        print(f"Ray cluster: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs", flush=True)
        gpus = 1 if args.device.startswith("cuda") else 0
        remote = ray.remote(run_on_node).options(num_cpus=args.threads, num_gpus=gpus, max_retries=0)
        pending = {remote.remote(args, task, run): run for run in runs}
        try:
            return track(outcomes(ray, pending), len(runs))
        except KeyboardInterrupt:
            for ref in pending:
                # force: kills the task's worker process, and Ray the worker's child processes (zoo and evaluation)
                ray.cancel(ref, force=True)
            raise
    finally:
        ray.shutdown()


def outcomes(ray: ModuleType, pending: dict[Any, Run]) -> Iterator[tuple[Run, str | None]]:
    """
    Each run of ``pending`` (Ray's reference to its task -> the run) as its task ends, which takes it out of
    ``pending``, and why it failed or ``None``.
    """
    while pending:
        [ref], _ = ray.wait(list(pending))
        run = pending.pop(ref)
        try:
            error = ray.get(ref)
        except ray.exceptions.RayError as failure:  # its worker or node died, or Ray could not run it
            error = f"Ray: {failure}"
        yield run, error
