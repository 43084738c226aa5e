"""
Latent, action and scalar distributions as plain functions of their parameters ("stats").

The RSSM keeps distributions as flat tensors so that a whole sequence of them can be stacked,
masked and sliced like any other tensor: categorical latents as logits ``(..., stoch * classes)``,
Gaussian latents as ``cat(mean, std)`` ``(..., 2 * stoch)``. The actor's distributions read the flat output
of the actor head likewise: logits ``(..., n_actions)`` or ``cat(raw_mean, raw_std)`` ``(..., 2 * action_dim)``,
and the reward head and the critic predict a scalar from their outputs ``(..., 1)`` or two-hot logits ``(..., bins)``.
"""

import math
from abc import ABC, abstractmethod

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_dreamer.world_model.symlog import symexp, symlog, two_hot, two_hot_mean


def class_softmax(logits: th.Tensor, transposed: bool = False) -> th.Tensor:
    """
    Softmax over the last dim (classes), (..., classes) -> (..., classes). ``transposed``: computed along a transposed
    view on the CPU, where PyTorch's kernel vectorises the innermost dimension in blocks of 16 floats: with fewer
    classes it is about ten times faster so (0.36 against 3.5 ms for 1024 x 32 x 4 on one core), equal within float32
    rounding; slower with 16 classes or more.
    """
    if transposed and logits.device.type == "cpu" and logits.dim() >= 2:
        return logits.transpose(-1, -2).softmax(dim=-2).transpose(-1, -2)
    return logits.softmax(dim=-1)


def class_log_softmax(logits: th.Tensor, transposed: bool = False) -> th.Tensor:
    """Log-softmax over the last dim (classes), along a transposed view with ``transposed`` (see :func:`class_softmax`)."""
    if transposed and logits.device.type == "cpu" and logits.dim() >= 2:
        return logits.transpose(-1, -2).log_softmax(dim=-2).transpose(-1, -2)
    return logits.log_softmax(dim=-1)


def one_hot(index: th.Tensor, classes: int, dtype: th.dtype = th.float32) -> th.Tensor:
    """
    ``F.one_hot(index, classes).to(dtype)`` in one write, int64 (...) -> (..., classes), for indices known to be in
    range: ``F.one_hot`` checks them on the CPU (a min/max pass) and makes an int64 tensor first.
    """
    return th.zeros(*index.shape, classes, dtype=dtype, device=index.device).scatter_(-1, index.unsqueeze(-1), 1.0)


def straight_through_one_hot(logits: th.Tensor, deterministic: bool = False, transposed: bool = False) -> th.Tensor:
    """
    One-hot sample of categoricals along the last dim, with straight-through gradients.

    The value is an exact one-hot; the gradient is that of the probabilities
    (``sample + (probs - probs.detach())``, Bengio et al. 2013).

    :param logits: unnormalised log-probabilities, (..., classes)
    :param deterministic: take the mode instead of a sample
    :param transposed: compute the softmax along a transposed view (:func:`class_softmax`)
    :return: one-hot tensor, (..., classes)
    """
    if not logits.requires_grad:
        index = logits.argmax(dim=-1) if deterministic else categorical_sample(class_softmax(logits, transposed))
        return one_hot(index, logits.shape[-1], logits.dtype)
    probs = class_softmax(logits, transposed)
    index = logits.argmax(dim=-1) if deterministic else categorical_sample(probs.detach())
    return one_hot(index, logits.shape[-1], logits.dtype) + (probs - probs.detach())


def categorical_sample(probs: th.Tensor) -> th.Tensor:
    """
    Class indices sampled from categoricals over the last dim, (..., classes) -> int64 (...).

    Inverse-CDF sampling: one uniform number per categorical; the index is the number of CDF entries <= u.
    """
    cdf = probs.cumsum(dim=-1)
    uniform = th.rand(*cdf.shape[:-1], 1, device=cdf.device, dtype=cdf.dtype)
    return (cdf <= uniform).sum(dim=-1).clamp_(max=probs.shape[-1] - 1)


