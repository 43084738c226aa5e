"""
CPU time of DreamerV2's three optimizer steps (world model, actor, critic) at the packaged MinAtar sizes, for each of
``torch.optim.Adam``'s implementations: the for-loop over parameters (its CPU default), ``foreach`` and ``fused``
(the library's default, :func:`sb3_dreamer.common.optimizers.with_fused_default`).

Each implementation steps copies of the same parameters with the same fixed random gradients; the script prints, per
optimizer, the parameter count, the median of ``--rounds`` rounds of the CPU ms per step (``time.process_time``
over 20 steps) and the largest difference of the parameters from the for-loop's after all the steps.

``--update-rounds N`` then times whole updates of the packaged setting with compiled losses (``mixed_precision``
"auto") after 1,100 random steps: N rounds that alternate the for-loop and the fused optimizers, each round the
median CPU ms per update of 3 ``train(gradient_steps=5)`` calls, and the medians over the rounds.

Usage: python scripts/optimizer_steps.py [--env Breakout-MinAtar] [--rounds 5] [--threads 1] [--update-rounds 6]
"""

import argparse
import statistics
import time

import torch as th

from sb3_dreamer import DreamerV2
from sb3_dreamer.benchmark.update_settings import minatar_update_settings

#: Adam's implementations, by name: the keyword that selects each
IMPLEMENTATIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
STEPS_PER_ROUND = 20


def time_steps(parameters: list[th.Tensor], implementation: dict, rounds: int) -> tuple[float, list[th.Tensor]]:
    """Median CPU ms per Adam step on copies of ``parameters``, and the copies after all the steps."""
    copies = [parameter.detach().clone().requires_grad_(True) for parameter in parameters]
    generator = th.Generator().manual_seed(0)
    for copy in copies:
        copy.grad = 1e-3 * th.randn(copy.shape, generator=generator)
    optimizer = th.optim.Adam(copies, lr=2e-4, **implementation)
    optimizer.step()  # allocates the state
    milliseconds = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(STEPS_PER_ROUND):
            optimizer.step()
        milliseconds.append(1000 * (time.process_time() - start) / STEPS_PER_ROUND)
    return statistics.median(milliseconds), copies


def time_updates(env: str, rounds: int) -> dict[str, float]:
    """Median CPU ms per compiled update with each optimizer implementation, alternating in ``rounds`` rounds."""
    model = DreamerV2(
        "CnnPolicy", env, learning_starts=1100, seed=0, compile_losses=True, **minatar_update_settings("dreamerv2")
    )
    model.learn(model.learning_starts)
    model.train(gradient_steps=1, batch_size=model.batch_size)  # compiles, or loads the compiled graphs
    policy = model.policy
    modules = (policy.world_model, policy.actor, policy.critic)
    optimizers = {
        name: [th.optim.Adam(module.parameters(), lr=1e-4, **IMPLEMENTATIONS[name]) for module in modules]
        for name in ("for-loop", "fused")
    }
    milliseconds: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(rounds):
        for name, (world_model, actor, critic) in optimizers.items():
            policy.world_model_optimizer, policy.actor_optimizer, policy.critic_optimizer = world_model, actor, critic
            calls = []
            for _ in range(3):
                start = time.process_time()
                model.train(gradient_steps=model.gradient_steps, batch_size=model.batch_size)
                calls.append(1000 * (time.process_time() - start) / model.gradient_steps)
            milliseconds[name].append(statistics.median(calls))
        print("round: " + ", ".join(f"{name} {values[-1]:.1f} ms" for name, values in milliseconds.items()), flush=True)
    return {name: statistics.median(values) for name, values in milliseconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Breakout-MinAtar")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--update-rounds", type=int, default=0, help="rounds of whole compiled updates to time")
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    policy = DreamerV2("CnnPolicy", args.env, **minatar_update_settings("dreamerv2")).policy
    print("| optimizer | parameters | " + " | ".join(f"{name}, ms" for name in IMPLEMENTATIONS) + " | fused - for-loop |")
    print("|---|---:|" + "---:|" * len(IMPLEMENTATIONS) + "---:|")
    for name in ("world_model", "actor", "critic"):
        parameters = list(getattr(policy, name).parameters())
        results = {key: time_steps(parameters, implementation, args.rounds) for key, implementation in IMPLEMENTATIONS.items()}
        reference = results["for-loop"][1]
        difference = max((a - b).abs().max().item() for a, b in zip(reference, results["fused"][1], strict=True))
        times = " | ".join(f"{results[key][0]:.2f}" for key in IMPLEMENTATIONS)
        print(f"| {name} | {sum(p.numel() for p in parameters):,} | {times} | {difference:.1e} |")
    if args.update_rounds:
        medians = time_updates(args.env, args.update_rounds)
        print("median ms per update: " + ", ".join(f"{name} {value:.1f}" for name, value in medians.items()))


if __name__ == "__main__":
    main()
