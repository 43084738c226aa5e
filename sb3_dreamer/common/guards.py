"""
Guards against non-finite values: checks of the env's data and of each ``train()`` call's losses, the error they raise
with its recovery checkpoint, and snapshots that undo the updates of a ``train()`` call.
"""

import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import torch as th
from torch import nn

if TYPE_CHECKING:
    from sb3_dreamer.common.base_class import DreamerAlgorithm

#: Metrics checked for NaN and infinity after each train() call: the losses and gradient norms
GUARDED_METRICS = ("_loss", "_grad_norm")
#: Default recovery_dir of DreamerV2 and DreamerV3: a subfolder per recovery checkpoint is made in it, so that
#: concurrent runs do not share one
DEFAULT_RECOVERY_DIR = "dreamerv2_recovery"
DREAMERV3_RECOVERY_DIR = "dreamerv3_recovery"


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


def check_env_data(
    model: "DreamerAlgorithm", new_obs: np.ndarray, reward: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]]
) -> None:
    """Stop training on a NaN or infinity in the rewards, or in float observations, before they are stored."""
    quantity, finite = "reward", np.isfinite(reward)
    if finite.all() and np.issubdtype(model.observation_space.dtype, np.floating):
        quantity, finite = "observation", np.isfinite(new_obs).reshape(model.n_envs, -1).all(axis=1)
        for i in np.flatnonzero(dones):
            if infos[i].get("terminal_observation") is not None:
                finite[i] &= bool(np.isfinite(infos[i]["terminal_observation"]).all())
    if not finite.all():
        bad_envs = np.flatnonzero(~finite).tolist()
        raise_non_finite(model, f"Non-finite {quantity} from env(s) {bad_envs}", [quantity], "before storing it")


def check_update(
    model: "DreamerAlgorithm",
    snapshot: UpdateSnapshot,
    metrics: list[dict[str, th.Tensor]],
    means: dict[str, float],
    batches: list[np.ndarray],
) -> None:
    """
    After the gradient steps of a ``train()`` call: if a loss or gradient norm was not finite, restore the weights
    and optimizer states of before the call, quarantine the replayed rows of the first step that went non-finite (the
    replay buffer samples no window that holds one, also once resumed from the recovery checkpoint) and stop training.

    :param model: the model trained
    :param snapshot: its weights and optimizer states before the call
    :param metrics: the metrics of each gradient step, on the device
    :param means: their means over the gradient steps, on the host
    :param batches: the replayed rows of each gradient step, as flat storage indices (T, B)
    """
    quantities = [name for name, value in means.items() if name.endswith(GUARDED_METRICS) and not math.isfinite(value)]
    if not quantities:
        return
    # On the way out only (syncs do not matter here): the first gradient step with a non-finite value, and its values
    step = next((i for i, values in enumerate(metrics) if not all(values[name].isfinite() for name in quantities)), 0)
    quantities = [name for name in quantities if not metrics[step][name].isfinite()] or quantities
    snapshot.restore()
    n_updates = model._n_updates
    buffer = model.replay_buffer
    buffer.quarantine_rows(batches[step])
    envs, slots = np.divmod(batches[step][0], buffer.buffer_size)
    windows = ", ".join(f"env {env} row {slot}" for env, slot in zip(envs.tolist(), slots.tolist(), strict=True))
    raise_non_finite(
        model,
        f"Non-finite {', '.join(quantities)} in gradient step {n_updates + step + 1} "
        f"(step {step + 1} of {len(metrics)} of a train() call)",
        quantities,
        f"with the weights and optimizer states restored to before that train() call (n_updates={n_updates}) and the "
        f"{batches[step].size} replayed rows of that step quarantined (windows starting at {windows}: the replay buffer, "
        "saved with the checkpoint, samples no window that holds one)",
    )


def raise_non_finite(model: "DreamerAlgorithm", what: str, quantities: list[str], stopped: str) -> NoReturn:
    """
    Save a recovery checkpoint of ``model`` (without the env state) to its ``recovery_dir`` and raise
    :class:`NonFiniteError`.

    :param model: the model whose training stops
    :param what: what was not finite, and where
    :param quantities: the names of the non-finite quantities
    :param stopped: where training stopped, for the message
    """
    checkpoint = None
    if model.recovery_dir is None:
        saved = "no recovery checkpoint was saved (recovery_dir=None)"
    else:
        directory = model.recovery_dir
        if os.fspath(directory) in (DEFAULT_RECOVERY_DIR, DREAMERV3_RECOVERY_DIR):
            directory = os.path.join(directory, f"{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}")
        try:
            model.save_checkpoint(directory, save_env=False)
        except Exception as exc:  # the error to report is the non-finite value
            saved = f"saving a recovery checkpoint to {directory} failed ({exc!r})"
        else:
            checkpoint = str(directory)
            load = f"{type(model).__name__}.load_checkpoint({checkpoint!r}, env)"
            saved = f"a recovery checkpoint was saved to {checkpoint} ({load})"
    raise NonFiniteError(
        f"{what} at num_timesteps={model.num_timesteps}: training stopped {stopped}; {saved}",
        quantities,
        model.num_timesteps,
        model._n_updates,
        checkpoint,
    )
