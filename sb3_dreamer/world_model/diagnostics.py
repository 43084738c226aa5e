"""World-model diagnostics: open-loop predictions ("dreams") beside the truth."""

import io
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch as th
from PIL import Image
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from tensorboard.compat.proto.summary_pb2 import Summary

from sb3_dreamer.common.buffers import SequenceSamples
from sb3_dreamer.common.palette import PALETTE
from sb3_dreamer.world_model.rssm import LatentState, reset_episodes

if TYPE_CHECKING:
    from sb3_dreamer.world_model.model import WorldModel

#: TensorBoard tag of the dream videos (animated GIFs under Images)
DREAM_TAG = "diagnostics/dream"


class OpenLoopPrediction(NamedTuple):
    """Observed for ``context`` steps, then imagined with the replayed actions, all time-major."""

    #: replayed observations, (T, N, *obs_shape) float
    observations: th.Tensor
    #: decoded model states (posterior in the context, prior after), (T, N, *obs_shape) float
    predictions: th.Tensor
    #: replayed rewards, (T, N)
    rewards: th.Tensor
    #: predicted rewards, (T, N)
    predicted_rewards: th.Tensor


@th.no_grad()
def open_loop_prediction(
    world_model: "WorldModel", samples: SequenceSamples, n_sequences: int, context: int
) -> OpenLoopPrediction:
    """
    Filter the first ``context`` observations of ``n_sequences`` replayed windows, then roll the prior forward
    with the replayed actions (mode of the latents) and decode every state.

    :param world_model: the world model
    :param samples: replayed windows, (T, B, ...)
    :param n_sequences: how many windows to use (the first N of the batch)
    :param context: observed steps before the model predicts open loop
    """
    rssm = world_model.rssm
    observations = world_model.preprocess(samples.observations[:, :n_sequences])  # (T, N, *obs_shape)
    actions = world_model.action_dist.to_vector(samples.actions[:, :n_sequences])  # (T, N, action_dim)
    is_first = samples.is_first[:, :n_sequences]  # (T, N)
    observed = rssm.observe(
        world_model.embed(observations[:context]),
        actions[:context],
        is_first[:context],
        rssm.initial_state(n_sequences, observations.device),
    ).posterior
    deters, stochs = list(observed.deter), list(observed.stoch)
    state = LatentState(deters[-1], stochs[-1])
    for t in range(context, observations.shape[0]):
        state, action = reset_episodes(state, actions[t], is_first[t])
        state = rssm.imagine_step(state, action, deterministic=True)
        deters.append(state.deter)
        stochs.append(state.stoch)
    states = LatentState(th.stack(deters).flatten(0, 1), th.stack(stochs).flatten(0, 1))  # (T * N, ...)
    return OpenLoopPrediction(
        observations,
        world_model.decode(states).view_as(observations),
        samples.rewards[:, :n_sequences],
        world_model.reward(states).view_as(is_first),
    )


def to_rgb(frames: th.Tensor, min_side: int = 64) -> th.Tensor:
    """
    Channels-first frames in [0, 1] -> RGB uint8, scaled up (nearest) so the shorter side is at least ``min_side``.

    One channel is shown in grey, three as RGB, any other count as the sum of one colour per channel
    (the palette of the MinAtar renderer).

    :param frames: (..., C, H, W) float
    :return: (..., 3, H * k, W * k) uint8
    """
    channels = frames.shape[-3]
    if channels == 1:
        rgb = frames.expand(*frames.shape[:-3], 3, *frames.shape[-2:])
    elif channels == 3:
        rgb = frames
    else:
        palette = th.as_tensor(PALETTE[1:], dtype=frames.dtype, device=frames.device) / 255.0  # (10, 3)
        colours = palette[th.arange(channels, device=frames.device) % len(palette)]  # (C, 3)
        rgb = th.einsum("...chw,cr->...rhw", frames, colours)
    scale = max(1, -(-min_side // min(frames.shape[-2:])))
    rgb = rgb.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    return (rgb.clamp(0.0, 1.0) * 255).to(th.uint8)


def dream_frames(prediction: OpenLoopPrediction) -> th.Tensor:
    """
    Truth, model and absolute error side by side, for each sequence.

    :return: frames (T, N, 3, H', 3 * W') uint8, the panels scaled up as by :func:`to_rgb`
    """
    error = (prediction.predictions - prediction.observations).abs()
    panels = [to_rgb(x) for x in (prediction.observations, prediction.predictions, error)]  # (T, N, 3, H', W')
    return th.cat(panels, dim=-1)  # (T, N, 3, H', 3 * W')


def dream_video(prediction: OpenLoopPrediction) -> th.Tensor:
    """
    Truth, model and absolute error side by side, sequences stacked vertically.

    :return: frames (T, N * H', 3 * W', 3) uint8
    """
    return dream_frames(prediction).permute(0, 1, 3, 4, 2).flatten(1, 2)  # (T, N * H', 3 * W', 3)


def write_gif_summary(logger: Logger, tag: str, frames: np.ndarray, fps: float, step: int) -> None:
    """
    Write an animated GIF to the TensorBoard outputs of ``logger`` (shown under Images).

    SB3's ``Video`` goes through ``SummaryWriter.add_video``, which needs moviepy 1.x; this encodes the GIF
    with Pillow instead.

    :param frames: (T, H, W, 3) uint8
    """
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    height, width = frames.shape[1:3]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue())
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    for output in logger.output_formats:
        if isinstance(output, TensorBoardOutputFormat):
            output.writer._get_file_writer().add_summary(summary, step)
