"""Continuous (Box) action spaces: the tanh-Normal actor, rescaled actions, the algorithm contract on Pendulum."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from conftest import TINY_POLICY, ZOO_TINY, assert_same_predictions, assert_same_weights, run, tiny_model
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_dreamer import DreamerV2
from sb3_dreamer.world_model.diagnostics import open_loop_prediction
from sb3_dreamer.world_model.distributions import CategoricalAction, TanhNormalAction

PACKAGED_YAML = Path(__file__).resolve().parents[1] / "sb3_dreamer" / "zoo" / "hyperparams" / "dreamerv2.yml"


class RecordActions(BaseCallback):
    """Keeps the actions sent to the env at every step, (n_steps, n_envs, *action_shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[np.ndarray] = []

    def _on_step(self) -> bool:
        self.actions.append(np.array(self.locals["actions"]))
        return True


class BoundsEnv(gym.Env):
    """Actions in a Box with bounds other than [-1, 1]; episodes of 10 steps. Records the actions it receives."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Box(np.array([0.0, -10.0], np.float32), np.array([1.0, 30.0], np.float32))
        self.received: list[np.ndarray] = []
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.received.append(np.array(action))
        self._t += 1
        obs = np.array([self._t / 10, action[0]], np.float32)
        return obs, float(action[0]), self._t == 10, False, {}


def pendulum_model(env="Pendulum-v1", **kwargs) -> DreamerV2:
    return tiny_model(env, "MlpPolicy", **kwargs)


@pytest.fixture(scope="module")
def trained() -> DreamerV2:
    """A tiny DreamerV2 after 200 steps of Pendulum (40 random, then the actor's)."""
    return pendulum_model().learn(200)


def test_tanh_normal_log_prob_matches_torch():
    th.manual_seed(0)
    dist = TanhNormalAction((3,), min_std=0.1, init_std=0.0)
    params = 3 * th.randn(50, 6)
    mean, std = dist.normal(params)
    assert (mean.abs() <= dist.mean_scale).all() and (std >= 0.1).all()
    reference = th.distributions.Independent(
        th.distributions.TransformedDistribution(th.distributions.Normal(mean, std), th.distributions.TanhTransform()), 1
    )
    for actions in (2 * th.rand(50, 3) - 1, dist.sample(params).clamp(-0.999, 0.999)):
        log_prob = dist.log_prob(params, actions)
        assert log_prob.shape == (50,)
        assert th.allclose(log_prob, reference.log_prob(actions), rtol=1e-4, atol=1e-4)
        assert th.equal(dist.entropy(params, actions), -log_prob)
    assert th.equal(dist.mode(params), th.tanh(mean))


def test_tanh_normal_samples_in_bounds_with_gradients():
    dist = TanhNormalAction((2,), min_std=0.1, init_std=0.0)
    params = th.randn(1000, 4, requires_grad=True)
    th.manual_seed(1)
    sample = dist.sample(params)
    # In float32, tanh rounds to exactly +-1 beyond about 9: samples lie in the closed box, and their log-probs stay finite
    assert sample.shape == (1000, 2) and (sample.abs() <= 1).all()
    assert th.isfinite(dist.log_prob(params, sample)).all()
    # Reparameterised: tanh(mean + std * noise) with the noise of a standard Normal
    th.manual_seed(1)
    mean, std = dist.normal(params)
    assert th.allclose(sample, th.tanh(mean + std * th.randn(1000, 2)))
    (sample * th.randn(1000, 2)).sum().backward()
    assert params.grad is not None and th.isfinite(params.grad).all()
    assert (params.grad[:, :2] != 0).all() and (params.grad[:, 2:] != 0).all()  # to the mean and to the std


def test_action_forms_and_exploration():
    categorical, tanh_normal = CategoricalAction(4), TanhNormalAction((2, 3), min_std=0.1, init_std=0.0)
    logits = th.randn(5, 4)
    assert th.equal(categorical.from_vector(categorical.to_vector(th.tensor([0, 3, 1]))), th.tensor([0, 3, 1]))
    one_hot = categorical.mode(logits)
    expected = th.distributions.OneHotCategorical(logits=logits)
    assert th.allclose(categorical.log_prob(logits, one_hot), expected.log_prob(one_hot), atol=1e-6)
    assert th.allclose(categorical.entropy(logits, one_hot), expected.entropy(), atol=1e-6)

    actions = 2 * th.rand(5, 2, 3) - 1  # policy actions of a Box of shape (2, 3)
    vectors = tanh_normal.to_vector(actions)
    assert vectors.shape == (5, 6) and th.equal(tanh_normal.from_vector(vectors), actions)
    assert tanh_normal.explore(actions, 0.0) is actions
    noisy = tanh_normal.explore(actions, 0.5)
    assert noisy.shape == actions.shape and not th.equal(noisy, actions) and (noisy.abs() <= 1).all()


def test_actor_grad_default_follows_the_action_space():
    assert pendulum_model().actor_grad == "dynamics"
    assert tiny_model().actor_grad == "reinforce"
    assert pendulum_model(actor_grad="both").actor_grad == "both"


@pytest.mark.parametrize(
    "n_envs, kwargs",
    [(1, dict()), (2, dict(actor_grad="reinforce", exploration_noise=0.3, diagnostics_interval=2))],
)
def test_trains_on_pendulum_with_actions_over_its_range(n_envs, kwargs):
    callback = RecordActions()
    model = pendulum_model(make_vec_env("Pendulum-v1", n_envs=n_envs, seed=0), **kwargs).learn(160, callback=callback)
    assert model._n_updates > 0
    assert all(th.isfinite(parameter).all() for parameter in model.policy.parameters())
    actions = np.stack(callback.actions)  # (n_steps, n_envs, 1)
    assert actions.shape == (160 // n_envs, n_envs, 1) and actions.dtype == np.float32
    assert (np.abs(actions) <= 2.0).all()
    # The actor's actions use the whole range, not just [-1, 1]
    assert (np.abs(actions[model.learning_starts // n_envs :]) > 1.0).any()


def test_replay_buffer_stores_actions_in_unit_box(trained, tmp_path):
    buffer = trained.replay_buffer
    assert buffer.actions is not None and buffer.actions.dtype == np.float32 and buffer.actions.shape == (1, 2000, 1)
    stored = buffer.actions[0, : buffer.env_pos[0]]
    assert (np.abs(stored) <= 1.0).all() and (np.abs(stored) > 0.5).any()
    # float32 observations (12 bytes), action (4), reward (4), terminated and is_first (2)
    assert buffer.nbytes_per_row == 22
    trained.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = pendulum_model()
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    np.random.seed(0)
    samples = buffer.sample(4)
    np.random.seed(0)
    loaded_samples = loaded.replay_buffer.sample(4)
    assert samples.actions.dtype == th.float32 and samples.actions.shape == (8, 4, 1)
    for tensor, loaded_tensor in zip(samples, loaded_samples, strict=True):
        assert tensor is loaded_tensor is None or th.equal(tensor, loaded_tensor)


def test_actions_rescaled_to_other_bounds():
    env = BoundsEnv()
    model = pendulum_model(env).learn(100)
    low, high = env.action_space.low, env.action_space.high
    received = np.stack(env.received)  # (100, 2): 40 random actions, then the actor's
    assert ((received >= low) & (received <= high)).all()
    assert (received[40:, 1] < -1.0).any() and (received[40:, 1] > 1.0).any()
    # The buffer holds the actions in [-1, 1], in the order they were taken (one first row per 10-step episode)
    buffer = model.replay_buffer
    stored = buffer.actions[0, : buffer.env_pos[0]][~buffer.is_first[0, : buffer.env_pos[0]]]  # type: ignore[index]
    assert (np.abs(stored) <= 1.0).all()
    np.testing.assert_allclose(low + (stored + 1.0) / 2.0 * (high - low), received, rtol=1e-5, atol=1e-4)
    # predict returns the mode in [-1, 1] rescaled to the bounds; the state holds it in [-1, 1]
    action, state = model.predict(np.zeros(2, np.float32), deterministic=True)
    assert action.shape == (2,) and state[2].shape == (1, 2) and (np.abs(state[2]) <= 1.0).all()
    np.testing.assert_allclose(action, low + (state[2][0] + 1.0) / 2.0 * (high - low), rtol=1e-6)


def test_save_load_identical_predictions_and_continue(trained, tmp_path):
    trained.save(tmp_path / "model.zip")
    loaded = DreamerV2.load(tmp_path / "model.zip", env=make_vec_env("Pendulum-v1", n_envs=1))
    assert loaded.actor_grad == "dynamics" and isinstance(loaded.policy.action_dist, TanhNormalAction)
    assert_same_weights(trained, loaded)
    obs = np.stack([gym.make("Pendulum-v1").reset(seed=s)[0] for s in range(3)])
    for actions in assert_same_predictions(trained, loaded, obs, n_steps=5):
        assert actions.shape == (3, 1) and (np.abs(actions) <= 2.0).all()
    loaded.learn(60)
    assert loaded._n_updates > 0


def test_evaluate_policy_and_diagnostics(trained):
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=1, env_kwargs=dict(max_episode_steps=20))
    for deterministic in (True, False):
        mean_reward, std_reward = evaluate_policy(trained, env, n_eval_episodes=2, deterministic=deterministic)
        assert np.isfinite(mean_reward) and std_reward >= 0
    # Open-loop predictions read the replayed continuous actions
    prediction = open_loop_prediction(trained.policy.world_model, trained.replay_buffer.sample(4), 2, 3)
    assert prediction.predictions.shape == prediction.observations.shape == (8, 2, 3)
    high = th.as_tensor(trained.observation_space.high)
    assert th.isfinite(prediction.predictions).all() and (prediction.predictions.abs() <= high).all()
    assert (prediction.predictions < 0).any()  # clipped to the observation bounds, not to [0, 1]


@pytest.mark.parametrize(
    "action_space, match",
    [
        (spaces.MultiDiscrete([2, 3]), r"Discrete action spaces and Box action spaces .* got action space MultiDiscrete"),
        (spaces.Dict({"a": spaces.Discrete(2)}), r"got action space Dict"),
        (spaces.Box(-np.inf, np.inf, (2,), np.float32), r"finite bounds .* got action space Box\(-inf, inf"),
        (spaces.Box(np.array([0.0, 1.0], np.float32), np.array([1.0, 1.0], np.float32)), r"low < high.* high=\[1. 1.\]"),
        (spaces.Box(-2, 2, (1,), np.int64), r"Box action spaces of floats only, .* dtype int64"),
    ],
)
def test_unsupported_action_spaces(action_space, match):
    env = gym.wrappers.TransformAction(gym.make("Pendulum-v1"), lambda action: action, action_space)
    with pytest.raises(ValueError, match=match):
        DreamerV2("MlpPolicy", env, policy_kwargs=TINY_POLICY)


def test_packaged_pendulum_entry():
    with open(PACKAGED_YAML) as file:
        entry = yaml.safe_load(file)["Pendulum-v1"]
    assert (entry.pop("n_timesteps"), entry.pop("policy"), entry.pop("n_envs")) == (2e4, "MlpPolicy", 1)
    policy_kwargs = eval(entry.pop("policy_kwargs"))
    model = DreamerV2("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs, **entry)
    assert model.actor_grad == "dynamics" and (model.batch_size, model.sequence_length) == (16, 50)
    assert model.policy.world_model.encoder.net[0].out_features == 128
    assert model.policy.world_model.rssm.deter_size == 128


def test_zoo_trains_pendulum(tmp_path):
    """
    The packaged entry through ``python -m rl_zoo3.train``, with tiny sizes and every DreamerV3-style option given
    through ``--hyperparams`` (those of the policy in its ``policy_kwargs``).
    """
    tiny = [arg for arg in ZOO_TINY if not arg.startswith("policy_kwargs:")]
    v3_policy = {**TINY_POLICY, "symlog_observations": True, "symlog_twohot": True, "unimix": 0.01}
    policy_kwargs = f"policy_kwargs:dict({','.join(f'{name}={value}' for name, value in v3_policy.items())})"
    args = ["-m", "rl_zoo3.train", "--algo", "dreamerv2", "--env", "Pendulum-v1", "-n", "200", "--seed", "1"]
    run([*args, "--hyperparams", *tiny, policy_kwargs, "free_bits:1.0", "normalize_returns:True"], tmp_path)
    path = tmp_path / "logs" / "dreamerv2" / "Pendulum-v1_1"
    with open(path / "Pendulum-v1" / "config.yml") as file:
        config = dict(yaml.load(file, Loader=yaml.UnsafeLoader))
    assert config["actor_grad"] == "dynamics" and config["imagination_horizon"] == 3 and config["free_nats"] == 1.0
    model = DreamerV2.load(path / "Pendulum-v1.zip")
    assert model.num_timesteps >= 200 and model._n_updates > 0 and model.policy.mlp_units == TINY_POLICY["mlp_units"]
    assert (model.free_bits, model.normalize_returns) == (1.0, True) and model.return_scale.range_ema > 0
    policy = model.policy
    assert (policy.symlog_observations, policy.symlog_twohot, policy.unimix) == (True, True, 0.01)
