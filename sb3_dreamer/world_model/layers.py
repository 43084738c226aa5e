"""
Building blocks: the parts of a linear layer on concatenated inputs (both algorithms), and DreamerV3's (the current
official code, danijar/dreamerv3 ``embodied/jax/nets.py``): RMS-normalised layers with SiLU, the block-diagonal linear
layer of its GRU and decoder, and its fan-in truncated-normal initialisation with an output scale.
"""

import math

import torch as th
from torch import nn

#: epsilon of DreamerV3's RMSNorm
RMS_NORM_EPS = 1e-4
#: std of a standard normal truncated to [-2, 2] is 0.8796: dividing by it gives the truncated draws unit variance
TRUNCATED_NORMAL_STD = 0.87962566103423978


#: the values of ``part_init``: how the parts of a layer on concatenated inputs draw their initial weights
PART_INITS = ("layer", "part")


class PartLinear(nn.Linear):
    """
    One part of a linear layer on concatenated inputs, as a linear map (..., in_features) -> (..., out_features) whose
    outputs are summed with the other parts' (e.g. the deterministic and the stochastic state read apart, so that a
    state of categorical indices is read by gathering). With ``part_init="layer"``, initialised as PyTorch initialises
    the whole layer: weights and bias uniform in +-1/sqrt(``layer_in_features``), the whole layer's fan-in; with
    ``"part"``, as an ``nn.Linear`` of its own inputs: +-1/sqrt(``in_features``), larger for a small part.

    :param in_features: inputs of this part
    :param out_features: outputs of the layer
    :param layer_in_features: inputs of the whole layer, all parts together
    :param bias: whether this part holds the layer's bias (one part does)
    :param part_init: ``"layer"`` (the whole layer's fan-in: one ``nn.Linear`` on the concatenation) or ``"part"``
        (the part's own)
    """

    def __init__(
        self, in_features: int, out_features: int, layer_in_features: int, bias: bool = True, part_init: str = "layer"
    ) -> None:
        if not 0 < in_features <= layer_in_features:
            raise ValueError(f"A part of {in_features} inputs cannot belong to a layer of {layer_in_features} inputs")
        if part_init not in PART_INITS:
            raise ValueError(f"Unknown part_init {part_init!r}: use one of {PART_INITS}")
        self.layer_in_features = layer_in_features
        self.part_init = part_init
        super().__init__(in_features, out_features, bias)

    def reset_parameters(self) -> None:
        if self.part_init == "part":
            super().reset_parameters()
            return
        # nn.Linear's own draws (the same random numbers, in the same order), with the whole layer's bound
        bound = 1.0 / math.sqrt(self.layer_in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)


class RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` (scale only, no shift) over the last dimension, computed in float32 and returned in the input's
    dtype, as DreamerV3 normalises under bfloat16 too."""

    def __init__(self, dim: int, eps: float = RMS_NORM_EPS) -> None:
        super().__init__(dim, eps=eps)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return super().forward(x.float()).to(x.dtype)


class BlockLinear(nn.Module):
    """
    A block-diagonal linear layer: the input (..., in_features) is split into ``blocks`` equal groups, each mapped by its
    own weight (in_features / blocks, out_features / blocks), then a bias (out_features) is added.

    :param in_features: input size, a multiple of ``blocks``
    :param out_features: output size, a multiple of ``blocks``
    :param blocks: number of groups
    """

    def __init__(self, in_features: int, out_features: int, blocks: int) -> None:
        super().__init__()
        if in_features % blocks or out_features % blocks:
            raise ValueError(f"BlockLinear needs sizes divisible by blocks={blocks}, got {in_features} -> {out_features}")
        self.in_features, self.out_features, self.blocks = in_features, out_features, blocks
        self.weight = nn.Parameter(th.empty(blocks, in_features // blocks, out_features // blocks))
        self.bias = nn.Parameter(th.zeros(out_features))
        trunc_normal_fan_in_(self.weight, in_features)

    def forward(self, x: th.Tensor) -> th.Tensor:
        """(..., in_features) -> (..., out_features)"""
        groups = x.unflatten(-1, (self.blocks, -1)).transpose(0, -2) if x.dim() == 2 else None
        if groups is not None:
            # (blocks, N, in / blocks) @ (blocks, in / blocks, out / blocks): one batched matmul
            return th.baddbmm(self.bias.view(self.blocks, 1, -1), groups, self.weight).transpose(0, 1).flatten(1)
        output = th.einsum("...gi,gio->...go", x.unflatten(-1, (self.blocks, -1)), self.weight)
        return output.flatten(-2) + self.bias


def trunc_normal_fan_in_(weight: th.Tensor, fan_in: int, scale: float = 1.0) -> th.Tensor:
    """
    Fill ``weight`` in place with DreamerV3's ``trunc_normal_in``: a normal truncated to two standard deviations whose
    variance is ``scale**2 / fan_in``; ``scale=0`` gives zeros (its output layers with ``outscale`` 0).
    """
    std = math.sqrt(1.0 / fan_in) / TRUNCATED_NORMAL_STD
    with th.no_grad():
        nn.init.trunc_normal_(weight, 0.0, std, -2.0 * std, 2.0 * std)
        return weight.mul_(scale)


def fan_in(layer: nn.Linear | nn.Conv2d | nn.ConvTranspose2d | BlockLinear) -> int:
    """Inputs per output of a linear, conv or block-linear layer, as DreamerV3 counts them (a block layer: all inputs)."""
    if isinstance(layer, BlockLinear):
        return layer.in_features
    if isinstance(layer, nn.ConvTranspose2d):
        return layer.weight.shape[0] * math.prod(layer.kernel_size)
    return math.prod(layer.weight.shape[1:])


def dreamerv3_init(module: nn.Module) -> None:
    """DreamerV3's initialisation of every linear and conv layer of ``module``: ``trunc_normal_in`` weights, zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, BlockLinear)):
            trunc_normal_fan_in_(layer.weight, fan_in(layer))
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def output_layer(input_dim: int, output_dim: int, outscale: float) -> nn.Linear:
    """A linear output layer initialised as DreamerV3's ``outscale``: 0 (two-hot heads), 0.01 (actor) or 1."""
    layer = nn.Linear(input_dim, output_dim)
    trunc_normal_fan_in_(layer.weight, input_dim, outscale)
    nn.init.zeros_(layer.bias)
    return layer


def norm_layers(input_dim: int, units: int, n_layers: int) -> nn.Sequential:
    """``n_layers`` of Linear -> RMSNorm -> SiLU (DreamerV3's MLP body), the first reading ``input_dim``."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(input_dim if i == 0 else units, units), RMSNorm(units), nn.SiLU()]
    body = nn.Sequential(*layers)
    dreamerv3_init(body)
    return body
