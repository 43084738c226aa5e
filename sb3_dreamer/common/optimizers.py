"""
How the optimizers run: fused kernels where torch has them, and Adam's step counters on the CPU, so that a CUDA step
does not wait on them.
"""

import inspect
from typing import Any

import torch as th


def with_fused_default(optimizer_class: type[th.optim.Optimizer], optimizer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """
    ``optimizer_kwargs`` with ``fused=True`` added where the optimizer has a fused implementation (``torch.optim.Adam``:
    one pass over each parameter, on the CPU and on GPUs) and the arguments choose no implementation (``fused``,
    ``foreach``) and no ``differentiable`` step. Adam's default on the CPU is a loop of five operations per parameter,
    each a pass over memory: the fused step gives the same update within float32 rounding (the order of its
    arithmetic differs) in about a sixth of the time (``scripts/optimizer_steps.py``).
    """
    chosen = {"fused", "foreach", "differentiable"} & optimizer_kwargs.keys()
    if chosen or "fused" not in inspect.signature(optimizer_class).parameters:
        return optimizer_kwargs
    return {**optimizer_kwargs, "fused": True}


def keep_steps_on_cpu(optimizer: th.optim.Optimizer) -> None:
    """
    Move the ``step`` counters of the optimizer's states to the CPU, where ``torch.optim.Adam`` keeps them unless it is
    ``capturable`` or ``fused``. Loading a state dict onto a GPU (SB3's ``load`` maps every tensor to the model's
    device) puts them there, and then each foreach Adam step reads each counter with ``.item()``: two host-device
    synchronisations per parameter per step.
    """
    for group in optimizer.param_groups:
        if group.get("capturable") or group.get("fused"):
            continue
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            step = state.get("step")
            if isinstance(step, th.Tensor) and step.device.type != "cpu":
                state["step"] = step.to("cpu")
