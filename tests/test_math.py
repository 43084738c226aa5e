"""Pure math of DreamerV2 on tiny tensors: lambda-returns, KL balancing, straight-through sampling, latents."""

import pytest
import torch as th

from sb3_dreamer.world_model.distributions import (
    CategoricalLatent,
    GaussianLatent,
    balanced_kl_loss,
    categorical_kl,
    one_hot,
    straight_through_one_hot,
)
from sb3_dreamer.world_model.networks import LatentMLP
from sb3_dreamer.world_model.returns import lambda_return
from sb3_dreamer.world_model.rssm import IndexLatentState, LatentState


def test_lambda_return_hand_computed():
    # H = 2, one trajectory: r = (1, 2), v(s_1) = 10, v(s_2) = 20, discounts (0.9, 0.5), lambda 0.5.
    rewards = th.tensor([[1.0], [2.0]])
    values = th.tensor([[10.0], [20.0]])
    discounts = th.tensor([[0.9], [0.5]])
    returns = lambda_return(rewards, values, discounts, lambda_=0.5)
    v1 = 2.0 + 0.5 * 20.0  # V_1 = r_2 + g_2 * v(s_2) = 12
    v0 = 1.0 + 0.9 * (0.5 * 10.0 + 0.5 * v1)  # V_0 = r_1 + g_1 * ((1 - l) v(s_1) + l V_1) = 11.9
    assert th.allclose(returns, th.tensor([[v0], [v1]]))


@pytest.mark.parametrize("lambda_", [0.0, 1.0])
def test_lambda_return_limits(lambda_):
    th.manual_seed(0)
    rewards, values = th.randn(5, 3), th.randn(5, 3)
    discounts = th.rand(5, 3)
    returns = lambda_return(rewards, values, discounts, lambda_)
    if lambda_ == 0.0:  # one-step TD targets
        assert th.allclose(returns, rewards + discounts * values)
    else:  # Monte-Carlo return bootstrapped at the horizon
        expected = values[-1]
        for t in reversed(range(5)):
            expected = rewards[t] + discounts[t] * expected
        assert th.allclose(returns[0], expected)


@pytest.mark.parametrize("shape", [(), (7,), (4, 3)])
def test_one_hot_matches_torch(shape):
    index = th.randint(0, 5, shape, generator=th.Generator().manual_seed(0))
    for dtype in (th.float32, th.float64):
        expected = th.nn.functional.one_hot(index, 5).to(dtype)
        result = one_hot(index, 5, dtype)
        assert result.dtype == dtype and th.equal(result, expected)


def test_straight_through_value_and_gradient():
    th.manual_seed(0)
    logits = th.randn(4, 3, 5, requires_grad=True)
    sample = straight_through_one_hot(logits)
    # The value is an exact one-hot.
    assert th.equal(sample.sum(-1), th.ones(4, 3))
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    # The gradient is that of the softmax probabilities.
    weights = th.randn(4, 3, 5)
    (sample * weights).sum().backward()
    probs_logits = logits.detach().clone().requires_grad_(True)
    (probs_logits.softmax(-1) * weights).sum().backward()
    assert th.allclose(logits.grad, probs_logits.grad)


def test_straight_through_samples_follow_probabilities_and_mode():
    th.manual_seed(0)
    logits = th.log(th.tensor([0.1, 0.6, 0.3])).expand(20000, 3)
    frequencies = straight_through_one_hot(logits).mean(0)
    assert th.allclose(frequencies, th.tensor([0.1, 0.6, 0.3]), atol=0.015)
    assert th.equal(straight_through_one_hot(logits[:2], deterministic=True), th.tensor([[0.0, 1.0, 0.0]] * 2))


