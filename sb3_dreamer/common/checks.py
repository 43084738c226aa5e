"""Validation of spaces and hyperparameters, with messages that name the argument, its value and what is allowed."""

import math
import os
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np
from gymnasium import spaces


def check_spaces(algorithm: str, observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """
    :param algorithm: the algorithm's name, for the messages (``"DreamerV3"``)
    :raises ValueError: unless observations are a ``Box`` and actions ``Discrete`` starting at 0 or a ``Box`` of floats
        with finite bounds, ``low < high`` (the actor's actions in [-1, 1] are rescaled to them)
    """
    if not isinstance(observation_space, spaces.Box):
        raise ValueError(
            f"{algorithm} supports Box observation spaces only, got observation space {observation_space}: "
            "turn the observations into a Box with a wrapper, e.g. gymnasium.wrappers.FlattenObservation"
        )
    if isinstance(action_space, spaces.Discrete):
        if action_space.start != 0:
            n, start = int(action_space.n), int(action_space.start)
            raise ValueError(
                f"{algorithm} supports Discrete action spaces starting at 0 only, got action space {action_space}: shift "
                f"the actions with a wrapper, e.g. gymnasium.wrappers.TransformAction(env, lambda action: action + {start}, "
                f"gymnasium.spaces.Discrete({n}))"
            )
        return
    if not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"{algorithm} supports Discrete action spaces and Box action spaces of floats with finite bounds only, "
            f"got action space {action_space}"
        )
    if not np.issubdtype(action_space.dtype, np.floating):
        raise ValueError(
            f"{algorithm} supports Box action spaces of floats only, got action space {action_space} of dtype "
            f"{action_space.dtype}: use a Discrete action space, or a float Box and round the actions in a wrapper"
        )
    low, high = action_space.low, action_space.high
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ValueError(
            f"{algorithm} needs a Box action space with finite bounds and low < high (the actor's actions in [-1, 1] "
            f"are rescaled to them), got action space {action_space} with low={low} and high={high}: give the actions "
            "finite bounds with a wrapper, e.g. gymnasium.wrappers.TransformAction"
        )


def is_channels_last(shape: tuple[int, ...]) -> bool:
    """:return: whether a 3-d image shape looks like (H, W, C): its last side is the smallest and smaller than the first"""
    return len(shape) == 3 and int(np.argmin(shape)) == 2 and shape[2] < shape[0]


def channels_first_reading(shape: tuple[int, ...]) -> str:
    """:return: how CnnPolicy reads the 3-d image shape ``shape``, and how to give it channels-last images instead"""
    channels, height, width = shape
    return (
        f"the observations of shape {shape} were taken as channels-first (C, H, W), {channels} channels of "
        f"{height}x{width} images; if they are channels-last (H, W, C), transpose each observation, e.g. with "
        "gymnasium.wrappers.TransformObservation(env, lambda obs: obs.transpose(2, 0, 1), transposed_space)"
    )


def check_image_space(observation_space: spaces.Box) -> None:
    """
    Warn where a shape (A, A, B) may be channels-last square images with more channels than pixels on a side, and
    where float images may exceed 1 (SB3 scales uint8 images to [0, 1], not float ones).

    :raises ValueError: unless the observations are channels-first images (C, H, W), as the CNN encoder needs
    """
    shape = tuple(observation_space.shape)
    if len(shape) != 3:
        raise ValueError(
            f"CnnPolicy needs channels-first image observations (C, H, W), got shape {shape}: "
            "use MlpPolicy for flat observations"
        )
    if is_channels_last(shape):
        raise ValueError(
            f"CnnPolicy needs channels-first image observations (C, H, W), got shape {shape}, which looks channels-last "
            "(H, W, C): wrap the VecEnv in VecTransposeImage for uint8 images in [0, 255] (SB3 does it by itself), "
            "otherwise transpose each observation, e.g. with gymnasium.wrappers.TransformObservation"
            "(env, lambda obs: obs.transpose(2, 0, 1), transposed_space)"
        )
    if shape[0] == shape[1] != shape[2]:
        warnings.warn(f"CnnPolicy: {channels_first_reading(shape)}", stacklevel=2)
    high = float(np.max(observation_space.high))
    if np.issubdtype(observation_space.dtype, np.floating) and high > 1.0:
        warnings.warn(
            f"CnnPolicy: the float image observations of space {observation_space} have a high bound of {high}, above 1: "
            "they are used as they are (SB3 scales uint8 images only); scale them to [0, 1], e.g. with "
            "gymnasium.wrappers.TransformObservation(env, lambda obs: obs / 255.0, scaled_space) for images in [0, 255]",
            stacklevel=2,
        )


def describe(value: Any) -> str:
    """:return: ``value`` and its type, for error messages (``'32' (str)``)"""
    return f"{value!r} ({type(value).__name__})"


def _is_number(value: Any) -> bool:
    """:return: whether ``value`` is a real number, not a bool"""
    return isinstance(value, Real) and not isinstance(value, bool | np.bool_)


