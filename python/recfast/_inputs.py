"""Input validation shared by the native and the reference top-k: one place for every message."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._types import TopK

METRICS = ("cosine", "dot")
_CONVERTIBLE_FLOATS = (np.float16, np.float64, np.longdouble)


def is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def as_float32_matrix(x: Any, name: str, *, allow_1d: bool = False) -> np.ndarray:
    """Return x as a float32 ndarray whose rows are contiguous, copying only when needed.

    float32 arrays (read-only ones and np.memmap included) with contiguous rows and torch CPU
    tensors are used without a copy; float16/float64 are converted; other layouts (Fortran
    order, column strides) are copied to C order.
    """
    if is_torch_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(
                f"{name} is a torch tensor on {x.device}; this call computes on the CPU "
                "(move it with .cpu(), or use a CUDA build of recfast)"
            )
        x = x.detach()
        if str(x.dtype) in ("torch.bfloat16",):
            x = x.float()
        x = x.numpy()
    elif not isinstance(x, np.ndarray):
        if isinstance(x, (str, bytes)) or x is None:
            raise TypeError(f"{name} must be an array of floats, got {type(x).__name__}")
        x = np.asarray(x)
    if x.dtype != np.float32:
        if x.dtype.type in _CONVERTIBLE_FLOATS or x.dtype.type is np.float32:  # or byte-swapped
            x = x.astype(np.float32)
        else:
            raise TypeError(
                f"{name} must hold floating-point numbers (float32, or float16/float64 to be "
                f"converted), got dtype {x.dtype}"
            )
    if x.ndim == 1 and allow_1d:
        pass
    elif x.ndim != 2:
        expected = "1-D (one query) or 2-D (a batch)" if allow_1d else "2-D (rows of vectors)"
        raise ValueError(f"{name} must be {expected}, got an array of shape {x.shape}")
    if x.ndim == 2 and x.shape[0] > 0 and x.shape[1] > 0:
        row_ok = x.strides[0] >= 0 and x.strides[0] % 4 == 0
        col_ok = x.shape[1] == 1 or x.strides[1] == 4
        if not (row_ok and col_ok and x.dtype.isnative):
            x = np.ascontiguousarray(x, dtype=np.float32)
    elif x.ndim == 1 and x.shape[0] > 1 and (x.strides[0] != 4 or not x.dtype.isnative):
        x = np.ascontiguousarray(x, dtype=np.float32)
    return x


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def check_metric(metric: Any) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return str(metric)


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# The native pool never holds more than this many workers per usable CPU (cpp/src/runtime/thread_pool.h,
# kWorkersPerCpu): more threads only compete for the same cores.
MAX_THREADS_PER_CPU = 4


def max_threads() -> int:
    """The most worker threads a call uses: MAX_THREADS_PER_CPU x the CPUs this process may use."""
    return MAX_THREADS_PER_CPU * available_cpus()


def check_num_threads(num_threads: Any) -> int:
    """None -> every usable CPU; a positive integer -> itself, capped at `max_threads()`."""
    if num_threads is None:
        return available_cpus()
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral) or num_threads < 1:
        raise ValueError(f"num_threads must be None or a positive integer, got {num_threads!r}")
    return min(int(num_threads), max_threads())


# A (B, k) result is a float32 and an int64 per cell.
_RESULT_BYTES_PER_CELL = 12
MAX_PADDED_RESULT_BYTES = 2**34


def check_output_size(n_queries: int, k: int, n_items: int) -> None:
    """Refuse a k that would allocate a huge result made mostly of padding.

    A (n_queries, k) result costs 12 bytes a cell; when k exceeds n_items every cell beyond
    n_items is padding (id -1), so past `MAX_PADDED_RESULT_BYTES` (16 GiB) such a k is a
    ValueError naming k instead of an attempt to allocate it.
    """
    size = int(n_queries) * int(k) * _RESULT_BYTES_PER_CELL
    if k > n_items and size > MAX_PADDED_RESULT_BYTES:
        raise ValueError(
            f"k = {k} asks for a ({n_queries}, k) result of {size / 2**30:,.0f} GiB, but there "
            f"are only N = {n_items} items: a k larger than N only adds padding (id -1)"
        )


def check_shapes(queries: np.ndarray, items: np.ndarray) -> None:
    if queries.shape[-1] != items.shape[1]:
        raise ValueError(
            f"queries have dimension {queries.shape[-1]} but items have dimension {items.shape[1]}"
        )
    if items.shape[1] == 0:
        raise ValueError("queries and items must have at least one column (dimension 0 given)")


def exclusion_csr(
    exclude: Any, n_queries: int, n_items: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-query exclusions as CSR (indptr, indices), int64, each row sorted and unique.

    `exclude` is None, a scipy.sparse matrix/array of shape (n_queries, n_items) whose stored
    nonzeros are the excluded items, or a sequence of n_queries integer arrays of item ids.
    """
    if exclude is None:
        return None
    if sp.issparse(exclude):
        if exclude.shape != (n_queries, n_items):
            raise ValueError(
                f"exclude must have shape (n_queries, n_items) = ({n_queries}, {n_items}), "
                f"got {exclude.shape}"
            )
        csr = sp.csr_array(exclude, copy=True)
        csr.sum_duplicates()  # also sorts each row
        csr.eliminate_zeros()  # after summing: duplicates that sum to 0 are a zero entry
        return csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
    if isinstance(exclude, (str, bytes, dict)) or not hasattr(exclude, "__len__"):
        raise TypeError(
            "exclude must be None, a scipy.sparse matrix or a sequence of integer arrays, "
            f"got {type(exclude).__name__}"
        )
    if len(exclude) != n_queries:
        raise ValueError(f"exclude has {len(exclude)} rows but there are {n_queries} queries")
    rows = []
    for r, row in enumerate(exclude):
        arr = np.asarray(row if row is not None else [])
        if arr.size == 0:
            rows.append(np.empty(0, np.int64))
            continue
        if arr.dtype.kind not in "iu":
            raise TypeError(f"exclude[{r}] must hold integer item ids, got dtype {arr.dtype}")
        arr = arr.ravel().astype(np.int64, copy=False)
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= n_items:
            bad = lo if lo < 0 else hi
            raise ValueError(f"exclude[{r}] holds item id {bad}, outside [0, {n_items})")
        arr = np.sort(arr)  # sort + dedupe: np.unique (hash based in NumPy 2.4) is ~100x slower
        rows.append(arr[np.concatenate(([True], arr[1:] != arr[:-1]))])
    indptr = np.zeros(n_queries + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.concatenate(rows) if rows else np.empty(0, np.int64)
    return indptr, indices.astype(np.int64, copy=False)


def single_query_exclude(exclude: Any) -> Any:
    """For a 1-D query, allow a flat array of ids as its exclusion list."""
    if exclude is None or sp.issparse(exclude):
        return exclude
    arr = exclude if isinstance(exclude, np.ndarray) else None
    if arr is not None and arr.ndim == 1:
        return [arr]
    if isinstance(exclude, (list, tuple)) and all(isinstance(v, numbers.Integral) for v in exclude):
        return [np.asarray(exclude, dtype=np.int64)]
    return exclude


@dataclass(frozen=True)
class Problem:
    """A validated top-k problem: 2-D float32 queries and items, exclusions as CSR."""

    queries: np.ndarray
    items: np.ndarray
    exclude: tuple[np.ndarray, np.ndarray] | None
    single: bool  # the caller gave one 1-D query: results are 1-D

    @property
    def exclude_csr(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self.exclude if self.exclude is not None else (None, None)

    def result(self, scores: Any, ids: Any) -> TopK:
        return TopK(scores[0], ids[0]) if self.single else TopK(scores, ids)


def as_row_batch(x: Any, name: str, exclude: Any) -> tuple[np.ndarray, Any, bool]:
    """x as a 2-D float32 batch of rows, its exclusions, and whether x was one 1-D row (whose
    exclusions may then be a flat list of ids)."""
    a = as_float32_matrix(x, name, allow_1d=True)
    if a.ndim == 1:
        return a[None, :], single_query_exclude(exclude), True
    return a, exclude, False


def prepare(queries: Any, items: Any, exclude: Any) -> Problem:
    """Validate and convert the array arguments shared by every top-k backend."""
    q = as_float32_matrix(queries, "queries", allow_1d=True)
    x = as_float32_matrix(items, "items")
    check_shapes(q, x)
    q, exclude, single = as_row_batch(q, "queries", exclude)
    return Problem(q, x, exclusion_csr(exclude, q.shape[0], x.shape[0]), single)
