"""Replay buffer of observation sequences for world-model agents (DreamerV2)."""

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize


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
    """

    observations: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    terminated: th.Tensor
    is_first: th.Tensor


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


class SequenceReplayBuffer(ReplayBuffer):
    """
    Replay buffer storing one row per observation and sampling windows of consecutive rows (DreamerV2).

    Each env writes to its own ring of ``buffer_size // n_envs`` rows. Row t of a ring holds
    (o_t, a_{t-1}, r_t, terminated_t, is_first_t): the observation, the action that led to it, the reward received
    on arriving at it, whether it is a terminal state and whether it starts an episode. First rows carry action 0,
    reward 0 and terminated False, so an episode of n steps takes n + 1 rows.
    Sampled windows lie in one ring, never cross its write head, and may cross episode boundaries
    (``is_first`` marks them).

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
    """

    observations: np.ndarray | None  # (n_envs, buffer_size, *obs_shape) or bit-packed (n_envs, buffer_size, n_bytes)
    actions: np.ndarray | None  # (n_envs, buffer_size, *action_shape)
    rewards: np.ndarray | None  # (n_envs, buffer_size)
    terminated: np.ndarray | None  # (n_envs, buffer_size)
    is_first: np.ndarray | None  # (n_envs, buffer_size)

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
    ):
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
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination

        self.obs_size = int(np.prod(self.obs_shape))
        self.pack_observations = is_binary_box(observation_space)
        if self.pack_observations:
            obs_layout = (((self.obs_size + 7) // 8,), np.dtype(np.uint8))
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

    @property
    def nbytes_per_row(self) -> int:
        """Bytes that one row takes across all storage arrays."""
        return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in self._row_layout.values())

    def _allocate(self) -> None:
        for name, (shape, dtype) in self._row_layout.items():
            setattr(self, name, np.zeros((self.n_envs, self.buffer_size, *shape), dtype=dtype))

    def _rows_per_env(self) -> np.ndarray:
        """:return: number of stored rows in each env ring, (n_envs,)"""
        return np.where(self.env_full, self.buffer_size, self.env_pos)

    def size(self) -> int:
        """
        :return: The number of stored rows (observations), summed over the envs
        """
        return int(self._rows_per_env().sum())

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the rows written so far only: a buffer filled to a tenth takes about a tenth of its capacity."""
        state = self.__dict__.copy()
        if self.observations is not None:
            written = int(self._rows_per_env().max())
            for name in self._row_layout:
                state[name] = state[name][:, :written]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, giving the storage arrays back their capacity (rows never written are zeros)."""
        self.__dict__.update(state)
        if self.observations is not None and self.observations.shape[1] < self.buffer_size:
            for name, (shape, dtype) in self._row_layout.items():
                stored = getattr(self, name)
                storage = np.zeros((self.n_envs, self.buffer_size, *shape), dtype=dtype)
                storage[:, : stored.shape[1]] = stored
                setattr(self, name, storage)

    def reset(self) -> None:
        """Empty the buffer (the storage stays allocated); the next add starts new episodes."""
        super().reset()
        self.env_pos[:] = 0
        self.env_full[:] = False
        self._needs_first_row[:] = True

    def start_new_episodes(self) -> None:
        """The envs were reset: the next add writes the observations it gets as first rows of new episodes."""
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
        """Write one row at the head of each env in ``env_indices`` (n,), then advance these heads."""
        assert self.observations is not None and self.actions is not None and self.rewards is not None
        assert self.terminated is not None and self.is_first is not None
        rows = self.env_pos[env_indices]
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

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> SequenceSamples:
        """
        Sample ``batch_size`` windows of ``sequence_length`` consecutive rows.

        A window lies in one env ring, chosen with probability proportional to its number of valid window starts;
        its start is uniform over them.

        :param batch_size: Number of windows B
        :param env: associated VecNormalize to normalize the observations and rewards when sampling
        :return: the windows, time-major (T = sequence_length)
        """
        rows_per_env = self._rows_per_env()
        n_starts = np.maximum(rows_per_env - self.sequence_length + 1, 0)
        total_starts = int(n_starts.sum())
        if total_starts == 0:
            raise ValueError(
                f"Cannot sample sequences of {self.sequence_length} rows: the replay buffer holds "
                f"{rows_per_env.tolist()} rows per env, at least one env needs {self.sequence_length}"
            )
        # Draw uniformly among all valid starts of all rings
        ends = np.cumsum(n_starts)
        draws = np.random.randint(0, total_starts, size=batch_size)
        env_indices = np.searchsorted(ends, draws, side="right")
        # A full ring's oldest row is at its write head
        starts = draws - (ends - n_starts)[env_indices] + np.where(self.env_full, self.env_pos, 0)[env_indices]
        rows = (starts + np.arange(self.sequence_length)[:, np.newaxis]) % self.buffer_size
        return self._get_samples(env_indices * self.buffer_size + rows, env=env)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> SequenceSamples:  # type: ignore[override]
        """
        :param batch_inds: rows to gather, as indices into the storage flattened over (n_envs, buffer_size), (T, B)
        :param env: associated VecNormalize to normalize the observations and rewards
        :return: the gathered rows
        """
        assert self.observations is not None and self.actions is not None and self.rewards is not None
        assert self.terminated is not None and self.is_first is not None

        def gather(array: np.ndarray) -> np.ndarray:
            return array.reshape(-1, *array.shape[2:])[batch_inds]

        observations = gather(self.observations)
        if self.pack_observations:
            observations = np.unpackbits(observations, axis=-1, count=self.obs_size)
        observations = observations.reshape(*batch_inds.shape, *self.obs_shape)
        action_dtype = np.int64 if isinstance(self.action_space, spaces.Discrete) else np.float32
        return SequenceSamples(
            observations=self.to_torch(self._normalize_obs(observations, env), copy=False),  # type: ignore[arg-type]
            actions=self.to_torch(gather(self.actions).astype(action_dtype, copy=False), copy=False),
            rewards=self.to_torch(self._normalize_reward(gather(self.rewards), env), copy=False),
            terminated=self.to_torch(gather(self.terminated).astype(np.float32), copy=False),
            is_first=self.to_torch(gather(self.is_first).astype(np.float32), copy=False),
        )
