"""Reliability: validation at construction, non-finite guards, exact resume, atomic saves and checked loads."""

import itertools
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_POLICY, tiny_model
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv

from sb3_dreamer import DreamerV2, DreamerV3, NonFiniteError, ResumeCheckpointCallback
from sb3_dreamer.common.guards import UpdateSnapshot

N_STEPS, M_STEPS = 64, 64  # steps before and after the checkpoint of the resume test (2 envs)


class SpacesEnv(gym.Env):
    """An env with the given spaces, for the construction checks."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class NonFiniteAt(gym.Wrapper):
    """Replaces the reward, or the observation, of the ``at_step``-th step (counted over episodes) by NaN."""

    def __init__(self, env: gym.Env, at_step: int, what: str) -> None:
        super().__init__(env)
        self.at_step, self.what, self.n_steps = at_step, what, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.n_steps += 1
        if self.n_steps == self.at_step:
            if self.what == "reward":
                reward = float("nan")
            else:
                obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


def state_of(model: DreamerV2) -> dict[str, th.Tensor]:
    """Clones of the policy's parameters and buffers and of the optimizers' state tensors."""
    state = {f"policy.{name}": tensor.clone() for name, tensor in model.policy.state_dict().items()}
    for name in ("world_model_optimizer", "actor_optimizer", "critic_optimizer"):
        for index, values in getattr(model.policy, name).state_dict()["state"].items():
            state.update({f"{name}.{index}.{key}": value.clone() for key, value in values.items()})
    return state


def assert_same_state(a: dict[str, th.Tensor], b: dict[str, th.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not th.equal(a[name], b[name])]
    assert not different, f"differ: {different}"


@pytest.fixture
def deterministic():
    previous = th.are_deterministic_algorithms_enabled()
    th.use_deterministic_algorithms(True)
    yield
    th.use_deterministic_algorithms(previous)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint after N_STEPS steps of a 2-env tiny model, mid-episode, saved in deterministic mode."""
    previous = th.are_deterministic_algorithms_enabled()
    th.use_deterministic_algorithms(True)
    try:
        model = tiny_model(make_vec_env("Breakout-MinAtar", n_envs=2, seed=0)).learn(N_STEPS)
        path = tmp_path_factory.mktemp("checkpoint") / "run"
        model.save_checkpoint(path)
    finally:
        th.use_deterministic_algorithms(previous)
    # The envs are mid-episode: resuming needs their state
    assert all(len(monitor.rewards) > 0 for monitor in model.env.envs)
    return path


# Validation at construction


