"""
Latent and action distributions as plain functions of their parameters ("stats").

The RSSM keeps distributions as flat tensors so that a whole sequence of them can be stacked,
masked and sliced like any other tensor: categorical latents as logits ``(..., stoch * classes)``,
Gaussian latents as ``cat(mean, std)`` ``(..., 2 * stoch)``.
"""

from abc import ABC, abstractmethod

import torch as th
import torch.nn.functional as F


def straight_through_one_hot(logits: th.Tensor, deterministic: bool = False) -> th.Tensor:
    """
    One-hot sample of categoricals along the last dim, with straight-through gradients.

    The value is an exact one-hot; the gradient is that of the probabilities
    (``sample + (probs - probs.detach())``, Bengio et al. 2013).

    :param logits: unnormalised log-probabilities, (..., classes)
    :param deterministic: take the mode instead of a sample
    :return: one-hot tensor, (..., classes)
    """
    if not logits.requires_grad:
        index = logits.argmax(dim=-1) if deterministic else categorical_sample(logits.softmax(dim=-1))
        return F.one_hot(index, logits.shape[-1]).to(logits.dtype)
    probs = logits.softmax(dim=-1)
    index = logits.argmax(dim=-1) if deterministic else categorical_sample(probs.detach())
    return F.one_hot(index, logits.shape[-1]).to(logits.dtype) + (probs - probs.detach())


def categorical_sample(probs: th.Tensor) -> th.Tensor:
    """
    Class indices sampled from categoricals over the last dim, (..., classes) -> int64 (...).

    Inverse-CDF sampling: one uniform number per categorical; the index is the number of CDF entries <= u.
    """
    cdf = probs.cumsum(dim=-1)
    uniform = th.rand(*cdf.shape[:-1], 1, device=cdf.device, dtype=cdf.dtype)
    return (cdf <= uniform).sum(dim=-1).clamp_(max=probs.shape[-1] - 1)


def categorical_kl(logits_p: th.Tensor, logits_q: th.Tensor) -> th.Tensor:
    """KL(p || q) between categoricals over the last dim, (..., classes) -> (...)."""
    log_p = logits_p.log_softmax(dim=-1)
    log_q = logits_q.log_softmax(dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def categorical_entropy(logits: th.Tensor) -> th.Tensor:
    """Entropy of categoricals over the last dim, (..., classes) -> (...)."""
    log_p = logits.log_softmax(dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


class LatentDistribution(ABC):
    """The distribution family of the RSSM's stochastic state, acting on flat stats tensors."""

    #: size of the flat sample (..., sample_dim)
    sample_dim: int
    #: size of the flat stats (..., stats_dim)
    stats_dim: int

    def stats_from_output(self, output: th.Tensor) -> th.Tensor:
        """Map a network output (..., stats_dim) to valid stats."""
        return output

    @abstractmethod
    def sample(self, stats: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """Reparameterised (or straight-through) sample, (..., stats_dim) -> (..., sample_dim)."""

    @abstractmethod
    def kl(self, stats_p: th.Tensor, stats_q: th.Tensor) -> th.Tensor:
        """KL(p || q) summed over latent variables, (..., stats_dim) -> (...)."""

    @abstractmethod
    def entropy(self, stats: th.Tensor) -> th.Tensor:
        """Entropy summed over latent variables, (..., stats_dim) -> (...)."""


class CategoricalLatent(LatentDistribution):
    """
    ``stoch`` independent categoricals of ``classes`` classes each (DreamerV2).

    :param stoch: number of categorical variables
    :param classes: number of classes of each variable
    """

    def __init__(self, stoch: int, classes: int) -> None:
        self.stoch, self.classes = stoch, classes
        self.sample_dim = self.stats_dim = stoch * classes

    def _split(self, stats: th.Tensor) -> th.Tensor:
        return stats.unflatten(-1, (self.stoch, self.classes))

    def sample(self, stats: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return straight_through_one_hot(self._split(stats), deterministic).flatten(-2)

    def sample_index(self, stats: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """
        The same sample as :meth:`sample` as the positions of its ones in the flat one-hot, without gradients.

        :return: int64 (..., stoch), entry i in [i * classes, (i + 1) * classes)
        """
        logits = self._split(stats.detach())
        if deterministic:
            index = logits.argmax(dim=-1)
        else:
            index = categorical_sample(logits.softmax(dim=-1))
        return index + th.arange(0, self.sample_dim, self.classes, device=stats.device)

    def kl(self, stats_p: th.Tensor, stats_q: th.Tensor) -> th.Tensor:
        return categorical_kl(self._split(stats_p), self._split(stats_q)).sum(-1)

    def entropy(self, stats: th.Tensor) -> th.Tensor:
        return categorical_entropy(self._split(stats)).sum(-1)


class GaussianLatent(LatentDistribution):
    """
    ``stoch`` independent Gaussians (DreamerV1); stats are ``cat(mean, std)``.

    :param stoch: number of Gaussian variables
    :param min_std: lower bound of the standard deviation
    """

    def __init__(self, stoch: int, min_std: float) -> None:
        self.stoch, self.min_std = stoch, min_std
        self.sample_dim = stoch
        self.stats_dim = 2 * stoch

    def stats_from_output(self, output: th.Tensor) -> th.Tensor:
        """Map a network output (..., 2 * stoch) to valid stats: std = softplus + min_std."""
        mean, raw_std = output.chunk(2, dim=-1)
        return th.cat([mean, F.softplus(raw_std) + self.min_std], dim=-1)

    def sample(self, stats: th.Tensor, deterministic: bool = False) -> th.Tensor:
        mean, std = stats.chunk(2, dim=-1)
        return mean if deterministic else mean + std * th.randn_like(std)

    def kl(self, stats_p: th.Tensor, stats_q: th.Tensor) -> th.Tensor:
        mean_p, std_p = stats_p.chunk(2, dim=-1)
        mean_q, std_q = stats_q.chunk(2, dim=-1)
        var_ratio = (std_p / std_q).pow(2)
        return 0.5 * (var_ratio + ((mean_p - mean_q) / std_q).pow(2) - 1.0 - var_ratio.log()).sum(-1)

    def entropy(self, stats: th.Tensor) -> th.Tensor:
        _, std = stats.chunk(2, dim=-1)
        return (0.5 * th.log(2 * th.pi * th.e * std.pow(2))).sum(-1)


def balanced_kl_loss(
    latent: LatentDistribution, posterior: th.Tensor, prior: th.Tensor, balance: float, free_nats: float
) -> tuple[th.Tensor, th.Tensor]:
    """
    KL balancing (DreamerV2): ``balance`` of the gradient trains the prior towards the posterior,
    ``1 - balance`` regularises the posterior towards the prior.

    :param latent: the latent distribution family
    :param posterior: posterior stats, (..., stats_dim)
    :param prior: prior stats, (..., stats_dim)
    :param balance: weight of the prior's term, in [0, 1]
    :param free_nats: each term's batch mean is clipped from below at this value (0 disables)
    :return: the scalar loss and the (unclipped) mean KL for logging
    """
    kl_prior = latent.kl(posterior.detach(), prior).mean()
    kl_posterior = latent.kl(posterior, prior.detach()).mean()
    if free_nats > 0:
        loss = balance * kl_prior.clamp(min=free_nats) + (1.0 - balance) * kl_posterior.clamp(min=free_nats)
    else:
        loss = balance * kl_prior + (1.0 - balance) * kl_posterior
    return loss, kl_prior.detach()
