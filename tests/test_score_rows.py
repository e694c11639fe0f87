"""recfast.select_topk (top-k of precomputed score rows) and the native CSR x dense accumulation
used by the item-item models, against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import recfast
from recfast import _core, reference


def _rows(rng: np.random.Generator, b: int, n: int, kind: str) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal((b, n)).astype(np.float32)
    if kind == "ties":  # few distinct values: ties everywhere, also at the k-th place
        return rng.integers(-3, 4, (b, n)).astype(np.float32)
    if kind == "special":  # NaN, +-inf, -0.0 and 0.0 mixed in
        s = rng.integers(-2, 3, (b, n)).astype(np.float32)
        pick = rng.random((b, n))
        s[pick < 0.1] = np.nan
        s[(pick >= 0.1) & (pick < 0.15)] = -np.inf
        s[(pick >= 0.15) & (pick < 0.18)] = np.inf
        s[(pick >= 0.18) & (pick < 0.25)] = -0.0
        return s
    if kind == "all_nan":
        return np.full((b, n), np.nan, np.float32)
    raise AssertionError(kind)


def _assert_same(got: recfast.TopK, want: recfast.TopK) -> None:
    assert got.scores.dtype == np.float32 and got.ids.dtype == np.int64
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.scores, want.scores)


@pytest.mark.parametrize("kind", ["normal", "ties", "special", "all_nan"])
@pytest.mark.parametrize("n", [1, 3, 17, 97, 1000])
@pytest.mark.parametrize("k", [1, 5, 64, 150])
def test_select_matches_reference(simd_level, kind: str, n: int, k: int) -> None:
    """At each SIMD level: the selection's portable and AVX2 builds both follow RECFAST_SIMD."""
    rng = np.random.default_rng(n * 1000 + k)
    s = _rows(rng, 7, n, kind)
    _assert_same(recfast.select_topk(s, k), reference.select_topk(s, k))


@pytest.mark.parametrize("sparse", [True, False])
def test_select_exclusions(sparse: bool) -> None:
    rng = np.random.default_rng(1)
    s = _rows(rng, 40, 300, "ties")
    mask = rng.random((40, 300)) < 0.3
    mask[3] = True  # a row with everything excluded: all padding
    excl = sp.csr_matrix(mask.astype(np.float32)) if sparse else [np.flatnonzero(r) for r in mask]
    got = recfast.select_topk(s, 50, exclude=excl)
    _assert_same(got, reference.select_topk(s, 50, exclude=excl))
    for r in range(40):
        ids = got.ids[r][got.ids[r] >= 0]
        assert not mask[r, ids].any()
    assert (got.ids[3] == -1).all() and np.isneginf(got.scores[3]).all()


def test_select_buffer_cuts_on_adversarial_orders() -> None:
    """Ascending rows admit every column (each beats the bar): many buffer cuts per row."""
    n = 5000
    rows = np.stack(
        [
            np.arange(n, dtype=np.float32),
            -np.arange(n, dtype=np.float32),
            np.zeros(n, np.float32),
            np.repeat(np.arange(50, dtype=np.float32), 100),
        ]
    )
    for k in (1, 31, 32, 33, 100, 4999, 5000, 6000):
        _assert_same(recfast.select_topk(rows, k), reference.select_topk(rows, k))


def test_select_threads_and_large_input() -> None:
    rng = np.random.default_rng(2)
    s = _rows(rng, 600, 3000, "ties")  # above the inline threshold: runs on the pool
    excl = sp.random(600, 3000, density=0.05, format="csr", random_state=3)
    want = reference.select_topk(s, 100, exclude=excl)
    for threads in (1, 2, 3):
        _assert_same(recfast.select_topk(s, 100, exclude=excl, num_threads=threads), want)


def test_select_layouts_and_shapes() -> None:
    rng = np.random.default_rng(4)
    s = rng.standard_normal((5, 40))
    want = reference.select_topk(s.astype(np.float32), 4)
    _assert_same(recfast.select_topk(s, 4), want)  # float64 converted
    _assert_same(recfast.select_topk(np.asfortranarray(s), 4), want)
    one = recfast.select_topk(s[2].astype(np.float32), 4, exclude=[0, 1])
    ref_one = reference.select_topk(s[2].astype(np.float32), 4, exclude=[0, 1])
    assert one.ids.shape == (4,)
    _assert_same(one, ref_one)
    empty = recfast.select_topk(np.zeros((0, 7), np.float32), 3)
    assert empty.ids.shape == (0, 3)
    no_cols = recfast.select_topk(np.zeros((2, 0), np.float32), 3)
    assert (no_cols.ids == -1).all() and np.isneginf(no_cols.scores).all()


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((np.zeros((2, 3), np.float32), 0), ValueError, "k"),
        ((np.zeros((2, 3), np.float32), 2.5), TypeError, "k"),
        ((np.zeros((2, 3, 4), np.float32), 2), ValueError, "scores"),
        ((np.array([["a", "b"]]), 1), TypeError, "scores"),
    ],
)
def test_select_bad_arguments(args, error, match) -> None:
    with pytest.raises(error, match=match):
        recfast.select_topk(*args)


