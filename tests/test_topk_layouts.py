"""Memory layouts and array types: every accepted input gives the result of its C-contiguous
float32 equivalent, exactly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import recfast
from recfast import reference

from helpers import assert_topk_equivalent, random_data

try:
    import torch
except ImportError:  # only the torch tests below need it
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

METRICS = ["cosine", "dot"]


def assert_same(got, want):
    np.testing.assert_array_equal(got.ids, want.ids, strict=True)
    np.testing.assert_array_equal(got.scores, want.scores, strict=True)


def baseline(q, x, k, metric, **kw):
    """Result on C-contiguous float32 copies, checked against the reference."""
    qc = np.ascontiguousarray(np.asarray(q, np.float32))
    xc = np.ascontiguousarray(np.asarray(x, np.float32))
    got = recfast.topk(qc, xc, k, metric=metric, **kw)
    assert_topk_equivalent(
        got, reference.topk(qc, xc, k, metric=metric, **kw), qc, xc, metric, k, kw.get("exclude")
    )
    return got


@pytest.fixture(params=[1, 3, 200], ids=["direct", "broadcast", "packed"])
def data(request):
    q, x = random_data(request.param, request.param, 3000, 24)
    return q, x


@pytest.mark.parametrize("metric", METRICS)
def test_fortran_order(data, metric):
    q, x = data
    want = baseline(q, x, 10, metric)
    assert_same(recfast.topk(np.asfortranarray(q), np.asfortranarray(x), 10, metric=metric), want)
    assert_same(recfast.topk(q, np.asfortranarray(x), 10, metric=metric), want)
    assert_same(recfast.topk(np.asfortranarray(q), x, 10, metric=metric), want)
    # A transposed view is Fortran ordered too.
    assert_same(recfast.topk(q, np.ascontiguousarray(x.T).T, 10, metric=metric), want)


@pytest.mark.parametrize("metric", METRICS)
def test_strided(data, metric):
    q, x = data
    cases = [
        (q[:, ::2], x[:, ::2]),  # column stride 8 bytes
        (q, x[::3]),  # row stride 3 rows (used in place)
        (q[::2], x[::3]),
        (q[:, 1:9], x[:, 1:9]),  # row stride larger than the row
        (q[::-1], x[::-1]),  # negative strides
        (q[:, ::-1], x[:, ::-1]),
    ]
    for qs, xs in cases:
        got = recfast.topk(qs, xs, 10, metric=metric)
        assert_same(got, baseline(qs, xs, 10, metric))


@pytest.mark.parametrize("metric", METRICS)
def test_read_only(data, metric):
    q, x = data
    want = baseline(q, x, 10, metric)
    qr, xr = q.copy(), x.copy()
    qr.flags.writeable = False
    xr.flags.writeable = False
    assert_same(recfast.topk(qr, xr, 10, metric=metric), want)
    assert_same(
        recfast.topk(qr[0], xr, 10, metric=metric), recfast.topk(q[0], x, 10, metric=metric)
    )


@pytest.mark.parametrize("metric", METRICS)
def test_memmap(data, metric, tmp_path):
    q, x = data
    want = baseline(q, x, 10, metric)
    path = tmp_path / "items.f32"
    w = np.memmap(path, dtype=np.float32, mode="w+", shape=x.shape)
    w[:] = x
    w.flush()
    del w
    for mode in ("r", "c", "r+"):
        mm = np.memmap(path, dtype=np.float32, mode=mode, shape=x.shape)
        assert_same(recfast.topk(q, mm, 10, metric=metric), want)
        assert_same(recfast.topk(q, mm[::2], 10, metric=metric), baseline(q, x[::2], 10, metric))
        del mm


def test_misaligned_base_pointer(data):
    """Data starting 4 bytes past an aligned address (kernels must not assume alignment)."""
    q, x = data
    want = baseline(q, x, 10, "dot")
    buf = np.empty(x.size + 1, np.float32)
    xm = buf[1:].reshape(x.shape)
    xm[:] = x
    bq = np.empty(q.size + 1, np.float32)
    qm = bq[1:].reshape(q.shape)
    qm[:] = q
    assert xm.ctypes.data % 64 != 0
    assert_same(recfast.topk(qm, xm, 10, metric="dot"), want)


def test_broadcast_items_zero_row_stride():
    """A broadcast (stride 0) item matrix: every item identical, ids 0..k-1."""
    rng = np.random.default_rng(0)
    row = rng.standard_normal(16).astype(np.float32)
    x = np.broadcast_to(row, (5000, 16))
    for b in (1, 20):
        q = rng.standard_normal((b, 16)).astype(np.float32)
        for metric in METRICS:
            got = recfast.topk(q, x, 7, metric=metric)
            assert (got.ids == np.arange(7)).all()
            assert_same(got, baseline(q, x, 7, metric))


@pytest.mark.parametrize("dtype", [">f4", ">f8", "<f2"])
def test_byte_order(data, dtype):
    q, x = data
    want = baseline(
        q.astype(dtype).astype(np.float32), x.astype(dtype).astype(np.float32), 10, "cosine"
    )
    assert_same(recfast.topk(q.astype(dtype), x.astype(dtype), 10), want)


def test_python_lists():
    q, x = random_data(1, 2, 30, 4)
    want = baseline(q, x, 5, "dot")
    assert_same(
        recfast.topk(q.tolist(), x.tolist(), 5, metric="dot"),
        recfast.topk(q.astype(np.float64).astype(np.float32), x, 5, metric="dot"),
    )
    assert_same(
        recfast.topk(q[0].tolist(), x, 5, metric="dot"), recfast.topk(q[0], x, 5, metric="dot")
    )
    assert want.ids.shape == (2, 5)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 10, 3000, 3005])
def test_one_dimensional_query(data, metric, k):
    q, x = data
    got = recfast.topk(q[-1], x, k, metric=metric)
    assert got.scores.shape == (k,) and got.ids.shape == (k,)
    assert got.scores.dtype == np.float32 and got.ids.dtype == np.int64
    want = reference.topk(q[-1], x, k, metric=metric)
    assert want.ids.shape == (k,)
    assert_topk_equivalent(got, want, q[-1], x, metric, k)
    batch = recfast.topk(q[-1:], x, k, metric=metric)
    np.testing.assert_array_equal(got.ids, batch.ids[0], strict=True)
    np.testing.assert_array_equal(got.scores, batch.scores[0], strict=True)


def test_one_dimensional_query_matches_batch_row(data):
    q, x = data
    for metric in METRICS:
        batch = recfast.topk(q[-1:], x, 10, metric=metric)
        one = recfast.topk(q[-1], x, 10, metric=metric)
        np.testing.assert_array_equal(one.ids, batch.ids[0])
        np.testing.assert_array_equal(one.scores, batch.scores[0])
        # A strided 1-D query (every other column of a wider row)
        wide = np.repeat(q[-1], 2)
        assert_same(recfast.topk(wide[::2], x, 10, metric=metric), one)


# --- torch -----------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("metric", METRICS)
def test_torch_float32_large(metric):
    """A large float32 CPU tensor (used in place) gives the numpy result."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 64, generator=g)
    q = torch.randn(12, 64, generator=g)
    x_before = x.clone()
    got = recfast.topk(q, x, 10, metric=metric)
    assert isinstance(got.ids, np.ndarray) and isinstance(got.scores, np.ndarray)
    assert_same(got, recfast.topk(q.numpy(), x.numpy(), 10, metric=metric))
    want = reference.topk(q.numpy(), x.numpy(), 10, metric=metric)
    assert_topk_equivalent(got, want, q, x, metric, 10)
    # The torch tensor is not modified.
    assert torch.equal(x, x_before)


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_torch_dtypes_and_views(data, dtype):
    q, x = data
    tq = torch.from_numpy(q).to(getattr(torch, dtype))
    tx = torch.from_numpy(x).to(getattr(torch, dtype))
    want = baseline(tq.float().numpy(), tx.float().numpy(), 10, "cosine")
    assert_same(recfast.topk(tq, tx, 10), want)
    # Non-contiguous views and 1-D queries
    assert_same(
        recfast.topk(tq[:, ::2], tx[:, ::2], 10),
        baseline(tq.float().numpy()[:, ::2], tx.float().numpy()[:, ::2], 10, "cosine"),
    )
    assert_same(recfast.topk(tq.T.contiguous().T, tx.T.contiguous().T, 10), want)
    one = recfast.topk(tq[0], tx, 10)
    np.testing.assert_array_equal(one.ids, want.ids[0])


