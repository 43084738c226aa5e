"""
Shared by the tests: one torch thread per pytest-xdist worker, the same global generator states at each test's start,
the tiny DreamerV2 of ``sb3_dreamer.benchmark.quick`` (in Python and as zoo hyperparameters), which keeps them fast on
2 CPU cores, command lines run in a fresh interpreter, and checks of two models.
"""

import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.utils import set_random_seed

from sb3_dreamer import DreamerV2
from sb3_dreamer.benchmark.quick import QUICK_HYPERPARAMS, QUICK_POLICY_KWARGS, TINY_POLICY_KWARGS

if "PYTEST_XDIST_WORKER" in os.environ:
    # One worker process per core (pytest -n): more intra-op threads per worker would wait for each other
    th.set_num_threads(1)


@pytest.fixture(autouse=True)
def seeded_global_generators() -> None:
    """
    Each test starts from the same global Python, NumPy and torch generator states, whatever ran before it in its
    worker: what a test draws does not depend on the order in which pytest-xdist hands out the tests.
    """
    set_random_seed(0)


TINY_POLICY = TINY_POLICY_KWARGS
TINY = dict(
    policy_kwargs=TINY_POLICY,
    buffer_size=2_000,
    learning_starts=40,
    batch_size=4,
    sequence_length=8,
    train_freq=16,
    # float32 on every machine: the default "auto" picks bfloat16 where the CPU multiplies it natively
    mixed_precision=False,
    gradient_steps=2,
    imagination_horizon=3,
    seed=0,
)


def constructor_defaults(cls: type) -> dict[str, object]:
    """The default of each argument of ``cls``'s constructor (``inspect.Parameter.empty`` for one without)."""
    return {name: parameter.default for name, parameter in inspect.signature(cls.__init__).parameters.items()}


def tiny_model(env="Breakout-MinAtar", policy="CnnPolicy", **kwargs) -> DreamerV2:
    return DreamerV2(policy, env, **{**TINY, **kwargs})


def assert_same_weights(model: DreamerV2, other: DreamerV2) -> None:
    """The two policies hold equal tensors under the same names."""
    state, other_state = model.policy.state_dict(), other.policy.state_dict()
    assert state.keys() == other_state.keys()
    for name, tensor in state.items():
        assert th.equal(tensor, other_state[name]), name


def assert_same_predictions(model: DreamerV2, other: DreamerV2, observations: np.ndarray, n_steps: int) -> list[np.ndarray]:
    """
    Deterministic ``predict`` of both models, each carrying its own state, on the same observations (n_envs, *obs_shape)
    for ``n_steps`` calls (the first one starts the episodes): actions and states must be equal.

    :return: the actions of each call
    """
    state = other_state = None
    actions = []
    for step in range(n_steps):
        starts = np.full(len(observations), step == 0)
        action, state = model.predict(observations, state=state, episode_start=starts, deterministic=True)
        other_action, other_state = other.predict(observations, state=other_state, episode_start=starts, deterministic=True)
        np.testing.assert_array_equal(action, other_action)
        for a, b in zip(state, other_state, strict=True):
            np.testing.assert_array_equal(a, b)
        actions.append(action)
    return actions


# The tiny DreamerV2 of ``scripts/benchmark.py --quick``: a few hundred steps take seconds of a CPU core
ZOO_TINY_POLICY_KWARGS = QUICK_POLICY_KWARGS
ZOO_TINY = tuple(QUICK_HYPERPARAMS["dreamerv2"])


def assert_return_scale_divides_the_actor_loss(
    return_scale: th.nn.Module, actor_critic_losses: Callable[[], tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]]
) -> None:
    """
    The same imagination (seeded) with the return scale at 1 and at about 50: the actor's loss (entropy bonus off) is
    divided by the scale, the critic's, which learns the unscaled returns, is unchanged.

    :param return_scale: the model's :class:`~sb3_dreamer.world_model.returns.ReturnScale`
    :param actor_critic_losses: the actor's and critic's losses and the metrics of one call on fixed start states
    """
    losses = {}
    for range_ema in (0.0, 50.0):
        return_scale.range_ema.fill_(range_ema)
        th.manual_seed(1)
        actor_loss, critic_loss, metrics = actor_critic_losses()
        losses[range_ema] = actor_loss, critic_loss, metrics["return_scale"]
    (unscaled_actor, unscaled_critic, unit_scale), (scaled_actor, scaled_critic, scale) = losses.values()
    assert unit_scale == 1.0 and scale > 40.0 and unscaled_actor.abs() > 0
    assert th.allclose(scaled_actor * scale, unscaled_actor, rtol=1e-5, atol=1e-8)
    assert th.equal(scaled_critic, unscaled_critic)


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