@pytest.mark.parametrize(
    "env, policy, match",
    [
        (SimpleMultiObsEnv(), "CnnPolicy", r"Box observation spaces only, got observation space Dict"),
        (SpacesEnv(spaces.Box(0, 1, (3,)), spaces.MultiDiscrete([2, 3])), "MlpPolicy", r"Discrete action.*MultiDiscrete"),
        (SpacesEnv(spaces.Box(0, 1, (3,)), spaces.Box(-np.inf, np.inf, (2,))), "MlpPolicy", r"finite bounds.*Box\(-inf"),
        (SpacesEnv(spaces.Box(0, 1, (10, 10, 4), np.uint8), spaces.Discrete(3)), "CnnPolicy", r"\(10, 10, 4\).*channels-last"),
        (SpacesEnv(spaces.Box(0, 1, (3,)), spaces.Discrete(2)), "CnnPolicy", r"got shape \(3,\).*MlpPolicy"),
        (
            SpacesEnv(spaces.Box(0, 1, (3,)), spaces.Discrete(3, start=5)),
            "MlpPolicy",
            r"starting at 0 only, got action space Discrete\(3, start=5\): .*TransformAction\(env, lambda action: action \+ 5",
        ),
        (
            SpacesEnv(spaces.Box(0, 1, (6, 6, 16)), spaces.Discrete(3)),
            "CnnPolicy",
            r"An image side of 6 is too small .*: the observations of shape \(6, 6, 16\) were taken as channels-first "
            r"\(C, H, W\), 6 channels of 6x16 images; if they are channels-last \(H, W, C\), transpose each observation",
        ),
        (
            SpacesEnv(spaces.Box(0, 255, (6, 6, 16), np.uint8), spaces.Discrete(3)),
            "CnnPolicy",
            r"An image side of 6 is too small .* taken as channels-first \(C, H, W\), 6 channels of 6x16 images",
        ),
        (
            SpacesEnv(spaces.Box(0, 1, (3, 2, 2)), spaces.Discrete(3)),
            "CnnPolicy",
            r"An image side of 2 is too small .* taken as channels-first \(C, H, W\), 3 channels of 2x2 images",
        ),
    ],
)
def test_rejected_spaces(env, policy, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(env, policy)


@pytest.mark.parametrize("algorithm", [DreamerV2, DreamerV3])
def test_rejected_spaces_name_the_algorithm(algorithm):
    """The algorithm and its policy, built alone, each say whose support the space lacks."""
    env = SpacesEnv(spaces.Box(0, 1, (3,)), spaces.MultiDiscrete([2, 3]))
    with pytest.raises(ValueError, match=rf"^{algorithm.__name__} supports Discrete action spaces"):
        algorithm("MlpPolicy", env)
    policy_class = algorithm.policy_aliases["MlpPolicy"]
    with pytest.raises(ValueError, match=rf"^{algorithm.__name__} supports Box observation spaces only"):
        policy_class(spaces.Discrete(4), spaces.Discrete(2), lambda _: 1e-4)


def test_actions_starting_elsewhere_through_the_suggested_wrapper():
    env = SpacesEnv(spaces.Box(0, 1, (3,)), spaces.Discrete(3, start=5))
    model = tiny_model(gym.wrappers.TransformAction(env, lambda action: action + 5, spaces.Discrete(3)), "MlpPolicy")
    actions, _ = model.predict(np.zeros((4, 3), dtype=np.float32))
    assert model.action_space == spaces.Discrete(3) and set(actions.tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("dtype, high", [(np.float32, 1), (np.uint8, 255)])
def test_channels_last_images_with_many_channels_warn(dtype, high):
    env = SpacesEnv(spaces.Box(0, high, (12, 12, 16), dtype), spaces.Discrete(3))
    match = r"\(12, 12, 16\) were taken as channels-first \(C, H, W\), 12 channels of 12x16 images; if they are channels-last"
    with pytest.warns(UserWarning, match=match):
        tiny_model(env)


@pytest.mark.parametrize("high", [255.0, np.inf])
def test_float_images_above_1_warn(high):
    env = SpacesEnv(spaces.Box(0, high, (4, 10, 10), np.float32), spaces.Discrete(3))
    match = rf"float image observations of space Box.* have a high bound of {high}, above 1: they are used as they are "
    with pytest.warns(UserWarning, match=match + r"\(SB3 scales uint8 images only\); scale them to \[0, 1\]"):
        tiny_model(env)


def test_images_in_0_1_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_model(SpacesEnv(spaces.Box(0, 1, (4, 10, 10), np.float32), spaces.Discrete(3)))
        tiny_model()


def test_channels_last_uint8_images_are_transposed():
    model = tiny_model(FakeImageEnv(screen_height=12, screen_width=12, n_channels=1, discrete=True, channel_first=False))
    assert model.observation_space.shape == (1, 12, 12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), r"batch_size must be a positive integer, got 0"),
        (dict(sequence_length=-1), r"sequence_length must be a positive integer, got -1"),
        (dict(buffer_size=0), r"buffer_size must be a positive integer, got 0"),
        (dict(buffer_size=1e5), r"buffer_size must be a positive integer, got 100000.0"),
        (dict(imagination_horizon=0), r"imagination_horizon must be a positive integer, got 0"),
        (dict(target_update_interval=0), r"target_update_interval must be a positive integer, got 0"),
        (dict(exploration_decay_steps=-5), r"exploration_decay_steps must be a non-negative integer, got -5"),
        (dict(buffer_size=60, learning_starts=80, sequence_length=64), r"sequence_length = 64 does not fit .* 60 rows"),
        (dict(buffer_size=20, batch_size=16), r"batch_size=16 is larger than .* = 13"),
        (dict(learning_starts=4, sequence_length=8), r"learning_starts=4 is smaller than sequence_length = 8 times n_envs"),
        (dict(train_freq=0), r"train_freq must be a positive integer, got 0"),
        (dict(train_freq=(4, "epoch")), r"train_freq=\(4, 'epoch'\) has an unknown unit 'epoch'"),
        (dict(gradient_steps=-2), r"gradient_steps must be an integer >= 0, or -1 .* got -2"),
        (dict(gamma=1.5), r"gamma must be in \[0, 1\], got 1.5"),
        (dict(return_lambda=-0.1), r"return_lambda must be in \[0, 1\], got -0.1"),
        (dict(kl_balance=float("nan")), r"kl_balance must be in \[0, 1\], got nan"),
        (dict(kl_balance=1.5), r"kl_balance must be in \[0, 1\], got 1.5"),
        (dict(round_discount="no"), r"round_discount must be True or False, got 'no' \(str\)"),
        (dict(mixed_precision=1), r"mixed_precision must be 'auto', True or False, got 1"),
        (dict(actor_grad_mix=2.0), r"actor_grad_mix must be in \[0, 1\]"),
        (dict(tau=1.1), r"tau must be in \[0, 1\]"),
        (dict(exploration_initial_eps=-0.4), r"exploration_initial_eps must be in \[0, 1\]"),
        (dict(exploration_final_eps=1.05), r"exploration_final_eps must be in \[0, 1\]"),
        (dict(kl_scale=-0.1), r"kl_scale must be a finite number >= 0, got -0.1"),
        (dict(free_nats=-1.0), r"free_nats must be a finite number >= 0"),
        (dict(reward_scale=float("inf")), r"reward_scale must be a finite number >= 0, got inf"),
        (dict(discount_scale=-5.0), r"discount_scale must be a finite number >= 0"),
        (dict(actor_entropy_scale=-1e-3), r"actor_entropy_scale must be a finite number >= 0"),
        (dict(max_grad_norm=0.0), r"max_grad_norm must be a finite number > 0, got 0.0"),
        (dict(learning_rate=-2e-4), r"learning_rate must be a finite number >= 0, got -0.0002"),
        (dict(actor_learning_rate=lambda progress: progress - 0.5), r"actor_learning_rate\(0.0\) must be .* got -0.5"),
        (dict(critic_learning_rate=-1.0), r"critic_learning_rate must be a finite number >= 0"),
        (dict(actor_grad="backprop"), r"Unknown actor_grad='backprop'"),
        (dict(policy_kwargs={**TINY_POLICY, "image_likelihood": "laplace"}), r"Unknown image_likelihood='laplace'"),
        (dict(learning_starts=float("nan")), r"learning_starts must be a non-negative integer, got nan \(float\)"),
        (dict(learning_starts="32"), r"learning_starts must be a non-negative integer, got '32' \(str\)"),
        (dict(diagnostics_interval="x"), r"diagnostics_interval must be a non-negative integer, got 'x' \(str\)"),
        (dict(diagnostics_interval=1.5), r"diagnostics_interval must be a non-negative integer, got 1.5 \(float\)"),
        (dict(recovery_dir=123), r"recovery_dir must be a path \(a str or an os.PathLike\) or None, got 123 \(int\)"),
        (dict(recovery_dir=""), r"recovery_dir must be a non-empty path or None, got '' \(str\), .*current directory"),
        (dict(recovery_dir=b""), r"recovery_dir must be a path \(a str or an os.PathLike\) or None, got b'' \(bytes\)"),
        (dict(recovery_dir=False), r"recovery_dir must be a path \(a str or an os.PathLike\) or None, got False \(bool\)"),
        (dict(recovery_dir=["out"]), r"recovery_dir must be a path .* got \['out'\] \(list\)"),
        (dict(gamma=True), r"gamma must be in \[0, 1\], got True \(bool\)"),
        (dict(exploration_noise=float("nan")), r"exploration_noise must be a finite number >= 0, got nan \(float\)"),
        (dict(max_grad_norm=float("inf")), r"max_grad_norm must be a finite number > 0, got inf \(float\)"),
        (dict(gradient_steps=True), r"gradient_steps must be an integer >= 0, or -1 .* got True \(bool\)"),
        (dict(stats_window_size=0), r"stats_window_size must be a positive integer, got 0 \(int\)"),
        (dict(seed="0"), r"seed must be a non-negative integer, got '0' \(str\)"),
        (dict(compile_losses="yes"), r"compile_losses must be True or False, got 'yes' \(str\)"),
    ],
)
def test_rejected_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(**kwargs)


