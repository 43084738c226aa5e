"""Feature extractor of the MinAtar baselines (PPO, DQN, QR-DQN) run through the RL Zoo."""

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class MinAtarCNN(BaseFeaturesExtractor):
    """
    CNN of the MinAtar paper ("MinAtar: An Atari-Inspired Testbed", Young & Tian 2019) for 10 x 10 inputs:
    one 3 x 3 convolution with stride 1 and no padding, then a fully connected layer, both with ReLU.

    :param observation_space: channels-first observations (C, H, W), such as those of the MinAtar envs
    :param features_dim: units of the fully connected layer (the number of features)
    :param n_channels: output channels of the convolution
    :param kernel_size: kernel size of the convolution
    """

    def __init__(
        self, observation_space: spaces.Box, features_dim: int = 128, n_channels: int = 16, kernel_size: int = 3
    ) -> None:
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise ValueError(f"MinAtarCNN needs channels-first image observations (C, H, W), got {observation_space}")
        super().__init__(observation_space, features_dim)
        self.cnn = nn.Sequential(
            nn.Conv2d(observation_space.shape[0], n_channels, kernel_size, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        height, width = (size - kernel_size + 1 for size in observation_space.shape[1:])
        self.linear = nn.Sequential(nn.Linear(n_channels * height * width, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))
