"""The public top-k API over the native core."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _cuda_backend, _native
from ._exclusion import as_exclusion
from ._inputs import (
    as_float32_matrix,
    as_row_batch,
    check_k,
    check_metric,
    check_num_threads,
    check_output_size,
    prepare,
)
from ._types import TopK

__all__ = ["TopK", "topk", "select_topk", "normalize", "merge_topk", "simd_level"]


def topk(
    queries: Any,
    items: Any,
    k: int,
    *,
    metric: str = "cosine",
    exclude: Any = None,
    num_threads: int | None = None,
    device: str = "auto",
) -> TopK:
    """Exact top-k items for each query, scanned natively without a queries x items matrix.

    Parameters
    ----------
    queries
        (B, d) or (d,) floats. float32 with contiguous rows is used without a copy
        (read-only arrays, np.memmap and torch CPU tensors too); float16/float64 are
        converted, other layouts copied.
    items
        (N, d) floats, same rules.
    k
        how many items per query (>= 1). With fewer than k eligible items the row is padded
        with id -1 and score -inf; a k above N whose (B, k) result would pass 16 GiB is a
        ValueError.
    metric
        "cosine" (q.x / (|q| |x|), a zero vector scores 0) or "dot" (q.x).
    exclude
        items never returned, per query: a scipy.sparse matrix (B, N) whose nonzeros
        are excluded, or a sequence of B integer arrays of item ids.
    num_threads
        None for every CPU this process may use, or a positive count, capped at
        4 threads per such CPU (more only compete for the same cores; worker threads idle
        for 2 s leave when a later call asks for fewer). Results do not depend on it.
        Ignored on the GPU.
    device
        "auto" (the GPU exactly when queries or items are torch CUDA tensors, else the
        CPU), "cpu", or "cuda" / "cuda:N" (numpy inputs are copied to the GPU once). The GPU
        needs `recfast.HAS_CUDA`; asking for it without raises RuntimeError.

    Returns
    -------
    TopK
        TopK(scores float32, ids int64), each (B, k) (or (k,) for a 1-D query), rows sorted by
        score descending with equal scores in increasing id order. NaN scores are never returned.
        numpy arrays, except for torch CUDA inputs: then torch CUDA tensors on their device.
    """
    k = check_k(k)
    metric = check_metric(metric)
    threads = check_num_threads(num_threads)
    if _cuda_backend.use_cuda(device, queries, items):
        qs: tuple[Any, ...] = tuple(getattr(queries, "shape", ()))
        xs: tuple[Any, ...] = tuple(getattr(items, "shape", ()))
        if len(qs) in (1, 2) and len(xs) == 2:  # other shapes: the backend's checks raise
            check_output_size(int(qs[0]) if len(qs) == 2 else 1, k, int(xs[0]))
        return _cuda_backend.topk(queries, items, k, metric=metric, exclude=exclude, device=device)
    args = prepare(queries, items, exclude)
    b, n = args.queries.shape[0], args.items.shape[0]
    check_output_size(b, k, n)
    if b == 0 or n == 0:
        # Nothing to scan. (NumPy gives empty arrays zero strides, which the core rejects.)
        return args.result(*TopK.empty(b, k))
    return args.result(*_native.topk(args.queries, args.items, k, metric, args.exclude, threads))


def select_topk(
    scores: Any, k: int, *, exclude: Any = None, num_threads: int | None = None
) -> TopK:
    """The k best columns of each row of a precomputed score matrix, natively.

    For scores that are not one dot product per (query, item) pair, such as a model's sum of a
    dense and a sparse part, computed block by block: the same output contract as `topk`
    (sorted by score descending, equal scores lower column first, NaN never returned, rows with
    fewer than k eligible columns padded with id -1 and score -inf), in one pass over each row.

    Parameters
    ----------
    scores
        (B, N) or (N,) floats (float32 with contiguous rows is used without a copy).
    k
        how many columns per row (>= 1); a k above N whose (B, k) result would pass 16 GiB
        is a ValueError.
    exclude
        columns never returned, per row: a scipy.sparse (B, N) matrix whose nonzeros
        are excluded, or a sequence of B integer arrays of column ids.
    num_threads
        None for every CPU this process may use, or a positive count, capped at
        4 threads per such CPU (as in `topk`).

    Returns
    -------
    TopK
        TopK(scores float32, ids int64), each (B, k) (or (k,) for 1-D scores).
    """
    k = check_k(k)
    threads = check_num_threads(num_threads)
    s, exclude, single = as_row_batch(scores, "scores", exclude)
    b, n = s.shape
    check_output_size(b, k, n)
    excl = as_exclusion(exclude, b, n)
    if b == 0 or n == 0:
        out = TopK.empty(b, k)
    else:
        out = TopK(*_native.select_topk(s, k, excl, threads))
    return TopK(out.scores[0], out.ids[0]) if single else out


def normalize(x: Any) -> np.ndarray:
    """Rows of x scaled to unit L2 norm as a new float32 array; zero rows stay zero.

    Norms and scaling are computed in float64, so rows of any finite float32 magnitude (1e-30
    or 1e30, whose squares under- or overflow in float32) come out with unit norm. A row whose
    norm is below 1 / FLT_MAX (about 2.9e-39, all components denormal) stays as a zero row, as
    the native kernels score it.
    """
    a = as_float32_matrix(x, "x", allow_1d=True)
    flat = a[None, :] if a.ndim == 1 else a
    out = np.empty(flat.shape, np.float32)
    step = max(1, (1 << 22) // max(1, flat.shape[1]))  # rows per float64 block (32 MiB)
    for s in range(0, flat.shape[0], step):
        block = flat[s : s + step].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            inv = np.where(norms > 0, 1.0 / norms, 0.0)
        inv[~(inv <= np.finfo(np.float32).max)] = 0.0  # too tiny (or non-finite): a zero row
        out[s : s + step] = block * inv[:, None]
    return out[0] if a.ndim == 1 else out


_INT64_MAX = int(np.iinfo(np.int64).max)


def _merge_part(part: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """parts[n] as 2-D float32 scores and int64 global ids (-1 for padding), validated."""
    name = f"parts[{n}]"
    if not (isinstance(part, tuple) and len(part) == 2):
        raise TypeError(f"{name} must be a (TopK, id_offset) pair, got {type(part).__name__}")
    res, offset = part
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral):
        raise TypeError(
            f"{name}: id_offset must be an integer, got {type(offset).__name__} "
            "(each part is a (TopK, id_offset) pair)"
        )
    offset = int(offset)
    if not 0 <= offset <= _INT64_MAX:
        raise ValueError(f"{name}: id_offset must be in [0, 2**63 - 1], got {offset}")
    if not (isinstance(res, (tuple, list)) and len(res) == 2):
        raise TypeError(
            f"{name} must be a (TopK, id_offset) pair; its first element is a "
            f"{type(res).__name__}, not a TopK"
        )
    s, i = np.asarray(res[0]), np.asarray(res[1])
    if s.dtype.kind not in "fiu":
        raise TypeError(
            f"{name}: scores must be real numbers (floats or integers), got dtype {s.dtype}"
        )
    if i.dtype.kind not in "iu":
        raise TypeError(f"{name}: ids must be integers, got dtype {i.dtype}")
    if s.shape != i.shape or s.ndim not in (1, 2):
        raise ValueError(
            f"{name}: scores and ids must have the same 1-D or 2-D shape, "
            f"got {s.shape} and {i.shape}"
        )
    if i.size:
        lo, hi = int(i.min()), int(i.max())
        if lo < -1:
            raise ValueError(f"{name}: ids must be >= 0, or -1 for padding; got {lo}")
        if hi > _INT64_MAX - offset:
            raise ValueError(f"{name}: id {hi} + id_offset {offset} does not fit in int64")
    i2 = np.atleast_2d(i).astype(np.int64)  # ids fit: hi <= int64 max - offset
    return np.atleast_2d(s).astype(np.float32), np.where(i2 >= 0, i2 + np.int64(offset), -1)


def merge_topk(parts: Sequence[tuple[TopK, int]], k: int) -> TopK:
    """Merge results computed on item shards into the exact global top-k.

    Each part is (TopK, id_offset): its ids are local to a shard whose first item has global id
    `id_offset`. Padding (id -1) is dropped; the result follows the tie and padding rules of
    `topk`.

    Parameters
    ----------
    parts
        (TopK, id_offset) pairs, all 1-D or all 2-D with the same number of rows; scores
        real (float or integer), ids integers >= 0 or -1 for padding, id_offset an integer
        >= 0 with every id + id_offset within int64.
    k
        how many items per row in the result (>= 1).
    """
    k = check_k(k)
    if isinstance(parts, (str, bytes)) or not hasattr(parts, "__len__"):
        raise TypeError(
            f"parts must be a sequence of (TopK, id_offset) pairs, got {type(parts).__name__}"
        )
    if len(parts) == 0:
        raise ValueError("parts must hold at least one (TopK, id_offset) pair")
    scores_list, ids_list, ndims = [], [], set()
    for n, part in enumerate(parts):
        s2, i2 = _merge_part(part, n)
        ndims.add(np.ndim(part[0][0]))
        scores_list.append(s2)
        ids_list.append(i2)
    if len(ndims) != 1:
        raise ValueError("parts mix 1-D (one query) and 2-D (a batch) results")
    rows = {s.shape[0] for s in scores_list}
    if len(rows) != 1:
        raise ValueError(f"parts have different numbers of query rows: {sorted(rows)}")
    single = ndims == {1}
    s = np.concatenate(scores_list, axis=1)
    i = np.concatenate(ids_list, axis=1)
    valid = (i >= 0) & ~np.isnan(s)
    # Sort each row by (valid first, score descending, id ascending).
    key_score = np.where(valid, -s.astype(np.float64), np.inf)
    key_id = np.where(valid, i, np.iinfo(np.int64).max)
    order = np.lexsort((key_id, key_score), axis=-1)[:, :k]
    out_s = np.take_along_axis(np.where(valid, s, -np.inf), order, axis=1).astype(np.float32)
    out_i = np.take_along_axis(np.where(valid, i, -1), order, axis=1)
    if out_s.shape[1] < k:
        pad = k - out_s.shape[1]
        out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=-np.inf)
        out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=-1)
    if single:
        return TopK(out_s[0], out_i[0])
    return TopK(out_s, out_i)


def simd_level() -> str:
    """The instruction set the native kernels use: 'avx512', 'avx2' or 'generic'."""
    return _native.simd_level()
