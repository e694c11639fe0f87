"""Typed interface of the optional extension recfast._cuda (validated inputs only).

Built when the CUDA toolkit is found (RECFAST_CUDA=AUTO|ON); see recfast/_cuda_backend.py for
the Python layer that validates inputs and picks the device.
"""

import numpy as np
import numpy.typing as npt

default_scratch_bytes: int
max_pass_k: int

def topk_host(
    queries: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    k: int,
    metric: str,
    exclude_indptr: npt.NDArray[np.int64] | None,
    exclude_indices: npt.NDArray[np.int64] | None,
    device: int = 0,
    scratch_bytes: int = 0,
    max_query_tile: int = 0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def topk_device(
    queries_ptr: int,
    n_queries: int,
    query_stride: int,
    items_ptr: int,
    n_items: int,
    item_stride: int,
    dim: int,
    k: int,
    metric: str,
    exclude_indptr: npt.NDArray[np.int64] | None,
    exclude_indices: npt.NDArray[np.int64] | None,
    out_scores_ptr: int,
    out_ids_ptr: int,
    device: int,
    stream: int,
    scratch_bytes: int = 0,
    max_query_tile: int = 0,
) -> None: ...
def device_count() -> int: ...
def availability() -> str: ...
def runtime_version() -> int: ...
def driver_version() -> int: ...
def device_name(device: int = 0) -> str: ...
def plan(
    n_queries: int,
    n_items: int,
    dim: int,
    k: int,
    scratch_bytes: int = 0,
    max_query_tile: int = 0,
) -> dict[str, int]: ...
