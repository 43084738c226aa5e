"""A tiny partially observable task that only memory can solve."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CueMemoryEnv(gym.Env):
    """
    A cue (one of two) is shown at the first step only; after ``delay`` blank steps a query flag appears,
    and the action taken at the query pays 1 if it matches the cue, else 0. Then the episode terminates.

    Observations: ``[cue_0, cue_1, query]`` float32. A memoryless policy scores 0.5 on average, the optimum is 1.
    """

    def __init__(self, delay: int = 3) -> None:
        self.delay = delay
        self.observation_space = spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._cue = 0
        self._t = 0

    def _observation(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        if self._t == self.delay:
            obs[2] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(2))
        self._t = 0
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._t == self.delay:
            return np.zeros(3, dtype=np.float32), float(int(action) == self._cue), True, False, {}
        self._t += 1
        return self._observation(), 0.0, False, False, {}
