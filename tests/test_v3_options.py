"""DreamerV3-style options (all off by default): symlog, two-hot heads, return scale, free bits, unimix."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import (
    TINY_POLICY,
    assert_return_scale_divides_the_actor_loss,
    assert_same_predictions,
    assert_same_weights,
    tiny_model,
)
from stable_baselines3.common.env_util import make_vec_env

from sb3_dreamer import DreamerV2
from sb3_dreamer.world_model.distributions import (
    CategoricalAction,
    CategoricalLatent,
    NormalScalar,
    SymlogTwoHot,
    balanced_kl_loss,
    straight_through_one_hot,
)
from sb3_dreamer.world_model.returns import ReturnScale
from sb3_dreamer.world_model.rssm import LatentState
from sb3_dreamer.world_model.symlog import symexp, symlog, two_hot, two_hot_mean

#: Every policy option on (DreamerV3's values), on top of the tiny sizes
V3_POLICY = {**TINY_POLICY, "symlog_twohot": True, "unimix": 0.01}
#: Every algorithm option on (DreamerV3's values)
V3 = dict(free_bits=1.0, normalize_returns=True)


def test_symlog_symexp_hand_values_and_inverse():
    x = th.tensor([0.0, 1.0, -1.0, math.e - 1.0, -(math.e**2 - 1.0)])
    assert th.allclose(symlog(x), th.tensor([0.0, math.log(2.0), -math.log(2.0), 1.0, -2.0]))
    assert th.allclose(symexp(th.tensor([0.0, 1.0, -2.0])), th.tensor([0.0, math.e - 1.0, -(math.e**2 - 1.0)]))
    values = th.tensor([-1e6, -1234.5, -3.0, -1e-3, 0.0, 2e-4, 0.7, 42.0, 1e6])
    assert th.allclose(symexp(symlog(values)), values, rtol=1e-5, atol=1e-7)
    y = th.linspace(-15.0, 15.0, 61)
    assert th.allclose(symlog(symexp(y)), y, atol=1e-5)


def test_two_hot_interpolates_between_neighbouring_bins():
    bins = th.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])
    weights = two_hot(th.tensor([-1.5, 0.25, 2.0]), bins)
    expected = th.tensor([[0.5, 0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.75, 0.25, 0.0], [0.0, 0.0, 0.0, 0.5, 0.5]])
    assert th.equal(weights, expected)
    # On a bin: one-hot; beyond the range: the end bin
    assert th.equal(two_hot(bins, bins), th.eye(5))
    assert th.equal(two_hot(th.tensor([-7.0, 1e9]), bins), th.eye(5)[[0, 4]])
    # DreamerV3's bins: two neighbouring weights that sum to 1 and interpolate the value, for any batch shape
    bins = SymlogTwoHot().bins
    values = 25 * th.rand(3, 100) - 12.5
    weights = two_hot(values, bins)
    assert weights.shape == (3, 100, 255)
    assert th.allclose(weights.sum(-1), th.ones(3, 100)) and th.allclose(weights @ bins, values, atol=1e-5)
    nonzero = weights.nonzero()[:, -1].view(3, 100, -1)  # the (at most two) bins of each value, in order
    assert ((nonzero[..., 1] - nonzero[..., 0]) == 1).all()


def test_two_hot_mean_recovers_the_encoded_value():
    bins = SymlogTwoHot().bins
    values = th.tensor([-19.5, -3.25, 0.0, 0.1, 7.0, 20.0])
    assert th.allclose(two_hot_mean(two_hot(values, bins).log(), bins), values, atol=1e-5)
    # The distribution predicts in target units and its loss is smallest at the target's own encoding
    dist = SymlogTwoHot()
    rewards = th.tensor([-1000.0, -1.0, 0.0, 0.5, 250.0])
    encoding = two_hot(symlog(rewards), dist.bins).clamp(min=1e-20).log()  # finite logits of the two-hot encoding
    assert th.allclose(dist.predict(encoding), rewards, rtol=1e-4, atol=1e-6)
    other = th.randn(5, 255)
    assert (dist.loss(encoding, rewards) < dist.loss(other, rewards)).all()
    # A zero output layer predicts 0, like the unit-variance Normal of DreamerV2 with a zero output
    assert dist.predict(th.zeros(4, 255)).abs().max() < 1e-6
    assert th.equal(NormalScalar().predict(th.zeros(4, 1)), th.zeros(4))


def test_return_scale_follows_numpy_percentiles():
    rng = np.random.default_rng(0)
    scale, expected_ema = ReturnScale(), 0.0
    # Returns of std 30 for 100 batches, then of std 0.1: the scale rises, then decays to its floor of 1
    for batch, spread in enumerate([30.0] * 100 + [0.1] * 500):
        returns = spread * rng.standard_normal((10, 30)).astype(np.float32) + 5.0
        expected_ema = 0.99 * expected_ema + 0.01 * (np.percentile(returns, 95) - np.percentile(returns, 5))
        value = scale.update(th.as_tensor(returns))
        assert value.shape == () and value.item() >= 1.0
        assert scale.range_ema.item() == pytest.approx(expected_ema, rel=1e-4)
        assert value.item() == pytest.approx(max(1.0, expected_ema), rel=1e-4)
        if batch == 99:
            assert value.item() > 50.0
    assert value.item() == 1.0 and 0.0 < scale.range_ema.item() < 1.0
    assert list(scale.state_dict()) == ["range_ema"]


def test_free_bits_clip_each_sample_below():
    latent = CategoricalLatent(stoch=2, classes=3)
    # Sample 0: posterior equal to the prior (KL 0, below 1 nat); sample 1: far apart (KL above 1 nat)
    prior = th.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0, 5.0, 0.0]])
    posterior = th.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 5.0, 5.0, 0.0, 0.0]], requires_grad=True)
    prior = prior.requires_grad_(True)
    kl = latent.kl(posterior, prior)
    assert kl[0] == 0.0 and kl[1] > 1.0
    loss, mean_kl = balanced_kl_loss(latent, posterior, prior, balance=0.8, free_nats=0.0, free_bits=1.0)
    assert mean_kl == pytest.approx(kl.mean().item())
    assert loss.item() == pytest.approx((1.0 + kl[1].item()) / 2)  # the clipped sample counts for 1 nat
    loss.backward()
    assert th.count_nonzero(posterior.grad[0]) == 0 and th.count_nonzero(prior.grad[0]) == 0
    # Above the threshold: the gradient of the balanced KL of that sample, divided by the batch size
    posterior_ref, prior_ref = (x.detach()[1:].clone().requires_grad_(True) for x in (posterior, prior))
    (latent.kl(posterior_ref, prior_ref) / 2).sum().backward()
    assert th.allclose(prior.grad[1], 0.8 * prior_ref.grad[0], atol=1e-6)
    assert th.allclose(posterior.grad[1], 0.2 * posterior_ref.grad[0], atol=1e-6)
    # DreamerV2's free nats clip the batch mean instead: its mean KL is above 1 nat, so both samples get gradients
    posterior.grad = prior.grad = None
    balanced_kl_loss(latent, posterior, prior, balance=0.8, free_nats=1.0)[0].backward()
    assert th.count_nonzero(prior.grad[0]) > 0


@pytest.mark.parametrize("extreme", [0.0, 1e4, 1e30])
def test_unimix_mixes_probabilities_and_keeps_kl_finite(extreme):
    unimix, classes = 0.01, 4
    latent = CategoricalLatent(stoch=3, classes=classes, unimix=unimix)
    raw = th.randn(5, 3 * classes) + extreme * th.tensor([1.0, -1.0, 0.0, 0.0]).repeat(3)
    stats = latent.stats_from_output(raw)
    probs = stats.exp().unflatten(-1, (3, classes))
    expected = (1 - unimix) * raw.unflatten(-1, (3, classes)).softmax(-1) + unimix / classes
    assert th.allclose(probs, expected, atol=1e-6) and th.allclose(probs.sum(-1), th.ones(5, 3))
    assert probs.min() >= unimix / classes * (1 - 1e-5)
    other = latent.stats_from_output(raw.flip(-1))
    kl, entropy = latent.kl(stats, other), latent.entropy(stats)
    assert th.isfinite(kl).all() and th.isfinite(entropy).all() and (entropy > 0).all()
    assert (kl <= 3 * math.log(classes / unimix) + 1e-4).all()  # log of the largest probability ratio, per variable
    # The actor's categorical: finite log-probabilities of every action, the mode unchanged
    actor = CategoricalAction(classes, unimix)
    params = actor.params_from_output(raw[:, :classes])
    assert th.allclose(params.exp(), expected[:, 0], atol=1e-6)
    assert th.isfinite(actor.log_prob(params, th.eye(classes)[[1] * 5])).all()
    assert th.isfinite(actor.entropy(params, actor.mode(params))).all()
    assert th.equal(actor.mode(params), actor.mode(raw[:, :classes]))


def test_unimix_samples_and_straight_through_gradients_use_the_mixed_probabilities():
    th.manual_seed(0)
    latent = CategoricalLatent(stoch=1, classes=4, unimix=0.2)
    stats = latent.stats_from_output(th.tensor([[30.0, 0.0, 0.0, 0.0]]).expand(20000, 4))
    mixed = th.tensor([0.85, 0.05, 0.05, 0.05])
    # Both fast paths: straight-through one-hots and index samples (inverse CDF) follow the mixed probabilities
    assert th.allclose(latent.sample(stats).mean(0), mixed, atol=0.01)
    assert th.allclose(th.bincount(latent.sample_index(stats)[:, 0], minlength=4) / 20000, mixed, atol=0.01)
    # The straight-through gradient is that of the mixed probabilities
    raw = th.randn(3, 4, requires_grad=True)
    weights = th.randn(3, 4)
    (straight_through_one_hot(latent.stats_from_output(raw)) * weights).sum().backward()
    raw_ref = raw.detach().clone().requires_grad_(True)
    ((0.8 * raw_ref.softmax(-1) + 0.05) * weights).sum().backward()
    assert th.allclose(raw.grad, raw_ref.grad, atol=1e-6)


def test_two_hot_heads_start_at_zero():
    model = tiny_model(policy_kwargs=V3_POLICY)
    policy = model.policy
    assert isinstance(policy.value_dist, SymlogTwoHot) and isinstance(policy.world_model.reward_dist, SymlogTwoHot)
    for head in (policy.world_model.reward_head, policy.critic, policy.critic_target):
        assert head.body[-1].out_features == 255
        assert th.count_nonzero(head.body[-1].weight) == 0 and th.count_nonzero(head.body[-1].bias) == 0
    state = LatentState(th.randn(6, 16), th.randn(6, 16))
    assert policy.world_model.reward(state).abs().max() < 1e-6
    assert policy.value_dist.predict(policy.critic(state)).abs().max() < 1e-6
    # Off: DreamerV2's heads of one output, not zero
    default = tiny_model().policy
    assert isinstance(default.value_dist, NormalScalar) and default.critic.body[-1].out_features == 1
    assert th.count_nonzero(default.critic.body[-1].weight) > 0


def v3_model(env: str) -> DreamerV2:
    """Every option that the env allows, with the world-model diagnostics (open-loop predictions) often."""
    if env == "Pendulum-v1":  # vector observations and Box actions (dynamics gradients): symlog observations too
        policy_kwargs = {**V3_POLICY, "symlog_observations": True}
        return tiny_model(env, "MlpPolicy", policy_kwargs=policy_kwargs, diagnostics_interval=4, **V3)
    return tiny_model(env, policy_kwargs=V3_POLICY, diagnostics_interval=4, **V3)  # images, Discrete actions (reinforce)


@pytest.mark.parametrize("env", ["Pendulum-v1", "Breakout-MinAtar"])
def test_trains_with_every_option_and_saves_them(env, tmp_path):
    model = v3_model(env).learn(300)
    assert model._n_updates > 0
    assert all(th.isfinite(tensor).all() for tensor in model.policy.state_dict().values())
    ema = model.return_scale.range_ema.clone()
    assert ema > 0
    if env == "Pendulum-v1":  # the encoder reads, and the decoder reconstructs, symlog(obs)
        obs = th.tensor([[1.0, -0.5, 8.0]])
        assert th.equal(model.policy.world_model.preprocess(obs), symlog(obs))
    model.save(tmp_path / "model.zip")
    loaded = DreamerV2.load(tmp_path / "model.zip", env=make_vec_env(env, n_envs=1))
    assert (loaded.free_bits, loaded.normalize_returns) == (1.0, True)
    assert (loaded.policy.symlog_twohot, loaded.policy.unimix) == (True, 0.01)
    assert loaded.policy.symlog_observations == (env == "Pendulum-v1")
    assert th.equal(loaded.return_scale.range_ema, ema)
    assert_same_weights(model, loaded)
    obs = np.stack([gym.make(env).reset(seed=seed)[0] for seed in range(3)])
    assert_same_predictions(model, loaded, obs, n_steps=4)
    loaded.learn(40)
    assert not th.equal(loaded.return_scale.range_ema, ema)
    # Loaded with the return scale off, its state is ignored; a model saved without it starts from 0 when it is on
    assert not DreamerV2.load(tmp_path / "model.zip", normalize_returns=False).normalize_returns
    tiny_model().save(tmp_path / "v2.zip")
    assert DreamerV2.load(tmp_path / "v2.zip", normalize_returns=True).return_scale.range_ema == 0.0


@pytest.mark.parametrize("actor_grad", ["reinforce", "dynamics"])
def test_return_scale_divides_the_actor_objective(actor_grad):
    model = tiny_model(normalize_returns=True, actor_grad=actor_grad, actor_entropy_scale=0.0).learn(60)
    samples = model.replay_buffer.sample(4)
    _, posterior = model._train_world_model(samples)
    assert_return_scale_divides_the_actor_loss(
        model.return_scale, lambda: model._actor_critic_losses(posterior, samples.terminated, 0.0)
    )


def test_undone_update_restores_the_return_scale():
    model = tiny_model(normalize_returns=True)
    model.return_scale.range_ema.fill_(3.0)
    model._update_snapshot.take()
    model.return_scale.range_ema.fill_(float("nan"))
    model._update_snapshot.restore()
    assert model.return_scale.range_ema.item() == 3.0


def test_options_off_by_default():
    model = tiny_model()
    assert (model.free_bits, model.normalize_returns) == (0.0, False)
    assert (model.policy.symlog_observations, model.policy.symlog_twohot, model.policy.unimix) == (False, False, 0.0)
    assert "return_scale" not in model._get_torch_save_params()[0]


@pytest.mark.parametrize(
    "env, policy, kwargs, match",
    [
        (None, "CnnPolicy", dict(policy_kwargs={**TINY_POLICY, "symlog_observations": True}), "vector observations"),
        (None, "CnnPolicy", dict(policy_kwargs={**TINY_POLICY, "unimix": 1.0}), r"unimix must be in \[0, 1\), got 1.0"),
        (None, "CnnPolicy", dict(policy_kwargs={**TINY_POLICY, "unimix": -0.1}), r"unimix must be in \[0, 1\)"),
        (None, "CnnPolicy", dict(policy_kwargs={**TINY_POLICY, "symlog_twohot": "yes"}), "symlog_twohot must be True or"),
        (None, "CnnPolicy", dict(free_bits=-1.0), r"free_bits must be a finite number >= 0, got -1.0"),
        (None, "CnnPolicy", dict(normalize_returns=1), "normalize_returns must be True or False, got 1"),
        (
            "Pendulum-v1",
            "MlpPolicy",
            dict(policy_kwargs={**TINY_POLICY, "latent_type": "gaussian", "unimix": 0.01}),
            "unimix=0.01 would have no effect",
        ),
        (
            "CartPole-v1",
            "MlpPolicy",
            dict(policy_kwargs={**TINY_POLICY, "image_likelihood": "bernoulli", "symlog_observations": True}),
            "needs binary targets",
        ),
    ],
)
def test_bad_options(env, policy, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(env or "Breakout-MinAtar", policy, **kwargs)
