"""Result types shared by every top-k backend."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class TopK(NamedTuple):
    """Top-k result: `scores` (float32) and `ids` (int64), best first, padded with -inf / -1."""

    scores: np.ndarray
    ids: np.ndarray
