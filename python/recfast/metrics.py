"""Ranking metrics for top-k recommendations (definitions: docs/evaluation.md).

Every metric takes `ranked_ids`, an integer array (users, >= k) of item ids ranked best first
(id -1 pads rows with fewer recommendations and never counts as a hit; ids should not repeat
within a row), and `targets`, a users x items sparse matrix whose nonzeros are the relevant
items. Only the first k columns are used. For user u, hits_u(j) = 1 if the item at rank j
(0-based) is a target of u, and T_u = |targets of u|.

Each metric returns the MEAN OVER USERS WITH AT LEAST ONE TARGET; users without targets are
skipped (ValueError when no user has one). `coverage` needs no targets and uses every row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "recall_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "hit_rate_at_k",
    "mrr",
    "coverage",
    "evaluate",
]


def _check_k(k: Any, n_cols: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > n_cols:
        raise ValueError(f"k={k} but ranked_ids has only {n_cols} columns")
    return int(k)


def _ranked(ranked_ids: Any) -> np.ndarray:
    ids = np.asarray(ranked_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2:
        raise ValueError(f"ranked_ids must be 2-D (users, ranks), got shape {ids.shape}")
    if ids.size and ids.dtype.kind not in "iu":
        raise TypeError(f"ranked_ids must hold integers, got dtype {ids.dtype}")
    return ids.astype(np.int64, copy=False)


def _hits(ranked_ids: Any, targets: Any, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(hits bool (users with targets, k), T per such user)."""
    ids = _ranked(ranked_ids)
    if not sp.issparse(targets):
        raise TypeError("targets must be a scipy.sparse matrix (users x items)")
    t = sp.csr_matrix(targets, copy=True)
    t.sum_duplicates()
    t.eliminate_zeros()
    t.sort_indices()
    n_users, n_items = t.shape
    if ids.shape[0] != n_users:
        raise ValueError(f"ranked_ids has {ids.shape[0]} rows but targets has {n_users} users")
    k = ids.shape[1] if k is None else _check_k(k, ids.shape[1])
    ids = ids[:, :k]
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        raise ValueError(f"ranked_ids must be item ids in [0, {n_items}) or -1 (padding)")
    n_targets = np.diff(t.indptr)
    has = n_targets > 0
    if not has.any():
        raise ValueError("no user has a target: every metric averages over users with >= 1")
    ids = ids[has]
    rows = np.flatnonzero(has)
    # key of every target (row-major, sorted since indices are sorted) and of every ranked id
    target_rows = np.repeat(np.arange(n_users, dtype=np.int64), n_targets)
    target_keys = target_rows * n_items + t.indices
    query_keys = rows[:, None] * n_items + ids
    pos = np.searchsorted(target_keys, query_keys)
    pos = np.minimum(pos, len(target_keys) - 1)
    hits = (target_keys[pos] == query_keys) & (ids >= 0)
    return hits, n_targets[has]


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def recall_at_k(ranked_ids: Any, targets: Any, k: int, *, denominator: str = "min") -> float:
    """Recall@k = sum_{j<k} hits_u(j) / D_u, averaged over users with targets.

    denominator="min": D_u = min(k, T_u) (Liang et al. 2018; reaches 1 whenever the top k are
    all targets). denominator="all": D_u = T_u (the textbook recall).
    """
    if denominator not in ("min", "all"):
        raise ValueError(f"denominator must be 'min' or 'all', got {denominator!r}")
    hits, n = _hits(ranked_ids, targets, k)
    denom = np.minimum(k, n) if denominator == "min" else n
    return float(np.mean(hits.sum(axis=1) / denom))


def ndcg_at_k(ranked_ids: Any, targets: Any, k: int) -> float:
    """NDCG@k with binary gain: DCG_u / IDCG_u, averaged over users with targets.

    DCG_u = sum_{j<k} hits_u(j) / log2(j + 2); IDCG_u = sum_{j < min(k, T_u)} 1 / log2(j + 2),
    the DCG of a ranking with every possible target first.
    """
    hits, n = _hits(ranked_ids, targets, k)
    disc = _discounts(k)
    dcg = hits @ disc
    idcg = np.cumsum(disc)[np.minimum(k, n) - 1]
    return float(np.mean(dcg / idcg))


