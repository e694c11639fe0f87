"""recfast.distributed on a local Ray cluster (2 CPUs, started here): every result equals the
single-process answer (`recfast.topk`, `ItemIndex.search`, `model.recommend`) row by row, with
exclusions, item shards (N not a multiple of S), k > N, empty datasets, Parquet in and out; bad
input is a clear error and never a hung job."""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest
import scipy.sparse as sp

import recfast
from recfast import distributed, reference
from recfast.models import EASE, AutoEncoder, Popularity

from distributed_helpers import (
    adversarial_items,
    collect,
    import_ray,
    query_rows,
    random_exclusions,
    within,
)
from helpers import assert_topk_equivalent

ray = import_ray()

B, N, D = 300, 503, 17  # N prime: no shard count divides it


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
        configure_logging=False,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def idle_cluster():
    """Each test starts with every CPU of the cluster free. A failed job's Dataset keeps one of
    its actors (0.5 CPU here) until the Dataset is garbage-collected (measured: 12 s later it
    still held it; freed at once by del + gc.collect()), and an earlier test's Dataset can live
    on in a reference cycle (its frame, kept by pytest.raises' traceback); a job started while
    such actors hold the CPUs can wait for ever: the likely cause of two 180 s hangs of
    test_cli_recommend_all in full runs of the suite (never seen when run alone)."""
    gc.collect()
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0.0) < ray.cluster_resources()["CPU"] - 1e-6:
        if time.monotonic() > deadline:
            pytest.fail("the CPUs held by an earlier test's Ray actors were not freed within 60 s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((B, D)).astype(np.float32)
    q[2] = 0.0  # a zero query scores 0 against everything (cosine)
    x = adversarial_items(rng, N, D)
    excl = random_exclusions(rng, B, N)
    return q, x, excl


def _assert_same(got, want):
    np.testing.assert_array_equal(got[1], want.ids)
    np.testing.assert_array_equal(got[2], want.scores)


@pytest.mark.parametrize(
    "shards,metric", [(None, "cosine"), (1, "dot"), (2, "cosine"), (3, "dot"), (7, "cosine")]
)
def test_equals_topk_with_exclusions_and_shards(data, shards, metric):
    q, x, excl = data
    ds = ray.data.from_items(query_rows(q, excl))
    out = distributed.topk_dataset(
        ds, x, 10, metric=metric, exclude_column="seen", item_shards=shards, batch_size=64
    )
    got = collect(out)
    np.testing.assert_array_equal(got[0], np.arange(B))
    want = recfast.topk(q, x, 10, metric=metric, exclude=excl)
    _assert_same(got, want)
    assert (got[1][1] == -1).all()  # the row that excludes every item is all padding


def test_matches_the_numpy_reference(data):
    """Not only recfast.topk's answer: the contract's, against float64 (ties lower id first)."""
    q, x, _ = data
    out = distributed.topk_dataset(
        ray.data.from_items(query_rows(q)), x, 25, metric="dot", item_shards=2, batch_size=100
    )
    _, ids, scores = collect(out)
    want = reference.topk(q, x, 25, metric="dot")
    assert_topk_equivalent(recfast.TopK(scores, ids), want, q, x, "dot", 25)


@pytest.mark.parametrize("shards", [1, 3])
def test_k_above_n_pads(shards):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((20, 3)).astype(np.float32)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    out = distributed.topk_dataset(ray.data.from_items(query_rows(q)), x, 8, item_shards=shards)
    got = collect(out)
    want = recfast.topk(q, x, 8)
    _assert_same(got, want)
    assert (got[1][:, 5:] == -1).all() and np.isneginf(got[2][:, 5:]).all()


def test_small_batches_get_the_scores_of_a_large_one(data):
    """Ray cuts the dataset where it likes (here 3 rows a batch): each row still gets exactly
    the answer recfast.topk gives it within one large batch."""
    q, x, _ = data
    out = distributed.topk_dataset(ray.data.from_items(query_rows(q[:30])), x, 5, batch_size=3)
    _assert_same(collect(out), recfast.topk(q[:30], x, 5))


def test_empty_queries(data):
    _, x, _ = data
    empty = ray.data.from_items(query_rows(np.zeros((2, D), np.float32))).limit(0)
    out = distributed.topk_dataset(empty, x, 5, item_shards=2)
    assert within(60, out.count) == 0


def test_empty_items():
    q = np.ones((10, 4), np.float32)
    out = distributed.topk_dataset(
        ray.data.from_items(query_rows(q)), np.zeros((0, 4), np.float32), 3
    )
    got = collect(out)
    assert (got[1] == -1).all() and np.isneginf(got[2]).all()


def test_wrong_dimension_known_schema_fails_before_running(data):
    _, x, _ = data
    ds = ray.data.from_items(query_rows(np.ones((10, D + 1), np.float32)))
    ds = ds.materialize()  # its schema is known
    with pytest.raises(ValueError, match=r"query_column 'vector'.*dimension 17"):
        distributed.topk_dataset(ds, x, 5)


def test_wrong_dimension_found_by_the_workers_is_a_clear_error(data, tmp_path):
    """Parquet lists have no fixed shape: the first worker batch refuses them, and the job
    ends with that error (no retry loop, no hang)."""
    import pandas as pd

    _, x, _ = data
    pd.DataFrame(
        {"id": np.arange(10), "vector": list(np.ones((10, D + 2), np.float32))}
    ).to_parquet(tmp_path / "q.parquet")
    ds = ray.data.read_parquet(str(tmp_path))
    out = distributed.topk_dataset(ds, x, 5, item_shards=2)
    with pytest.raises(Exception, match=r"shape \(19,\).*dimension 17"):
        within(120, out.materialize)


def test_missing_column_is_named(data):
    q, x, _ = data
    ds = ray.data.from_items(query_rows(q[:10])).materialize()
    with pytest.raises(ValueError, match="exclude_column 'nope'"):
        distributed.topk_dataset(ds, x, 5, exclude_column="nope")
    with pytest.raises(ValueError, match="id_column 'user'"):
        distributed.topk_dataset(ds, x, 5, id_column="user")


def test_excluded_id_out_of_range_is_an_error(data):
    q, x, _ = data
    rows = query_rows(q[:10], [np.array([N], np.int64)] * 10)
    out = distributed.topk_dataset(ray.data.from_items(rows), x, 5, exclude_column="seen")
    with pytest.raises(Exception, match=r"excludes item 503, outside \[0, 503\)"):
        within(120, out.materialize)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(k=0), "k must be"),
        (dict(item_shards=0), "item_shards"),
        (dict(item_shards=N + 1), "more than the 503 items"),
        (dict(batch_size=0), "batch_size"),
        (dict(metric="l2"), "metric"),
    ],
)
def test_bad_arguments(data, kwargs, match):
    q, x, _ = data
    args = dict(k=5) | kwargs
    k = args.pop("k")
    with pytest.raises(ValueError, match=match):
        distributed.topk_dataset(ray.data.from_items(query_rows(q[:2])), x, k, **args)


