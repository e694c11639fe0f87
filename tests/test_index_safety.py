"""ItemIndex under hostile use: batches mixing zero, tiny and huge queries, mutation during
search, extreme magnitudes, crafted files, FIFOs, folders, killed writers."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

import recfast
from recfast import reference
from recfast.index import FORMAT_MAGIC, FORMAT_VERSION, ItemIndex

from helpers import assert_topk_equivalent

STORAGES = ("float32", "float16", "int8")


def _same(a, b):
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores.view(np.uint32), b.scores.view(np.uint32))


def _index(x, metric, storage):
    idx = ItemIndex(x.shape[1], metric=metric, storage=storage)
    idx.add(x)
    return idx


def _check_reference(idx, q, k, res):
    vec = idx.get(idx.ids)
    ref = reference.topk(q, vec, k, metric=idx.metric)
    assert_topk_equivalent(res, ref, q, vec, idx.metric, k)  # ids are positions (0..n-1)


def test_zero_query_in_batch_reproducer():
    """The reported case: a batch of 9 with one zero query gave other ids than float32."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((1, 32)) + 1e-6 * rng.standard_normal((2000, 32))).astype(np.float32)
    q = rng.standard_normal((9, 32)).astype(np.float32)
    q[0] = 0
    f = _index(x, "dot", "float32").search(q, 5)
    for storage in ("int8", "float16"):
        _same(_index(x, "dot", storage).search(q, 5), f)


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_compressed_equals_float32_for_every_batch_size(metric):
    """Every batch size 1..40 with zero, huge-norm and tiny-norm queries mixed in: compressed
    storage returns the float32 storage's ids and scores bit for bit, whatever the split."""
    rng = np.random.default_rng(11)
    d = 24
    base = rng.standard_normal(d)
    # near-duplicates: ids flip on a 1-ulp change of the scores
    x = (base + 1e-5 * rng.standard_normal((1500, d))).astype(np.float32)
    x[::50] = rng.standard_normal((30, d))
    idx = {s: _index(x, metric, s) for s in STORAGES}
    for b in range(1, 41):
        q = rng.standard_normal((b, d)).astype(np.float32)
        kinds = rng.integers(0, 4, b)
        q[kinds == 1] = 0
        q[kinds == 2] *= np.float32(1e30)  # huge norm (dot: routed to the float32 path)
        q[kinds == 3] *= np.float32(1e-25)  # tiny norm
        want = idx["float32"].search(q, 7)
        for s in ("int8", "float16"):
            _same(idx[s].search(q, 7), want)
        if metric == "cosine":
            _check_reference(idx["float32"], q, 7, want)


def test_float32_fallback_beyond_the_bound_range():
    """dot scores beyond the compressed bound's range (|q| |x| > 1e36) take the float32 path;
    the answer still equals float32 storage and the reference."""
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((800, 16)) * 1e19).astype(np.float32)
    q = (rng.standard_normal((5, 16)) * 1e18).astype(np.float32)  # |q| |x| ~ 1e38 / 16
    f = _index(x, "dot", "float32")
    want = f.search(q, 6)
    assert np.isfinite(want.scores).all()
    for s in ("int8", "float16"):
        ix = _index(x, "dot", s)
        _, stats = ix.search(q, 6, return_stats=True)
        assert stats["candidates"] == 0  # nothing went through the compressed scan
        _same(ix.search(q, 6), want)
    _check_reference(f, q, 6, want)


# -- magnitudes whose squares leave float32's range -------------------------------------------


@pytest.mark.parametrize("scale", [1e20, 1e-20, 1e30, 1e-30])
def test_normalize_extreme_magnitudes(scale):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((50, 7)) * scale).astype(np.float32)
    out = recfast.normalize(x)
    np.testing.assert_allclose(np.linalg.norm(out.astype(np.float64), axis=1), 1.0, rtol=1e-6)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(out, x64 / np.linalg.norm(x64, axis=1, keepdims=True), atol=1e-7)
    np.testing.assert_array_equal(recfast.normalize(np.zeros((2, 3), np.float32)), 0)


