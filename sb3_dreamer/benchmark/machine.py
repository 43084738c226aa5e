"""
What a run's times and numerics depend on besides its settings: the machine it ran on and the code it ran, recorded in
``run.json``.
"""

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch as th

import sb3_dreamer
from sb3_dreamer.common.precision import has_native_bfloat16

#: CPU flags (``/proc/cpuinfo``) that decide the ``mixed_precision="auto"`` choice and the matmul kernels on x86
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def first_field(cpuinfo: str, name: str) -> str | None:
    """The value of the first ``name`` line of a ``/proc/cpuinfo`` text (the first CPU's), ``None`` where it has none."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` of a ``/proc/cpuinfo`` text, else :func:`platform.processor` (other systems)."""
    return first_field(cpuinfo, "model name") or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str) -> set[str]:
    """The flags of the first CPU in a ``/proc/cpuinfo`` text (empty where it has none)."""
    return set((first_field(cpuinfo, "flags") or "").split())


def machine_facts() -> dict[str, Any]:
    """
    The machine of this process: CPU model, logical CPUs, the bfloat16 flags it has, whether torch multiplies
    bfloat16 natively on it, torch's version and the CUDA device, if any. A run's wall-clock and CPU times, and the
    precision that ``mixed_precision="auto"`` picks, are only comparable between runs of the same facts.
    """
    try:
        with open("/proc/cpuinfo") as file:
            cpuinfo = file.read()
    except OSError:
        cpuinfo = ""
    flags = cpu_flags(cpuinfo)
    return {
        "cpu": cpu_model(cpuinfo),
        "logical_cpus": os.cpu_count(),
        "bfloat16_cpu_flags": [flag for flag in BFLOAT16_CPU_FLAGS if flag in flags],
        "cpu_native_bfloat16": has_native_bfloat16(th.device("cpu")),
        "torch": th.__version__,
        "cuda_device": th.cuda.get_device_name() if th.cuda.is_available() else None,
    }


def git_output(checkout: Path, *args: str) -> str | None:
    """The stripped output of ``git -C checkout ARGS``, ``None`` where git is missing or fails (not a checkout)."""
    try:
        done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_facts(package_dir: Path = Path(sb3_dreamer.__file__).parent) -> dict[str, Any]:
    """
    The code of ``package_dir`` (this process's ``sb3_dreamer``, which the grid's zoo subprocesses import too): the
    package's version and, where the package's files are tracked by a git checkout, the commit checked out and
    whether they differ from it (``modified``); ``commit`` is ``None`` for an installed wheel, also one in a virtual
    environment inside another project's checkout. A row repeats exactly with its commit, unmodified, on a machine of
    the same facts.
    """
    tracked = git_output(package_dir, "ls-files", "--", ".")
    commit = git_output(package_dir, "rev-parse", "HEAD") if tracked else None
    changes = git_output(package_dir, "status", "--porcelain", "--untracked-files=no", "--", ".") if commit else None
    return {"sb3_dreamer": sb3_dreamer.__version__, "commit": commit, "modified": bool(changes) if commit else None}
