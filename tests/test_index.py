"""ItemIndex: exactness of compressed search against the float32 search and the reference, ids,
filters, persistence (format errors, memory mapping), threads."""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib

import numpy as np
import pytest
import scipy.sparse as sp

import recfast
from recfast import _core, reference
from recfast.index import FORMAT_VERSION, ItemIndex

from helpers import assert_topk_equivalent

STORAGES = ("float32", "float16", "int8")
METRICS = ("cosine", "dot")
# The compressed-scan kernel sets this build and CPU can run: one per SIMD level, "avx512_vnni"
# on CPUs with AVX512_VNNI, and "avx512_vnni_emulated" (the VNNI kernel source compiled over
# SIMDe, which runs anywhere) in builds with RECFAST_SIMDE_TEST=ON.
KERNELS = _core._quant_kernels()
_KERNEL_LEVEL = {"generic": "generic", "avx2": "avx2", "avx512": "avx512", "avx512_vnni": "avx512"}
EMULATED = "avx512_vnni_emulated"


@pytest.fixture(params=KERNELS)
def level(request):
    """Run the test with one kernel set (at its SIMD level; the emulated one at this machine's)."""
    before = _core.simd_level()
    _core.set_simd_level(_KERNEL_LEVEL.get(request.param, before))
    _core._set_quant_kernel(request.param)
    assert _core.quant_kernel() == request.param
    try:
        yield request.param
    finally:
        _core._set_quant_kernel("")
        _core.set_simd_level(before)


def assert_same(res, ref):
    """Identical ids and bit-identical scores."""
    np.testing.assert_array_equal(res.ids, ref.ids)
    np.testing.assert_array_equal(res.scores.view(np.uint32), ref.scores.view(np.uint32))


def float32_answer(index, queries, k, **kw):
    """recfast.topk on the index's float32 vectors, mapped to external ids."""
    vec = index.get(index.ids)
    res = recfast.topk(queries, vec, k, metric=index.metric, **kw)
    ids = np.where(res.ids >= 0, index.ids[np.maximum(res.ids, 0)], -1)
    return recfast.TopK(res.scores, ids)


def assert_exact(index, queries, k, res, exclude=None):
    """The documented promise of every storage: bit for bit `recfast.topk` on the stored float32
    rows, and (an independent oracle) equivalent to the NumPy reference up to float32 near-ties,
    checked by the shared tie-aware helper in float64."""
    assert_same(res, float32_answer(index, queries, k, exclude=exclude))
    vec = index.get(index.ids)
    ref = reference.topk(queries, vec, k, metric=index.metric, exclude=exclude)
    pos = np.where(res.ids >= 0, np.searchsorted(index.ids, res.ids), -1)
    assert_topk_equivalent(
        recfast.TopK(res.scores, pos), ref, queries, vec, index.metric, k, exclude=exclude
    )


def check_against_reference(index, queries, k, res):
    """ids equal the NumPy reference's up to float32 near-ties at the k-th place."""
    vec = index.get(index.ids)
    ref = reference.topk(queries, vec, k, metric=index.metric)
    ref_ids = np.where(ref.ids >= 0, index.ids[np.maximum(ref.ids, 0)], -1)
    q2 = np.atleast_2d(queries).astype(np.float64)
    v64 = vec.astype(np.float64)
    tol = (
        1e-6 * index.dim * (np.linalg.norm(q2, axis=1)[:, None] * np.linalg.norm(v64, axis=1).max())
    )
    if index.metric == "cosine":
        tol = np.full_like(tol, 1e-6 * index.dim)
    for r in range(q2.shape[0]):
        a, b = np.atleast_2d(res.ids)[r], np.atleast_2d(ref_ids)[r]
        if np.array_equal(a, b):
            continue
        sa = np.atleast_2d(res.scores)[r].astype(np.float64)
        sb = np.atleast_2d(ref.scores)[r].astype(np.float64)
        assert np.all(np.abs(sa - sb) <= tol[r, 0]), (r, a, b)


def make_index(x, metric, storage, ids=None):
    idx = ItemIndex(x.shape[1], metric=metric, storage=storage)
    idx.add(x, ids=ids)
    return idx


