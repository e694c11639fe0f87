"""Worker process of `python -m recfast.bench`: one library, one dimension, several shapes.

The parent starts `python -m recfast.bench.worker SPEC.json` once per (library variant,
dimension), with the environment that variant needs (OPENBLAS_CORETYPE, OMP_NUM_THREADS, ...),
so that no library's idle threads or global settings touch another's measurement. The worker:

1. builds the data from the seed (never pickled: every worker makes the same arrays);
2. prepares the library (e.g. builds the FAISS index) and records the RSS after that;
3. for each (B, k): resets the RSS high-water mark, runs one warm-up call and the timed calls
   (at least R, and up to 30 or 1 s in all for short calls: median and p99 are reported),
   reads the high-water mark, and saves the ids, the scores it returned and the exact (float64)
   scores of those ids to an .npz for the parent's check;
4. writes a JSON result to the path named in the spec.

The spec with library "truth" instead computes the float64 top-k of the queries (the answer
every library is checked against: `recfast.bench.check.exact_topk`) and saves it to an .npz.

`python -m recfast.bench.worker --probe` instead reports the OpenBLAS builds that numpy and
faiss load and the core type each detected (used to decide on OPENBLAS_CORETYPE).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from recfast._io import atomic_write
from recfast.bench import check as _bench_check

Search = Callable[[np.ndarray, int], "tuple[np.ndarray, np.ndarray]"]

# torch scores queries in blocks whose score matrix holds at most this many float32 elements
# (the same bound as the NumPy reference: 128 MiB).
TORCH_BLOCK_ELEMENTS = 32 * 1024 * 1024
# Calls are repeated until this many were timed or this long was spent (after the warm-up).
MIN_TIMED_CALLS = 30
MIN_TIMED_SECONDS = 1.0
# Rows are generated and normalized this many elements at a time (bounds the RSS while building).
_GEN_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------
# data


def make_data(n: int, d: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(items (n, d), queries (n_queries, d)): standard normal rows scaled to unit norm, float32.

    Items and queries come from two streams spawned from `seed`, so the first B queries are the
    same whatever the largest batch is, and every worker builds identical arrays.
    """
    item_seq, query_seq = np.random.SeedSequence(seed).spawn(2)

    def fill(out: np.ndarray, seq: np.random.SeedSequence) -> None:
        rng = np.random.default_rng(seq)
        rows = max(1, _GEN_CHUNK_ELEMENTS // max(d, 1))
        for start in range(0, out.shape[0], rows):
            block = out[start : start + rows]
            rng.standard_normal(out=block, dtype=np.float32)
            norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float32))
            norms[norms == 0] = 1.0
            block /= norms[:, None]

    items = np.empty((n, d), np.float32)
    queries = np.empty((n_queries, d), np.float32)
    fill(items, item_seq)
    fill(queries, query_seq)
    return items, queries


