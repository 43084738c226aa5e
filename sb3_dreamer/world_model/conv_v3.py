"""
DreamerV3's image encoder and decoder (the current official code, danijar/dreamerv3 ``dreamerv3/rssm.py``: ``Encoder``
and ``Decoder``, image branch, ``strided: False``, ``outer: False``): 'same' convolutions with 2x2 max-pooling, RMSNorm
over the channels of each pixel and SiLU; the decoder mirrors it with nearest-neighbour upsampling.

Images are channels-first (N, C, H, W) floats in [0, 1]. As in :class:`~sb3_dreamer.world_model.networks.ConvEncoder`,
the convolutions of a batch run on channels-last tensors; the norms read them through a (N, H, W, C) view.
"""

import math

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_dreamer.world_model.layers import BlockLinear, RMSNorm, dreamerv3_init


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


class _ConvNormAct(nn.Module):
    """Conv k 'same' -> optional 2x2 max-pool -> RMSNorm over channels -> SiLU: (N, C_in, H, W) -> (N, C_out, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding="same")
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.norm = RMSNorm(out_channels)

    def forward(self, x: th.Tensor) -> th.Tensor:
        x = self.pool(self.conv(x))
        return F.silu(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


class ConvEncoderV3(nn.Module):
    """
    DreamerV3's image encoder: images - 0.5, then for each stage of ``depth * mults`` channels: Conv k s1 'same' ->
    2x2 max-pool -> RMSNorm over channels (per pixel) -> SiLU; then flatten in (H, W, C) order, as the official code.

    The official code pools at every stage (64x64 -> 4x4). Here a stage pools only while the smaller side entering it is
    at least ``2 * min_resolution``, so small images keep a usable grid: 64x64 -> 32, 16, 8, 4; 84x84 -> 42, 21, 10, 5;
    MinAtar's 10x10 -> 5x5 for every stage after the first; odd sides are floored, as ``nn.MaxPool2d``.

    :param observation_shape: (C, H, W)
    :param depth: base channel count (official 64; size12m 16, size1m 4)
    :param mults: channel multipliers of the stages
    :param kernel_size: conv kernel size (official 5)
    :param min_resolution: smallest side that pooling may produce
    """

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        depth: int,
        mults: tuple[int, ...] = (2, 3, 4, 4),
        kernel_size: int = 5,
        min_resolution: int = 4,
    ) -> None:
        super().__init__()
        if len(observation_shape) != 3:
            raise ValueError(f"ConvEncoderV3 needs a (C, H, W) observation shape, got {tuple(observation_shape)}")
        if not mults:
            raise ValueError("ConvEncoderV3 needs at least one stage: mults is empty")
        channels, height, width = observation_shape
        _check_positive(channels=channels, height=height, width=width, depth=depth, kernel_size=kernel_size)
        _check_positive(min_resolution=min_resolution, **{f"mults[{i}]": mult for i, mult in enumerate(mults)})
        self.observation_shape = tuple(observation_shape)
        self.kernel_size = kernel_size
        #: channels of the input and of each stage's output
        self.channels = [channels] + [depth * mult for mult in mults]
        #: (H, W) of the input and of each stage's output
        self.sizes = [(height, width)]
        #: whether each stage max-pools
        self.pooled: list[bool] = []
        stages = []
        for i in range(len(mults)):
            h, w = self.sizes[-1]
            self.pooled.append(min(h, w) >= 2 * min_resolution)
            self.sizes.append((h // 2, w // 2) if self.pooled[-1] else (h, w))
            stages.append(_ConvNormAct(self.channels[i], self.channels[i + 1], kernel_size, self.pooled[-1]))
        self.stages = nn.Sequential(*stages)
        self.output_dim = self.channels[-1] * math.prod(self.sizes[-1])
        dreamerv3_init(self)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        """(N, C, H, W) float in [0, 1] -> (N, output_dim)"""
        x = observations - 0.5
        if x.shape[0] > 1:
            x = x.contiguous(memory_format=th.channels_last)
        return self.stages(x).permute(0, 2, 3, 1).flatten(1)


class ConvDecoderV3(nn.Module):
    """
    DreamerV3's image decoder, the mirror of a :class:`ConvEncoderV3`: features cat(deter, stoch) -> pixel logits.

    Spatial stem (official ``bspace``): x0 = BlockLinear(deter -> h*w*C, ``blocks`` groups) with each group's output
    laid out as (h, w, C / blocks) and the groups concatenated along channels (einops ``'(g h w c) -> h w (g c)'``);
    x1 = Linear(stoch -> 2 * units) -> RMSNorm -> SiLU -> Linear(-> h*w*C as (h, w, C)); x = SiLU(RMSNorm(x0 + x1)),
    the norm over the C channels of each pixel. (h, w, C) is the encoder's last stage. The official code asserts that
    ``deter_size`` is divisible by ``blocks`` and its rearrange needs C divisible by ``blocks``; where either is not,
    x0 is a plain Linear(deter -> h*w*C as (h, w, C)) instead.

    Then, mirroring the encoder's stages in reverse: nearest-neighbour upsampling back to the side that stage read
    (only where it pooled; odd sides are restored exactly) -> Conv k 'same' to the channels that stage read ->
    RMSNorm -> SiLU, the last conv (to the image channels) without norm nor activation. The official code also
    upsamples before each conv. Its sigmoid is left to the caller, with the squared error.

    :param feature_dim: size of the features, deter_size + stoch size
    :param deter_size: size of the deterministic state, the first part of the features
    :param encoder: the encoder to mirror (its shapes only; no weights are shared)
    :param units: hidden size of the stoch branch of the stem (2 * units)
    :param blocks: groups of the stem's block-linear map of deter (official ``bspace`` 8)
    """

    def __init__(self, feature_dim: int, deter_size: int, encoder: ConvEncoderV3, units: int, blocks: int = 8) -> None:
        super().__init__()
        _check_positive(deter_size=deter_size, stoch_size=feature_dim - deter_size, units=units, blocks=blocks)
        self.observation_shape = encoder.observation_shape
        self.deter_size = deter_size
        channels, (height, width) = encoder.channels[-1], encoder.sizes[-1]
        #: (h, w, C) of the stem, channels last
        self.stem_shape = (height, width, channels)
        stem_size = math.prod(self.stem_shape)
        #: groups of the block-linear map of deter; 1 where it is a plain Linear
        self.blocks = blocks if deter_size % blocks == 0 and channels % blocks == 0 else 1
        self.deter_space = (
            BlockLinear(deter_size, stem_size, self.blocks) if self.blocks > 1 else nn.Linear(deter_size, stem_size)
        )
        self.stoch_space = nn.Sequential(
            nn.Linear(feature_dim - deter_size, 2 * units),
            RMSNorm(2 * units),
            nn.SiLU(),
            nn.Linear(2 * units, stem_size),
        )
        self.space_norm = RMSNorm(channels)
        #: for each conv in order: whether it upsamples its input first, and the (H, W) it outputs
        self.upsamples, self.output_sizes = encoder.pooled[::-1], encoder.sizes[-2::-1]
        self.stages = nn.ModuleList(
            _ConvNormAct(encoder.channels[i + 1], encoder.channels[i], encoder.kernel_size, pool=False)
            for i in reversed(range(1, len(encoder.pooled)))
        )
        self.output_conv = nn.Conv2d(encoder.channels[1], encoder.channels[0], encoder.kernel_size, padding="same")
        dreamerv3_init(self)

    def stem(self, features: th.Tensor) -> th.Tensor:
        """(N, feature_dim) -> (N, C, h, w) in channels-last memory"""
        deter, stoch = features[:, : self.deter_size], features[:, self.deter_size :]
        h, w, c = self.stem_shape
        x0 = self.deter_space(deter)
        if self.blocks > 1:
            x0 = x0.view(-1, self.blocks, h, w, c // self.blocks).permute(0, 2, 3, 1, 4)
        x = x0.reshape(-1, h, w, c) + self.stoch_space(stoch).view(-1, h, w, c)
        return F.silu(self.space_norm(x)).permute(0, 3, 1, 2)

    def forward(self, features: th.Tensor) -> th.Tensor:
        """(N, feature_dim) -> (N, C, H, W) pixel logits, float32 and contiguous"""
        x = self.stem(features)
        layers = [*self.stages, self.output_conv]
        for layer, upsample, size in zip(layers, self.upsamples, self.output_sizes, strict=True):
            if upsample:
                x = F.interpolate(x, size=size, mode="nearest")
            x = layer(x)
        return x.float().contiguous()
