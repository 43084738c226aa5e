"""
What a benchmark run's final world model makes of the frames of its own episodes, channel by channel: whether it
recognises a frame's objects once it has seen the frame (the posterior), and whether it predicts them the step before
(the prior, what imagination sees). For binary image observations, as MinAtar's (a 0/1 channel an object kind).

The run's final model plays ``--episodes`` episodes (its sampled policy, as in training) on the zoo's test env of the
run's saved settings, seeded as the final score's. At each env step it decodes the frame that arrived from two states
(their latents' modes, as ``scripts/reward_prediction.py``): the prior, one sequence-model step from the acting state
and the action, and the posterior, after the frame. The decoder's mean of a pixel is its probability with the
Bernoulli likelihood (the Gaussian mean, clamped to [0, 1], with the others).

Per run, a row of a markdown table: the on pixels (1s) a frame; each state's mean at the on pixels (1 for a model
that draws every object where it is, 0 for one that draws none) and its mass at the off pixels a frame (the sum of
its means there: what it draws where nothing is, to set beside the on pixels); and the posterior's mean at the on
pixels of each channel (named as MinAtar names them), where a world model that draws the large objects but not the
small ones (the one-pixel trails of Freeway's cars, which tell their speeds) shows the channels it misses.

Usage:
  python scripts/reconstruction.py --root benchmarks/minatar-100k --algos dreamerv3@width2x \\
      --envs Freeway-MinAtar Asterix-MinAtar --seeds 0 --episodes 2
"""

from dataclasses import dataclass

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.benchmark.model_play import ModelStep, final_model_table, play_steps, table_measure
from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.envs.pomdp import POMDP_CHANNELS

COLUMNS = (
    "episodes",
    "on pixels a frame",
    "posterior at on pixels",
    "posterior mass off, a frame",
    "prior at on pixels",
    "prior mass off, a frame",
    "posterior at on pixels, by channel",
)


@dataclass(frozen=True)
class ChannelSums:
    """Sums over the frames read, per image channel (channels,): on pixels, and each state's means at and off them."""

    #: the channels' names, (channels,)
    names: tuple[str, ...]
    frames: int
    on_pixels: np.ndarray
    posterior_on: np.ndarray
    posterior_off: np.ndarray
    prior_on: np.ndarray
    prior_off: np.ndarray
    #: return of each episode, (episodes,)
    episode_returns: np.ndarray


def channel_names(env: VecEnv, channels: int) -> tuple[str, ...]:
    """MinAtar's names of the ``channels`` image channels of a one-env ``env`` (its POMDP ids' too); else their indices."""
    try:
        game, minatar = env.get_attr("game")[0], env.get_attr("minatar")[0]
    except AttributeError:
        return tuple(f"channel {index}" for index in range(channels))
    names = sorted(minatar.env.channels, key=minatar.env.channels.get)
    kept = [names[index] for index in POMDP_CHANNELS.get(game, ())]
    if channels not in (len(names), len(kept)):
        raise ValueError(
            f"{game}: the model reads {channels} image channels, MinAtar's observation has {len(names)} "
            f"({len(kept)} in the POMDP id)"
        )
    return tuple(names if channels == len(names) else kept)


def play(model: DreamerAlgorithm, env: VecEnv, episodes: int, deterministic: bool = False) -> ChannelSums:
    """``episodes`` episodes of ``model`` on the one-env ``env``, with its two states' decodings of every frame."""
    shape = model.observation_space.shape
    if shape is None or len(shape) != 3 or model.observation_space.high.max() != 1:
        raise ValueError(
            f"the reconstruction table reads binary image observations (C, H, W) in {{0, 1}}, got {model.observation_space}"
        )
    world_model = model.policy.world_model
    sums = {name: np.zeros(shape[0]) for name in ("on_pixels", "posterior_on", "posterior_off", "prior_on", "prior_off")}
    frames = 0

    def record(step: ModelStep) -> None:
        nonlocal frames
        on = step.arrived.astype(bool)
        posterior, prior = (world_model.decode(state)[0].float().numpy() for state in (step.posterior, step.prior))
        sums["on_pixels"] += on.sum((1, 2))
        for name, decoded in (("posterior", posterior), ("prior", prior)):
            sums[f"{name}_on"] += np.where(on, decoded, 0.0).sum((1, 2))
            sums[f"{name}_off"] += np.where(on, 0.0, decoded).sum((1, 2))
        frames += 1

    episode_returns = play_steps(model, env, episodes, record, deterministic)
    return ChannelSums(channel_names(env, shape[0]), frames, **sums, episode_returns=episode_returns)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN where the denominator is 0."""
    return numerator / denominator if denominator else float("nan")


def summary(sums: ChannelSums) -> dict[str, float]:
    """The table's columns (:data:`COLUMNS`) for one run, the by-channel column as ``"... by channel: NAME"`` entries."""
    on = sums.on_pixels.sum()
    values = {
        "episodes": len(sums.episode_returns),
        "on pixels a frame": ratio(on, sums.frames),
        "posterior at on pixels": ratio(sums.posterior_on.sum(), on),
        "posterior mass off, a frame": ratio(sums.posterior_off.sum(), sums.frames),
        "prior at on pixels": ratio(sums.prior_on.sum(), on),
        "prior mass off, a frame": ratio(sums.prior_off.sum(), sums.frames),
    }
    by_channel = {
        f"{COLUMNS[-1]}: {name}": ratio(at_on, channel_on)
        for name, at_on, channel_on in zip(sums.names, sums.posterior_on, sums.on_pixels, strict=True)
    }
    return {key: float(value) for key, value in {**values, **by_channel}.items()}


def cells(values: dict[str, float]) -> list[str]:
    """A table row's cells: means to 3 decimals, pixel counts and masses to 2, the channels as ``name value`` pairs."""
    prefix = f"{COLUMNS[-1]}: "
    by_channel = ", ".join(f"{key[len(prefix) :]} {value:.2f}" for key, value in values.items() if key.startswith(prefix))
    masses = ("on pixels a frame", "posterior mass off, a frame", "prior mass off, a frame")
    return (
        [f"{values['episodes']:.0f}"]
        + [f"{values[column]:.2f}" if column in masses else f"{values[column]:.3f}" for column in COLUMNS[1:-1]]
        + [by_channel]
    )


#: the table's cells after the run's (:data:`COLUMNS`) for a model playing episodes on an env
measure = table_measure(play, summary, cells)


def main(argv: list[str] | None = None) -> None:
    """Command line of ``scripts/reconstruction.py``: print the table of the selected runs."""
    final_model_table(argv, __doc__, "frames", COLUMNS, measure)