@needs_torch
def test_torch_requires_grad_and_mixed():
    q, x = random_data(4, 5, 500, 8)
    tq = torch.from_numpy(q).requires_grad_(True)
    tx = torch.from_numpy(x)
    want = recfast.topk(q, x, 5)
    assert_same(recfast.topk(tq, tx, 5), want)
    assert_same(recfast.topk(tq, x, 5), want)  # torch queries, numpy items
    assert_same(recfast.topk(q, tx, 5), want)


@needs_torch
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "complex64"])
def test_torch_bad_dtypes(dtype):
    t = torch.zeros((3, 4), dtype=getattr(torch, dtype))
    x = np.zeros((5, 4), np.float32)
    with pytest.raises(TypeError, match="queries"):
        recfast.topk(t, x, 2)
    with pytest.raises(TypeError, match="items"):
        recfast.topk(np.zeros((3, 4), np.float32), t, 2)


# --- no reads outside the arrays -------------------------------------------------------------

_GUARD_CHILD = textwrap.dedent(
    """
    import ctypes, mmap, sys
    import numpy as np
    import recfast
    import recfast.reference
    from recfast import _core
    sys.path.insert(0, sys.argv[1])
    from helpers import assert_topk_equivalent, available_simd_levels

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    PAGE = mmap.PAGESIZE
    keep = []

    def guarded(shape, at_end):
        # A float32 C array between two PROT_NONE pages, touching the one after (at_end) or
        # the one before it: any read past its ends faults.
        nbytes = int(np.prod(shape)) * 4
        body = (nbytes + PAGE - 1) // PAGE * PAGE
        buf = mmap.mmap(-1, body + 2 * PAGE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        assert libc.mprotect(addr, PAGE, 0) == 0
        assert libc.mprotect(addr + PAGE + body, PAGE, 0) == 0
        offset = PAGE + (body - nbytes if at_end else 0)
        keep.append(buf)
        return np.frombuffer(buf, np.float32, count=int(np.prod(shape)),
                             offset=offset).reshape(shape)

    rng = np.random.default_rng(0)
    count = 0
    for level in available_simd_levels():
        _core.set_simd_level(level)
        for d in (1, 3, 17, 97):
            for n, b in ((1, 1), (7, 3), (17, 9), (1029, 13), (300, 1)):
                for at_end in (True, False):
                    x = guarded((n, d), at_end)
                    x[:] = rng.standard_normal((n, d))
                    q = guarded((b, d), at_end)
                    q[:] = rng.standard_normal((b, d))
                    for metric in ("cosine", "dot"):
                        for xs in (x, x[1::2]):
                            if len(xs) == 0:
                                continue
                            got = recfast.topk(q, xs, 5, metric=metric)
                            want = recfast.reference.topk(np.array(q), np.array(xs), 5,
                                                          metric=metric)
                            assert_topk_equivalent(got, want, q, xs, metric, 5)
                            count += 1
    print("ok", count)
    """
)


def test_no_reads_outside_the_arrays():
    """Inputs placed against inaccessible pages: a kernel reading past a row, a tile or the
    array (before or after) would crash the child."""
    out = subprocess.run(
        [sys.executable, "-c", _GUARD_CHILD, os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, (out.returncode, out.stdout[-2000:], out.stderr[-4000:])
    assert out.stdout.startswith("ok"), out.stdout