def test_bad_items_and_queries(data, tmp_path):
    q, x, _ = data
    ds = ray.data.from_items(query_rows(q[:2]))
    with pytest.raises(TypeError, match="items must"):
        distributed.topk_dataset(ds, [[1.0]], 5)
    with pytest.raises(TypeError, match="items must hold floats"):
        distributed.topk_dataset(ds, np.ones((3, D), np.int64), 5)
    with pytest.raises(ValueError, match="is not a file"):
        distributed.topk_dataset(ds, str(tmp_path / "missing.idx"), 5)
    with pytest.raises(TypeError, match="ray.data.Dataset"):
        distributed.topk_dataset(q, x, 5)


# -- ItemIndex: in memory (object store) and as a mapped file ----------------------------------


@pytest.mark.parametrize(
    "storage,where,shards",
    [
        ("float32", "memory", 1),
        ("int8", "file", 1),
        ("float16", "file", 2),
        ("float32", "memory", 3),
    ],
)
def test_item_index_equals_search(data, tmp_path, storage, where, shards):
    q, x, _ = data
    x = x.copy()
    x[5] /= 1e15  # int8 / float16 storage needs finite, moderate rows
    x[6] *= 1e15
    index = recfast.ItemIndex(D, metric="cosine", storage=storage)
    ext = np.arange(N, dtype=np.int64) * 3 + 1000  # external ids, not positions
    index.add(x, ids=ext)
    rng = np.random.default_rng(5)
    excl = [rng.choice(ext, 10) if i % 2 else np.array([7, 8], np.int64) for i in range(B)]
    items = index
    if where == "file":
        index.save(tmp_path / "items.idx")
        items = str(tmp_path / "items.idx")
    out = distributed.topk_dataset(
        ray.data.from_items(query_rows(q, excl)),
        items,
        10,
        exclude_column="seen",
        item_shards=shards,
        batch_size=50,
    )
    _assert_same(collect(out), index.search(q, 10, exclude=excl))