def test_rejected_episodic_train_freq_with_several_envs():
    with pytest.raises(ValueError, match=r"train_freq=\(1, 'episode'\) counts episodes.*n_envs=2"):
        tiny_model(make_vec_env("Breakout-MinAtar", n_envs=2), train_freq=(1, "episode"), learning_starts=16)


@pytest.mark.parametrize(
    "policy_kwargs, match",
    [
        (dict(deter_size=0), r"deter_size must be a positive integer, got 0"),
        (dict(stoch_size=0), r"stoch_size must be a positive integer, got 0"),
        (dict(class_size=-1), r"class_size must be a positive integer, got -1"),
        (dict(embedding_dim=0), r"embedding_dim must be a positive integer, got 0"),
        (dict(rssm_hidden_size=0), r"rssm_hidden_size must be a positive integer"),
        (dict(cnn_depth=0), r"cnn_depth must be a positive integer"),
        (dict(cnn_kernel_size=0), r"cnn_kernel_size must be a positive integer"),
        (dict(mlp_units=8.5), r"mlp_units must be a positive integer, got 8.5"),
        (dict(head_units=0), r"head_units must be a positive integer"),
        (dict(cnn_layers=-1), r"cnn_layers must be a non-negative integer, got -1"),
        (dict(mlp_layers=-1), r"mlp_layers must be a non-negative integer, got -1"),
        (dict(head_layers=0), r"head_layers must be a positive integer, got 0 \(int\)"),
        (dict(head_layers=1.5), r"head_layers must be a positive integer, got 1.5 \(float\)"),
        (dict(actor_init_std=float("nan")), r"actor_init_std must be a finite number, got nan \(float\)"),
        (
            dict(activation_fn="relu"),
            r"activation_fn must be a class derived from Module, such as torch.nn.ReLU .* got 'relu' \(str\)",
        ),
        (dict(optimizer_class="adam"), r"optimizer_class must be a class derived from Optimizer, .*got 'adam' \(str\)"),
        (
            dict(optimizer_kwargs=[("eps", 1e-5)]),
            r"optimizer_kwargs must be a dict or None, got \[\('eps', 1e-05\)\] \(list\)",
        ),
        (dict(normalize_images="no"), r"normalize_images must be True or False, got 'no' \(str\)"),
        (dict(min_std=-0.1), r"min_std must be a finite number >= 0"),
        (dict(latent_type="beta"), r"Unknown latent_type 'beta'"),
        (dict(encoder_type="transformer"), r"Unknown encoder_type 'transformer'"),
    ],
)
def test_rejected_policy_kwargs(policy_kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(policy_kwargs={**TINY_POLICY, **policy_kwargs})


def predict_state(how: str) -> tuple:
    """A state for predict on 3 Breakout observations: of batch 1, with a NaN, or otherwise malformed."""
    model = tiny_model()
    batch = {"batch-1": 1, "batch-5": 5}.get(how, 3)
    _, state = model.predict(np.zeros((batch, 4, 10, 10), dtype=np.uint8))
    if how == "nan":
        state = (state[0], np.full_like(state[1], np.nan), state[2])
    elif how == "inf-action":
        state = (state[0], state[1], np.full_like(state[2], np.inf))
    elif how == "two-arrays":
        state = state[:2]
    elif how == "dict":
        state = dict(zip(("deter", "stoch", "action"), state, strict=True))
    elif how == "transposed":
        state = (state[0].T, state[1], state[2])
    elif how == "nones":
        state = (None, None, None)
    elif how == "four-arrays":
        state = (*state, state[2])
    return model, state


@pytest.mark.parametrize(
    "how, match",
    [
        ("batch-1", r"state must be the \(deter, stoch, action\) arrays of shapes \(\(3, 16\), .* got \(\(1, 16\), "),
        ("two-arrays", r"arrays of shapes \(\(3, 16\), .*\), got \(\(3, 16\), \(3, 16\)\)"),
        ("batch-5", r"arrays of shapes \(\(3, 16\), .* for these 3 observation\(s\), got \(\(5, 16\), "),
        ("dict", r"arrays of shapes .* got dict"),
        ("nones", r"arrays of shapes \(\(3, 16\), .* got \(\(\), \(\), \(\)\)"),
        (
            "four-arrays",
            r"arrays of shapes \(\(3, 16\), \(3, 16\), \(3, 3\)\) .* got \(\(3, 16\), \(3, 16\), \(3, 3\), \(3, 3\)\)",
        ),
        ("transposed", r"arrays of shapes \(\(3, 16\), .* got \(\(16, 3\), "),
        ("nan", r"predict's state holds non-finite values in its stoch array"),
        ("inf-action", r"predict's state holds non-finite values in its action array"),
    ],
)
def test_rejected_predict_state(how, match):
    model, state = predict_state(how)
    with pytest.raises(ValueError, match=match):
        model.predict(np.zeros((3, 4, 10, 10), dtype=np.uint8), state=state)


@pytest.mark.parametrize("episode_start", [np.ones(2, bool), np.zeros(5, bool), True, np.ones((3, 2), bool)])
def test_rejected_predict_episode_start(episode_start):
    match = rf"episode_start must hold one flag per observation, 3, got shape {re.escape(str(np.shape(episode_start)))}"
    with pytest.raises(ValueError, match=match):
        tiny_model().predict(np.zeros((3, 4, 10, 10), dtype=np.uint8), episode_start=episode_start)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sticky_action_prob=2.0), r"sticky_action_prob must be in \[0, 1\], got 2.0 \(float\)"),
        (dict(sticky_action_prob=-1), r"sticky_action_prob must be in \[0, 1\], got -1 \(int\)"),
        (dict(sticky_action_prob=float("nan")), r"sticky_action_prob must be in \[0, 1\], got nan \(float\)"),
        (dict(sticky_action_prob="0.1"), r"sticky_action_prob must be in \[0, 1\], got '0.1' \(str\)"),
        (dict(difficulty_ramping="no"), r"difficulty_ramping must be True or False, got 'no' \(str\)"),
        (dict(difficulty_ramping=0), r"difficulty_ramping must be True or False, got 0 \(int\)"),
        (dict(difficulty_ramping=None), r"difficulty_ramping must be True or False, got None \(NoneType\)"),
        (dict(difficulty_ramping="True"), r"difficulty_ramping must be True or False, got 'True' \(str\)"),
        (dict(difficulty_ramping=1.0), r"difficulty_ramping must be True or False, got 1.0 \(float\)"),
        (dict(sticky_action_prob=True), r"sticky_action_prob must be in \[0, 1\], got True \(bool\)"),
        (dict(sticky_action_prob=float("inf")), r"sticky_action_prob must be in \[0, 1\], got inf \(float\)"),
    ],
)
@pytest.mark.parametrize("env_id", ["Breakout-MinAtar", "SeaquestPOMDP-MinAtar"])
def test_rejected_minatar_arguments(env_id, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make(env_id, **kwargs)


# Non-finite guards


@pytest.mark.parametrize("recovery", [True, False])
def test_nan_observation_stops_training(tmp_path, recovery):
    env = NonFiniteAt(gym.make("CartPole-v1"), at_step=5, what="observation")
    model = tiny_model(env, "MlpPolicy", recovery_dir=str(tmp_path / "recovery") if recovery else None)
    match = r"Non-finite observation from env\(s\) \[0\] at num_timesteps=5: training stopped before storing it; "
    match += "a recovery checkpoint was saved" if recovery else r"no recovery checkpoint was saved \(recovery_dir=None\)"
    with pytest.raises(NonFiniteError, match=match) as error:
        model.learn(100)
    assert error.value.quantities == ("observation",) and error.value.num_timesteps == 5
    # A ValueError too, which the RL Zoo's hyperparameter search prunes (see test_zoo.py)
    assert isinstance(error.value, RuntimeError) and isinstance(error.value, ValueError)
    assert (tmp_path / "recovery" / "model.zip").exists() == recovery
    assert np.isfinite(model.replay_buffer.observations[0, : model.replay_buffer.size()]).all()


def test_nan_reward_stops_training_with_recovery_checkpoint(tmp_path):
    recovery = tmp_path / "recovery"
    model = tiny_model(NonFiniteAt(gym.make("Breakout-MinAtar"), at_step=70, what="reward"), recovery_dir=str(recovery))
    with pytest.raises(NonFiniteError, match=r"Non-finite reward from env\(s\) \[0\] at num_timesteps=70") as error:
        model.learn(200)
    assert error.value.checkpoint == str(recovery) and error.value.n_updates == model._n_updates > 0
    # The weights were not touched by the bad value: the checkpoint holds them, and the replay buffer its finite rewards
    restored = DreamerV2.load_checkpoint(recovery, env=gym.make("Breakout-MinAtar"))
    assert_same_state(state_of(model), state_of(restored))
    assert all(th.isfinite(tensor).all() for tensor in state_of(restored).values())
    assert np.isfinite(restored.replay_buffer.rewards).all()
    assert restored.num_timesteps == 70 and restored._n_updates == model._n_updates
    restored.learn(32, reset_num_timesteps=False)


def test_default_recovery_dir_has_a_folder_per_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_model(NonFiniteAt(gym.make("Breakout-MinAtar"), at_step=5, what="reward"))
    with pytest.raises(NonFiniteError, match=rf"saved to dreamerv2_recovery/\d{{8}}-\d{{6}}_{os.getpid()} ") as error:
        model.learn(100)
    # The checkpoint, a link to its hidden directory beside it (see save_checkpoint)
    visible = [name for name in os.listdir(tmp_path / "dreamerv2_recovery") if not name.startswith(".")]
    assert visible == [os.path.basename(error.value.checkpoint)]
    assert DreamerV2.load_checkpoint(error.value.checkpoint).num_timesteps == 5


@pytest.mark.parametrize(
    "given, expected", [({}, "logs/run/recovery"), ({"recovery_dir": None}, None), ({"recovery_dir": "mine"}, "mine")]
)
def test_zoo_recovery_dir_is_in_the_run_folder(tmp_path, monkeypatch, given, expected):
    import argparse

    from rl_zoo3.exp_manager import ExperimentManager

    monkeypatch.chdir(tmp_path)
    manager = ExperimentManager(argparse.Namespace(), "dreamerv2", "Breakout-MinAtar", "logs", hyperparams=given)
    manager.save_path = os.path.join("logs", "run")
    hyperparams = manager._preprocess_hyperparams(manager.read_hyperparameters()[0])[0]
    assert hyperparams["recovery_dir"] == expected


@pytest.mark.parametrize("optimizer", ["world_model_optimizer", "actor_optimizer", "critic_optimizer"])
def test_ctrl_c_in_train_restores_the_state_of_before_the_call(tmp_path, optimizer):
    model = tiny_model().learn(64)
    before, n_updates = state_of(model), model._n_updates
    target = getattr(model.policy, optimizer)
    step, calls = target.step, []

    def interrupted_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second gradient step of the call, after the other optimizers' first steps
            raise KeyboardInterrupt
        return step(*args, **kwargs)

    target.step = interrupted_step
    with pytest.raises(KeyboardInterrupt):
        model.train(gradient_steps=3, batch_size=4)
    assert_same_state(before, state_of(model))
    assert model._n_updates == n_updates
    target.step = step
    model.save(tmp_path / "model.zip")
    assert_same_state(before, state_of(DreamerV2.load(tmp_path / "model.zip")))
    model.train(gradient_steps=1, batch_size=4)
    assert model._n_updates == n_updates + 1


def test_nan_loss_restores_weights_and_saves_them(tmp_path):
    recovery = tmp_path / "recovery"
    model = tiny_model(recovery_dir=str(recovery))
    reward_head = model.policy.world_model.reward_head
    forward = reward_head.forward
    reward_head.forward = lambda state: forward(state) * (float("nan") if model._n_updates >= 4 else 1.0)
    # The state before each train() call
    before: dict[str, th.Tensor] = {}
    train = model.train

    def recording_train(*args, **kwargs):
        before.update(state_of(model))
        return train(*args, **kwargs)

    model.train = recording_train
    match = r"Non-finite world_model_loss, reward_loss, .*world_model_grad_norm.* in gradient step 5"
    with pytest.raises(NonFiniteError, match=match) as error:
        model.learn(200)
    assert "reward_loss" in error.value.quantities and error.value.n_updates == 4
    assert "restored to before that train() call (n_updates=4)" in str(error.value)
    assert_same_state(before, state_of(model))
    restored = DreamerV2.load_checkpoint(recovery)
    assert_same_state(before, state_of(restored))
    assert restored._n_updates == 4


def test_non_finite_gradient_names_the_gradient_norm(tmp_path):
    model = tiny_model(recovery_dir=str(tmp_path / "recovery"))
    first_layer = model.policy.actor.deter_in.weight
    first_layer.register_hook(lambda grad: grad * float("inf") if model._n_updates >= 2 else grad)
    with pytest.raises(NonFiniteError, match=r"Non-finite actor_grad_norm in gradient step 3 \(step 1 of 2") as error:
        model.learn(200)
    assert error.value.quantities == ("actor_grad_norm",)
    assert all(th.isfinite(tensor).all() for tensor in state_of(model).values())


class PoisonedReward(gym.Wrapper):
    """A reward of 3e38 at the env's ``at``-th step: finite in the replay buffer's float32, but its squared error is not."""

    def __init__(self, env: gym.Env, at: int) -> None:
        super().__init__(env)
        self.at, self.steps = at, 0

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return observation, 3e38 if self.steps == self.at else reward, terminated, truncated, info


def test_recovery_checkpoint_quarantines_the_rows_of_the_non_finite_step(tmp_path):
    """The batch that drove the loss to infinity is set aside: resumed from the recovery checkpoint, training goes on."""
    recovery = tmp_path / "recovery"
    model = tiny_model(PoisonedReward(gym.make("CartPole-v1"), at=30), "MlpPolicy", recovery_dir=str(recovery))
    with pytest.raises(NonFiniteError, match=r"Non-finite .*reward_loss.* replayed rows of that step quarantined") as error:
        model.learn(400)
    buffer = model.replay_buffer
    poisoned = int(np.flatnonzero(buffer.rewards.reshape(-1) > 1e38)[0])
    # The rows of the batch: batch_size windows of sequence_length rows, which may overlap
    assert poisoned in buffer.quarantine.rows and len(buffer.quarantine) <= model.batch_size * model.sequence_length
    restored = DreamerV2.load_checkpoint(error.value.checkpoint, gym.make("CartPole-v1"))
    assert np.array_equal(restored.replay_buffer.quarantine.rows, buffer.quarantine.rows)
    for _ in range(50):
        restored.replay_buffer.sample(4)
        assert poisoned not in restored.replay_buffer.last_batch_inds
    n_updates = restored._n_updates
    restored.learn(200, reset_num_timesteps=False)
    assert restored._n_updates >= n_updates + 20


@pytest.mark.parametrize("n_envs", [1, 2])
def test_quarantined_rows_leave_when_overwritten(n_envs):
    """Each quarantined row stays until its own env writes a new row into its slot."""
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
    buffer = tiny_model(env, "MlpPolicy", buffer_size=40).learn(30).replay_buffer
    size = buffer.buffer_size
    quarantined = {(env_index, slot) for env_index in range(n_envs) for slot in (3 + env_index, 7)}
    buffer.quarantine_rows(np.array([[env_index * size + slot] for env_index, slot in quarantined]))
    observation = np.zeros((n_envs, 4), dtype=np.float32)
    zeros = np.zeros(n_envs)
    for _ in range(size):
        written = buffer._rows_written.copy()
        buffer.add(observation, observation, zeros, zeros, zeros, [{}] * n_envs)
        for env_index in range(n_envs):
            rows = range(written[env_index], buffer._rows_written[env_index])
            quarantined -= {(env_index, row % size) for row in rows}
        assert buffer.quarantine.rows.tolist() == sorted(env_index * size + slot for env_index, slot in quarantined)
    assert not quarantined


def test_update_snapshot_restores_weights_and_optimizer_states():
    module = th.nn.Linear(3, 2)
    optimizer = th.optim.Adam(module.parameters())
    snapshot = UpdateSnapshot(module, [optimizer])

    def step() -> None:
        optimizer.zero_grad()
        module(th.randn(4, 3)).sum().backward()
        optimizer.step()

    snapshot.take()  # before the first step: Adam has no state yet
    step()
    snapshot.restore()
    assert not optimizer.state
    step()
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    moments = [state["exp_avg"].clone() for state in optimizer.state.values()]
    snapshot.take()
    step()
    step()
    snapshot.restore()
    assert all(th.equal(before[name], tensor) for name, tensor in module.state_dict().items())
    assert all(th.equal(m, state["exp_avg"]) for m, state in zip(moments, optimizer.state.values(), strict=True))
    assert all(state["step"] == 1 for state in optimizer.state.values())


# Exact resume


RESUME = """
import sys
import torch as th
from sb3_dreamer import DreamerV2
th.use_deterministic_algorithms(True)
model = DreamerV2.load_checkpoint(sys.argv[1])
model.learn(int(sys.argv[2]), reset_num_timesteps=False)
th.save(model.policy.state_dict(), sys.argv[3])
"""


def test_resume_in_a_new_process_is_bit_exact(checkpoint, tmp_path, deterministic):
    output = tmp_path / "resumed.pth"
    # As many intra-op threads as this process (one under pytest -n): reductions split alike
    environment = {**os.environ, "OMP_NUM_THREADS": str(th.get_num_threads())}
    command = [sys.executable, "-c", RESUME, str(checkpoint), str(M_STEPS), str(output)]
    subprocess.run(command, check=True, timeout=300, env=environment)
    resumed = th.load(output)
    uninterrupted = tiny_model(make_vec_env("Breakout-MinAtar", n_envs=2, seed=0)).learn(N_STEPS + M_STEPS)
    expected = uninterrupted.policy.state_dict()
    assert expected.keys() == resumed.keys()
    assert all(th.equal(expected[name], resumed[name]) for name in expected)


def test_resume_with_a_new_env_starts_new_episodes(checkpoint):
    model = DreamerV2.load_checkpoint(checkpoint, env=make_vec_env("Breakout-MinAtar", n_envs=2, seed=1))
    heads = model.replay_buffer.env_pos.copy()
    model.learn(32, reset_num_timesteps=False)
    assert model.num_timesteps == N_STEPS + 32
    # The reset observations were stored as first rows, not as continuations of the cut episodes
    assert model.replay_buffer.is_first[np.arange(2), heads].all()


def test_resume_into_new_envs_of_the_saved_kind_is_bit_exact(checkpoint, deterministic):
    # Seeded otherwise: the saved state replaces theirs, mid-episode, as the RL Zoo's resume needs
    env = make_vec_env("Breakout-MinAtar", n_envs=2, seed=5)
    model = DreamerV2.load_checkpoint(checkpoint, env=env, restore_env_states=True)
    assert model.env is env and all(len(monitor.rewards) > 0 for monitor in env.envs)
    model.learn(M_STEPS, reset_num_timesteps=False)
    uninterrupted = tiny_model(make_vec_env("Breakout-MinAtar", n_envs=2, seed=0)).learn(N_STEPS + M_STEPS)
    expected, resumed = uninterrupted.policy.state_dict(), model.policy.state_dict()
    assert all(th.equal(expected[name], resumed[name]) for name in expected)


def test_resume_into_new_envs_of_another_kind_starts_new_episodes(checkpoint):
    time_limit = {"wrapper_class": gym.wrappers.TimeLimit, "wrapper_kwargs": {"max_episode_steps": 50}}
    env = make_vec_env("Breakout-MinAtar", n_envs=2, seed=1, **time_limit)
    with pytest.warns(UserWarning, match=r"are not of the kind whose state was saved .*: they start anew"):
        model = DreamerV2.load_checkpoint(checkpoint, env=env, restore_env_states=True)
    heads = model.replay_buffer.env_pos.copy()
    model.learn(32, reset_num_timesteps=False)
    assert model.replay_buffer.is_first[np.arange(2), heads].all()


def test_resume_checkpoint_callback_saves_on_multiples_and_at_the_end(tmp_path, monkeypatch):
    model = tiny_model()  # train_freq 16: rollouts start every 16 steps
    saved_at = []
    save_checkpoint = model.save_checkpoint
    monkeypatch.setattr(
        model, "save_checkpoint", lambda *a, **k: (saved_at.append(model.num_timesteps), save_checkpoint(*a, **k))
    )
    model.learn(100, callback=ResumeCheckpointCallback(32, tmp_path / "ckpt"))
    assert saved_at == [32, 64, 96, 112]
    resumed = DreamerV2.load_checkpoint(tmp_path / "ckpt", env=make_vec_env("Breakout-MinAtar"))
    assert resumed.num_timesteps == 112 and resumed.replay_buffer.size() == model.replay_buffer.size()

    # A resumed run saves at the next multiple, not when it starts
    saved_at.clear()
    monkeypatch.setattr(resumed, "save_checkpoint", lambda *a, **k: saved_at.append(resumed.num_timesteps))
    resumed.learn(50, callback=ResumeCheckpointCallback(32, tmp_path / "ckpt"), reset_num_timesteps=False)
    assert saved_at == [128, 160, 176]


def test_resume_checkpoint_callback_rejects_bad_input(tmp_path):
    for save_freq in (0, 2.5, "100", True):
        with pytest.raises(ValueError, match=f"save_freq must be a positive whole number of env steps, got {save_freq!r}"):
            ResumeCheckpointCallback(save_freq, tmp_path)
    assert ResumeCheckpointCallback(1e4, tmp_path).save_freq == 10_000
    from stable_baselines3 import DQN

    with pytest.raises(TypeError, match="needs a model with save_checkpoint\\(\\), got DQN"):
        DQN("MlpPolicy", "CartPole-v1").learn(10, callback=ResumeCheckpointCallback(5, tmp_path))


# Checked loads and atomic saves


def damage(path: os.PathLike, how: str) -> None:
    data = open(path, "rb").read()
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "garbage":
        data = np.random.default_rng(0).bytes(len(data))
    else:  # a few bytes changed in the middle
        middle = len(data) // 2
        data = data[:middle] + bytes(255 - b for b in data[middle : middle + 8]) + data[middle + 8 :]
    open(path, "wb").write(data)


@pytest.mark.parametrize("how", ["truncated", "garbage", "flipped"])
def test_damaged_model_file(checkpoint, tmp_path, how):
    path = tmp_path / "model.zip"
    shutil.copy(checkpoint / "model.zip", path)
    damage(path, how)
    with pytest.raises(ValueError, match=r"Cannot load DreamerV2 model from .*model.zip: the file is truncated or corrupted"):
        DreamerV2.load(path)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_replay_buffer_file(checkpoint, tmp_path, how):
    path = tmp_path / "buffer.pkl"
    shutil.copy(checkpoint / "replay_buffer.pkl", path)
    damage(path, how)
    model = tiny_model(make_vec_env("Breakout-MinAtar", n_envs=2))
    with pytest.raises(ValueError, match=r"Cannot load replay buffer from .*buffer.pkl: the file is truncated or corrupted"):
        model.load_replay_buffer(path)


def test_replay_buffer_of_another_model(checkpoint):
    with pytest.raises(ValueError, match=r"\(observation shape, n_envs, sequence_length\) = \(\(4, 10, 10\), 2, 8\) differ"):
        tiny_model().load_replay_buffer(checkpoint / "replay_buffer.pkl")


@pytest.mark.parametrize(
    "buffer_env, model_env, found, expected", [("Breakout", "Asterix", 3, 5), ("Asterix", "Breakout", 5, 3)]
)
def test_replay_buffer_of_other_actions(tmp_path, buffer_env, model_env, found, expected):
    path = tmp_path / "buffer.pkl"
    tiny_model(make_vec_env(f"{buffer_env}-MinAtar", n_envs=2)).learn(16).save_replay_buffer(path)
    model = tiny_model(make_vec_env(f"{model_env}-MinAtar", n_envs=2))
    match = rf"buffer.pkl: its action space Discrete\({found}\) differs from the model's Discrete\({expected}\)"
    with pytest.raises(ValueError, match=match):
        model.load_replay_buffer(path)


def test_replay_buffer_of_other_observation_encoding(checkpoint):
    float_images = make_vec_env(lambda: SpacesEnv(spaces.Box(0, 1, (4, 10, 10)), spaces.Discrete(3)), n_envs=2)
    match = r"buffer.pkl: it stores observations as bit-packed uint8 \(observation space Box\(0, 1, \(4, 10, 10\), uint8\)\)"
    match += r", the model as float32 \(observation space Box\(0.0, 1.0, \(4, 10, 10\), float32\)\)"
    with pytest.raises(ValueError, match=match):
        tiny_model(float_images).load_replay_buffer(checkpoint / "replay_buffer.pkl")


def rewrite_model_file(source: os.PathLike, target: os.PathLike, drop: str | None = None, data: object = None) -> None:
    """Copy a model zip file without the member ``drop``, and with ``data`` as its ``data`` if given."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for name in original.namelist():
            if name != drop:
                copy.writestr(name, json.dumps(data) if name == "data" and data is not None else original.read(name))


@pytest.mark.parametrize(
    "how, match",
    [
        ("no-actor-optimizer", r"it lacks the members \['policy.actor_optimizer.pth'\]"),
        ("data-list", r"its data is a JSON list, not an object"),
        ("data-dict", r"its data lacks the keys \['observation_space', 'action_space', 'policy_class'\]"),
        ("dqn", r"it lacks the members \['policy.actor_optimizer.pth', 'policy.critic_optimizer.pth', 'policy.world_model"),
    ],
)
def test_model_file_that_is_not_a_dreamerv2_model(checkpoint, tmp_path, how, match):
    path = tmp_path / "model.zip"
    if how == "dqn":
        from stable_baselines3 import DQN

        DQN("MlpPolicy", "CartPole-v1").save(path)
    else:
        drop = "policy.actor_optimizer.pth" if how == "no-actor-optimizer" else None
        rewrite_model_file(checkpoint / "model.zip", path, drop, {"data-list": [], "data-dict": {}}.get(how))
    with pytest.raises(ValueError, match=rf"Cannot load DreamerV2 model from .*model.zip: {match}"):
        DreamerV2.load(path)


@pytest.mark.parametrize(
    "state, match",
    [
        ([], r"its checkpoint.pkl holds a list, not the dict"),
        ({"digests": {}}, r"its checkpoint.pkl lacks the keys \['rng_states',"),
    ],
)
def test_checkpoint_state_that_is_not_one(checkpoint, tmp_path, state, match):
    path = tmp_path / "run"
    shutil.copytree(checkpoint, path)
    with open(path / "checkpoint.pkl", "wb") as file:
        pickle.dump(state, file)
    with pytest.raises(ValueError, match=rf"Cannot load the checkpoint in .*run: {match}"):
        DreamerV2.load_checkpoint(path)


def test_torn_checkpoint(checkpoint, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(checkpoint, path)
    model = DreamerV2.load_checkpoint(path)
    model.learn(16, reset_num_timesteps=False)
    model.save_replay_buffer(path / "replay_buffer.pkl")  # as if the save stopped after the buffer
    with pytest.raises(ValueError, match=r"replay_buffer.pkl is not the file its checkpoint.pkl was saved with"):
        DreamerV2.load_checkpoint(path)


KILLS = 20  # saves interrupted by the test below


def test_killed_checkpoint_saves_leave_a_complete_checkpoint(tmp_path):
    """
    A forked copy of the process saves checkpoints in a loop until SIGKILL, at a random time: the path names the last
    complete checkpoint after every kill, and the next save removes what the killed ones left.
    """
    model = tiny_model(make_vec_env("Breakout-MinAtar", n_envs=2, seed=0)).learn(32)
    path = tmp_path / "checkpoint"
    start = time.perf_counter()
    model.save_checkpoint(path)
    save_time = time.perf_counter() - start
    saved, interrupted = model.num_timesteps, 0  # the checkpoint's num_timesteps; kills that left files behind
    rng = np.random.default_rng(0)
    for kill in range(KILLS):
        first = 1000 * (kill + 1)  # the num_timesteps of the child's first save, then + 1 per save
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read)
                for number in itertools.count(first):
                    model.num_timesteps = number
                    model.save_checkpoint(path)
                    os.write(write, b".")
            finally:
                os._exit(1)
        os.close(write)
        time.sleep(rng.uniform(0, 3 * save_time))
        os.kill(pid, signal.SIGKILL)
        assert os.WIFSIGNALED(os.waitpid(pid, 0)[1])
        with os.fdopen(read, "rb") as pipe:
            completed = len(pipe.read())
        interrupted += len(os.listdir(tmp_path)) > 2
        loaded = DreamerV2.load_checkpoint(path)
        # The last save reported complete, or the next one if the kill came after its switch but before its report
        newest = first + completed - 1 if completed else saved
        assert loaded.num_timesteps in (newest, first + completed)
        assert loaded.replay_buffer.size() == model.replay_buffer.size()
        saved = loaded.num_timesteps
    assert interrupted >= KILLS // 2

    model.save_checkpoint(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["checkpoint", os.readlink(path)])
    assert sorted(os.listdir(path)) == ["checkpoint.pkl", "model.zip", "replay_buffer.pkl"]


def test_checkpoint_directory_of_an_earlier_version(checkpoint, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(checkpoint, path)  # a directory, as earlier versions saved, with the leftover of a killed save
    (path / ".model.zip.0123456789ab.tmp").write_bytes(b"half a model")
    model = DreamerV2.load_checkpoint(path)
    model.learn(16, reset_num_timesteps=False)
    model.save_checkpoint(path)
    assert path.is_symlink() and sorted(os.listdir(tmp_path)) == sorted(["run", os.readlink(path)])
    assert DreamerV2.load_checkpoint(path).num_timesteps == model.num_timesteps > N_STEPS
    # A directory that holds other files is not replaced
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"Cannot save to .*logs: it is a directory that holds other files .*\['notes.txt'\]"):
        model.save_checkpoint(tmp_path / "logs")
    assert os.listdir(tmp_path / "logs") == ["notes.txt"]


def test_interrupted_model_save_keeps_previous_file(checkpoint, tmp_path, monkeypatch):
    model = DreamerV2.load(checkpoint / "model.zip")
    path = tmp_path / "model.zip"
    model.save(path)
    previous = path.read_bytes()

    def failing_save(obj, file, *args, **kwargs):
        file.write(b"half a tensor")
        raise OSError("No space left on device")

    monkeypatch.setattr(th, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        model.save(tmp_path / "model")  # SB3 adds the .zip suffix
    assert path.read_bytes() == previous
    assert sorted(os.listdir(tmp_path)) == ["model.zip"]


def test_interrupted_replay_buffer_save_keeps_previous_file(checkpoint, tmp_path):
    model = tiny_model(make_vec_env("Breakout-MinAtar", n_envs=2))
    model.load_replay_buffer(checkpoint / "replay_buffer.pkl")
    path = tmp_path / "buffer.pkl"
    model.save_replay_buffer(path)
    previous = path.read_bytes()
    model.replay_buffer.unpicklable = lambda: None  # pickled after the storage arrays: fails mid-write
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        model.save_replay_buffer(path)
    assert path.read_bytes() == previous
    assert sorted(os.listdir(tmp_path)) == ["buffer.pkl"]


#: Every numeric argument of DreamerV2, with values it must refuse: NaN, an infinity, a string, a bool
NUMERIC_ARGUMENTS = {
    "probability": (
        "gamma",
        "return_lambda",
        "kl_balance",
        "actor_grad_mix",
        "tau",
        "exploration_initial_eps",
        "exploration_final_eps",
        "weight_decay",
    ),
    "non-negative number": (
        "kl_scale",
        "free_nats",
        "free_bits",
        "reward_scale",
        "discount_scale",
        "exploration_noise",
        "max_grad_norm",
    ),
    "count": (
        "batch_size",
        "sequence_length",
        "imagination_horizon",
        "buffer_size",
        "target_update_interval",
        "learning_starts",
        "exploration_decay_steps",
        "diagnostics_interval",
    ),
    "schedule": ("learning_rate", "actor_learning_rate", "critic_learning_rate", "actor_entropy_scale"),
}


@pytest.mark.parametrize(
    "name, value",
    [
        (name, value)
        for names in NUMERIC_ARGUMENTS.values()
        for name in names
        for value in (float("nan"), float("-inf"), "0.5", True)
    ],
)
def test_numeric_arguments_refuse_nan_infinity_strings_and_bools(name, value):
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
        tiny_model(**{name: value})