def exact_scores(queries: np.ndarray, items: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float64 inner products of each query with its returned ids (-inf where id is -1)."""
    return _bench_check.rescore(queries, items, ids)


# --------------------------------------------------------------------------------------------
# memory


class PeakMemory:
    """Resident-set size and its high-water mark, in bytes.

    On Linux, writing 5 to /proc/self/clear_refs resets the high-water mark (VmHWM), so each
    shape gets its own peak. Elsewhere it falls back to ru_maxrss, which never resets: the peak
    of a shape then also covers the shapes before it (method "ru_maxrss-cumulative").
    """

    def __init__(self) -> None:
        self.method = "ru_maxrss-cumulative"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._status()
            self.method = "VmHWM-reset"
        except OSError:
            pass

    @staticmethod
    def _status() -> dict[str, int]:
        with open("/proc/self/status") as f:
            text = f.read()
        out = {}
        for key in ("VmRSS", "VmHWM"):
            m = re.search(key + r":\s+(\d+)\s+kB", text)
            if m is None:
                raise OSError(f"{key} missing from /proc/self/status")
            out[key] = int(m.group(1)) * 1024
        return out

    def reset(self) -> None:
        if self.method == "VmHWM-reset":
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")

    def rss(self) -> int:
        if self.method == "VmHWM-reset":
            return self._status()["VmRSS"]
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:
            return self.peak()

    def peak(self) -> int:
        if self.method == "VmHWM-reset":
            return self._status()["VmHWM"]
        scale = 1 if sys.platform == "darwin" else 1024
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


# --------------------------------------------------------------------------------------------
# libraries: prepare(items, variant, spec) -> (search, info)


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _prepare_recfast(items: np.ndarray, variant: str, spec: dict) -> tuple[Search, dict]:
    import recfast
    from recfast import _native

    if spec.get("simd"):
        _native.set_simd_level(spec["simd"])
    metric = variant  # "dot" or "cosine"

    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        res = recfast.topk(q, items, k, metric=metric)
        return res.scores, res.ids

    info = {
        "version": recfast.__version__,
        "simd_level": recfast.simd_level(),
        "detected_simd_level": _native.detected_simd_level(),
        "settings": f"metric={metric}, num_threads=None ({_threads()} CPUs)",
    }
    return search, info


def _prepare_index(items: np.ndarray, variant: str, spec: dict) -> tuple[Search, dict]:
    """recfast.ItemIndex of each storage (variant: float32 / float16 / int8), saved and loaded
    memory-mapped, searched exactly (quantized storage: certified quantized scan + float32
    re-scoring of the survivors; float32: the top-k scan over the mapped vectors)."""
    from recfast import ItemIndex, _native

    if spec.get("simd"):
        _native.set_simd_level(spec["simd"])
    built = ItemIndex(items.shape[1], metric="dot", storage=variant)
    built.add(items)
    path = os.path.join(spec["work_dir"], f"{spec['tag']}_d{items.shape[1]}.rfidx")
    built.save(path)
    del built
    index = ItemIndex.load(path, mmap=True)
    candidates: dict[str, float] = {}

    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        res, stats = index.search(q, k, return_stats=True)
        candidates[f"{len(q)}x{k}"] = stats["candidates"] / max(1, len(q))
        return res.scores, res.ids

    info = {
        "storage": variant,
        "settings": f"ItemIndex(storage={variant!r}, metric='dot'), loaded with mmap=True, exact=True",
        "candidates_per_query": candidates,  # "BxK" -> re-scored candidates per query (last call)
    }
    return search, info


def _prepare_reference(items: np.ndarray, variant: str, spec: dict) -> tuple[Search, dict]:
    from recfast import reference

    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        res = reference.topk(q, items, k, metric="dot")
        return res.scores, res.ids

    return search, {"version": np.__version__, "settings": "metric=dot, NumPy BLAS threads"}


def _prepare_faiss(items: np.ndarray, variant: str, spec: dict) -> tuple[Search, dict]:
    import faiss as faiss_module

    # Any: the stub some faiss wheels ship lacks IndexShards's (threaded, successive_ids)
    faiss: Any = faiss_module
    d = items.shape[1]
    settings: list[str] = []
    keep: list[Any] = []  # sub-indexes must outlive the IndexShards that points at them
    if variant == "shards":
        index = faiss.IndexShards(d, True, True)  # threaded, successive ids
        for part in np.array_split(items, 2):
            sub = faiss.IndexFlatIP(d)
            sub.add(np.ascontiguousarray(part))
            keep.append(sub)
            index.add_shard(sub)
        settings.append(
            f"IndexShards(2 x IndexFlatIP, threaded), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
        )
    else:
        if variant == "blas":
            faiss.cvar.distance_compute_blas_threshold = 1
            faiss.cvar.distance_compute_blas_database_bs = 4096
        index = faiss.IndexFlatIP(d)
        index.add(items)
        settings.append("IndexFlatIP")
    settings.append(
        f"blas_threshold={faiss.cvar.distance_compute_blas_threshold}, "
        f"blas_database_bs={faiss.cvar.distance_compute_blas_database_bs}, "
        f"blas_query_bs={faiss.cvar.distance_compute_blas_query_bs}, "
        f"omp_threads={faiss.omp_get_max_threads()}"
    )

    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, ids = index.search(q, k)
        return dist, ids

    search.keep = keep  # type: ignore[attr-defined]
    return search, {"version": faiss.__version__, "settings": "; ".join(settings)}


def _prepare_torch(items: np.ndarray, variant: str, spec: dict) -> tuple[Search, dict]:
    import torch

    torch.set_num_threads(_threads())
    x = torch.from_numpy(items)
    block = max(1, TORCH_BLOCK_ELEMENTS // max(items.shape[0], 1))

    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        qt = torch.from_numpy(q)
        with torch.inference_mode():
            if qt.shape[0] <= block:
                vals, ids = torch.topk(qt @ x.T, k)
            else:
                parts = [
                    torch.topk(qt[s : s + block] @ x.T, k) for s in range(0, qt.shape[0], block)
                ]
                vals = torch.cat([p[0] for p in parts])
                ids = torch.cat([p[1] for p in parts])
        return vals.numpy(), ids.numpy()

    info = {
        "version": torch.__version__,
        "settings": f"torch.topk(q_block @ items.T, k), q_block={block} rows, threads={torch.get_num_threads()}",
    }
    return search, info


def _prepare_implicit(items: np.ndarray, variant: str, spec: dict) -> tuple[Search, dict]:
    import implicit
    from implicit.cpu.topk import topk as implicit_topk

    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = implicit_topk(items, q, k, num_threads=0)
        return scores, ids

    return search, {
        "version": implicit.__version__,
        "settings": "implicit.cpu.topk.topk(items, queries, k, num_threads=0)",
    }


PREPARE = {
    "recfast": _prepare_recfast,
    "index": _prepare_index,
    "reference": _prepare_reference,
    "faiss": _prepare_faiss,
    "torch": _prepare_torch,
    "implicit": _prepare_implicit,
}


# --------------------------------------------------------------------------------------------
# the measurement


def run_truth(spec: dict) -> dict:
    """The float64 top-k (k = spec["k"]) of all spec["n_queries"] queries, saved to spec["truth_path"]."""
    n, d, k = int(spec["n"]), int(spec["d"]), int(spec["k"])
    items, queries = make_data(n, d, int(spec["n_queries"]), int(spec["seed"]))
    t0 = time.perf_counter()
    truth = _bench_check.exact_topk(queries, items, k, tol=spec.get("tol"))
    seconds = time.perf_counter() - t0
    truth.save(spec["truth_path"])
    return {
        "tag": spec["tag"],
        "library": "truth",
        "variant": "",
        "d": d,
        "n": n,
        "k": k,
        "truth_npz": spec["truth_path"],
        "seconds": seconds,
        "rounds": truth.rounds,
        "tol": float(truth.tol.max(initial=0.0)),
        "shapes": [],
    }


def run(spec: dict) -> dict:
    """Measure one library variant on the shapes of `spec`; returns the JSON-able result."""
    if spec["library"] == "truth":
        return run_truth(spec)
    n, d, seed = int(spec["n"]), int(spec["d"]), int(spec["seed"])
    repeats, slow_s = int(spec["repeats"]), float(spec["slow_seconds"])
    mem = PeakMemory()
    t0 = time.perf_counter()
    items, queries = make_data(n, d, int(spec["n_queries"]), seed)
    build_s = time.perf_counter() - t0
    search, info = PREPARE[spec["library"]](items, spec["variant"], spec)
    gc.collect()
    base_rss = mem.rss()
    held_bytes = 0  # outputs kept from earlier shapes (they are inside the later peaks)
    shapes = []
    for b, k in spec["shapes"]:
        q = np.ascontiguousarray(queries[:b])
        entry: dict[str, Any] = {"B": b, "k": k}
        try:
            gc.collect()
            mem.reset()
            start = time.perf_counter()
            scores, ids = search(q, k)
            warm = time.perf_counter() - start
            # A slow call is timed once; others at least `repeats` times, and short ones until
            # MIN_TIMED_CALLS calls or MIN_TIMED_SECONDS in all (a stable median and p99).
            times: list[float] = []
            while len(times) < (repeats if warm < slow_s else 1) or (
                warm < slow_s and len(times) < MIN_TIMED_CALLS and sum(times) < MIN_TIMED_SECONDS
            ):
                del scores, ids
                start = time.perf_counter()
                scores, ids = search(q, k)
                times.append(time.perf_counter() - start)
            reps = len(times)
            peak = mem.peak()
            scores = np.asarray(scores, dtype=np.float32)
            ids = np.asarray(ids).astype(np.int64)
            out_bytes = scores.nbytes + ids.nbytes
            held_bytes += out_bytes
            extra = max(0, peak - base_rss - held_bytes)
            path = os.path.join(spec["work_dir"], f"{spec['tag']}_d{d}_B{b}_k{k}.npz")
            np.savez(path, ids=ids, scores=scores, exact=exact_scores(q, items, ids))
            entry.update(
                warmup_s=warm,
                times_s=times,
                best_s=min(times),
                median_s=float(np.median(times)),
                p99_s=float(np.percentile(times, 99)),
                repeats=reps,
                peak_rss_mb=peak / 2**20,
                extra_peak_mb=extra / 2**20,
                npz=path,
            )
        except Exception as exc:  # one failing shape should not hide the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()
        shapes.append(entry)
    return {
        "tag": spec["tag"],
        "library": spec["library"],
        "variant": spec["variant"],
        "d": d,
        "n": n,
        "info": info,
        "data_build_s": build_s,
        "base_rss_mb": base_rss / 2**20,
        "memory_method": mem.method,
        "threads_available": _threads(),
        "shapes": shapes,
    }


# --------------------------------------------------------------------------------------------
# OpenBLAS probe


def _openblas_libs() -> list[str]:
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and "openblas" in os.path.basename(parts[-1]).lower():
                    if parts[-1] not in paths:
                        paths.append(parts[-1])
    except OSError:
        pass
    return paths


def _openblas_call(lib: ctypes.CDLL, name: str) -> str | None:
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_"):
            fn = getattr(lib, prefix + name + suffix, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                value = fn()
                return value.decode(errors="replace").strip() if value else None
    return None


def probe(libraries: list[str]) -> dict:
    """The OpenBLAS builds loaded after importing `libraries` and the core type each detected.

    A build is filed under the library whose name appears in its path (numpy.libs/...,
    faiss_cpu.libs/...), others under "other".
    """
    out: dict[str, Any] = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "libs": {}}
    for name in libraries:
        out["libs"][name] = {"builds": []}
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - report, do not fail the probe
            out["libs"][name]["error"] = f"{type(exc).__name__}: {exc}"
    for path in _openblas_libs():
        owner = next((n for n in libraries if n.lower() in path.lower()), "other")
        try:
            lib = ctypes.CDLL(path)
            entry = {
                "path": path,
                "corename": _openblas_call(lib, "openblas_get_corename"),
                "config": _openblas_call(lib, "openblas_get_config"),
            }
        except OSError as exc:
            entry = {"path": path, "error": str(exc)}
        out["libs"].setdefault(owner, {"builds": []})["builds"].append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--probe":
        print(json.dumps(probe(args[1:])))
        return 0
    if len(args) != 1:
        print("usage: python -m recfast.bench.worker SPEC.json | --probe LIB...", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        spec = json.load(f)
    try:
        result = run(spec)
        code = 0
    except Exception as exc:
        result = {
            "tag": spec.get("tag"),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
        code = 1
    text = json.dumps(result).encode("utf-8")
    atomic_write(spec["result_path"], lambda f: f.write(text))
    return code


if __name__ == "__main__":
    sys.exit(main())
