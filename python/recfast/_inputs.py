"""Input validation shared by the native and the reference top-k: one place for every message."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._exclusion import Exclusion, as_exclusion, single_query_exclude
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
    if (
        isinstance(num_threads, bool)
        or not isinstance(num_threads, numbers.Integral)
        or num_threads < 1
    ):
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


@dataclass(frozen=True)
class TopkArgs:
    """Validated top-k arguments: 2-D float32 queries and items, and their exclusions."""

    queries: np.ndarray
    items: np.ndarray
    exclude: Exclusion | None
    single: bool  # the caller gave one 1-D query: results are 1-D

    def result(self, scores: Any, ids: Any) -> TopK:
        return TopK(scores[0], ids[0]) if self.single else TopK(scores, ids)


def as_row_batch(x: Any, name: str, exclude: Any) -> tuple[np.ndarray, Any, bool]:
    """x as a 2-D float32 batch of rows, its exclusions, and whether x was one 1-D row (whose
    exclusions may then be a flat list of ids)."""
    a = as_float32_matrix(x, name, allow_1d=True)
    if a.ndim == 1:
        return a[None, :], single_query_exclude(exclude), True
    return a, exclude, False


def prepare(queries: Any, items: Any, exclude: Any) -> TopkArgs:
    """Validate and convert the array arguments shared by every top-k backend."""
    q = as_float32_matrix(queries, "queries", allow_1d=True)
    x = as_float32_matrix(items, "items")
    check_shapes(q, x)
    q, exclude, single = as_row_batch(q, "queries", exclude)
    return TopkArgs(q, x, as_exclusion(exclude, q.shape[0], x.shape[0]), single)


# --- the models' arguments ----------------------------------------------------------------


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float = 0.0,
    maximum: float | None = None,
    strict_min: bool = False,
    strict_max: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    if v < minimum or (strict_min and v == minimum):
        raise ValueError(f"{name} must be {'>' if strict_min else '>='} {minimum}, got {value}")
    if maximum is not None and (v > maximum or (strict_max and v == maximum)):
        raise ValueError(f"{name} must be {'<' if strict_max else '<='} {maximum}, got {value}")
    return v


def as_interactions(X: Any, name: str = "X", n_items: int | None = None) -> sp.csr_matrix:
    """X as a float32 CSR users x items matrix with sorted, summed indices (copied once)."""
    if sp.issparse(X):
        m = sp.csr_matrix(X, dtype=np.float32, copy=True)
    elif isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise ValueError(f"{name} must be a 2-D users x items matrix, got shape {X.shape}")
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
            raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}")
        m = sp.csr_matrix(X.astype(np.float32))
    else:
        raise TypeError(
            f"{name} must be a scipy.sparse users x items matrix (or a 2-D numpy array), "
            f"got {type(X).__name__}"
        )
    if m.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {m.shape}")
    if n_items is not None and m.shape[1] != n_items:
        raise ValueError(
            f"{name} has {m.shape[1]} item columns but the model was fit on {n_items} items"
        )
    m.sum_duplicates()
    m.eliminate_zeros()
    if m.nnz and not np.all(np.isfinite(m.data)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if m.nnz and m.data.min() < 0:
        raise ValueError(f"{name} must be non-negative (interaction strengths)")
    return m


def check_item_ids(values: Any, n_items: int, name: str, *, allow_scalar: bool) -> np.ndarray:
    """Item column ids as int64, each in [0, n_items); `name` is the argument in messages."""
    ids = np.atleast_1d(np.asarray(values)) if allow_scalar else np.asarray(values)
    if ids.ndim != 1:
        what = "an id or a 1-D sequence of ids" if allow_scalar else "a 1-D sequence of item ids"
        raise ValueError(f"{name} must be {what}, got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name} must hold integer item ids, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_items):
        raise ValueError(f"{name} holds ids outside [0, {n_items})")
    return ids
