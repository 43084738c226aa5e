"""Returns computed on imagined trajectories."""

import torch as th


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
