"""DreamerV3: the SB3 contract at tiny sizes, and each of its pieces against its formula."""

import functools
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from conftest import TINY, assert_return_scale_divides_the_actor_loss, assert_same_predictions, assert_same_weights, run
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_dreamer import DreamerV3, NonFiniteError
from sb3_dreamer.common.buffers import SequenceSamples
from sb3_dreamer.dreamerv3.dreamerv3 import replay_returns
from sb3_dreamer.dreamerv3.policies import MODEL_SIZES, OPTIMIZER_GROUPS
from sb3_dreamer.world_model.block_rssm import BlockRSSM
from sb3_dreamer.world_model.distributions import BoundedNormalAction, SymexpTwoHot, balanced_kl_loss
from sb3_dreamer.world_model.layers import BlockLinear, RMSNorm
from sb3_dreamer.world_model.rssm import LatentState
from sb3_dreamer.world_model.symlog import symexp, two_hot

TINY_V3_POLICY = dict(deter_size=32, units=16, class_size=4, cnn_depth=2, stoch_size=4, blocks=4, bins=15)
#: DreamerV2's tiny schedule (conftest.TINY) with DreamerV3's tiny networks
TINY_V3 = {**TINY, "policy_kwargs": TINY_V3_POLICY}


def tiny_v3(env="Breakout-MinAtar", policy="CnnPolicy", **kwargs) -> DreamerV3:
    return DreamerV3(policy, env, **{**TINY_V3, **kwargs})


@pytest.mark.parametrize(
    ("env_id", "policy"), [("Breakout-MinAtar", "CnnPolicy"), ("CartPole-v1", "MlpPolicy"), ("Pendulum-v1", "MlpPolicy")]
)
def test_learn_predict_save_load(env_id: str, policy: str, tmp_path: Path) -> None:
    model = tiny_v3(env_id, policy).learn(120)
    assert model._n_updates > 0
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    path = tmp_path / "model.zip"
    model.save(path)
    # An env id, as the constructor takes
    loaded = DreamerV3.load(path, env=env_id, device="cpu")
    assert loaded.env.num_envs == 1 and loaded.observation_space == model.observation_space
    assert_same_weights(model, loaded)
    assert loaded.policy.optimizer.state_dict()["state"].keys() == model.policy.optimizer.state_dict()["state"].keys()
    observations = np.stack([model.env.observation_space.sample() for _ in range(2)])
    actions = assert_same_predictions(model, loaded, observations, n_steps=3)
    assert all(model.action_space.contains(action) for action in actions[0])
    mean_reward, _ = evaluate_policy(loaded, gym.make(env_id, max_episode_steps=50), n_eval_episodes=2)
    assert math.isfinite(mean_reward)


def test_checkpoint_resumes_bit_exactly(tmp_path: Path) -> None:
    # Multiples of train_freq: a learn() call collects whole rollouts
    uninterrupted = tiny_v3().learn(192)
    model = tiny_v3().learn(128)
    model.save_checkpoint(tmp_path / "checkpoint")
    resumed = DreamerV3.load_checkpoint(tmp_path / "checkpoint", device="cpu")
    resumed.learn(64, reset_num_timesteps=False)
    assert resumed.num_timesteps == uninterrupted.num_timesteps == 192
    assert resumed._n_updates == uninterrupted._n_updates
    assert_same_weights(resumed, uninterrupted)
    assert th.equal(resumed.return_scale.range_ema, uninterrupted.return_scale.range_ema)


def test_replay_buffer_round_trip(tmp_path: Path) -> None:
    model = tiny_v3().learn(60)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    other = tiny_v3()
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    assert other.replay_buffer.size() == model.replay_buffer.size()
    # The same draws give the same windows, with their stored model states
    draws = []
    for buffer in (model.replay_buffer, other.replay_buffer):
        np.random.seed(0)
        draws.append(buffer.sample(4))
    saved, loaded = draws
    assert saved.start is not None and loaded.start is not None
    names = (*SequenceSamples._fields[:-1], "start.deter", "start.stoch")
    pairs = zip(names, (*saved[:-1], *saved.start), (*loaded[:-1], *loaded.start), strict=True)
    for name, saved_tensor, loaded_tensor in pairs:
        assert th.equal(saved_tensor, loaded_tensor), name


