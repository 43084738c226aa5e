import copy
import pickle
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

from sb3_dreamer.common.buffers import SequenceReplayBuffer, SequenceSamples

BINARY_IMAGES = spaces.Box(0, 1, (4, 10, 10), np.uint8)  # MinAtar Breakout
# Observation (env id, counter): the counter numbers the observations of an env in the order they are stored
COUNTER_OBS = spaces.Box(0, np.inf, (2,), np.float32)
N_ACTIONS = 4


def add_step(
    buffer: SequenceReplayBuffer,
    obs: Any,
    next_obs: Any,
    action: int,
    reward: float,
    done: bool,
    truncated: bool = False,
) -> None:
    """One env step of a single env, as ``OffPolicyAlgorithm._store_transition`` passes it."""
    buffer.add(
        np.array([obs], dtype=np.float32),
        np.array([next_obs], dtype=np.float32),
        np.array([action]),
        np.array([reward], dtype=np.float32),
        np.array([done]),
        [{"TimeLimit.truncated": truncated}],
    )


def stored_rows(buffer: SequenceReplayBuffer, env_index: int = 0) -> dict[str, np.ndarray]:
    n_rows = buffer.env_pos[env_index]
    assert buffer.observations is not None and buffer.actions is not None and buffer.rewards is not None
    assert buffer.terminated is not None and buffer.is_first is not None
    return {
        "obs": buffer.observations[env_index, :n_rows, 1],
        "action": buffer.actions[env_index, :n_rows],
        "reward": buffer.rewards[env_index, :n_rows],
        "terminated": buffer.terminated[env_index, :n_rows],
        "is_first": buffer.is_first[env_index, :n_rows],
    }


class CounterVecEnv:
    """
    Fake vectorised env whose observations are (env id, counter), the counter counting the observations of each env.
    Env i has episodes of ``i + 2`` steps, or of ``episode_steps[i][0]``, ``episode_steps[i][1]``, ... steps in turn;
    every other episode ends with a time-limit truncation.
    The reward for reaching an observation is its counter and the action taken in an observation is its counter modulo
    ``N_ACTIONS``, so every stored field can be recomputed from the counter.
    """

    def __init__(self, n_envs: int, episode_steps: list[list[int]] | None = None):
        self.n_envs = n_envs
        self.episode_steps = episode_steps or [[i + 2] for i in range(n_envs)]
        self.counters = np.zeros(n_envs, dtype=np.int64)
        self.steps = np.zeros(n_envs, dtype=np.int64)
        self.episodes = np.zeros(n_envs, dtype=np.int64)
        self.first_counters: list[set[int]] = [{0} for _ in range(n_envs)]
        self.terminal_counters: list[set[int]] = [set() for _ in range(n_envs)]

    def obs(self) -> np.ndarray:
        return np.stack([np.arange(self.n_envs), self.counters], axis=1).astype(np.float32)

    def collect(self, buffer: SequenceReplayBuffer, n_steps: int) -> None:
        """Step all envs ``n_steps`` times and store the transitions like ``OffPolicyAlgorithm._store_transition``."""
        for _ in range(n_steps):
            obs = self.obs()
            actions = self.counters % N_ACTIONS
            self.counters += 1
            self.steps += 1
            next_obs = self.obs()
            rewards = self.counters.astype(np.float32)
            dones = self.steps == [
                steps[episode % len(steps)] for steps, episode in zip(self.episode_steps, self.episodes, strict=True)
            ]
            infos: list[dict[str, Any]] = [{} for _ in range(self.n_envs)]
            for i in np.flatnonzero(dones):
                truncated = self.episodes[i] % 2 == 1
                infos[i]["TimeLimit.truncated"] = truncated
                if not truncated:
                    self.terminal_counters[i].add(int(self.counters[i]))
                self.counters[i] += 1  # the reset observation
                self.first_counters[i].add(int(self.counters[i]))
                self.steps[i] = 0
                self.episodes[i] += 1
            buffer.add(obs, next_obs, actions, rewards, dones, infos)

    def reset(self, buffer: SequenceReplayBuffer) -> None:
        """Reset all envs, cutting their episodes, as ``DreamerV2._setup_learn`` does."""
        ongoing = self.steps > 0
        self.counters[ongoing] += 1
        for i in np.flatnonzero(ongoing):
            self.first_counters[i].add(int(self.counters[i]))
            self.episodes[i] += 1
        self.steps[:] = 0
        buffer.start_new_episodes()

    def finished_episodes(self, env_index: int, ring_size: int) -> list[tuple[int, int]]:
        """
        :return: (first counter, number of rows) of the finished episodes of an env whose rows are still in its ring of
            ``ring_size`` rows, oldest first; the first rows of the oldest one may be overwritten
        """
        # The counter of an observation is its write index; a reset observation is written with the next step
        n_written = int(self.counters[env_index]) + int(self.steps[env_index] > 0)
        firsts = sorted(counter for counter in self.first_counters[env_index] if counter < n_written)
        ends = [*firsts[1:], n_written]
        if self.steps[env_index] > 0:
            firsts, ends = firsts[:-1], ends[:-1]  # the ongoing episode
        oldest = n_written - ring_size
        return [
            (max(first, oldest), end - max(first, oldest)) for first, end in zip(firsts, ends, strict=True) if end > oldest
        ]

    def check_windows(self, samples: SequenceSamples, first_row_is_first: bool = False) -> np.ndarray:
        """
        Check every field of the sampled windows against the counters; return the counters, (T, B).
        With ``first_row_is_first`` (``sampling="episodes"``), the first row of each window must be marked ``is_first``.
        """
        observations = samples.observations.numpy()
        env_ids, counters = observations[..., 0].astype(np.int64), observations[..., 1].astype(np.int64)
        # Each window lies in one env ring and holds consecutive rows
        assert np.all(env_ids == env_ids[0])
        assert np.all(np.diff(counters, axis=0) == 1)
        is_first = np.vectorize(lambda counter, env_id: counter in self.first_counters[env_id])(counters, env_ids)
        terminated = np.vectorize(lambda counter, env_id: counter in self.terminal_counters[env_id])(counters, env_ids)
        marked_first = is_first.copy()
        marked_first[0] |= first_row_is_first
        np.testing.assert_array_equal(samples.is_first.numpy(), marked_first)
        np.testing.assert_array_equal(samples.terminated.numpy(), terminated)
        np.testing.assert_array_equal(samples.rewards.numpy(), np.where(is_first, 0, counters))
        np.testing.assert_array_equal(samples.actions.numpy(), np.where(is_first, 0, (counters - 1) % N_ACTIONS))
        return counters


