"""Which precision the gradient steps compute in: bfloat16 autocast where the device multiplies bfloat16 faster."""

import functools
import time

import torch as th

#: torch's probes of the CPU instruction sets that multiply bfloat16 natively: AVX512-BF16 and AMX
_CPU_BFLOAT16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
#: how much faster than float32 a bfloat16 matmul must be on a CPU for ``"auto"`` to pick bfloat16
CPU_BFLOAT16_MIN_SPEEDUP = 1.25
#: the command-line spellings of ``mixed_precision`` (the scripts' ``--mixed-precision``) and the settings they stand for
MIXED_PRECISION_SETTINGS: dict[str, str | bool] = {"auto": "auto", "true": True, "false": False}


def has_native_bfloat16(device: th.device) -> bool:
    """
    Whether ``device`` has bfloat16 arithmetic: a CUDA GPU of compute capability 8.0 or more (Ampere on), or a CPU with
    AVX512-BF16 or AMX. Elsewhere bfloat16 is emulated and slower than float32.
    """
    if device.type == "cuda":
        return th.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return any(getattr(th.cpu, probe, lambda: False)() for probe in _CPU_BFLOAT16_PROBES)
    return False


@functools.cache
def cpu_bfloat16_speedup(threads: int, size: int = 512, repeats: int = 5) -> float:
    """
    float32 time over bfloat16 time of a ``size``-cubed matmul on this CPU with ``threads`` intra-op threads (best of
    ``repeats`` each, after a warm-up): about 30 ms, measured once per process and thread count. CPUs that report
    AVX512-BF16 differ widely: one measured 4.3 (479 against 110 GFLOP/s), another 0.6 (83 against 140).
    """
    previous_threads = th.get_num_threads()
    th.set_num_threads(threads)
    try:
        generator = th.Generator().manual_seed(0)  # leaves the global generator alone
        times = {}
        for dtype in (th.float32, th.bfloat16):
            a, b = (th.rand(size, size, generator=generator).to(dtype) for _ in range(2))
            a @ b
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                a @ b
                best = min(best, time.perf_counter() - start)
            times[dtype] = best
    finally:
        th.set_num_threads(previous_threads)
    return times[th.float32] / times[th.bfloat16]


def prefers_bfloat16(device: th.device) -> bool:
    """
    Whether bfloat16 autocast should speed up the gradient steps on ``device``: a CUDA GPU with bfloat16 (Ampere on),
    or a CPU with bfloat16 arithmetic where a bfloat16 matmul measured at least ``CPU_BFLOAT16_MIN_SPEEDUP`` times
    faster than a float32 one (:func:`cpu_bfloat16_speedup`, with the current thread count).
    """
    if not has_native_bfloat16(device):
        return False
    return device.type != "cpu" or cpu_bfloat16_speedup(th.get_num_threads()) >= CPU_BFLOAT16_MIN_SPEEDUP


def resolve_mixed_precision(setting: str | bool, device: th.device) -> bool:
    """
    Whether to run the gradient steps under bfloat16 autocast.

    :param setting: ``"auto"`` (where :func:`prefers_bfloat16`), True or False
    :param device: the device of the model
    :raises ValueError: for another setting, or True on a CUDA GPU (the model's) of compute capability below 8.0
    """
    if isinstance(setting, str) and setting == "auto":
        return prefers_bfloat16(device)
    if not isinstance(setting, bool):
        raise ValueError(f"mixed_precision must be 'auto', True or False, got {setting!r}")
    if setting and device.type == "cuda" and not has_native_bfloat16(device):
        raise ValueError(
            f"mixed_precision=True computes in bfloat16, which {th.cuda.get_device_name(device)} (compute capability "
            f"{'.'.join(map(str, th.cuda.get_device_capability(device)))}) does not support natively (CUDA GPUs of "
            "compute capability 8.0 and more do): use mixed_precision='auto' or False"
        )
    return setting
