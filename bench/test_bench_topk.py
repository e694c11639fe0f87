"""pytest-benchmark suite for recfast.topk (run with `pytest bench/`; the normal test run skips it).

Moderate shapes (N=200,000 normalized float32 items by default, d=128, k=10) so a run takes
about a minute: recfast with metric "dot" and "cosine" at B in 1, 16, 128, 1024 and the NumPy
reference at B in 1, 16, 128 for comparison. Each benchmark stores GFLOP/s (2*B*N*d / best time)
in `extra_info` and checks its answer against the float64 top-k (`recfast.bench.check`: ids in
order, near-ties in either order, scores within float32 rounding) at every B. The side-by-side comparison with FAISS, torch and implicit, each in its own
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
from recfast.bench import check as _bench_check  # noqa: E402
from recfast.bench.worker import make_data  # noqa: E402

N = int(os.environ.get("RECFAST_BENCH_ITEMS", "200000"))
D = 128
K = 10
SEED = 0
RECFAST_BATCHES = [1, 16, 128, 1024]
REFERENCE_BATCHES = [1, 16, 128]


@functools.lru_cache(maxsize=1)
def data() -> tuple[np.ndarray, np.ndarray]:
    """(items (N, D), queries (max B, D)): the same data as `python -m recfast.bench`."""
    return make_data(N, D, max(RECFAST_BATCHES), SEED)


@functools.lru_cache(maxsize=1)
def truth() -> _bench_check.Truth:
    """The float64 top-k of all queries (the first b of them are the truth of batch size b)."""
    items, queries = data()
    return _bench_check.exact_topk(queries, items, K)


def _record(benchmark, b: int, result) -> None:
    benchmark.extra_info.update(
        {"N": N, "d": D, "B": b, "k": K, "simd_level": recfast.simd_level()}
    )
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.min > 0:
        benchmark.extra_info["gflops"] = round(2.0 * b * N * D / stats.stats.min / 1e9, 2)
    items, queries = data()
    check = _bench_check.verify(
        queries[:b], items, np.asarray(result.ids), np.asarray(result.scores), truth().prefix(b, K)
    )
    assert check.ok, "answer differs from the float64 top-k:\n" + "\n".join(check.problems)


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("b", RECFAST_BATCHES)
def test_recfast_topk(benchmark, b: int, metric: str) -> None:
    items, queries = data()
    q = np.ascontiguousarray(queries[:b])
    benchmark.group = f"topk N={N} d={D} k={K} B={b}"
    result = benchmark.pedantic(
        recfast.topk,
        args=(q, items, K),
        kwargs={"metric": metric},
        rounds=5,
        warmup_rounds=1,
        iterations=1,
    )
    benchmark.extra_info["metric"] = metric
    _record(benchmark, b, result)


@pytest.mark.parametrize("b", REFERENCE_BATCHES)
def test_reference_topk(benchmark, b: int) -> None:
    items, queries = data()
    q = np.ascontiguousarray(queries[:b])
    benchmark.group = f"topk N={N} d={D} k={K} B={b}"
    result = benchmark.pedantic(
        reference.topk,
        args=(q, items, K),
        kwargs={"metric": "dot"},
        rounds=3,
        warmup_rounds=1,
        iterations=1,
    )
    benchmark.extra_info["metric"] = "dot"
    _record(benchmark, b, result)
