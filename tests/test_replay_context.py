"""Replay context (DreamerV3's ``replay_context``): model states stored with the replay rows start the replayed windows."""

from pathlib import Path

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from test_buffers import add_step
from test_dreamerv3 import tiny_v3

from sb3_dreamer import NonFiniteError
from sb3_dreamer.common.buffers import SequenceReplayBuffer
from sb3_dreamer.world_model.rssm import LatentState

DETER_SIZE, STOCH_DIM = 3, 6


def counting_buffer(n_steps: int, replay_context: int = 1, sequence_length: int = 4) -> SequenceReplayBuffer:
    """One env whose row r holds the observation r, with states written to rows 1 .. n_steps - 1 (not row 0)."""
    buffer = SequenceReplayBuffer(
        100, spaces.Box(0, np.inf, (1,), np.float32), spaces.Discrete(3), device="cpu", sequence_length=sequence_length
    )
    buffer.keep_latents(replay_context, DETER_SIZE, STOCH_DIM)
    for step in range(n_steps):
        add_step(buffer, step, step + 1, 0, 0.0, False)
    rows = np.arange(1, n_steps + 1)
    buffer.write_latents(rows, latent_deter(rows), latent_stoch(rows))
    return buffer


def latent_deter(rows: np.ndarray) -> np.ndarray:
    """The deterministic states written to ``rows``: row + 0.25 in each unit (exact in float16)."""
    return np.repeat(rows[:, None] + 0.25, DETER_SIZE, axis=1).astype(np.float32)


def latent_stoch(rows: np.ndarray) -> np.ndarray:
    """The one-hot stochastic states written to ``rows``: a one at row % STOCH_DIM."""
    return np.eye(STOCH_DIM, dtype=np.float32)[rows % STOCH_DIM]


@pytest.mark.parametrize("replay_context", [1, 3])
def test_windows_start_from_the_state_stored_in_the_row_before_them(replay_context: int) -> None:
    buffer = counting_buffer(30, replay_context)
    np.random.seed(0)
    samples = buffer.sample(200)
    assert buffer.last_batch_inds is not None and buffer.last_batch_inds.shape == (replay_context + 4, 200)
    first_obs = samples.observations[0, :, 0].numpy().astype(np.int64)  # (B,), = the window's first row
    assert samples.observations.shape == (4, 200, 1) and (first_obs >= replay_context).all()
    previous = first_obs - 1
    assert samples.start is not None
    np.testing.assert_array_equal(samples.start.deter.numpy(), np.where(previous[:, None] > 0, latent_deter(previous), 0))
    np.testing.assert_array_equal(samples.start.stoch.numpy(), np.where(previous[:, None] > 0, latent_stoch(previous), 0))
    # Row 0 holds no state: windows after it start from the initial (all-zero) state
    assert (previous == 0).any() == (replay_context == 1)


def test_windows_need_their_context_rows() -> None:
    buffer = counting_buffer(3, sequence_length=4)  # rows 0 .. 3: a window of 4 rows, not of 1 + 4
    assert not buffer.can_sample()
    with pytest.raises(ValueError, match="sequences of 5 rows"):
        buffer.sample(1)
    add_step(buffer, 3, 4, 0, 0.0, False)
    assert buffer.can_sample()


def test_states_are_kept_as_float16_and_bits() -> None:
    buffer = counting_buffer(10)
    assert buffer.latent_deter is not None and buffer.latent_deter.dtype == np.float16
    assert buffer.latent_stoch is not None and buffer.latent_stoch.shape[-1] == 1  # 6 bits in one byte
    assert buffer.nbytes_per_row == 4 + 1 + 4 + 1 + 1 + 2 * DETER_SIZE + 1


def test_keep_latents_is_refused_where_it_cannot_apply() -> None:
    with pytest.raises(ValueError, match="before the first add"):
        counting_buffer(2).keep_latents(1, DETER_SIZE, STOCH_DIM)
    box, actions = spaces.Box(0, 1, (1,), np.float32), spaces.Discrete(2)
    with pytest.raises(ValueError, match="sampling='uniform'"):
        SequenceReplayBuffer(100, box, actions, sequence_length=4, sampling="episodes").keep_latents(1, 3, 6)
    with pytest.raises(ValueError, match=r"replay_context=0 must be at least 1"):
        SequenceReplayBuffer(100, box, actions, sequence_length=4).keep_latents(0, 3, 6)
    with pytest.raises(ValueError, match=r"sequence_length \+ replay_context = 4 \+ 7 at most the ring size"):
        SequenceReplayBuffer(10, box, actions, sequence_length=4).keep_latents(7, 3, 6)


def test_acting_stores_the_state_that_chose_each_action() -> None:
    """
    Without updates, row t holds the posterior that acted on observation t: its deterministic state follows from the
    state of row t - 1 and the action of row t through the recurrent step (up to float16 rounding). The rows of the
    random warm-up (40 steps) hold the initial state, and so do the rows never acted on: the last observation of each
    episode and the newest row.
    """
    model = tiny_v3(gradient_steps=0).learn(120)
    buffer, rssm = model.replay_buffer, model.policy.rssm
    assert buffer.latent_deter is not None and buffer.actions is not None and buffer.is_first is not None
    n_rows = buffer.size()
    deter = th.as_tensor(buffer.latent_deter[0, :n_rows].astype(np.float32))
    stoch = th.as_tensor(np.unpackbits(buffer.latent_stoch[0, :n_rows], axis=-1, count=rssm.stoch_dim).astype(np.float32))
    acted_on = np.ones(n_rows, dtype=bool)
    acted_on[:40] = False
    acted_on[-1] = False
    acted_on[np.flatnonzero(buffer.is_first[0, 1:n_rows])] = False  # the row before each first row
    assert (deter[~acted_on] == 0).all() and (stoch[~acted_on] == 0).all()
    # After the warm-up, one one per categorical
    assert (stoch[45:][acted_on[45:]].sum(-1) == rssm.latent.stoch).all()
    # Rows t acted on, after a row t - 1 acted on in the same episode
    steps = np.flatnonzero(acted_on[:-1] & acted_on[1:] & ~buffer.is_first[0, 1:n_rows])[10:] + 1
    actions = model.policy.action_dist.to_vector(th.as_tensor(buffer.actions[0, steps].astype(np.int64)))
    with th.no_grad():
        predicted = rssm._recurrent(LatentState(deter[steps - 1], stoch[steps - 1]), rssm.embed_action(actions))
    assert len(steps) > 30 and (predicted - deter[steps]).abs().max() < 1e-2
    # One row off, the states do not follow
    assert (predicted[1:] - deter[steps[:-1]]).abs().max() > 0.1


