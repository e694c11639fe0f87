"""recfast.distributed on a two-node Ray cluster simulated on this machine (a head and one worker
node, `ray.cluster_utils.Cluster`): the items are held once per node, not once per worker, and a
worker SIGKILLed in the middle of a run loses and duplicates no user."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

import recfast
from recfast import distributed

from distributed_helpers import import_ray, within

ray = import_ray()

# The workers cannot import this test module: its functions and classes travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    c.add_node(num_cpus=2)
    c.wait_for_nodes(timeout=120)
    ray.init(
        address=c.address, log_to_driver=False, logging_level="WARNING", configure_logging=False
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    yield c
    ray.shutdown()
    c.shutdown()


def _anonymous_kib() -> int:
    """This process's anonymous (private, heap) memory: a copy of the items would be here;
    object-store and file-mapped pages are not."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1])
    raise RuntimeError("no Anonymous line in /proc/self/smaps_rollup")


@pytest.mark.parametrize("where", ["object store", "mapped file"])
def test_items_are_held_once_per_node(cluster, tmp_path, where):
    """Two workers on each node build exactly as topk_dataset's workers do and score a batch;
    none grows its private memory by anything like the items (48 MiB): they read the node's
    one copy (shared object-store pages, or the page cache of the mapped file)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((49_152, 256)).astype(np.float32)  # 48 MiB
    items = x
    if where == "mapped file":
        index = recfast.ItemIndex(256, metric="cosine")
        index.add(x)
        index.save(tmp_path / "items.idx")
        items = str(tmp_path / "items.idx")
    source = distributed._items_source(ray, items, None)
    tiny = distributed._items_source(ray, x[:100], None)

    @ray.remote(num_cpus=0.5)
    class Probe:
        def __init__(self) -> None:
            # a first worker on 100 items pays the one-off costs (imports, the native thread
            # pool: ~26 MiB measured) before the baseline is taken
            warm = distributed._ShardWorker(tiny, 5, 0, 1, "vector", "id", None, 1)
            warm({"id": np.arange(16), "vector": np.ones((16, 256), np.float32)})
            self.before = _anonymous_kib()
            self.worker = distributed._ShardWorker(source, 5, 0, 1, "vector", "id", None, 1)

        def run(self) -> tuple[int, bool]:
            q = np.ones((16, 256), np.float32)
            self.worker({"id": np.arange(16), "vector": q})
            shared = self.worker.vectors is None or not self.worker.vectors.flags.writeable
            return _anonymous_kib() - self.before, shared

    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    probes = [
        Probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
        for n in nodes
        for _ in range(2)
    ]
    results = within(180, lambda: ray.get([p.run.remote() for p in probes], timeout=170))
    item_kib = x.nbytes // 1024
    for grown, shared in results:
        assert shared  # a read-only view of shared pages, not a private array
        assert grown < item_kib // 4, (grown, item_kib)
    for p in probes:
        ray.kill(p)


def _map_worker_pids(cluster) -> list[int]:
    """The processes of Ray Data's actor-pool workers that this cluster's raylets started."""
    raylets = set()
    for node in [cluster.head_node, *cluster.worker_nodes]:
        for info in node.all_processes.get("raylet", []):
            raylets.add(info.process.pid)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if ppid in raylets and "MapWorker" in cmd:
            pids.append(int(entry))
    return pids


@pytest.mark.parametrize("shards", [1, 2])
def test_sigkilled_worker_loses_no_user(cluster, shards):
    """One worker process is SIGKILLed once the first results are out and the queries are still
    being produced; Ray restarts it and retries its batches; the output equals the single
    process answer row by row, every user exactly once."""
    import time

    n_users, d = 3000, 32
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20_011, d)).astype(np.float32)
    q_all = np.random.default_rng(2).standard_normal((n_users, d)).astype(np.float32)
    q_ref = ray.put(q_all)

    def make(b: dict) -> dict:
        time.sleep(0.2)  # slow input: the run is certainly still going when the kill lands
        return {"id": b["id"], "vector": ray.get(q_ref)[b["id"]]}

    queries = ray.data.range(n_users, override_num_blocks=30).map_batches(
        make, batch_format="numpy", batch_size=100
    )
    out = distributed.topk_dataset(queries, x, 10, item_shards=shards, batch_size=100)

    def run() -> tuple[list, int, int]:
        batches, killed_at, victims = [], -1, 0
        for b in out.iter_batches(batch_format="pandas", batch_size=None):
            batches.append(b)
            if killed_at < 0:
                pids = _map_worker_pids(cluster)
                assert pids, "no actor-pool worker found to kill"
                os.kill(pids[0], signal.SIGKILL)
                killed_at, victims = sum(len(x) for x in batches), len(pids)
        return batches, killed_at, victims

    batches, killed_at, victims = within(240, run)
    assert 0 < killed_at < n_users  # the kill landed in the middle of the run
    import pandas as pd

    df = pd.concat(batches).sort_values("id")
    assert len(df) == n_users and (df["id"].to_numpy() == np.arange(n_users)).all()
    want = recfast.topk(q_all, x, 10)
    np.testing.assert_array_equal(np.stack(df["item_ids"].to_numpy()), want.ids)
    np.testing.assert_array_equal(np.stack(df["scores"].to_numpy()), want.scores)
