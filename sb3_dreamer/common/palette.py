"""Colours of the channels of grid observations, shared by the MinAtar renderer and the dream videos."""

import numpy as np

#: Background (black), then one RGB colour per channel; MinAtar games have at most 10 channels, (11, 3) uint8
PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
    ],
    dtype=np.uint8,
)
