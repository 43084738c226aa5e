"""RL Zoo plug-in of sb3-dreamer: ``python -m rl_zoo3.train --algo dreamerv2 --env Breakout-MinAtar`` and friends."""

from sb3_dreamer.zoo.hyperparams_opt import (
    convert_dreamerv2_params,
    convert_dreamerv3_params,
    sample_dreamerv2_params,
    sample_dreamerv3_params,
)
from sb3_dreamer.zoo.plugin import ALGORITHMS, HYPERPARAMS_DIR, apply
from sb3_dreamer.zoo.torch_layers import MinAtarCNN

__all__ = [
    "ALGORITHMS",
    "HYPERPARAMS_DIR",
    "MinAtarCNN",
    "apply",
    "convert_dreamerv2_params",
    "convert_dreamerv3_params",
    "sample_dreamerv2_params",
    "sample_dreamerv3_params",
]
