"""
Symlog transform and two-hot encoding of DreamerV3 ("Mastering Diverse Domains through World Models", Hafner et al.
2023, https://arxiv.org/abs/2301.04104): targets of any magnitude predicted by a network whose outputs stay small.
"""

import torch as th


def symlog(x: th.Tensor) -> th.Tensor:
    """``sign(x) * log(1 + |x|)``, elementwise: the identity near 0, logarithmic for large |x|."""
    return th.sign(x) * th.log1p(x.abs())


def symexp(x: th.Tensor) -> th.Tensor:
    """``sign(x) * (exp(|x|) - 1)``, elementwise: the inverse of :func:`symlog`."""
    return th.sign(x) * th.expm1(x.abs())


def two_hot(values: th.Tensor, bins: th.Tensor) -> th.Tensor:
    """
    Two-hot encoding: the weights on the two bins that bracket each value, which interpolate it linearly
    (``weights @ bins == value``, weights summing to 1). A value on a bin is one-hot; a value outside
    ``[bins[0], bins[-1]]`` is clipped to the end bin.

    :param values: (...)
    :param bins: increasing bin positions, (K,) with K >= 2
    :return: weights, (..., K)
    """
    values = values.clamp(bins[0], bins[-1])
    above = th.searchsorted(bins, values).clamp_(1, bins.shape[0] - 1)  # the first bin >= value, at least the second
    below = above - 1
    weight_above = (values - bins[below]) / (bins[above] - bins[below])  # in [0, 1]
    weights = th.zeros(*values.shape, bins.shape[0], dtype=values.dtype, device=values.device)
    weights.scatter_(-1, below.unsqueeze(-1), (1.0 - weight_above).unsqueeze(-1))
    return weights.scatter_(-1, above.unsqueeze(-1), weight_above.unsqueeze(-1))


def two_hot_mean(logits: th.Tensor, bins: th.Tensor) -> th.Tensor:
    """
    The mean bin position under ``softmax(logits)``, the inverse of a two-hot encoding.

    :param logits: (..., K)
    :param bins: bin positions, (K,)
    :return: (...)
    """
    return logits.softmax(dim=-1) @ bins
