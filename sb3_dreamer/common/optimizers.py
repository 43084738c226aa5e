"""Where optimizer states live: Adam's step counters on the CPU, so that a CUDA step does not wait on them."""

import torch as th


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
