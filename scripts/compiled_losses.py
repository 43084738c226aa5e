"""
CPU time of an update with compiled losses (``compile_losses=True``) against the same model run eagerly, in rounds
that alternate the two in one process (``torch.compiler.set_stance("force_eager")`` runs the eager code), at the
packaged MinAtar setting of the algorithm (read from its RL Zoo file): DreamerV2 at batch 16 x 50, DreamerV3 ``size1m``
at batch 8 x 32 (``--policy-kwargs`` entries in place of the packaged networks', for a variant), in float32
(``--mixed-precision false``, the default here) or as the library's ``mixed_precision`` setting says (``auto``,
``true``: bfloat16 autocast).

Prints the first (compiling) update's wall-clock seconds, the number of compiled graphs and graph breaks, then per
round the median CPU time (``time.process_time``) per update of ``--calls`` calls of ``train()`` with the packaged
``gradient_steps`` (DreamerV2: 5, DreamerV3: 1) in each mode, and their ratio.

Usage: python scripts/compiled_losses.py --algo dreamerv2 [--rounds 9] [--calls 3] [--threads 1] [--mixed-precision true]
    [--policy-kwargs "dict(...)"]
"""

import argparse
import statistics
import time

import torch as th

from sb3_dreamer.benchmark.update_settings import minatar_update_settings
from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.common.precision import MIXED_PRECISION_SETTINGS
from sb3_dreamer.zoo import ALGORITHMS


def median_update_s(model: DreamerAlgorithm, n_calls: int) -> float:
    """Median over ``n_calls`` calls of ``train()`` of the CPU seconds per update."""
    seconds = []
    for _ in range(n_calls):
        start = time.process_time()
        model.train(gradient_steps=model.gradient_steps, batch_size=model.batch_size)
        seconds.append((time.process_time() - start) / model.gradient_steps)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="dreamerv2", choices=list(ALGORITHMS))
    parser.add_argument("--env", default="Breakout-MinAtar")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of eager, then compiled updates")
    parser.add_argument("--calls", type=int, default=3, help="train() calls timed per round and mode")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--policy-kwargs", default=None, help="a dict(...) whose entries replace the packaged policy_kwargs' (a variant)"
    )
    parser.add_argument(
        "--mixed-precision", default="false", choices=list(MIXED_PRECISION_SETTINGS), help="the model's mixed_precision"
    )
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    model = ALGORITHMS[args.algo](
        "CnnPolicy",
        args.env,
        learning_starts=1100,
        mixed_precision=MIXED_PRECISION_SETTINGS[args.mixed_precision],
        seed=0,
        compile_losses=True,
        **minatar_update_settings(args.algo, policy_kwargs=args.policy_kwargs),
    )
    model.learn(model.learning_starts)  # random steps that fill the replay buffer; no update yet
    start = time.perf_counter()
    model.train(gradient_steps=1, batch_size=model.batch_size)
    counters = th._dynamo.utils.counters
    print(
        f"bfloat16 autocast: {model.bfloat16_autocast}; first update {time.perf_counter() - start:.1f} s wall-clock, "
        f"{counters['stats']['unique_graphs']} graphs, "
        f"{sum(counters['graph_break'].values())} graph breaks",
        flush=True,
    )
    ratios = []
    for round_index in range(args.rounds):
        with th.compiler.set_stance("force_eager"):
            eager_s = median_update_s(model, args.calls)
        compiled_s = median_update_s(model, args.calls)
        ratios.append(eager_s / compiled_s)
        print(
            f"round {round_index}: eager {1000 * eager_s:.0f} ms, compiled {1000 * compiled_s:.0f} ms, "
            f"ratio {eager_s / compiled_s:.2f}",
            flush=True,
        )
    print(f"median ratio {statistics.median(ratios):.2f}, {counters['stats']['unique_graphs']} graphs")


if __name__ == "__main__":
    main()