def unimix_logits(logits: th.Tensor, unimix: float, transposed: bool = False) -> th.Tensor:
    """
    Categoricals over the last dim mixed with a uniform (DreamerV3): the log of
    ``(1 - unimix) * softmax(logits) + unimix / classes``, (..., classes) -> (..., classes). Every class keeps a
    probability of at least ``unimix / classes``, so that log-probabilities, KLs and entropies stay finite.
    ``transposed``: see :func:`class_softmax`.
    """
    probs = class_softmax(logits, transposed)
    return ((1.0 - unimix) * probs + unimix / logits.shape[-1]).log()


def categorical_kl(logits_p: th.Tensor, logits_q: th.Tensor, transposed: bool = False) -> th.Tensor:
    """KL(p || q) between categoricals over the last dim, (..., classes) -> (...); ``transposed``: :func:`class_softmax`."""
    log_p = class_log_softmax(logits_p, transposed)
    log_q = class_log_softmax(logits_q, transposed)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def categorical_entropy(logits: th.Tensor, transposed: bool = False) -> th.Tensor:
    """Entropy of categoricals over the last dim, (..., classes) -> (...); ``transposed``: :func:`class_softmax`."""
    log_p = class_log_softmax(logits, transposed)
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

    With ``unimix > 0`` the stats are the log of the probabilities mixed with a uniform (:func:`unimix_logits`), so
    that samples, straight-through gradients, KLs and entropies all use the mixed probabilities (DreamerV3).

    :param stoch: number of categorical variables
    :param classes: number of classes of each variable
    :param unimix: weight of the uniform mixed into each categorical, in [0, 1) (0: DreamerV2, 0.01: DreamerV3)
    :param transposed_softmax: compute softmaxes along a transposed view (:func:`class_softmax`): faster on the CPU with
        fewer than 16 classes, equal within float32 rounding (DreamerV3's latents; DreamerV2 keeps the plain kernel so
        that its fixed-seed results stay bit-identical)
    """

    def __init__(self, stoch: int, classes: int, unimix: float = 0.0, transposed_softmax: bool = False) -> None:
        self.stoch, self.classes, self.unimix = stoch, classes, unimix
        self.transposed_softmax = transposed_softmax
        self.sample_dim = self.stats_dim = stoch * classes

    def _split(self, stats: th.Tensor) -> th.Tensor:
        return stats.unflatten(-1, (self.stoch, self.classes))

    def stats_from_output(self, output: th.Tensor) -> th.Tensor:
        """The logits (..., stoch * classes) themselves, or with ``unimix`` the log of the mixed probabilities."""
        if self.unimix == 0.0:
            return output
        return unimix_logits(self._split(output), self.unimix, self.transposed_softmax).flatten(-2)

    def sample(self, stats: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return straight_through_one_hot(self._split(stats), deterministic, self.transposed_softmax).flatten(-2)

    def sample_index(self, stats: th.Tensor) -> th.Tensor:
        """
        The same sample as :meth:`sample` as the positions of its ones in the flat one-hot, without gradients.

        :return: int64 (..., stoch), entry i in [i * classes, (i + 1) * classes)
        """
        index = categorical_sample(class_softmax(self._split(stats.detach()), self.transposed_softmax))
        return index + th.arange(0, self.sample_dim, self.classes, device=stats.device)

    def kl(self, stats_p: th.Tensor, stats_q: th.Tensor) -> th.Tensor:
        return categorical_kl(self._split(stats_p), self._split(stats_q), self.transposed_softmax).sum(-1)

    def entropy(self, stats: th.Tensor) -> th.Tensor:
        return categorical_entropy(self._split(stats), self.transposed_softmax).sum(-1)


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
    latent: LatentDistribution,
    posterior: th.Tensor,
    prior: th.Tensor,
    balance: float,
    free_nats: float,
    free_bits: float = 0.0,
) -> tuple[th.Tensor, th.Tensor]:
    """
    KL balancing (DreamerV2): ``balance`` of the gradient trains the prior towards the posterior,
    ``1 - balance`` regularises the posterior towards the prior.

    :param latent: the latent distribution family
    :param posterior: posterior stats, (..., stats_dim)
    :param prior: prior stats, (..., stats_dim)
    :param balance: weight of the prior's term, in [0, 1]
    :param free_nats: DreamerV2's free nats: each term's batch mean is clipped from below at this value, so the whole
        term has no gradient while the mean KL is below it (0 disables)
    :param free_bits: DreamerV3's free bits: each term is clipped from below at this value per sample (the KL summed
        over the latent variables) before the batch mean, so only the samples whose KL is below it have no gradient
        (0 disables); applied before ``free_nats``
    :return: the scalar loss and the (unclipped) mean KL for logging
    """
    kl_prior = latent.kl(posterior.detach(), prior)  # (...)
    kl_posterior = latent.kl(posterior, prior.detach())  # (...)
    if free_bits > 0:
        kl = kl_prior.detach().mean()
        kl_prior, kl_posterior = kl_prior.clamp(min=free_bits).mean(), kl_posterior.clamp(min=free_bits).mean()
    else:
        kl_prior, kl_posterior = kl_prior.mean(), kl_posterior.mean()
        kl = kl_prior.detach()
    if free_nats > 0:
        loss = balance * kl_prior.clamp(min=free_nats) + (1.0 - balance) * kl_posterior.clamp(min=free_nats)
    else:
        loss = balance * kl_prior + (1.0 - balance) * kl_posterior
    return loss, kl


class ActionDistribution(ABC):
    """
    The actor's distribution family, acting on the flat parameters that the actor head outputs (..., param_dim).

    An action has two forms: the *policy action*, which the actor hands to the env and the replay buffer stores
    (a class index (...), or a vector in [-1, 1] of the action space's shape (..., *action_shape)), and the
    *action vector*, which the world model reads (..., action_dim): a one-hot, or the flattened vector in [-1, 1].
    """

    #: size of the actor head's output (..., param_dim)
    param_dim: int
    #: size of the action vector (..., action_dim)
    action_dim: int

    def params_from_output(self, output: th.Tensor) -> th.Tensor:
        """Map the actor head's output (..., param_dim) to the parameters the other methods read."""
        return output

    @abstractmethod
    def sample(self, params: th.Tensor) -> th.Tensor:
        """Sampled action vectors with gradients to ``params`` (straight-through or reparameterised), (..., action_dim)."""

    @abstractmethod
    def mode(self, params: th.Tensor) -> th.Tensor:
        """The most likely action vectors, (..., param_dim) -> (..., action_dim)."""

    @abstractmethod
    def log_prob(self, params: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """Log-probability of action vectors, (..., param_dim) and (..., action_dim) -> (...)."""

    @abstractmethod
    def entropy(self, params: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """
        Entropy, (..., param_dim) -> (...), or where it has no closed form its one-sample estimate
        ``-log_prob(actions)``, with gradients through the sample as well.

        :param actions: action vectors sampled from ``params`` by :meth:`sample`, (..., action_dim)
        """

    @abstractmethod
    def explore(self, actions: th.Tensor, amount: float) -> th.Tensor:
        """Policy actions (N, ...) perturbed for exploration; ``amount`` is the size of the perturbation."""

    @abstractmethod
    def to_vector(self, actions: th.Tensor) -> th.Tensor:
        """Policy actions (*batch) or (*batch, *action_shape) -> action vectors (*batch, action_dim)."""

    @abstractmethod
    def from_vector(self, vectors: th.Tensor) -> th.Tensor:
        """Action vectors (*batch, action_dim) -> policy actions (*batch) or (*batch, *action_shape)."""


class CategoricalAction(ActionDistribution):
    """
    A categorical over ``n`` actions (``Discrete`` action spaces): the actor outputs logits, the policy action is
    the class index (int64) and the action vector its one-hot. With ``unimix > 0`` the parameters are the log of the
    probabilities mixed with a uniform (:func:`unimix_logits`, DreamerV3).

    :param n: number of actions
    :param unimix: weight of the uniform mixed into the categorical, in [0, 1)
    """

    def __init__(self, n: int, unimix: float = 0.0) -> None:
        self.n, self.unimix = n, unimix
        self.param_dim = self.action_dim = n

    def params_from_output(self, output: th.Tensor) -> th.Tensor:
        return output if self.unimix == 0.0 else unimix_logits(output, self.unimix)

    def sample(self, params: th.Tensor) -> th.Tensor:
        return straight_through_one_hot(params)

    def mode(self, params: th.Tensor) -> th.Tensor:
        return one_hot(params.argmax(dim=-1), self.n, params.dtype)

    def log_prob(self, params: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return (params.log_softmax(dim=-1) * actions).sum(-1)

    def entropy(self, params: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return categorical_entropy(params)

    def explore(self, actions: th.Tensor, amount: float) -> th.Tensor:
        """Epsilon-greedy: each index (N,) is replaced by a uniformly random one with probability ``amount``."""
        explore = th.rand(actions.shape, device=actions.device) < amount
        return th.where(explore, th.randint_like(actions, self.n), actions)

    def to_vector(self, actions: th.Tensor) -> th.Tensor:
        return one_hot(actions, self.n)

    def from_vector(self, vectors: th.Tensor) -> th.Tensor:
        return vectors.argmax(dim=-1)


class NormalActionDistribution(ActionDistribution):
    """
    Independent Normals over the actions of a ``Box`` space: the actor outputs ``cat(raw_mean, raw_std)``
    (..., 2 * action_dim), policy actions have the action space's shape and action vectors are them flattened.

    :param action_shape: shape of the action space
    """

    def __init__(self, action_shape: tuple[int, ...]) -> None:
        self.action_shape = tuple(action_shape)
        self.action_dim = math.prod(self.action_shape)
        self.param_dim = 2 * self.action_dim

    def explore(self, actions: th.Tensor, amount: float) -> th.Tensor:
        """Gaussian noise of std ``amount`` added to actions in [-1, 1] (N, *action_shape), clipped to [-1, 1]."""
        if amount == 0.0:
            return actions
        return (actions + amount * th.randn_like(actions)).clamp(-1.0, 1.0)

    def to_vector(self, actions: th.Tensor) -> th.Tensor:
        return actions.reshape(*actions.shape[: actions.dim() - len(self.action_shape)], self.action_dim)

    def from_vector(self, vectors: th.Tensor) -> th.Tensor:
        return vectors.reshape(*vectors.shape[:-1], *self.action_shape)


class TanhNormalAction(NormalActionDistribution):
    """
    Independent Normals squashed by tanh into (-1, 1) (``Box`` action spaces; DreamerV1, DreamerV2's ``tanh_normal``).

    The actor outputs ``cat(raw_mean, raw_std)``; the Normal's mean is ``mean_scale * tanh(raw_mean / mean_scale)``,
    its std ``softplus(raw_std + init_std) + min_std``. Samples are reparameterised through the tanh, the
    log-probability includes the tanh's Jacobian, the entropy is estimated from the sample (no closed form) and the
    mode is ``tanh(mean)``. Policy actions have the action space's shape, action vectors are them flattened.

    :param action_shape: shape of the action space
    :param min_std: lower bound of the Normal's std
    :param init_std: offset of the raw std before the softplus (larger values start with wider Normals)
    :param mean_scale: bound of the Normal's mean
    """

    #: Actions are clipped to [-1 + eps, 1 - eps] before the tanh is inverted: in float32, tanh(x) is 1 beyond x = 9.
    eps = 1e-6

    def __init__(self, action_shape: tuple[int, ...], min_std: float, init_std: float, mean_scale: float = 5.0) -> None:
        super().__init__(action_shape)
        self.min_std, self.init_std, self.mean_scale = min_std, init_std, mean_scale

    def normal(self, params: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Mean and std of the Normal before the tanh, (..., 2 * action_dim) -> 2 x (..., action_dim)."""
        raw_mean, raw_std = params.chunk(2, dim=-1)
        mean = self.mean_scale * th.tanh(raw_mean / self.mean_scale)
        return mean, F.softplus(raw_std + self.init_std) + self.min_std

    def sample(self, params: th.Tensor) -> th.Tensor:
        mean, std = self.normal(params)
        return th.tanh(mean + std * th.randn_like(std))

    def mode(self, params: th.Tensor) -> th.Tensor:
        return th.tanh(self.normal(params)[0])

    def log_prob(self, params: th.Tensor, actions: th.Tensor) -> th.Tensor:
        mean, std = self.normal(params)
        pre_tanh = th.atanh(actions.clamp(-1.0 + self.eps, 1.0 - self.eps))
        normal_log_prob = -0.5 * ((pre_tanh - mean) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)
        # log(1 - tanh(x)^2), written to stay finite for large |x|
        log_det_jacobian = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        return (normal_log_prob - log_det_jacobian).sum(-1)

    def entropy(self, params: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return -self.log_prob(params, actions)


class BoundedNormalAction(NormalActionDistribution):
    """
    DreamerV3's ``bounded_normal`` actor (``Box`` action spaces): independent Normals with mean ``tanh(raw_mean)`` and
    std ``(max_std - min_std) * sigmoid(raw_std + 2) + min_std``, not squashed. Samples may leave [-1, 1]: policy actions
    are clipped to it (the env's ``ClipAction`` in the official code), while imagined action vectors stay unclipped
    and the RSSM divides them by ``max(1, |a|)``. Trained by REINFORCE, so samples need no reparameterisation gradient;
    the entropy is the Normal's closed form.

    :param action_shape: shape of the action space
    :param min_std: lower bound of the std (DreamerV3: 0.1)
    :param max_std: upper bound of the std (DreamerV3: 1.0)
    """

    def __init__(self, action_shape: tuple[int, ...], min_std: float = 0.1, max_std: float = 1.0) -> None:
        super().__init__(action_shape)
        self.min_std, self.max_std = min_std, max_std

    def normal(self, params: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Mean and std, (..., 2 * action_dim) -> 2 x (..., action_dim)."""
        raw_mean, raw_std = params.chunk(2, dim=-1)
        return th.tanh(raw_mean), (self.max_std - self.min_std) * th.sigmoid(raw_std + 2.0) + self.min_std

    def sample(self, params: th.Tensor) -> th.Tensor:
        mean, std = self.normal(params)
        return mean + std * th.randn_like(std)

    def mode(self, params: th.Tensor) -> th.Tensor:
        return self.normal(params)[0]

    def log_prob(self, params: th.Tensor, actions: th.Tensor) -> th.Tensor:
        mean, std = self.normal(params)
        return (-0.5 * ((actions - mean) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return (0.5 * math.log(2 * math.pi * math.e) + self.normal(params)[1].log()).sum(-1)

    def from_vector(self, vectors: th.Tensor) -> th.Tensor:
        """Action vectors -> policy actions of the action space's shape, clipped to [-1, 1]."""
        return vectors.clamp(-1.0, 1.0).reshape(*vectors.shape[:-1], *self.action_shape)


class ScalarDistribution(nn.Module, ABC):
    """
    How a head (reward, critic) predicts a real number from its outputs (..., param_dim), and the loss that trains it.
    A module so that constant tensors (two-hot bins) follow the policy's device; it has no parameters.
    """

    #: size of the head's output (..., param_dim)
    param_dim: int
    #: whether the head's output layer starts at zero (DreamerV3's two-hot heads: predictions of 0 at first)
    zero_init_output: bool

    @abstractmethod
    def predict(self, outputs: th.Tensor) -> th.Tensor:
        """The prediction, (..., param_dim) -> (...)."""

    @abstractmethod
    def loss(self, outputs: th.Tensor, targets: th.Tensor) -> th.Tensor:
        """Negative log-likelihood of the targets (...) up to a constant, (..., param_dim) -> (...)."""


class NormalScalar(ScalarDistribution):
    """A unit-variance Normal (DreamerV2): one output, the mean; the loss is half the squared error."""

    param_dim = 1
    zero_init_output = False

    def predict(self, outputs: th.Tensor) -> th.Tensor:
        return outputs.squeeze(-1)

    def loss(self, outputs: th.Tensor, targets: th.Tensor) -> th.Tensor:
        return 0.5 * (outputs.squeeze(-1) - targets).pow(2)


class SymlogTwoHot(ScalarDistribution):
    """
    DreamerV3's symlog two-hot distribution: logits over ``n_bins`` bins evenly spaced in symlog space over
    ``[-limit, limit]``. The loss is the cross-entropy against the two-hot encoding of ``symlog(target)``, the
    prediction ``symexp`` of the softmax-weighted mean bin. The head's output layer starts at zero, as in DreamerV3.

    :param n_bins: number of bins (DreamerV3: 255)
    :param limit: the bins span ``[-limit, limit]`` in symlog space (DreamerV3: 20, about +-4.9e8 in target units)
    """

    bins: th.Tensor
    zero_init_output = True

    def __init__(self, n_bins: int = 255, limit: float = 20.0) -> None:
        super().__init__()
        self.param_dim = n_bins
        self.register_buffer("bins", th.linspace(-limit, limit, n_bins), persistent=False)

    def predict(self, outputs: th.Tensor) -> th.Tensor:
        return symexp(two_hot_mean(outputs, self.bins))

    def loss(self, outputs: th.Tensor, targets: th.Tensor) -> th.Tensor:
        return -(two_hot(symlog(targets), self.bins) * outputs.log_softmax(dim=-1)).sum(-1)


class SymexpTwoHot(ScalarDistribution):
    """
    The current official DreamerV3's ``symexp_twohot``: logits over ``n_bins`` bins at ``symexp`` of evenly spaced
    points of ``[-limit, limit]`` (built symmetrically around an exact 0), trained by cross-entropy against the two-hot
    encoding of the raw target between its two neighbouring bins; the prediction is the softmax-weighted mean bin,
    summed symmetrically so that uniform probabilities predict exactly 0. The head's output layer starts at zero.
    (:class:`SymlogTwoHot` is the first paper's version, with bins evenly spaced in symlog space.)

    :param n_bins: number of bins, odd (DreamerV3: 255)
    :param limit: the bins span ``symexp([-limit, limit])`` (DreamerV3: 20)
    """

    bins: th.Tensor
    zero_init_output = True

    def __init__(self, n_bins: int = 255, limit: float = 20.0) -> None:
        super().__init__()
        if n_bins < 3 or n_bins % 2 == 0:
            raise ValueError(f"SymexpTwoHot needs an odd number of bins >= 3, got {n_bins}")
        self.param_dim = n_bins
        half = symexp(th.linspace(-limit, 0.0, (n_bins - 1) // 2 + 1))
        self.register_buffer("bins", th.cat([half, -half[:-1].flip(0)]), persistent=False)

    def predict(self, outputs: th.Tensor) -> th.Tensor:
        probs = outputs.softmax(dim=-1)
        middle = (self.param_dim - 1) // 2
        weighted = probs * self.bins
        # Each negative bin summed with its positive mirror, outermost first, then the middle bin
        return (weighted[..., :middle].flip(-1) + weighted[..., middle + 1 :]).sum(-1) + weighted[..., middle]

    def loss(self, outputs: th.Tensor, targets: th.Tensor) -> th.Tensor:
        return -(two_hot(targets, self.bins) * outputs.log_softmax(dim=-1)).sum(-1)
