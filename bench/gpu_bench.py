"""GPU benchmark of recfast's CUDA top-k against torch (matmul + topk in query blocks) and
faiss-gpu (GpuIndexFlatIP) when importable, on one GPU.

Data: seed 0, standard normal rows, normalized float32, metric "dot" (equal to cosine on
normalized rows, and what the peers compute). TF32 is off for torch, so all three compute fp32
products. Every contestant starts from data already on the device and leaves its answer there:
recfast and torch take the torch CUDA tensors; FAISS's index holds its copy of the items on the
GPU and, through faiss.contrib.torch_utils, searches the CUDA query tensor on torch's stream
(without torch_utils it would copy queries in and results out on every call; that is then said
in the JSON and the table). Times are CUDA-event times around a synchronized call, best of
--repeat after one warm-up. Peak memory "beyond inputs/outputs":
  * recfast allocates its scratch with cudaMallocAsync, outside torch's allocator: a thread
    polls cudaMemGetInfo while the call runs (the GIL is released); the plan's exact scratch
    size is reported beside it.
  * torch: torch.cuda.max_memory_allocated() during the call minus what was allocated before.
Every contestant's answer for the first --check-queries queries of every shape is checked
against the float64 top-k (`recfast.bench.check`: ids in order, near-ties in either order,
scores within float32 rounding); a wrong answer is named and the exit status is 1 (2 when a
shape or contestant failed to run).

Usage: python bench/gpu_bench.py --out results.json [--n 10000000 --d 128 --b 1024 --k 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from typing import Any

import numpy as np
import torch

import recfast
from recfast import _cuda_backend
from recfast.bench import check as _bench_check

MiB = 1 << 20
_KEEP: list[Any] = []  # FAISS GPU resources, alive as long as the process


def log(*a):
    print(*a, flush=True)


def cuda_time(fn, repeat: int) -> tuple[float, object]:
    """Best-of-`repeat` milliseconds of fn() (one untimed warm-up first), and its last result."""
    out = fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        stop.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(stop))
    return best, out


class FreeMemoryPoller:
    """Lowest free device memory seen while the block runs (cudaMemGetInfo every ~0.5 ms)."""

    def __enter__(self):
        self.low = torch.cuda.mem_get_info()[0]
        self.start_free = self.low
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.low = min(self.low, torch.cuda.mem_get_info()[0])
            time.sleep(0.0005)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.low = min(self.low, torch.cuda.mem_get_info()[0])

    @property
    def used(self) -> int:
        return self.start_free - self.low


def make_data(n: int, d: int, b: int, seed: int = 0):
    g = torch.Generator(device="cuda")
    g.manual_seed(seed)
    items = torch.randn((n, d), generator=g, device="cuda", dtype=torch.float32)
    items /= items.norm(dim=1, keepdim=True)
    q = torch.randn((b, d), generator=g, device="cuda", dtype=torch.float32)
    q /= q.norm(dim=1, keepdim=True)
    return q, items


def torch_topk(q, items, k, block_bytes: int):
    """torch.topk(q_block @ items.T, k) over query blocks whose score block fits block_bytes."""
    n = items.shape[0]
    qb = max(1, min(q.shape[0], block_bytes // (4 * n)))
    scores, ids = [], []
    for s in range(0, q.shape[0], qb):
        v, i = torch.topk(q[s : s + qb] @ items.T, k, dim=1)
        scores.append(v)
        ids.append(i)
    return torch.cat(scores), torch.cat(ids)


def _host(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class Float64Check:
    """The float64 top-k of the first n_check queries (computed once, on the host, for the
    largest k), and the check of any contestant's answer for them at any shape."""

    def __init__(self, q_all: Any, items: Any, n_check: int, k_max: int) -> None:
        self.items = _host(items)
        self.queries = _host(q_all[:n_check])
        t0 = time.perf_counter()
        self.truth = _bench_check.exact_topk(self.queries, self.items, k_max)
        self.seconds = time.perf_counter() - t0

    def __call__(self, scores: Any, ids: Any, b: int, k: int) -> dict:
        rows = min(b, self.queries.shape[0])
        got_s, got_i = _host(scores)[:rows], _host(ids)[:rows]
        return _bench_check.verify(
            self.queries[:rows], self.items, got_i, got_s, self.truth.prefix(rows, k)
        ).to_dict()


