"""DreamerV2 and DreamerV3 for Stable-Baselines3, with MinAtar Gymnasium environments."""

from sb3_dreamer.common.callbacks import ResumeCheckpointCallback
from sb3_dreamer.common.guards import NonFiniteError
from sb3_dreamer.dreamerv2 import CnnPolicy, DreamerV2, MlpPolicy
from sb3_dreamer.dreamerv3 import DreamerV3
from sb3_dreamer.envs import register_minatar_envs
from sb3_dreamer.version import __version__

register_minatar_envs()

__all__ = [
    "CnnPolicy",
    "DreamerV2",
    "DreamerV3",
    "MlpPolicy",
    "NonFiniteError",
    "ResumeCheckpointCallback",
    "__version__",
    "register_minatar_envs",
]