def test_row_convention() -> None:
    buffer = SequenceReplayBuffer(100, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=4)
    # Episode 10 -> 11 -> 12 -> 13 (terminal), then a new episode 20 -> 21
    add_step(buffer, [0, 10], [0, 11], action=1, reward=1.0, done=False)
    add_step(buffer, [0, 11], [0, 12], action=2, reward=2.0, done=False)
    add_step(buffer, [0, 12], [0, 13], action=3, reward=3.0, done=True)
    add_step(buffer, [0, 20], [0, 21], action=1, reward=4.0, done=False)

    rows = stored_rows(buffer)
    np.testing.assert_array_equal(rows["obs"], [10, 11, 12, 13, 20, 21])
    np.testing.assert_array_equal(rows["action"], [0, 1, 2, 3, 0, 1])
    np.testing.assert_array_equal(rows["reward"], [0, 1, 2, 3, 0, 4])
    np.testing.assert_array_equal(rows["terminated"], [False, False, False, True, False, False])
    np.testing.assert_array_equal(rows["is_first"], [True, False, False, False, True, False])
    assert buffer.size() == 6


def test_write_indices_follow_the_ring_oldest_first() -> None:
    buffer = SequenceReplayBuffer(5, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=4)
    for counter in range(10, 13):
        add_step(buffer, [0, counter], [0, counter + 1], action=1, reward=0.0, done=False)
    np.testing.assert_array_equal(buffer.write_indices(0), [0, 1, 2, 3])  # the first row and three steps
    for counter in range(13, 17):
        add_step(buffer, [0, counter], [0, counter + 1], action=1, reward=0.0, done=False)
    # Rows 0-7 written into 5 slots: rows 3-7 remain, row g in slot g % 5, holding observations 13-17
    np.testing.assert_array_equal(buffer.write_indices(0), [3, 4, 5, 6, 7])
    assert buffer.observations is not None
    np.testing.assert_array_equal(buffer.observations[0, buffer.write_indices(0) % 5, 1], [13, 14, 15, 16, 17])


@pytest.mark.parametrize("handle_timeout_termination", [True, False])
def test_truncation(handle_timeout_termination: bool) -> None:
    buffer = SequenceReplayBuffer(
        100,
        COUNTER_OBS,
        spaces.Discrete(N_ACTIONS),
        device="cpu",
        handle_timeout_termination=handle_timeout_termination,
        sequence_length=4,
    )
    add_step(buffer, [0, 10], [0, 11], action=1, reward=1.0, done=True, truncated=True)
    add_step(buffer, [0, 20], [0, 21], action=2, reward=2.0, done=False)

    rows = stored_rows(buffer)
    np.testing.assert_array_equal(rows["obs"], [10, 11, 20, 21])
    np.testing.assert_array_equal(rows["terminated"], [False, not handle_timeout_termination, False, False])
    np.testing.assert_array_equal(rows["is_first"], [True, False, True, False])


def test_windows_are_consecutive_rows_of_one_env() -> None:
    ring_size, sequence_length = 20, 6
    buffer = SequenceReplayBuffer(
        ring_size, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=sequence_length
    )
    env = CounterVecEnv(n_envs=1)
    env.collect(buffer, 5)
    assert not buffer.full and buffer.size() == 5 + len(env.first_counters[0])
    env.check_windows(buffer.sample(64))

    # Fill the ring several times so that windows cross its end
    env.collect(buffer, 47)
    assert buffer.full and buffer.size() == ring_size
    samples = buffer.sample(1000)
    assert samples.observations.shape == (sequence_length, 1000, 2)
    assert samples.rewards.shape == samples.terminated.shape == samples.is_first.shape == (sequence_length, 1000)
    counters = env.check_windows(samples)

    # The reset observation of an episode that just ended is not stored yet
    newest = int(env.counters[0]) - int(env.steps[0] == 0)
    oldest = newest - ring_size + 1
    assert counters.min() == oldest and counters.max() == newest
    # The counter is the global write index of the row: some windows wrap around the end of the ring
    assert np.any((counters[:-1] % ring_size) == ring_size - 1)
    # Some windows cross an episode boundary
    assert samples.is_first[1:].any()


