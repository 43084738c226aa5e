"""Tiny DreamerV2 configurations that keep the tests fast on 2 CPU cores, and checks shared by the tests."""

import numpy as np
import torch as th

from sb3_dreamer import DreamerV2

TINY_POLICY = dict(
    embedding_dim=16,
    deter_size=16,
    stoch_size=4,
    class_size=4,
    rssm_hidden_size=16,
    cnn_depth=4,
    mlp_units=16,
    mlp_layers=1,
    head_units=16,
    head_layers=1,
)
TINY = dict(
    policy_kwargs=TINY_POLICY,
    buffer_size=2_000,
    learning_starts=40,
    batch_size=4,
    sequence_length=8,
    train_freq=16,
    # float32 on every machine: the default "auto" picks bfloat16 where the CPU multiplies it natively
    mixed_precision=False,
    gradient_steps=2,
    imagination_horizon=3,
    seed=0,
)


def tiny_model(env="Breakout-MinAtar", policy="CnnPolicy", **kwargs) -> DreamerV2:
    return DreamerV2(policy, env, **{**TINY, **kwargs})


def assert_same_weights(model: DreamerV2, other: DreamerV2) -> None:
    """The two policies hold equal tensors under the same names."""
    state, other_state = model.policy.state_dict(), other.policy.state_dict()
    assert state.keys() == other_state.keys()
    for name, tensor in state.items():
        assert th.equal(tensor, other_state[name]), name


def assert_same_predictions(model: DreamerV2, other: DreamerV2, observations: np.ndarray, n_steps: int) -> list[np.ndarray]:
    """
    Deterministic ``predict`` of both models, each carrying its own state, on the same observations (n_envs, *obs_shape)
    for ``n_steps`` calls (the first one starts the episodes): actions and states must be equal.

    :return: the actions of each call
    """
    state = other_state = None
    actions = []
    for step in range(n_steps):
        starts = np.full(len(observations), step == 0)
        action, state = model.predict(observations, state=state, episode_start=starts, deterministic=True)
        other_action, other_state = other.predict(observations, state=other_state, episode_start=starts, deterministic=True)
        np.testing.assert_array_equal(action, other_action)
        for a, b in zip(state, other_state, strict=True):
            np.testing.assert_array_equal(a, b)
        actions.append(action)
    return actions
