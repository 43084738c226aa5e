from sb3_dreamer.dreamerv3.dreamerv3 import DreamerV3
from sb3_dreamer.dreamerv3.policies import CnnPolicy, DreamerV3Policy, MlpPolicy

__all__ = ["CnnPolicy", "DreamerV3", "DreamerV3Policy", "MlpPolicy"]
