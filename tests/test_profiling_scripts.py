"""``scripts/inductor_kernels.py``: the kernel-by-kernel times of a graph that inductor generated."""

import importlib.util
from pathlib import Path
from types import ModuleType

import torch as th
from torch._inductor.codecache import PyCodeCache


def load_script(name: str) -> ModuleType:
    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_kernel_call_of_a_compiled_graph_is_timed():
    script = load_script("inductor_kernels")
    weight = th.randn(8, 6)
    known = set(PyCodeCache.modules)
    compiled = th.compile(lambda inputs: (inputs @ weight).tanh() * 2.0, dynamic=False)
    inputs = th.randn(4, 8)
    th.testing.assert_close(compiled(inputs), (inputs @ weight).tanh() * 2.0)
    (graph,) = [module for module in PyCodeCache.modules if module not in known and hasattr(module, "get_args")]

    seconds, times = script.profile_graph(graph, n_calls=3)
    fused = [name for name in times.calls if name.startswith("cpp_fused_")]
    # The matmul is ATen's, called through extern_kernels; tanh and the product are one fused C++ kernel
    assert times.calls["extern_kernels.mm"] == 3
    assert len(fused) == 1 and times.calls[fused[0]] == 3
    assert 0 < sum(times.seconds.values()) / 3 <= seconds
