"""
The base class of the Dreamer algorithms: acting with a world model's state, mixed precision, gradient steps, the
world-model diagnostics, and saving and loading (models, replay buffers, checkpoints) with their checks.
"""

import contextlib
import io
import os
import pathlib
from abc import abstractmethod
from collections.abc import Callable, Iterable
from numbers import Integral
from typing import Any, ClassVar, ParamSpec, TypeVar, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from sb3_dreamer.common.buffers import SequenceReplayBuffer, SequenceSamples
from sb3_dreamer.common.checkpoint import check_replay_buffer, load_checkpoint, save_checkpoint
from sb3_dreamer.common.checks import (
    check_non_negative_integers,
    check_optional_paths,
    check_positive_integers,
    check_spaces,
    check_train_freq,
    describe,
)
from sb3_dreamer.common.guards import UpdateSnapshot, check_env_data, check_update
from sb3_dreamer.common.optimizers import keep_steps_on_cpu
from sb3_dreamer.common.policies import DreamerPolicy
from sb3_dreamer.common.precision import resolve_mixed_precision
from sb3_dreamer.common.save_util import (
    CORRUPTED_FILE_ERRORS,
    atomic_open,
    check_model_file,
    corrupted_file_error,
    load_pickle,
)
from sb3_dreamer.world_model.diagnostics import DREAM_TAG, dream_frames, dream_video, open_loop_prediction, write_gif_summary
from sb3_dreamer.world_model.model import ActingState
from sb3_dreamer.world_model.returns import ReturnScale
from sb3_dreamer.world_model.rssm import LatentState, stack_states

SelfDreamer = TypeVar("SelfDreamer", bound="DreamerAlgorithm")
P = ParamSpec("P")
R = TypeVar("R")


