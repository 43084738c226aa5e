"""Tiny DreamerV2 configurations that keep the tests fast on 2 CPU cores."""

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
    gradient_steps=2,
    imagination_horizon=3,
    seed=0,
)


def tiny_model(env="Breakout-MinAtar", policy="CnnPolicy", **kwargs) -> DreamerV2:
    return DreamerV2(policy, env, **{**TINY, **kwargs})