def test_model_sizes_follow_the_official_presets() -> None:
    """size12m: a block GRU of 2048 in 8 blocks, 32 x 16 latents, MLPs of 256 units, conv channels 32, 48, 64, 64."""
    policy = tiny_v3(policy_kwargs=dict(model_size="size12m")).policy
    assert MODEL_SIZES["size1m"] == dict(deter_size=512, units=64, class_size=4, cnn_depth=4)
    rssm = policy.rssm
    assert (rssm.deter_size, rssm.stoch_dim, rssm.blocks) == (2048, 32 * 16, 8)
    assert policy.world_model.encoder.channels[1:] == [32, 48, 64, 64]
    assert policy.actor.deter_in.out_features == 256
    # Explicit sizes win over the preset
    assert tiny_v3(policy_kwargs=dict(model_size="size12m", deter_size=64, blocks=8)).policy.rssm.deter_size == 64


def test_cnn_min_resolution_keeps_minatar_frames_unpooled(tmp_path: Path) -> None:
    """The official ``minres`` 4 pools MinAtar's 10 x 10 frames to 5 x 5; 10 keeps every stage at 10 x 10, saved too."""
    pooled = tiny_v3().policy.world_model
    assert pooled.encoder.pooled == [True, False, False, False] and pooled.encoder.sizes[-1] == (5, 5)
    model = tiny_v3(policy_kwargs=dict(TINY_V3_POLICY, cnn_min_resolution=10))
    world_model = model.policy.world_model
    assert world_model.encoder.pooled == [False] * 4 and world_model.encoder.sizes[-1] == (10, 10)
    assert world_model.encoder.output_dim == 4 * pooled.encoder.output_dim
    model.learn(120)
    with th.no_grad():
        state = model.policy.rssm.initial_state(3, model.device)
        assert world_model.decode(state).shape == (3, *model.observation_space.shape)
    model.save(tmp_path / "model.zip")
    loaded = DreamerV3.load(tmp_path / "model.zip", device="cpu")
    assert loaded.policy.cnn_min_resolution == 10 and loaded.policy.world_model.encoder.sizes[-1] == (10, 10)
    assert_same_weights(model, loaded)