def test_several_envs() -> None:
    n_envs, sequence_length = 3, 5
    buffer = SequenceReplayBuffer(
        60, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", n_envs=n_envs, sequence_length=sequence_length
    )
    assert buffer.buffer_size == 20
    env = CounterVecEnv(n_envs)
    env.collect(buffer, 3)
    # Episodes end at different times, so the envs stored different numbers of rows
    assert buffer.env_pos.tolist() == [5, 4, 4]
    env.check_windows(buffer.sample(64))

    env.collect(buffer, 30)
    assert buffer.full and buffer.size() == 60
    counters = env.check_windows(samples := buffer.sample(500))
    assert np.all(counters.max(axis=0) - counters.min(axis=0) == sequence_length - 1)
    assert set(samples.observations[0, :, 0].tolist()) == {0.0, 1.0, 2.0}


def test_sample_too_early() -> None:
    buffer = SequenceReplayBuffer(100, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", n_envs=2, sequence_length=10)
    with pytest.raises(ValueError, match=r"holds \[0, 0\] rows per env, at least one env needs 10"):
        buffer.sample(4)
    env = CounterVecEnv(n_envs=2)
    env.collect(buffer, 6)
    with pytest.raises(ValueError, match=r"holds \[9, 8\] rows per env"):
        buffer.sample(4)
    env.collect(buffer, 1)
    env.check_windows(buffer.sample(4))


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.bool_])
def test_binary_observations_bit_packed(dtype: type) -> None:
    observation_space = spaces.Box(0, 1, (4, 10, 10), dtype)
    buffer = SequenceReplayBuffer(8, observation_space, spaces.Discrete(3), device="cpu", sequence_length=8)
    observations = np.random.randint(0, 2, size=(8, 1, 4, 10, 10)).astype(dtype)
    for t in range(7):
        buffer.add(observations[t], observations[t + 1], np.array([1]), np.array([1.0]), np.array([False]), [{}])
    assert buffer.observations is not None and buffer.observations.shape == (1, 8, 50)
    assert buffer.observations.dtype == np.uint8
    # The ring is exactly full: its only window is rows 0 .. 7
    samples = buffer.sample(2)
    assert samples.observations.dtype == th.uint8
    assert samples.observations.shape == (8, 2, 4, 10, 10)
    for b in range(2):
        np.testing.assert_array_equal(samples.observations[:, b].numpy(), observations[:, 0])


@pytest.mark.parametrize(
    "observation_space",
    [spaces.Box(0, 255, (3, 4), np.uint8), spaces.Box(-1.0, 1.0, (3, 4), np.float32), spaces.Box(0, 1, (3, 4), np.float32)],
)
def test_other_observations_stored_raw(observation_space: spaces.Box) -> None:
    buffer = SequenceReplayBuffer(8, observation_space, spaces.Discrete(3), device="cpu", sequence_length=8)
    observations = np.stack([observation_space.sample() for _ in range(8)])[:, np.newaxis]
    for t in range(7):
        buffer.add(observations[t], observations[t + 1], np.array([1]), np.array([1.0]), np.array([False]), [{}])
    assert buffer.observations is not None and buffer.observations.shape == (1, 8, 3, 4)
    assert buffer.observations.dtype == observation_space.dtype
    samples = buffer.sample(1)
    assert samples.observations.dtype == th.from_numpy(observations).dtype
    np.testing.assert_array_equal(samples.observations[:, 0].numpy(), observations[:, 0])


def test_compact_lazy_storage() -> None:
    buffer = SequenceReplayBuffer(1000, BINARY_IMAGES, spaces.Discrete(3), device="cpu", n_envs=2)
    # Bit-packed 4x10x10 observation (50 bytes), uint8 action, float32 reward, bool terminated and is_first
    assert buffer.nbytes_per_row == 57 <= 70
    assert buffer.observations is None and buffer.actions is None and buffer.rewards is None
    observation = np.zeros((2, 4, 10, 10), dtype=np.uint8)
    buffer.add(observation, observation, np.array([0, 2]), np.zeros(2), np.zeros(2, dtype=bool), [{}, {}])
    arrays = (buffer.observations, buffer.actions, buffer.rewards, buffer.terminated, buffer.is_first)
    assert sum(array.nbytes for array in arrays) == buffer.nbytes_per_row * 1000  # type: ignore[union-attr]
    assert buffer.actions is not None and buffer.actions.dtype == np.uint8
    assert SequenceReplayBuffer(10, BINARY_IMAGES, spaces.Discrete(300), sequence_length=2).nbytes_per_row == 58


def test_invalid_arguments() -> None:
    discrete = spaces.Discrete(3)
    with pytest.raises(ValueError, match="does not support Dict observation spaces, only Box"):
        SequenceReplayBuffer(100, spaces.Dict({"image": BINARY_IMAGES}), discrete)
    with pytest.raises(ValueError, match="does not support Discrete observation spaces, only Box"):
        SequenceReplayBuffer(100, spaces.Discrete(5), discrete)
    with pytest.raises(ValueError, match="does not support MultiDiscrete action spaces, only Discrete and Box"):
        SequenceReplayBuffer(100, BINARY_IMAGES, spaces.MultiDiscrete([2, 3]))
    with pytest.raises(ValueError, match="does not support optimize_memory_usage=True"):
        SequenceReplayBuffer(100, BINARY_IMAGES, discrete, optimize_memory_usage=True, handle_timeout_termination=False)
    with pytest.raises(ValueError, match=r"sequence_length=60 must be between 1 and the ring size .* = 50"):
        SequenceReplayBuffer(100, BINARY_IMAGES, discrete, n_envs=2, sequence_length=60)


