"""Cost of the default AutoEncoder on synthetic data of MovieLens sizes (issue targets).

Cases, each run in its own process so its peak memory (VmHWM) is its own:
  ml1m       the default fit on ML-1M-sized data (6,040 users x 3,500 items, ~0.6M
             interactions), without and with validation data (the quality protocol's setting);
  recommend  recommend(k=100) for 10,000 users over the 3,500 items of a fitted default model;
  latency    recommend(k=10) for one user per call over 100,000 items: median and p99 ms;
  scale      one training epoch on ML-20M-sized data (150,000 x 20,000, ~10M interactions).

    python bench/train_bench.py                  # all cases
    python bench/train_bench.py --cases recommend --threads 2

Prints one line per case (wall and CPU seconds, peak resident memory, and the one-core GEMM rate
measured just before and after it, since a shared machine's speed varies) and a JSON summary.
The data: users in 50 taste clusters, each cluster preferring its own random fifth of the items
on top of a power-law popularity, activity log-normal; duplicates merged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp


def synthetic(n_users: int, n_items: int, n_interactions: int, seed: int = 0) -> sp.csr_matrix:
    """A users x items 0/1 matrix with cluster structure and power-law popularity."""
    rng = np.random.default_rng(seed)
    pop = rng.permutation((np.arange(n_items) + 1.0) ** -0.8)
    n_clusters = 50
    cluster = rng.integers(0, n_clusters, n_users)
    activity = rng.lognormal(0.0, 0.8, n_users)
    counts = np.maximum(1, np.round(activity / activity.sum() * n_interactions)).astype(np.int64)
    rows, cols = [], []
    for c in range(n_clusters):
        users = np.flatnonzero(cluster == c)
        pref = pop * np.where(rng.random(n_items) < 0.2, 8.0, 1.0)
        pref /= pref.sum()
        total = int(counts[users].sum())
        rows.append(np.repeat(users, counts[users]))
        cols.append(rng.choice(n_items, size=total, p=pref))
    r, c = np.concatenate(rows), np.concatenate(cols)
    m = sp.csr_matrix((np.ones(r.size, np.float32), (r, c)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def core_gflops() -> float:
    """This core's float32 GEMM rate right now (torch, one thread): shared or oversubscribed
    machines vary several-fold over minutes, so each case reports it next to its times."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    torch.mm(a, a)
    t = time.perf_counter()
    for _ in range(20):
        torch.mm(a, a)
    rate = 20 * 2 * 512**3 / (time.perf_counter() - t) / 1e9
    torch.set_num_threads(before)
    return rate


def _timed(fn):  # -> (result, wall s, cpu s)
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def case_ml1m(validation: bool) -> dict:
    from recfast.data import strong_generalization_split
    from recfast.models import AutoEncoder

    m = synthetic(6040, 3500, 820_000)  # ~600k distinct pairs, as ML-1M's 1M ratings >= 3.5
    if validation:
        m = m[np.diff(m.indptr) >= 2]
        split = strong_generalization_split(m, n_heldout_users=0.1, seed=0)
        model = AutoEncoder(random_state=0, verbose=False)
        valid = (split.valid_input, split.valid_target)
        _, wall, cpu = _timed(lambda: model.fit(split.train, validation=valid))
    else:
        model = AutoEncoder(random_state=0, verbose=False)
        _, wall, cpu = _timed(lambda: model.fit(m))
    return {
        "users": m.shape[0],
        "items": m.shape[1],
        "nnz": int(m.nnz),
        "wall_s": wall,
        "cpu_s": cpu,
    }


def case_recommend() -> dict:
    from recfast.models import AutoEncoder

    m = synthetic(6040, 3500, 820_000)
    model = AutoEncoder(random_state=0, verbose=False, epochs=1).fit(m)
    users = synthetic(10_000, 3500, 1_060_000, seed=1)
    model.recommend(users[:100], k=100)  # warm-up: caches, thread pools
    _, wall, cpu = _timed(lambda: model.recommend(users, k=100))
    return {
        "users": users.shape[0],
        "items": users.shape[1],
        "nnz": int(users.nnz),
        "k": 100,
        "wall_s": wall,
        "cpu_s": cpu,
    }


def case_latency() -> dict:
    """recommend(k=10) for one user at a time over 100,000 items (serving): median and p99 of
    300 calls, each a different user's history (20 items on average)."""
    from recfast.models import AutoEncoder

    m = synthetic(5000, 100_000, 100_000)
    model = AutoEncoder(random_state=0, verbose=False, epochs=1).fit(m)
    users = synthetic(300, 100_000, 6000, seed=2)
    for u in range(20):  # warm-up: caches, thread pools, the weights in memory
        model.recommend(users[u : u + 1], k=10)
    times = []
    for u in range(users.shape[0]):
        row = users[u : u + 1]
        t = time.perf_counter()
        model.recommend(row, k=10)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    return {
        "items": users.shape[1],
        "calls": len(times),
        "k": 10,
        "item_vector_dim": int(model._scoring_items().shape[1]),
        "p50_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
        "wall_s": float(ms.sum() / 1e3),
        "cpu_s": 0.0,
    }


def case_scale() -> dict:
    from recfast.models import AutoEncoder

    m, gen_wall, _ = _timed(lambda: synthetic(150_000, 20_000, 12_000_000))
    model = AutoEncoder(random_state=0, verbose=False, epochs=1)
    _, wall, cpu = _timed(lambda: model.fit(m))
    return {
        "users": m.shape[0],
        "items": m.shape[1],
        "nnz": int(m.nnz),
        "epochs": 1,
        "wall_s": wall,
        "cpu_s": cpu,
        "data_s": gen_wall,
    }


CASES = {
    "ml1m": lambda: case_ml1m(validation=False),
    "ml1m_validation": lambda: case_ml1m(validation=True),
    "recommend": case_recommend,
    "latency": case_latency,
    "scale": case_scale,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    p.add_argument(
        "--threads", type=int, default=None, help="torch / recfast threads (default all)"
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        if a.threads:
            import torch

            torch.set_num_threads(a.threads)
        speed = core_gflops()
        out = CASES[a.child]()
        out["peak_rss_mib"] = peak_rss_mib()
        out["core_gflops_before"] = speed
        out["core_gflops_after"] = core_gflops()
        print(json.dumps(out))
        return 0
    results = {}
    for name in a.cases.split(","):
        if name not in CASES:
            p.error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name]
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results[name] = r
        if "p50_ms" in r:
            print(
                f"{name:16s} one user per call over {r['items']} items (item vectors of "
                f"{r['item_vector_dim']} floats), {r['calls']} calls: p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, peak RSS {r['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            continue
        print(
            f"{name:16s} {r['users']} x {r['items']} ({r['nnz']} nnz): {r['wall_s']:.2f} s wall, "
            f"{r['cpu_s']:.2f} s CPU, peak RSS {r['peak_rss_mib']:.0f} MiB "
            f"(core GEMM rate {r['core_gflops_before']:.0f} / {r['core_gflops_after']:.0f} "
            "GFLOP/s before / after)",
            flush=True,
        )
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
