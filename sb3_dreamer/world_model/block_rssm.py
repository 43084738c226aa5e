"""The RSSM of the current official DreamerV3 (danijar/dreamerv3 ``dreamerv3/rssm.py``): a block GRU core."""

from typing import cast

import torch as th
from torch import nn

from sb3_dreamer.world_model.layers import BlockLinear, RMSNorm, norm_layers, output_layer, trunc_normal_fan_in_
from sb3_dreamer.world_model.rssm import ModelState, SequenceModel, stoch_linear


def normed_silu(units: int) -> nn.Sequential:
    """RMSNorm -> SiLU, what follows each hidden linear layer of DreamerV3."""
    return nn.Sequential(RMSNorm(units), nn.SiLU())


class BlockRSSM(SequenceModel):
    """
    DreamerV3's RSSM with categorical latents mixed with 1% uniform (``unimix``) and a block GRU core:

    ``x = cat(SiLU(N(W_h h)), SiLU(N(W_z z)), SiLU(N(W_a a / max(1, |a|))))``; in each of ``blocks`` groups g,
    ``y_g = SiLU(N(B_g [h_g, x]))`` (one block-diagonal layer; N, the RMSNorm, over all of ``y``), then
    ``r_g, c_g, u_g = split(G_g y_g)``; ``c = tanh(sigmoid(r) * c)``; ``u = sigmoid(u - 1)``; ``h' = u c + (1 - u) h``.
    The layer on ``[h_g, x]`` is computed as a block-diagonal map of ``h`` plus one dense map of ``x`` (the same weights
    as the official kernel of shape (groups, deter / groups + 3 hidden, deter / groups), without copying ``x`` per
    group). The prior is 2 x [Linear -> RMSNorm -> SiLU] -> logits, the posterior 1 x [Linear -> RMSNorm -> SiLU] on
    ``cat(h, embedding)`` -> logits; the initial state is zeros, and where an episode starts the state and the previous
    action are zeroed.

    :param action_dim: size of the action vector
    :param embedding_dim: size of the observation embedding
    :param deter_size: size of the recurrent state, a multiple of ``blocks``
    :param stoch_size: number of categorical latents
    :param class_size: classes of each
    :param hidden_size: units of the input projections, the prior and the posterior
    :param blocks: groups of the block GRU
    :param unimix: weight of the uniform mixed into the prior and posterior categoricals
    """

    def __init__(
        self,
        action_dim: int,
        embedding_dim: int,
        deter_size: int,
        stoch_size: int,
        class_size: int,
        hidden_size: int,
        blocks: int = 8,
        unimix: float = 0.01,
    ) -> None:
        # With fewer than 16 classes (size1m: 4), softmaxes along a transposed view: a quarter of a CPU gradient step
        super().__init__(stoch_size, class_size, deter_size, "discrete", 0.0, unimix, transposed_softmax=class_size < 16)
        if deter_size % blocks:
            raise ValueError(f"deter_size={deter_size} must be a multiple of blocks={blocks}")
        self.blocks = blocks
        self.deter_in = nn.Sequential(nn.Linear(deter_size, hidden_size), normed_silu(hidden_size))
        self.stoch_in = nn.Linear(self.stoch_dim, hidden_size)
        self.stoch_norm = normed_silu(hidden_size)
        self.action_in = nn.Sequential(nn.Linear(action_dim, hidden_size), normed_silu(hidden_size))
        # The hidden block layer on [h_g, x]: its h part block-diagonal, its x part dense; fan-in of the whole kernel
        self.hidden_from_deter = BlockLinear(deter_size, deter_size, blocks)
        self.hidden_from_inputs = nn.Linear(3 * hidden_size, deter_size, bias=False)
        self.hidden_norm = normed_silu(deter_size)
        self.gates = BlockLinear(deter_size, 3 * deter_size, blocks)
        self.prior_net = nn.Sequential(
            norm_layers(deter_size, hidden_size, 2), output_layer(hidden_size, self.latent.stats_dim, 1.0)
        )
        self.post_deter_in = nn.Linear(deter_size, hidden_size)
        self.post_embed_in = nn.Linear(embedding_dim, hidden_size, bias=False)
        self.post_norm = normed_silu(hidden_size)
        self.post_out = output_layer(hidden_size, self.latent.stats_dim, 1.0)
        for layer in (cast(nn.Linear, self.deter_in[0]), self.stoch_in, cast(nn.Linear, self.action_in[0])):
            trunc_normal_fan_in_(layer.weight, layer.in_features)
            nn.init.zeros_(layer.bias)
        block_fan_in = deter_size + 3 * hidden_size * blocks
        trunc_normal_fan_in_(self.hidden_from_deter.weight, block_fan_in)
        trunc_normal_fan_in_(self.hidden_from_inputs.weight, block_fan_in)
        for layer in (self.post_deter_in, self.post_embed_in):
            trunc_normal_fan_in_(layer.weight, deter_size + embedding_dim)
        nn.init.zeros_(self.post_deter_in.bias)

    def embed_action(self, action: th.Tensor) -> th.Tensor:
        # Actions beyond [-1, 1] (a Normal actor's samples) are scaled back onto it, as constants
        return self.action_in(action / action.detach().abs().clamp(min=1.0))

    def window_action_inputs(self, actions: th.Tensor, keep: th.Tensor) -> th.Tensor:
        # The projection has a bias and a norm: zero the actions themselves
        return self.embed_action(actions * keep)

    def _posterior(self, deter: th.Tensor, embed_in: th.Tensor) -> th.Tensor:
        hidden = self.post_norm(self.post_deter_in(deter) + embed_in)
        return self.latent.stats_from_output(self.post_out(hidden).float())

    def _recurrent(self, state: ModelState, action_in: th.Tensor) -> th.Tensor:
        deter = state.deter
        inputs = th.cat([self.deter_in(deter), self.stoch_norm(stoch_linear(self.stoch_in, state)), action_in], dim=-1)
        hidden = self.hidden_norm(self.hidden_from_deter(deter) + self.hidden_from_inputs(inputs))
        # (N, blocks, 3, deter / blocks): within each group, the reset, candidate and update gates
        reset, candidate, update = self.gates(hidden).float().unflatten(-1, (self.blocks, 3, -1)).unbind(-2)
        candidate = th.tanh(th.sigmoid(reset) * candidate).flatten(-2)
        update = th.sigmoid(update - 1.0).flatten(-2)
        return (update * candidate + (1.0 - update) * deter).to(deter.dtype)
