"""Command lines (the RL Zoo's scripts) run in a fresh interpreter, and tiny DreamerV2 hyperparameters for them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A few hundred steps of a tiny model, a few seconds on a CPU core
TINY_POLICY_KWARGS = (
    "embedding_dim=16,deter_size=16,stoch_size=4,class_size=4,rssm_hidden_size=16,cnn_depth=4,head_units=16,head_layers=1"
)
TINY = (
    "learning_starts:100",
    "batch_size:4",
    "sequence_length:8",
    "train_freq:16",
    "gradient_steps:1",
    "imagination_horizon:3",
    "buffer_size:2000",
    f"policy_kwargs:dict({TINY_POLICY_KWARGS})",
)


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
