"""Replay rows set aside after a non-finite update, so that a resumed run does not sample them again."""

from typing import cast

import numpy as np


class RowQuarantine:
    """
    Rows of a replay buffer that sampling skips, as indices into its storage flattened over (n_envs, buffer_size).
    Empty, it costs nothing; a row leaves it when a new row overwrites its slot.
    """

    def __init__(self) -> None:
        #: the quarantined rows, sorted and unique, (Q,) int64
        self.rows = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: np.ndarray) -> None:
        """Quarantine ``rows`` (any shape) of flat storage indices."""
        self.rows = np.union1d(self.rows, np.asarray(rows, dtype=np.int64).ravel())

    def release(self, rows: np.ndarray) -> None:
        """Release the slots ``rows`` (flat indices), rewritten with new rows."""
        if len(self.rows) > 0:
            self.rows = np.setdiff1d(self.rows, rows, assume_unique=False)

    def hit_windows(self, batch_inds: np.ndarray) -> np.ndarray:
        """Which windows of ``batch_inds`` (T, B) hold a quarantined row, (B,) bool."""
        if len(self.rows) == 0:
            return np.zeros(batch_inds.shape[1], dtype=bool)
        return cast(np.ndarray, np.isin(batch_inds, self.rows).any(axis=0))  # over axis 0 of (T, B): an array (B,)
