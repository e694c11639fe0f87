"""pytest-benchmark suite for recfast.topk (run with `pytest bench/`; the normal test run skips it).

Moderate shapes (N=200,000 normalized float32 items by default, d=128, k=10) so a run takes
about a minute: recfast with metric "dot" and "cosine" at B in 1, 16, 128, 1024 and the NumPy
reference at B in 1, 16, 128 for comparison. Each benchmark stores GFLOP/s (2*B*N*d / best time)
in `extra_info`. The side-by-side comparison with FAISS, torch and implicit, each in its own
process, is `python -m recfast.bench`; see bench/README.md.

RECFAST_BENCH_ITEMS=20000 shrinks N for a smoke run.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

import recfast  # noqa: E402
from recfast import reference  # noqa: E402
from recfast._bench_worker import make_data  # noqa: E402

N = int(os.environ.get("RECFAST_BENCH_ITEMS", "200000"))
D = 128
K = 10
SEED = 0
RECFAST_BATCHES = [1, 16, 128, 1024]
REFERENCE_BATCHES = [1, 16, 128]
# Near-tie tolerance of the sanity check (normalized data, scores in [-1, 1]).
TOL = 1e-5


@functools.lru_cache(maxsize=1)
def data() -> tuple[np.ndarray, np.ndarray]:
    """(items (N, D), queries (max B, D)): the same data as `python -m recfast.bench`."""
    return make_data(N, D, max(RECFAST_BATCHES), SEED)


@functools.lru_cache(maxsize=None)
def expected(b: int) -> np.ndarray:
    """The reference's top-k scores for the first b queries (the sanity check's oracle)."""
    items, queries = data()
    return reference.topk(queries[:b], items, K, metric="dot").scores


def _record(benchmark, b: int, result) -> None:
    benchmark.extra_info.update({"N": N, "d": D, "B": b, "k": K, "simd_level": recfast.simd_level()})
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.min > 0:
        benchmark.extra_info["gflops"] = round(2.0 * b * N * D / stats.stats.min / 1e9, 2)
    scores = np.asarray(result.scores)
    assert scores.shape == (b, K)
    if b <= 128:  # the reference is slow beyond that; tests/ cover correctness in depth
        np.testing.assert_allclose(scores, expected(b), rtol=0, atol=TOL)


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("b", RECFAST_BATCHES)
def test_recfast_topk(benchmark, b: int, metric: str) -> None:
    items, queries = data()
    q = np.ascontiguousarray(queries[:b])
    benchmark.group = f"topk N={N} d={D} k={K} B={b}"
    result = benchmark.pedantic(recfast.topk, args=(q, items, K), kwargs={"metric": metric},
                                rounds=5, warmup_rounds=1, iterations=1)
    benchmark.extra_info["metric"] = metric
    _record(benchmark, b, result)


@pytest.mark.parametrize("b", REFERENCE_BATCHES)
def test_reference_topk(benchmark, b: int) -> None:
    items, queries = data()
    q = np.ascontiguousarray(queries[:b])
    benchmark.group = f"topk N={N} d={D} k={K} B={b}"
    result = benchmark.pedantic(reference.topk, args=(q, items, K), kwargs={"metric": "dot"},
                                rounds=3, warmup_rounds=1, iterations=1)
    benchmark.extra_info["metric"] = "dot"
    _record(benchmark, b, result)
