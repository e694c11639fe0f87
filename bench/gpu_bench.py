"""GPU benchmark of recfast's CUDA top-k against torch (matmul + topk in query blocks) and
faiss-gpu (IndexFlatIP) when importable, on one GPU.

Data as in DESIGN.md section 3: seed 0, standard normal rows, normalized float32, metric "dot"
(equal to cosine on normalized rows, and what the peers compute). TF32 is off for torch, so all
three compute fp32 products. Times are CUDA-event times around a synchronized call, best of
--repeat after one warm-up. Peak memory "beyond inputs/outputs":
  * recfast allocates its scratch with cudaMallocAsync, outside torch's allocator: a thread
    polls cudaMemGetInfo while the call runs (the GIL is released); the plan's exact scratch
    size is reported beside it.
  * torch: torch.cuda.max_memory_allocated() during the call minus what was allocated before.
The ids of the first --check-queries queries are compared with recfast's CPU path.

Usage: python bench/gpu_bench.py --out results.json [--n 10000000 --d 128 --b 1024 --k 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time

import numpy as np
import torch

import recfast
from recfast import _cuda_backend

MiB = 1 << 20


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


def bench_shape(q_all, items, b: int, k: int, repeat: int, block_bytes: int, faiss_index) -> dict:
    n, d = items.shape
    q = q_all[:b].contiguous()
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

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t, (ts, ti) = cuda_time(lambda: torch_topk(q, items, k, block_bytes), repeat)
    res["torch_ms"] = t
    res["torch_gflops"] = flops / t / 1e6
    res["torch_peak_scratch_mib"] = (torch.cuda.max_memory_allocated() - base - out_bytes) / MiB
    res["speedup_vs_torch"] = res["torch_ms"] / res["recfast_ms"]
    # Agreement with torch: score lists (ids may differ only between exact ties).
    res["max_abs_score_diff_vs_torch"] = float((rs - ts).abs().max())
    res["ids_equal_torch_fraction"] = float((ri == ti).float().mean())

    if faiss_index is not None:
        qn = q.cpu().numpy()
        try:
            t, _ = cuda_time(lambda: faiss_index.search(qn, k), repeat)
            res["faiss_gpu_ms"] = t
            res["speedup_vs_faiss"] = t / res["recfast_ms"]
        except Exception as e:  # noqa: BLE001 - report, don't fail the run
            res["faiss_gpu_error"] = repr(e)
    del ts, ti
    torch.cuda.empty_cache()
    return res, (rs, ri)


def check_against_cpu(q, items_np, rs, ri, k: int, n_check: int) -> dict:
    qn = q[:n_check].cpu().numpy()
    t0 = time.perf_counter()
    cpu = recfast.topk(qn, items_np, k, metric="dot", device="cpu")
    secs = time.perf_counter() - t0
    gi = ri[:n_check].cpu().numpy()
    gs = rs[:n_check].cpu().numpy()
    same = gi == cpu.ids
    out = {
        "queries_checked": n_check,
        "cpu_seconds": secs,
        "ids_identical": bool(same.all()),
        "ids_mismatched_positions": int((~same).sum()),
        "max_abs_score_diff": float(np.abs(gs - cpu.scores).max()),
    }
    if not same.all():
        r, c = np.nonzero(~same)
        out["first_mismatches"] = [
            {"row": int(a), "col": int(b_), "gpu": [int(gi[a, b_]), float(gs[a, b_])],
             "cpu": [int(cpu.ids[a, b_]), float(cpu.scores[a, b_])]}
            for a, b_ in list(zip(r, c))[:10]
        ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--b", type=int, default=1024)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check-queries", type=int, default=8)
    ap.add_argument("--torch-block-gib", type=float, default=8.0)
    ap.add_argument("--extra", default="1:10,128:100,4096:100,1024:3000",
                    help="more B:k shapes, timed with repeat 2 ('' for none)")
    args = ap.parse_args()

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
    log(f"data: {args.n} x {args.d} items on {result['device']} in {time.perf_counter() - t0:.1f} s")

    faiss_index = None
    try:
        import faiss  # type: ignore

        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            res = faiss.StandardGpuResources()
            faiss_index = faiss.GpuIndexFlatIP(res, args.d)
            faiss_index.add(items.cpu().numpy())
            result["faiss"] = faiss.__version__
        else:
            result["faiss"] = "faiss importable but without GPU support"
    except ImportError:
        result["faiss"] = "not installed (faiss-gpu is not on this machine)"
    log(f"faiss: {result['faiss']}")

    block = int(args.torch_block_gib * (1 << 30))
    main_res, (rs, ri) = bench_shape(q_all, items, args.b, args.k, args.repeat, block, faiss_index)
    result["shapes"].append(main_res)
    log(json.dumps(main_res))
    items_np = items.cpu().numpy()
    main_res["cpu_check"] = check_against_cpu(q_all, items_np, rs, ri, args.k, args.check_queries)
    log(json.dumps(main_res["cpu_check"]))
    del items_np

    for spec in filter(None, args.extra.split(",")):
        b, k = (int(v) for v in spec.split(":"))
        try:
            r, _ = bench_shape(q_all, items, b, k, 2, block, faiss_index if k <= 2048 else None)
        except Exception as e:  # noqa: BLE001 - keep the other shapes
            r = {"B": b, "k": k, "error": repr(e)}
        result["shapes"].append(r)
        log(json.dumps(r))
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)

    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    log("\nB      k     recfast ms  torch ms  x torch  faiss ms  scratch MiB (polled/plan)")
    for r in result["shapes"]:
        if "error" in r:
            log(f"{r['B']:<6} {r['k']:<5} error {r['error']}")
            continue
        fa = f"{r['faiss_gpu_ms']:.1f}" if "faiss_gpu_ms" in r else "-"
        log(f"{r['B']:<6} {r['k']:<5} {r['recfast_ms']:10.2f} {r['torch_ms']:9.2f} "
            f"{r['speedup_vs_torch']:7.2f}  {fa:>8}  {r['recfast_peak_scratch_mib']:.0f}/"
            f"{r['recfast_plan_scratch_mib']:.0f}")


if __name__ == "__main__":
    main()
