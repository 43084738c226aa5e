"""Guards against non-finite values: the error raised, and snapshots that undo the updates of a ``train()`` call."""

from collections import defaultdict
from collections.abc import Sequence

import torch as th
from torch import nn


class NonFiniteError(RuntimeError, ValueError):
    """
    A NaN or infinity in the data from the environment, or in a loss or gradient norm: training stopped.

    A ``RuntimeError``, and a ``ValueError`` as the invalid values that SB3's distributions meet on NaN, so that the
    RL Zoo's hyperparameter search prunes a diverging trial instead of stopping the study.

    :param message: what was not finite, where, and what was saved
    :param quantities: names of the non-finite quantities (e.g. ``"reward"``, ``"world_model_grad_norm"``)
    :param num_timesteps: env steps done when it was detected
    :param n_updates: gradient steps done (and kept) when it was detected
    :param checkpoint: directory of the recovery checkpoint, None if none was saved
    """

    def __init__(
        self, message: str, quantities: Sequence[str], num_timesteps: int, n_updates: int, checkpoint: str | None
    ) -> None:
        super().__init__(message)
        self.quantities = tuple(quantities)
        self.num_timesteps = num_timesteps
        self.n_updates = n_updates
        self.checkpoint = checkpoint


def _copy(destinations: list[th.Tensor], sources: list[th.Tensor]) -> None:
    """``destinations[i].copy_(sources[i])`` with one foreach copy per device (such as Adam's step counts on the CPU)."""
    by_device: dict[th.device, tuple[list[th.Tensor], list[th.Tensor]]] = defaultdict(lambda: ([], []))
    for destination, source in zip(destinations, sources, strict=True):
        by_device[destination.device][0].append(destination)
        by_device[destination.device][1].append(source)
    for device_destinations, device_sources in by_device.values():
        th._foreach_copy_(device_destinations, device_sources)


class UpdateSnapshot:
    """
    Copies of a module's parameters and buffers and of its optimizers' states, taken by :meth:`take` and put back
    by :meth:`restore`. Copies stay on their device (one foreach copy per device, no host-device sync).

    :param module: the module whose ``state_dict`` tensors are copied
    :param optimizers: the optimizers whose state tensors (such as Adam's moments and step) are copied
    """

    def __init__(self, module: nn.Module, optimizers: Sequence[th.optim.Optimizer]) -> None:
        self.module = module
        self.optimizers = list(optimizers)
        self._copies: list[th.Tensor] = []
        # Per optimizer, the parameters that had a state when the snapshot was taken
        self._stateful: list[set[th.Tensor]] = []

    def _tensors(self) -> list[th.Tensor]:
        tensors = list(self.module.state_dict().values())
        for optimizer in self.optimizers:
            for state in optimizer.state.values():
                tensors.extend(value for value in state.values() if isinstance(value, th.Tensor))
        return tensors

    @staticmethod
    def _layout(tensors: list[th.Tensor]) -> list[tuple[th.Size, th.dtype, th.device]]:
        return [(tensor.shape, tensor.dtype, tensor.device) for tensor in tensors]

    @th.no_grad()
    def take(self) -> None:
        """Copy the current tensors (into the copies of the previous snapshot when the layout is unchanged)."""
        tensors = self._tensors()
        self._stateful = [set(optimizer.state) for optimizer in self.optimizers]
        if self._layout(tensors) == self._layout(self._copies):
            _copy(self._copies, tensors)
        else:
            self._copies = [tensor.detach().clone() for tensor in tensors]

    @th.no_grad()
    def restore(self) -> None:
        """Put the snapshot back; optimizer states created since it was taken are removed."""
        for optimizer, stateful in zip(self.optimizers, self._stateful, strict=True):
            for parameter in [p for p in optimizer.state if p not in stateful]:
                del optimizer.state[parameter]
        tensors = self._tensors()
        if self._layout(tensors) != self._layout(self._copies):
            raise RuntimeError("The optimizer states changed layout since the snapshot was taken: cannot restore it")
        _copy(tensors, self._copies)