def test_kl_balancing_splits_gradient():
    th.manual_seed(0)
    latent = CategoricalLatent(stoch=2, classes=3)
    posterior = th.randn(4, 6, requires_grad=True)
    prior = th.randn(4, 6, requires_grad=True)
    loss, kl = balanced_kl_loss(latent, posterior, prior, balance=0.8, free_nats=0.0)
    loss.backward()
    # Reference gradients of the plain KL with respect to each side.
    posterior_ref = posterior.detach().clone().requires_grad_(True)
    prior_ref = prior.detach().clone().requires_grad_(True)
    latent.kl(posterior_ref, prior_ref).mean().backward()
    assert th.allclose(prior.grad, 0.8 * prior_ref.grad, atol=1e-6)
    assert th.allclose(posterior.grad, 0.2 * posterior_ref.grad, atol=1e-6)
    assert th.allclose(kl, latent.kl(posterior, prior).mean())


def test_free_nats_clip_the_kl_below():
    latent = CategoricalLatent(stoch=1, classes=2)
    stats = th.zeros(3, 2, requires_grad=True)
    loss, kl = balanced_kl_loss(latent, stats, stats.detach().clone(), balance=0.8, free_nats=1.0)
    assert kl.item() == pytest.approx(0.0)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert th.count_nonzero(stats.grad) == 0


def test_categorical_kl_and_entropy_match_torch():
    th.manual_seed(0)
    p, q = th.randn(7, 4), th.randn(7, 4)
    expected = th.distributions.kl_divergence(th.distributions.Categorical(logits=p), th.distributions.Categorical(logits=q))
    assert th.allclose(categorical_kl(p, q), expected, atol=1e-6)
    latent = CategoricalLatent(stoch=7, classes=4)
    assert th.allclose(latent.entropy(p.flatten()), th.distributions.Categorical(logits=p).entropy().sum(), atol=1e-5)


def test_gaussian_latent_matches_torch():
    th.manual_seed(0)
    latent = GaussianLatent(stoch=3, min_std=0.1)
    stats_p = latent.stats_from_output(th.randn(5, 6))
    stats_q = latent.stats_from_output(th.randn(5, 6))
    assert (stats_p[:, 3:] >= 0.1).all()
    normal_p = th.distributions.Normal(stats_p[:, :3], stats_p[:, 3:])
    normal_q = th.distributions.Normal(stats_q[:, :3], stats_q[:, 3:])
    assert th.allclose(latent.kl(stats_p, stats_q), th.distributions.kl_divergence(normal_p, normal_q).sum(-1), atol=1e-5)
    assert th.allclose(latent.entropy(stats_p), normal_p.entropy().sum(-1), atol=1e-5)
    assert th.equal(latent.sample(stats_p, deterministic=True), stats_p[:, :3])


@pytest.mark.parametrize("grad", [True, False])
def test_heads_read_index_states_like_one_hot_states(grad):
    """A head reads a categorical state held as indices (gather) as it reads the flat one-hot: outputs and gradients."""
    th.manual_seed(0)
    latent, head = CategoricalLatent(3, 4), LatentMLP(5, 12, 2, 8, 1, th.nn.ELU)
    index = latent.sample_index(th.randn(6, latent.stats_dim))  # (6, 3)
    stoch = th.zeros(6, 12).scatter_(-1, index, 1.0)
    assert ((index - th.arange(0, 12, 4)) // 4 == 0).all()  # variable i's index lies in [4 i, 4 i + 4)
    deter = th.randn(6, 5)
    outputs, gradients = [], []
    for state in (LatentState(deter, stoch), IndexLatentState(deter, index)):
        head.zero_grad()
        with th.set_grad_enabled(grad):
            output = head(state)
        outputs.append(output.detach())
        if grad:
            (output * th.arange(1.0, 3.0)).sum().backward()
            gradients.append({name: parameter.grad.clone() for name, parameter in head.named_parameters()})
    assert th.allclose(*outputs, atol=1e-6)
    if grad:
        assert all(th.allclose(gradients[0][name], gradients[1][name], atol=1e-6) for name in gradients[0])
        assert gradients[1]["stoch_in.weight"].abs().sum() > 0
