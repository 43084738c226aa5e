"""Command lines (the RL Zoo's scripts) run in a fresh interpreter, and tiny DreamerV2 hyperparameters for them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sb3_dreamer.benchmark.quick import QUICK_HYPERPARAMS, QUICK_POLICY_KWARGS

# The tiny DreamerV2 of ``scripts/benchmark.py --quick``: a few hundred steps take seconds of a CPU core
TINY_POLICY_KWARGS = QUICK_POLICY_KWARGS
TINY = tuple(QUICK_HYPERPARAMS["dreamerv2"])


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python <args>`` in a fresh interpreter without GPU; fail the test with its output if ``check`` and it fails."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        # One torch thread: tiny networks gain nothing from more, and a busy machine makes threads spin
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
    if check and result.returncode != 0:
        output = f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        pytest.fail(f"python {' '.join(args)} exited with {result.returncode}:\n{output}")
    return result