def test_select_bad_exclude_and_threads() -> None:
    s = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="exclude"):
        recfast.select_topk(s, 1, exclude=sp.csr_matrix((3, 3)))
    with pytest.raises(ValueError, match="exclude"):
        recfast.select_topk(s, 1, exclude=[[5], []])
    with pytest.raises(ValueError, match="num_threads"):
        recfast.select_topk(s, 1, num_threads=0)


def _accumulate(x: sp.csr_matrix, dense: np.ndarray, out: np.ndarray, threads: int) -> None:
    _core.csr_dense_accumulate(
        x.indptr.astype(np.int64),
        x.indices.astype(np.int64),
        x.data.astype(np.float32),
        dense,
        out,
        threads,
    )


def _plain_loop(x: sp.csr_matrix, dense: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The documented arithmetic: per output row, terms in CSR order, float32 multiply + add."""
    res = out.copy()
    for r in range(x.shape[0]):
        for t in range(x.indptr[r], x.indptr[r + 1]):
            res[r] = res[r] + np.float32(x.data[t]) * dense[x.indices[t]]
    return res


@pytest.mark.parametrize("n_cols", [1, 3, 17, 513, 1100])
def test_accumulate_is_the_plain_loop_bit_for_bit(simd_level, n_cols: int) -> None:
    rng = np.random.default_rng(n_cols)
    x = sp.random(37, 50, density=0.2, format="csr", random_state=n_cols, dtype=np.float32)
    x.data = rng.uniform(0.5, 5, x.nnz).astype(np.float32)
    dense = rng.standard_normal((50, n_cols)).astype(np.float32)
    init = rng.standard_normal((37, n_cols)).astype(np.float32)
    want = _plain_loop(x, dense, init)
    for threads in (1, 2):
        out = init.copy()
        _accumulate(x, dense, out, threads)
        np.testing.assert_array_equal(out, want)


def test_accumulate_large_threaded_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    x = sp.random(3000, 800, density=0.05, format="csr", random_state=6, dtype=np.float32)
    dense = rng.standard_normal((800, 700)).astype(np.float32)
    outs = []
    for threads in (1, 2):
        out = np.zeros((3000, 700), np.float32)
        _accumulate(x, dense, out, threads)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    want = x.astype(np.float64) @ dense.astype(np.float64)
    np.testing.assert_allclose(outs[0], want, rtol=1e-5, atol=1e-4)


def test_accumulate_rejects_bad_input() -> None:
    x = sp.csr_matrix(np.eye(3, dtype=np.float32))
    dense = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="indices"):
        _core.csr_dense_accumulate(
            np.array([0, 1, 2, 3]),
            np.array([0, 1, 3]),
            np.ones(3, np.float32),
            dense,
            np.zeros((3, 4), np.float32),
            1,
        )
    with pytest.raises(ValueError, match="columns"):
        _accumulate(x, dense, np.zeros((3, 5), np.float32), 1)
    with pytest.raises(ValueError, match="writable"):
        ro = np.zeros((3, 4), np.float32)
        ro.flags.writeable = False
        _accumulate(x, dense, ro, 1)
    with pytest.raises(ValueError, match="non-decreasing"):
        _core.csr_dense_accumulate(
            np.array([0, 2, 1, 3]),
            np.array([0, 1, 2]),
            np.ones(3, np.float32),
            dense,
            np.zeros((3, 4), np.float32),
            1,
        )


def test_select_long_rows_whose_sample_misleads() -> None:
    """Long rows start from a floor guessed from a strided sample; when the sampled columns are
    excluded (or the floor is otherwise too high) the row must still come out exact."""
    rng = np.random.default_rng(7)
    n, k = 4000, 50
    s = rng.standard_normal((6, n)).astype(np.float32)
    stride = n // 256
    s[:, ::stride] = 100.0  # every sampled column is huge...
    excl = [np.arange(0, n, stride)] * 3 + [np.array([], np.int64)] * 3  # ...and excluded
    s[4, ::stride] = np.nan
    s[5] = np.where(rng.random(n) < 0.5, np.float32(1.0), np.float32(0.0))  # ties at the floor
    got = recfast.select_topk(s, k, exclude=excl)
    _assert_same(got, reference.select_topk(s, k, exclude=excl))
    for kk in (1, 7, 100, 499, 500, 501):
        _assert_same(recfast.select_topk(s, kk), reference.select_topk(s, kk))


# ------------------------------------------------------------------ dense_scores
EPS32 = float(np.finfo(np.float32).eps)


def _assert_float32_accurate(
    out: np.ndarray, q: np.ndarray, x: np.ndarray, init: np.ndarray | None = None, c: float = 2.0
) -> None:
    """out = init + Q X^T to float32 accuracy: |out - exact| <= c * d * eps32 * sum_p |q_p x_p|
    (+ one rounding of the addition to init), exact products and sums in float64."""
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    d = q.shape[1]
    exact = q64 @ x64.T
    bound = c * d * EPS32 * (np.abs(q64) @ np.abs(x64).T)
    if init is not None:
        exact = exact + init
        bound = bound + EPS32 * np.abs(exact)
    err = np.abs(out.astype(np.float64) - exact)
    bad = err > bound
    assert not bad.any(), (
        f"{int(bad.sum())} of {bad.size} scores beyond float32 accuracy; worst at "
        f"{np.unravel_index((err - bound).argmax(), err.shape)}: err {err[bad].max():.3g}"
    )


@pytest.mark.parametrize("dim", [0, 1, 3, 17, 97, 600])
@pytest.mark.parametrize("n_items", [1, 15, 33, 1000])
@pytest.mark.parametrize("n_queries", [1, 7, 40])
def test_dense_scores_are_products_to_float32_accuracy(
    simd_level, dim: int, n_items: int, n_queries: int
) -> None:
    """out += Q X^T, each score within float32 accumulation error of the float64 product."""
    rng = np.random.default_rng(dim * 1000 + n_items + n_queries)
    q = rng.standard_normal((n_queries, dim)).astype(np.float32)
    x = rng.standard_normal((n_items, dim)).astype(np.float32)
    x *= rng.uniform(0.01, 100.0, (n_items, 1)).astype(np.float32)  # varied row scales
    x[0] = 0.0
    out = np.zeros((n_queries, n_items), np.float32)
    _core.dense_scores(q, x, out, 2)
    if dim == 0:  # empty products: nothing is added
        assert not out.any()
        return
    assert (out[:, 0] == 0).all()  # a zero item scores exactly 0
    _assert_float32_accurate(out, q, x)
    # Added to what out held, with one rounding; the same for any thread count.
    init = rng.standard_normal((n_queries, n_items)).astype(np.float32)
    for threads in (1, 3):
        acc = init.copy()
        _core.dense_scores(q, x, acc, threads)
        np.testing.assert_array_equal(acc, init + out)
        _assert_float32_accurate(acc, q, x, init=init.astype(np.float64))


def test_dense_scores_large_threaded_and_strided() -> None:
    rng = np.random.default_rng(3)
    q = rng.standard_normal((1030, 64)).astype(np.float32)
    x = rng.standard_normal((2100, 64)).astype(np.float32)
    wide = np.zeros((1030, 2200), np.float32)
    out = wide[:, :2100]  # rows with a stride larger than their length
    _core.dense_scores(q, x, out, 2)
    single = np.zeros((1030, 2100), np.float32)
    _core.dense_scores(q, x, single, 1)
    np.testing.assert_array_equal(out, single)
    assert not wide[:, 2100:].any()
    _assert_float32_accurate(out, q, x)
    empty = np.zeros((0, 2100), np.float32)
    _core.dense_scores(q[:0], x, empty, 2)


def test_dense_scores_rejects_bad_input() -> None:
    q = np.ones((3, 4), np.float32)
    x = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match="columns"):
        _core.dense_scores(q, np.ones((5, 3), np.float32), np.zeros((3, 5), np.float32), 1)
    with pytest.raises(ValueError, match="shape"):
        _core.dense_scores(q, x, np.zeros((3, 4), np.float32), 1)
    with pytest.raises(ValueError, match="writable"):
        _core.dense_scores(q, x, np.zeros((3, 5), np.float64), 1)
    with pytest.raises(TypeError, match="float32"):
        _core.dense_scores(q.astype(np.float64), x, np.zeros((3, 5), np.float32), 1)
    with pytest.raises(ValueError, match="num_threads"):
        _core.dense_scores(q, x, np.zeros((3, 5), np.float32), 0)


def test_dense_scores_with_bias_overwrite_out() -> None:
    rng = np.random.default_rng(11)
    q = rng.standard_normal((50, 9)).astype(np.float32)
    x = rng.standard_normal((70, 9)).astype(np.float32)
    bias = rng.standard_normal((1, 70)).astype(np.float32)
    want = np.repeat(bias, 50, axis=0)
    _core.dense_scores(q, x, want, 2)
    out = np.full((50, 70), np.nan, np.float32)  # old values must not be read
    _core.dense_scores(q, x, out, 2, bias=bias)
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="bias"):
        _core.dense_scores(q, x, out, 2, bias=bias[:, :69])