# -- exactness ------------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("d", [3, 17, 64])
def test_random_matches_float32_search(level, storage, metric, d):
    rng = np.random.default_rng(d)
    x = rng.standard_normal((3000, d)).astype(np.float32)
    ids = np.sort(rng.choice(10**9, size=len(x), replace=False))[::-1].copy()  # unsorted input
    idx = make_index(x, metric, storage, ids=ids)
    # 8|9: the quantized scans' direct/packed line; 40: a remainder; 1-5, 8|9 and 16|17 the
    # float16 broadcast kernels' switches (4, 2 or 1 lanes a query, by vector width)
    for b in (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 40, 100):
        q = rng.standard_normal((b, d)).astype(np.float32)
        for k in (1, 10):
            res = idx.search(q, k)
            assert_exact(idx, q, k, res)
            check_against_reference(idx, q, k, res)


@pytest.mark.parametrize("storage", ["int8", "float16"])
def test_one_dimensional_query_and_num_threads(storage):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5000, 32)).astype(np.float32)
    idx = make_index(x, "cosine", storage)
    q = rng.standard_normal(32).astype(np.float32)
    res = idx.search(q, 5)
    assert res.ids.shape == (5,) and res.scores.shape == (5,)
    assert_exact(idx, q, 5, res)
    for t in (1, 2, 3):
        assert_same(idx.search(q, 5, num_threads=t), res)


@pytest.mark.parametrize("storage", ["int8", "float16"])
@pytest.mark.parametrize("metric", METRICS)
def test_tight_clusters(level, storage, metric):
    """1,000 tight Gaussian clusters: many items within the quantization error of each other."""
    rng = np.random.default_rng(2)
    d, per = 32, 12
    centers = rng.standard_normal((1000, d)).astype(np.float32)
    x = (np.repeat(centers, per, 0) + 1e-3 * rng.standard_normal((1000 * per, d))).astype(
        np.float32
    )
    idx = make_index(x, metric, storage)
    q = (centers[rng.integers(0, 1000, 40)] + 1e-3 * rng.standard_normal((40, d))).astype(
        np.float32
    )
    for b in (1, 5, 40):
        res, stats = idx.search(q[:b], 10, return_stats=True)
        assert_exact(idx, q[:b], 10, res)
        assert stats["candidates"] >= 10 * b


@pytest.mark.parametrize("storage", ["int8", "float16"])
def test_near_ties_at_kth_place(level, storage):
    """Many items whose scores differ by a few ulps around the k-th place, and exact ties."""
    rng = np.random.default_rng(3)
    d = 48
    base = rng.standard_normal(d).astype(np.float32)
    near = base + rng.standard_normal((300, d)).astype(np.float32) * np.float32(1e-6)
    dup = np.repeat(base[None], 50, 0)
    other = rng.standard_normal((4000, d)).astype(np.float32)
    x = np.concatenate([other[:2000], near, dup, other[2000:]])
    for metric in METRICS:
        idx = make_index(x, metric, storage)
        q = np.stack([base, base * 3, -base + 1e-3]).astype(np.float32)
        for k in (10, 100, 400):
            assert_exact(idx, q, k, idx.search(q, k))
        q9 = np.repeat(q, 3, 0)
        assert_exact(idx, q9, 60, idx.search(q9, 60))


@pytest.mark.parametrize("storage", ["int8", "float16"])
@pytest.mark.parametrize("scale", [1e-20, 1e6, 1e15])
def test_large_and_small_norms_dot(level, storage, scale):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4000, 24)).astype(np.float32)
    x *= rng.uniform(0.01, 10.0, (len(x), 1)).astype(np.float32)
    x = (x * np.float32(scale)).astype(np.float32)
    idx = make_index(x, "dot", storage)
    q = rng.standard_normal((12, 24)).astype(np.float32)
    for b in (1, 12):
        assert_exact(idx, q[:b], 10, idx.search(q[:b], 10))


def test_zero_query_and_zero_items():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    x[::7] = 0
    for storage in STORAGES:
        for metric in METRICS:
            idx = make_index(x, metric, storage)
            q = rng.standard_normal((10, 8)).astype(np.float32)
            q[3] = 0
            assert_exact(idx, q, 7, idx.search(q, 7))


