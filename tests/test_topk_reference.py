"""Native recfast.topk against the NumPy reference, at every SIMD level of this machine."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import recfast
from recfast import reference

from helpers import assert_topk_equivalent, random_data

METRICS = ["cosine", "dot"]


def check(q, x, k, metric, exclude=None, **kw):
    got = recfast.topk(q, x, k, metric=metric, exclude=exclude, **kw)
    want = reference.topk(q, x, k, metric=metric, exclude=exclude)
    assert_topk_equivalent(got, want, q, x, metric, k, exclude)
    return got, want


# --- the helper itself must reject broken results --------------------------------------------


def _broken_results(q, x, k, metric):
    """(name, broken result) pairs derived from a correct one."""
    s, i = (a.copy() for a in recfast.topk(q, x, k, metric=metric))
    out = []
    out.append(("zeros", (np.zeros_like(s), np.zeros_like(i))))
    out.append(("reversed", (s[:, ::-1].copy(), i[:, ::-1].copy())))
    # Right scores, ids shifted by one (each id paired with a wrong score).
    out.append(("ids shifted", (s, (i + 1) % x.shape[0])))
    # Right ids and order, scores rounded coarsely.
    out.append(("scores off", (np.round(s, 1).astype(np.float32), i)))
    # Drop the best item and pad: the k-th is then wrong.
    s2, i2 = s.copy(), i.copy()
    s2[:, :-1], i2[:, :-1] = s[:, 1:], i[:, 1:]
    s2[:, -1], i2[:, -1] = -np.inf, -1
    out.append(("best missing, padded", (s2, i2)))
    s3, i3 = s.copy(), i.copy()
    s3[:, 1:], i3[:, 1:] = s[:, :-1], i[:, :-1]
    s3[:, 0], i3[:, 0] = np.nan, i[:, -1]
    out.append(("NaN returned", (s3, i3)))
    s4, i4 = s.copy(), i.copy()
    i4[:, 1] = i4[:, 0]
    out.append(("repeated id", (s4, i4)))
    out.append(("wrong dtype", (s.astype(np.float64), i)))
    return out


@pytest.mark.parametrize("metric", METRICS)
def test_helper_rejects_broken_results(metric):
    q, x = random_data(0, 5, 300, 16)
    k = 10
    want = reference.topk(q, x, k, metric=metric)
    assert_topk_equivalent(recfast.topk(q, x, k, metric=metric), want, q, x, metric, k)
    for name, bad in _broken_results(q, x, k, metric):
        with pytest.raises(AssertionError):
            assert_topk_equivalent(bad, want, q, x, metric, k)
            pytest.fail(f"helper accepted a broken result: {name}")


def test_helper_rejects_wrong_tie_order():
    # Items 0..9 identical, so every query has ten exactly tied best items.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 8)).astype(np.float32) * 0.1
    x[:10] = 1.0
    q = np.ones((3, 8), np.float32)
    want = reference.topk(q, x, 5, metric="dot")
    s, i = recfast.topk(q, x, 5, metric="dot")
    assert (i == np.arange(5)).all()
    assert_topk_equivalent((s, i), want, q, x, "dot", 5)
    with pytest.raises(AssertionError, match="not sorted"):
        assert_topk_equivalent((s, i[:, ::-1].copy()), want, q, x, "dot", 5)


def test_helper_rejects_excluded_and_padding_mismatch():
    q, x = random_data(2, 2, 50, 4)
    ex = [np.array([], np.int64), np.array([3], np.int64)]
    want = reference.topk(q, x, 60, metric="dot", exclude=ex)
    got = recfast.topk(q, x, 60, metric="dot", exclude=ex)
    assert_topk_equivalent(got, want, q, x, "dot", 60, ex)
    # The unexcluded result returns id 3 for row 1 and has one padding entry fewer.
    free = recfast.topk(q, x, 60, metric="dot")
    with pytest.raises(AssertionError, match="padding|excluded"):
        assert_topk_equivalent(free, want, q, x, "dot", 60, ex)
    # Drop the exclusion check on padding: same padding, but an excluded id.
    s, i = (a.copy() for a in got)
    j = int(np.flatnonzero(i[1] >= 0)[-1])
    i[1, j] = 3
    with pytest.raises(AssertionError, match="excluded"):
        assert_topk_equivalent((s, i), want, q, x, "dot", 60, ex)


# --- shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("d", [1, 3, 17, 97, 128])
@pytest.mark.parametrize("b", [0, 1, 7, 77])
@pytest.mark.parametrize("n", [0, 1, 5, 1000, 20000])
def test_shapes(simd_level, metric, d, b, n):
    q, x = random_data(1000 * d + 10 * b + n % 7, b, n, d)
    got, _ = check(q, x, 10, metric)
    assert got.scores.shape == (b, 10)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("b", [1, 2, 3, 8, 9, 13, 16, 17, 32, 33, 48, 64, 65, 100, 128, 129, 200])
@pytest.mark.parametrize("d", [1, 17, 128])
def test_query_group_and_tile_edges(simd_level, metric, b, d):
    """Both sides of the direct/broadcast line (1 query), of the broadcast path's query-vector
    and group edges (8, 16, 32, 48 queries) and of the broadcast/packed line (128 queries),
    packed query groups of 4/6/12 with ragged last groups, several item tiles (1024 items for small d, 512 for d=128 on AVX2),
    item chunks per thread, and ragged last tiles and chunks."""
    n = 4500
    q, x = random_data(7 + b + d, b, n, d)
    check(q, x, 10, metric)
    if d == 17:
        check(q, x, 37, metric, num_threads=3)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n", [1, 5, 1000, 3000])
@pytest.mark.parametrize("b", [1, 9, 20])
def test_k(simd_level, metric, n, b):
    q, x = random_data(n + b, b, n, 17)
    for k in sorted({1, 10, n, n + 7}):
        got, _ = check(q, x, k, metric)
        if k > n:
            assert (got.ids[:, n:] == -1).all()
            assert np.isneginf(got.scores[:, n:]).all()
        if k >= n:  # every item returned once
            assert (np.sort(got.ids[:, :n], axis=1) == np.arange(n)).all()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("b", [1, 20])
def test_dtypes(simd_level, metric, dtype, b):
    q, x = random_data(3, b, 2000, 33, dtype)
    got, _ = check(q, x, 10, metric)
    assert got.scores.dtype == np.float32 and got.ids.dtype == np.int64
    # Converted inputs give exactly the result of the float32 conversion.
    same = recfast.topk(q.astype(np.float32), x.astype(np.float32), 10, metric=metric)
    np.testing.assert_array_equal(got.ids, same.ids)
    np.testing.assert_array_equal(got.scores, same.scores)


# --- exclusions ------------------------------------------------------------------------------


def _random_mask(seed, b, n, density):
    rng = np.random.default_rng(seed)
    mask = rng.random((b, n)) < density
    if b > 2:
        mask[1] = False  # an empty row
        mask[2] = True  # every item excluded
    return mask


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "fmt", ["csr", "csc", "coo", "lil", "dok", "bsr", "csr_array", "coo_array"]
)
@pytest.mark.parametrize("b", [3, 77])
def test_exclude_sparse_formats(simd_level, metric, fmt, b):
    n = 1000
    q, x = random_data(11 + b, b, n, 17)
    mask = _random_mask(b, b, n, 0.3)
    if fmt.endswith("_array"):
        ex = getattr(sp, fmt)(mask.astype(np.float32))
    else:
        ex = sp.csr_matrix(mask.astype(np.float32)).asformat(fmt)
    got, _ = check(q, x, 50, metric, exclude=ex)
    for r in range(b):
        ids = got.ids[r][got.ids[r] >= 0]
        assert not mask[r, ids].any()
        assert len(ids) == min(50, n - mask[r].sum())
    if b > 2:
        assert (got.ids[2] == -1).all() and np.isneginf(got.scores[2]).all()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("b", [1, 7, 77])
def test_exclude_sequence(simd_level, metric, b):
    n = 1000
    q, x = random_data(21 + b, b, n, 17)
    rng = np.random.default_rng(b)
    ex = []
    for r in range(b):
        m = int(rng.integers(0, 400))
        ids = rng.integers(0, n, m)  # unsorted, with duplicates
        ex.append(ids.astype([np.int64, np.int32, np.uint16, np.uint32][r % 4]))
    if b > 2:
        ex[1] = np.array([], np.int64)
        ex[2] = np.arange(n)[::-1].copy()  # everything, backwards
    got, _ = check(q, x, 50, metric, exclude=ex)
    if b > 2:
        assert (got.ids[2] == -1).all()
    # A list of Python lists works the same.
    got2 = recfast.topk(q, x, 50, metric=metric, exclude=[list(map(int, e)) for e in ex])
    np.testing.assert_array_equal(got.ids, got2.ids)
    # Matches the same exclusions given as a sparse matrix.
    rows = np.repeat(np.arange(b), [len(e) for e in ex])
    cols = np.concatenate([np.asarray(e, np.int64) for e in ex]) if b else np.empty(0, int)
    coo = sp.coo_matrix((np.ones(len(cols)), (rows, cols)), shape=(b, n))
    got3 = recfast.topk(q, x, 50, metric=metric, exclude=coo)
    np.testing.assert_array_equal(got.ids, got3.ids)
    np.testing.assert_array_equal(got.scores, got3.scores)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("b", [1, 40])
def test_exclude_everything(simd_level, metric, b):
    q, x = random_data(5, b, 3000, 8)
    full = sp.csr_matrix(np.ones((b, 3000)))
    lists = [np.arange(3000)] * b
    for ex in (full, lists):
        got, _ = check(q, x, 7, metric, exclude=ex)
        assert (got.ids == -1).all() and np.isneginf(got.scores).all()


def test_exclude_all_but_a_few_pads(simd_level):
    q, x = random_data(6, 3, 500, 8)
    ex = [np.setdiff1d(np.arange(500), keep) for keep in ([7], [3, 400], [])]
    got, _ = check(q, x, 4, "cosine", exclude=ex)
    assert (got.ids[0] == [7, -1, -1, -1]).all()
    assert sorted(got.ids[1][:2]) == [3, 400] and (got.ids[1][2:] == -1).all()
    assert (got.ids[2] == -1).all()


def test_exclude_explicit_zeros_are_not_excluded(simd_level):
    """A stored 0 in the sparse matrix is not an exclusion; stored nonzeros are."""
    q, x = random_data(8, 4, 200, 16)
    free = recfast.topk(q, x, 5, metric="dot")
    best = free.ids[:, 0]
    second = free.ids[:, 1]
    # Row r stores an explicit 0 at its best item and a 1 at its second item.
    rows = np.repeat(np.arange(4), 2)
    cols = np.stack([best, second], axis=1).ravel()
    vals = np.tile([0.0, 1.0], 4)
    for fmt in ("csr", "csc", "coo"):
        if fmt == "coo":
            ex = sp.coo_matrix((vals, (rows, cols)), shape=(4, 200))
        else:
            ex = sp.csr_matrix((vals, (rows, cols)), shape=(4, 200)).asformat(fmt)
        assert ex.nnz == 8, "the explicit zeros must be stored for this test"
        got, _ = check(q, x, 5, "dot", exclude=ex)
        np.testing.assert_array_equal(got.ids[:, 0], best)
        assert not (got.ids == second[:, None]).any()


def test_exclude_sparse_duplicates_and_unsorted(simd_level):
    q, x = random_data(9, 3, 300, 16)
    free = recfast.topk(q, x, 6, metric="cosine")
    # Unsorted, duplicated entries: the best two items of each row, each stored twice.
    rows = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    cols = np.array(
        [
            free.ids[0, 1],
            free.ids[0, 0],
            free.ids[0, 1],
            free.ids[0, 0],
            free.ids[1, 0],
            free.ids[1, 0],
            free.ids[2, 1],
            free.ids[2, 0],
            free.ids[2, 0],
        ]
    )
    coo = sp.coo_matrix((np.ones(9), (rows, cols)), shape=(3, 300))
    # CSR with unsorted, duplicated column indices stored as given (no canonicalization).
    order = np.argsort(rows, kind="stable")
    indptr = np.searchsorted(rows[order], np.arange(4))
    csr = sp.csr_matrix((np.ones(9), cols[order], indptr), shape=(3, 300))
    assert not csr.has_canonical_format
    for ex in (coo, csr, csr.tocsc()):
        got, _ = check(q, x, 6, "cosine", exclude=ex)
        np.testing.assert_array_equal(got.ids[0, :4], free.ids[0, 2:6])
        np.testing.assert_array_equal(got.ids[1, :5], free.ids[1, 1:6])
        np.testing.assert_array_equal(got.ids[2, :4], free.ids[2, 2:6])


def test_exclude_sparse_duplicates_summing_to_zero():
    """Stored duplicates that sum to 0 make a zero entry: not excluded, in every format."""
    q, x = random_data(10, 1, 100, 8)
    best = int(recfast.topk(q, x, 1, metric="dot").ids[0, 0])
    rows, cols, vals = np.array([0, 0]), np.array([best, best]), np.array([1.0, -1.0])
    coo = sp.coo_matrix((vals, (rows, cols)), shape=(1, 100))
    csr = sp.csr_matrix((vals, cols, np.array([0, 2])), shape=(1, 100))
    assert csr.toarray()[0, best] == 0
    for ex in (coo, csr):
        got, _ = check(q, x, 3, "dot", exclude=ex)
        assert got.ids[0, 0] == best


def test_exclude_single_query(simd_level):
    q, x = random_data(12, 1, 400, 16)
    q1 = q[0]
    free = recfast.topk(q1, x, 5)
    drop = free.ids[:2]
    for ex in (
        list(map(int, drop)),
        drop,
        tuple(drop),
        [drop],
        sp.csr_matrix((np.ones(2), (np.zeros(2, int), drop)), shape=(1, 400)),
    ):
        got, _ = check(q1, x, 5, "cosine", exclude=ex)
        assert got.ids.shape == (5,)
        np.testing.assert_array_equal(got.ids[:3], free.ids[2:5])


# --- ties ------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("b", [1, 5, 9, 100])
def test_identical_items_lower_id_first(simd_level, metric, b):
    rng = np.random.default_rng(b)
    n, d = 5000, 16
    x = np.tile(rng.standard_normal((1, d)).astype(np.float32), (n, 1))
    q = rng.standard_normal((b, d)).astype(np.float32)
    got, _ = check(q, x, 10, metric)
    assert (got.ids == np.arange(10)).all()
    assert (got.scores == got.scores[:, :1]).all()
    # With the first items excluded, the next lowest ids come.
    ex = [np.arange(0, 20, 2)] * b
    got, _ = check(q, x, 10, metric, exclude=ex)
    assert (got.ids == np.arange(1, 20, 2)).all()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("b", [1, 12])
def test_identical_items_across_chunks(simd_level, metric, b):
    """Enough work that the items are split into per-thread chunks whose heaps are merged:
    the tie rule must hold across chunk boundaries."""
    rng = np.random.default_rng(b)
    n, d = 200_000, 64
    x = np.broadcast_to(rng.standard_normal((1, d)).astype(np.float32), (n, d))
    q = rng.standard_normal((b, d)).astype(np.float32)
    for threads in (1, 2, 8):
        got = recfast.topk(q, x, 10, metric=metric, num_threads=threads)
        assert (got.ids == np.arange(10)).all(), threads
    # Exclusions: every id below 150_000 except 120_001, spanning several chunks.
    ex = [np.setdiff1d(np.arange(150_000), [120_001])] * b
    got = recfast.topk(q, x, 4, metric=metric, exclude=ex, num_threads=8)
    assert (got.ids == [120_001, 150_000, 150_001, 150_002]).all()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("b", [1, 7, 77])
@pytest.mark.parametrize("threads", [1, 4])
def test_duplicate_items(simd_level, metric, b, threads):
    """Items drawn from 40 distinct vectors: within a group of identical vectors, an id is
    returned only if every lower id of the group is returned too."""
    rng = np.random.default_rng(100 + b)
    n, d = 8000, 24
    base = rng.standard_normal((40, d)).astype(np.float32)
    group = rng.integers(0, 40, n)
    x = base[group]
    q = rng.standard_normal((b, d)).astype(np.float32)
    k = 300
    got, _ = check(q, x, k, metric, num_threads=threads)
    for r in range(b):
        ids = got.ids[r]
        returned = np.zeros(n, bool)
        returned[ids] = True
        for g in np.unique(group[ids]):
            members = np.flatnonzero(group == g)  # increasing ids
            flags = returned[members]
            # returned members form a prefix of the group
            assert not (np.diff(flags.astype(int)) > 0).any(), (r, g)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("b", [1, 20])
def test_all_scores_equal(simd_level, metric, b):
    q, x = random_data(13, b, 5000, 16)
    zero_q = np.zeros_like(q)
    got, _ = check(zero_q, x, 25, metric)
    assert (got.scores == 0).all()
    assert (got.ids == np.arange(25)).all()


# --- zero vectors, NaN, inf ------------------------------------------------------------------


@pytest.mark.parametrize("b", [1, 3, 20])
def test_zero_vectors_cosine(simd_level, b):
    q, x = random_data(14, b, 3000, 16)
    x[::7] = 0
    q[0] = 0
    got, _ = check(q, x, 3000, "cosine")
    zero_items = np.zeros(3000, bool)
    zero_items[::7] = True
    for r in range(b):
        at_zero = zero_items[got.ids[r]]
        assert (got.scores[r][at_zero] == 0).all()
    assert (got.scores[0] == 0).all()
    assert (got.ids[0] == np.arange(3000)).all()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("b", [1, 6, 30])
@pytest.mark.parametrize("n", [50, 3000])
def test_nan_and_inf(simd_level, metric, b, n):
    rng = np.random.default_rng(b * n)
    d = 12
    q = rng.standard_normal((b, d)).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[rng.integers(0, n, n // 10), rng.integers(0, d, n // 10)] = np.nan
    x[rng.integers(0, n, n // 10), rng.integers(0, d, n // 10)] = np.inf
    x[rng.integers(0, n, n // 10), rng.integers(0, d, n // 10)] = -np.inf
    q[0, 3] = np.nan  # query 0 scores NaN against everything: all padding
    if b > 1:
        q[1, 5] = np.inf
    for k in (5, n):
        got, want = check(q, x, k, metric)
        assert (got.ids[0] == -1).all()
        assert not np.isnan(got.scores).any()


@pytest.mark.parametrize("metric", METRICS)
def test_all_items_nan(simd_level, metric):
    q, x = random_data(15, 10, 700, 5)
    x[:, 2] = np.nan
    got, _ = check(q, x, 3, metric)
    assert (got.ids == -1).all()


def test_infinite_scores_dot_tie_by_id(simd_level):
    q = np.ones((2, 4), np.float32)
    x = np.zeros((100, 4), np.float32)
    x[[5, 50, 70], 0] = np.inf
    x[[10, 20], 1] = -np.inf
    got, _ = check(q, x, 100, "dot")
    assert (got.ids[:, :3] == [5, 50, 70]).all()
    assert np.isposinf(got.scores[:, :3]).all()
    assert (got.ids[:, -2:] == [10, 20]).all()
    assert np.isneginf(got.scores[:, -2:]).all()


# Rows whose squared norm overflows float32 get the same scores on the packed and the direct
# path: the direct path once scored them inf * 0 = NaN and dropped them. (Both paths now compute
# their norms in double where float32 would overflow: see the float64-truth test below.)
def test_cosine_huge_norms_same_on_every_path(simd_level):
    x = np.full((20, 3), 1e20, np.float32)
    x[::2] *= -1
    q = np.full((40, 3), 1e20, np.float32)
    packed = recfast.topk(q, x, 3)
    direct = recfast.topk(q[:1], x, 3)
    assert (packed.ids >= 0).all()
    np.testing.assert_array_equal(direct.ids, packed.ids[:1])
    np.testing.assert_array_equal(direct.scores, packed.scores[:1])


def _extreme_rows(seed: int, n: int, d: int) -> np.ndarray:
    """Rows of magnitude 1e20 (squared norm overflows float32), 1e-20 (squares are float32
    subnormals), 1e-23 (squares underflow to 0 in float32), 1 and 0, interleaved."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    scale = np.array([1e20, 1e-20, 1e-23, 1.0, 0.0])[np.arange(n) % 5]
    return (x * scale[:, None]).astype(np.float32)


