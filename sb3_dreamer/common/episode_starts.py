"""The index of the episodes in a replay ring: where each one starts."""

import numpy as np


class EpisodeStarts:
    """
    Write indices of the first rows of the episodes of one env ring, oldest first: a growable array from whose front
    the episodes the ring overwrote are dropped. Appending and dropping cost amortized O(1).

    Write indices count the rows an env wrote since the buffer was emptied (row g is in ring slot g % ring size), so
    episode i spans the write indices [starts[i], starts[i + 1]) and the last episode ends at the write head.
    """

    def __init__(self, starts: np.ndarray | None = None):
        starts = np.zeros(0, dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
        self._array = np.zeros(max(2 * len(starts), 16), dtype=np.int64)
        self._array[: len(starts)] = starts
        self._front, self._end = 0, len(starts)

    @property
    def starts(self) -> np.ndarray:
        """:return: the write indices of the first rows, oldest first (a view), (n_episodes,)"""
        return self._array[self._front : self._end]

    def append(self, start: int, oldest: int) -> None:
        """
        Add an episode starting at write index ``start``, then drop the episodes that lie wholly before the write
        index ``oldest`` (the oldest row the ring still holds), keeping at least the last episode.
        """
        if self._end == len(self._array):
            n_starts = self._end - self._front
            array = np.zeros(2 * len(self._array), dtype=np.int64) if 2 * n_starts > len(self._array) else self._array
            array[:n_starts] = self._array[self._front : self._end]
            self._array, self._front, self._end = array, 0, n_starts
        self._array[self._end] = start
        self._end += 1
        while self._end - self._front >= 2 and self._array[self._front + 1] <= oldest:
            self._front += 1
