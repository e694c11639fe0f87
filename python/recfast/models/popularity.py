"""Popularity baseline: every user gets the most interacted-with items they have not seen."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._inputs import as_interactions, check_k
from .._types import TopK
from ._persist import header_n_items, load_npz, save_npz
from ._scoring import build_exclusion, dot_topk, exclusion_in_range, with_offset
from .base import Recommender


class Popularity(Recommender):
    """Scores item j by the number of training users who interacted with it."""

    def fit(self, X: Any, **_: Any) -> Popularity:
        m = as_interactions(X)
        counts = np.bincount(m.indices, minlength=m.shape[1]).astype(np.float32)
        self.item_counts_ = counts
        self.n_items_ = int(m.shape[1])
        return self

    def _repr_params(self) -> dict:
        return {}

    def recommend(
        self, X: Any, k: int = 10, *, filter_seen: bool = True, filter_items: Any = None
    ) -> TopK:
        """Top-k unseen items by popularity for each row (user history) of X."""
        self._check_fitted()
        return self._recommend_range(X, k, filter_seen, 0, self.n_items_, filter_items)

    def _recommend_range(
        self, X: Any, k: int, filter_seen: bool, lo: int, hi: int, filter_items: Any = None
    ) -> TopK:
        self._check_fitted()
        k = check_k(k)
        m = as_interactions(X, n_items=self.n_items_)
        excl = exclusion_in_range(build_exclusion(m, filter_seen, filter_items), lo, hi)
        users = np.ones((m.shape[0], 1), np.float32)
        return with_offset(dot_topk(users, self.item_counts_[lo:hi, None], k, excl), lo)

    def save(self, path: str | os.PathLike) -> None:
        self._check_fitted()
        save_npz(
            path,
            "Popularity",
            {"config": {}, "n_items": self.n_items_},
            {"item_counts": self.item_counts_},
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Popularity:
        """A Popularity written by save(); ValueError naming the file when it is damaged."""
        header, arrays = load_npz(path, "Popularity", {"item_counts": 1})
        if header["config"]:
            raise ValueError(
                f"{os.fspath(path)}: the config holds {sorted(header['config'])}, "
                f"expected nothing; damaged model file"
            )
        counts = arrays["item_counts"]
        if counts.size and counts.min() < 0:
            raise ValueError(
                f"{os.fspath(path)}: item_counts must be non-negative counts; damaged model file"
            )
        header_n_items(header, path, int(counts.shape[0]))
        model = cls()
        model.item_counts_ = counts.astype(np.float32)
        model.n_items_ = int(model.item_counts_.shape[0])
        return model
