"""Bad inputs raise the documented error, with a message naming the argument, in both the
native and the reference top-k."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

import recfast
from recfast import _inputs, reference

TOPK = [recfast.topk, reference.topk]
IDS = ["native", "reference"]

Q = np.ones((3, 4), np.float32)
X = np.ones((10, 4), np.float32)


@pytest.fixture(params=TOPK, ids=IDS)
def topk(request):
    return request.param


@pytest.mark.parametrize(
    "k, err",
    [
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        (True, TypeError),
        (False, TypeError),
        ("3", TypeError),
        (None, TypeError),
        (np.float32(2), TypeError),
    ],
)
def test_bad_k(topk, k, err):
    with pytest.raises(err, match=r"\bk\b"):
        topk(Q, X, k)


@pytest.mark.parametrize("k", [1, np.int64(3), np.int32(10), 11, 10**6])
def test_good_k(topk, k):
    s, i = topk(Q, X, k)
    assert s.shape == (3, int(k))


@pytest.mark.parametrize("metric", ["l2", "COSINE", "", None, "ip", 1])
def test_bad_metric(topk, metric):
    with pytest.raises(ValueError, match="metric"):
        topk(Q, X, 2, metric=metric)


def test_dimension_mismatch(topk):
    with pytest.raises(ValueError, match="dimension") as e:
        topk(np.ones((3, 5), np.float32), X, 2)
    assert "queries" in str(e.value) and "items" in str(e.value)
    with pytest.raises(ValueError, match="queries"):
        topk(np.ones(5, np.float32), X, 2)
    with pytest.raises(ValueError, match="dimension"):
        topk(np.ones((3, 0), np.float32), np.ones((10, 0), np.float32), 2)


@pytest.mark.parametrize(
    "q, x, name",
    [
        (np.ones((2, 3, 4), np.float32), X, "queries"),
        (np.float32(1.0), X, "queries"),
        (Q, np.ones(4, np.float32), "items"),
        (Q, np.ones((2, 10, 4), np.float32), "items"),
        (Q, np.float32(1.0), "items"),
    ],
)
def test_wrong_rank(topk, q, x, name):
    with pytest.raises(ValueError, match=name):
        topk(q, x, 2)


@pytest.mark.parametrize(
    "dtype",
    [
        np.int32,
        np.int64,
        np.uint8,
        np.bool_,
        np.complex64,
        np.complex128,
        object,
        "U3",
        "datetime64[s]",
    ],
)
def test_bad_dtype(topk, dtype):
    bad_q = np.ones((3, 4)).astype(dtype)
    bad_x = np.ones((10, 4)).astype(dtype)
    with pytest.raises(TypeError, match="queries"):
        topk(bad_q, X, 2)
    with pytest.raises(TypeError, match="items"):
        topk(Q, bad_x, 2)


@pytest.mark.parametrize("value", ["abc", b"abc", None, {"a": 1}])
def test_non_array_inputs(topk, value):
    with pytest.raises((TypeError, ValueError), match="queries"):
        topk(value, X, 2)
    with pytest.raises((TypeError, ValueError), match="items"):
        topk(Q, value, 2)


def test_integer_lists_are_rejected(topk):
    with pytest.raises(TypeError, match="queries"):
        topk([[1, 2, 3, 4]], X, 2)


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", True, False, 2.0, [2]])
def test_bad_num_threads(topk, n):
    with pytest.raises(ValueError, match="num_threads"):
        topk(Q, X, 2, num_threads=n)


@pytest.mark.parametrize("n", [None, 1, 2, np.int64(3), 64, 2**31, 2**40])
def test_good_num_threads(topk, n):
    assert topk(Q, X, 2, num_threads=n).ids.shape == (3, 2)


def test_num_threads_is_capped_at_a_multiple_of_the_cpus():
    cap = _inputs.max_threads()
    assert cap == _inputs.MAX_THREADS_PER_CPU * _inputs.available_cpus()
    for n in (cap + 1, 10**6, 2**40):
        assert _inputs.check_num_threads(n) == cap
    assert _inputs.check_num_threads(cap) == cap
    assert _inputs.check_num_threads(1) == 1
    assert _inputs.check_num_threads(None) == _inputs.available_cpus()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_huge_num_threads_keeps_the_pool_small_and_idle_workers_leave():
    # In a fresh interpreter, so the pool starts empty: a call with num_threads=10**6 grows it
    # to at most the cap (4 x usable CPUs), the results equal one thread's, and after a call
    # with one thread the idle extra workers leave (polled for up to 60 s; they leave after 2 s
    # idle).
    script = textwrap.dedent("""
        import os, time
        import numpy as np
        import recfast
        from recfast import _inputs

        def n_threads():
            return len(os.listdir("/proc/self/task"))

        rng = np.random.default_rng(0)
        q = rng.standard_normal((256, 32)).astype(np.float32)
        x = rng.standard_normal((20000, 32)).astype(np.float32)
        cap = _inputs.max_threads()
        base = n_threads()
        one = recfast.topk(q, x, 10, num_threads=1)
        after_one = n_threads()
        assert after_one <= base + 1, (base, after_one)
        for f in (lambda t: recfast.topk(q, x, 10, num_threads=t),
                  lambda t: recfast.topk(q, x, 10, metric="dot", num_threads=t),
                  lambda t: recfast.topk(q[:3], x, 10, num_threads=t)):
            want = f(1)
            got = f(10**6)
            assert n_threads() <= base + cap, (base, cap, n_threads())
            np.testing.assert_array_equal(got.ids, want.ids)
            np.testing.assert_array_equal(got.scores, want.scores)
        s = q[:64] @ x[:5000].T
        want = recfast.select_topk(s, 10, num_threads=1)
        got = recfast.select_topk(s, 10, num_threads=10**6)
        assert n_threads() <= base + cap, (base, cap, n_threads())
        np.testing.assert_array_equal(got.ids, want.ids)
        # The native pool caps a C++ caller's count too (the Python cap is not in this path).
        from recfast import _core
        _core._raise_in_worker(2000, -1, 2**31 - 1)
        assert n_threads() <= base + cap, (base, cap, n_threads())
        grown = n_threads()
        assert grown > base + 1, (base, grown)  # the pool did grow beyond one worker
        recfast.topk(q, x, 10, num_threads=1)
        deadline = time.monotonic() + 60
        while n_threads() > base + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert n_threads() <= base + 1, (base, grown, n_threads())
        print("ok", base, cap, grown)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