def test_exact_false_is_close():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((20000, 64)).astype(np.float32)
    q = rng.standard_normal((20, 64)).astype(np.float32)
    for storage in ("int8", "float16"):
        idx = make_index(x, "cosine", storage)
        approx = idx.search(q, 10, exact=False)
        exact = idx.search(q, 10)
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx.ids, exact.ids)])
        assert overlap >= 0.8
        assert np.max(np.abs(approx.scores - exact.scores)) < 0.05


# -- int8: the integer kernels (quantized queries, exact int32 dot products) ----------------------

INT8_DIMS = [1, 3, 4, 17, 31, 32, 33, 97, 128, 130]  # tails of 32 and of 4 codes
# Every switch between int8 kernels: one query's rows; the VNNI broadcast kernels for 2-3, 4-7 and
# 8-15 queries (steps of 16, 8 and 4 codes: the dims above have tails of each); the direct path
# up to 8 queries, the packed one past it (its narrow kernel up to 16, groups of 32).
INT8_BATCHES = (1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 33, 200)


def int8_prepared(idx, q):
    """The queries as the scan sees them (cosine: unit norm), in float64."""
    qp = np.atleast_2d(np.asarray(q, np.float32)).astype(np.float64)
    if idx.metric == "cosine":
        qp = (qp / np.linalg.norm(qp, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)
    return qp


def check_int8_approx(idx, q, k):
    """exact=False: the scores are the compressed scores T' = scale * (q' . codes) of the items
    that passed the integer bound (up to float32 rounding of the dot product), and lie within the
    float radius |q'| (err + c (norm + err)) of the true scores (quant.h)."""
    res = idx.search(q, k, exact=False)
    a = idx._snap.arrays
    qp = int8_prepared(idx, q)
    vec = idx.get(idx.ids).astype(np.float64)
    c = (4 * idx.dim + 64) * 2.0**-24
    for r in range(qp.shape[0]):
        ids = np.atleast_2d(res.ids)[r]
        sc = np.atleast_2d(res.scores)[r].astype(np.float64)
        pos = np.searchsorted(idx.ids, ids[ids >= 0])
        sc = sc[ids >= 0]
        codes = a["codes"][pos].astype(np.float64)
        scale = a["scale"][pos].astype(np.float64)
        model = (codes @ qp[r]) * scale
        rounding = (idx.dim + 2) * 2.0**-24 * (np.abs(codes) @ np.abs(qp[r])) * scale
        assert np.all(np.abs(sc - model) <= rounding + 1e-30)
        qn = np.linalg.norm(qp[r])
        err, norm = a["err"][pos].astype(np.float64), a["norm"][pos].astype(np.float64)
        rad = qn * (err + c * (norm + err)) + 1e-30
        assert np.all(np.abs(sc - vec[pos] @ qp[r]) <= rad)
        assert np.all(np.diff(sc) <= 0)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("d", INT8_DIMS)
def test_int8_matches_float32_dims_batches(level, metric, d):
    rng = np.random.default_rng(100 + d)
    x = rng.standard_normal((1200, d)).astype(np.float32)
    scales = (1.0, 1e3, 1e-3) if metric == "dot" else (1.0,)
    for scale in scales:
        idx = make_index((x * np.float32(scale)).astype(np.float32), metric, "int8")
        q = (rng.standard_normal((max(INT8_BATCHES), d)) * scale).astype(np.float32)
        for b in INT8_BATCHES:
            for k in (1, 10, 100):
                assert_exact(idx, q[:b], k, idx.search(q[:b], k))
        for b in (1, 9, 33):
            check_int8_approx(idx, q[:b], 10)


@pytest.mark.parametrize("d", [32, 33, 128, 130])
def test_int8_saturation_adversary(level, d):
    """Codes all +-127 and query codes all +-63 with signs that make every product of a pair
    the same sign: the pair sums of vpmaddubsw reach their maximum (a saturating or 8-bit-query
    kernel gets these scores wrong)."""
    rng = np.random.default_rng(d)
    alt = np.where(np.arange(d) % 2 == 0, 1.0, -1.0)
    blocks = np.where((np.arange(d) // 4) % 2 == 0, 1.0, -1.0)
    pats = [np.ones(d), -np.ones(d), alt, -alt, blocks, -blocks]
    rand = np.where(rng.random((300, d)) < 0.5, 1.0, -1.0)
    x = np.concatenate([np.repeat(np.array(pats), 5, 0), rand]).astype(np.float32)
    x[::7] *= np.float32(3.0)  # a few scales
    q = np.concatenate([np.array(pats), rand[:27]]).astype(np.float32)  # 33 queries
    for metric in METRICS:
        idx = make_index(x, metric, "int8")
        assert (np.abs(idx._snap.arrays["codes"]) == 127).all()
        for b in (1, 2, 4, 8, 9, 33):
            for k in (1, 10, len(x)):
                assert_exact(idx, q[:b], k, idx.search(q[:b], k))
        for b in (1, 4, 8, 9, 33):
            check_int8_approx(idx, q[:b], 10)


@pytest.mark.parametrize("metric", METRICS)
def test_int8_approx_scores_within_radius(level, metric):
    """exact=False returns compressed scores within the documented radius of the true ones."""
    rng = np.random.default_rng(21)
    d = 97
    x = (rng.standard_normal((5000, d)) * rng.uniform(0.1, 10, (5000, 1))).astype(np.float32)
    idx = make_index(x, metric, "int8")
    for b in (1, 8, 40):
        q = (rng.standard_normal((b, d)) * 5).astype(np.float32)
        check_int8_approx(idx, q, 50)
        approx, exact = idx.search(q, 50, exact=False), idx.search(q, 50)
        assert not np.array_equal(approx.scores, exact.scores)  # not the re-scored ones


@pytest.mark.parametrize("d", [63, 64, 65, 127, 191, 193])
def test_int8_tails_of_64(level, d):
    """The VNNI kernels step 64 codes at a time (direct path: a masked load for the rest) and 4
    on the packed path: dims around multiples of 64, with 8-bit query codes at full scale."""
    rng = np.random.default_rng(300 + d)
    x = rng.standard_normal((700, d)).astype(np.float32)
    x[::5] = np.sign(x[::5])  # codes all +-127
    q = rng.standard_normal((40, d)).astype(np.float32)
    q[::3] = np.sign(q[::3])  # query codes all +-Q
    for metric in METRICS:
        idx = make_index(x, metric, "int8")
        for b in (1, 3, 8, 9, 17, 40):
            for k in (1, 10):
                assert_exact(idx, q[:b], k, idx.search(q[:b], k))
        check_int8_approx(idx, q[:9], 10)


def test_int8_max_dim_integer_path(level):
    """dim = 65536, the largest on the integer scans, with every product at its largest: the
    int32 sums reach 255 * 127 * dim on the VNNI kernels (8-bit queries, offset items)."""
    d = 65536
    rng = np.random.default_rng(23)
    x = np.where(rng.random((24, d)) < 0.5, 1.0, -1.0).astype(np.float32)
    x[:4] = 1.0
    x[4:8] = -1.0
    q = np.concatenate([np.ones((1, d)), -np.ones((1, d)), x[8:17]]).astype(np.float32)
    for metric in METRICS:
        idx = make_index(x, metric, "int8")
        for b in (1, 2, 11):
            assert_exact(idx, q[:b], 6, idx.search(q[:b], 6))


def test_quant_kernel_choice():
    """The kernel set follows the SIMD level; VNNI only where the CPU has it; forcing a set that
    is not built or not runnable here is refused."""
    before = _core.simd_level()
    try:
        for lv in ("generic", "avx2", "avx512"):
            if lv not in KERNELS:
                continue
            _core.set_simd_level(lv)
            want = "avx512_vnni" if lv == "avx512" and "avx512_vnni" in KERNELS else lv
            assert _core.quant_kernel() == want
    finally:
        _core.set_simd_level(before)
    assert KERNELS[0] == "generic"
    if "avx512_vnni" in KERNELS:
        assert "avx512" in KERNELS
    for name in ("avx512_vnni", "avx512", "no_such_kernel"):
        if name not in KERNELS:
            with pytest.raises(ValueError, match="not built or not runnable"):
                _core._set_quant_kernel(name)
    assert _core.quant_kernel() in KERNELS


@pytest.mark.skipif(EMULATED not in KERNELS, reason="built without RECFAST_SIMDE_TEST=ON")
def test_emulated_vnni_kernel_is_selectable():
    """The SIMDe build of the VNNI kernels is only used when forced."""
    assert _core.quant_kernel() != EMULATED
    _core._set_quant_kernel(EMULATED)
    try:
        assert _core.quant_kernel() == EMULATED
    finally:
        _core._set_quant_kernel("")
    assert _core.quant_kernel() != EMULATED


def test_int8_large_dim_float_path():
    """Beyond 65536 dims int8 falls back to the float32 scan; still exact."""
    rng = np.random.default_rng(22)
    d = 65537
    x = rng.standard_normal((40, d)).astype(np.float32)
    idx = make_index(x, "dot", "int8")
    q = rng.standard_normal((10, d)).astype(np.float32)
    for b in (1, 10):
        assert_exact(idx, q[:b], 5, idx.search(q[:b], 5))


# -- ids, filters, mutation -----------------------------------------------------------------------


@pytest.mark.parametrize("storage", STORAGES)
def test_exclude_include_similar(storage):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    ids = rng.choice(10**12, size=len(x), replace=False).astype(np.int64)
    idx = make_index(x, "cosine", storage, ids=ids)
    q = rng.standard_normal((12, 16)).astype(np.float32)
    full = idx.search(q, 20)
    excl = [full.ids[r][::2] for r in range(12)]
    res = idx.search(q, 10, exclude=excl)
    pos_excl = [np.searchsorted(idx.ids, e) for e in excl]
    assert_exact(idx, q, 10, res, exclude=pos_excl)
    for r in range(12):
        assert not set(res.ids[r]) & set(excl[r])
    # a CSR over positions gives the same
    csr = sp.csr_array(
        (
            np.ones(sum(map(len, pos_excl))),
            np.concatenate([np.sort(p) for p in pos_excl]),
            np.concatenate([[0], np.cumsum(list(map(len, pos_excl)))]),
        ),
        shape=(12, len(idx)),
    )
    assert_same(idx.search(q, 10, exclude=csr), res)
    # include: a global allow-list (unknown ids ignored), padding when too few
    allow = np.concatenate([idx.ids[rng.choice(len(idx), 5, replace=False)], [-5, 17]])
    inc = idx.search(q, 8, include=allow)
    assert set(inc.ids[:, :5].ravel()) <= set(allow)
    assert (inc.ids[:, 5:] == -1).all() and np.isneginf(inc.scores[:, 5:]).all()
    big = idx.ids[rng.choice(len(idx), 1500, replace=False)]
    inc = idx.search(q, 10, include=big)
    keep = np.sort(np.searchsorted(idx.ids, big))
    ref = recfast.topk(q, idx.get(idx.ids)[keep], 10)
    np.testing.assert_array_equal(inc.ids, idx.ids[keep[ref.ids]])
    np.testing.assert_array_equal(inc.scores, ref.scores)
    # similar never returns the item itself, even with exact duplicates around
    sim = idx.similar(idx.ids[:30], 5)
    for r in range(30):
        assert idx.ids[r] not in sim.ids[r]
    one = idx.similar(int(idx.ids[3]), 4)
    assert one.ids.shape == (4,) and idx.ids[3] not in one.ids


def test_add_remove_get_validation():
    rng = np.random.default_rng(8)
    idx = ItemIndex(4, metric="dot", storage="int8")
    x = rng.standard_normal((10, 4)).astype(np.float32)
    idx.add(x, ids=np.arange(100, 110))
    idx.add(x[:3])  # default ids continue after the largest
    assert list(idx.ids[-3:]) == [110, 111, 112]
    before = (idx.ids.copy(), idx.get(idx.ids).copy())
    bad = [
        (x[:2], [1, 1]),
        (x[:2], [105, 1]),
        (rng.standard_normal((2, 5)).astype(np.float32), None),
        (np.array([[1, np.nan, 0, 0]], np.float32), None),
        (np.array([[1, np.inf, 0, 0]], np.float32), None),
        (x[:2], [1, 2, 3]),
    ]
    for vec, ids in bad:
        with pytest.raises(ValueError):
            idx.add(vec, ids=ids)
    np.testing.assert_array_equal(idx.ids, before[0])
    np.testing.assert_array_equal(idx.get(idx.ids), before[1])
    np.testing.assert_array_equal(idx.get(103), x[3])
    with pytest.raises(ValueError):
        idx.remove([100, 999])
    assert len(idx) == 13
    idx.remove([100, 111])
    assert len(idx) == 11 and 100 not in idx.ids
    with pytest.raises(ValueError):
        idx.get([100])
    res = idx.search(x[0], 20)
    assert 100 not in res.ids and (res.ids[11:] == -1).all()
    cos = ItemIndex(4)
    cos.add(x)
    np.testing.assert_allclose(np.linalg.norm(cos.get(cos.ids), axis=1), 1, rtol=1e-6)
    with pytest.raises(ValueError):
        cos.search(np.full(4, np.nan, np.float32), 3)
    with pytest.raises(ValueError):
        cos.search(np.ones(5, np.float32), 3)
    with pytest.raises(ValueError):
        ItemIndex(4, storage="int4")
    empty = ItemIndex(3, storage="float16")
    r = empty.search(np.ones(3, np.float32), 2)
    assert list(r.ids) == [-1, -1]


# -- persistence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_roundtrip(tmp_path, storage, mmap):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2000, 24)).astype(np.float32)
    idx = make_index(x, "cosine", storage, ids=rng.permutation(5000)[:2000])
    path = tmp_path / "a.rfi"
    idx.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["a.rfi"]  # no temp file left
    with open(path, "rb") as f:
        assert f.read(8) == b"RECFIDX\x00"
    loaded = ItemIndex.load(path, mmap=mmap)
    assert (loaded.dim, loaded.metric, loaded.storage, len(loaded)) == (24, "cosine", storage, 2000)
    q = rng.standard_normal((20, 24)).astype(np.float32)
    assert_same(loaded.search(q, 10), idx.search(q, 10))
    assert_same(loaded.similar(idx.ids[:5], 3), idx.similar(idx.ids[:5], 3))
    loaded.add(rng.standard_normal((3, 24)).astype(np.float32))  # copies a mapped index
    loaded.save(path)
    again = ItemIndex.load(path, mmap=mmap)
    assert len(again) == 2003


def _sections(path):
    with open(path, "rb") as f:
        pre = f.read(24)
        hlen = struct.unpack("<I", pre[12:16])[0]
        return json.loads(f.read(hlen))["sections"]


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _corrupt(src, dst, *, flip=None, size=None, patch=None):
    data = bytearray(_read(src))
    if flip is not None:
        data[flip] ^= 0x10
    if patch is not None:
        off, raw = patch
        data[off : off + len(raw)] = raw
    if size is not None:
        data = data[:size]
    with open(dst, "wb") as f:
        f.write(bytes(data))


def _use_everything(index):
    q = np.ones((3, index.dim), np.float32)
    index.search(q, 5)
    index.get(index.ids)


@pytest.mark.parametrize("storage", STORAGES)
def test_every_section_flipped_or_truncated(tmp_path, storage):
    rng = np.random.default_rng(10)
    idx = make_index(rng.standard_normal((300, 16)).astype(np.float32), "dot", storage)
    good = tmp_path / "good.rfi"
    idx.save(good)
    bad = tmp_path / "bad.rfi"
    for s in _sections(good):
        # flipped byte: named by verify=True at load; with lazy checks, at first use
        _corrupt(good, bad, flip=s["offset"] + s["nbytes"] // 2)
        with pytest.raises(ValueError, match=s["name"]):
            ItemIndex.load(bad, mmap=False)
        with pytest.raises(ValueError, match=s["name"]):
            ItemIndex.load(bad, mmap=True, verify=True)
        with pytest.raises(ValueError, match=s["name"]):
            _use_everything(ItemIndex.load(bad, mmap=True))
        # truncated inside the section
        _corrupt(good, bad, size=s["offset"] + s["nbytes"] // 2)
        for mm in (True, False):
            with pytest.raises(ValueError, match="truncated"):
                ItemIndex.load(bad, mmap=mm)
    size = os.path.getsize(good)
    cases = [
        (dict(size=0), "truncated|magic"),
        (dict(size=10), "truncated"),
        (dict(size=30), "truncated"),
        (dict(flip=2), "not a recfast index"),
        (dict(patch=(8, struct.pack("<I", FORMAT_VERSION + 1))), "unsupported format version 2"),
        (dict(flip=40), "header checksum"),
        (dict(flip=17), "header checksum|corrupted preamble"),
        (dict(size=size - 1), "truncated"),
    ]
    for kw, msg in cases:
        _corrupt(good, bad, **kw)
        with pytest.raises(ValueError, match=msg):
            ItemIndex.load(bad)
    with open(bad, "wb") as f:
        f.write(_read(good) + b"\0" * 64)
    with pytest.raises(ValueError, match="unexpected bytes"):
        ItemIndex.load(bad)
    foreign = tmp_path / "foreign.npy"
    np.save(foreign, np.zeros(10))
    with pytest.raises(ValueError, match="not a recfast index"):
        ItemIndex.load(foreign)
    # a consistent header with a wrong section table is refused too
    data = _read(good)
    hlen = struct.unpack("<I", data[12:16])[0]
    header = json.loads(data[24 : 24 + hlen])
    header["sections"][1]["shape"] = [1, 1]
    blob = json.dumps(header).encode()
    with open(bad, "wb") as f:
        f.write(b"RECFIDX\x00" + struct.pack("<III4x", FORMAT_VERSION, len(blob), zlib.crc32(blob)))
        f.write(blob)
    with pytest.raises(ValueError, match="invalid header"):
        ItemIndex.load(bad)


def test_corrupt_row_outside_survivors_is_never_used(tmp_path):
    """A flipped float32 row of a mapped compressed index: reading it raises; a search whose
    survivors avoid it returns the correct answer."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    idx = make_index(x, "cosine", "int8")
    path = tmp_path / "i.rfi"
    idx.save(path)
    vec = [s for s in _sections(path) if s["name"] == "vectors"][0]
    row = 1234
    _corrupt(path, path, flip=vec["offset"] + row * 16 * 4 + 5)
    loaded = ItemIndex.load(path, mmap=True)
    q = -idx.get(idx.ids[row])[None]  # far from the corrupted row
    assert_same(loaded.search(q, 5), idx.search(q, 5))
    with pytest.raises(ValueError, match="vectors"):
        loaded.search(idx.get(idx.ids[row]), 5)
    with pytest.raises(ValueError, match="vectors"):
        loaded.get(idx.ids[row])


def test_concurrent_searches_on_loaded_index(tmp_path):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((20000, 32)).astype(np.float32)
    idx = make_index(x, "cosine", "int8")
    path = tmp_path / "c.rfi"
    idx.save(path)
    loaded = ItemIndex.load(path, mmap=True)
    qs = [rng.standard_normal((b, 32)).astype(np.float32) for b in (1, 3, 16, 40) * 3]
    expect = [idx.search(q, 10) for q in qs]
    errors = []

    def worker(i):
        try:
            for _ in range(3):
                assert_same(loaded.search(qs[i], 10, num_threads=2), expect[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(qs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def _mapped_rss(path):
    """Resident bytes of this process's mappings of `path`, by file offset of the mapping."""
    out, cur = [], None
    real = os.path.realpath(path)
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):  # a mapping's header
                cur = int(parts[2], 16) if len(parts) >= 6 and parts[5] == real else None
            elif cur is not None and parts[0] == "Rss:":
                out.append((cur, int(parts[1]) * 1024))
    return out


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc")
def test_mmap_search_reads_only_codes_and_survivor_rows(tmp_path):
    rng = np.random.default_rng(13)
    n, d = 60000, 64
    idx = make_index(rng.standard_normal((n, d)).astype(np.float32), "cosine", "int8")
    path = tmp_path / "m.rfi"
    idx.save(path)
    del idx
    loaded = ItemIndex.load(path, mmap=True)
    secs = {s["name"]: s for s in _sections(path)}
    res = loaded.search(rng.standard_normal((4, d)).astype(np.float32), 10)
    assert (res.ids >= 0).all()
    rss = _mapped_rss(path)
    vec = secs["vectors"]
    in_vectors = sum(
        r for off, r in rss if vec["offset"] - 4096 <= off < vec["offset"] + vec["nbytes"]
    )
    total = sum(r for _, r in rss)
    assert in_vectors < 0.05 * vec["nbytes"], (in_vectors, vec["nbytes"])
    assert total < 0.5 * os.path.getsize(path)