def test_every_packaged_zoo_entry_builds_its_model() -> None:
    """
    ``dreamerv3.yml``: one setting for the ten MinAtar ids, with the Bernoulli likelihood of their binary frames, which
    the MiniGrid ids share; Pendulum-v1's vector decoder keeps the squared error of symlog(obs).
    """
    from rl_zoo3.utils import get_wrapper_class

    from sb3_dreamer.benchmark.update_settings import minatar_settings
    from sb3_dreamer.zoo import HYPERPARAMS_DIR

    with open(HYPERPARAMS_DIR / "dreamerv3.yml") as file:
        entries = yaml.safe_load(file)
    settings_by_id = {env_id: minatar_settings("dreamerv3", env_id) for env_id in entries}
    minatar = [settings for env_id, settings in settings_by_id.items() if env_id.endswith("-MinAtar")]
    assert len(minatar) == 10 and all(settings == minatar[0] for settings in minatar)
    likelihoods = {}
    for env_id, entry in entries.items():
        settings = dict(settings_by_id[env_id])
        env = gym.make(env_id, **settings.pop("env_kwargs", {}))
        wrapper = get_wrapper_class({"env_wrapper": settings.pop("env_wrapper", None)})
        model = DreamerV3(entry["policy"], wrapper(env) if wrapper else env, **settings)
        likelihoods[env_id] = model.policy.world_model.image_likelihood
    assert likelihoods == {env_id: "mse" if env_id == "Pendulum-v1" else "bernoulli" for env_id in entries}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(policy_kwargs=dict(model_size="size3m")), "model_size"),
        (dict(policy_kwargs=dict(TINY_V3_POLICY, deter_size=30)), "multiple of blocks"),
        (dict(policy_kwargs=dict(TINY_V3_POLICY, bins=16)), "bins"),
        (dict(policy_kwargs=dict(TINY_V3_POLICY, cnn_min_resolution=0)), "cnn_min_resolution"),
        (dict(policy_kwargs=dict(TINY_V3_POLICY, actor_unimix=1.0)), "actor_unimix"),
        (dict(policy_kwargs=dict(TINY_V3_POLICY, actor_min_std=2.0)), "actor_min_std"),
        (dict(policy_kwargs=dict(TINY_V3_POLICY, image_likelihood="laplace")), "image_likelihood"),
        (
            dict(policy="MlpPolicy", env="CartPole-v1", policy_kwargs=dict(TINY_V3_POLICY, image_likelihood="bernoulli")),
            "symlog",
        ),
        (dict(gamma=1.5), "gamma"),
        (dict(slow_critic_rate=-0.1), "slow_critic_rate"),
        (dict(replay_critic_scale=-1.0), "replay_critic_scale"),
        (dict(dynamics_scale=0.0, representation_scale=0.0), "dynamics_scale"),
        (dict(imagination_horizon=0), "imagination_horizon"),
        (dict(learning_starts=4), "learning_starts"),
        (dict(replay_context=-1), "replay_context"),
        (dict(compile_losses="yes"), "compile_losses"),
        (dict(actor_learning_rate=-1e-4), "actor_learning_rate"),
        (dict(critic_learning_rate=lambda progress: progress - 1.0), "critic_learning_rate"),
        (dict(policy_kwargs=dict(TINY_V3_POLICY, separate_learning_rates=1)), "separate_learning_rates"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_v3(**kwargs)


def test_symexp_two_hot_bins_prediction_and_loss() -> None:
    dist = SymexpTwoHot(255)
    bins = dist.bins
    # symexp of 255 points evenly spaced over [-20, 20], symmetric around an exact 0
    exact = symexp(th.linspace(-20.0, 20.0, 255, dtype=th.float64))
    assert th.allclose(bins.double(), exact, rtol=1e-5)
    assert bins[127] == 0.0 and th.equal(bins, -bins.flip(0))
    # Zero-initialised logits (uniform probabilities) predict exactly 0, as the official symmetric sum does
    assert dist.predict(th.zeros(3, 255)).eq(0.0).all()
    # Round trip: the log of a two-hot encoding predicts its value; the raw target is interpolated between its bins
    targets = th.tensor([0.0, 0.3, -1.7, 12.5, -250.0, 3e4])
    encoding = two_hot(targets, bins)
    assert th.allclose(dist.predict(encoding.clamp(min=1e-30).log()), targets, rtol=1e-4, atol=1e-5)
    # The cross-entropy is smallest at the target's own encoding
    logits = th.randn(len(targets), 255, requires_grad=True)
    loss = dist.loss(logits, targets)
    expected = -(encoding * logits.log_softmax(-1)).sum(-1)
    assert th.allclose(loss, expected)


def test_bounded_normal_actor() -> None:
    dist = BoundedNormalAction((2,), min_std=0.1, max_std=1.0)
    params = th.tensor([[0.0, 100.0, -100.0, 0.0]])
    mean, std = dist.normal(params)
    assert th.allclose(mean, th.tanh(params[:, :2]))
    assert th.allclose(std, 0.9 * th.sigmoid(params[:, 2:] + 2.0) + 0.1)
    assert 0.1 <= std.min() and std.max() <= 1.0
    normal = th.distributions.Normal(mean, std)
    actions = th.tensor([[0.5, 3.0]])
    assert th.allclose(dist.log_prob(params, actions), normal.log_prob(actions).sum(-1))
    assert th.allclose(dist.entropy(params, actions), normal.entropy().sum(-1))
    # Policy actions are clipped to [-1, 1]; the imagined action vectors are not
    assert dist.from_vector(actions).tolist() == [[0.5, 1.0]]


def test_kl_loss_is_dynamics_plus_representation_with_free_bits() -> None:
    """1.0 * max(1, KL[sg(q) || p]) + 0.1 * max(1, KL[q || sg(p)]), the KL summed over the latents of each state."""
    model = tiny_v3()
    config = model.world_model_loss_config
    latent = model.policy.rssm.latent
    th.manual_seed(0)
    posterior = latent.stats_from_output(3 * th.randn(6, latent.stats_dim, requires_grad=True))
    prior = latent.stats_from_output(th.randn(6, latent.stats_dim, requires_grad=True))
    loss, _ = balanced_kl_loss(latent, posterior, prior, config.kl_balance, config.free_nats, config.free_bits)
    kl = latent.kl(posterior, prior)
    expected = kl.clamp(min=1.0).mean() * (1.0 + 0.1)
    assert th.allclose(config.kl_scale * loss, expected, rtol=1e-6)
    # The gradient of the prior is the dynamics term's: 1.0 of d(clamped KL)/d(prior)
    (prior_grad,) = th.autograd.grad(config.kl_scale * loss, prior, retain_graph=True)
    (expected_grad,) = th.autograd.grad(kl.clamp(min=1.0).mean(), prior)
    assert th.allclose(prior_grad, expected_grad, atol=1e-6)


def test_continue_head_learns_the_discount() -> None:
    model = tiny_v3().learn(60)
    config = model.world_model_loss_config
    assert config.continue_discount == pytest.approx(1 - 1 / 333)
    samples = model.replay_buffer.sample(4)
    samples = samples._replace(terminated=th.zeros_like(samples.terminated).index_fill_(0, th.tensor([2]), 1.0))
    world_model = model.policy.world_model
    _, metrics, posterior = world_model.loss(samples, config)
    logits = world_model.discount_head(posterior).squeeze(-1)
    targets = (1 - 1 / 333) * (1.0 - samples.terminated.flatten())
    expected = th.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert th.allclose(metrics["discount_loss"], expected.detach())


def test_replay_returns_follow_the_recursion() -> None:
    rng = np.random.default_rng(0)
    rewards, bootstrap = (th.tensor(rng.normal(size=(6, 2)), dtype=th.float32) for _ in range(2))
    terminated = th.zeros(6, 2)
    terminated[3, 0] = 1.0
    last = terminated.clone()
    last[1, 1] = 1.0
    gamma, lambda_ = 0.99, 0.9
    returns = replay_returns(rewards, terminated, last, bootstrap, gamma, lambda_)
    expected = th.zeros(5, 2)
    following = bootstrap[5]
    for t in reversed(range(5)):
        live, cont = gamma * (1 - terminated[t + 1]), lambda_ * (1 - last[t + 1])
        following = rewards[t + 1] + live * ((1 - cont) * bootstrap[t + 1] + cont * following)
        expected[t] = following
    assert th.allclose(returns, expected, atol=1e-6)


def test_block_gru_matches_the_official_kernel_layout() -> None:
    """The hidden layer on [h_g, x] per group, the gates split within each group, h' = u c + (1 - u) h."""
    th.manual_seed(0)
    deter, hidden, blocks = 16, 8, 4
    rssm = BlockRSSM(
        action_dim=3, embedding_dim=5, deter_size=deter, stoch_size=2, class_size=3, hidden_size=hidden, blocks=blocks
    )
    with th.no_grad():
        for parameter in rssm.parameters():
            parameter.normal_()
    state = LatentState(th.randn(2, deter), th.nn.functional.one_hot(th.randint(0, 3, (2, 2)), 3).float().flatten(1))
    action = th.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    new_deter = rssm._recurrent(state, rssm.embed_action(action))

    def silu_norm(module: th.nn.Module, x: th.Tensor) -> th.Tensor:
        return th.nn.functional.silu(module[0](x))

    x0 = rssm.deter_in(state.deter)
    x1 = silu_norm(rssm.stoch_norm, rssm.stoch_in(state.stoch))
    x2 = rssm.action_in(action / action.abs().clamp(min=1.0))
    inputs = th.cat([x0, x1, x2], -1)
    # The official kernel (groups, deter / groups + 3 hidden, deter / groups) on cat(h_g, x) for each group g
    group = deter // blocks
    w_inputs = rssm.hidden_from_inputs.weight.t().reshape(3 * hidden, blocks, group)
    kernel = th.cat([rssm.hidden_from_deter.weight, w_inputs.permute(1, 0, 2)], dim=1)
    grouped = th.cat([state.deter.view(2, blocks, group), inputs[:, None].expand(2, blocks, 3 * hidden)], -1)
    hidden_out = th.einsum("ngi,gio->ngo", grouped, kernel).flatten(1) + rssm.hidden_from_deter.bias
    y = silu_norm(rssm.hidden_norm, hidden_out)
    gates = th.einsum("ngi,gio->ngo", y.view(2, blocks, group), rssm.gates.weight).flatten(1) + rssm.gates.bias
    reset, candidate, update = gates.view(2, blocks, 3, group).unbind(2)
    candidate = th.tanh(th.sigmoid(reset) * candidate).flatten(1)
    update = th.sigmoid(update - 1).flatten(1)
    assert th.allclose(new_deter, update * candidate + (1 - update) * state.deter, atol=1e-5)


def test_layers_rms_norm_and_block_linear() -> None:
    norm = RMSNorm(6)
    x = th.randn(4, 6, dtype=th.bfloat16)
    out = norm(x)
    assert out.dtype == th.bfloat16
    expected = x.float() * th.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-4)
    assert th.allclose(out.float(), expected, atol=2e-2)
    block = BlockLinear(8, 12, 4)
    inputs = th.randn(5, 8)
    expected = th.cat([inputs[:, 2 * g : 2 * g + 2] @ block.weight[g] for g in range(4)], -1) + block.bias
    assert th.allclose(block(inputs), expected, atol=1e-6)
    assert th.allclose(block(inputs[None]), expected[None], atol=1e-6)


