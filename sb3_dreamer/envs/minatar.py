"""MinAtar games as Gymnasium environments with channels-first uint8 observations."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minatar import Environment

from sb3_dreamer.common.checks import check_booleans, check_probabilities
from sb3_dreamer.common.palette import PALETTE

MINATAR_GAMES: tuple[str, ...] = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
RENDER_SCALE = 16
#: ALE's names of MinAtar's actions, by the letters of MinAtar's ``action_map``
ACTION_MEANINGS = {"n": "NOOP", "l": "LEFT", "u": "UP", "r": "RIGHT", "d": "DOWN", "f": "FIRE"}


class MinAtarEnv(gym.Env[np.ndarray, np.int64]):
    """A MinAtar game: observations ``(C, 10, 10)`` uint8 in {0, 1}, actions index MinAtar's minimal action set.

    ``reset(seed=...)`` seeds MinAtar's own random state (spawns and sticky actions) from ``self.np_random``,
    so the following episodes, with their sticky actions, are exactly reproducible.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        game: str,
        sticky_action_prob: float = 0.1,
        difficulty_ramping: bool = True,
        render_mode: str | None = None,
    ) -> None:
        if game not in MINATAR_GAMES:
            raise ValueError(f"Unknown MinAtar game {game!r}, expected one of {', '.join(MINATAR_GAMES)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"Unsupported render_mode {render_mode!r}, expected one of {self.metadata['render_modes']}")
        check_probabilities(sticky_action_prob=sticky_action_prob)
        check_booleans(difficulty_ramping=difficulty_ramping)
        self.game = game
        self.render_mode = render_mode
        self.minatar = Environment(game, sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)
        self._actions = self.minatar.minimal_action_set()
        self._channel_ids = np.arange(1, self.minatar.n_channels + 1, dtype=np.uint8)
        self.observation_space = spaces.Box(0, 1, (self.minatar.n_channels, 10, 10), np.uint8)
        self.action_space = spaces.Discrete(len(self._actions))

    def _obs(self) -> np.ndarray:
        return self.minatar.state().transpose(2, 0, 1).astype(np.uint8, order="C")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:  # a fresh RandomState costs ~60 us, so unseeded resets continue MinAtar's stream
            self.minatar.seed(int(self.np_random.integers(2**32)))
        self.minatar.last_action = 0  # sticky actions must not leak from the previous episode
        self.minatar.reset()
        return self._obs(), {}

    def step(self, action: int | np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward, terminated = self.minatar.act(self._actions[action])
        return self._obs(), float(reward), bool(terminated), False, {}

    def get_action_meanings(self) -> list[str]:
        """The name of each action, as ALE's envs give them: ``["NOOP", "UP", "DOWN"]`` for Freeway."""
        return [ACTION_MEANINGS[self.minatar.env.action_map[action]] for action in self._actions]

    def render(self) -> np.ndarray | None:
        """An RGB frame ``(10 * RENDER_SCALE, 10 * RENDER_SCALE, 3)``; where channels overlap, the last one wins."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; use render_mode='rgb_array'")
            return None
        colour_ids = (self.minatar.state() * self._channel_ids).max(axis=2)
        return PALETTE[colour_ids].repeat(RENDER_SCALE, axis=0).repeat(RENDER_SCALE, axis=1)