def test_actions() -> None:
    buffer = SequenceReplayBuffer(50, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=5)
    CounterVecEnv(n_envs=1).collect(buffer, 20)
    samples = buffer.sample(3)
    assert samples.actions.dtype == th.int64 and samples.actions.shape == (5, 3)
    for tensor in (samples.rewards, samples.terminated, samples.is_first):
        assert tensor.dtype == th.float32

    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    buffer = SequenceReplayBuffer(50, COUNTER_OBS, action_space, device="cpu", sequence_length=5)
    actions = np.random.uniform(-1, 1, size=(20, 1, 2)).astype(np.float32)
    for t in range(20):
        obs, next_obs = np.array([[0, t]], dtype=np.float32), np.array([[0, t + 1]], dtype=np.float32)
        buffer.add(obs, next_obs, actions[t], np.array([0.0]), np.array([False]), [{}])
    samples = buffer.sample(3)
    assert samples.actions.dtype == th.float32 and samples.actions.shape == (5, 3, 2)
    # The row of observation t + 1 holds the action taken in observation t
    action_indices = samples.observations[..., 1].long().numpy() - 1
    expected = np.where((action_indices >= 0)[..., np.newaxis], actions[action_indices, 0], 0.0)
    np.testing.assert_array_equal(samples.actions.numpy(), expected)


def assert_same_samples(buffer: SequenceReplayBuffer, other: SequenceReplayBuffer, batch_size: int, seed: int) -> None:
    """Both buffers draw equal samples from NumPy's generator seeded with ``seed``."""
    np.random.seed(seed)
    samples = buffer.sample(batch_size)
    np.random.seed(seed)
    for tensor, other_tensor in zip(samples, other.sample(batch_size), strict=True):
        assert tensor is other_tensor is None or th.equal(tensor, other_tensor)


def collect_into_both(env: CounterVecEnv, buffer: SequenceReplayBuffer, other: SequenceReplayBuffer, n_steps: int) -> None:
    """Both buffers keep adding the same rows: ``env``'s next ``n_steps`` steps, and those of a copy of it."""
    env_copy = copy.deepcopy(env)
    env.collect(buffer, n_steps)
    env_copy.collect(other, n_steps)