def test_one_gradient_step_trains_everything_and_moves_the_slow_critic_by_its_rate() -> None:
    model = tiny_v3().learn(60)
    policy = model.policy
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    slow_before = [p.detach().clone() for p in policy.critic_target.parameters()]
    model.train(gradient_steps=1, batch_size=4)
    for name, parameter in policy.named_parameters():
        if name.startswith("critic_target"):
            continue
        assert not th.equal(parameter, before[name]), f"{name} was not updated"
    for slow, old, critic in zip(policy.critic_target.parameters(), slow_before, policy.critic.parameters(), strict=True):
        assert th.allclose(slow, 0.98 * old + 0.02 * critic, atol=1e-7)


def test_separate_learning_rates_train_each_network_at_its_rate(tmp_path: Path) -> None:
    # One group by default, as the official code's one optimizer; a group per network given either rate
    assert [set(group) & {"name"} for group in tiny_v3().policy.optimizer.param_groups] == [set()]
    model = tiny_v3(actor_learning_rate=0.0, critic_learning_rate=lambda progress: 1e-3 + 1e-3 * progress).learn(48)
    optimizer = model.policy.optimizer
    assert [group["name"] for group in optimizer.param_groups] == list(OPTIMIZER_GROUPS)
    assert [group["lr"] for group in optimizer.param_groups] == [model.learning_rate, 0.0, 1e-3]
    model._current_progress_remaining = 0.5
    model._update_schedules()
    assert [group["lr"] for group in optimizer.param_groups] == [model.learning_rate, 0.0, 1.5e-3]
    # A rate of 0 leaves its network as it was, while the others train
    policy = model.policy
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    model.train(gradient_steps=2, batch_size=4)
    for name, parameter in policy.named_parameters():
        if not name.startswith("critic_target"):
            assert th.equal(parameter, before[name]) == name.startswith("actor."), name
    # Saved and loaded with its groups and their rates
    model.save(tmp_path / "model.zip")
    loaded = DreamerV3.load(tmp_path / "model.zip", device="cpu")
    assert loaded.policy.optimizer.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    # The groups change no parameter's update: equal rates train the weights of the one group bit for bit
    one_group = tiny_v3(learning_rate=1e-3).learn(64)
    three_groups = tiny_v3(learning_rate=1e-3, actor_learning_rate=1e-3).learn(64)
    assert len(three_groups.policy.optimizer.param_groups) == 3
    assert_same_weights(one_group, three_groups)