class DreamerAlgorithm(OffPolicyAlgorithm):
    """
    What the Dreamer algorithms share around their losses: acting with the world model's state (epsilon-greedy for
    ``Discrete`` actions, Gaussian noise for ``Box`` ones), gradient steps under the chosen precision, the
    world-model diagnostics and :meth:`dream`, and saving and loading with checks, atomic files and checkpoints.

    A subclass passes the settings both algorithms share to :meth:`__init__`, sets its own (besides
    ``normalize_returns``, ``exploration_rate`` and ``exploration_noise``), checks
    them in ``_check_hyperparameters`` and builds its losses after :meth:`_setup_model`; its policy has a
    ``world_model``, an ``action_dist``, ``initial_state``, ``act`` and the optimizers that :attr:`optimizer_names`
    name.
    """

    #: The optimizers, saved as state dicts of these names besides the policy's
    optimizer_names: ClassVar[tuple[str, ...]]

    policy: DreamerPolicy
    observation_space: spaces.Box
    action_space: spaces.Discrete | spaces.Box
    # Set by each subclass (see above)
    normalize_returns: bool
    exploration_rate: float
    exploration_noise: float
    replay_buffer: SequenceReplayBuffer
    #: the EMA of the lambda-returns' percentile range, used (and saved) with ``normalize_returns`` only
    return_scale: ReturnScale
    _update_snapshot: UpdateSnapshot
    #: rows of replay context in front of each replayed window (see :meth:`SequenceReplayBuffer.keep_latents`)
    replay_context: int = 0
    _acting_state: ActingState | None
    #: 1.0 where the last observation starts an episode, (n_envs,), or None where none does
    _episode_starts: th.Tensor | None

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: GymEnv | str,
        *,
        learning_rate: float | Schedule,
        buffer_size: int,
        learning_starts: int,
        batch_size: int,
        sequence_length: int,
        train_freq: int | tuple[int, str],
        gradient_steps: int,
        gamma: float,
        return_lambda: float,
        imagination_horizon: int,
        actor_entropy_scale: float | Schedule,
        tau: float,
        mixed_precision: str | bool,
        compile_losses: bool,
        diagnostics_interval: int,
        recovery_dir: str | None,
        replay_buffer_class: type[SequenceReplayBuffer] | None,
        replay_buffer_kwargs: dict[str, Any] | None,
        stats_window_size: int,
        tensorboard_log: str | None,
        policy_kwargs: dict[str, Any] | None,
        verbose: int,
        seed: int | None,
        device: th.device | str,
    ) -> None:
        """Store the settings both algorithms share (each documented by the subclass); the model is built later."""
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=None,
            replay_buffer_class=replay_buffer_class or SequenceReplayBuffer,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Discrete, spaces.Box),
            support_multi_env=True,
        )
        self.sequence_length = sequence_length
        self.return_lambda = return_lambda
        self.imagination_horizon = imagination_horizon
        self.actor_entropy_scale = actor_entropy_scale
        self.mixed_precision = mixed_precision
        self.compile_losses = compile_losses
        self.diagnostics_interval = diagnostics_interval
        self.recovery_dir = recovery_dir
        self._acting_state = None
        self._episode_starts = None

    @abstractmethod
    def _check_hyperparameters(self) -> None:
        """:raises ValueError: naming the argument, unless every setting is valid"""

    def _check_training_settings(self) -> None:
        """
        :raises ValueError: naming the argument, unless the replay, batch and update settings are valid and fit each
            other (a full sequence in each env's replay ring before the first update, enough distinct windows)
        """
        check_positive_integers(
            batch_size=self.batch_size,
            sequence_length=self.sequence_length,
            buffer_size=self.buffer_size,
            stats_window_size=self._stats_window_size,
        )
        check_non_negative_integers(learning_starts=self.learning_starts)
        if self.seed is not None:
            check_non_negative_integers(seed=self.seed)
        check_optional_paths(recovery_dir=self.recovery_dir)
        # A replayed window: the replay context's rows, then the sequence
        window_length = self.sequence_length + self.replay_context
        window = f"sequence_length = {self.sequence_length}"
        if self.replay_context > 0:
            window = f"sequence_length + replay_context = {self.sequence_length} + {self.replay_context}"
        if self.learning_starts < window_length * self.n_envs:
            raise ValueError(
                f"learning_starts={self.learning_starts} is smaller than {window} times n_envs = {self.n_envs}: the "
                "first update needs a full sequence in each env's replay ring"
            )
        if window_length > self.buffer_size // self.n_envs:
            raise ValueError(
                f"{window} does not fit in a replay ring of buffer_size // n_envs = {self.buffer_size // self.n_envs} rows"
            )
        n_windows = self.n_envs * (self.buffer_size // self.n_envs - window_length + 1)
        if self.batch_size > n_windows:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the number of distinct sequences the replay buffer can "
                f"hold, n_envs * (buffer_size // n_envs - {window_length} + 1) = {n_windows}"
            )
        check_train_freq(self.train_freq, self.n_envs)
        if not isinstance(self.gradient_steps, Integral) or isinstance(self.gradient_steps, bool) or self.gradient_steps < -1:
            raise ValueError(
                f"gradient_steps must be an integer >= 0, or -1 for as many as env steps collected, "
                f"got {describe(self.gradient_steps)}"
            )

    def optimizers(self) -> list[th.optim.Optimizer]:
        """The optimizers that :attr:`optimizer_names` name."""
        return [getattr(self.policy, name.removeprefix("policy.")) for name in self.optimizer_names]

    @classmethod
    def _wrap_env(cls, env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        """Check the spaces (before SB3 asserts on them), then wrap the env as SB3 does."""
        check_spaces(cls.__name__, env.observation_space, env.action_space)
        return OffPolicyAlgorithm._wrap_env(env, verbose, monitor_wrapper)

    def _setup_model(self) -> None:
        """Check the settings, then build the policy, the replay buffer, the return scale and the schedules."""
        self._check_hyperparameters()
        #: whether the gradient steps run under bfloat16 autocast: ``mixed_precision`` resolved for this device
        self.bfloat16_autocast = resolve_mixed_precision(self.mixed_precision, self.device)
        if self.verbose >= 1:
            precision = "bfloat16 autocast" if self.bfloat16_autocast else "float32"
            print(f"Gradient steps in {precision} (mixed_precision={self.mixed_precision!r} on {self.device})")
        self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, "sequence_length": self.sequence_length}
        super()._setup_model()
        #: the actor's entropy scale of the current update (see :meth:`_current_entropy_scale`)
        self._entropy_scale = th.zeros((), device=self.device)
        self.return_scale = ReturnScale().to(self.device)
        # The return scale's EMA is restored with the weights when a train() call is undone
        modules = nn.ModuleList([self.policy, self.return_scale]) if self.normalize_returns else self.policy
        self._update_snapshot = UpdateSnapshot(modules, self.optimizers())
        self.actor_entropy_schedule = FloatSchedule(self.actor_entropy_scale)

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "_entropy_scale",
            "_acting_state",
            "_episode_starts",
            "_update_snapshot",
            "return_scale",
            "bfloat16_autocast",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", *self.optimizer_names]
        if self.normalize_returns:
            state_dicts.append("return_scale")
        return state_dicts, []

    def set_parameters(
        self,
        load_path_or_dict: str | pathlib.Path | io.BufferedIOBase | dict[str, Any],
        exact_match: bool = True,
        device: th.device | str = "auto",
    ) -> None:
        """
        Load the weights and optimizer states of a saved model (see SB3's ``set_parameters``). The return scale's state
        follows ``normalize_returns``: a model saved without it (or before it existed) starts from ``S = 0`` when it
        is on now, and a saved state is ignored when it is off now. Adam's step counters stay on the CPU
        (:func:`keep_steps_on_cpu`).
        """
        if isinstance(load_path_or_dict, dict):
            params = dict(load_path_or_dict)
        else:
            _, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)
        if self.normalize_returns:
            params.setdefault("return_scale", self.return_scale.state_dict())
        else:
            params.pop("return_scale", None)
        super().set_parameters(params, exact_match, device)
        for optimizer in self.optimizers():
            keep_steps_on_cpu(optimizer)

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        Save the model, its optimizers and counters in a zip file (see SB3's ``save``). A path is written atomically:
        to a temporary file in the same folder, flushed to disk, then renamed onto the path, so that an interrupted
        save leaves the previous file intact.
        """
        if isinstance(path, io.IOBase):
            super().save(path, exclude, include)
            return
        with atomic_open(path, "zip") as file:
            super().save(file, exclude, include)

    @classmethod
    def load(
        cls: type[SelfDreamer],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | str | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs,
    ) -> SelfDreamer:
        """
        Load a model saved by :meth:`save` (see SB3's ``load``) once its zip file is checked to be complete; ``env``
        may also be a registered env id, as for the constructor. Only load files you trust: the model's attributes are
        unpickled, which can run code.

        :raises ValueError: naming the file, when it is truncated or corrupted, or not a model of this class
        """
        check_model_file(path, f"{cls.__name__} model", ("policy", *cls.optimizer_names))
        if isinstance(env, str):  # an env id, as the constructor takes (SB3's load takes env objects only)
            env = maybe_make_env(env, verbose=0)
        try:
            return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        except CORRUPTED_FILE_ERRORS as exc:
            raise corrupted_file_error(f"{cls.__name__} model", path, exc) from exc

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """Save the replay buffer in a pickle file, atomically for a path (as :meth:`save`)."""
        if isinstance(path, io.IOBase):
            super().save_replay_buffer(path)
            return
        with atomic_open(path, "pkl") as file:
            super().save_replay_buffer(file)

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """
        Load a replay buffer saved by :meth:`save_replay_buffer`. Only load files you trust: it is unpickled.

        :param path: the pickle file
        :param truncate_last_traj: unused (``HerReplayBuffer`` only)
        :raises ValueError: naming the file, when it is truncated or corrupted or holds a buffer this model cannot use
        """
        buffer = check_replay_buffer(load_pickle(path, "pkl", "replay buffer"), self, path)
        buffer.device = self.device
        # How to sample is the model's setting; the rows are the buffer's
        buffer.sampling = self.replay_buffer.sampling
        buffer.prioritize_ends = self.replay_buffer.prioritize_ends
        self.replay_buffer = buffer

    def save_checkpoint(self, path: str | os.PathLike, save_env: bool = True, evaluation_env: VecEnv | None = None) -> None:
        """
        Save all that training needs to continue exactly as if uninterrupted into the directory ``path``:
        ``model.zip`` (weights, optimizers, counters, last observations), ``replay_buffer.pkl`` and ``checkpoint.pkl``
        (random generator states, the acting model state, the envs, the state of the training and evaluation envs and
        the SHA-256 of the two other files).

        The files are written into a new directory beside ``path``, flushed to disk, and ``path``, a symbolic link,
        is then switched to it in one rename (see :func:`~sb3_dreamer.common.save_util.atomic_directory`): a save
        killed at any point leaves ``path`` naming the previous complete checkpoint. Once switched, the previous
        directory and what interrupted saves left behind are removed.

        :param path: the checkpoint (a link to a directory), whose parent directory is created if needed
        :param save_env: save the gym envs, when the env is a ``DummyVecEnv`` (possibly in a ``VecTransposeImage``)
            whose envs can be pickled
        :param evaluation_env: an evaluation env (a ``DummyVecEnv``) whose state the checkpoint keeps too, for
            :meth:`load_checkpoint`'s ``evaluation_env``
        """
        save_checkpoint(self, path, save_env, evaluation_env)

    @classmethod
    def load_checkpoint(
        cls: type[SelfDreamer],
        path: str | os.PathLike,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        evaluation_env: VecEnv | None = None,
        restore_env_states: bool = False,
        **kwargs,
    ) -> SelfDreamer:
        """
        Load a checkpoint saved by :meth:`save_checkpoint`. Only load checkpoints you trust: they are unpickled.

        With ``env=None`` and envs in the checkpoint, training continues in those envs, mid-episode, with every random
        generator as it was: ``learn(n, reset_num_timesteps=False)`` then gives the weights of an uninterrupted run
        (same device and PyTorch build). Given an ``env``, the envs are reset at the next ``learn``: the weights,
        optimizers, replay buffer and generators are restored, the episodes restart; unless ``restore_env_states``
        gives ``env``, new envs of the kind saved (the same wrappers around the same env class, as many: as the RL
        Zoo makes them again), the saved envs' state, with which training continues as from ``env=None``.

        :param path: the checkpoint directory (or the link to it that :meth:`save_checkpoint` writes)
        :param env: the env to continue in, None for the envs of the checkpoint
        :param device: the device of the model
        :param evaluation_env: with ``restore_env_states``, an evaluation env of the kind that :meth:`save_checkpoint`
            was given, which takes its saved state (so that evaluations go on as in an uninterrupted run)
        :param restore_env_states: give ``env`` and ``evaluation_env`` the state of the envs saved with the
            checkpoint (envs of another kind start anew, with a warning)
        :param kwargs: passed to :meth:`load`
        :raises ValueError: naming the file, when a file of the checkpoint is truncated, corrupted, not what it should
            be, or from another save
        """
        return load_checkpoint(cls, path, env, device, evaluation_env, restore_env_states, **kwargs)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ):
        env_is_reset = reset_num_timesteps or self._last_obs is None
        total_timesteps, callback = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if env_is_reset:
            # Episodes cut by the reset must not continue into the new ones in the replay buffer
            self.replay_buffer.start_new_episodes()
        if env_is_reset or self._acting_state is None:
            self._acting_state = self.policy.initial_state(self.n_envs)
            self._episode_starts = th.ones(self.n_envs, device=self.device)
        return total_timesteps, callback

    def dream(
        self, observations: np.ndarray, actions: np.ndarray, context: int = 5, episode_starts: np.ndarray | None = None
    ) -> np.ndarray:
        """
        Watch the world model dream: it observes the first ``context`` observations, then predicts the rest open loop
        from the actions alone (the mode of its latents), as the TensorBoard diagnostics ``diagnostics/dream`` do; the
        latents of the observed steps are sampled from the posterior, as in training.

        :param observations: (T, N, *obs_shape) image observations as the env returns them, N sequences of T steps
        :param actions: (T, N) or (T, N, *action_shape), ``actions[t]`` taken at ``observations[t]`` as the env takes
            them (the last one is unused)
        :param context: observed steps before the open-loop prediction, 1 <= context <= T
        :param episode_starts: (T, N) True where an episode starts (the model state is reset there); default: at t = 0
        :return: frames (T, N, 3, H', 3 * W') uint8: the truth, the model's decoded state and their absolute error side
            by side, scaled up so that each panel's shorter side is at least 64 pixels
        """
        if len(self.observation_space.shape) != 3:
            raise ValueError(f"dream() needs image observations, not of shape {self.observation_space.shape}")
        observations = np.asarray(observations)
        n_steps = observations.shape[0]
        if not 1 <= context <= n_steps:
            raise ValueError(f"context must be between 1 and the number of steps {n_steps}, got {context}")
        actions = np.asarray(actions)
        if isinstance(self.action_space, spaces.Box):
            actions = self.policy.scale_action(actions)
        # Replay rows hold the action that led to each observation: a_{t-1}, 0 at t = 0
        previous_actions = np.concatenate([np.zeros_like(actions[:1]), actions[:-1]])
        is_first = np.zeros(observations.shape[:2]) if episode_starts is None else np.array(episode_starts, dtype=float)
        is_first[0] = 1.0
        samples = SequenceSamples(
            observations=th.as_tensor(observations, device=self.device),
            actions=th.as_tensor(previous_actions, device=self.device),
            rewards=th.zeros(observations.shape[:2], device=self.device),
            terminated=th.zeros(observations.shape[:2], device=self.device),
            is_first=th.as_tensor(is_first, dtype=th.float32, device=self.device),
        )
        self.policy.set_training_mode(False)
        prediction = open_loop_prediction(self.policy.world_model, samples, observations.shape[1], context)
        return dream_frames(prediction).cpu().numpy()

    def train(self, gradient_steps: int, batch_size: int = 50) -> None:
        """
        ``gradient_steps`` gradient steps (:meth:`_gradient_step`) on batches of ``batch_size`` replayed windows; their
        metrics are logged as means, checked for NaN and infinity, and the call undone if one is not finite.
        """
        if not self.replay_buffer.can_sample():
            # Episode replay (replay_buffer_kwargs sampling="episodes") waits for a finished episode of a full window
            self.logger.record("train/waiting_for_episodes", 1)
            return
        self.policy.set_training_mode(True)
        self._update_schedules()
        # Undoes this call's updates if a loss or gradient norm is not finite (checked with the metrics, no extra sync)
        # and if Ctrl-C interrupts it: a model saved then holds weights, optimizer states and n_updates of one update
        self._update_snapshot.take()
        metrics: list[dict[str, th.Tensor]] = []
        # The replayed rows of each step: those of a step that goes non-finite are quarantined
        batches: list[np.ndarray] = []
        # With replay context, the posterior states of each step, (T * B, ...), stored back once the call succeeded
        posteriors: list[LatentState] = []
        try:
            for step in range(gradient_steps):
                samples = self._sample(batch_size)
                assert self.replay_buffer.last_batch_inds is not None, "sample() keeps the rows it drew"
                batches.append(self.replay_buffer.last_batch_inds)
                step_metrics, posterior = self._gradient_step(samples, step)
                metrics.append(step_metrics)
                posteriors.append(posterior)

            # Replay context: the posterior states start to the host now, the metrics' transfer waits for them too
            replayed_latents = self._replayed_latents(batches, posteriors) if self.replay_buffer.replay_context else None
            # One device-to-host transfer for all metrics of all gradient steps.
            names = list(metrics[0])
            means = th.stack([th.stack([step[name] for name in names]) for step in metrics]).mean(0).tolist()
            check_update(self, self._update_snapshot, metrics, dict(zip(names, means, strict=True)), batches)
            self._n_updates += gradient_steps
        except KeyboardInterrupt:
            self._update_snapshot.restore()
            raise
        if replayed_latents is not None:
            self.replay_buffer.write_latents(*replayed_latents)
        if self.diagnostics_interval > 0 and self._n_updates % self.diagnostics_interval < gradient_steps:
            self._log_diagnostics(samples)
        for name, value in zip(names, means, strict=True):
            self.logger.record(f"train/{name}", value)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/mixed_precision", int(self.bfloat16_autocast))

    def _replayed_latents(
        self, batches: list[np.ndarray], posteriors: list[LatentState]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Replay context: what :meth:`SequenceReplayBuffer.write_latents` stores of a ``train()`` call's updates, the
        rows they replayed and their posterior states (later updates of the same rows win). The states are copied to
        the host without waiting for the device: they are complete once a later transfer waited for it.

        :param batches: the rows of each update's windows, context rows first, (replay_context + T, B) each
        :param posteriors: each update's posterior states, (T * B, ...)
        :return: the rows (R,), deterministic states (R, deter_size) and one-hot stochastic states (R, stoch_dim)
        """
        rows = np.concatenate([batch[self.replay_buffer.replay_context :].reshape(-1) for batch in batches])
        deter, stoch = (x.float().to("cpu", non_blocking=True) for x in stack_states(posteriors))
        return rows, deter.numpy(), stoch.numpy()

    @abstractmethod
    def _gradient_step(self, samples: SequenceSamples, step: int) -> tuple[dict[str, th.Tensor], LatentState]:
        """
        One gradient step on a batch of replayed windows (T, B, ...), the ``step``-th of a ``train()`` call.

        :return: its metrics, 0-dim tensors on the device, and the posterior states of the windows, (T * B, ...),
            detached
        """

    @abstractmethod
    def _update_schedules(self) -> None:
        """Set the learning rates (and other scheduled values) of this training phase; log them."""

    def _sample(self, batch_size: int) -> SequenceSamples:
        """A batch of replayed windows."""
        return self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Uniformly random actions during warm-up, then the actor's with exploration (epsilon-greedy for ``Discrete``
        actions, Gaussian noise for ``Box`` ones); updates the model state.

        :return: the actions for the env, and for the replay buffer: the same for ``Discrete`` actions, the actions
            in [-1, 1] before their rescaling to the bounds for ``Box`` ones
        """
        if self.num_timesteps < learning_starts:
            env_actions = np.array([self.action_space.sample() for _ in range(n_envs)])
            if isinstance(self.action_space, spaces.Box):
                return env_actions, self.policy.scale_action(env_actions)
            return env_actions, env_actions
        assert self._acting_state is not None
        action_dist = self.policy.action_dist
        exploration = self.exploration_noise if isinstance(self.action_space, spaces.Box) else self.exploration_rate
        with th.inference_mode():
            # A tensor, not a dict: the observation space is a Box
            observations = cast(th.Tensor, obs_as_tensor(self._last_obs, self.device))  # type: ignore[arg-type]
            actions, state = self.policy.act(observations, self._acting_state, self._episode_starts)
            actions = action_dist.explore(actions, exploration)
            self._acting_state = state._replace(action=action_dist.to_vector(actions))
        buffer_actions = actions.cpu().numpy()
        return self.policy.to_env(buffer_actions), buffer_actions

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        check_env_data(self, new_obs, reward, dones, infos)  # type: ignore[arg-type]
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        if self.replay_buffer.replay_context > 0:
            # The model state that chose the actions belongs to the rows of the observations they were taken in (the
            # initial state during the random warm-up)
            assert self._acting_state is not None
            self.replay_buffer.write_latents(
                self.replay_buffer.previous_rows(),
                self._acting_state.deter.float().cpu().numpy(),
                self._acting_state.stoch.float().cpu().numpy(),
            )
        # None on the usual step where no episode ends: acting then skips the reset of the model state
        self._episode_starts = self.policy.episode_starts(dones)

    def _log_diagnostics(self, samples: SequenceSamples, n_sequences: int = 4, context: int = 5) -> None:
        """Open-loop predictions of ``n_sequences`` replayed windows after ``context`` observed steps."""
        context = min(context, samples.rewards.shape[0] - 1)
        prediction = open_loop_prediction(
            self.policy.world_model, samples, min(n_sequences, samples.rewards.shape[1]), context
        )
        squared_error = (prediction.predictions - prediction.observations)[context:].pow(2)
        reward_error = (prediction.predicted_rewards - prediction.rewards)[context:].abs()
        self.logger.record("diagnostics/open_loop_observation_mse", squared_error.flatten(2).sum(-1).mean().item())
        self.logger.record("diagnostics/open_loop_reward_error", reward_error.mean().item())
        self.logger.record("diagnostics/open_loop_reward_sum", prediction.predicted_rewards[context:].sum(0).mean().item())
        self.logger.record("diagnostics/replayed_reward_sum", prediction.rewards[context:].sum(0).mean().item())
        if len(self.observation_space.shape) == 3:
            frames = dream_video(prediction).cpu().numpy()
            write_gif_summary(self.logger, DREAM_TAG, frames, fps=4, step=self.num_timesteps)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """
        The bfloat16 autocast of the gradient steps' forward passes where ``mixed_precision`` chose it, else a no-op
        (not an autocast disabled, which some device types refuse to construct).
        """
        if not self.bfloat16_autocast:
            return contextlib.nullcontext()
        return th.autocast(self.device.type, dtype=th.bfloat16)

    def _compiled(self, function: Callable[P, R]) -> Callable[P, R]:
        """``function`` through ``torch.compile`` (inductor, static shapes) where ``compile_losses`` asks for it."""
        return th.compile(function, dynamic=False) if self.compile_losses else function

    def _current_entropy_scale(self) -> th.Tensor:
        """
        The actor's entropy scale at the current training progress, () float32 on the device: a tensor, not a float,
        as a compiled loss would be compiled again for each new value of a float.
        """
        return self._entropy_scale.fill_(self.actor_entropy_schedule(self._current_progress_remaining))
