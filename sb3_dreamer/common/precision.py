"""Which precision the gradient steps compute in: bfloat16 autocast where the device multiplies bfloat16 natively."""

import torch as th

#: the values of ``mixed_precision``
MIXED_PRECISION_SETTINGS = ("auto", True, False)
#: torch's probes of the CPU instruction sets that multiply bfloat16 natively: AVX512-BF16 and AMX
_CPU_BFLOAT16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def has_native_bfloat16(device: th.device) -> bool:
    """
    Whether ``device`` multiplies bfloat16 natively: a CUDA GPU of compute capability 8.0 or more (Ampere on), or a
    CPU with AVX512-BF16 or AMX. Elsewhere bfloat16 is emulated and slower than float32.
    """
    if device.type == "cuda":
        return th.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return any(getattr(th.cpu, probe, lambda: False)() for probe in _CPU_BFLOAT16_PROBES)
    return False


def resolve_mixed_precision(setting: str | bool, device: th.device) -> bool:
    """
    Whether to run the gradient steps under bfloat16 autocast.

    :param setting: ``"auto"`` (where :func:`has_native_bfloat16`), True or False
    :param device: the device of the model
    :raises ValueError: for another setting, or True on a CUDA GPU without bfloat16
    """
    if isinstance(setting, str) and setting == "auto":
        return has_native_bfloat16(device)
    if not isinstance(setting, bool):
        raise ValueError(f"mixed_precision must be 'auto', True or False, got {setting!r}")
    if setting and device.type == "cuda" and not th.cuda.is_bf16_supported():
        raise ValueError(
            f"mixed_precision=True computes in bfloat16, which {th.cuda.get_device_name(device)} does not support "
            "(CUDA GPUs from Ampere on do): use mixed_precision='auto' or False"
        )
    return setting
