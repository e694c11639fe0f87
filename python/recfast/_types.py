"""Result types shared by every top-k backend."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class TopK(NamedTuple):
    """Top-k result: `scores` (float32) and `ids` (int64), best first, padded with -inf / -1."""

    scores: np.ndarray
    ids: np.ndarray

    @classmethod
    def empty(cls, n_queries: int, k: int) -> TopK:
        """A result of n_queries rows holding only padding (score -inf, id -1)."""
        return cls(
            np.full((n_queries, k), -np.inf, np.float32), np.full((n_queries, k), -1, np.int64)
        )
