"""
DreamerV3's optimiser (danijar/dreamerv3, ``embodied/jax/opt.py``): per-tensor adaptive gradient clipping, then LaProp,
with a linear learning-rate warmup.

For each parameter tensor p with gradient g, at its t-th update (t = 1, 2, ...):

* AGC, on the whole tensor (Frobenius norms; biases and norm scales included, unlike NFNets' unit-wise clipping):
  ``g <- g / max(1, ||g|| / (agc * max(agc_pmin, ||p||)))``
* RMS normalisation: ``nu <- beta2 * nu + (1 - beta2) * g^2``, ``u = g / (sqrt(nu / (1 - beta2^t)) + eps)``
* momentum of the normalised gradient: ``m <- beta1 * m + (1 - beta1) * u``
* update: ``p <- p - lr_t * m / (1 - beta1^t)``, ``lr_t = lr * min(1, t / warmup)`` (lr when warmup = 0); no weight
  decay.

The momentum is taken after the normalisation (LaProp, Ziyin et al. 2020), so this is not Adam, which normalises the
momentum of the raw gradients: m / sqrt(nu).
"""

from collections.abc import Callable, Iterable
from numbers import Integral
from typing import cast, overload

import torch as th
from torch.optim.optimizer import ParamsT


def _by_device_and_dtype(parameters: list[th.Tensor]) -> list[list[th.Tensor]]:
    """Split the parameters into lists of one device and dtype each, for the ``torch._foreach_*`` ops."""
    groups: dict[tuple[th.device, th.dtype], list[th.Tensor]] = {}
    for parameter in parameters:
        groups.setdefault((parameter.device, parameter.dtype), []).append(parameter)
    return list(groups.values())


def agc_clip_(parameters: th.Tensor | Iterable[th.Tensor], agc: float, pmin: float) -> None:
    """
    Adaptive gradient clipping per whole tensor, in place on ``p.grad`` (parameters without one are skipped):
    ``g <- g / max(1, ||g|| / (agc * max(pmin, ||p||)))``, Frobenius norms. No host-device synchronisation.

    :param parameters: the parameters whose gradients to clip
    :param agc: the largest ratio of a gradient's norm to its parameter's norm; 0 disables the clipping
    :param pmin: the floor of the parameter norm, so that zero-initialised tensors can move
    """
    if agc == 0:
        return
    if isinstance(parameters, th.Tensor):
        parameters = [parameters]
    for params in _by_device_and_dtype([p for p in parameters if p.grad is not None]):
        grads = cast(list[th.Tensor], [p.grad for p in params])  # filtered above: none is None
        grad_norms = th.stack(th._foreach_norm(grads))
        param_norms = th.stack(th._foreach_norm(params))
        scales = (grad_norms / (agc * param_norms.clamp_min(pmin))).clamp_min(1.0).reciprocal()
        th._foreach_mul_(grads, list(scales.unbind()))


class LaProp(th.optim.Optimizer):
    """
    LaProp with per-tensor adaptive gradient clipping and linear warmup, DreamerV3's optimiser (formulas in the module
    docstring). ``step`` clips the gradients in place, like ``torch.nn.utils.clip_grad_norm_``.

    State per parameter: ``step`` (t, float32 0-dim CPU tensor), ``exp_avg`` (m), ``exp_avg_sq`` (nu).

    :param params: the parameters or parameter groups to optimise
    :param lr: the learning rate after the warmup; groups' ``lr`` may be changed between steps
    :param betas: (beta1, beta2), the decay rates of the momentum and of the squared-gradient average
    :param eps: added to the root of the squared-gradient average
    :param agc: the AGC ratio of gradient norm to parameter norm; 0 disables AGC
    :param agc_pmin: the floor of the parameter norm in AGC
    :param warmup: the number of updates over which the learning rate rises linearly from 0 to ``lr``; 0: none
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 4e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-20,
        agc: float = 0.3,
        agc_pmin: float = 1e-3,
        warmup: int = 1000,
    ) -> None:
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not agc >= 0:
            raise ValueError(f"agc must be >= 0, got {agc}")
        if not agc_pmin > 0:
            raise ValueError(f"agc_pmin must be > 0, got {agc_pmin}")
        if isinstance(warmup, bool) or not isinstance(warmup, Integral) or warmup < 0:
            raise ValueError(f"warmup must be a non-negative int (updates), got {warmup!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, agc=agc, agc_pmin=agc_pmin, warmup=int(warmup))
        super().__init__(params, defaults)

    def _state(self, parameter: th.Tensor) -> dict[str, th.Tensor]:
        """The parameter's state, created at its first update."""
        state = self.state[parameter]
        if not state:
            state["step"] = th.tensor(0.0, dtype=th.float32)
            state["exp_avg"] = th.zeros_like(parameter, memory_format=th.preserve_format)
            state["exp_avg_sq"] = th.zeros_like(parameter, memory_format=th.preserve_format)
        return state

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @th.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of the parameters that have a gradient; returns the closure's loss (None without one)."""
        loss = None
        if closure is not None:
            with th.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, warmup = group["lr"], group["eps"], group["warmup"]
            with_grads = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in with_grads):
                raise RuntimeError("LaProp does not support sparse gradients")
            agc_clip_(with_grads, group["agc"], group["agc_pmin"])
            for params in _by_device_and_dtype(with_grads):
                grads = cast(list[th.Tensor], [p.grad for p in params])  # filtered above: none is None
                states = [self._state(p) for p in params]
                exp_avgs = [state["exp_avg"] for state in states]
                exp_avg_sqs = [state["exp_avg_sq"] for state in states]
                steps = [state["step"] for state in states]
                th._foreach_add_(steps, 1.0)
                counts = [step.item() for step in steps]  # CPU tensors: no synchronisation
                bias_corrections2 = [1 - beta2**t for t in counts]
                step_sizes = [-(lr * min(1.0, t / warmup) if warmup > 0 else lr) / (1 - beta1**t) for t in counts]

                th._foreach_mul_(exp_avg_sqs, beta2)
                th._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
                denominators = th._foreach_div(exp_avg_sqs, bias_corrections2)
                th._foreach_sqrt_(denominators)
                th._foreach_add_(denominators, eps)
                th._foreach_mul_(exp_avgs, beta1)
                th._foreach_addcdiv_(exp_avgs, grads, denominators, value=1 - beta1)
                th._foreach_add_(params, th._foreach_mul(exp_avgs, step_sizes))
        return loss
