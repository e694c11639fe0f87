"""The one gateway to the compiled core: the only module of recfast that imports `_core`.

Callers hand over validated inputs (`recfast._inputs`, `recfast._exclusion`): 2-D float32
arrays with contiguous rows, a checked k, metric and thread count, and an `Exclusion`. The
wrappers of the lower-level kernels (`dense_scores`, `csr_dense_accumulate`) check their own
arguments, since the core trusts what it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from . import _core
from ._exclusion import Exclusion

__all__ = [
    "topk",
    "select_topk",
    "quant_search",
    "dense_scores",
    "csr_dense_accumulate",
    "row_hashes",
    "simd_level",
    "detected_simd_level",
    "set_simd_level",
    "simd_levels",
    "quant_kernel",
]


def _csr(exclude: Exclusion | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    return (None, None) if exclude is None else (exclude.indptr, exclude.indices)


def topk(
    queries: np.ndarray,
    items: np.ndarray,
    k: int,
    metric: str,
    exclude: Exclusion | None,
    num_threads: int,
    batch_size: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the fused native scan; `batch_size` is the caller's whole batch when
    `queries` is a part of it (it picks the scoring path, 0: queries.shape[0])."""
    indptr, indices = _csr(exclude)
    return _core.topk(queries, items, k, metric, indptr, indices, num_threads, batch_size)


def select_topk(
    scores: np.ndarray, k: int, exclude: Exclusion | None, num_threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k best columns of each row of a float32 score matrix."""
    indptr, indices = _csr(exclude)
    return _core.select_topk(scores, k, indptr, indices, num_threads)


def quant_search(
    queries: np.ndarray,
    storage: str,
    arrays: dict[str, np.ndarray],
    k: int,
    metric: str,
    *,
    exact: bool,
    exclude: Exclusion | None,
    allow: np.ndarray | None,
    num_threads: int,
    check_rows: bool,
    vectors_fd: int,
    vectors_offset: int,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, positions, candidates) of the quantized scan over an index's arrays (codes,
    scale, err, norm; vectors and row_hash for the exact re-scoring)."""
    indptr, indices = _csr(exclude)
    return _core.quant_search(
        queries,
        storage,
        arrays["codes"],
        arrays["scale"],
        arrays["err"],
        arrays["norm"],
        arrays["vectors"] if exact else None,
        arrays["row_hash"] if (exact and check_rows) else None,
        k,
        metric,
        exact,
        indptr,
        indices,
        allow,
        num_threads,
        vectors_fd,
        vectors_offset,
        batch_size,
    )


def _f32_matrix(a: Any, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2:
        raise TypeError(f"{name} must be a 2-D float32 numpy array")
    return a


def dense_scores(
    queries: np.ndarray,
    items: np.ndarray,
    out: np.ndarray | None = None,
    *,
    num_threads: int,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """out = queries @ items.T (+ bias per item): (B, d) and (N, d) float32 rows, (B, N) out.

    The core checks the shapes and strides (ValueError); this wrapper checks the types,
    allocates `out` when it is None and accepts a bias of shape (N,) or (1, N).
    """
    q = _f32_matrix(queries, "queries")
    x = _f32_matrix(items, "items")
    if out is None:
        out = np.empty((q.shape[0], x.shape[0]), np.float32)
    _f32_matrix(out, "out")
    if bias is not None:
        bias = _f32_matrix(np.asarray(bias, np.float32).reshape(1, -1), "bias")
    if q.shape[0] and x.shape[0]:
        _core.dense_scores(q, x, out, num_threads, bias=bias)
    return out


def csr_dense_accumulate(
    m: sp.csr_matrix, dense: np.ndarray, out: np.ndarray, *, num_threads: int
) -> np.ndarray:
    """out += m @ dense for a CSR m (B, n), float32 dense (n, N) and out (B, N); returns out.

    The core checks indptr, the index range and the shapes (ValueError).
    """
    if not sp.issparse(m) or m.format != "csr":
        raise TypeError("m must be a scipy.sparse CSR matrix")
    if m.shape[0] != out.shape[0] or m.shape[1] != dense.shape[0]:
        raise ValueError(f"shapes do not chain: m {m.shape}, dense {dense.shape}, out {out.shape}")
    if m.nnz:
        _core.csr_dense_accumulate(
            m.indptr.astype(np.int64),
            m.indices.astype(np.int64),
            m.data.astype(np.float32, copy=False),
            _f32_matrix(dense, "dense"),
            _f32_matrix(out, "out"),
            num_threads,
        )
    return out


def row_hashes(x: np.ndarray) -> np.ndarray:
    """Per-row uint64 checksums of float32 rows (the ItemIndex `row_hash` section)."""
    return _core.row_hashes(x)


def simd_level() -> str:
    """The instruction set the float32 kernels use now."""
    return _core.simd_level()


# Batches of at most this many queries may score on another path or kernel set than a large
# batch: a caller that cuts one batch into pieces pads the small pieces past it.
SMALL_BATCH_MAX: int = int(_core.SMALL_BATCH_MAX)


def scan_kernel() -> str:
    """The float32 scan's kernel set now: the level's name, or 'avx512+avx2' where the AVX-512
    level runs the AVX2 kernels for batches of up to 16 queries (CPUs that split 512-bit ops)."""
    return _core.scan_kernel()


def set_scan_mixing(allowed: bool) -> None:
    """Test hook: False makes each level run only its own scan kernels; True restores the
    per-path choice."""
    _core._set_scan_mixing(bool(allowed))


def detected_simd_level() -> str:
    """The widest instruction set this CPU offers (before any RECFAST_SIMD override)."""
    return _core.detected_simd_level()


def set_simd_level(level: str) -> None:
    """Force an instruction set (a level this CPU has, as RECFAST_SIMD does)."""
    _core.set_simd_level(level)


def simd_levels() -> list[str]:
    """Every kernel level this build can run on this CPU."""
    return list(_core._simd_levels())


def hw_floors(read_mib: int = 256, threads: int = 1) -> dict[str, float]:
    """This machine's measured rates (about half a second): streaming read GB/s, float32 FMA
    GFLOP/s with 256- and 512-bit vectors on 1 and `threads` threads (0 where the CPU lacks the
    width) and float16 conversions in billions per second. The benchmarks' floors."""
    return dict(_core.hw_floors(int(read_mib), int(threads)))


def quant_kernel() -> str:
    """The kernel set the quantized scans use now."""
    return _core.quant_kernel()