def test_item_index_metric_must_match(data):
    _, x, _ = data
    index = recfast.ItemIndex(D, metric="dot")
    index.add(x)
    with pytest.raises(ValueError, match="built for 'dot'"):
        distributed.topk_dataset(ray.data.from_items(query_rows(x[:2])), index, 3, metric="cosine")


# -- Parquet in, Parquet out -----------------------------------------------------------------


def test_parquet_round_trip(data, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    q, x, excl = data
    pd.DataFrame({"id": [f"u{i}" for i in range(B)], "vector": list(q), "seen": excl}).to_parquet(
        tmp_path / "queries.parquet"
    )
    ds = ray.data.read_parquet(str(tmp_path / "queries.parquet"))
    out = distributed.topk_dataset(ds, x, 7, exclude_column="seen", item_shards=2)
    within(120, lambda: out.write_parquet(str(tmp_path / "out")))
    table = pq.read_table(tmp_path / "out").to_pandas()
    table["n"] = table["id"].str[1:].astype(int)
    table = table.sort_values("n")
    assert len(table) == B
    want = recfast.topk(q, x, 7, exclude=excl)
    np.testing.assert_array_equal(np.stack(table["item_ids"].to_numpy()), want.ids)
    np.testing.assert_array_equal(np.stack(table["scores"].to_numpy()), want.scores)


# -- models ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interactions():
    n_users, n_items = 120, 40
    X = sp.random(n_users, n_items, density=0.15, random_state=4, format="csr")
    X.data[:] = 1.0
    X.data[X.indptr[7] : X.indptr[8]] = 0.0  # a user with no history
    X.eliminate_zeros()
    return sp.csr_matrix(X)


def _pairs(X: sp.csr_matrix) -> list[dict]:
    coo = X.tocoo()
    return [{"user": int(u), "item": int(i)} for u, i in zip(coo.row, coo.col)]


def _lists(X: sp.csr_matrix) -> list[dict]:
    return [
        {"user": u, "item": X.indices[X.indptr[u] : X.indptr[u + 1]].astype(np.int64).tolist()}
        for u in range(X.shape[0])
    ]


@pytest.mark.parametrize("name", ["ease", "popularity", "autoencoder"])
@pytest.mark.parametrize("filter_seen", [True, False])
def test_recommend_all_equals_recommend(interactions, name, filter_seen):
    X = interactions
    model = {
        "ease": lambda: EASE(l2=10.0),
        "popularity": Popularity,
        "autoencoder": lambda: AutoEncoder(epochs=1, latent_dim=8, device="cpu", verbose=False),
    }[name]().fit(X)
    ds = ray.data.from_items(_lists(X))
    out = distributed.recommend_all(model, ds, 15, filter_seen=filter_seen, batch_size=32)
    users, ids, scores = collect(out, "user")
    np.testing.assert_array_equal(users, np.arange(X.shape[0]))
    want = model.recommend(X, k=15, filter_seen=filter_seen)
    np.testing.assert_array_equal(ids, want.ids)
    np.testing.assert_allclose(scores, want.scores, rtol=1e-6, atol=1e-6)
    if filter_seen:
        for u in range(X.shape[0]):
            assert not set(ids[u]) & set(X.indices[X.indptr[u] : X.indptr[u + 1]])


_MODELS = {
    "ease": lambda: EASE(l2=10.0),
    "popularity": Popularity,
    "autoencoder": lambda: AutoEncoder(epochs=1, latent_dim=8, device="cpu", verbose=False),
    "autoencoder-low-rank": lambda: AutoEncoder(
        epochs=1, latent_dim=8, linear_rank=4, full_rank_max_items=0, device="cpu", verbose=False
    ),
}


@pytest.mark.parametrize(
    ("name", "shards"),
    [("ease", 2), ("ease", 7), ("popularity", 3), ("autoencoder", 3), ("autoencoder-low-rank", 7)],
)
def test_recommend_all_item_shards_equal_unsharded(interactions, name, shards):
    """Each pool scores its own range of the items (40, not a multiple of 3 or 7); the merged
    parts are the unsharded run's answer bit for bit, and model.recommend's."""
    X = interactions
    model = _MODELS[name]().fit(X)
    ds = ray.data.from_items(_lists(X))
    whole = collect(distributed.recommend_all(model, ds, 15, batch_size=32), "user")
    parts = collect(
        distributed.recommend_all(model, ds, 15, batch_size=32, item_shards=shards), "user"
    )
    for a, b in zip(whole, parts):
        np.testing.assert_array_equal(a, b)
    want = model.recommend(X, k=15)
    np.testing.assert_array_equal(parts[1], want.ids)
    np.testing.assert_allclose(parts[2], want.scores, rtol=1e-6, atol=1e-6)


def test_models_score_item_ranges_exactly(interactions):
    """_recommend_range over contiguous ranges, merged, is recommend's answer bit for bit
    (no Ray involved: the models' own part of item sharding)."""
    X = interactions
    for name, make in _MODELS.items():
        model = make().fit(X)
        for filter_seen in (True, False):
            want = model.recommend(X, k=12, filter_seen=filter_seen)
            for shards in (2, 3, 7):
                bounds = distributed._shard_bounds(model.n_items_, shards)
                got = recfast.merge_topk(
                    [(model._recommend_range(X, 12, filter_seen, lo, hi), 0) for lo, hi in bounds],
                    12,
                )
                np.testing.assert_array_equal(got.ids, want.ids, err_msg=f"{name} S={shards}")
                np.testing.assert_array_equal(got.scores, want.scores, err_msg=name)


def test_recommend_all_groups_interaction_rows(interactions):
    """(user, item) rows, duplicates and all, are grouped into histories in the cluster; a user
    without rows gets no output row."""
    X = interactions
    model = EASE(l2=10.0).fit(X)
    rows = _pairs(X)
    rows += rows[:10]  # a repeated interaction is still one seen item
    out = distributed.recommend_all(model, ray.data.from_items(rows), 5)
    users, ids, scores = collect(out, "user")
    present = np.flatnonzero(np.diff(X.indptr) > 0)
    np.testing.assert_array_equal(users, present)
    want = model.recommend(X[present], k=5)
    np.testing.assert_array_equal(ids, want.ids)
    np.testing.assert_allclose(scores, want.scores, rtol=1e-6, atol=1e-6)


def test_recommend_all_bad_input(interactions):
    model = Popularity().fit(interactions)
    with pytest.raises(TypeError, match="fitted recfast model"):
        distributed.recommend_all(object(), ray.data.from_items(_pairs(interactions)), 5)
    with pytest.raises(ValueError, match="item_shards=41 is more than the model's 40 items"):
        distributed.recommend_all(
            model, ray.data.from_items(_pairs(interactions)), 5, item_shards=41
        )
    with pytest.raises(ValueError, match="not fitted"):
        distributed.recommend_all(EASE(), ray.data.from_items(_pairs(interactions)), 5)
    with pytest.raises(ValueError, match="item_column 'movie'"):
        distributed.recommend_all(
            model, ray.data.from_items(_pairs(interactions)), 5, item_column="movie"
        )
    bad = ray.data.from_items([{"user": 0, "item": np.array([40], np.int64)}])
    with pytest.raises(Exception, match=r"outside the model's columns \[0, 40\)"):
        within(120, distributed.recommend_all(model, bad, 5).materialize)


# -- the command line --------------------------------------------------------------------------


def test_cli_recommend_all(tmp_path, capsys):
    """`recfast train` then `recfast recommend-all`: every user of the CSV, raw item ids, the
    model's answer; bad input is one line and status 1."""
    import pandas as pd
    import pyarrow.parquet as pq

    from recfast.cli import main
    from recfast.models import load_model

    rng = np.random.default_rng(7)
    users = rng.integers(0, 60, 600)
    items = rng.integers(0, 30, 600) * 10 + 5  # raw ids, not columns
    pd.DataFrame({"user": users, "item": items}).to_csv(tmp_path / "data.csv", index=False)
    model_path = tmp_path / "pop.npz"
    assert (
        main(
            [
                "train",
                str(tmp_path / "data.csv"),
                "--out",
                str(model_path),
                "--model",
                "popularity",
                "--quiet",
            ]
        )
        == 0
    )

    def recommend_all(out, *extra):
        argv = ["recommend-all", str(model_path), str(tmp_path / "data.csv"), "--out", str(out)]
        return within(180, lambda: main([*argv, "-k", "5", "--quiet", *extra]))

    out = tmp_path / "out"
    assert recommend_all(out) == 0
    n_users = len(np.unique(users))
    assert f"for {n_users} users" in capsys.readouterr().out
    table = pq.read_table(out).to_pandas().sort_values("user")
    assert len(table) == n_users
    model = load_model(model_path)
    import json

    raw = np.asarray(json.loads((tmp_path / "pop.npz.meta.json").read_text())["item_ids"])
    column = {int(v): j for j, v in enumerate(raw)}
    X = sp.csr_matrix(
        (np.ones(600, np.float32), (users, [column[int(i)] for i in items])),
        shape=(60, model.n_items_),
    )
    X.data[:] = 1.0
    want = model.recommend(X[table["user"].to_numpy()], k=5)
    np.testing.assert_array_equal(
        np.stack([np.asarray(v, np.int64) for v in table["item_ids"]]),
        raw[want.ids].astype(np.int64),
    )

    sharded = tmp_path / "out-sharded"
    assert recommend_all(sharded, "--item-shards", "3") == 0
    assert f"for {n_users} users" in capsys.readouterr().out
    table3 = pq.read_table(sharded).to_pandas().sort_values("user")
    np.testing.assert_array_equal(table3["user"].to_numpy(), table["user"].to_numpy())
    np.testing.assert_array_equal(
        np.stack(table3["item_ids"].to_numpy()), np.stack(table["item_ids"].to_numpy())
    )

    def fails(argv, match):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err, err

    fails(
        [
            "recommend-all",
            str(tmp_path / "nope.npz"),
            str(tmp_path / "data.csv"),
            "--out",
            str(tmp_path / "o1"),
        ],
        "no such model file",
    )
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    fails(
        [
            "recommend-all",
            str(tmp_path / "junk.npz"),
            str(tmp_path / "data.csv"),
            "--out",
            str(tmp_path / "o2"),
        ],
        "junk.npz",
    )
    fails(
        [
            "recommend-all",
            str(model_path),
            str(tmp_path / "data.csv"),
            "--out",
            str(tmp_path / "o3"),
            "--item-col",
            "movie",
        ],
        "--item-col movie",
    )
    fails(
        [
            "recommend-all",
            str(model_path),
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "o4"),
        ],
        "missing",
    )
    fails(
        ["recommend-all", str(model_path), str(tmp_path / "data.csv"), "--out", str(out)],
        "not an empty folder",
    )


