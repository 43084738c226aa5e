"""RL Zoo plug-in of sb3-dreamer: ``python -m rl_zoo3.train --algo dreamerv2 --env Breakout-MinAtar`` and friends."""

from sb3_dreamer.zoo.hyperparams_opt import convert_dreamerv2_params, sample_dreamerv2_params
from sb3_dreamer.zoo.plugin import HYPERPARAMS_FILE, apply
from sb3_dreamer.zoo.torch_layers import MinAtarCNN

__all__ = ["HYPERPARAMS_FILE", "MinAtarCNN", "apply", "convert_dreamerv2_params", "sample_dreamerv2_params"]
