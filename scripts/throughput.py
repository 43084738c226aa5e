"""
Throughput of DreamerV2 (``--algo dreamerv2``, the default) or DreamerV3 (``--algo dreamerv3``, at ``--model-size``) at
their default batch (``--batch-size`` changes it): one JSON line with

- ``grad_step_ms``: one gradient step: DreamerV2's (world model, then actor and critic) on batch 50 x sequence 50,
  horizon 10, with its parts ``world_model_ms`` and ``actor_critic_ms``; DreamerV3's (one loss, one optimizer step) on
  batch 16 x sequence 64, horizon 15,
- ``grad_step_ops``: the operators one gradient step dispatches when it runs eagerly (forward, backward and optimizer;
  on a GPU each is at least one kernel launch),
- ``first_grad_step_s``: the untimed first gradient step (with ``--compile-losses``: compiling the losses),
- ``act_ms_n1`` / ``act_ms_n8``: one acting step (encode, posterior step, actor, action to the host) for 1 and 8 envs,
- ``predict_ms_n1``: one stateful ``predict`` step for 1 env (host state in and out, as ``evaluate_policy`` calls it),
- ``frames_per_s``: env frames per second of ``learn`` at the default schedule after the random warm-up,
- ``replay_bytes_per_transition`` and ``replay_mb_at_capacity``,
- ``peak_rss_mb``: peak resident memory of the process, with every row of the replay buffer touched,
- ``grad_step_gflop``: floating-point operations of one gradient step (torch's FLOP counter), and
  ``matmul_gflops``: the machine's fp32 speed on a 1024 x 1024 x 1024 matmul with the same threads, so that figures
  from different machines can be compared (``grad_step_gflop / grad_step_ms`` is the achieved speed).

``--mixed-precision auto|true|false`` is the model's ``mixed_precision`` (default ``auto``, the library's; the flag
alone means ``true``); ``bfloat16_autocast`` in the output says whether the gradient steps ran under bfloat16 autocast.
``--compile-losses`` builds the model with ``compile_losses=True``.

Usage: python scripts/throughput.py --env Breakout-MinAtar [--algo dreamerv3 --model-size size1m] [--device cpu]
    [--threads 2] [--mixed-precision false] [--batch-size 16] [--compile-losses]
"""

import argparse
import json
import platform
import resource
import time

import numpy as np
import torch as th
from stable_baselines3.common.utils import obs_as_tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from sb3_dreamer import DreamerV2, DreamerV3
from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.common.precision import MIXED_PRECISION_SETTINGS


def _sync(device: th.device) -> None:
    if device.type == "cuda":
        th.cuda.synchronize(device)


def time_gradient_steps(model: DreamerAlgorithm, n_steps: int) -> dict[str, float]:
    """
    Mean ms of full gradient steps, and for DreamerV2 of their world-model and actor-critic parts, after a first step
    that warms up allocators and kernels (and compiles compiled losses): its seconds are ``first_grad_step_s``.
    """
    model.policy.set_training_mode(True)
    if not isinstance(model, DreamerV2):
        step_s = []
        for _ in range(n_steps + 1):
            samples = model.replay_buffer.sample(model.batch_size)
            _sync(model.device)
            start = time.perf_counter()
            model._gradient_step(samples, 0)
            _sync(model.device)
            step_s.append(time.perf_counter() - start)
        return {"first_grad_step_s": step_s[0], "grad_step_ms": 1000 * sum(step_s[1:]) / n_steps}
    world_model_s, actor_critic_s = [], []
    for _ in range(n_steps + 1):
        samples = model.replay_buffer.sample(model.batch_size)
        _sync(model.device)
        start = time.perf_counter()
        _, posterior = model._train_world_model(samples)
        _sync(model.device)
        middle = time.perf_counter()
        model._train_actor_critic(posterior, samples.terminated)
        _sync(model.device)
        world_model_s.append(middle - start)
        actor_critic_s.append(time.perf_counter() - middle)
    return {
        "first_grad_step_s": world_model_s[0] + actor_critic_s[0],
        "grad_step_ms": 1000 * (sum(world_model_s[1:]) + sum(actor_critic_s[1:])) / n_steps,
        "world_model_ms": 1000 * sum(world_model_s[1:]) / n_steps,
        "actor_critic_ms": 1000 * sum(actor_critic_s[1:]) / n_steps,
    }


def gradient_step_gflop(model: DreamerAlgorithm) -> float:
    """GFLOP of one gradient step, forward and backward, counted by torch (eagerly: the operators one by one)."""
    samples = model.replay_buffer.sample(model.batch_size)
    with th.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        model._gradient_step(samples, 0)
    return counter.get_total_flops() / 1e9


class OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched to the device kernels while active."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def gradient_step_ops(model: DreamerAlgorithm) -> int:
    """Operators dispatched by one gradient step run eagerly."""
    samples = model.replay_buffer.sample(model.batch_size)
    with th.compiler.set_stance("force_eager"), OperatorCount() as counter:
        model._gradient_step(samples, 0)
    return counter.count