def test_pickle_round_trip() -> None:
    buffer = SequenceReplayBuffer(30, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", n_envs=2, sequence_length=4)
    env = CounterVecEnv(n_envs=2)
    env.collect(buffer, 12)
    loaded = pickle.loads(pickle.dumps(buffer))
    for _ in range(2):
        assert_same_samples(buffer, loaded, 8, seed=3)
        collect_into_both(env, buffer, loaded, 9)
    assert loaded.full
    env.check_windows(loaded.sample(100))


def test_pickle_holds_the_written_rows_only() -> None:
    buffer = SequenceReplayBuffer(10_000, BINARY_IMAGES, spaces.Discrete(3), device="cpu", n_envs=2, sequence_length=4)
    env = CounterVecEnv(n_envs=2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs, next_obs = rng.integers(0, 2, (2, 2, *BINARY_IMAGES.shape), dtype=np.uint8)
        buffer.add(obs, next_obs, np.array([1, 2]), np.ones(2, np.float32), np.array([False, True]), [{}, {}])
    data = pickle.dumps(buffer)
    # 2 rings of 5,000 rows of 57 bytes at capacity (570 kB); the 41 rows written take a few kB
    assert len(data) < buffer.nbytes_per_row * buffer.n_envs * buffer.buffer_size / 50
    loaded = pickle.loads(data)
    for name in ("observations", "actions", "rewards", "terminated", "is_first"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(buffer, name))  # capacity included
    # A ring that wrapped around is pickled whole, and both buffers go on alike
    small = SequenceReplayBuffer(60, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", n_envs=2, sequence_length=4)
    env.collect(small, 20)
    assert small.env_full.any() and not small.env_full.all()
    loaded = pickle.loads(pickle.dumps(small))
    assert loaded.observations.shape == small.observations.shape
    env_copy = copy.deepcopy(env)
    env.collect(small, 7)
    env_copy.collect(loaded, 7)
    for name in ("observations", "actions", "rewards", "terminated", "is_first", "env_pos", "env_full"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(small, name))


def test_reset() -> None:
    buffer = SequenceReplayBuffer(30, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=4)
    CounterVecEnv(n_envs=1).collect(buffer, 40)
    buffer.reset()
    assert buffer.size() == 0 and buffer.pos == 0 and not buffer.full
    env = CounterVecEnv(n_envs=1)
    env.collect(buffer, 5)
    env.check_windows(buffer.sample(16))


def test_filled_by_off_policy_algorithm() -> None:
    """Rows stored by SB3's unchanged ``OffPolicyAlgorithm._store_transition`` follow the row convention."""
    env = make_vec_env("CartPole-v1", n_envs=2, env_kwargs={"max_episode_steps": 10}, seed=0)
    model = DQN(
        "MlpPolicy",
        env,
        buffer_size=1000,
        learning_starts=1000,
        replay_buffer_class=SequenceReplayBuffer,
        replay_buffer_kwargs={"sequence_length": 8},
        device="cpu",
        seed=0,
    )
    model.learn(200)
    buffer = model.replay_buffer
    assert isinstance(buffer, SequenceReplayBuffer) and buffer.observations is not None
    n_truncated = 0
    for env_index in range(2):
        rows = slice(0, buffer.env_pos[env_index])
        is_first, terminated = buffer.is_first[env_index, rows], buffer.terminated[env_index, rows]  # type: ignore[index]
        episode_starts = np.flatnonzero(is_first)
        assert buffer.env_pos[env_index] == 100 + len(episode_starts)
        for start, end in pairwise(episode_starts):
            # An episode of n steps takes n + 1 rows; only its last row may be terminal
            assert not terminated[start : end - 1].any()
            if terminated[end - 1]:
                # The terminal row holds the terminal observation, not the reset observation
                x, _, angle, _ = buffer.observations[env_index, end - 1]
                assert abs(x) > 2.4 or abs(angle) > 0.2095
            else:
                assert end - start == 11
                n_truncated += 1
    assert n_truncated > 0
    samples = buffer.sample(4)
    assert samples.observations.shape == (8, 4, 4) and samples.actions.shape == (8, 4)


def episode_of_windows(counters: np.ndarray, episodes: list[tuple[int, int]], sequence_length: int) -> np.ndarray:
    """
    Check that each window of one env lies inside one of ``episodes`` ((first counter, number of rows), oldest first)
    of at least ``sequence_length`` rows.

    :param counters: counters of the windows, (T, B)
    :return: the index in ``episodes`` of the episode of each window, (B,)
    """
    firsts = np.array([first for first, _ in episodes], dtype=np.int64)
    lengths = np.array([n_rows for _, n_rows in episodes], dtype=np.int64)
    index = np.searchsorted(firsts, counters[0], side="right") - 1
    assert np.all(index >= 0)
    assert np.all(counters[-1] < firsts[index] + lengths[index])
    assert np.all(lengths[index] >= sequence_length)
    return index


def test_episodes_windows_lie_in_finished_episodes() -> None:
    sequence_length = 4
    buffer = SequenceReplayBuffer(
        200, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=sequence_length, sampling="episodes"
    )
    # Episodes of 3, 4, 7, 2, 10 rows, then an ongoing one of 10 rows
    env = CounterVecEnv(n_envs=1, episode_steps=[[2, 3, 6, 1, 9, 12]])
    env.collect(buffer, 30)
    episodes = env.finished_episodes(0, buffer.buffer_size)
    assert [n_rows for _, n_rows in episodes] == [3, 4, 7, 2, 10] and env.steps[0] == 9
    counters = env.check_windows(samples := buffer.sample(2000), first_row_is_first=True)
    # is_first marks the first row of each window and no other
    assert samples.is_first[0].all() and not samples.is_first[1:].any()
    index = episode_of_windows(counters, episodes, sequence_length)
    # Every finished episode of at least 4 rows is sampled, the ongoing one never
    assert set(index.tolist()) == {1, 2, 4}

    # Resetting the env cuts the ongoing episode: it is finished
    env.reset(buffer)
    env.collect(buffer, 1)
    episodes = env.finished_episodes(0, buffer.buffer_size)
    assert [n_rows for _, n_rows in episodes] == [3, 4, 7, 2, 10, 10]
    index = episode_of_windows(env.check_windows(buffer.sample(2000), first_row_is_first=True), episodes, sequence_length)
    assert set(index.tolist()) == {1, 2, 4, 5}


@pytest.mark.parametrize("prioritize_ends", [False, True])
def test_episodes_distribution(prioritize_ends: bool) -> None:
    """The frequency of each (episode, window start) follows the official DreamerV2's sampling."""
    ring_size, sequence_length, n_windows = 40, 4, 40_000
    buffer = SequenceReplayBuffer(
        ring_size,
        COUNTER_OBS,
        spaces.Discrete(N_ACTIONS),
        device="cpu",
        sequence_length=sequence_length,
        sampling="episodes",
        prioritize_ends=prioritize_ends,
    )
    # Episodes of 6, 15, 4, 13, 3 and 7 rows, then an ongoing one of 3 rows: the ring overwrote the first episode
    # and the first 11 rows of the second
    env = CounterVecEnv(n_envs=1, episode_steps=[[5, 14, 3, 12, 2, 6]])
    env.collect(buffer, 44)
    episodes = env.finished_episodes(0, ring_size)
    assert episodes == [(11, 10), (21, 4), (25, 13), (38, 3), (41, 7)]
    assert 11 not in env.first_counters[0]

    # The official formula: an episode uniformly among those of at least sequence_length rows, then the window start
    # min(randint(upper), total - sequence_length), upper = total - sequence_length + 1 (+ sequence_length)
    expected: dict[tuple[int, int], float] = {}
    eligible = [(first, total) for first, total in episodes if total >= sequence_length]
    for first, total in eligible:
        upper = total - sequence_length + 1 + (sequence_length if prioritize_ends else 0)
        for draw in range(upper):
            key = (first, min(draw, total - sequence_length))
            expected[key] = expected.get(key, 0.0) + 1 / len(eligible) / upper

    np.random.seed(0)
    counters = buffer.sample(n_windows).observations[..., 1].numpy().astype(np.int64)
    index = episode_of_windows(counters, episodes, sequence_length)
    firsts = np.array([first for first, _ in episodes])[index]
    keys, counts = np.unique(np.stack([firsts, counters[0] - firsts], axis=1), axis=0, return_counts=True)
    found = {(int(first), int(start)): int(count) for (first, start), count in zip(keys, counts, strict=True)}
    assert set(found) <= set(expected)
    for key, probability in expected.items():
        sigma = np.sqrt(n_windows * probability * (1 - probability))
        assert abs(found.get(key, 0) - n_windows * probability) <= 5 * sigma, key


def test_episodes_ring_wrap_around() -> None:
    ring_size, sequence_length = 20, 4
    buffer = SequenceReplayBuffer(
        ring_size,
        COUNTER_OBS,
        spaces.Discrete(N_ACTIONS),
        device="cpu",
        sequence_length=sequence_length,
        sampling="episodes",
        prioritize_ends=True,
    )
    # An episode of 25 steps fills the ring by itself
    env = CounterVecEnv(n_envs=1, episode_steps=[[3, 1, 7, 25, 2, 5, 4]])
    partial_episode_sampled = none_sampleable = False
    for _ in range(60):
        env.collect(buffer, 3)
        episodes = env.finished_episodes(0, ring_size)
        n_written = int(env.counters[0]) + int(env.steps[0] > 0)
        # The episode index matches the rows and the one rebuilt from them (as on unpickling)
        env_indices, starts, lengths = buffer.finished_episodes()
        assert list(zip(starts.tolist(), lengths.tolist(), strict=True)) == episodes and not env_indices.any()
        for index, rebuilt in zip(buffer.finished_episodes(), copy.deepcopy(buffer).finished_episodes(), strict=True):
            np.testing.assert_array_equal(index, rebuilt)
        # It drops the episodes the ring overwrote (when an episode starts): each of the others has a row in the ring
        # at the last episode start, and episodes have at least 2 rows
        assert len(buffer._episode_starts[0].starts) <= ring_size // 2 + 1
        if all(n_rows < sequence_length for _, n_rows in episodes):
            # The episode of 25 steps overwrote all others
            with pytest.raises(ValueError, match="it needs a finished episode of at least 4 rows"):
                buffer.sample(1)
            none_sampleable = True
            continue
        counters = env.check_windows(samples := buffer.sample(200), first_row_is_first=True)
        episode_of_windows(counters, episodes, sequence_length)
        # Windows hold only rows still in the ring, never the stale rows at the write head
        assert counters.min() >= n_written - ring_size and counters.max() < n_written
        # Windows starting at the oldest row of an episode whose first rows were overwritten are marked is_first too
        first_rows = np.isin(counters[0], list(env.first_counters[0]))
        partial_episode_sampled |= bool(np.any(samples.is_first[0].numpy() > first_rows))
    assert buffer.full and partial_episode_sampled and none_sampleable and env.episodes[0] > 20


def test_episodes_several_envs() -> None:
    n_envs, ring_size, sequence_length, n_windows = 3, 20, 4, 3000
    buffer = SequenceReplayBuffer(
        n_envs * ring_size,
        COUNTER_OBS,
        spaces.Discrete(N_ACTIONS),
        device="cpu",
        n_envs=n_envs,
        sequence_length=sequence_length,
        sampling="episodes",
    )
    # Episodes of 3, 4 and 5 rows in envs 0, 1 and 2
    env = CounterVecEnv(n_envs)
    env.collect(buffer, 40)
    assert buffer.full
    counters = env.check_windows(samples := buffer.sample(n_windows), first_row_is_first=True)
    env_ids = samples.observations[0, :, 0].numpy().astype(np.int64)
    # Env 0's episodes are too short; an episode is drawn uniformly among those of envs 1 and 2
    assert set(env_ids.tolist()) == {1, 2}
    eligible = [[episode for episode in env.finished_episodes(i, ring_size) if episode[1] >= sequence_length] for i in (1, 2)]
    probability = len(eligible[0]) / (len(eligible[0]) + len(eligible[1]))
    assert abs(np.mean(env_ids == 1) - probability) <= 5 * np.sqrt(probability * (1 - probability) / n_windows)
    for env_index, episodes in zip((1, 2), eligible, strict=True):
        index = episode_of_windows(counters[:, env_ids == env_index], episodes, sequence_length)
        assert set(index.tolist()) == set(range(len(episodes)))


def test_episodes_pickle_round_trip() -> None:
    buffer = SequenceReplayBuffer(
        60,
        COUNTER_OBS,
        spaces.Discrete(N_ACTIONS),
        device="cpu",
        n_envs=2,
        sequence_length=4,
        sampling="episodes",
        prioritize_ends=True,
    )
    env = CounterVecEnv(n_envs=2, episode_steps=[[3, 9, 1, 5], [13, 11]])
    env.collect(buffer, 26)
    assert buffer.env_full.any() and not buffer.env_full.all()
    loaded = pickle.loads(pickle.dumps(buffer))
    assert loaded.sampling == "episodes" and loaded.prioritize_ends
    for _ in range(2):
        for index, loaded_index in zip(buffer.finished_episodes(), loaded.finished_episodes(), strict=True):
            np.testing.assert_array_equal(index, loaded_index)
        assert_same_samples(buffer, loaded, 64, seed=3)
        collect_into_both(env, buffer, loaded, 13)
    env.check_windows(loaded.sample(100), first_row_is_first=True)


def test_old_pickle_samples_uniform(monkeypatch: pytest.MonkeyPatch) -> None:
    """A buffer pickled before the sampling modes existed loads with sampling="uniform" and a correct episode index."""
    buffer = SequenceReplayBuffer(60, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", n_envs=2, sequence_length=4)
    env = CounterVecEnv(n_envs=2, episode_steps=[[3, 9, 1, 5], [13, 11]])
    env.collect(buffer, 26)
    assert buffer.env_full.any() and not buffer.env_full.all()

    def old_getstate(self: SequenceReplayBuffer) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("sampling", "prioritize_ends", "_rows_written", "_episode_starts"):
            del state[name]
        return state

    with monkeypatch.context() as patch:
        patch.setattr(SequenceReplayBuffer, "__getstate__", old_getstate)
        loaded = pickle.loads(pickle.dumps(buffer))
    assert loaded.sampling == "uniform" and not loaded.prioritize_ends
    assert_same_samples(buffer, loaded, 64, seed=5)

    # The rebuilt index holds the same episodes (its write indices may differ by multiples of the ring size)
    for _ in range(2):
        (env_indices, starts, lengths), (loaded_env_indices, loaded_starts, loaded_lengths) = (
            buffer.finished_episodes(),
            loaded.finished_episodes(),
        )
        np.testing.assert_array_equal(env_indices, loaded_env_indices)
        np.testing.assert_array_equal(starts % 30, loaded_starts % 30)
        np.testing.assert_array_equal(lengths, loaded_lengths)
        buffer.sampling = loaded.sampling = "episodes"
        assert_same_samples(buffer, loaded, 64, seed=5)
        collect_into_both(env, buffer, loaded, 13)
    env.check_windows(loaded.sample(100), first_row_is_first=True)


def test_episodes_errors() -> None:
    with pytest.raises(ValueError, match=r"Unknown sampling='episode': it must be one of 'uniform', 'episodes'"):
        SequenceReplayBuffer(100, COUNTER_OBS, spaces.Discrete(N_ACTIONS), sampling="episode")
    with pytest.raises(ValueError, match=r"prioritize_ends=True needs sampling='episodes'"):
        SequenceReplayBuffer(100, COUNTER_OBS, spaces.Discrete(N_ACTIONS), prioritize_ends=True)

    buffer = SequenceReplayBuffer(
        100, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=4, sampling="episodes"
    )
    with pytest.raises(ValueError, match=r"holds 0 finished episodes, it needs a finished episode of at least 4 rows"):
        buffer.sample(2)
    # Episodes of 3, 3 and 6 rows
    env = CounterVecEnv(n_envs=1, episode_steps=[[2, 2, 5]])
    env.collect(buffer, 1)
    with pytest.raises(ValueError, match=r"holds 0 finished episodes"):
        buffer.sample(2)
    env.collect(buffer, 7)
    assert buffer.size() == 11  # enough rows for sampling="uniform"
    with pytest.raises(ValueError, match=r"holds 2 finished episodes, the longest of 3 rows, it needs a finished episode"):
        buffer.sample(2)
    env.collect(buffer, 1)
    env.check_windows(buffer.sample(2), first_row_is_first=True)

    # Emptying the buffer empties the episode index
    buffer.reset()
    with pytest.raises(ValueError, match=r"holds 0 finished episodes"):
        buffer.sample(2)
    env = CounterVecEnv(n_envs=1, episode_steps=[[4]])
    env.collect(buffer, 4)
    assert env.finished_episodes(0, 100) == [(0, 5)]
    env.check_windows(buffer.sample(8), first_row_is_first=True)


def test_uniform_sampling_unchanged() -> None:
    """The default sampling draws the same windows as before the sampling modes existed, from the same random draws."""
    n_envs, ring_size, sequence_length, batch_size = 3, 20, 5, 100
    buffer = SequenceReplayBuffer(
        n_envs * ring_size,
        COUNTER_OBS,
        spaces.Discrete(N_ACTIONS),
        device="cpu",
        n_envs=n_envs,
        sequence_length=sequence_length,
    )
    assert buffer.sampling == "uniform" and not buffer.prioritize_ends
    env = CounterVecEnv(n_envs)
    for n_steps in (3, 4, 30):
        env.collect(buffer, n_steps)
        np.random.seed(7)
        samples = buffer.sample(batch_size)
        state = np.random.get_state()
        # Before: one draw among all windows of all rings (those wrapping around a ring's end included)
        n_written = env.counters + (env.steps > 0)
        n_rows = np.minimum(n_written, ring_size)
        n_starts = np.maximum(n_rows - sequence_length + 1, 0)
        np.random.seed(7)
        draws = np.random.randint(0, n_starts.sum(), size=batch_size)
        env_ids = np.searchsorted(np.cumsum(n_starts), draws, side="right")
        first_counters = (n_written - n_rows)[env_ids] + draws - (np.cumsum(n_starts) - n_starts)[env_ids]
        np.testing.assert_array_equal(samples.observations[0, :, 0].numpy(), env_ids)
        np.testing.assert_array_equal(samples.observations[0, :, 1].numpy(), first_counters)
        assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), state, strict=True))
        env.check_windows(samples)


def online_and_plain_buffers(ring_size: int, sequence_length: int, n_envs: int = 1) -> tuple[SequenceReplayBuffer, ...]:
    """A buffer with DreamerV3's online queue and one without."""
    return tuple(
        SequenceReplayBuffer(
            n_envs * ring_size,
            COUNTER_OBS,
            spaces.Discrete(N_ACTIONS),
            device="cpu",
            n_envs=n_envs,
            sequence_length=sequence_length,
            online=online,
        )
        for online in (True, False)
    )


def test_online_queue_serves_each_fresh_window_first_and_once() -> None:
    """
    DreamerV3's online queue: the windows that tile an env's stream (starting at rows 0, T, 2T, ...) open the batches,
    oldest first, each once; the rest of a batch is what the plain buffer draws from the same random numbers.
    """
    sequence_length = 4
    buffer, plain = online_and_plain_buffers(ring_size=40, sequence_length=sequence_length)
    env = CounterVecEnv(n_envs=1)
    collect_into_both(env, buffer, plain, 10)
    n_rows = int(buffer._rows_written[0])
    queued = list(range(0, n_rows - sequence_length + 1, sequence_length))
    assert len(queued) == 3
    # The first two queued windows fill a batch of 2 ...
    first_counters = env.check_windows(buffer.sample(2))[0]
    assert first_counters.tolist() == queued[:2]
    # ... the third opens the next batch, whose other windows are the plain buffer's draws
    np.random.seed(3)
    samples = buffer.sample(5)
    np.random.seed(3)
    plain_samples = plain.sample(4)
    assert env.check_windows(samples)[0, 0] == queued[2]
    assert th.equal(samples.observations[:, 1:], plain_samples.observations)
    # Nothing left in the queue: the same draws as without it
    assert_same_samples(buffer, plain, batch_size=6, seed=4)
    # New rows queue the windows that they complete
    collect_into_both(env, buffer, plain, 6)
    n_rows, previous_rows = int(buffer._rows_written[0]), n_rows
    fresh = [start for start in range(queued[-1] + sequence_length, n_rows - sequence_length + 1, sequence_length)]
    assert fresh and fresh[-1] + sequence_length > previous_rows
    assert env.check_windows(buffer.sample(len(fresh)))[0].tolist() == fresh


def test_online_queue_drops_overwritten_windows_and_counts_the_context() -> None:
    ring_size, sequence_length = 12, 4
    buffer, _ = online_and_plain_buffers(ring_size, sequence_length, n_envs=2)
    env = CounterVecEnv(n_envs=2)
    env.collect(buffer, 30)
    # Only the queued windows still in each ring come first: the others were overwritten
    samples = buffer.sample(12)
    expected = [
        (env_index, start)
        for env_index in range(2)
        for start in range(0, int(buffer._rows_written[env_index]) - sequence_length + 1, sequence_length)
        if start >= buffer._rows_written[env_index] - ring_size
    ]
    online = samples.observations[0, : len(expected)].numpy().astype(np.int64)
    assert sorted(map(tuple, online.tolist())) == sorted(expected)
    env.check_windows(samples)
    assert len(buffer._online_queue) == 0

    # With replay context, the queued windows are sequence_length + context rows long, and tile the stream as such
    context = SequenceReplayBuffer(40, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=4, online=True)
    context.keep_latents(1, deter_size=3, stoch_dim=4)
    env = CounterVecEnv(n_envs=1)
    env.collect(context, 12)
    starts = list(range(0, int(context._rows_written[0]) - 5 + 1, 5))
    # The context row is not trained on: a window's first observation is the row after it
    assert env.check_windows(context.sample(len(starts)))[0].tolist() == [start + 1 for start in starts]


def test_online_queue_survives_pickling_and_reset() -> None:
    buffer, _ = online_and_plain_buffers(ring_size=40, sequence_length=3)
    env = CounterVecEnv(n_envs=1)
    env.collect(buffer, 12)
    assert len(buffer._online_queue) >= 4
    restored = pickle.loads(pickle.dumps(buffer))
    assert restored.online and list(restored._online_queue) == list(buffer._online_queue)
    assert_same_samples(buffer, restored, batch_size=6, seed=0)
    assert_same_samples(buffer, restored, batch_size=6, seed=1)
    buffer.reset()
    assert len(buffer._online_queue) == 0 and buffer._online_next.tolist() == [0]
    with pytest.raises(ValueError, match=r"online=True needs sampling='uniform' .* got sampling='episodes'"):
        SequenceReplayBuffer(40, COUNTER_OBS, spaces.Discrete(N_ACTIONS), sampling="episodes", online=True)


def test_clear_latents_keeps_the_rows_for_a_model_of_other_sizes() -> None:
    buffer = SequenceReplayBuffer(40, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=4)
    buffer.keep_latents(1, deter_size=3, stoch_dim=4)
    env = CounterVecEnv(n_envs=1)
    env.collect(buffer, 20)
    rows = np.arange(20)
    buffer.write_latents(rows, np.ones((20, 3), np.float32), np.ones((20, 4), np.float32))
    observations = buffer.observations.copy()
    buffer.clear_latents(deter_size=5, stoch_dim=10)
    assert buffer.latent_deter.shape == (1, 40, 5) and buffer.latent_stoch.shape == (1, 40, 2)
    assert not buffer.latent_deter.any() and not buffer.latent_stoch.any()
    np.testing.assert_array_equal(buffer.observations, observations)
    samples = buffer.sample(6)
    env.check_windows(samples)
    assert samples.start is not None
    assert samples.start.deter.shape == (6, 5) and samples.start.stoch.shape == (6, 10)
    assert not samples.start.deter.any() and not samples.start.stoch.any()
    # The new sizes survive pickling with the rows
    restored = pickle.loads(pickle.dumps(buffer))
    assert restored.latent_sizes == (5, 10) and restored.latent_deter.shape == (1, 40, 5)
    with pytest.raises(ValueError, match=r"needs a buffer that keeps model states \(keep_latents\(\)\)"):
        SequenceReplayBuffer(40, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=4).clear_latents(5, 10)