# -- how the actors ask for CPUs ---------------------------------------------------------------


class _FakeCluster:
    """What _worker_plan reads of Ray: the cluster's CPUs and its nodes."""

    def __init__(self, node_cpus: list[int]) -> None:
        self.node_cpus = node_cpus

    def cluster_resources(self) -> dict:
        return {"CPU": float(sum(self.node_cpus))}

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": {"CPU": float(c)}} for c in self.node_cpus]


@pytest.mark.parametrize("node_cpus", [[2], [4], [2, 2], [1, 3], [2, 2, 2], [8, 8]])
@pytest.mark.parametrize("shards", [1, 2, 3, 7])
@pytest.mark.parametrize("per", [None, 2])
def test_actors_always_leave_a_whole_cpu_on_some_node(node_cpus, shards, per):
    """However Ray places the actors on the nodes, one node keeps a whole CPU for Ray Data's
    read and write tasks (else the pipeline waits forever: two nodes of 2 CPUs once had four
    actors of 0.75 CPU, 0.5 CPU left on each node)."""
    import itertools

    fake = _FakeCluster(node_cpus)
    workers, ask, threads = distributed._worker_plan(fake, None, per, shards)
    actors = workers * shards
    assert workers >= 1 and threads == (per or 1)
    assert actors <= 16  # every placement is tried below
    placements = 0
    for where in itertools.product(range(len(node_cpus)), repeat=actors):
        used = np.bincount(where, minlength=len(node_cpus)) * ask
        if (used > np.array(node_cpus) + 1e-9).any():
            continue  # Ray would not place them so
        placements += 1
        free = np.array(node_cpus) - used
        assert (free >= 1 - 1e-9).any(), (node_cpus, shards, ask, where)
    assert placements


def test_cli_unreachable_address_is_one_line_not_a_hang(tmp_path):
    """An address nobody answers at: one line and status 1 within seconds (ray.init alone was
    still retrying it after 5 minutes)."""
    import socket
    import subprocess
    import sys

    X = sp.random(20, 10, density=0.3, format="csr", random_state=0)
    X.data[:] = 1.0
    Popularity().fit(X).save(tmp_path / "pop.npz")
    (tmp_path / "d.csv").write_text("user,item\n1,2\n2,3\n")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", "not:a:port"):
        proc = subprocess.run(
            [sys.executable, "-m", "recfast", "recommend-all", str(tmp_path / "pop.npz")]
            + [str(tmp_path / "d.csv"), "--out", str(tmp_path / "o"), "--address", address],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.count("\n") == 1 and f"--address {address}" in proc.stderr