def _is_integer(value: Any) -> bool:
    """:return: whether ``value`` is an integer, not a bool"""
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_each(values: dict[str, Any], is_valid: Callable[[Any], bool], requirement: str) -> None:
    """:raises ValueError: for the first value for which ``is_valid`` is false: ``<name> <requirement>, got <value>``"""
    for name, value in values.items():
        if not is_valid(value):
            raise ValueError(f"{name} {requirement}, got {describe(value)}")


def check_positive_integers(**values: int) -> None:
    """:raises ValueError: for the first value that is not an integer >= 1"""
    _check_each(values, lambda value: _is_integer(value) and value >= 1, "must be a positive integer")


def check_non_negative_integers(**values: int) -> None:
    """:raises ValueError: for the first value that is not an integer >= 0"""
    _check_each(values, lambda value: _is_integer(value) and value >= 0, "must be a non-negative integer")


def check_booleans(**values: bool) -> None:
    """:raises ValueError: for the first value that is not a bool (or a NumPy bool)"""
    _check_each(values, lambda value: isinstance(value, bool | np.bool_), "must be True or False")


def check_finite(**values: float) -> None:
    """:raises ValueError: for the first value that is not a finite number"""
    _check_each(values, lambda value: _is_number(value) and math.isfinite(value), "must be a finite number")


def check_non_negative(**values: float) -> None:
    """:raises ValueError: for the first value that is not a finite number >= 0"""
    _check_each(values, lambda value: _is_number(value) and 0.0 <= value < math.inf, "must be a finite number >= 0")


def check_positive(**values: float) -> None:
    """:raises ValueError: for the first value that is not a finite number > 0"""
    _check_each(values, lambda value: _is_number(value) and 0.0 < value < math.inf, "must be a finite number > 0")


def check_probabilities(**values: float) -> None:
    """:raises ValueError: for the first value that is not a number in [0, 1]"""
    _check_each(values, lambda value: _is_number(value) and 0.0 <= value <= 1.0, "must be in [0, 1]")


def check_subclasses(base: type, example: str, **values: type) -> None:
    """
    :param base: the class that each value must derive from
    :param example: such a class, for the error message (e.g. ``"torch.nn.ReLU"``)
    :raises ValueError: for the first value that is not a subclass of ``base`` (such as an instance or a name)
    """
    for name, value in values.items():
        if not (isinstance(value, type) and issubclass(value, base)):
            raise ValueError(
                f"{name} must be a class derived from {base.__name__}, such as {example} (the class, not an instance or "
                f"a name), got {describe(value)}"
            )


def check_optional_paths(**values: str | os.PathLike | None) -> None:
    """:raises ValueError: for the first value that is not None, a str or an ``os.PathLike``, or is an empty path"""
    for name, value in values.items():
        if value is not None and not isinstance(value, str | os.PathLike):
            raise ValueError(f"{name} must be a path (a str or an os.PathLike) or None, got {describe(value)}")
        if value is not None and os.fspath(value) == "":
            raise ValueError(
                f"{name} must be a non-empty path or None, got {describe(value)}, which would be the current directory: "
                "name a directory (e.g. '.' for the current one)"
            )


def check_non_negative_schedules(**values: float | Callable[[float], float]) -> None:
    """
    Learning rates, entropy scales: constants or schedules of the remaining progress (SB3's convention).

    :raises ValueError: for the first constant, or schedule at the start or end of training, that is negative
    """
    for name, value in values.items():
        if callable(value):
            for progress_remaining in (1.0, 0.0):
                check_non_negative(**{f"{name}({progress_remaining})": value(progress_remaining)})
        else:
            check_non_negative(**{name: value})


def check_train_freq(train_freq: int | tuple[int, str], n_envs: int) -> None:
    """
    :param train_freq: an int (env steps), or ``(frequency, unit)`` with unit ``"step"`` or ``"episode"``
    :param n_envs: number of envs
    :raises ValueError: for a non-positive frequency, an unknown unit, or episodes with several envs (SB3 counts
        episodes of one env only)
    """
    if isinstance(train_freq, Integral):
        frequency, unit = train_freq, "step"
    elif isinstance(train_freq, tuple) and len(train_freq) == 2:
        frequency, unit = train_freq
        unit = getattr(unit, "value", unit)  # a TrainFrequencyUnit once SB3 converted it
    else:
        raise ValueError(f"train_freq must be an int or a tuple (frequency, 'step' | 'episode'), got {train_freq!r}")
    if unit not in ("step", "episode"):
        raise ValueError(f"train_freq={train_freq!r} has an unknown unit {unit!r}: use 'step' or 'episode'")
    check_positive_integers(train_freq=frequency)
    if unit == "episode" and n_envs > 1:
        raise ValueError(
            f"train_freq={train_freq!r} counts episodes, which SB3 supports with one env only, got n_envs={n_envs}: "
            "count env steps instead, e.g. train_freq=50"
        )