# --- k beyond N ------------------------------------------------------------------------------


def test_check_output_size_limit():
    limit_cells = _inputs.MAX_PADDED_RESULT_BYTES // 12
    _inputs.check_output_size(1, limit_cells, 5)  # exactly at the limit: allowed
    _inputs.check_output_size(4, limit_cells // 4, 0)
    with pytest.raises(ValueError, match=r"\bk = \d+") as e:
        _inputs.check_output_size(1, limit_cells + 1, 5)
    assert "N = 5" in str(e.value) and "padding" in str(e.value)
    with pytest.raises(ValueError, match=r"\bk\b"):
        _inputs.check_output_size(2, limit_cells // 2 + 1, 0)
    # k <= N: the result is all real ids, however large.
    _inputs.check_output_size(10**6, 10**6, 10**6)
    _inputs.check_output_size(0, 10**15, 3)  # no queries: an empty result


@pytest.mark.parametrize("k", [10**12, 2**62, 1_431_655_766])  # the last: 1 cell past 16 GiB
def test_huge_k_with_few_items_is_refused(k):
    x5 = X[:5]
    for q in (Q, Q[0]):
        with pytest.raises(ValueError, match=r"\bk\b.*padding"):
            recfast.topk(q, x5, k)
        with pytest.raises(ValueError, match=r"\bk\b.*padding"):
            recfast.select_topk(q @ x5.T, k)
    with pytest.raises(ValueError, match=r"\bk\b.*padding"):
        recfast.topk(Q, np.ones((0, 4), np.float32), k)
    with pytest.raises(ValueError, match=r"\bk\b.*padding"):
        recfast.select_topk(np.ones((3, 0), np.float32), k)


def test_large_k_within_the_limit_still_pads():
    r = recfast.topk(Q, X[:5], 1000)
    assert r.ids.shape == (3, 1000) and (r.ids[:, 5:] == -1).all()
    assert recfast.topk(np.ones((0, 4), np.float32), X, 10**12).ids.shape == (0, 10**12)
    r = recfast.select_topk(Q @ X[:5].T, 1000)
    assert r.ids.shape == (3, 1000) and (r.ids[:, 5:] == -1).all()


# --- exclude ---------------------------------------------------------------------------------


def test_exclude_wrong_row_count(topk):
    with pytest.raises(ValueError, match="exclude") as e:
        topk(Q, X, 2, exclude=[[1], [2]])
    assert "2" in str(e.value) and "3" in str(e.value)
    with pytest.raises(ValueError, match="exclude"):
        topk(Q, X, 2, exclude=[[1]] * 4)
    with pytest.raises(ValueError, match="exclude"):
        topk(Q, X, 2, exclude=[])


@pytest.mark.parametrize("shape", [(2, 10), (3, 9), (3, 11), (10, 3), (1, 10)])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_exclude_wrong_sparse_shape(topk, shape, fmt):
    ex = sp.random(*shape, density=0.2, format=fmt, random_state=0)
    with pytest.raises(ValueError, match="exclude"):
        topk(Q, X, 2, exclude=ex)


def test_exclude_wrong_sparse_shape_single_query(topk):
    with pytest.raises(ValueError, match="exclude"):
        topk(Q[0], X, 2, exclude=sp.csr_matrix((2, 10)))
    with pytest.raises(ValueError, match="exclude"):
        topk(Q[0], X, 2, exclude=sp.csr_matrix((1, 11)))


@pytest.mark.parametrize("bad", [10, 11, -1, -100, 2**40])
def test_exclude_out_of_range(topk, bad):
    with pytest.raises(ValueError, match="exclude") as e:
        topk(Q, X, 2, exclude=[[0], [1, bad], []])
    assert str(bad) in str(e.value)
    with pytest.raises(ValueError, match="exclude"):
        topk(Q[0], X, 2, exclude=[bad])
    with pytest.raises(ValueError, match="exclude"):
        topk(Q, X, 2, exclude=[np.array([bad])] * 3)


def test_exclude_out_of_range_when_no_items(topk):
    with pytest.raises(ValueError, match="exclude"):
        topk(Q, np.ones((0, 4), np.float32), 2, exclude=[[0], [], []])


@pytest.mark.parametrize(
    "row", [[1.0], np.array([0.5]), np.array([1.0, 2.0]), ["a"], np.array([True, False])]
)
def test_exclude_non_integer_ids(topk, row):
    with pytest.raises(TypeError, match="exclude"):
        topk(Q, X, 2, exclude=[[0], row, [1]])


@pytest.mark.parametrize("ex", ["abc", 5, 3.0, {0: [1]}, object()])
def test_exclude_wrong_type(topk, ex):
    with pytest.raises(TypeError, match="exclude"):
        topk(Q, X, 2, exclude=ex)


def test_valid_edge_inputs(topk):
    # Empty batches and item sets are valid.
    assert topk(np.ones((0, 4), np.float32), X, 3).ids.shape == (0, 3)
    r = topk(Q, np.ones((0, 4), np.float32), 3)
    assert (r.ids == -1).all() and np.isneginf(r.scores).all()
    r = topk(Q[0], np.ones((0, 4), np.float32), 3, exclude=[])
    assert r.ids.shape == (3,) and (r.ids == -1).all()
    # exclude for an empty batch
    assert topk(np.ones((0, 4), np.float32), X, 3, exclude=[]).ids.shape == (0, 3)
    assert topk(np.ones((0, 4), np.float32), X, 3, exclude=sp.csr_matrix((0, 10))).ids.shape == (
        0,
        3,
    )


def test_error_does_not_depend_on_simd_level():
    from recfast import _core

    with pytest.raises(ValueError, match="level"):
        _core.set_simd_level("sse9")
    levels = ["generic", "avx2", "avx512"]
    best = _core.detected_simd_level()
    for above in levels[levels.index(best) + 1 :]:
        with pytest.raises(ValueError, match="above"):
            _core.set_simd_level(above)
    assert recfast.simd_level() == _core.simd_level()


# --- merge_topk ------------------------------------------------------------------------------


def test_merge_topk_bad_inputs():
    part = recfast.topk(Q, X, 2)
    with pytest.raises(ValueError, match="k"):
        recfast.merge_topk([(part, 0)], 0)
    with pytest.raises(TypeError, match="k"):
        recfast.merge_topk([(part, 0)], 1.5)
    with pytest.raises(ValueError, match="parts"):
        recfast.merge_topk([], 2)
    with pytest.raises(TypeError, match=r"parts\[1\]"):
        recfast.merge_topk([(part, 0), (part,)], 2)
    # A bare TopK is itself a pair (scores, ids): rejected by content.
    with pytest.raises((TypeError, ValueError), match=r"parts\[0\]"):
        recfast.merge_topk([part], 2)
    with pytest.raises(ValueError, match="rows"):
        recfast.merge_topk([(part, 0), (recfast.topk(Q[:2], X, 2), 10)], 2)
