"""Shared assertion helper for top-k tests: one definition of "equivalent to the reference".

`assert_topk_equivalent(got, want, queries, items, metric, k, exclude=None)` checks a top-k
result `got` against the reference result `want` under the contract of docs/topk-contract.md:

* shapes and dtypes (float32 scores, int64 ids; 1-D for a 1-D query);
* padding: the number of id -1 entries per row equals the reference's (eligibility is exact),
  padding sits at the tail with score -inf;
* no NaN score, ids unique per row and in [0, N), no excluded id (exclusions are decoded here
  independently of recfast: a sparse matrix excludes its nonzero entries after summing
  duplicates; a sequence excludes the listed ids);
* each row sorted by score descending, equal scores in increasing id order;
* scores close to the reference's: |got - want| <= atol + rtol * |want| with
  atol = 1e-6 * d * scale (scale 1 for cosine, max|q| * max|x| over row norms for dot) and
  rtol = 1e-6;
* each returned score is the true (float64) score of the returned id, within that tolerance;
* ids equal to the reference's, except at a place where the true float64 score of the id
  returned is within the tolerance of the reference score at that place (a near-tie).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

RTOL = 1e-6
ATOL_PER_DIM = 1e-6


def to_numpy(x: Any) -> np.ndarray:
    """float64 copy of an input (numpy array, memmap, torch tensor, list)."""
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().cpu().float().numpy()
    # Inputs reach the kernels as float32: round to float32 first, then compute in float64.
    return np.asarray(x).astype(np.float32).astype(np.float64)


def excluded_sets(
    exclude: Any, n_queries: int, n_items: int, single: bool = False
) -> list[set[int]]:
    """Per-query excluded ids, decoded without recfast's own code. For a single (1-D) query a
    flat list of ids is its exclusion list."""
    if exclude is None:
        return [set() for _ in range(n_queries)]
    if sp.issparse(exclude):
        dense = np.asarray(exclude.toarray())  # toarray sums duplicates
        assert dense.shape == (n_queries, n_items)
        return [set(np.flatnonzero(dense[r] != 0).tolist()) for r in range(n_queries)]
    if single and all(np.ndim(v) == 0 for v in exclude):
        exclude = [exclude]  # a flat id list (maybe empty) for a single query
    return [set(np.asarray(row, dtype=np.int64).ravel().tolist()) for row in exclude]


def score_tolerance(q64: np.ndarray, x64: np.ndarray, metric: str) -> float:
    d = x64.shape[1]
    if metric == "cosine":
        scale = 1.0
    else:

        def max_norm(a: np.ndarray) -> float:
            finite = a[np.isfinite(a).all(axis=1)]
            return float(np.sqrt((finite * finite).sum(axis=1)).max()) if len(finite) else 0.0

        scale = max_norm(q64) * max_norm(x64)
    return ATOL_PER_DIM * d * max(scale, 1e-30)


def true_scores(
    q64: np.ndarray, x64: np.ndarray, metric: str, rows: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """float64 scores of (query rows[i], item ids[i]) pairs."""
    q = q64[rows]
    x = x64[ids]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        dots = np.einsum("ij,ij->i", q, x)
        if metric == "cosine":
            qn = np.sqrt(np.einsum("ij,ij->i", q, q))
            xn = np.sqrt(np.einsum("ij,ij->i", x, x))
            denom = qn * xn
            dots = np.where(denom > 0, dots / np.where(denom > 0, denom, 1.0), 0.0)
            # A row holding NaN/inf has no finite norm: its scores are NaN in float32 too.
            dots = np.where(np.isfinite(qn) & np.isfinite(xn), dots, np.nan)
    return dots


def _close(a: np.ndarray, b: np.ndarray, atol: float) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):
        return (a == b) | (np.abs(a - b) <= atol + RTOL * np.abs(b))


def assert_topk_equivalent(
    got: Any, want: Any, queries: Any, items: Any, metric: str, k: int, exclude: Any = None
) -> None:
    gs, gi = np.asarray(got[0]), np.asarray(got[1])
    ws, wi = np.asarray(want[0]), np.asarray(want[1])
    assert gs.dtype == np.float32, f"scores dtype {gs.dtype}"
    assert gi.dtype == np.int64, f"ids dtype {gi.dtype}"
    q64 = to_numpy(queries)
    x64 = to_numpy(items)
    single = q64.ndim == 1
    expect_shape = (k,) if single else (q64.shape[0], k)
    assert gs.shape == expect_shape, f"scores shape {gs.shape}, expected {expect_shape}"
    assert gi.shape == expect_shape, f"ids shape {gi.shape}, expected {expect_shape}"
    assert ws.shape == expect_shape and wi.shape == expect_shape
    if single:
        q64 = q64[None, :]
        gs, gi, ws, wi = gs[None], gi[None], ws[None], wi[None]
    b, n = q64.shape[0], x64.shape[0]
    atol = score_tolerance(q64, x64, metric)
    excluded = excluded_sets(exclude, b, n, single)

    for r in range(b):
        s, i, s_ref, i_ref = gs[r], gi[r], ws[r], wi[r]
        where = f"row {r}"
        assert not np.isnan(s).any(), f"{where}: NaN score returned: {s}"
        pad, pad_ref = i == -1, i_ref == -1
        assert pad.sum() == pad_ref.sum(), (
            f"{where}: {pad.sum()} padding entries, reference has {pad_ref.sum()}\n"
            f"ids {i}\nref {i_ref}"
        )
        m = int((~pad).sum())
        assert not pad[:m].any(), f"{where}: padding before real ids: {i}"
        assert np.all(np.isneginf(s[m:])), f"{where}: padding scores must be -inf: {s[m:]}"
        real_i, real_s = i[:m], s[:m]
        assert np.all((real_i >= 0) & (real_i < n)), f"{where}: id out of [0, {n}): {real_i}"
        assert len(np.unique(real_i)) == m, f"{where}: repeated ids {real_i}"
        bad = set(real_i.tolist()) & excluded[r]
        assert not bad, f"{where}: excluded ids returned: {sorted(bad)}"
        # Sorted by score descending, ties by increasing id.
        if m > 1:
            a_s, b_s = real_s[:-1], real_s[1:]
            ok = (a_s > b_s) | ((a_s == b_s) & (real_i[:-1] < real_i[1:]))
            assert ok.all(), (
                f"{where}: not sorted by (score desc, id asc) at "
                f"{np.flatnonzero(~ok).tolist()}: scores {real_s} ids {real_i}"
            )
        # Scores close to the reference's, place by place.
        close = _close(real_s, s_ref[:m], atol)
        assert close.all(), (
            f"{where}: scores differ from the reference beyond {atol:.3g} at places "
            f"{np.flatnonzero(~close).tolist()}:\n got {real_s}\n ref {s_ref[:m]}"
        )
        # Each returned score is the returned id's true score.
        t = true_scores(q64, x64, metric, np.full(m, r), real_i)
        own = _close(real_s, t, atol)
        assert own.all(), (
            f"{where}: returned scores are not the scores of the returned ids at places "
            f"{np.flatnonzero(~own).tolist()}:\n got {real_s}\n true {t}\n ids {real_i}"
        )
        # Ids equal the reference's except within a near-tie.
        differ = np.flatnonzero(real_i != i_ref[:m])
        if len(differ):
            near = _close(t[differ], s_ref[differ], atol)
            assert near.all(), (
                f"{where}: ids differ from the reference at places {differ[~near].tolist()} "
                f"where scores are not tied within {atol:.3g}:\n got ids {real_i}\n"
                f" ref ids {i_ref[:m]}\n got scores {real_s}\n ref scores {s_ref[:m]}\n"
                f" true scores of got ids {t}"
            )


def random_data(seed: int, b: int, n: int, d: int, dtype: Any = np.float32):
    """Standard normal queries (b, d) and items (n, d), seeded."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, d)).astype(dtype)
    x = rng.standard_normal((n, d)).astype(dtype)
    return q, x


LEVEL_ORDER = ("generic", "avx2", "avx512")


def available_simd_levels() -> list[str]:
    """Every instruction set this machine (after RECFAST_SIMD) can run, lowest first, then the
    test-only "avx512_emulated" (the AVX-512 top-k kernels over SIMDe) in builds with
    RECFAST_SIMDE_TEST=ON; test_kernel_coverage.py checks in CI that none is missing."""
    from recfast import _core

    return list(_core._simd_levels())