def test_updates_store_their_posterior_states() -> None:
    model = tiny_v3().learn(60)
    posteriors = []
    gradient_step = model._gradient_step

    def recording_step(samples, step):
        metrics, posterior = gradient_step(samples, step)
        posteriors.append(posterior)
        return metrics, posterior

    model._gradient_step = recording_step
    model.train(gradient_steps=1, batch_size=4)
    buffer = model.replay_buffer
    assert buffer.last_batch_inds is not None and buffer.latent_deter is not None and buffer.latent_stoch is not None
    rows = buffer.last_batch_inds[1:].reshape(-1)  # (T * B,), in the posterior's order
    # Windows may overlap: a row replayed twice keeps the state of its last window
    last_of_each_row = len(rows) - 1 - np.unique(rows[::-1], return_index=True)[1]
    rows = rows[last_of_each_row]
    (posterior,) = posteriors
    np.testing.assert_array_equal(
        buffer.latent_deter.reshape(-1, buffer.latent_deter.shape[-1])[rows],
        posterior.deter[last_of_each_row].numpy().astype(np.float16),
    )
    stored_stoch = np.unpackbits(buffer.latent_stoch.reshape(-1, buffer.latent_stoch.shape[-1])[rows], axis=-1)
    np.testing.assert_array_equal(stored_stoch[:, : posterior.stoch.shape[1]], posterior.stoch[last_of_each_row].numpy())


def test_a_non_finite_update_stores_no_states() -> None:
    model = tiny_v3(recovery_dir=None).learn(60)
    assert model.replay_buffer.latent_deter is not None
    stored = model.replay_buffer.latent_deter.copy()
    gradient_step = model._gradient_step

    def non_finite_step(samples, step):
        metrics, posterior = gradient_step(samples, step)
        return {**metrics, "total_loss": th.tensor(float("nan"))}, posterior

    model._gradient_step = non_finite_step
    with pytest.raises(NonFiniteError):
        model.train(gradient_steps=1, batch_size=4)
    np.testing.assert_array_equal(model.replay_buffer.latent_deter, stored)


def test_the_world_model_starts_from_the_stored_states() -> None:
    model = tiny_v3().learn(60)
    samples = model.replay_buffer.sample(4)
    assert samples.start is not None
    zero_start = samples._replace(start=LatentState(*(th.zeros_like(x) for x in samples.start)))

    def world_model_loss(batch) -> th.Tensor:
        th.manual_seed(0)
        with th.no_grad():
            return model.policy.world_model.loss(batch, model.world_model_loss_config)[0]

    # A zero start state is the initial state; the stored states change the loss
    assert th.equal(world_model_loss(zero_start), world_model_loss(samples._replace(start=None)))
    assert not th.equal(world_model_loss(samples), world_model_loss(zero_start))


def test_replay_buffers_load_only_into_models_with_the_same_context(tmp_path: Path) -> None:
    model = tiny_v3().learn(60)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = tiny_v3()
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    for name in ("latent_deter", "latent_stoch"):
        np.testing.assert_array_equal(getattr(loaded.replay_buffer, name), getattr(model.replay_buffer, name))
    with pytest.raises(ValueError, match=r"replay context .* \(1, \(32, 16\)\) differ from the model's \(0, None\)"):
        tiny_v3(replay_context=0).load_replay_buffer(tmp_path / "buffer.pkl")


def test_without_replay_context_windows_start_from_the_initial_state() -> None:
    model = tiny_v3(replay_context=0).learn(60)
    samples = model.replay_buffer.sample(4)
    assert samples.start is None
    assert model.replay_buffer.latent_sizes is None and model.replay_buffer.last_batch_inds.shape == (8, 4)


def test_previous_rows_hold_the_observations_acted_on() -> None:
    """After each add, ``previous_rows()`` are the rows of ``obs``, in every env, across episode ends and ring wraps."""
    buffer = SequenceReplayBuffer(
        12, spaces.Box(0, np.inf, (1,), np.float32), spaces.Discrete(2), device="cpu", n_envs=2, sequence_length=2
    )
    obs = np.array([[0.0], [100.0]], dtype=np.float32)
    for step in range(20):
        next_obs = obs + 1
        done = np.array([False, step % 4 == 3])  # env 1's episodes end every 4 steps
        buffer.add(obs, next_obs, np.zeros(2), np.zeros(2, np.float32), done, [{}, {}])
        assert buffer.observations is not None
        np.testing.assert_array_equal(buffer.observations.reshape(-1, 1)[buffer.previous_rows()], obs)
        # After an episode end, the env's next obs is a reset observation of a new episode
        obs = np.where(done[:, None], next_obs + 1000, next_obs).astype(np.float32)
    assert buffer.env_full.all()