def _true_cosines(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    qn = np.linalg.norm(q64, axis=1, keepdims=True)
    xn = np.linalg.norm(x64, axis=1, keepdims=True)
    return (q64 / np.where(qn > 0, qn, 1)) @ (x64 / np.where(xn > 0, xn, 1)).T


@pytest.mark.parametrize("d", [1, 3, 17, 97])
def test_reference_cosine_of_huge_and_tiny_rows_is_the_float64_truth(d):
    """Norms and scaling in float64: each score is the true cosine up to float32 rounding of
    the normalized rows and of their dot product (<= 2 d eps32, as |qn . xn| <= 1); a zero
    row scores 0 exactly."""
    q = _extreme_rows(d, 10, d)
    x = _extreme_rows(100 + d, 50, d)
    res = reference.topk(q, x, 50)
    assert (res.ids >= 0).all() and (np.sort(res.ids, axis=1) == np.arange(50)).all()
    truth = np.take_along_axis(_true_cosines(q, x), res.ids, axis=1)
    err = np.abs(res.scores.astype(np.float64) - truth)
    tol = 2 * d * np.finfo(np.float32).eps + 1e-30
    assert err.max() <= tol, (err.max(), tol, np.unravel_index(err.argmax(), err.shape))
    zero_q = np.arange(10) % 5 == 4
    zero_x = (np.arange(50) % 5 == 4)[res.ids]
    assert (res.scores[zero_q] == 0).all() and (res.scores[zero_x] == 0).all()
    # Magnitudes do not matter: each row rescaled to unit norm first gives the same ranking.
    unit = reference.topk(_unit(q), _unit(x), 50)
    np.testing.assert_allclose(res.scores, unit.scores, rtol=0, atol=tol)


def _unit(a: np.ndarray) -> np.ndarray:
    a64 = a.astype(np.float64)
    n = np.linalg.norm(a64, axis=1, keepdims=True)
    return (a64 / np.where(n > 0, n, 1)).astype(np.float32)


@pytest.mark.parametrize("b", [1, 20])  # the direct and the packed path
def test_native_cosine_of_huge_and_tiny_rows_is_the_float64_truth(b):
    q = _extreme_rows(5, b, 17)
    x = _extreme_rows(6, 50, 17)
    check(q, x, 50, "cosine")


# --- the reference's own decoding ------------------------------------------------------------


def test_reference_decodes_inputs_itself():
    """The reference shares no array or exclusion decoding with recfast.topk (only the checks
    of k, metric and num_threads), so a decoding bug there cannot hide in both."""
    from recfast import _exclusion, _inputs

    shared = [
        _inputs.prepare,
        _exclusion.as_exclusion,
        _exclusion.from_rows,
        _exclusion.from_sparse,
        _inputs.as_float32_matrix,
        _inputs.as_row_batch,
        _exclusion.single_query_exclude,
        _inputs.check_shapes,
    ]
    used = [name for name, obj in vars(reference).items() if any(obj is f for f in shared)]
    assert not used, used


N_COLS = 8


def _by_id_scores(b: int) -> np.ndarray:
    """Score rows falling with the column id: the top-N_COLS of a row lists its columns in id
    order, so which ones are excluded is read off directly."""
    return np.tile(np.arange(N_COLS, 0, -1, dtype=np.float32), (b, 1))


def _listed(excluded: list[set[int]]) -> np.ndarray:
    """The ids a top-N_COLS over _by_id_scores returns: unexcluded ids in order, then -1."""
    rows = []
    for ex in excluded:
        keep = [j for j in range(N_COLS) if j not in ex]
        rows.append(keep + [-1] * (N_COLS - len(keep)))
    return np.array(rows, np.int64)


def _reference_both_ways(b: int, exclude, monkeypatch) -> list[np.ndarray]:
    """The ids of reference.select_topk and of reference.topk (by dot, scores as above), the
    latter also in query blocks of one row (the exclusions sliced per block)."""
    s = _by_id_scores(b)
    q = np.ones((b, 1), np.float32)
    x = np.arange(N_COLS, 0, -1, dtype=np.float32)[:, None]
    out = [
        reference.select_topk(s, N_COLS, exclude=exclude).ids,
        reference.topk(q, x, N_COLS, metric="dot", exclude=exclude).ids,
    ]
    monkeypatch.setattr(reference, "_BLOCK_ELEMENTS", N_COLS)  # one query row per block
    out.append(reference.topk(q, x, N_COLS, metric="dot", exclude=exclude).ids)
    return out


# Stored (row, column, value) entries: duplicates, explicit zeros, negative values.
_ENTRIES = [
    (0, 1, 1.0),
    (0, 5, 0.0),
    (0, 1, 1.0),  # 1 + 1 = 2: excluded; a stored 0: not
    (1, 3, 1.0),
    (1, 7, 3.0),
    (1, 2, 2.0),
    (1, 3, -1.0),
    (1, 2, -1.0),  # 3: 1 - 1 = 0, 2: 1
    (3, 6, -2.0),
    (3, 4, 0.0),
    (3, 0, 0.5),
    (3, 4, 0.0),  # negative: excluded; two zeros: not
]
_ENTRIES_EXCLUDE = [{1}, {2, 7}, set(), {0, 6}]


@pytest.mark.parametrize("fmt", ["coo", "coo_array", "csr_unsorted", "csc_unsorted"])
def test_reference_sparse_exclusion_decoding(fmt, monkeypatch):
    rows, cols, vals = (np.array(v) for v in zip(*_ENTRIES))
    if fmt.startswith("coo"):
        ex = (sp.coo_array if fmt == "coo_array" else sp.coo_matrix)(
            (vals, (rows, cols)), shape=(4, N_COLS)
        )
    else:  # stored as given: unsorted, duplicated indices, zeros kept (not canonical)
        order = np.argsort(rows, kind="stable")
        indptr = np.searchsorted(rows[order], np.arange(5))
        ex = sp.csr_matrix((vals[order], cols[order], indptr), shape=(4, N_COLS))
        assert not ex.has_canonical_format
        if fmt == "csc_unsorted":  # the same entries stored by column
            by_col = np.argsort(cols, kind="stable")
            ex = sp.csc_matrix(
                (vals[by_col], rows[by_col], np.searchsorted(cols[by_col], np.arange(N_COLS + 1))),
                shape=(4, N_COLS),
            )
    assert ex.nnz == len(_ENTRIES), "duplicates and zeros must be stored for this test"
    want = _listed(_ENTRIES_EXCLUDE)
    for got in _reference_both_ways(4, ex, monkeypatch):
        np.testing.assert_array_equal(got, want)


def test_reference_bool_and_integer_sparse_exclusions(monkeypatch):
    mask = np.zeros((3, N_COLS), bool)
    mask[0, [2, 5]] = True
    mask[2, :] = True
    for ex in (
        sp.csr_matrix(mask),
        sp.csr_matrix(mask.astype(np.int8)),
        sp.lil_matrix(mask),
        sp.dok_matrix(mask.astype(np.float32)),
        sp.bsr_matrix(mask.astype(np.float64)),
    ):
        for got in _reference_both_ways(3, ex, monkeypatch):
            np.testing.assert_array_equal(got, _listed([{2, 5}, set(), set(range(N_COLS))]))


def test_reference_sequence_exclusion_decoding(monkeypatch):
    ex = [
        np.array([5, 1, 5, 3], np.int32),  # unsorted, repeated
        [],
        [7, 0, 7, 0, 7],  # a Python list
        np.array([[6, 2]], np.uint16),
    ]  # any integer dtype and shape
    want = _listed([{1, 3, 5}, set(), {0, 7}, {2, 6}])
    for got in _reference_both_ways(4, ex, monkeypatch):
        np.testing.assert_array_equal(got, want)
    for got in _reference_both_ways(
        4, tuple(np.asarray(e, np.int64).ravel() for e in ex), monkeypatch
    ):
        np.testing.assert_array_equal(got, want)


def test_reference_single_row_exclusion_decoding():
    s = _by_id_scores(1)[0]
    q = np.ones(1, np.float32)
    x = np.arange(N_COLS, 0, -1, dtype=np.float32)[:, None]
    dup = sp.coo_matrix(([1.0, 1.0, 0.0], ([0, 0, 0], [4, 4, 6])), shape=(1, N_COLS))
    for ex, excluded in (
        ([5, 1, 5], {1, 5}),
        (np.array([3, 3, 0]), {0, 3}),
        ((2,), {2}),
        ([np.array([6, 2])], {2, 6}),
        ([], set()),
        (dup, {4}),
    ):
        want = _listed([excluded])[0]
        for got in (
            reference.select_topk(s, N_COLS, exclude=ex),
            reference.topk(q, x, N_COLS, metric="dot", exclude=ex),
        ):
            assert got.ids.shape == (N_COLS,)
            np.testing.assert_array_equal(got.ids, want, err_msg=repr(ex))


def test_reference_takes_torch_tensors():
    torch = pytest.importorskip("torch")
    q, x = random_data(16, 5, 300, 12)
    want = reference.topk(q, x, 7)
    for tq, tx in (
        (torch.from_numpy(q), torch.from_numpy(x)),
        (torch.from_numpy(q).double(), torch.from_numpy(x).to(torch.bfloat16)),
    ):
        got = reference.topk(tq, tx, 7)
        same = reference.topk(tq.float().numpy(), tx.float().numpy(), 7)
        np.testing.assert_array_equal(got.ids, same.ids)
        np.testing.assert_array_equal(got.scores, same.scores)
    np.testing.assert_array_equal(reference.topk(torch.from_numpy(q), x, 7).ids, want.ids)
    with pytest.raises(TypeError, match="queries"):
        reference.topk(torch.zeros((5, 12), dtype=torch.int64), x, 7)


# --- SIMD level selection --------------------------------------------------------------------

_LEVEL_CHILD = (
    "import numpy as np, recfast; from recfast import _core;"
    "q = np.ones((3, 5), np.float32); x = np.arange(50, dtype=np.float32).reshape(10, 5);"
    "assert (recfast.topk(q, x, 2, metric='dot').ids == [[9, 8]] * 3).all();"
    "print(recfast.simd_level(), _core.detected_simd_level())"
)


def _levels_in_child(value):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RECFAST_SIMD"}
    if value is not None:
        env["RECFAST_SIMD"] = value
    out = subprocess.run(
        [sys.executable, "-c", _LEVEL_CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return tuple(out.stdout.split())


def test_recfast_simd_env():
    """RECFAST_SIMD forces a lower level; a higher or unknown one leaves the CPU's level."""
    order = ["generic", "avx2", "avx512"]
    cpu, detected = _levels_in_child(None)
    assert cpu == detected
    assert _levels_in_child("generic") == ("generic", "generic")
    for value in ("avx2", "avx512"):
        want = order[min(order.index(value), order.index(cpu))]
        assert _levels_in_child(value) == (want, want)
    assert _levels_in_child("bogus") == (cpu, cpu)


def test_simd_level_fixture_sets_the_level(simd_level):
    from recfast import _core

    assert recfast.simd_level() == simd_level == _core.simd_level()
