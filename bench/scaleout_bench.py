"""Scale-out benchmark: top-k for every user, recfast single process vs recfast on Ray Data vs
Spark MLlib's ALSModel.recommendForAllUsers, on the same factors, in one run.

    flock /tmp/recfast-bench.lock python bench/scaleout_bench.py --users 1000000 \
        --items 100000 --dim 64 -k 100 --spark-users 5000 --out bench/results/scaleout.json

1. Spark (pyspark, local[2]) trains an ALS of rank `dim` on synthetic interactions (every item
   and every user has some), one iteration: the model exists, and its userFactors /
   itemFactors are the vectors everyone ranks. Spark then ranks `--spark-users` users with
   recommendForUserSubset (recommendForAllUsers restricted to them: the same blocked
   cross-join and top-k per user), timed; their ids are compared with recfast's (both exact:
   they may differ only where two scores tie to float32 rounding).
2. recfast single process: recfast.topk(metric="dot") over all users in batches (the ceiling).
3. recfast on Ray Data, a local cluster of 2 CPUs: topk_dataset without and with item_shards=2,
   the users as a Ray dataset, the results streamed back and checked against (2), row by row.

Reported: users per second, the engine's cost (Ray / single-process throughput), the speed-up
over Spark, peak memory (this process; each Ray worker's peak RSS and private memory, sampled
from /proc while it runs: the items in the object store count in RSS, not in private memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np


def _spark_factors(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, dict]:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("recfast-scaleout")
        .config("spark.driver.memory", "8g")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    rng = np.random.default_rng(0)
    u, n = args.users, args.items
    # every user and every item appears (ALS only has factors for those it saw)
    users = np.concatenate([np.arange(u), np.arange(n) % u, rng.integers(0, u, args.users)])
    items = np.concatenate([rng.integers(0, n, u), np.arange(n), rng.integers(0, n, args.users)])
    ratings = rng.integers(1, 6, users.size).astype(np.float32)
    import pandas as pd

    df = spark.createDataFrame(
        pd.DataFrame(
            {"user": users.astype(np.int32), "item": items.astype(np.int32), "rating": ratings}
        )
    )
    t0 = time.perf_counter()
    model = ALS(
        rank=args.dim,
        maxIter=1,
        regParam=0.1,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        seed=0,
        coldStartStrategy="drop",
    ).fit(df)
    train_s = time.perf_counter() - t0

    def factors(frame, count: int) -> np.ndarray:
        pdf = frame.toPandas().sort_values("id")
        assert len(pdf) == count and (pdf["id"].to_numpy() == np.arange(count)).all()
        return np.stack(pdf["features"].to_numpy()).astype(np.float32)

    uf = factors(model.userFactors, u)
    itf = factors(model.itemFactors, n)
    subset = spark.createDataFrame(
        pd.DataFrame({"user": np.arange(args.spark_users, dtype=np.int32)})
    )
    t0 = time.perf_counter()
    recs = model.recommendForUserSubset(subset, args.k).toPandas()
    spark_s = time.perf_counter() - t0
    spark.stop()
    recs = recs.sort_values("user")
    spark_ids = np.stack(
        [np.array([r["item"] for r in row], np.int64) for row in recs["recommendations"]]
    )
    return (
        uf,
        itf,
        {
            "train_seconds": train_s,
            "seconds": spark_s,
            "users": args.spark_users,
            "users_per_second": args.spark_users / spark_s,
            "ids": spark_ids,
        },
    )


def _single_process(uf: np.ndarray, itf: np.ndarray, k: int, batch: int) -> dict:
    import recfast

    t0 = time.perf_counter()
    parts = [
        recfast.topk(uf[s : s + batch], itf, k, metric="dot") for s in range(0, uf.shape[0], batch)
    ]
    seconds = time.perf_counter() - t0
    ids = np.concatenate([p.ids for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    return {
        "seconds": seconds,
        "users_per_second": uf.shape[0] / seconds,
        "ids": ids,
        "scores": scores,
    }


class _WorkerMemory:
    """Samples the memory of Ray Data's actor-pool workers (processes named MapWorker on this
    machine) every 0.2 s while a run goes: each one's peak RSS and peak private (anonymous)
    memory. The items sit in the object store (shared pages, counted in RSS but not in the
    private figure): a worker that held its own copy would show it in the private one."""

    def __init__(self) -> None:
        import threading

        self.peak: dict[int, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            for pid in _map_workers():
                try:
                    with open(f"/proc/{pid}/smaps_rollup") as f:
                        fields = {ln.split(":")[0]: ln.split()[1] for ln in f if ":" in ln}
                except OSError:
                    continue
                now = {
                    "rss_mib": int(fields.get("Rss", 0)) / 1024,
                    "private_mib": int(fields.get("Anonymous", 0)) / 1024,
                }
                old = self.peak.setdefault(pid, now)
                for key, value in now.items():
                    old[key] = max(old[key], value)

    def summary(self) -> dict:
        rows = list(self.peak.values())
        return {
            "workers_seen": len(rows),
            "peak_rss_mib_per_worker": max((r["rss_mib"] for r in rows), default=0.0),
            "peak_private_mib_per_worker": max((r["private_mib"] for r in rows), default=0.0),
        }


def _map_workers() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"MapWorker" in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def _ray_run(
    uf: np.ndarray,
    itf: np.ndarray,
    k: int,
    batch: int,
    shards: int | None,
    want_ids: np.ndarray,
    want_scores: np.ndarray,
) -> dict:
    import ray

    from recfast import distributed

    queries = ray.data.range(uf.shape[0], override_num_blocks=max(2, uf.shape[0] // 50_000))
    ref = ray.put(uf)

    def attach(b: dict) -> dict:
        vectors = ray.get(ref)
        return {"id": b["id"], "vector": vectors[b["id"]]}

    queries = queries.map_batches(attach, batch_format="numpy", batch_size=batch)
    queries = queries.materialize()  # the users as a Ray dataset in the object store, untimed
    t0 = time.perf_counter()
    out = distributed.topk_dataset(
        queries, itf, k, metric="dot", item_shards=shards, batch_size=batch
    )
    rows = mismatched = 0
    with _WorkerMemory() as memory:
        for b in out.iter_batches(batch_format="pyarrow", batch_size=None):
            uid = b.column("id").to_numpy()
            got_ids = np.stack(b.column("item_ids").to_numpy(zero_copy_only=False))
            got_scores = np.stack(b.column("scores").to_numpy(zero_copy_only=False))
            mismatched += int(
                (got_ids != want_ids[uid]).any(axis=1).sum()
                + (got_scores != want_scores[uid]).any(axis=1).sum()
            )
            rows += len(uid)
        seconds = time.perf_counter() - t0
    stats = out.stats()
    return {
        "seconds": seconds,
        "users_per_second": rows / seconds,
        "rows": rows,
        "rows_differing_from_single_process": mismatched,
        **memory.summary(),
        "ray_data_stats": stats,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("-k", type=int, default=100)
    p.add_argument(
        "--spark-users",
        type=int,
        default=5000,
        help="users Spark ranks (its rate is per user; all of them would take hours)",
    )
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    t_all = time.perf_counter()
    uf, itf, spark = _spark_factors(args)
    print(
        f"factors: {uf.shape[0]} users x {itf.shape[0]} items, d={uf.shape[1]} (ALS trained "
        f"in {spark['train_seconds']:.1f} s)",
        flush=True,
    )
    single = _single_process(uf, itf, args.k, args.batch)
    peak_single = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ns = args.spark_users
    agree = float((spark["ids"] == single["ids"][:ns]).mean())
    same_sets = float(
        np.mean([len(set(a) & set(b)) / args.k for a, b in zip(spark["ids"], single["ids"][:ns])])
    )

    import ray

    ray.init(
        num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING"
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    runs = {}
    for shards in (None, 2):
        runs[shards] = _ray_run(
            uf, itf, args.k, args.batch, shards, single["ids"], single["scores"]
        )
    ray.shutdown()

    base = single["users_per_second"]
    table = [
        ("recfast single process (recfast.topk in batches)", base, 1.0),
        (
            "recfast on Ray Data, 2 CPUs",
            runs[None]["users_per_second"],
            runs[None]["users_per_second"] / base,
        ),
        (
            "recfast on Ray Data, 2 CPUs, item_shards=2",
            runs[2]["users_per_second"],
            runs[2]["users_per_second"] / base,
        ),
        (
            f"Spark MLlib recommendForUserSubset, local[2] ({ns} users)",
            spark["users_per_second"],
            spark["users_per_second"] / base,
        ),
    ]
    print(f"\n{uf.shape[0]} users x {itf.shape[0]} items, d={uf.shape[1]}, k={args.k}")
    print(f"{'engine':<62} {'users/s':>10} {'x single':>9} {'x Spark':>8}")
    for name, rate, ratio in table:
        print(f"{name:<62} {rate:>10.0f} {ratio:>9.3f} {rate / spark['users_per_second']:>8.1f}")
    print(
        f"Spark vs recfast ids, first {ns} users: {agree:.4%} equal in place, "
        f"{same_sets:.4%} of the top-{args.k} sets shared"
    )
    item_mib = itf.nbytes / 2**20
    for shards, r in runs.items():
        print(
            f"Ray item_shards={shards}: {r['rows']} rows, "
            f"{r['rows_differing_from_single_process']} differing from the single process; "
            f"{r['workers_seen']} workers, peak RSS {r['peak_rss_mib_per_worker']:.0f} MiB and "
            f"peak private memory {r['peak_private_mib_per_worker']:.0f} MiB per worker "
            f"(the items: {item_mib:.0f} MiB, in the object store once)"
        )
    print(
        f"peak RSS of this process {peak_single:.0f} MiB; total {time.perf_counter() - t_all:.0f} s"
    )
    if args.out:
        result = {
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
            "shape": {"users": uf.shape[0], "items": itf.shape[0], "dim": uf.shape[1], "k": args.k},
            "single_process": {k: v for k, v in single.items() if k not in ("ids", "scores")},
            "ray": {str(s): r for s, r in runs.items()},
            "spark": {k: v for k, v in spark.items() if k != "ids"},
            "spark_ids_equal_in_place": agree,
            "spark_topk_sets_shared": same_sets,
            "peak_rss_mib_driver": peak_single,
        }
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