def matmul_gflops(device: th.device, size: int = 1024, n_steps: int = 20) -> float:
    """fp32 GFLOP/s of a ``size``-cubed matmul on ``device``."""
    a, b = th.randn(size, size, device=device), th.randn(size, size, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(n_steps):
        a @ b
    _sync(device)
    return 2 * size**3 * n_steps / (time.perf_counter() - start) / 1e9


def time_acting(model: DreamerAlgorithm, n_envs: int, n_steps: int) -> float:
    """Mean ms of one acting step for ``n_envs`` envs, from host observations to host actions (no episode starts)."""
    policy = model.policy
    observations = np.stack([model.observation_space.sample() for _ in range(n_envs)])
    state = policy.initial_state(n_envs)
    policy.set_training_mode(False)
    with th.inference_mode():
        for step in range(n_steps + 10):
            if step == 10:
                start = time.perf_counter()
            actions, state = policy.act(obs_as_tensor(observations, model.device), state, None)
            actions.cpu().numpy()
    return 1000 * (time.perf_counter() - start) / n_steps


def time_predict(model: DreamerAlgorithm, n_steps: int) -> float:
    """Mean ms of one deterministic ``predict`` step for one env, carrying its state (no episode starts after the first)."""
    observation = model.observation_space.sample()
    state, episode_start = None, np.array([True])
    for step in range(n_steps + 10):
        if step == 10:
            start = time.perf_counter()
        _, state = model.predict(observation, state=state, episode_start=episode_start, deterministic=True)
        episode_start = np.array([False])
    return 1000 * (time.perf_counter() - start) / n_steps


def touch_replay(model: DreamerAlgorithm) -> None:
    """Write zeros into the not yet used rows so that the peak RSS includes a replay buffer at capacity."""
    buffer = model.replay_buffer
    assert not buffer.env_full.any(), "the warm-up filled the replay buffer"
    for name in ("observations", "actions", "rewards", "terminated", "is_first"):
        getattr(buffer, name)[:, buffer.env_pos.max() :] = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Breakout-MinAtar")
    parser.add_argument("--algo", default="dreamerv2", choices=["dreamerv2", "dreamerv3"])
    parser.add_argument("--model-size", default="size1m", help="DreamerV3's model_size (default: size1m)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--grad-steps", type=int, default=10, help="gradient steps to time")
    parser.add_argument("--act-steps", type=int, default=1000, help="acting steps to time per n_envs")
    parser.add_argument(
        "--mixed-precision",
        nargs="?",
        const="true",
        default="auto",
        choices=list(MIXED_PRECISION_SETTINGS),
        help="mixed_precision of the model: bfloat16 autocast in the gradient steps (default: auto)",
    )
    parser.add_argument("--learn-frames", type=int, default=500, help="frames of learn() after warm-up to time")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per gradient step (default: the algo's)")
    parser.add_argument("--compile-losses", action="store_true", help="compile the losses (compile_losses=True)")
    args = parser.parse_args()
    if args.threads is not None:
        th.set_num_threads(args.threads)

    mixed_precision = MIXED_PRECISION_SETTINGS[args.mixed_precision]
    common = dict(device=args.device, seed=0, mixed_precision=mixed_precision, compile_losses=args.compile_losses)
    if args.batch_size is not None:
        common["batch_size"] = args.batch_size
    if args.algo == "dreamerv2":
        model: DreamerAlgorithm = DreamerV2("CnnPolicy", args.env, **common)
    else:
        model = DreamerV3("CnnPolicy", args.env, policy_kwargs=dict(model_size=args.model_size), **common)
    # Random warm-up fills the replay buffer; learn() does not train before learning_starts.
    model.learn(model.learning_starts)
    result: dict[str, object] = {
        "env": args.env,
        "algo": args.algo,
        "device": str(model.device),
        "torch": th.__version__,
        "threads": th.get_num_threads(),
        "batch_size": model.batch_size,
        "mixed_precision": mixed_precision,
        "bfloat16_autocast": model.bfloat16_autocast,
        "compile_losses": model.compile_losses,
        "cpu": platform.processor() or platform.machine(),
    }
    result["matmul_gflops"] = matmul_gflops(model.device)
    result.update(time_gradient_steps(model, args.grad_steps))
    result["grad_step_gflop"] = gradient_step_gflop(model)
    result["grad_step_ops"] = gradient_step_ops(model)
    result["act_ms_n1"] = time_acting(model, 1, args.act_steps)
    result["act_ms_n8"] = time_acting(model, 8, args.act_steps)
    result["predict_ms_n1"] = time_predict(model, args.act_steps)

    start_frames, start = model.num_timesteps, time.perf_counter()
    model.learn(args.learn_frames, reset_num_timesteps=False)
    _sync(model.device)
    result["frames_per_s"] = (model.num_timesteps - start_frames) / (time.perf_counter() - start)

    result["replay_bytes_per_transition"] = model.replay_buffer.nbytes_per_row
    result["replay_mb_at_capacity"] = model.replay_buffer.nbytes_per_row * model.buffer_size / 1e6
    touch_replay(model)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({key: round(value, 2) if isinstance(value, float) else value for key, value in result.items()}))


if __name__ == "__main__":
    main()
