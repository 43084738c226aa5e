"""
MiniGrid's partial view as a channels-first binary image, the kind of observation ``CnnPolicy`` and the bit-packing
replay buffer take (as MinAtar's). Needs the optional ``minigrid`` package, imported only when the wrapper is built.
"""

from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

INSTALL_HINT = 'pip install "sb3-dreamer[minigrid]"'


def minigrid_channel_groups() -> dict[str, int]:
    """
    :return: the number of one-hot channels of each cell attribute, in the order of MiniGrid's encoding:
        object type, colour and state (open, closed, locked), counted from ``minigrid.core.constants``
    :raises ImportError: when ``minigrid`` is not installed
    """
    try:
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
    except ImportError as error:
        raise ImportError(f"MiniGrid envs need the minigrid package, which is an optional extra: {INSTALL_HINT}") from error
    return {"object": len(OBJECT_TO_IDX), "colour": len(COLOR_TO_IDX), "state": len(STATE_TO_IDX)}


class MiniGridOneHotImage(gym.ObservationWrapper[np.ndarray, np.int64, dict[str, Any]], gym.utils.RecordConstructorArgs):
    """
    Replace a MiniGrid observation by the one-hot encoding of its partial view ``obs["image"]``.

    MiniGrid's view is ``(V, V, 3)``, indexed ``[x, y]``, holding the object, colour and state index of each cell.
    The wrapper's observation is ``Box(0, 1, (n_object + n_colour + n_state, V, V), uint8)`` (20 x 7 x 7 for the
    default view): the one-hot object, colour and state channels stacked, indexed ``[channel, y, x]``, so that the
    agent sits at the bottom centre facing up. Each cell has exactly one channel set in each of the three groups.
    The mission string and the direction are dropped (the view is already egocentric).

    :param env: a MiniGrid env (possibly wrapped) whose observations are a ``Dict`` with an ``"image"`` entry
    :raises ImportError: when ``minigrid`` is not installed
    :raises ValueError: when ``env`` does not give MiniGrid's dict observations
    """

    def __init__(self, env: gym.Env) -> None:
        self.channel_groups = minigrid_channel_groups()
        image_space = env.observation_space.get("image") if isinstance(env.observation_space, spaces.Dict) else None
        if not (
            isinstance(image_space, spaces.Box)
            and len(image_space.shape) == 3
            and image_space.shape[0] == image_space.shape[1]
            and image_space.shape[2] == len(self.channel_groups)
        ):
            name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            raise ValueError(
                f"MiniGridOneHotImage needs a MiniGrid env whose observations are a Dict with an 'image' entry of shape "
                f"(view, view, {len(self.channel_groups)}), got observation space {env.observation_space} ({name}): "
                "apply it before any wrapper that changes MiniGrid's observations (ImgObsWrapper, FlatObsWrapper, ...)"
            )
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        sizes = list(self.channel_groups.values())
        self._group_sizes = np.array(sizes, dtype=np.uint8)
        self._offsets = np.cumsum([0, *sizes[:-1]])  # first channel of each group
        view = image_space.shape[0]
        self._rows, self._columns = np.arange(view)[:, None, None], np.arange(view)[None, :, None]
        self.observation_space = spaces.Box(0, 1, (sum(sizes), view, view), np.uint8)

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        """MiniGrid's dict observation -> (C, V, V) uint8 in {0, 1}"""
        image = observation["image"]  # (V, V, 3) indexed [x, y]: object, colour and state indices
        if (image >= self._group_sizes).any():
            raise ValueError(
                f"MiniGrid cell attributes out of range for one-hot channel groups {self.channel_groups}, got maxima "
                f"{image.max(axis=(0, 1)).tolist()}: MiniGridOneHotImage reads the partial view of a MiniGrid env "
                "(FullyObsWrapper stores the agent's direction as a state)"
            )
        channels = image.transpose(1, 0, 2) + self._offsets  # (V, V, 3) indexed [y, x]: the channel set by each attribute
        shape = cast(spaces.Box, self.observation_space).shape  # the Box set by __init__
        one_hot = np.zeros(shape, dtype=np.uint8)  # (C, V, V) indexed [c, y, x]
        one_hot[channels, self._rows, self._columns] = 1
        return one_hot
