"""Replay buffer of observation sequences for world-model agents (DreamerV2)."""

from collections import deque
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from sb3_dreamer.common.episode_starts import EpisodeStarts
from sb3_dreamer.common.quarantine import RowQuarantine
from sb3_dreamer.world_model.rssm import LatentState


class SequenceSamples(NamedTuple):
    """
    Windows of consecutive replay rows, time-major (T = sequence length, B = batch size).

    Row t holds the observation o_t, the action a_{t-1} that led to it and the reward r_t received on arriving at it.
    The first row of an episode has action 0 and reward 0.

    :param observations: o_t, (T, B, *obs_shape), uint8 for binary (bit-packed) observation spaces, else the space dtype
    :param actions: a_{t-1}, (T, B) int64 for ``Discrete`` action spaces, (T, B, *action_shape) float32 for ``Box``
    :param rewards: r_t, (T, B) float32
    :param terminated: 1.0 where o_t is a terminal state (not a time-limit truncation), (T, B) float32
    :param is_first: 1.0 where o_t is the first observation of an episode, (T, B) float32
    :param start: with replay context, the stored model state of the row before each window, deter (B, deter_size) and
        the flat one-hot stoch (B, stoch_dim), float32; None: the windows start from the initial state
    """

    observations: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    terminated: th.Tensor
    is_first: th.Tensor
    start: LatentState | None = None


def is_binary_box(space: spaces.Space) -> bool:
    """
    :return: whether ``space`` is an integer or bool ``Box`` with bounds [0, 1] (e.g. MinAtar images),
        whose observations can be stored bit-packed
    """
    return (
        isinstance(space, spaces.Box)
        and (np.issubdtype(space.dtype, np.integer) or space.dtype == np.bool_)
        and bool(np.all(space.low == 0))
        and bool(np.all(space.high == 1))
    )


def action_layout(space: spaces.Discrete | spaces.Box) -> tuple[Any, ...]:
    """:return: what stored actions depend on: ``("Discrete", n, start)`` or ``("Box", shape)``"""
    if isinstance(space, spaces.Discrete):
        return "Discrete", int(space.n), int(space.start)
    return "Box", tuple(space.shape)


SAMPLING_MODES = ("uniform", "episodes")


#: Redraws of the windows that hit quarantined rows before :meth:`SequenceReplayBuffer.sample` gives up
MAX_REDRAWS = 100