def test_gradient_paths() -> None:
    """
    The actor's loss reaches the actor only, the critic's the critic only; the replay value loss reaches the world model
    through the states.
    """
    model = tiny_v3().learn(60)
    policy = model.policy
    samples = model.replay_buffer.sample(4)
    _, _, posterior = policy.world_model.loss(samples, model.world_model_loss_config)
    actor_loss, critic_loss, returns, _ = model._actor_critic_losses(posterior, model.actor_entropy_scale)
    world_model_parameters = list(policy.world_model.parameters())
    actor_grads = th.autograd.grad(
        actor_loss, world_model_parameters + list(policy.critic.parameters()), allow_unused=True, retain_graph=True
    )
    assert all(grad is None or not grad.any() for grad in actor_grads)
    actor_own = th.autograd.grad(actor_loss, list(policy.actor.parameters()), retain_graph=True)
    assert any(grad.any() for grad in actor_own)
    critic_grads = th.autograd.grad(
        critic_loss, world_model_parameters + list(policy.actor.parameters()), allow_unused=True, retain_graph=True
    )
    assert all(grad is None or not grad.any() for grad in critic_grads)
    bootstrap = returns[0].detach().view(samples.rewards.shape)
    replay_loss = model._replay_critic_loss(posterior, samples, bootstrap)
    encoder_grads = th.autograd.grad(replay_loss, list(policy.world_model.encoder.parameters()))
    assert any(grad.abs().sum() > 0 for grad in encoder_grads)