def faiss_gpu(items: torch.Tensor) -> tuple[Any, str, bool]:
    """(GpuIndexFlatIP holding the items, or None; what was found; whether it searches CUDA
    tensors in place). The index copies the items device to device when torch_utils is there."""
    try:
        import faiss  # type: ignore
    except ImportError:
        return None, "not installed (faiss-gpu is not on this machine)", False
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None, "faiss importable but without GPU support", False
    try:
        import faiss.contrib.torch_utils  # noqa: F401  (index.add/search take torch tensors)

        on_device = True
    except ImportError:
        on_device = False
    res = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatIP(res, items.shape[1])
    index.add(items if on_device else items.cpu().numpy())
    _KEEP.append(res)  # the resources must outlive the index
    torch.cuda.synchronize()
    return index, faiss.__version__, on_device


def bench_shape(
    q_all,
    items,
    b: int,
    k: int,
    repeat: int,
    block_bytes: int,
    faiss_index,
    check: Float64Check,
    faiss_on_device: bool = True,
) -> tuple[dict, tuple]:
    n, d = items.shape
    q = q_all[:b].contiguous()
    checks: dict[str, dict] = {}
    flops = 2.0 * b * n * d
    res: dict = {"B": b, "N": n, "d": d, "k": k}
    from recfast import _cuda

    plan = _cuda.plan(b, n, d, k)
    res["recfast_plan"] = plan
    torch.cuda.synchronize()
    with FreeMemoryPoller() as mem:
        t, out = cuda_time(lambda: recfast.topk(q, items, k, metric="dot"), repeat)
    out_bytes = b * k * 12
    res["recfast_ms"] = t
    res["recfast_gflops"] = flops / t / 1e6
    res["recfast_peak_scratch_mib"] = max(0, mem.used - out_bytes) / MiB
    res["recfast_plan_scratch_mib"] = plan["scratch_bytes"] / MiB
    rs, ri = out
    checks["recfast"] = check(rs, ri, b, k)

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t, (ts, ti) = cuda_time(lambda: torch_topk(q, items, k, block_bytes), repeat)
    res["torch_ms"] = t
    res["torch_gflops"] = flops / t / 1e6
    res["torch_peak_scratch_mib"] = (torch.cuda.max_memory_allocated() - base - out_bytes) / MiB
    res["speedup_vs_torch"] = res["torch_ms"] / res["recfast_ms"]
    checks["torch"] = check(ts, ti, b, k)
    # Agreement with torch: score lists (ids may differ only between exact ties).
    res["max_abs_score_diff_vs_torch"] = float((rs - ts).abs().max())
    res["ids_equal_torch_fraction"] = float((ri == ti).float().mean())

    if faiss_index is not None:
        # On the device: the CUDA query tensor in, CUDA tensors out (as recfast and torch).
        fq = q if faiss_on_device else q.cpu().numpy()
        try:
            t, (fs, fi) = cuda_time(lambda: faiss_index.search(fq, k), repeat)
            res["faiss_gpu_ms"] = t
            res["faiss_gpu_on_device"] = faiss_on_device
            res["speedup_vs_faiss"] = t / res["recfast_ms"]
            checks["faiss_gpu"] = check(fs, fi, b, k)
            del fs, fi
        except Exception as e:  # noqa: BLE001 - recorded; main() exits non-zero
            res["faiss_gpu_error"] = repr(e)
    res["check"] = checks
    del ts, ti
    torch.cuda.empty_cache()
    return res, (rs, ri)


def failures(result: dict) -> tuple[list[str], list[str]]:
    """(wrong answers, failures to run) of a result, one line each naming shape and contestant."""
    wrong, broken = [], []
    for r in result["shapes"]:
        where = f"B={r['B']} k={r['k']}"
        if "error" in r:
            broken.append(f"{where}: {r['error']}")
            continue
        if "faiss_gpu_error" in r:
            broken.append(f"{where}: FAISS-GPU: {r['faiss_gpu_error']}")
        for who in ("recfast", "torch"):
            if who not in r.get("check", {}):
                broken.append(f"{where}: {who}: no float64 check")
        for who, c in r.get("check", {}).items():
            if c["bad"]:
                wrong.append(
                    f"{where}: {who}: {c['bad']}/{c['rows']} checked query rows wrong: "
                    + "; ".join(c["problems"][:3])
                )
    return wrong, broken