def precision_at_k(ranked_ids: Any, targets: Any, k: int) -> float:
    """Precision@k = sum_{j<k} hits_u(j) / k (padding counts as a miss), mean over users."""
    hits, _ = _hits(ranked_ids, targets, k)
    return float(np.mean(hits.sum(axis=1) / k))


def hit_rate_at_k(ranked_ids: Any, targets: Any, k: int) -> float:
    """HitRate@k = fraction of users with at least one target among their top k."""
    hits, _ = _hits(ranked_ids, targets, k)
    return float(np.mean(hits.any(axis=1)))


def mrr(ranked_ids: Any, targets: Any, k: int | None = None) -> float:
    """Mean reciprocal rank: 1 / (1 + j*) where j* is the first rank (0-based) holding a target
    within the first k columns (all columns when k is None); 0 for a user with no hit."""
    hits, _ = _hits(ranked_ids, targets, k)
    if hits.shape[1] == 0:
        return 0.0
    first = hits.argmax(axis=1)
    rr = np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)
    return float(np.mean(rr))


def coverage(ranked_ids: Any, n_items: int, k: int | None = None) -> float:
    """Catalogue coverage: distinct items (not -1) in the first k columns of all rows / n_items."""
    ids = _ranked(ranked_ids)
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ValueError(f"n_items must be a positive int, got {n_items!r}")
    if k is not None:
        ids = ids[:, : _check_k(k, ids.shape[1])]
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        raise ValueError(f"ranked_ids must be item ids in [0, {n_items}) or -1 (padding)")
    seen = np.zeros(int(n_items), dtype=bool)
    seen[ids[ids >= 0]] = True
    return float(seen.sum() / n_items)


def evaluate(
    model: Any, input_csr: Any, target_csr: Any, ks: Iterable[int] = (20, 50, 100)
) -> dict[str, float]:
    """Rank items for each user's input and score them against the targets.

    Calls `model.recommend(input, k=max(ks))` (seen items filtered, the model's default) on the
    users that have at least one target, and returns {"recall@k", "ndcg@k", "precision@k",
    "hit_rate@k"} for each k in ks (recall with denominator min(k, T_u)), plus "mrr" (over the
    max(ks) ranks) and "coverage@K" for K = max(ks).
    """
    ks = sorted({_check_k(k, 1 << 62) for k in ks})
    if not ks:
        raise ValueError("ks must name at least one k")
    if not sp.issparse(input_csr) or not sp.issparse(target_csr):
        raise TypeError("input_csr and target_csr must be scipy.sparse matrices")
    if input_csr.shape != target_csr.shape:
        raise ValueError(
            f"input_csr {input_csr.shape} and target_csr {target_csr.shape} "
            f"must have the same shape"
        )
    x = sp.csr_matrix(input_csr)
    t = sp.csr_matrix(target_csr)
    keep = np.diff(t.indptr) > 0
    if not keep.any():
        raise ValueError("target_csr has no user with a target")
    x, t = x[keep], t[keep]
    kmax = ks[-1]
    ids = np.asarray(model.recommend(x, k=kmax).ids)
    if ids.ndim != 2 or ids.shape[0] != x.shape[0] or ids.shape[1] < kmax:
        raise ValueError(
            f"model.recommend returned ids of shape {ids.shape}, expected ({x.shape[0]}, {kmax})"
        )
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ids, t, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ids, t, k)
        out[f"precision@{k}"] = precision_at_k(ids, t, k)
        out[f"hit_rate@{k}"] = hit_rate_at_k(ids, t, k)
    out["mrr"] = mrr(ids, t, kmax)
    out[f"coverage@{kmax}"] = coverage(ids, t.shape[1], kmax)
    return out
