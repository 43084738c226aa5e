"""DreamerV3's image encoder and decoder: shapes, pooling, per-pixel RMSNorm, the stem's block layout, gradients."""

import pytest
import torch as th
import torch.nn.functional as F

from sb3_dreamer.world_model.conv_v3 import ConvDecoderV3, ConvEncoderV3
from sb3_dreamer.world_model.layers import BlockLinear

DETER, STOCH = 32, 12


def encoder_decoder(shape: tuple[int, int, int], deter: int = DETER, depth: int = 2) -> tuple[ConvEncoderV3, ConvDecoderV3]:
    encoder = ConvEncoderV3(shape, depth=depth)
    return encoder, ConvDecoderV3(deter + STOCH, deter, encoder, units=8)


@pytest.mark.parametrize(
    "shape, pooled, side",
    [
        ((4, 10, 10), [True, False, False, False], 5),
        ((3, 64, 64), [True, True, True, True], 4),
        ((1, 84, 84), [True, True, True, True], 5),
        ((7, 5, 5), [False, False, False, False], 5),
    ],
)
def test_shapes(shape: tuple[int, int, int], pooled: list[bool], side: int) -> None:
    th.manual_seed(0)
    encoder, decoder = encoder_decoder(shape)
    assert encoder.pooled == pooled
    assert encoder.sizes[-1] == (side, side)
    assert encoder.output_dim == 8 * side * side
    for batch in (1, 3):
        embedding = encoder(th.rand(batch, *shape))
        assert embedding.shape == (batch, encoder.output_dim)
        logits = decoder(th.randn(batch, DETER + STOCH))
        assert logits.shape == (batch, *shape)
        assert logits.dtype == th.float32 and logits.is_contiguous()


def test_odd_sides_are_restored() -> None:
    encoder, decoder = encoder_decoder((2, 21, 42))
    assert encoder.sizes == [(21, 42), (10, 21), (5, 10), (5, 10), (5, 10)]
    assert decoder(th.randn(2, DETER + STOCH)).shape == (2, 2, 21, 42)


def test_gradients_reach_every_parameter() -> None:
    th.manual_seed(0)
    encoder, decoder = encoder_decoder((4, 10, 10))
    loss = encoder(th.rand(3, 4, 10, 10)).square().sum() + decoder(th.randn(3, DETER + STOCH)).square().sum()
    loss.backward()
    for name, parameter in [*encoder.named_parameters(), *decoder.named_parameters()]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_encoder_norm_is_per_pixel_over_channels() -> None:
    th.manual_seed(0)
    encoder = ConvEncoderV3((4, 10, 10), depth=2)
    seen = {}
    encoder.stages[1].norm.register_forward_hook(lambda module, inputs, output: seen.update(x=inputs[0], y=output))
    encoder(th.rand(3, 4, 10, 10))
    # (N, H, W, C): unit RMS over the channels of each pixel (scale 1), up to the eps 1e-4 added to the mean square
    assert seen["y"].shape == (3, 5, 5, encoder.channels[2])
    mean_square = seen["x"].square().mean(-1)
    th.testing.assert_close(seen["y"].square().mean(-1), mean_square / (mean_square + 1e-4))


def test_stem_block_layout_matches_per_group_computation() -> None:
    th.manual_seed(0)
    _, decoder = encoder_decoder((4, 10, 10))
    h, w, c = decoder.stem_shape
    assert decoder.blocks == 8 and isinstance(decoder.deter_space, BlockLinear)
    # zero the stoch branch: the stem is then SiLU(RMSNorm(x0))
    th.nn.init.zeros_(decoder.stoch_space[-1].weight)
    th.nn.init.zeros_(decoder.stoch_space[-1].bias)
    th.nn.init.normal_(decoder.deter_space.bias)
    features = th.randn(3, DETER + STOCH)
    deter = features[:, :DETER]
    weight, bias, size = decoder.deter_space.weight, decoder.deter_space.bias, h * w * c // 8
    # group g reads deter[g * 4 : (g + 1) * 4] and writes channels g * c / 8 ... (g + 1) * c / 8 of every pixel
    groups = [
        (deter[:, g * 4 : (g + 1) * 4] @ weight[g] + bias[g * size : (g + 1) * size]).view(3, h, w, c // 8) for g in range(8)
    ]
    expected = F.silu(F.rms_norm(th.cat(groups, -1), (c,), eps=1e-4)).permute(0, 3, 1, 2)
    th.testing.assert_close(decoder.stem(features), expected)


@pytest.mark.parametrize("deter, depth", [(36, 2), (32, 1)])
def test_stem_falls_back_to_linear(deter: int, depth: int) -> None:
    # deter not divisible by the 8 blocks, or 4 channels that cannot be split into 8 groups
    _, decoder = encoder_decoder((4, 10, 10), deter=deter, depth=depth)
    assert decoder.blocks == 1 and isinstance(decoder.deter_space, th.nn.Linear)
    assert decoder(th.randn(2, deter + STOCH)).shape == (2, 4, 10, 10)


def test_bfloat16_autocast_gives_float32_logits() -> None:
    encoder, decoder = encoder_decoder((4, 10, 10))
    with th.autocast("cpu", dtype=th.bfloat16):
        embedding = encoder(th.rand(3, 4, 10, 10))
        logits = decoder(th.randn(3, DETER + STOCH))
    assert embedding.shape == (3, encoder.output_dim)
    assert logits.dtype == th.float32 and logits.shape == (3, 4, 10, 10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(observation_shape=(4, 10, 10), depth=2, mults=()), "mults is empty"),
        (dict(observation_shape=(4, 10, 10), depth=0), "depth"),
        (dict(observation_shape=(10, 10), depth=2), r"\(C, H, W\)"),
        (dict(observation_shape=(4, 10, 10), depth=2, mults=(2, 0)), r"mults\[1\]"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ConvEncoderV3(**kwargs)


def test_decoder_needs_a_stoch_part() -> None:
    encoder = ConvEncoderV3((4, 10, 10), depth=2)
    with pytest.raises(ValueError, match="stoch_size"):
        ConvDecoderV3(DETER, DETER, encoder, units=8)