def _shape_list(text: str) -> list[tuple[int, int]]:
    out = []
    for spec in filter(None, text.split(",")):
        try:
            b, k = (int(v) for v in spec.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected B:k pairs such as '1:10,128:100', got {spec!r}"
            ) from None
        if b < 1 or k < 1:
            raise argparse.ArgumentTypeError(f"B and k must be positive, got {spec!r}")
        out.append((b, k))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--b", type=int, default=1024)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--check-queries",
        type=int,
        default=64,
        help="queries of every shape checked against the float64 top-k (64)",
    )
    ap.add_argument("--torch-block-gib", type=float, default=8.0)
    ap.add_argument(
        "--extra",
        type=_shape_list,
        default=_shape_list("1:10,128:100,4096:100,1024:3000"),
        help="more B:k shapes, timed with repeat 2 ('' for none)",
    )
    args = ap.parse_args(argv)
    if min(args.n, args.d, args.b, args.k, args.repeat, args.check_queries) < 1:
        ap.error("--n, --d, --b, --k, --repeat and --check-queries must be positive")

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    result: dict = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "recfast": recfast.__version__,
        "cuda_backend": _cuda_backend.info(),
        "shapes": [],
    }
    if not recfast.HAS_CUDA:
        raise SystemExit(f"recfast.HAS_CUDA is False: {_cuda_backend.UNAVAILABLE_REASON}")

    t0 = time.perf_counter()
    q_all, items = make_data(args.n, args.d, max(args.b, 4096))
    torch.cuda.synchronize()
    log(
        f"data: {args.n} x {args.d} items on {result['device']} in {time.perf_counter() - t0:.1f} s"
    )

    faiss_index, result["faiss"], faiss_on_device = faiss_gpu(items)
    if faiss_index is not None and not faiss_on_device:
        result["faiss"] += (
            " (faiss.contrib.torch_utils missing: its times include host-device copies)"
        )
    log(f"faiss: {result['faiss']}")

    shapes = [(args.b, args.k, args.repeat)] + [(b, k, 2) for b, k in args.extra]
    check = Float64Check(q_all, items, args.check_queries, max(k for _, k, _ in shapes))
    result["float64_check"] = {
        "queries": check.queries.shape[0],
        "k": check.truth.k,
        "seconds": check.seconds,
        "rounds": check.truth.rounds,
    }
    log(
        f"float64 answer of the first {check.queries.shape[0]} queries at k={check.truth.k} in {check.seconds:.1f} s"
    )

    block = int(args.torch_block_gib * (1 << 30))
    for b, k, repeat in shapes:
        try:
            r, _ = bench_shape(
                q_all,
                items,
                b,
                k,
                repeat,
                block,
                faiss_index if k <= 2048 else None,
                check,
                faiss_on_device,
            )
        except Exception as e:  # noqa: BLE001 - keep the other shapes; main() exits non-zero
            r = {"B": b, "k": k, "error": repr(e)}
        result["shapes"].append(r)
        log(json.dumps(r))
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)

    wrong, broken = failures(result)
    result["wrong"], result["failed"] = wrong, broken
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    log(
        "\nB      k     recfast ms  torch ms  x torch  faiss ms  scratch MiB (polled/plan)  float64 check"
    )
    for r in result["shapes"]:
        if "error" in r:
            log(f"{r['B']:<6} {r['k']:<5} error {r['error']}")
            continue
        fa = f"{r['faiss_gpu_ms']:.1f}" if "faiss_gpu_ms" in r else "-"
        ok = ", ".join(
            f"{who} {'ok' if not c['bad'] else 'WRONG'}" for who, c in r["check"].items()
        )
        log(
            f"{r['B']:<6} {r['k']:<5} {r['recfast_ms']:10.2f} {r['torch_ms']:9.2f} "
            f"{r['speedup_vs_torch']:7.2f}  {fa:>8}  {r['recfast_peak_scratch_mib']:.0f}/"
            f"{r['recfast_plan_scratch_mib']:.0f}  {ok}"
        )
    for line in wrong:
        log(f"!!! wrong answer: {line}")
    for line in broken:
        log(f"!!! failed: {line}")
    return 1 if wrong else 2 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
