"""The CUDA backend: GPU vs CPU vs NumPy reference on the CPU tests' cases, and the parts that
run without a GPU (device selection, the disable switch, error messages, the tiling plan)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import recfast
from recfast import _cuda_backend, reference

needs_cuda = pytest.mark.skipif(
    not recfast.HAS_CUDA, reason=f"no CUDA GPU: {_cuda_backend.UNAVAILABLE_REASON}"
)

try:
    from recfast import _cuda  # type: ignore[attr-defined]
except ImportError:
    _cuda = None
needs_module = pytest.mark.skipif(_cuda is None, reason="recfast was built without recfast._cuda")


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    return torch


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _data(b: int, n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed)
    q = rng.standard_normal((b, d)).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return q, x


def _exact(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    if metric == "cosine":
        qn = np.linalg.norm(q64, axis=1, keepdims=True)
        xn = np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = np.divide(q64, qn, out=np.zeros_like(q64), where=qn > 0)
        x64 = np.divide(x64, xn, out=np.zeros_like(x64), where=xn > 0)
    with np.errstate(invalid="ignore", over="ignore"):
        return q64 @ x64.T


def _np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def assert_same_topk(got, want, q: np.ndarray, x: np.ndarray, metric: str) -> None:
    """Equal up to float32 accumulation error: same padding, scores within tolerance, and an id
    that differs only where its exact score ties the expected one within that tolerance."""
    gs, gi = _np(got[0]), _np(got[1])
    ws, wi = _np(want[0]), _np(want[1])
    assert gs.dtype == np.float32 and gi.dtype == np.int64
    assert gs.shape == ws.shape and gi.shape == wi.shape
    gs2, gi2, ws2, wi2 = (np.atleast_2d(a) for a in (gs, gi, ws, wi))
    q2 = np.atleast_2d(q)
    np.testing.assert_array_equal(gi2 == -1, wi2 == -1)
    assert np.all(np.isneginf(gs2[gi2 == -1]))
    assert not np.isnan(gs2).any()
    d = q2.shape[1]
    scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(ws2), ws2, 0)))))
    tol = 4e-6 * max(d, 1) * scale
    np.testing.assert_allclose(gs2, ws2, rtol=0, atol=tol)
    exact = _exact(q2, x, metric)
    rows, cols = np.nonzero(gi2 != wi2)
    for r, c in zip(rows, cols):
        assert abs(exact[r, gi2[r, c]] - ws2[r, c]) <= 2 * tol, (r, c, gi2[r, c], wi2[r, c])
    for r in range(gi2.shape[0]):
        valid = gi2[r][gi2[r] >= 0]
        assert len(np.unique(valid)) == len(valid)


def _three_way(q, x, k, metric, exclude=None, **kw):
    """GPU (numpy inputs, device='cuda'), CPU and reference results, GPU checked against both."""
    if kw:
        gpu = _cuda_backend.topk(q, x, k, metric=metric, exclude=exclude, device="cuda", **kw)
    else:
        gpu = recfast.topk(q, x, k, metric=metric, exclude=exclude, device="cuda")
    cpu = recfast.topk(q, x, k, metric=metric, exclude=exclude, device="cpu")
    ref = reference.topk(q, x, k, metric=metric, exclude=exclude)
    assert isinstance(gpu.scores, np.ndarray) and isinstance(gpu.ids, np.ndarray)
    assert_same_topk(gpu, ref, q, x, metric)
    assert_same_topk(gpu, cpu, q, x, metric)
    return gpu, cpu, ref


# --------------------------------------------------------------------------------------------
# Without a GPU


def test_disable_switch_hides_cuda():
    env = dict(os.environ, RECFAST_DISABLE_CUDA="1")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import recfast, recfast._cuda_backend as b; print(recfast.HAS_CUDA, b.UNAVAILABLE_REASON)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("False RECFAST_DISABLE_CUDA")


def test_has_cuda_consistent():
    assert isinstance(recfast.HAS_CUDA, bool)
    if recfast.HAS_CUDA:
        assert _cuda_backend.UNAVAILABLE_REASON is None
    else:
        assert (
            isinstance(_cuda_backend.UNAVAILABLE_REASON, str) and _cuda_backend.UNAVAILABLE_REASON
        )


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:", "cuda:x", 0, None, "cpu0"])
def test_device_argument_validated(device):
    q, x = _data(2, 10, 4)
    with pytest.raises(ValueError, match="device"):
        recfast.topk(q, x, 3, device=device)


def test_cuda_without_backend_raises(monkeypatch):
    monkeypatch.setattr(_cuda_backend, "HAS_CUDA", False)
    monkeypatch.setattr(_cuda_backend, "UNAVAILABLE_REASON", "no usable CUDA device (test)")
    q, x = _data(2, 10, 4)
    for dev in ("cuda", "cuda:0"):
        with pytest.raises(RuntimeError, match="CUDA backend is unavailable: no usable CUDA"):
            recfast.topk(q, x, 3, device=dev)


@pytest.mark.skipif(recfast.HAS_CUDA, reason="this machine has CUDA")
def test_cuda_requested_here_raises_clearly():
    q, x = _data(2, 10, 4)
    with pytest.raises(RuntimeError, match="CUDA backend is unavailable"):
        recfast.topk(q, x, 3, device="cuda")


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_numpy_inputs_stay_on_cpu(device):
    q, x = _data(5, 200, 8)
    a = recfast.topk(q, x, 7, device=device)
    b = recfast.topk(q, x, 7)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


@needs_module
def test_module_reports_no_device_without_driver():
    n = _cuda.device_count()
    assert n >= 0
    if n == 0:
        assert _cuda.availability()
    assert _cuda.runtime_version() >= 12000


@needs_module
@pytest.mark.parametrize("b", [1, 7, 1024, 4096])
@pytest.mark.parametrize("k", [1, 100, 2048, 3000])
def test_plan_memory_bound(b, k):
    # 10M items x up to 4096 queries: scratch stays under 1 GiB, the score matrix is never held.
    plan = _cuda.plan(b, 10_000_000, 128, k)
    assert plan["scratch_bytes"] <= 1 << 30
    assert plan["scratch_bytes"] < b * 10_000_000 * 4
    assert plan["query_tile"] <= 1024 and plan["item_chunk"] % 128 == 0
    assert plan["passes"] == -(-k // 2048) and plan["pass_k"] == min(k, 2048)
    assert plan["state_k"] >= plan["pass_k"]


@needs_module
def test_plan_small_budget_still_progresses():
    plan = _cuda.plan(77, 20000, 17, 50, scratch_bytes=1 << 16, max_query_tile=16)
    assert plan["query_tile"] == 16 and 128 <= plan["item_chunk"] < 20000


# --------------------------------------------------------------------------------------------
# On a GPU: the same cases as the CPU tests


@needs_cuda
@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("b", [1, 7, 77])
@pytest.mark.parametrize("d", [1, 3, 17, 97])
def test_random_shapes(metric, b, d):
    q, x = _data(b, 1000, d, seed=b * 100 + d)
    _three_way(q, x, 10, metric)


@needs_cuda
@pytest.mark.parametrize("k", [1, 31, 32, 33, 100, 257, 1000])
def test_k_values(k):
    q, x = _data(9, 3000, 24, seed=k)
    _three_way(q, x, k, "cosine")


@needs_cuda
def test_single_query_1d():
    q, x = _data(1, 500, 16, seed=3)
    gpu = recfast.topk(q[0], x, 12, device="cuda", exclude=[4, 5, 6])
    ref = reference.topk(q[0], x, 12, exclude=[4, 5, 6])
    assert gpu.ids.shape == (12,)
    assert_same_topk(gpu, ref, q, x, "cosine")


@needs_cuda
def test_exact_ties_follow_id_order():
    # Small integer vectors: every dot product is exact in float32, so all backends compute
    # identical scores and many of them tie; the ids must then match the reference exactly.
    rng = _rng(5)
    q = rng.integers(-2, 3, size=(13, 6)).astype(np.float32)
    x = rng.integers(-2, 3, size=(4000, 6)).astype(np.float32)
    for k in (1, 10, 100, 2500):
        gpu = recfast.topk(q, x, k, metric="dot", device="cuda")
        ref = reference.topk(q, x, k, metric="dot")
        np.testing.assert_array_equal(gpu.ids, ref.ids)
        np.testing.assert_array_equal(gpu.scores, ref.scores)


@needs_cuda
def test_duplicate_vectors_tie_by_id():
    q, base = _data(6, 50, 12, seed=7)
    x = np.repeat(base, 40, axis=0)  # each vector 40 times: ids 40j .. 40j+39 tie exactly
    gpu = recfast.topk(q, x, 60, device="cuda")
    s, i = gpu.scores, gpu.ids
    for r in range(s.shape[0]):
        for c in range(1, s.shape[1]):
            assert s[r, c] < s[r, c - 1] or (s[r, c] == s[r, c - 1] and i[r, c] > i[r, c - 1])
    _three_way(q, x, 60, "cosine")


@needs_cuda
@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_nan_rows(metric):
    q, x = _data(8, 600, 10, seed=11)
    x[[3, 50, 599]] = np.nan
    x[77, 4] = np.nan
    q[2] = np.nan
    gpu, _, _ = _three_way(q, x, 20, metric)
    assert np.all(gpu.ids[2] == -1) and np.all(np.isneginf(gpu.scores[2]))
    assert not np.isin(gpu.ids, [3, 50, 77, 599]).any()


@needs_cuda
def test_zero_vectors_cosine():
    q, x = _data(5, 300, 9, seed=13)
    x[[0, 10, 20]] = 0
    q[1] = 0
    gpu, _, _ = _three_way(q, x, 15, "cosine")
    np.testing.assert_array_equal(gpu.ids[1], np.arange(15))
    assert np.all(gpu.scores[1] == 0)


@needs_cuda
def test_infinite_values():
    q, x = _data(4, 200, 5, seed=17)
    x[7, 0] = np.inf
    x[8, 1] = -np.inf
    _three_way(q, x, 12, "dot")


@needs_cuda
@pytest.mark.parametrize("k", [5, 100, 3000])
def test_exclusions(k):
    q, x = _data(7, 4000, 17, seed=19)
    rng = _rng(21)
    rows = [rng.choice(4000, size=s, replace=False) for s in (0, 1, 10, 500, 3999, 0, 4000)]
    gpu, _, _ = _three_way(q, x, k, "cosine", exclude=rows)
    for r, ex in enumerate(rows):
        assert not np.isin(gpu.ids[r], ex).any()
    assert np.all(gpu.ids[6] == -1)  # all excluded
    assert (gpu.ids[4] >= 0).sum() == 1  # one item left
    mat = sp.csr_matrix(
        (
            np.ones(12),
            ([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 6, 6], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
        ),
        shape=(7, 4000),
    )
    _three_way(q, x, k, "dot", exclude=mat)


@needs_cuda
@pytest.mark.parametrize("n", [1, 5, 100, 2047])
def test_k_larger_than_n(n):
    q, x = _data(7, n, 3, seed=n)
    gpu, _, _ = _three_way(q, x, 2500, "cosine")
    assert np.all(gpu.ids[:, n:] == -1)


@needs_cuda
@pytest.mark.parametrize("n", [2500, 5000])
def test_large_k_multipass(n):
    q, x = _data(7, n, 17, seed=23)
    _three_way(q, x, 3000, "dot")
    _three_way(q, x, 4097, "cosine")


@needs_cuda
@pytest.mark.parametrize("k", [10, 300, 3000])
def test_many_chunks_and_query_tiles(k):
    # A tiny scratch budget forces hundreds of item chunks and several query tiles, so the
    # running threshold, the merges (bitonic and radix) and the per-tile state are all exercised.
    q, x = _data(77, 20000, 17, seed=29)
    rng = _rng(31)
    excl = [rng.choice(20000, size=50, replace=False) for _ in range(77)]
    _three_way(q, x, k, "cosine", exclude=excl, scratch_bytes=1 << 16, max_query_tile=16)
    _three_way(q, x, k, "dot", scratch_bytes=1 << 20, max_query_tile=64)
    _three_way(q, x, k, "cosine", exclude=excl)  # one chunk: the first merge is a radix select


@needs_cuda
def test_empty_and_input_kinds():
    q, x = _data(3, 50, 4, seed=37)
    empty = recfast.topk(q, x[:0], 5, device="cuda")
    assert np.all(empty.ids == -1) and np.all(np.isneginf(empty.scores))
    none = recfast.topk(q[:0], x, 5, device="cuda")
    assert none.ids.shape == (0, 5)
    _three_way(q.astype(np.float64), x.astype(np.float16).astype(np.float64), 5, "dot")
    xs = np.asfortranarray(x)
    _three_way(q, xs, 5, "cosine")
    ro = x.copy()
    ro.flags.writeable = False
    _three_way(q, ro, 5, "cosine")


@needs_cuda
def test_cuda_error_carries_file_and_line():
    q, x = _data(2, 10, 4)
    with pytest.raises(RuntimeError, match=r"CUDA error cudaErrorInvalidDevice .* at .*:\d+ in"):
        _cuda.topk_host(q, x, 3, "dot", None, None, 999)


# --------------------------------------------------------------------------------------------
# torch CUDA tensors: no copy in, torch tensors out


@needs_cuda
@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_torch_cuda_tensors(metric):
    torch = _torch_cuda()
    q, x = _data(77, 3000, 97, seed=41)
    tq, tx = torch.from_numpy(q).cuda(), torch.from_numpy(x).cuda()
    excl = [np.arange(r) for r in range(77)]
    got = recfast.topk(tq, tx, 50, metric=metric, exclude=excl)  # device="auto"
    assert got.scores.is_cuda and got.ids.is_cuda
    assert got.scores.dtype == torch.float32 and got.ids.dtype == torch.int64
    ref = reference.topk(q, x, 50, metric=metric, exclude=excl)
    assert_same_topk(got, ref, q, x, metric)
    one = recfast.topk(tq[3], tx, 50, metric=metric, exclude=excl[3])
    assert tuple(one.ids.shape) == (50,)
    np.testing.assert_array_equal(one.ids.cpu().numpy(), got.ids[3].cpu().numpy())


@needs_cuda
def test_torch_strided_rows_and_mixed_inputs():
    torch = _torch_cuda()
    q, x = _data(9, 2000, 16, seed=43)
    big = torch.zeros((2000, 40), device="cuda")
    big[:, 5:21] = torch.from_numpy(x).cuda()
    tx = big[:, 5:21]  # row stride 40, contiguous rows: used in place
    got = recfast.topk(torch.from_numpy(q).cuda(), tx, 30)
    assert_same_topk(got, reference.topk(q, x, 30), q, x, "cosine")
    mixed = recfast.topk(torch.from_numpy(q).cuda(), x, 30)  # numpy items copied once
    np.testing.assert_array_equal(mixed.ids.cpu().numpy(), got.ids.cpu().numpy())
    with pytest.raises(ValueError, match="contiguous"):
        recfast.topk(torch.from_numpy(q).cuda().t().contiguous().t(), tx, 3)
    with pytest.raises(ValueError, match="device='cpu'"):
        recfast.topk(torch.from_numpy(q).cuda(), x, 3, device="cpu")
