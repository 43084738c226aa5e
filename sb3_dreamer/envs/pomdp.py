"""Partially observed MinAtar: drop the channels that reveal motion (trails, speeds, directions)."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_dreamer.envs.minatar import MinAtarEnv

# Channels kept per game; the dropped ones encode velocity, which the agent must then infer from memory.
POMDP_CHANNELS: dict[str, tuple[int, ...]] = {
    "asterix": (0, 1, 3),
    "breakout": (0, 1, 3),
    "freeway": (0, 1),
    "seaquest": (0, 1, 2, 4, 5, 6, 7, 8, 9),
    "space_invaders": (0, 1, 4, 5),
}


class MinAtarPOMDP(gym.ObservationWrapper[np.ndarray, np.int64, np.ndarray], gym.utils.RecordConstructorArgs):
    """Keep only the ``POMDP_CHANNELS`` of a MinAtar env (a ``MinAtarEnv``, possibly already wrapped)."""

    def __init__(self, env: gym.Env) -> None:
        if not isinstance(env.unwrapped, MinAtarEnv):
            name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            raise ValueError(f"MinAtarPOMDP needs a MinAtar env (MinAtarEnv), got {name} ({type(env.unwrapped).__name__})")
        game = env.unwrapped.game
        if game not in POMDP_CHANNELS:
            raise ValueError(f"No POMDP channels for MinAtar game {game!r}, expected one of {', '.join(POMDP_CHANNELS)}")
        if env.observation_space.shape != env.unwrapped.observation_space.shape:
            raise ValueError(f"MinAtarPOMDP needs full MinAtar observations, got shape {env.observation_space.shape} ({env})")
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        self._kept = np.array(POMDP_CHANNELS[game], dtype=np.intp)
        self.observation_space = spaces.Box(0, 1, (len(self._kept), 10, 10), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self._kept]


def make_pomdp(game: str, **kwargs: Any) -> MinAtarPOMDP:
    """Entry point of the ``*POMDP-MinAtar`` ids: ``MinAtarPOMDP(MinAtarEnv(game, **kwargs))``."""
    return MinAtarPOMDP(MinAtarEnv(game, **kwargs))
