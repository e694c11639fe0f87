"""ItemIndex benchmark: exact search from float32 / float16 / int8 storage.

N items (seed 0, standard normal rows, normalized), d, k; B = 1 and B = 1024 per storage; each
index saved, then loaded with mmap=True and searched exactly. Reports milliseconds (best of
`repeats`), the mean number of re-scored candidates per query, the check of every answer against
the float64 top-k (`recfast.bench.check`: ids in order, near-ties in either order, scores within
float32 rounding), whether ids and scores also equal the float32 storage's bit for bit
(information only), and the resident memory of the loaded index's file mapping (plus the process
RSS) while searching. `run()` returns the rows for the main benchmark to reuse. A row that fails
the float64 check is named and the exit status is 1.

    nice -n 19 python bench/index_bench.py [--n 1000000] [--d 128] [--k 10]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time

import numpy as np

import recfast
from recfast.bench import check as _bench_check
from recfast.index import ItemIndex


def _mapped_rss(path: str) -> int:
    total, on = 0, False
    real = os.path.realpath(path)
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                on = len(parts) >= 6 and parts[5] == real
            elif on and parts[0] == "Rss:":
                total += int(parts[1]) * 1024
    return total


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(
    n: int = 1_000_000,
    d: int = 128,
    k: int = 10,
    batches: tuple[int, ...] = (1, 1024),
    storages: tuple[str, ...] = ("float32", "float16", "int8"),
    repeats: int = 3,
    tmpdir: str | None = None,
) -> list[dict]:
    rng = np.random.default_rng(0)
    x = recfast.normalize(rng.standard_normal((n, d), dtype=np.float32))
    queries = {b: rng.standard_normal((b, d), dtype=np.float32) for b in batches}
    # metric "cosine": the check scores the normalized queries against the (normalized) items
    unit = {b: recfast.normalize(q) for b, q in queries.items()}
    exact = {b: _bench_check.exact_topk(q, x, k) for b, q in unit.items()}
    rows: list[dict] = []
    f32: dict[int, object] = {}
    with tempfile.TemporaryDirectory(dir=tmpdir) as tmp:
        for storage in storages:
            path = os.path.join(tmp, f"{storage}.rfi")
            t0 = time.perf_counter()
            idx = ItemIndex(d, metric="cosine", storage=storage)
            idx.add(x)
            build_s = time.perf_counter() - t0
            idx.save(path)
            del idx
            gc.collect()
            rss0 = _rss()
            index = ItemIndex.load(path, mmap=True)
            index.search(queries[batches[0]][:1], k)  # first search checks the streamed section
            for b in batches:
                q = queries[b]
                best, res, stats = float("inf"), None, None
                for _ in range(repeats if b < 256 else max(1, repeats - 1)):
                    t = time.perf_counter()
                    res, stats = index.search(q, k, return_stats=True)
                    best = min(best, time.perf_counter() - t)
                check = _bench_check.verify(unit[b], x, res.ids, res.scores, exact[b])
                if storage == "float32":
                    f32[b] = res
                ref = f32.get(b)
                same = (
                    None
                    if ref is None
                    else bool(
                        np.array_equal(res.ids, ref.ids)
                        and np.array_equal(res.scores.view(np.uint32), ref.scores.view(np.uint32))
                    )
                )
                rows.append(
                    {
                        "storage": storage,
                        "B": b,
                        "ms": best * 1e3,
                        "candidates_per_query": stats["candidates"] / b,
                        "check": check.to_dict(),
                        "identical_to_float32": same,
                        "mapped_rss_mb": _mapped_rss(path) / 2**20,
                        "process_rss_delta_mb": (_rss() - rss0) / 2**20,
                        "file_mb": os.path.getsize(path) / 2**20,
                        "build_s": build_s,
                    }
                )
            del index
            gc.collect()
    return rows


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _check_text(c: dict) -> str:
    if c["bad"]:
        return f"!!! WRONG {c['bad']}/{c['rows']} rows"
    return f"ok, {c['tie']} near-tie rows" if c["tie"] else "ok"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="ItemIndex exact search from float32 / float16 / int8 storage"
    )
    ap.add_argument("--n", type=_positive, default=1_000_000, help="items (1,000,000)")
    ap.add_argument("--d", type=_positive, default=128, help="dimension (128)")
    ap.add_argument("--k", type=_positive, default=10, help="k (10)")
    ap.add_argument(
        "--repeats", type=_positive, default=3, help="timed searches per shape, best counts (3)"
    )
    a = ap.parse_args(argv)
    rows = run(a.n, a.d, a.k, repeats=a.repeats)
    f32 = a.n * a.d * 4 / 2**20
    print(
        f"recfast {recfast.__version__}, simd {recfast.simd_level()}, N={a.n} d={a.d} k={a.k}, "
        f"{len(os.sched_getaffinity(0))} CPUs; float32 vectors = {f32:.0f} MiB"
    )
    print(
        "| storage | B | ms | candidates/query | float64 check | identical to float32 storage "
        "| mapped RSS MiB (% of f32) | process RSS delta MiB | file MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['storage']} | {r['B']} | {r['ms']:.1f} | {r['candidates_per_query']:.1f} | "
            f"{_check_text(r['check'])} | {r['identical_to_float32']} | "
            f"{r['mapped_rss_mb']:.0f} ({100 * r['mapped_rss_mb'] / f32:.0f}%) | "
            f"{r['process_rss_delta_mb']:.0f} | {r['file_mb']:.0f} |"
        )
    wrong = [r for r in rows if r["check"]["bad"]]
    for r in wrong:
        print(
            f"!!! ItemIndex storage={r['storage']} B={r['B']} k={a.k}: {r['check']['bad']}/{r['check']['rows']} "
            "query rows fail the float64 check",
            file=sys.stderr,
        )
        for p in r["check"]["problems"]:
            print(f"      {p}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
