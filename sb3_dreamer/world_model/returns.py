"""Returns computed on imagined trajectories, and DreamerV3's return scale."""

import torch as th
from torch import nn


def lambda_return(rewards: th.Tensor, values: th.Tensor, discounts: th.Tensor, lambda_: float) -> th.Tensor:
    """
    TD(lambda) returns of an imagined trajectory s_0 .. s_H, bootstrapped with the value of s_H.

    ``V_t = r_{t+1} + g_{t+1} * ((1 - lambda) * v(s_{t+1}) + lambda * V_{t+1})`` with ``V_H = v(s_H)``.

    :param rewards: r_1 .. r_H, the reward for arriving at each state, (H, N)
    :param values: v(s_1) .. v(s_H), (H, N)
    :param discounts: g_1 .. g_H, discount (gamma times continuation) at each state, (H, N)
    :param lambda_: weight of the longer returns, in [0, 1]
    :return: V_0 .. V_{H-1}, (H, N)
    """
    next_return = values[-1]
    returns = []
    for t in reversed(range(rewards.shape[0])):
        next_return = rewards[t] + discounts[t] * ((1.0 - lambda_) * values[t] + lambda_ * next_return)
        returns.append(next_return)
    return th.stack(returns[::-1])


class ReturnScale(nn.Module):
    """
    DreamerV3's return normalisation: the actor's advantages (or returns) are divided by ``max(1, S)``, where ``S`` is
    an exponential moving average of the range between the ``high`` and ``low`` quantiles of the lambda-returns of each
    batch. Large returns are scaled down to about [0, 1]; small ones are not scaled up, so that noise is not amplified
    where rewards are sparse.

    ``S`` is a buffer (saved with the model) that starts at 0 and stays on the device: :meth:`update` causes no
    host-device synchronisation.

    :param decay: weight of the previous ``S`` in the moving average (DreamerV3: 0.99)
    :param low: lower quantile, in [0, 1] (DreamerV3: 0.05)
    :param high: upper quantile, in [low, 1] (DreamerV3: 0.95)
    :param min_scale: the scale's lower bound (DreamerV3: 1)
    """

    range_ema: th.Tensor
    quantiles: th.Tensor

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95, min_scale: float = 1.0) -> None:
        super().__init__()
        self.decay, self.min_scale = decay, min_scale
        self.register_buffer("range_ema", th.zeros(()))
        self.register_buffer("quantiles", th.tensor([low, high]), persistent=False)

    @th.no_grad()
    def update(self, returns: th.Tensor) -> th.Tensor:
        """
        Move ``S`` towards the quantile range of ``returns`` (any shape, at most 2^24 entries, ``torch.quantile``'s
        limit) and return the scale ``max(min_scale, S)``, a 0-dim tensor on the device.
        """
        low, high = th.quantile(returns.flatten().float(), self.quantiles)
        self.range_ema.lerp_(high - low, 1.0 - self.decay)
        return self.range_ema.clamp(min=self.min_scale)
