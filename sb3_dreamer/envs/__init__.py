"""MinAtar Gymnasium environments, fully and partially observed."""

from sb3_dreamer.envs.minatar import MINATAR_GAMES, MinAtarEnv
from sb3_dreamer.envs.pomdp import POMDP_CHANNELS, MinAtarPOMDP
from sb3_dreamer.envs.registration import register_minatar_envs

__all__ = ["MINATAR_GAMES", "POMDP_CHANNELS", "MinAtarEnv", "MinAtarPOMDP", "register_minatar_envs"]