@pytest.mark.parametrize(
    "qscale,xscale", [(1e20, 1.0), (1e-20, 1.0), (1.0, 1e20), (1e-20, 1e20), (1e19, 1e-19)]
)
def test_cosine_topk_extreme_magnitudes(simd_level, qscale, xscale):
    """Cosine scores never exceed 1 and equal the float64 truth, at every SIMD level and on
    every path (B = 1, 9, 40)."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((300, 19)) * xscale).astype(np.float32)
    for b in (1, 9, 40):
        q = (rng.standard_normal((b, 19)) * qscale).astype(np.float32)
        res = recfast.topk(q, x, 5)
        assert (res.scores <= 1.0).all() and (res.ids >= 0).all()
        assert_topk_equivalent(res, reference.topk(q, x, 5), q, x, "cosine", 5)


@pytest.mark.parametrize("storage", STORAGES)
def test_cosine_index_queries_whose_square_overflows(storage):
    """Queries scaled by 1e19 (squared norm beyond float32) give the unscaled queries' answer."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 12)).astype(np.float32)
    idx = _index(x, "cosine", storage)
    q = rng.standard_normal((3, 12)).astype(np.float32)
    big = idx.search(q * np.float32(1e19), 5)
    assert (big.scores > 0.3).all()  # not the all-zero scores of a "zero" query
    np.testing.assert_array_equal(big.ids, idx.search(q, 5).ids)
    stored = ItemIndex(12, storage=storage)
    stored.add(np.full((1, 12), 1e20, np.float32))  # a huge row is stored normalized, not as 0
    np.testing.assert_allclose(stored.get(0), np.full(12, 12**-0.5), rtol=1e-6)


# -- mutation during search ---------------------------------------------------------------------


