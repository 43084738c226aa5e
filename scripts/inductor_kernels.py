"""
Where the time of a compiled update goes, kernel by kernel: builds the model with ``compile_losses=True``, runs one
update (compiling, or loading inductor's cached kernels) and ``--calls`` untimed ones, then wraps every fused C++
kernel (``cpp_fused_*``) and every external kernel (``mm``, ``addmm``, convolutions ...) of the graphs that inductor
generated (the world model's loss forward and backward, the actor-critic losses' forward and backward) in a timer
(``time.process_time``) and runs ``--calls`` more updates on the model's own replayed batches.

The kernels see the training's own values: on the random inputs of a graph's benchmark harness (unscaled random
weights, so logits in the hundreds) the exponentials' results underflow into subnormal floats, and a softmax or GRU
gate kernel runs 3-5 times slower than it does in training.

Prints the CPU ms of an update, then one markdown table per graph: the ms per update of its fused kernels and of its
external kernels, and its ``--top`` most expensive kernels with their calls per update. The rest of an update is ATen
operators that inductor leaves as they are (e.g. ``convolution_backward``, ``embedding_bag``), the optimisers, the
replay sampling and Python.

``--elementwise`` prints instead the CPU time of exp, tanh, sigmoid and ELU on an (800, 200) float32 tensor (an
imagination step's size at batch 16) eagerly (ATen's kernels) and compiled (inductor's vectorised C++).

The model is the packaged MinAtar setting of ``--algo`` (read from its RL Zoo file: DreamerV2 at batch 16 x 50,
DreamerV3 ``size1m`` at batch 8 x 32), ``--batch-size`` sequences per update where given, ``--policy-kwargs`` entries
in place of the packaged networks' (a variant: ``--policy-kwargs "dict(deter_size=1024, units=128)"``).

Usage: python scripts/inductor_kernels.py [--algo dreamerv2] [--env Breakout-MinAtar] [--batch-size 16]
    [--mixed-precision true] [--threads 1] [--policy-kwargs "dict(...)"] [--calls 5] [--top 12] [--elementwise]
"""

import argparse
import collections
import time
from collections.abc import Callable
from types import ModuleType

import torch as th
from torch._inductor.codecache import PyCodeCache

from sb3_dreamer.benchmark.update_settings import minatar_update_settings
from sb3_dreamer.common.precision import MIXED_PRECISION_SETTINGS
from sb3_dreamer.zoo import ALGORITHMS


class KernelTimes:
    """CPU seconds and calls per kernel name, filled by the timing wrappers of :meth:`wrap`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)

    def wrap(self, name: str, kernel: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.process_time()
            result = kernel(*args, **kwargs)
            self.seconds[name] += time.process_time() - start
            self.calls[name] += 1
            return result

        return timed


class TimedExternKernels:
    """Stands for a graph module's ``extern_kernels``: each attribute read returns the kernel, timed."""

    def __init__(self, extern_kernels: ModuleType, times: KernelTimes) -> None:
        self._extern_kernels, self._times = extern_kernels, times

    def __getattr__(self, name: str) -> Callable:
        return self._times.wrap(f"extern_kernels.{name}", getattr(self._extern_kernels, name))


def time_kernels(module: ModuleType) -> KernelTimes:
    """Wrap each fused and external kernel that a generated graph module calls in a timer; returns their times."""
    times = KernelTimes()
    for name in [name for name in vars(module) if name.startswith("cpp_fused_")]:
        setattr(module, name, times.wrap(name, getattr(module, name)))
    module.extern_kernels = TimedExternKernels(module.extern_kernels, times)
    return times


def print_graph(title: str, times: KernelTimes, n_updates: int, top: int) -> None:
    fused = sum(s for name, s in times.seconds.items() if name.startswith("cpp_fused_")) / n_updates
    extern = sum(s for name, s in times.seconds.items() if name.startswith("extern_kernels.")) / n_updates
    print(f"\n### {title}: fused kernels {1000 * fused:.1f} ms, external kernels {1000 * extern:.1f} ms per update\n")
    print("| kernel | ms per update | calls per update |\n|---|---:|---:|")
    for name, spent in sorted(times.seconds.items(), key=lambda item: -item[1])[:top]:
        print(f"| `{name}` | {1000 * spent / n_updates:.2f} | {times.calls[name] // n_updates} |")


def elementwise_speeds(n_calls: int = 300) -> None:
    """Eager against compiled CPU ms of a few transcendental elementwise functions on an (800, 200) float32 tensor."""
    inputs = th.randn(800, 200)
    functions = {"exp": th.exp, "tanh": th.tanh, "sigmoid": th.sigmoid, "elu": th.nn.functional.elu}
    print("| function | eager ms | compiled ms |\n|---|---:|---:|")
    for name, function in functions.items():
        compiled = th.compile(function, dynamic=False)
        milliseconds = []
        for variant in (function, compiled):
            for _ in range(5):
                variant(inputs)
            start = time.process_time()
            for _ in range(n_calls):
                variant(inputs)
            milliseconds.append(1000 * (time.process_time() - start) / n_calls)
        print(f"| {name} | {milliseconds[0]:.3f} | {milliseconds[1]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="dreamerv2", choices=list(ALGORITHMS))
    parser.add_argument("--env", default="Breakout-MinAtar")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per update (default: the packaged)")
    parser.add_argument("--mixed-precision", default="true", choices=list(MIXED_PRECISION_SETTINGS))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--policy-kwargs", default=None, help="a dict(...) whose entries replace the packaged policy_kwargs' (a variant)"
    )
    parser.add_argument("--calls", type=int, default=5, help="timed updates")
    parser.add_argument("--top", type=int, default=12, help="kernels listed per graph")
    parser.add_argument("--elementwise", action="store_true", help="eager against compiled exp, tanh, sigmoid, ELU")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    if args.elementwise:
        elementwise_speeds()
        return

    settings = minatar_update_settings(args.algo, policy_kwargs=args.policy_kwargs)
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    model = ALGORITHMS[args.algo](
        "CnnPolicy",
        args.env,
        seed=0,
        mixed_precision=MIXED_PRECISION_SETTINGS[args.mixed_precision],
        compile_losses=True,
        **settings,
    )
    model.learn(model.learning_starts)
    known = set(PyCodeCache.modules)
    start = time.perf_counter()
    model.train(gradient_steps=1, batch_size=model.batch_size)
    print(f"first update (compiling or loading the compiled graphs): {time.perf_counter() - start:.1f} s")
    # Untimed updates first: the first few after compiling measured up to 1.4 times slower than those after them
    model.train(gradient_steps=args.calls, batch_size=model.batch_size)
    graphs = [module for module in PyCodeCache.modules if module not in known and hasattr(module, "get_args")]
    times = [time_kernels(module) for module in graphs]
    start = time.process_time()
    model.train(gradient_steps=args.calls, batch_size=model.batch_size)
    update = (time.process_time() - start) / args.calls
    kernels = sum(sum(graph_times.seconds.values()) for graph_times in times) / args.calls
    print(f"update: {1000 * update:.1f} ms of CPU ({args.calls} updates), {1000 * kernels:.1f} ms in the graphs' kernels")
    for index, (module, graph_times) in enumerate(zip(graphs, times, strict=True)):
        print_graph(f"graph {index} ({module.__file__})", graph_times, args.calls, args.top)


if __name__ == "__main__":
    main()
