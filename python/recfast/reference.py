"""NumPy reference top-k with the contract of `recfast.topk`, written for clarity.

It is the oracle of the tests and the baseline of the benchmark: scores by matmul in query
blocks, then the k best per row by argpartition, ties at the k-th place resolved by id.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._inputs import (
    as_row_batch,
    check_k,
    check_metric,
    check_num_threads,
    exclusion_csr,
    prepare,
)
from ._types import TopK

# Score-matrix elements per block: bounds the reference's own memory (128 MiB of float32).
_BLOCK_ELEMENTS = 32 * 1024 * 1024


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf/NaN rows
        inv = np.where(norms > 0, np.float32(1.0) / norms, np.float32(0.0)).astype(np.float32)
        return x * inv[:, None]


def _topk_rows(scores: np.ndarray, eligible: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row of a score block; ineligible entries never returned."""
    b, n = scores.shape
    s = np.where(eligible, scores, -np.inf).astype(np.float32)
    kk = min(k, n)
    out_s = np.full((b, k), -np.inf, np.float32)
    out_i = np.full((b, k), -1, np.int64)
    if kk == 0 or b == 0:
        return out_s, out_i
    # The kk-th largest score per row; every eligible entry at or above it is a candidate.
    kth = np.partition(s, n - kk, axis=1)[:, n - kk]
    rows, cols = np.nonzero((s >= kth[:, None]) & eligible)
    vals = s[rows, cols]
    order = np.lexsort((cols, -vals, rows))  # by row, then score descending, then id
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(b))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    out_s[rows[keep], rank[keep]] = vals[keep]
    out_i[rows[keep], rank[keep]] = cols[keep]
    return out_s, out_i


def select_topk(
    scores: Any, k: int, *, exclude: Any = None, num_threads: int | None = None
) -> TopK:
    """Same contract as `recfast.select_topk`."""
    k = check_k(k)
    check_num_threads(num_threads)
    s, exclude, single = as_row_batch(scores, "scores", exclude)
    excl = exclusion_csr(exclude, s.shape[0], s.shape[1])
    eligible = ~np.isnan(s)
    if excl is not None:
        indptr, indices = excl
        eligible[np.repeat(np.arange(s.shape[0]), np.diff(indptr)), indices] = False
    out_s, out_i = _topk_rows(s, eligible, k)
    return TopK(out_s[0], out_i[0]) if single else TopK(out_s, out_i)


def topk(
    queries: Any,
    items: Any,
    k: int,
    *,
    metric: str = "cosine",
    exclude: Any = None,
    num_threads: int | None = None,
) -> TopK:
    """Same contract as `recfast.topk` (num_threads is validated, then left to NumPy's BLAS)."""
    k = check_k(k)
    metric = check_metric(metric)
    check_num_threads(num_threads)
    pb = prepare(queries, items, exclude)
    q, x, excl = pb.queries, pb.items, pb.exclude
    if metric == "cosine":
        q, x = _normalize(q), _normalize(x)
    b, n = q.shape[0], x.shape[0]
    out_s = np.full((b, k), -np.inf, np.float32)
    out_i = np.full((b, k), -1, np.int64)
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, b, block):
        stop = min(b, start + block)
        with np.errstate(invalid="ignore", over="ignore"):
            scores = q[start:stop] @ x.T
        eligible = ~np.isnan(scores)
        if excl is not None:
            indptr, indices = excl
            lo, hi = indptr[start], indptr[stop]
            row_of = np.repeat(np.arange(stop - start), np.diff(indptr[start : stop + 1]))
            eligible[row_of, indices[lo:hi]] = False
        out_s[start:stop], out_i[start:stop] = _topk_rows(scores, eligible, k)
    return pb.result(out_s, out_i)