def test_advantages_are_scaled_by_the_return_percentile_range() -> None:
    model = tiny_v3().learn(60)
    samples = model.replay_buffer.sample(4)
    _, _, posterior = model.policy.world_model.loss(samples, model.world_model_loss_config)
    before = model.return_scale.range_ema.clone()
    _, _, returns, metrics = model._actor_critic_losses(posterior, model.actor_entropy_scale)
    low, high = th.quantile(returns.detach().flatten(), th.tensor([0.05, 0.95]))
    assert th.allclose(model.return_scale.range_ema, 0.99 * before + 0.01 * (high - low), atol=1e-6)
    assert metrics["return_scale"] == max(1.0, model.return_scale.range_ema.item())

    def actor_critic_losses() -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        actor_loss, critic_loss, _, metrics = model._actor_critic_losses(posterior, 0.0)
        return actor_loss, critic_loss, metrics

    assert_return_scale_divides_the_actor_loss(model.return_scale, actor_critic_losses)


def test_non_finite_reward_stops_training_with_a_recovery_checkpoint(tmp_path: Path) -> None:
    class NanReward(gym.Wrapper):
        def step(self, action):
            observation, _, terminated, truncated, info = self.env.step(action)
            return observation, float("nan"), terminated, truncated, info

    env = NanReward(gym.make("CartPole-v1"))
    model = tiny_v3(env, "MlpPolicy", recovery_dir=str(tmp_path / "recovery"))
    with pytest.raises(NonFiniteError, match=r"DreamerV3\.load_checkpoint") as error:
        model.learn(50)
    assert error.value.quantities == ("reward",)
    assert DreamerV3.load_checkpoint(error.value.checkpoint, gym.make("CartPole-v1")).num_timesteps == 1


def test_mixed_precision_gradient_steps_stay_finite() -> None:
    model = tiny_v3(mixed_precision=True).learn(80)
    assert model.bfloat16_autocast
    assert all(th.isfinite(p).all() for p in model.policy.parameters())


@pytest.mark.slow
def test_zoo_train_and_optimize(tmp_path: Path) -> None:
    """``rl_zoo3.train --algo dreamerv3``, with updates, and ``-optimize`` (enjoy runs in the documentation's tests)."""
    tiny = (
        "learning_starts:40",
        "batch_size:4",
        "sequence_length:8",
        "train_freq:16",
        "imagination_horizon:3",
        "buffer_size:2000",
        f"policy_kwargs:dict({', '.join(f'{k}={v}' for k, v in TINY_V3_POLICY.items())})",
    )
    common = ("--algo", "dreamerv3", "--env", "Breakout-MinAtar", "--env-kwargs", "max_episode_steps:100")
    train = ["-m", "rl_zoo3.train", *common, "-n", "192", "--eval-freq", "96", "--eval-episodes", "1"]
    run([*train, "--hyperparams", *tiny], tmp_path)
    model = DreamerV3.load(tmp_path / "logs" / "dreamerv3" / "Breakout-MinAtar_1" / "Breakout-MinAtar.zip")
    assert model.num_timesteps == 192 and model._n_updates > 0
    optimize = ["-optimize", "--n-trials", "2", "--n-jobs", "1", "--sampler", "random", "--pruner", "none"]
    optimize += ["--n-evaluations", "1", "--eval-episodes", "1", "-f", "opt_logs"]
    run(["-m", "rl_zoo3.train", *common, "-n", "96", *optimize, "--hyperparams", *tiny], tmp_path)
    assert list((tmp_path / "opt_logs" / "dreamerv3").rglob("report_*.csv")), "the study wrote no report"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_benchmark_grid_runs_dreamerv3(tmp_path: Path) -> None:
    """``python -m sb3_dreamer.benchmark --algos dreamerv3``: the packaged file, a checkpoint, the final score, the report."""
    from test_benchmark import benchmark

    benchmark(tmp_path, "--quick", "--algos", "dreamerv3", "--envs", "Breakout-MinAtar", "--seeds", "0", "--frames", "192")
    run_dir = tmp_path / "runs" / "dreamerv3" / "Breakout-MinAtar" / "seed_0"
    assert (run_dir / "checkpoint" / "checkpoint.pkl").is_file()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["frames"] == 192 and info["final_episodes"] == 5
    assert "| dreamerv3 | Breakout-MinAtar |" in (tmp_path / "results.md").read_text()


