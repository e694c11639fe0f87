"""recfast: exact, fast top-k for recommender systems.

The hot path is a native scan (C++17, SIMD chosen at run time, its own threads, the GIL
released) that fuses scoring with per-query heaps, so no queries x items matrix is ever held.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._cuda_backend import HAS_CUDA
from ._types import TopK
from .index import ItemIndex
from .topk import merge_topk, normalize, select_topk, simd_level, topk

try:
    __version__ = version("recfast")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "ItemIndex",
    "TopK",
    "topk",
    "select_topk",
    "normalize",
    "merge_topk",
    "simd_level",
    "HAS_CUDA",
    "__version__",
]