class SequenceReplayBuffer(ReplayBuffer):
    """
    Replay buffer storing one row per observation and sampling windows of consecutive rows (DreamerV2).

    Each env writes to its own ring of ``buffer_size // n_envs`` rows. Row t of a ring holds
    (o_t, a_{t-1}, r_t, terminated_t, is_first_t): the observation, the action that led to it, the reward received
    on arriving at it, whether it is a terminal state and whether it starts an episode. First rows carry action 0,
    reward 0 and terminated False, so an episode of n steps takes n + 1 rows.
    Sampled windows lie in one ring and never cross its write head. With ``sampling="uniform"`` they may cross
    episode boundaries (``is_first`` marks them); with ``sampling="episodes"`` each lies in one finished episode.
    An episode is finished once its last row was written with ``done`` (terminated or truncated), or when
    :meth:`start_new_episodes` cut it; when the ring overwrites the first rows of an episode, its surviving rows
    remain an episode.

    Storage is allocated on the first :meth:`add`. Observations of a binary ``Box`` space (integer or bool dtype,
    bounds [0, 1]) are stored bit-packed, other observations in the space dtype; ``Discrete`` actions are stored in
    the smallest integer dtype that holds them, ``Box`` actions as float32.

    :param buffer_size: Max number of rows (observations), split evenly between the envs
    :param observation_space: Observation space, a ``Box``
    :param action_space: Action space, ``Discrete`` or ``Box``
    :param device: PyTorch device to which the samples are sent
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Not supported (each observation is already stored once), must be False
    :param handle_timeout_termination: Treat time-limit truncations (``info["TimeLimit.truncated"]``) as
        non-terminal: the episode still ends (the next row is a first row) but ``terminated`` is False
    :param sequence_length: Number of consecutive rows in a sampled window
    :param sampling: How windows are drawn (see :meth:`sample`):

        - ``"uniform"``: uniformly among all windows of consecutive rows of the rings, across episode boundaries
        - ``"episodes"``: the official DreamerV2's replay (``minlen = maxlen = sequence_length``, no ongoing
          episodes): an episode uniformly among the finished episodes of at least ``sequence_length`` rows, then a
          window inside it, whose first row is marked ``is_first``. The first update then needs a finished episode of
          ``sequence_length`` rows, which rows alone (DreamerV2's ``learning_starts`` check) do not ensure:
          :meth:`sample` raises a ``ValueError`` until one exists.
    :param prioritize_ends: With ``sampling="episodes"``, give the last window of each episode ``sequence_length``
        extra shares of the draw of the window start, as the official DreamerV2 does (its default). Only valid with
        ``sampling="episodes"``.
    :param online: DreamerV3's online queue (``replay.online``, on in the official configuration): every
        ``window_length`` rows of each env, the window of its newest ``window_length`` rows is queued, so the windows
        of the queue tile each env's stream; :meth:`sample` takes the queued windows first, oldest first, and draws
        the rest of a batch as ``sampling`` says. Each fresh row is so trained on at least once, soon after it was
        collected. Only with ``sampling="uniform"``.

    Replay context (DreamerV3's ``replay_context``, see :meth:`keep_latents`): each row also holds a model state of its
    observation, written when the agent acted on it and rewritten by each update that replays it; a sampled window
    then has ``replay_context`` rows more at its front, and the state stored in the last of them starts the window.
    Rows that no model state was written to start from the initial (all-zero) state.
    """

    observation_space: spaces.Box
    action_space: spaces.Discrete | spaces.Box
    observations: np.ndarray | None  # type: ignore[assignment]  # (n_envs, buffer_size, *obs_shape) or bit-packed (n_envs, buffer_size, n_bytes)
    actions: np.ndarray | None  # type: ignore[assignment]  # (n_envs, buffer_size, *action_shape)
    rewards: np.ndarray | None  # type: ignore[assignment]  # (n_envs, buffer_size)
    terminated: np.ndarray | None  # (n_envs, buffer_size)
    is_first: np.ndarray | None  # (n_envs, buffer_size)
    latent_deter: np.ndarray | None  # (n_envs, buffer_size, deter_size) float16, with keep_latents only
    latent_stoch: np.ndarray | None  # (n_envs, buffer_size, ceil(stoch_dim / 8)) bit-packed, with keep_latents only

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        sequence_length: int = 50,
        sampling: str = "uniform",
        prioritize_ends: bool = False,
        online: bool = False,
    ):
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"Unknown sampling={sampling!r}: it must be one of {', '.join(map(repr, SAMPLING_MODES))}")
        if prioritize_ends and sampling != "episodes":
            raise ValueError(
                f"prioritize_ends=True needs sampling='episodes' (the official DreamerV2's replay), got sampling={sampling!r}"
            )
        if online and sampling != "uniform":
            raise ValueError(f"online=True needs sampling='uniform' (DreamerV3's replay), got sampling={sampling!r}")
        if optimize_memory_usage:
            raise ValueError(
                "SequenceReplayBuffer does not support optimize_memory_usage=True: "
                "it already stores each observation only once (one row per observation)"
            )
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(
                f"SequenceReplayBuffer does not support {type(observation_space).__name__} observation spaces, only Box"
            )
        if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
            raise ValueError(
                f"SequenceReplayBuffer does not support {type(action_space).__name__} action spaces, only Discrete and Box"
            )
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        # Rows per env ring, like SB3
        self.buffer_size = max(buffer_size // n_envs, 1)
        if not 1 <= sequence_length <= self.buffer_size:
            raise ValueError(
                f"sequence_length={sequence_length} must be between 1 and the ring size "
                f"buffer_size // n_envs = {self.buffer_size}"
            )
        self.sequence_length = sequence_length
        self.sampling = sampling
        self.prioritize_ends = prioritize_ends
        self.online = online
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination

        self.obs_size = int(np.prod(self.obs_shape))
        self.pack_observations = is_binary_box(observation_space)
        if self.pack_observations:
            obs_layout: tuple[tuple[int, ...], np.dtype] = (((self.obs_size + 7) // 8,), np.dtype(np.uint8))
        else:
            obs_layout = (self.obs_shape, np.dtype(observation_space.dtype))
        if isinstance(action_space, spaces.Discrete):
            first_action, last_action = int(action_space.start), int(action_space.start + action_space.n - 1)
            action_dtype = np.promote_types(np.min_scalar_type(first_action), np.min_scalar_type(last_action))
            action_layout: tuple[tuple[int, ...], np.dtype] = ((), action_dtype)
        else:
            action_layout = (action_space.shape, np.dtype(np.float32))
        # Shape and dtype of one row of each storage array
        self._row_layout: dict[str, tuple[tuple[int, ...], np.dtype]] = {
            "observations": obs_layout,
            "actions": action_layout,
            "rewards": ((), np.dtype(np.float32)),
            "terminated": ((), np.dtype(np.bool_)),
            "is_first": ((), np.dtype(np.bool_)),
        }
        self.observations = self.actions = self.rewards = self.terminated = self.is_first = None

        self.env_pos = np.zeros(n_envs, dtype=np.int64)
        self.env_full = np.zeros(n_envs, dtype=bool)
        # The next add must write the obs of these envs as the first row of an episode
        self._needs_first_row = np.ones(n_envs, dtype=bool)
        # Rows written by each env since the buffer was emptied: the write index of its next row, (n_envs,)
        self._rows_written = np.zeros(n_envs, dtype=np.int64)
        # Episode boundaries of each ring, updated by the row writes
        self._episode_starts = [EpisodeStarts() for _ in range(n_envs)]
        #: rows that sampling skips (set aside after a non-finite update, see :meth:`quarantine_rows`)
        self.quarantine = RowQuarantine()
        #: the rows of the last sampled batch, as indices into the storage flattened over (n_envs, buffer_size),
        #: (replay_context + T, B)
        self.last_batch_inds: np.ndarray | None = None
        #: rows in front of each window whose last stored model state starts it (see :meth:`keep_latents`)
        self.replay_context = 0
        #: (deter_size, stoch_dim) of the stored model states, None where the rows hold none
        self.latent_sizes: tuple[int, int] | None = None
        #: with ``online``: (env index, write index of the first row) of each queued window, oldest first
        self._online_queue: deque[tuple[int, int]] = deque()
        #: with ``online``: write index of the first row of each env's next window to queue, (n_envs,)
        self._online_next = np.zeros(n_envs, dtype=np.int64)

    def keep_latents(self, replay_context: int, deter_size: int, stoch_dim: int) -> None:
        """
        Store a model state with each row and start each window from the state of the row before it (DreamerV3's
        replay context): windows get ``replay_context`` rows of context in front of their ``sequence_length`` rows.
        The deterministic state is stored as float16 (2 bytes per unit), the one-hot stochastic state bit-packed.

        :param replay_context: context rows per window, at least 1
        :param deter_size: size of the deterministic state
        :param stoch_dim: size of the flat one-hot stochastic state
        :raises ValueError: once rows are stored, with episode sampling, or when the windows no longer fit in a ring
        """
        if self.observations is not None:
            raise ValueError("keep_latents() must come before the first add(): rows are already stored without states")
        if self.sampling != "uniform":
            raise ValueError(f"Replay context needs sampling='uniform': sampling={self.sampling!r} starts every window afresh")
        if replay_context < 1 or self.sequence_length + replay_context > self.buffer_size:
            raise ValueError(
                f"replay_context={replay_context} must be at least 1, and sequence_length + replay_context = "
                f"{self.sequence_length} + {replay_context} at most the ring size buffer_size // n_envs = {self.buffer_size}"
            )
        self.replay_context = replay_context
        self._lay_out_latents(deter_size, stoch_dim)
        self.latent_deter = self.latent_stoch = None

    def clear_latents(self, deter_size: int, stoch_dim: int) -> None:
        """
        Drop the stored model states (:meth:`keep_latents`) for zero states of a model of these sizes: the rows stay,
        and their windows start from zero states until gradient steps write the new model's (a fresh model trained on
        the rows of another).

        :raises ValueError: for a buffer that keeps no model states
        """
        if not self.replay_context:
            raise ValueError("clear_latents() needs a buffer that keeps model states (keep_latents())")
        self._lay_out_latents(deter_size, stoch_dim)
        if self.observations is not None:
            for name in ("latent_deter", "latent_stoch"):
                setattr(self, name, self._zero_storage(name))

    def _lay_out_latents(self, deter_size: int, stoch_dim: int) -> None:
        """The rows' model-state arrays: float16 deterministic states, bit-packed one-hot stochastic ones."""
        self._row_layout["latent_deter"] = ((deter_size,), np.dtype(np.float16))
        self._row_layout["latent_stoch"] = (((stoch_dim + 7) // 8,), np.dtype(np.uint8))
        self.latent_sizes = (deter_size, stoch_dim)

    @property
    def window_length(self) -> int:
        """Rows of a sampled window: the context rows, then the ``sequence_length`` rows trained on."""
        return self.replay_context + self.sequence_length

    def previous_rows(self) -> np.ndarray:
        """
        The row of each env before its newest one, (n_envs,) flat storage indices: after an :meth:`add`, the rows of
        the observations the actions were taken in.
        """
        return np.arange(self.n_envs) * self.buffer_size + (self.env_pos - 2) % self.buffer_size

    def write_latents(self, rows: np.ndarray, deter: np.ndarray, stoch: np.ndarray) -> None:
        """
        Store model states in rows (with :meth:`keep_latents`).

        :param rows: flat storage indices, any shape R
        :param deter: deterministic states, (*R, deter_size)
        :param stoch: flat one-hot stochastic states, (*R, stoch_dim)
        """
        assert self.latent_deter is not None and self.latent_stoch is not None
        rows = rows.reshape(-1)
        self.latent_deter.reshape(-1, self.latent_deter.shape[-1])[rows] = deter.reshape(len(rows), -1)
        self.latent_stoch.reshape(-1, self.latent_stoch.shape[-1])[rows] = np.packbits(
            stoch.reshape(len(rows), -1) > 0.5, axis=-1
        )

    @property
    def nbytes_per_row(self) -> int:
        """Bytes that one row takes across all storage arrays."""
        return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in self._row_layout.values())

    @property
    def observation_encoding(self) -> str:
        """How observations are stored: ``"bit-packed uint8"`` for a binary space, else the name of their dtype."""
        dtype = self._row_layout["observations"][1]
        return f"bit-packed {dtype}" if self.pack_observations else str(dtype)

    def _zero_storage(self, name: str) -> np.ndarray:
        """A storage array of the row layout's ``name`` at full capacity, all zeros, (n_envs, buffer_size, *shape)."""
        shape, dtype = self._row_layout[name]
        return np.zeros((self.n_envs, self.buffer_size, *shape), dtype=dtype)

    def _allocate(self) -> None:
        for name in self._row_layout:
            setattr(self, name, self._zero_storage(name))

    def _rows_per_env(self) -> np.ndarray:
        """:return: number of stored rows in each env ring, (n_envs,)"""
        return np.where(self.env_full, self.buffer_size, self.env_pos)

    def size(self) -> int:
        """
        :return: The number of stored rows (observations), summed over the envs
        """
        return int(self._rows_per_env().sum())

    def __getstate__(self) -> dict[str, Any]:
        """
        Pickle the rows written so far only: a buffer filled to a tenth takes about a tenth of its capacity.
        The episode index is left out: unpickling rebuilds it from the rows.
        """
        state = self.__dict__.copy()
        del state["_episode_starts"]
        state["last_batch_inds"] = None
        if self.observations is not None:
            written = int(self._rows_per_env().max())
            for name in self._row_layout:
                state[name] = state[name][:, :written]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """
        Unpickle, giving the storage arrays back their capacity (rows never written are zeros) and rebuilding the
        episode index. Buffers pickled before the sampling modes existed sample with ``sampling="uniform"``.
        """
        self.__dict__.update(state)
        self.__dict__.setdefault("sampling", "uniform")
        self.__dict__.setdefault("prioritize_ends", False)
        self.__dict__.setdefault("quarantine", RowQuarantine())
        self.__dict__.setdefault("last_batch_inds", None)
        self.__dict__.setdefault("replay_context", 0)
        self.__dict__.setdefault("latent_sizes", None)
        self.__dict__.setdefault("online", False)
        self.__dict__.setdefault("_online_queue", deque())
        self.__dict__.setdefault("_online_next", np.zeros(self.n_envs, dtype=np.int64))
        if "_rows_written" not in state:
            # Only the write indices relative to the write head matter, and the ring slot of each: that of row g is
            # g % buffer_size
            self._rows_written = self.env_pos + np.where(self.env_full, self.buffer_size, 0).astype(np.int64)
        if self.observations is not None and self.observations.shape[1] < self.buffer_size:
            for name in self._row_layout:
                stored = getattr(self, name)
                storage = self._zero_storage(name)
                storage[:, : stored.shape[1]] = stored
                setattr(self, name, storage)
        self._episode_starts = [self._index_episodes(env_index) for env_index in range(self.n_envs)]

    def write_indices(self, env_index: int) -> np.ndarray:
        """
        :return: the write indices of the rows an env's ring holds, oldest first, (rows,): row ``g`` of the env (its
            ``g``-th row written) lies in ring slot ``g % buffer_size``
        """
        n_rows = int(self._rows_per_env()[env_index])
        return int(self._rows_written[env_index]) - n_rows + np.arange(n_rows)

    def _index_episodes(self, env_index: int) -> EpisodeStarts:
        """
        :return: the episode index of a ring, rebuilt from its rows (O(ring size)): its episodes start at its
            ``is_first`` rows and at its oldest row
        """
        if self.is_first is None:
            return EpisodeStarts()
        write_indices = self.write_indices(env_index)
        starts = write_indices[self.is_first[env_index, write_indices % self.buffer_size]]
        if len(write_indices) > 0 and (len(starts) == 0 or starts[0] != write_indices[0]):
            # An episode whose first rows were overwritten
            starts = np.concatenate([write_indices[:1], starts])
        return EpisodeStarts(starts)

    def reset(self) -> None:
        """Empty the buffer (the storage stays allocated); the next add starts new episodes."""
        super().reset()
        self.env_pos[:] = 0
        self.env_full[:] = False
        self._needs_first_row[:] = True
        self._rows_written[:] = 0
        self._episode_starts = [EpisodeStarts() for _ in range(self.n_envs)]
        self._online_queue.clear()
        self._online_next[:] = 0

    def start_new_episodes(self) -> None:
        """
        The envs were reset: the next add writes the observations it gets as first rows of new episodes.
        The episodes this cuts are finished: no row will be added to them.
        """
        self._needs_first_row[:] = True

    def _encode_obs(self, obs: np.ndarray) -> np.ndarray:
        """:return: observations (n, *obs_shape) in their storage format"""
        if self.pack_observations:
            return np.packbits(obs.reshape(len(obs), -1), axis=-1)
        return obs

    def _write_rows(
        self,
        env_indices: np.ndarray,
        obs: np.ndarray,
        action: np.ndarray | int,
        reward: np.ndarray | float,
        terminated: np.ndarray | bool,
        is_first: bool,
    ) -> None:
        """
        Write one row at the head of each env in ``env_indices`` (n,), then advance these heads.
        First rows (``is_first``) start episodes in the episode index.
        """
        assert self.observations is not None and self.actions is not None and self.rewards is not None
        assert self.terminated is not None and self.is_first is not None
        if is_first:
            for env_index, write_index in zip(env_indices.tolist(), self._rows_written[env_indices].tolist(), strict=True):
                self._episode_starts[env_index].append(write_index, oldest=write_index + 1 - self.buffer_size)
        self._rows_written[env_indices] += 1
        rows = self.env_pos[env_indices]
        if len(self.quarantine) > 0:
            self.quarantine.release(env_indices * self.buffer_size + rows)
        self.observations[env_indices, rows] = obs
        self.actions[env_indices, rows] = action
        self.rewards[env_indices, rows] = reward
        self.terminated[env_indices, rows] = terminated
        self.is_first[env_indices, rows] = is_first
        rows += 1
        self.env_full[env_indices] |= rows == self.buffer_size
        self.env_pos[env_indices] = rows % self.buffer_size

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """
        Store one env step of each env: the row of ``next_obs``, preceded by a first row holding ``obs``
        for envs whose episode starts with this step.

        :param obs: observations the actions were taken in, (n_envs, *obs_shape)
        :param next_obs: observations reached (the terminal observations for envs that are done), (n_envs, *obs_shape)
        :param action: actions, (n_envs,) or (n_envs, 1) for ``Discrete``, (n_envs, *action_shape) for ``Box``
        :param reward: rewards, (n_envs,)
        :param done: episode ends (terminations and truncations), (n_envs,)
        :param infos: info dicts of the envs, read for ``"TimeLimit.truncated"``
        """
        if self.observations is None:
            self._allocate()
        done = np.array(done, dtype=bool).reshape(self.n_envs)
        if self.handle_timeout_termination:
            truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos], dtype=bool)
            terminated = done & ~truncated
        else:
            terminated = done

        starting = np.flatnonzero(self._needs_first_row)
        if len(starting) > 0:
            first_obs = np.asarray(obs).reshape(self.n_envs, *self.obs_shape)[starting]
            self._write_rows(starting, self._encode_obs(first_obs), 0, 0.0, False, is_first=True)
        action_shape = self._row_layout["actions"][0]
        self._write_rows(
            np.arange(self.n_envs),
            self._encode_obs(np.asarray(next_obs).reshape(self.n_envs, *self.obs_shape)),
            np.asarray(action).reshape(self.n_envs, *action_shape),
            np.asarray(reward).reshape(self.n_envs),
            terminated,
            is_first=False,
        )
        # After an episode end, the next obs is the reset observation of a new episode
        self._needs_first_row = done
        self.pos = int(self.env_pos.min())
        self.full = bool(self.env_full.all())
        if self.online:
            self._queue_fresh_windows()

    def _queue_fresh_windows(self) -> None:
        """Queue each env's windows of ``window_length`` rows that its new rows completed (``online``)."""
        window_length = self.window_length
        for env_index in np.flatnonzero(self._online_next + window_length <= self._rows_written).tolist():
            while self._online_next[env_index] + window_length <= self._rows_written[env_index]:
                self._online_queue.append((env_index, int(self._online_next[env_index])))
                self._online_next[env_index] += window_length

    def _pop_online_windows(self, batch_size: int) -> np.ndarray:
        """
        Rows (window_length, k) of the k <= ``batch_size`` oldest queued windows (``online``); windows whose rows were
        overwritten since they were queued are dropped.
        """
        windows: list[tuple[int, int]] = []
        while self._online_queue and len(windows) < batch_size:
            env_index, first_row = self._online_queue.popleft()
            if first_row >= self._rows_written[env_index] - self.buffer_size:
                windows.append((env_index, first_row))
        env_indices, first_rows = np.array(windows, dtype=np.int64).reshape(-1, 2).T
        rows = (first_rows + np.arange(self.window_length)[:, np.newaxis]) % self.buffer_size
        return env_indices * self.buffer_size + rows

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> SequenceSamples:  # type: ignore[override]
        """
        Sample ``batch_size`` windows of ``sequence_length`` consecutive rows.

        With ``sampling="uniform"``, a window lies in one env ring, chosen with probability proportional to its number
        of valid window starts; its start is uniform over them. Windows may cross episode boundaries.

        With ``sampling="episodes"`` (the official DreamerV2's replay), an episode is drawn uniformly among the finished
        episodes of at least T = ``sequence_length`` rows of all rings, whatever their lengths; of an episode of
        ``total`` rows, the window starts at row ``min(randint(upper), total - T)`` with ``upper = total - T + 1``,
        plus T with ``prioritize_ends`` (then the last window gets T + 1 shares). The first row of every window is
        marked ``is_first``, so that the world model starts it afresh.

        With ``online``, the queued windows come first (see the class docstring), the draws above fill the rest.

        With replay context (:meth:`keep_latents`), each window is drawn with ``replay_context`` rows more in front,
        and the model state stored in the last of them comes with the window as its start state.

        Windows that hold a quarantined row (:meth:`quarantine_rows`) are drawn again.

        :param batch_size: Number of windows B
        :param env: associated VecNormalize to normalize the observations and rewards when sampling
        :return: the windows, time-major (T = sequence_length)
        :raises ValueError: when no window can be sampled: with ``"uniform"``, no ring holds T rows; with
            ``"episodes"``, no finished episode holds T rows
        """
        episodes = self.sampling == "episodes"
        draw = self._draw_episode_windows if episodes else self._draw_uniform_windows
        if self.online:
            online_inds = self._pop_online_windows(batch_size)
            batch_inds = np.concatenate([online_inds, draw(batch_size - online_inds.shape[1])], axis=1)
        else:
            batch_inds = draw(batch_size)
        for _ in range(MAX_REDRAWS):
            hit = self.quarantine.hit_windows(batch_inds)
            if not hit.any():
                self.last_batch_inds = batch_inds
                return self._get_samples(batch_inds, env=env, first_row_is_first=episodes)
            batch_inds[:, hit] = draw(int(hit.sum()))
        raise ValueError(
            f"Cannot sample windows without quarantined rows: {len(self.quarantine)} rows are quarantined (after a "
            "non-finite update) and nearly every window holds one; add rows, or empty the quarantine with "
            "replay_buffer.quarantine = RowQuarantine()"
        )

    def quarantine_rows(self, batch_inds: np.ndarray) -> None:
        """
        Stop sampling the windows that hold any of the rows ``batch_inds`` (flat storage indices, any shape), e.g. the
        batch of an update that went non-finite, until new rows overwrite them.
        """
        self.quarantine.add(batch_inds)

    def _draw_uniform_windows(self, batch_size: int) -> np.ndarray:
        """
        Rows (replay_context + T, B) of ``batch_size`` uniformly drawn windows (``sampling="uniform"``, see
        :meth:`sample`).
        """
        rows_per_env = self._rows_per_env()
        window_length = self.window_length
        n_starts = np.maximum(rows_per_env - window_length + 1, 0)
        total_starts = int(n_starts.sum())
        if total_starts == 0:
            raise ValueError(
                f"Cannot sample sequences of {window_length} rows: the replay buffer holds "
                f"{rows_per_env.tolist()} rows per env, at least one env needs {window_length}"
            )
        # Draw uniformly among all valid starts of all rings
        ends = np.cumsum(n_starts)
        draws = np.random.randint(0, total_starts, size=batch_size)
        env_indices = np.searchsorted(ends, draws, side="right")
        # A full ring's oldest row is at its write head
        starts = draws - (ends - n_starts)[env_indices] + np.where(self.env_full, self.env_pos, 0)[env_indices]
        rows = (starts + np.arange(window_length)[:, np.newaxis]) % self.buffer_size
        return env_indices * self.buffer_size + rows

    def finished_episodes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        The finished episodes still (partly) in the rings, from the episode index: O(n_envs + number of episodes).
        An episode whose first rows were overwritten is reported with its surviving rows.

        :return: for each episode, its env index, the write index of its oldest surviving row (row g of an env is in
            ring slot g % buffer_size) and its number of surviving rows, each (n_episodes,) int64, ordered by env,
            then oldest first
        """
        env_indices, starts, lengths = [], [], []
        for env_index, episode_starts in enumerate(self._episode_starts):
            first_rows = episode_starts.starts
            written = int(self._rows_written[env_index])
            ends = np.append(first_rows[1:], written)
            if not self._needs_first_row[env_index]:
                # The last episode is ongoing
                first_rows, ends = first_rows[:-1], ends[:-1]
            first_rows = np.maximum(first_rows, written - self.buffer_size)
            surviving = ends > first_rows
            env_indices.append(np.full(int(surviving.sum()), env_index, dtype=np.int64))
            starts.append(first_rows[surviving])
            lengths.append((ends - first_rows)[surviving])
        return np.concatenate(env_indices), np.concatenate(starts), np.concatenate(lengths)

    def can_sample(self) -> bool:
        """Whether :meth:`sample` has a window: T rows in a ring, or with ``"episodes"`` a finished episode of T rows."""
        if self.sampling == "episodes":
            return bool((self.finished_episodes()[2] >= self.sequence_length).any())
        return bool((self._rows_per_env() >= self.window_length).any())

    def _draw_episode_windows(self, batch_size: int) -> np.ndarray:
        """Rows (T, B) of ``batch_size`` windows drawn like the official DreamerV2 (``sampling="episodes"``)."""
        env_indices, starts, lengths = self.finished_episodes()
        long_enough = lengths >= self.sequence_length
        if not long_enough.any():
            longest = f", the longest of {lengths.max()} rows" if len(lengths) > 0 else ""
            raise ValueError(
                f"Cannot sample sequences of {self.sequence_length} rows with sampling='episodes': the replay buffer "
                f"holds {len(lengths)} finished episodes{longest}, it needs a finished episode of at least "
                f"{self.sequence_length} rows"
            )
        env_indices, starts, lengths = env_indices[long_enough], starts[long_enough], lengths[long_enough]
        # Uniform over the episodes, whatever their lengths
        episodes = np.random.randint(0, len(lengths), size=batch_size)
        last_start = lengths[episodes] - self.sequence_length
        upper = last_start + 1 + (self.sequence_length if self.prioritize_ends else 0)
        offsets = np.minimum(np.random.randint(0, upper), last_start)
        write_indices = starts[episodes] + offsets + np.arange(self.sequence_length)[:, np.newaxis]
        return env_indices[episodes] * self.buffer_size + write_indices % self.buffer_size

    def to_device(self, array: np.ndarray) -> th.Tensor:
        """
        A sampled host array as a tensor on the buffer's device, without waiting for the device: on a CUDA GPU through
        pinned memory and an asynchronous copy (SB3's ``to_torch`` copies from pageable memory, which waits for the
        work queued before it), on the CPU sharing the array's memory.
        """
        tensor = th.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cpu":
            return tensor
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None, first_row_is_first: bool = False
    ) -> SequenceSamples:
        """
        :param batch_inds: rows to gather, as indices into the storage flattened over (n_envs, buffer_size),
            (replay_context + T, B): the context rows, whose last stored model state starts the window, then the rows
            of the window
        :param env: associated VecNormalize to normalize the observations and rewards
        :param first_row_is_first: mark the first row of each window ``is_first``
        :return: the gathered rows
        """
        assert self.observations is not None and self.actions is not None and self.rewards is not None
        assert self.terminated is not None and self.is_first is not None
        context_rows, batch_inds = batch_inds[: self.replay_context], batch_inds[self.replay_context :]

        def gather(array: np.ndarray, rows: np.ndarray = batch_inds) -> np.ndarray:
            return array.reshape(-1, *array.shape[2:])[rows]

        observations = gather(self.observations)
        if self.pack_observations:
            observations = np.unpackbits(observations, axis=-1, count=self.obs_size)
        observations = observations.reshape(*batch_inds.shape, *self.obs_shape)
        action_dtype = np.int64 if isinstance(self.action_space, spaces.Discrete) else np.float32
        is_first = gather(self.is_first)
        if first_row_is_first:
            is_first[0] = True
        start = None
        if self.replay_context > 0:
            assert self.latent_deter is not None and self.latent_stoch is not None and self.latent_sizes is not None
            stoch = np.unpackbits(gather(self.latent_stoch, context_rows[-1]), axis=-1, count=self.latent_sizes[1])
            start = LatentState(
                self.to_device(gather(self.latent_deter, context_rows[-1]).astype(np.float32)),
                self.to_device(stoch.astype(np.float32)),
            )
        return SequenceSamples(
            observations=self.to_device(self._normalize_obs(observations, env)),  # type: ignore[arg-type]
            actions=self.to_device(gather(self.actions).astype(action_dtype, copy=False)),
            rewards=self.to_device(self._normalize_reward(gather(self.rewards), env)),
            terminated=self.to_device(gather(self.terminated).astype(np.float32)),
            is_first=self.to_device(is_first.astype(np.float32)),
            start=start,
        )
