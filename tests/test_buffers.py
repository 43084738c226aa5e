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
    Env i has episodes of ``i + 2`` steps; every other episode ends with a time-limit truncation.
    The reward for reaching an observation is its counter and the action taken in an observation is its counter modulo
    ``N_ACTIONS``, so every stored field can be recomputed from the counter.
    """

    def __init__(self, n_envs: int):
        self.n_envs = n_envs
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
            dones = self.steps == np.arange(self.n_envs) + 2
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

    def check_windows(self, samples: SequenceSamples) -> np.ndarray:
        """Check every field of the sampled windows against the counters; return the counters, (T, B)."""
        observations = samples.observations.numpy()
        env_ids, counters = observations[..., 0].astype(np.int64), observations[..., 1].astype(np.int64)
        # Each window lies in one env ring and holds consecutive rows
        assert np.all(env_ids == env_ids[0])
        assert np.all(np.diff(counters, axis=0) == 1)
        is_first = np.vectorize(lambda counter, env_id: counter in self.first_counters[env_id])(counters, env_ids)
        terminated = np.vectorize(lambda counter, env_id: counter in self.terminal_counters[env_id])(counters, env_ids)
        np.testing.assert_array_equal(samples.is_first.numpy(), is_first)
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


def test_pickle_round_trip() -> None:
    buffer = SequenceReplayBuffer(30, COUNTER_OBS, spaces.Discrete(N_ACTIONS), device="cpu", n_envs=2, sequence_length=4)
    env = CounterVecEnv(n_envs=2)
    env.collect(buffer, 12)
    loaded = pickle.loads(pickle.dumps(buffer))
    for _ in range(2):
        np.random.seed(3)
        samples = buffer.sample(8)
        np.random.seed(3)
        loaded_samples = loaded.sample(8)
        for tensor, loaded_tensor in zip(samples, loaded_samples, strict=True):
            assert th.equal(tensor, loaded_tensor)
        # Both buffers keep adding the same rows
        env_copy = copy.deepcopy(env)
        env.collect(buffer, 9)
        env_copy.collect(loaded, 9)
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
