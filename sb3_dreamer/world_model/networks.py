"""
Encoders, decoders and MLP heads of the world model and the actor-critic.

Under mixed-precision autocast the decoders and heads still return float32: their outputs are the parameters of
distributions and losses, which are computed in float32.
"""

import math
from typing import cast

import torch as th
from torch import nn

from sb3_dreamer.common.checks import channels_first_reading
from sb3_dreamer.world_model.layers import PartLinear, RMSNorm, norm_layers, output_layer, trunc_normal_fan_in_
from sb3_dreamer.world_model.rssm import ModelState, stoch_linear


def mlp(input_dim: int, output_dim: int, hidden_dim: int, n_layers: int, activation_fn: type[nn.Module]) -> nn.Sequential:
    """``n_layers`` hidden layers of ``hidden_dim`` units with ``activation_fn``, then a linear output layer."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(input_dim if i == 0 else hidden_dim, hidden_dim), activation_fn()]
    layers.append(nn.Linear(hidden_dim if n_layers > 0 else input_dim, output_dim))
    return nn.Sequential(*layers)


class LatentMLP(nn.Module):
    """
    MLP on a model state (deter, stoch): the actor, critic, reward and discount heads.

    Its first layer reads ``deter`` and ``stoch`` with two linear maps whose sum is one linear layer on their
    concatenation, so that a state holding categorical indices is read by gathering (:func:`stoch_linear`).

    :param deter_size: size of the deterministic state
    :param stoch_dim: size of the flat stochastic state
    :param output_dim: size of the output
    :param hidden_dim: hidden units per layer
    :param n_layers: number of hidden layers (at least 1)
    :param activation_fn: activation of the hidden layers
    :param zero_output: initialise the output layer to zero (DreamerV3's two-hot reward head and critic)
    :param part_init: how the first layer's two parts draw their initial weights (:class:`PartLinear`)
    """

    def __init__(
        self,
        deter_size: int,
        stoch_dim: int,
        output_dim: int,
        hidden_dim: int,
        n_layers: int,
        activation_fn: type[nn.Module],
        zero_output: bool = False,
        part_init: str = "layer",
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"A head needs at least one hidden layer, got head_layers={n_layers}")
        layer_in_features = deter_size + stoch_dim
        self.deter_in = PartLinear(deter_size, hidden_dim, layer_in_features, part_init=part_init)
        self.stoch_in = PartLinear(stoch_dim, hidden_dim, layer_in_features, bias=False, part_init=part_init)
        self.activation = activation_fn()
        self.body = mlp(hidden_dim, output_dim, hidden_dim, n_layers - 1, activation_fn)
        self.zero_output = zero_output
        if zero_output:
            self.zero_output_layer()

    def zero_output_layer(self) -> None:
        output = cast(nn.Linear, self.body[-1])  # mlp()'s output layer
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)

    def forward(self, state: ModelState) -> th.Tensor:
        """State (N, ...) -> (N, output_dim), float32"""
        return self.body(self.activation(self.deter_in(state.deter) + stoch_linear(self.stoch_in, state))).float()


#: the values of the policy's ``weight_init``
WEIGHT_INITS = ("torch", "glorot")


def glorot_init(module: nn.Module) -> None:
    """
    Keras' default initialisation, the official DreamerV2's: Glorot-uniform weights and zero biases for every linear,
    conv and GRU layer in ``module``, the parts of a layer on concatenated inputs (:class:`PartLinear`) with the whole
    layer's fans (with their own where ``part_init="part"``). Output layers that start at zero
    (``LatentMLP(zero_output=True)``) stay zero.
    """
    for layer in module.modules():
        if isinstance(layer, PartLinear) and layer.part_init == "layer":
            bound = math.sqrt(6.0 / (layer.layer_in_features + layer.out_features))
            nn.init.uniform_(layer.weight, -bound, bound)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.GRUCell):
            nn.init.xavier_uniform_(layer.weight_ih)
            nn.init.xavier_uniform_(layer.weight_hh)
            nn.init.zeros_(layer.bias_ih)
            nn.init.zeros_(layer.bias_hh)
    for layer in module.modules():
        if isinstance(layer, LatentMLP) and layer.zero_output:
            layer.zero_output_layer()


def conv_strides(image_side: int, n_layers: int, kernel_size: int, max_side: int) -> list[int]:
    """
    Strides of the conv stack: stride 2 while the side entering a layer is over ``2 * max_side``, else 1.
    MinAtar's 10x10 frames keep their full resolution; 64x64 or 84x84 frames are downsampled.
    """
    strides = []
    side = image_side
    for _ in range(n_layers):
        strides.append(2 if side > 2 * max_side else 1)
        side = (side - kernel_size) // strides[-1] + 1
    return strides


class ConvEncoder(nn.Module):
    """
    Conv stack for channels-first images, then a linear embedding.

    The convolutions of a batch run on channels-last tensors (``torch.channels_last``), which oneDNN's CPU kernels
    take without reordering (on MinAtar's 10x10 frames a gradient step with 2 threads measured 5-9% faster); a single
    observation, as when acting in one env, keeps its layout (the reorder cost more than it saved: 122 against 100 us
    per embedding with 1 thread). Inputs and outputs keep the usual (N, C, H, W) indexing.

    :param observation_shape: (C, H, W)
    :param embedding_dim: size of the output embedding
    :param depth: channels of the first conv layer, doubled at each further layer
    :param n_layers: number of conv layers
    :param kernel_size: kernel size of every conv layer
    :param activation_fn: activation after each conv layer
    :param max_conv_side: layers whose input side is over twice this use stride 2
    :param input_offset: added to the images before the first conv layer (-0.5 centres images in [0, 1], as the
        official DreamerV2 does)
    """

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        embedding_dim: int,
        depth: int,
        n_layers: int,
        kernel_size: int,
        activation_fn: type[nn.Module],
        max_conv_side: int = 8,
        input_offset: float = 0.0,
    ) -> None:
        super().__init__()
        channels, height, width = observation_shape
        self.input_offset = input_offset
        self.observation_shape = tuple(observation_shape)
        self.kernel_size = kernel_size
        self.strides = conv_strides(min(height, width), n_layers, kernel_size, max_conv_side)
        self.channels = [channels] + [depth * 2**i for i in range(n_layers)]
        # Side lengths (H, W) of the input and of each conv output, used by the decoder to mirror the stack.
        self.sizes = [(height, width)]
        layers: list[nn.Module] = []
        for i, stride in enumerate(self.strides):
            layers += [nn.Conv2d(self.channels[i], self.channels[i + 1], kernel_size, stride), activation_fn()]
            h, w = self.sizes[-1]
            self.sizes.append(((h - kernel_size) // stride + 1, (w - kernel_size) // stride + 1))
        if min(self.sizes[-1]) < 1:
            raise ValueError(
                f"An image side of {min(height, width)} is too small for {n_layers} conv layers of kernel {kernel_size}: "
                f"{channels_first_reading(self.observation_shape)}"
            )
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.conv_output_dim = self.channels[-1] * math.prod(self.sizes[-1])
        self.linear = nn.Linear(self.conv_output_dim, embedding_dim)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        """(N, C, H, W) float -> (N, embedding_dim)"""
        if self.input_offset:
            observations = observations + self.input_offset
        if observations.shape[0] > 1:
            observations = observations.contiguous(memory_format=th.channels_last)
        return self.linear(self.convs(observations))


class ConvDecoder(nn.Module):
    """
    Mirror of a :class:`ConvEncoder`: features -> the mean (or logits) of every pixel. Its transposed convolutions
    run on channels-last tensors, like the encoder's. An encoder that centres its images (``input_offset``) gets a
    decoder that predicts centred images, returned in the images' own range: the last layer's output minus that offset.

    :param feature_dim: size of the model state features
    :param encoder: the encoder to mirror (its shapes and input offset only; no weights are shared)
    :param activation_fn: activation after each transposed conv layer but the last
    """

    def __init__(self, feature_dim: int, encoder: ConvEncoder, activation_fn: type[nn.Module]) -> None:
        super().__init__()
        self.observation_shape = encoder.observation_shape
        self.output_offset = -encoder.input_offset
        self.conv_input_shape = (encoder.channels[-1], *encoder.sizes[-1])
        self.linear = nn.Linear(feature_dim, encoder.conv_output_dim)
        layers: list[nn.Module] = []
        n_layers = len(encoder.strides)
        for i in reversed(range(n_layers)):
            stride = encoder.strides[i]
            (in_h, in_w), (out_h, out_w) = encoder.sizes[i + 1], encoder.sizes[i]
            output_padding = (
                out_h - ((in_h - 1) * stride + encoder.kernel_size),
                out_w - ((in_w - 1) * stride + encoder.kernel_size),
            )
            layers.append(
                nn.ConvTranspose2d(
                    encoder.channels[i + 1], encoder.channels[i], encoder.kernel_size, stride, output_padding=output_padding
                )
            )
            if i > 0:
                layers.append(activation_fn())
        self.deconvs = nn.Sequential(*layers)

    def forward(self, features: th.Tensor) -> th.Tensor:
        """(N, feature_dim) -> (N, C, H, W), float32 and contiguous"""
        conv_input = self.linear(features).view(-1, *self.conv_input_shape).contiguous(memory_format=th.channels_last)
        output = self.deconvs(conv_input).float().contiguous()
        return output + self.output_offset if self.output_offset else output


class MlpEncoder(nn.Module):
    """Flat observations (N, D) -> embedding (N, embedding_dim)."""

    def __init__(
        self, observation_dim: int, embedding_dim: int, hidden_dim: int, n_layers: int, activation_fn: type[nn.Module]
    ) -> None:
        super().__init__()
        self.net = mlp(observation_dim, embedding_dim, hidden_dim, n_layers, activation_fn)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations.flatten(1))


class MlpDecoder(nn.Module):
    """Features (N, feature_dim) -> the mean of every observation entry (N, *observation_shape)."""

    def __init__(
        self,
        feature_dim: int,
        observation_shape: tuple[int, ...],
        hidden_dim: int,
        n_layers: int,
        activation_fn: type[nn.Module],
    ) -> None:
        super().__init__()
        self.observation_shape = tuple(observation_shape)
        self.net = mlp(feature_dim, math.prod(observation_shape), hidden_dim, n_layers, activation_fn)

    def forward(self, features: th.Tensor) -> th.Tensor:
        """(N, feature_dim) -> (N, *observation_shape), float32"""
        return self.net(features).float().view(-1, *self.observation_shape)


class NormLatentMLP(nn.Module):
    """
    DreamerV3's head on a model state: ``n_layers`` of Linear -> RMSNorm -> SiLU, the first reading ``deter`` and
    ``stoch`` with two linear maps (one layer on their concatenation, see :class:`LatentMLP`), then an output layer
    initialised with DreamerV3's ``outscale``; every other weight ``trunc_normal_in``.

    :param deter_size: size of the deterministic state
    :param stoch_dim: size of the flat stochastic state
    :param output_dim: size of the output
    :param units: units of each hidden layer
    :param n_layers: number of hidden layers (at least 1)
    :param outscale: scale of the output layer's initial weights: 0 (two-hot heads), 0.01 (actor), 1 (continue head)
    """

    def __init__(self, deter_size: int, stoch_dim: int, output_dim: int, units: int, n_layers: int, outscale: float) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"A head needs at least one hidden layer, got {n_layers}")
        self.deter_in = nn.Linear(deter_size, units)
        self.stoch_in = nn.Linear(stoch_dim, units, bias=False)
        for layer in (self.deter_in, self.stoch_in):
            trunc_normal_fan_in_(layer.weight, deter_size + stoch_dim)
        nn.init.zeros_(self.deter_in.bias)
        self.first_norm = nn.Sequential(RMSNorm(units), nn.SiLU())
        self.body = nn.Sequential(norm_layers(units, units, n_layers - 1), output_layer(units, output_dim, outscale))

    def forward(self, state: ModelState) -> th.Tensor:
        """State (N, ...) -> (N, output_dim), float32"""
        return self.body(self.first_norm(self.deter_in(state.deter) + stoch_linear(self.stoch_in, state))).float()


class NormMlpEncoder(nn.Module):
    """DreamerV3's vector encoder: flat observations (N, D) -> ``n_layers`` x [Linear -> RMSNorm -> SiLU] (N, units)."""

    def __init__(self, observation_dim: int, units: int, n_layers: int) -> None:
        super().__init__()
        self.net = norm_layers(observation_dim, units, n_layers)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations.flatten(1))


class NormMlpDecoder(nn.Module):
    """DreamerV3's vector decoder: features (N, feature_dim) -> an MLP of normed layers -> (N, *observation_shape)."""

    def __init__(self, feature_dim: int, observation_shape: tuple[int, ...], units: int, n_layers: int) -> None:
        super().__init__()
        self.observation_shape = tuple(observation_shape)
        output_dim = math.prod(observation_shape)
        self.net = nn.Sequential(norm_layers(feature_dim, units, n_layers), output_layer(units, output_dim, 1.0))

    def forward(self, features: th.Tensor) -> th.Tensor:
        """(N, feature_dim) -> (N, *observation_shape), float32"""
        return self.net(features).float().view(-1, *self.observation_shape)
