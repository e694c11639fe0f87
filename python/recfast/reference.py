"""NumPy reference top-k with the contract of `recfast.topk`, written for clarity.

It is the oracle of the tests and the baseline of the benchmark: scores by matmul in query
blocks, then the k best per row by argpartition, ties at the k-th place resolved by id.

It decodes its inputs itself, in a few plain lines, rather than through the input handling of
`recfast.topk` (recfast._inputs), so that a decoding bug there does not show in both: only the
checks of k, metric and num_threads are shared, to keep their messages the same. Bad arrays and
exclusions raise the same error types as `recfast.topk`, naming the argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._inputs import check_k, check_metric, check_num_threads
from ._types import TopK

# Score-matrix elements per block: bounds the reference's own memory (128 MiB of float32).
_BLOCK_ELEMENTS = 32 * 1024 * 1024
# Rows normalized at once (their float64 copy): 64 MiB at d = 128.
_NORMALIZE_ROWS = 65536

# (rows, cols) of the excluded (row, column) pairs, sorted by row; a pair may repeat.
Pairs = tuple[np.ndarray, np.ndarray]


def _float32_array(x: Any, name: str, *, allow_1d: bool) -> np.ndarray:
    """x as a C-ordered float32 array, 2-D (or 1-D when allow_1d); never written to."""
    if type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach"):
        x = x.detach().cpu()
        if not x.is_floating_point():
            raise TypeError(f"{name} must hold floating-point numbers, got {x.dtype}")
        x = x.float().numpy()
    elif isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of floats, got {type(x).__name__}")
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} must be an array of floats: {exc}") from exc
    if a.dtype.kind != "f":
        raise TypeError(
            f"{name} must hold floating-point numbers (float32, or float16/float64 to be "
            f"converted), got dtype {a.dtype}"
        )
    if not (a.ndim == 2 or (allow_1d and a.ndim == 1)):
        expected = "1-D (one query) or 2-D (a batch)" if allow_1d else "2-D (rows of vectors)"
        raise ValueError(f"{name} must be {expected}, got an array of shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _sparse_pairs(exclude: Any, n_rows: int, n_cols: int) -> Pairs:
    """The nonzero entries of a scipy.sparse matrix, duplicates summed first (a stored zero, or
    duplicates summing to zero, exclude nothing)."""
    if exclude.shape != (n_rows, n_cols):
        raise ValueError(
            f"exclude must have shape (n_queries, n_items) = ({n_rows}, {n_cols}), "
            f"got {exclude.shape}"
        )
    coo = sp.coo_matrix(exclude)
    rows = np.asarray(coo.row, dtype=np.int64)
    cols = np.asarray(coo.col, dtype=np.int64)
    vals = np.asarray(coo.data)
    if len(vals) == 0:
        return rows, cols
    order = np.lexsort((cols, rows))  # by row, then column; stable
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.flatnonzero(
        np.concatenate(([True], (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])))
    )
    total = np.add.reduceat(vals, first)  # each (row, column) pair's stored values summed
    keep = first[total != 0]
    return rows[keep], cols[keep]


def _sequence_pairs(exclude: Any, n_rows: int, n_cols: int, single: bool) -> Pairs:
    """A sequence of n_rows integer id arrays (for one 1-D row, a flat list of ids too)."""
    if isinstance(exclude, (str, bytes, dict)) or not hasattr(exclude, "__len__"):
        raise TypeError(
            "exclude must be None, a scipy.sparse matrix or a sequence of integer arrays, "
            f"got {type(exclude).__name__}"
        )
    if single and (
        exclude.ndim == 1
        if isinstance(exclude, np.ndarray)
        else all(np.ndim(v) == 0 for v in exclude)
    ):
        exclude = [exclude]  # one flat list of ids
    if len(exclude) != n_rows:
        raise ValueError(f"exclude has {len(exclude)} rows but there are {n_rows} queries")
    rows, cols = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for r, ids in enumerate(exclude):
        a = np.asarray([] if ids is None else ids).ravel()
        if a.size == 0:
            continue
        if a.dtype.kind not in "iu":
            raise TypeError(f"exclude[{r}] must hold integer item ids, got dtype {a.dtype}")
        outside = a[(a < 0) | (a >= n_cols)]
        if outside.size:
            raise ValueError(f"exclude[{r}] holds item id {outside[0]}, outside [0, {n_cols})")
        rows.append(np.full(a.size, r, np.int64))
        cols.append(a.astype(np.int64))
    return np.concatenate(rows), np.concatenate(cols)


def _excluded_pairs(exclude: Any, n_rows: int, n_cols: int, single: bool) -> Pairs | None:
    if exclude is None:
        return None
    if sp.issparse(exclude):
        return _sparse_pairs(exclude, n_rows, n_cols)
    return _sequence_pairs(exclude, n_rows, n_cols, single)


def _eligible(scores: np.ndarray, pairs: Pairs | None, start: int) -> np.ndarray:
    """Entries of a block of rows (from row `start`) that may be returned: not NaN, not
    excluded."""
    eligible = ~np.isnan(scores)
    if pairs is not None:
        rows, cols = pairs
        lo, hi = np.searchsorted(rows, [start, start + scores.shape[0]])
        eligible[rows[lo:hi] - start, cols[lo:hi]] = False
    return eligible


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm in float64, then rounded to float32: right for rows whose
    float32 squared norm would overflow (|x| ~ 1e20) or be subnormal (|x| ~ 1e-20). A zero row
    stays zero; a row holding inf or NaN becomes NaN (where not 0)."""
    out = np.empty(x.shape, np.float32)
    for s in range(0, x.shape[0], _NORMALIZE_ROWS):
        x64 = x[s : s + _NORMALIZE_ROWS].astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN rows
            norms = np.sqrt(np.einsum("ij,ij->i", x64, x64))
            inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
            out[s : s + _NORMALIZE_ROWS] = x64 * inv[:, None]
    return out


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
    s = _float32_array(scores, "scores", allow_1d=True)
    single = s.ndim == 1
    if single:
        s = s[None, :]
    pairs = _excluded_pairs(exclude, s.shape[0], s.shape[1], single)
    out_s, out_i = _topk_rows(s, _eligible(s, pairs, 0), k)
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
    q = _float32_array(queries, "queries", allow_1d=True)
    x = _float32_array(items, "items", allow_1d=False)
    if q.shape[-1] != x.shape[1]:
        raise ValueError(
            f"queries have dimension {q.shape[-1]} but items have dimension {x.shape[1]}"
        )
    if x.shape[1] == 0:
        raise ValueError("queries and items must have at least one column (dimension 0 given)")
    single = q.ndim == 1
    if single:
        q = q[None, :]
    pairs = _excluded_pairs(exclude, q.shape[0], x.shape[0], single)
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
        eligible = _eligible(scores, pairs, start)
        out_s[start:stop], out_i[start:stop] = _topk_rows(scores, eligible, k)
    return TopK(out_s[0], out_i[0]) if single else TopK(out_s, out_i)
