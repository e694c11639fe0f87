"""Typed interface of the native extension recfast._core (validated inputs only)."""

import numpy as np
import numpy.typing as npt

__version__: str

def topk(
    queries: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    k: int,
    metric: str,
    exclude_indptr: npt.NDArray[np.int64] | None,
    exclude_indices: npt.NDArray[np.int64] | None,
    num_threads: int,
    batch_size: int = 0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def select_topk(
    scores: npt.NDArray[np.float32],
    k: int,
    exclude_indptr: npt.NDArray[np.int64] | None,
    exclude_indices: npt.NDArray[np.int64] | None,
    num_threads: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def csr_dense_accumulate(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int64],
    values: npt.NDArray[np.float32],
    dense: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    num_threads: int,
) -> None: ...
def dense_scores(
    queries: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    num_threads: int,
    bias: npt.NDArray[np.float32] | None = None,
) -> None: ...
def simd_level() -> str: ...
def detected_simd_level() -> str: ...

SMALL_BATCH_MAX: int

def scan_kernel() -> str: ...
def _set_scan_mixing(allowed: bool) -> None: ...
def set_simd_level(level: str) -> None: ...
def _simd_levels() -> list[str]: ...
def hw_floors(read_mib: int, threads: int) -> dict[str, float]: ...
def _raise_in_worker(n_tasks: int, failing_task: int, num_threads: int) -> None: ...
def quant_search(
    queries: npt.NDArray[np.float32],
    quant_type: str,
    codes: npt.NDArray[np.int8] | npt.NDArray[np.uint16],
    scale: npt.NDArray[np.float32],
    err: npt.NDArray[np.float32],
    norm: npt.NDArray[np.float32],
    vectors: npt.NDArray[np.float32] | None,
    row_hash: npt.NDArray[np.uint64] | None,
    k: int,
    metric: str,
    exact: bool,
    exclude_indptr: npt.NDArray[np.int64] | None,
    exclude_indices: npt.NDArray[np.int64] | None,
    allow: npt.NDArray[np.uint8] | None,
    num_threads: int,
    vectors_fd: int = -1,
    vectors_offset: int = 0,
    batch_size: int = 0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], int]: ...
def row_hashes(x: npt.NDArray[np.float32]) -> npt.NDArray[np.uint64]: ...
def quant_kernel() -> str: ...
def _quant_kernels() -> list[str]: ...
def _set_quant_kernel(name: str) -> None: ...
