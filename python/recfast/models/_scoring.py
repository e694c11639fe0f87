"""How the models score: exclusions built once, top-k by inner product or over item-item score
blocks, and cosine similar items, all through the native core."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _native
from .._exclusion import Exclusion, from_sparse
from .._inputs import available_cpus, check_item_ids, check_k
from .._types import TopK
from ..topk import select_topk, topk


def build_exclusion(X: sp.csr_matrix, filter_seen: bool, filter_items: Any) -> Exclusion | None:
    """The seen items and/or filter_items as one `Exclusion` (None when neither), built once.

    filter_items: None; a 1-D sequence of item ids removed for every user; or a scipy.sparse
    (n_users, n_items) matrix whose nonzeros are removed per user.
    """
    n_users, n_items = X.shape
    parts = []
    if not isinstance(filter_seen, (bool, np.bool_)):
        raise TypeError(f"filter_seen must be True or False, got {type(filter_seen).__name__}")
    if filter_seen:
        parts.append(X)
    if filter_items is not None:
        if sp.issparse(filter_items):
            if filter_items.shape != (n_users, n_items):
                raise ValueError(
                    f"filter_items as a sparse matrix must have shape {(n_users, n_items)}, "
                    f"got {filter_items.shape}"
                )
            f = sp.csr_matrix(filter_items, dtype=np.float32, copy=True)
            f.eliminate_zeros()
            f.data[:] = 1.0
            parts.append(f)
        else:
            ids = check_item_ids(filter_items, n_items, "filter_items", allow_scalar=False)
            if ids.size and n_users:
                ids = np.unique(ids)
                rows = np.repeat(np.arange(n_users), ids.size)
                cols = np.tile(ids, n_users)
                parts.append(
                    sp.csr_matrix(
                        (np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items)
                    )
                )
    if not parts:
        return None
    if len(parts) == 1 and parts[0] is X:
        return from_sparse(X)  # X is canonical (as_interactions): its structure as it is
    out = parts[0].copy()
    out.data = np.ones_like(out.data)
    for p in parts[1:]:
        out = out + p
    return from_sparse(sp.csr_matrix(out))


def exclusion_in_range(exclude: Exclusion | None, lo: int, hi: int) -> Exclusion | None:
    """The exclusions among the items [lo, hi), as positions local to that range."""
    if exclude is None or (lo, hi) == (0, exclude.n_items):
        return exclude
    return exclude.restricted_to(np.arange(lo, hi, dtype=np.int64))


def with_offset(res: TopK, lo: int) -> TopK:
    """Range-local ids shifted to global ones (padding -1 stays -1)."""
    return res if lo == 0 else TopK(res.scores, np.where(res.ids >= 0, res.ids + lo, -1))


def column_range(owner: Any, matrix: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """matrix[:, lo:hi] as a contiguous array, made once per (matrix, lo, hi) and kept on
    `owner` (the item-item models score an item range from its own columns). A copy made from
    an earlier matrix (before a refit or add_items) is never returned."""
    if (lo, hi) == (0, matrix.shape[1]):
        return matrix
    cache = owner.__dict__.setdefault("_column_ranges", {})
    hit = cache.get((lo, hi))
    if hit is None or hit[0] is not matrix:
        hit = cache[(lo, hi)] = (matrix, np.ascontiguousarray(matrix[:, lo:hi]))
    return hit[1]


def dot_topk(users: np.ndarray, items: np.ndarray, k: int, exclude: Exclusion | None) -> TopK:
    """recfast.topk by inner product; an empty batch gives empty results."""
    if users.shape[0] == 0:
        return TopK.empty(0, k)
    return topk(users, items, k, metric="dot", exclude=exclude)


def cosine_similar_items(emb: np.ndarray, item_ids: Any, k: int) -> TopK:
    """Each item's k nearest items by cosine over the rows of emb, never the item itself."""
    k = check_k(k)
    ids = check_item_ids(item_ids, emb.shape[0], "item_ids", allow_scalar=True)
    return topk(emb[ids], emb, k, metric="cosine", exclude=[np.array([i]) for i in ids])


# Users per score block of the item-item models: a block of scores over 4,000 items is 16 MiB.
SCORE_BLOCK_USERS = 1024


def item_item_scores(
    m: sp.csr_matrix, item_item: np.ndarray, dense: np.ndarray | None = None
) -> np.ndarray:
    """Scores X @ item_item (+ `dense`, updated in place when given) of the histories m.

    X is sparse, so this costs nnz(X) x n_items multiply-adds (natively, cache-blocked), where
    folding the rows of X into recfast.topk's query vectors would cost n_users x n_items^2.
    """
    out = dense if dense is not None else np.zeros((m.shape[0], item_item.shape[1]), np.float32)
    return _native.csr_dense_accumulate(m, item_item, out, num_threads=available_cpus())


def item_item_topk(
    m: sp.csr_matrix,
    item_item: np.ndarray,
    k: int,
    exclude: Exclusion | None,
    dense_part: Any = None,
) -> TopK:
    """recfast.select_topk over the score rows X @ item_item (+ dense_part(X)), by blocks.

    dense_part(block) gives the float32 dense scores of a block of histories (or None).
    """
    n = m.shape[0]
    if n == 0:
        return TopK.empty(0, k)
    scores, ids = [], []
    for s in range(0, n, SCORE_BLOCK_USERS):
        e = min(n, s + SCORE_BLOCK_USERS)
        rows = m[s:e]
        block = item_item_scores(rows, item_item, dense_part(rows) if dense_part else None)
        r = select_topk(block, k, exclude=exclude.block(s, e) if exclude is not None else None)
        scores.append(r.scores)
        ids.append(r.ids)
    return TopK(np.concatenate(scores), np.concatenate(ids))
