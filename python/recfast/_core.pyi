"""Typed interface of the native extension recfast._core (validated inputs only)."""

import numpy as np
import numpy.typing as npt

def topk(
    queries: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    k: int,
    metric: str,
    exclude_indptr: npt.NDArray[np.int64] | None,
    exclude_indices: npt.NDArray[np.int64] | None,
    num_threads: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def simd_level() -> str: ...
def detected_simd_level() -> str: ...
def set_simd_level(level: str) -> None: ...
def _raise_in_worker(n_tasks: int, failing_task: int, num_threads: int) -> None: ...
