"""EASE (Steck 2019): the closed-form item-item linear autoencoder with a zero diagonal."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .._inputs import as_interactions, check_float, check_k
from .._types import TopK
from ._explain import Explanation, check_history, check_item, check_n, ranked
from ._persist import header_n_items, load_npz, save_npz
from ._scoring import (
    build_exclusion,
    column_range,
    cosine_similar_items,
    exclusion_in_range,
    item_item_topk,
    with_offset,
)
from .base import Recommender


def available_memory_bytes() -> int:
    """Memory this process can still allocate: MemAvailable from /proc/meminfo (Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil  # type: ignore[import-not-found]

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        return 1 << 62


# The closed form holds about three items x items matrices at once (Gram, inverse, weights).
_MATRICES_AT_ONCE = 3


class EASE(Recommender):
    """B = argmin ||X - XB||^2 + l2 ||B||^2 with diag(B) = 0: B = I - P / diag(P), P = (X'X + l2 I)^-1.

    Scores for a user with history x are x @ B. Needs items x items memory: float64 when
    three such matrices fit in available memory, float32 when only that fits, else fit()
    raises MemoryError naming the size.
    """

    def __init__(self, l2: float = 500.0, *, memory_limit: int | None = None) -> None:
        self.l2 = check_float(l2, "l2", strict_min=True)
        if memory_limit is not None:
            memory_limit = int(memory_limit)
            if memory_limit <= 0:
                raise ValueError(
                    f"memory_limit must be a positive number of bytes, got {memory_limit}"
                )
        self.memory_limit = memory_limit

    def _repr_params(self) -> dict:
        return {"l2": self.l2}

    def _choose_dtype(self, n_items: int) -> type:
        avail = self.memory_limit if self.memory_limit is not None else available_memory_bytes()
        for dtype in (np.float64, np.float32):
            need = _MATRICES_AT_ONCE * n_items * n_items * np.dtype(dtype).itemsize
            if need <= 0.8 * avail:
                return dtype
        need32 = _MATRICES_AT_ONCE * n_items * n_items * 4
        raise MemoryError(
            f"EASE needs about {need32 / 2**30:.1f} GiB for {n_items} x {n_items} items matrices "
            f"(float32, {_MATRICES_AT_ONCE} at once) but only {avail / 2**30:.1f} GiB is available; "
            "filter rare items first or use AutoEncoder"
        )

    def fit(self, X: Any, **_: Any) -> EASE:
        m = as_interactions(X)
        n = int(m.shape[1])
        dtype = self._choose_dtype(n)
        t0 = time.perf_counter()
        gram = (m.T @ m).toarray().astype(dtype, copy=False)
        gram[np.diag_indices(n)] += self.l2
        p = np.linalg.inv(gram)
        del gram
        b = p / (-np.diag(p))[None, :]
        b[np.diag_indices(n)] = 0.0
        self.B_ = np.ascontiguousarray(b, dtype=np.float32)
        self.n_items_ = n
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def recommend(
        self, X: Any, k: int = 10, *, filter_seen: bool = True, filter_items: Any = None
    ) -> TopK:
        """Top-k items by x @ B for each row (user history) of X.

        The scores x @ B are computed from the sparse rows block by block and selected by
        recfast.select_topk (tie, NaN and padding rules of recfast.topk).
        """
        self._check_fitted()
        return self._recommend_range(X, k, filter_seen, 0, self.n_items_, filter_items)

    def _recommend_range(
        self, X: Any, k: int, filter_seen: bool, lo: int, hi: int, filter_items: Any = None
    ) -> TopK:
        self._check_fitted()
        k = check_k(k)
        m = as_interactions(X, n_items=self.n_items_)
        excl = exclusion_in_range(build_exclusion(m, filter_seen, filter_items), lo, hi)
        b = column_range(self, self.B_, lo, hi)
        return with_offset(item_item_topk(m, b, k, excl), lo)

    def explain(self, history: Any, item: Any, n: int = 5) -> Explanation:
        """The items of one user's history that contributed most to `item`'s score.

        The score is linear, x @ B, so the explanation is exact: history item j contributes
        x_j * B[j, item], and the contributions of the whole history sum to the score.

        Parameters
        ----------
        history : sequence of int or scipy.sparse matrix of one row
            The user's items (distinct ids, strength 1 each), or a 1 x n_items row of strengths.
        item : int
            The item to explain, in [0, n_items_).
        n : int
            At most this many history items (>= 1).

        Returns
        -------
        Explanation
            ids and contributions, largest contribution first (ties: lower id first); its
            `linear` equals `contributions` and `deep` is zero.
        """
        self._check_fitted()
        ids, x = check_history(history, self.n_items_)
        item = check_item(item, self.n_items_)
        n = check_n(n)
        linear = x * self.B_[ids, item]
        return ranked(item, ids, linear, np.zeros_like(linear), n)

    def item_embeddings(self) -> np.ndarray:
        """Item j's weights: column j of B (how much each item predicts j)."""
        self._check_fitted()
        return np.ascontiguousarray(self.B_.T)

    def similar_items(self, item_ids: Any, k: int = 10) -> TopK:
        """Cosine neighbours over the columns of B, never the item itself."""
        self._check_fitted()
        return cosine_similar_items(self.item_embeddings(), item_ids, k)

    def save(self, path: str | os.PathLike) -> None:
        self._check_fitted()
        save_npz(
            path, "EASE", {"config": {"l2": self.l2}, "n_items": self.n_items_}, {"B": self.B_}
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> EASE:
        """An EASE written by save(); ValueError naming the file when it is damaged."""
        header, arrays = load_npz(path, "EASE", {"B": 2})
        config = header["config"]
        if set(config) != {"l2"}:
            raise ValueError(
                f"{os.fspath(path)}: the config holds {sorted(config)}, expected "
                f"['l2']; damaged model file"
            )
        try:
            model = cls(l2=config["l2"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)}: bad config ({exc}); damaged model file") from None
        b = arrays["B"]
        if b.shape[0] != b.shape[1]:
            raise ValueError(
                f"{os.fspath(path)}: B has shape {b.shape}, expected items x items; "
                f"damaged model file"
            )
        header_n_items(header, path, int(b.shape[0]))
        model.B_ = np.ascontiguousarray(b, dtype=np.float32)
        model.n_items_ = int(model.B_.shape[0])
        return model
