"""Budgets of the full grid and of ``--quick``, and the tiny hyperparameters of ``--quick`` (the zoo tests use them too)."""

#: (frames, eval_freq, eval_episodes, final_episodes) of the full grid and of ``--quick``
FULL_BUDGET = (100_000, 10_000, 10, 100)
QUICK_BUDGET = (300, 100, 2, 5)
#: bootstrap replications of the report's intervals under ``--quick`` (the full grid's: ``stats.BOOTSTRAP_REPS``)
QUICK_BOOTSTRAP_REPS = 200
#: Tiny DreamerV2 networks: a few hundred steps take seconds of a CPU core (``--quick`` and the test suite use them)
TINY_POLICY_KWARGS = dict(
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
#: The same as the zoo's ``policy_kwargs:dict(...)`` reads them
QUICK_POLICY_KWARGS = ",".join(f"{name}={value}" for name, value in TINY_POLICY_KWARGS.items())
#: The tiny replay and training schedule of both Dreamers under ``--quick``
QUICK_DREAMER_SCHEDULE = [
    "learning_starts:100",
    "batch_size:4",
    "sequence_length:8",
    "train_freq:16",
    "gradient_steps:1",
    "imagination_horizon:3",
    "buffer_size:2000",
]
#: Tiny settings of ``--quick``, before ``--hyperparams`` and ``--algo-hyperparams``
QUICK_HYPERPARAMS = {
    "dreamerv2": [*QUICK_DREAMER_SCHEDULE, f"policy_kwargs:dict({QUICK_POLICY_KWARGS})"],
    "dreamerv3": [
        *QUICK_DREAMER_SCHEDULE,
        "policy_kwargs:dict(deter_size=16, units=16, class_size=4, cnn_depth=2, stoch_size=4, blocks=4, bins=15)",
    ],
    "dqn": ["learning_starts:50", "buffer_size:2000"],
    "qrdqn": ["learning_starts:50", "buffer_size:2000"],
    "ppo": ["n_envs:2", "n_steps:64", "batch_size:32"],
}
