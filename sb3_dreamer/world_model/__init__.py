"""The world model of the Dreamers: RSSM, encoders, decoders, heads, distributions, returns and diagnostics."""

from sb3_dreamer.world_model.model import ActingState, WorldModel, WorldModelLossConfig
from sb3_dreamer.world_model.rssm import RSSM, LatentState

__all__ = ["RSSM", "ActingState", "LatentState", "WorldModel", "WorldModelLossConfig"]