def _vector(i: int, d: int) -> np.ndarray:
    """The vector of id i: the same in every state of the index."""
    return np.random.default_rng(int(i)).standard_normal(d).astype(np.float32)


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("mapped", [False, True])
def test_writers_and_readers_see_consistent_snapshots(tmp_path, storage, mapped):
    d, n0 = 16, 3000
    idx = ItemIndex(d, metric="dot", storage=storage)
    idx.add(np.stack([_vector(i, d) for i in range(n0)]), ids=np.arange(n0))
    if mapped:
        idx.save(tmp_path / "i.rfi")
        idx = ItemIndex.load(tmp_path / "i.rfi", mmap=True)
    rng = np.random.default_rng(0)
    queries = [rng.standard_normal((b, d)).astype(np.float32) for b in (1, 4, 12, 20)]
    errors: list[BaseException] = []
    done = threading.Event()

    def reader(seed: int) -> None:
        r = np.random.default_rng(seed)
        try:
            while not done.is_set():
                q = queries[r.integers(len(queries))]
                res = idx.search(q, 8)
                for row in range(q.shape[0]):
                    got = res.ids[row][res.ids[row] >= 0]
                    assert len(got) == 8
                    want = np.array([q[row].astype(np.float64) @ _vector(i, d) for i in got])
                    np.testing.assert_allclose(
                        res.scores[row][: len(got)], want, rtol=1e-4, atol=1e-4
                    )
                some = r.choice(n0, 3, replace=False)  # writers never remove these
                np.testing.assert_array_equal(
                    idx.get(some), np.stack([_vector(i, d) for i in some])
                )
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            done.set()

    def writer(seed: int) -> None:
        r = np.random.default_rng(seed)
        mine: list[int] = []
        try:
            for step in range(40):
                if step % 2 == 0:
                    first = 10**6 * (seed + 1) + step * 50
                    new = np.arange(first, first + 50)
                    idx.add(np.stack([_vector(i, d) for i in new]), ids=new)
                    mine.extend(new.tolist())
                else:
                    gone = r.choice(len(mine), 40, replace=False)
                    idx.remove(np.asarray(mine)[gone])
                    mine = [v for j, v in enumerate(mine) if j not in set(gone.tolist())]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            done.set()

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    threads += [threading.Thread(target=writer, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, repr(errors[0])
    assert len(idx) == n0 + 2 * (20 * 50 - 20 * 40)


# -- small holes --------------------------------------------------------------------------------


def test_include_empty_pads_on_every_storage():
    x = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    for storage in STORAGES:
        res = _index(x, "cosine", storage).search(x[:2], 3, include=[])
        assert (res.ids == -1).all() and np.isneginf(res.scores).all()


def test_default_ids_past_int64_max_is_a_value_error():
    idx = ItemIndex(2, metric="dot")
    idx.add(np.ones((1, 2), np.float32), ids=[np.iinfo(np.int64).max])
    with pytest.raises(ValueError, match="int64"):
        idx.add(np.ones((1, 2), np.float32))
    assert len(idx) == 1


def test_load_refuses_fifo_and_folder(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result: list[BaseException] = []
    t = threading.Thread(target=lambda: result.append(_raises(ItemIndex.load, fifo)), daemon=True)
    t.start()
    t.join(30)  # a guard against a hang, not a speed check: loading a FIFO used to block
    assert not t.is_alive(), "ItemIndex.load blocked on a FIFO"
    assert isinstance(result[0], ValueError) and "regular file" in str(result[0])
    with pytest.raises(ValueError, match="directory"):
        ItemIndex.load(tmp_path)


def _raises(fn, *args):
    try:
        fn(*args)
    except BaseException as e:  # noqa: BLE001
        return e
    return None


def _write_with_header(path, header_blob: bytes, payload: bytes = b"") -> None:
    pre = struct.pack(
        "<8sIII4x", FORMAT_MAGIC, FORMAT_VERSION, len(header_blob), zlib.crc32(header_blob)
    )
    with open(path, "wb") as f:
        f.write(pre + header_blob + payload)


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 100000 + b"]" * 100000,  # nesting beyond the JSON parser's recursion limit
        json.dumps(
            {
                "format": "recfast.ItemIndex",
                "version": 1,
                "metric": "dot",
                "dim": 2,
                "count": 1,
                "storage": "float32",
                "align": 64,
                "data_end": 0,
                "sections": [{"name": "ids", "dtype": "<i8", "shape": 5}],
            }
        ).encode(),
        json.dumps(
            {
                "format": "recfast.ItemIndex",
                "version": 1,
                "metric": "dot",
                "dim": True,
                "count": 1,
                "storage": "float32",
                "align": 64,
            }
        ).encode(),
        json.dumps(
            {
                "format": "recfast.ItemIndex",
                "version": 1,
                "metric": "dot",
                "dim": 2,
                "count": 1,
                "storage": "float32",
                "align": 64,
                "data_end": 0,
                "sections": [
                    {
                        "name": "ids",
                        "dtype": "<i8",
                        "shape": [1],
                        "offset": "x",
                        "nbytes": 8,
                        "crc32": 0,
                    },
                    3,
                    None,
                ],
            }
        ).encode(),
        json.dumps(["not", "an", "object"]).encode(),
    ],
)
def test_crafted_header_with_valid_checksum_is_a_value_error(tmp_path, header):
    path = tmp_path / "bad.rfi"
    _write_with_header(path, header)
    with pytest.raises(ValueError, match="bad.rfi"):
        ItemIndex.load(path)


def test_save_to_a_folder_names_it(tmp_path):
    idx = _index(np.ones((2, 3), np.float32), "dot", "float32")
    with pytest.raises(ValueError, match=str(tmp_path)):
        idx.save(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        idx.save(tmp_path / "missing" / "a.rfi")


_KILLED_WRITER = r"""
import sys, time
from recfast._io import atomic_write
def write(f):
    f.write(b"x" * 4096); f.flush()
    print("writing", flush=True)
    time.sleep(600)
atomic_write(sys.argv[1], write)
"""


def test_killed_save_leaves_no_stale_temp_after_the_next_save(tmp_path):
    target = tmp_path / "a.rfi"
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout.readline().strip() == "writing"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(".a.rfi.") and not target.exists()
    # a live writer's temp file is left alone (this process is alive)
    live = tmp_path / f".a.rfi.{os.getpid()}.abc.recfast-tmp"
    live.write_bytes(b"")
    idx = _index(np.ones((2, 3), np.float32), "dot", "float32")
    idx.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.rfi", live.name])
    assert len(ItemIndex.load(target)) == 2


def test_huge_k_with_few_items_is_refused_naming_k():
    for storage in STORAGES:
        idx = _index(np.ones((5, 3), np.float32), "dot", storage)
        with pytest.raises(ValueError, match="k = "):
            idx.search(np.ones((4, 3), np.float32), 10**12)


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_similar_equals_a_search_that_excludes_the_item(storage, metric):
    """similar(ids) is exactly search(vectors of ids, exclude=each item itself), and equivalent
    to the reference's search over the stored rows without the item."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((700, 9)).astype(np.float32)
    x[5] = x[6]  # an exact duplicate: it must be returned first for item 5, item 5 never
    idx = ItemIndex(9, metric=metric, storage=storage)
    ids = rng.choice(10**9, 700, replace=False)
    idx.add(x, ids=ids)
    some = idx.ids[[5, 6, 100, 699]]
    sim = idx.similar(some, 8)
    want = idx.search(idx.get(some), 8, exclude=[[i] for i in some])
    _same(sim, want)
    vec = idx.get(idx.ids)
    pos = np.searchsorted(idx.ids, some)
    ref = reference.topk(vec[pos], vec, 8, metric=metric, exclude=[[p] for p in pos])
    got = recfast.TopK(sim.scores, np.searchsorted(idx.ids, sim.ids))
    assert_topk_equivalent(got, ref, vec[pos], vec, metric, 8, exclude=[[p] for p in pos])
    assert not (sim.ids == some[:, None]).any()