def test_transposed_softmax_equals_the_plain_one_within_rounding() -> None:
    """DreamerV3's latents (fewer than 16 classes) take the softmaxes along a transposed view: the same distributions."""
    from sb3_dreamer.world_model.distributions import CategoricalLatent

    th.manual_seed(0)
    stats = 3 * th.randn(64, 32 * 4)
    plain, transposed = CategoricalLatent(32, 4, 0.01), CategoricalLatent(32, 4, 0.01, transposed_softmax=True)
    mixed = plain.stats_from_output(stats)
    assert th.allclose(transposed.stats_from_output(stats), mixed, atol=1e-6)
    assert th.allclose(transposed.kl(mixed, mixed.flip(0)), plain.kl(mixed, mixed.flip(0)), atol=1e-5)
    assert th.allclose(transposed.entropy(mixed), plain.entropy(mixed), atol=1e-5)
    th.manual_seed(1)
    index = transposed.sample_index(mixed)
    th.manual_seed(1)
    assert th.equal(index, plain.sample_index(mixed))
    assert tiny_v3(policy_kwargs=dict(TINY_V3_POLICY, class_size=4)).policy.rssm.latent.transposed_softmax
    assert not tiny_v3(policy_kwargs=dict(TINY_V3_POLICY, class_size=16)).policy.rssm.latent.transposed_softmax


def test_compiled_losses_equal_the_eager_ones_and_compile_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    ``compile_losses=True`` captures the losses in whole graphs, once: the training progress that changes the entropy
    scale at every update compiles nothing again, and the weights after the updates equal the eager model's within
    float32 rounding. The ``aot_eager`` backend runs the captured forward and backward graphs without generating code
    (inductor's code generation takes minutes).
    """
    monkeypatch.setattr(th, "compile", functools.partial(th.compile, backend="aot_eager"))
    th._dynamo.reset()
    counters = th._dynamo.utils.counters
    counters.clear()
    # Short windows and horizon keep the traced graphs small; the entropy scale takes a new value at every update
    settings = dict(sequence_length=4, imagination_horizon=2, actor_entropy_scale=lambda progress: 1e-2 * progress)
    eager = tiny_v3(**settings).learn(96)
    compiled = tiny_v3(compile_losses=True, **settings).learn(64)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    compiled.learn(32, reset_num_timesteps=False)
    assert counters["stats"]["unique_graphs"] == 1
    assert compiled._n_updates == eager._n_updates > 4
    for (name, parameter), other in zip(compiled.policy.named_parameters(), eager.policy.parameters(), strict=True):
        assert th.allclose(parameter, other, rtol=1e-4, atol=1e-6), name
    # Saved without the compiled function, which loading builds again
    compiled.save(tmp_path / "model.zip")
    loaded = DreamerV3.load(tmp_path / "model.zip", device="cpu")
    assert loaded.compile_losses and loaded._loss_function != loaded._losses


def test_online_queue_trains_on_every_fresh_window() -> None:
    """
    With ``replay_buffer_kwargs=dict(online=True)`` the first update starts with the stream's first window, and every
    window that tiles the stream and left the queue was replayed (the queue keeps those completed since the last update).
    """
    model = tiny_v3(replay_buffer_kwargs=dict(online=True))
    buffer = model.replay_buffer
    batches = []
    sample = buffer.sample

    def recording_sample(*args, **kwargs):
        samples = sample(*args, **kwargs)
        batches.append(buffer.last_batch_inds.copy())
        return samples

    buffer.sample = recording_sample  # type: ignore[method-assign]
    model.learn(96)
    window_length = buffer.window_length
    assert buffer.online and window_length == model.sequence_length + model.replay_context
    assert batches[0][:, 0].tolist() == list(range(window_length))
    replayed_starts = {int(batch[0, column]) for batch in batches for column in range(batch.shape[1])}
    served = set(range(0, int(buffer._online_next[0]), window_length)) - {start for _, start in buffer._online_queue}
    assert len(served) > 4 and served <= replayed_starts
