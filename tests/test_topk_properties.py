"""Property tests (hypothesis): random small problems against the reference, permutation
invariance, and merging item shards."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import recfast
from recfast import _core, reference

from helpers import assert_topk_equivalent, available_simd_levels

LEVELS = available_simd_levels()
# Derandomization is left to the profile (tests/conftest.py: derandomized in CI).
SETTINGS = dict(deadline=None, max_examples=60)


class Problem(tuple):
    """(queries, items, k, metric, exclude, num_threads, level), plus .kind of data."""

    def __new__(cls, *fields):
        obj = super().__new__(cls, fields[:-1])
        obj.kind = fields[-1]
        return obj


@contextlib.contextmanager
def simd(level):
    before = _core.simd_level()
    _core.set_simd_level(level)
    try:
        yield
    finally:
        _core.set_simd_level(before)


@st.composite
def problems(draw, max_b=40, max_n=300, max_d=40):
    """(queries, items, k, metric, exclude, num_threads, level)."""
    b = draw(st.integers(0, max_b))
    n = draw(st.integers(0, max_n))
    d = draw(st.integers(1, max_d))
    k = draw(st.integers(1, n + 5))
    metric = draw(st.sampled_from(["cosine", "dot"]))
    kind = draw(st.sampled_from(["normal", "small ints", "few distinct rows"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "normal":
        q = rng.standard_normal((b, d)).astype(np.float32)
        x = rng.standard_normal((n, d)).astype(np.float32)
    elif kind == "small ints":  # exact arithmetic, many exact ties, zero vectors
        q = rng.integers(-2, 3, (b, d)).astype(np.float32)
        x = rng.integers(-2, 3, (n, d)).astype(np.float32)
    else:
        base = rng.standard_normal((3, d)).astype(np.float32)
        q = rng.standard_normal((b, d)).astype(np.float32)
        x = base[rng.integers(0, 3, n)] if n else np.empty((0, d), np.float32)
    ex_kind = draw(st.sampled_from(["none", "lists", "csr", "coo"]))
    exclude = None
    if ex_kind != "none":
        density = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
        mask = rng.random((b, n)) < density
        if ex_kind == "lists":
            exclude = [np.flatnonzero(m) for m in mask]
        elif ex_kind == "csr":
            exclude = sp.csr_matrix(mask.astype(np.int8))
        else:
            exclude = sp.coo_matrix(mask)
    threads = draw(st.sampled_from([None, 1, 2, 3]))
    level = draw(st.sampled_from(LEVELS))
    return Problem(q, x, k, metric, exclude, threads, level, kind)


@settings(**SETTINGS)
@given(problems())
def test_matches_reference(p):
    q, x, k, metric, exclude, threads, level = p
    with simd(level):
        got = recfast.topk(q, x, k, metric=metric, exclude=exclude, num_threads=threads)
    want = reference.topk(q, x, k, metric=metric, exclude=exclude)
    assert_topk_equivalent(got, want, q, x, metric, k, exclude)
    if p.kind == "small ints" and metric == "dot":
        # Exact arithmetic (|sums| <= 160) in any order: scores exact, the tie rule decides
        # every id, including which of several tied items make the cut at the k-th place.
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.scores, want.scores)
    if p.kind == "few distinct rows":
        # Identical item vectors score identically: within each group of identical items the
        # ones returned are the lowest ids of the group that are not excluded.
        _, group = np.unique(x, axis=0, return_inverse=True)
        group = group.ravel()
        mask = np.zeros((q.shape[0], x.shape[0]), bool)
        if exclude is not None:
            if sp.issparse(exclude):
                mask = exclude.toarray() != 0
            else:
                for r, ids in enumerate(exclude):
                    mask[r, ids] = True
        for r in range(q.shape[0]):
            ids = got.ids[r][got.ids[r] >= 0]
            for g in np.unique(group[ids]):
                members = np.flatnonzero((group == g) & ~mask[r])
                taken = np.isin(members, ids)
                assert taken[: taken.sum()].all(), (r, g, members, ids)
    if q.shape[0]:  # the first query alone, 1-D
        ex0 = None
        if exclude is not None:
            ex0 = exclude.tocsr()[0:1] if sp.issparse(exclude) else exclude[0]
        with simd(level):
            one = recfast.topk(q[0], x, k, metric=metric, exclude=ex0, num_threads=threads)
        want1 = reference.topk(q[0], x, k, metric=metric, exclude=ex0)
        assert_topk_equivalent(one, want1, q[0], x, metric, k, ex0)


@settings(**SETTINGS)
@given(problems(max_n=400), st.data())
def test_permuting_items_permutes_ids(p, data):
    q, x, k, metric, exclude, threads, level = p
    n = x.shape[0]
    assume(n > 0 and q.shape[0] > 0)
    seed = data.draw(st.integers(0, 2**32 - 1))
    perm = np.random.default_rng(seed).permutation(n)
    kk = min(k + 1, n)
    with simd(level):
        base = recfast.topk(q, x, kk, metric=metric)
        moved = recfast.topk(q, x[perm], kk, metric=metric, num_threads=threads)
    # Item j of x[perm] is item perm[j] of x. Scores of a pair do not depend on the position,
    # so the results agree exactly unless two scores are exactly tied.
    s = base.scores
    assume(not (s[:, 1:] == s[:, :-1]).any())
    kept = min(k, n)
    np.testing.assert_array_equal(perm[moved.ids[:, :kept]], base.ids[:, :kept])
    np.testing.assert_array_equal(moved.scores[:, :kept], base.scores[:, :kept])


@settings(**SETTINGS)
@given(problems(max_n=400), st.data())
def test_merge_of_shards_equals_whole(p, data):
    q, x, k, metric, exclude, threads, level = p
    n = x.shape[0]
    n_cuts = data.draw(st.integers(0, 4))
    cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=n_cuts, max_size=n_cuts)))
    bounds = [0, *cuts, n]
    mask = None
    if exclude is not None:
        if sp.issparse(exclude):
            mask = exclude.toarray() != 0
        else:
            mask = np.zeros((q.shape[0], n), bool)
            for r, ids in enumerate(exclude):
                mask[r, ids] = True
    with simd(level):
        whole = recfast.topk(q, x, k, metric=metric, exclude=exclude, num_threads=threads)
        parts = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            ex = None if mask is None else sp.csr_matrix(mask[:, a:b])
            part = recfast.topk(q, x[a:b], k, metric=metric, exclude=ex, num_threads=threads)
            parts.append((part, a))
    merged = recfast.merge_topk(parts, k)
    np.testing.assert_array_equal(merged.ids, whole.ids)
    np.testing.assert_array_equal(merged.scores, whole.scores)
    assert merged.scores.dtype == np.float32 and merged.ids.dtype == np.int64
    if q.shape[0]:  # 1-D results merge to 1-D
        ones = [
            (recfast.topk(q[0], x[a:b], k, metric=metric), a)
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        merged1 = recfast.merge_topk(ones, k)
        np.testing.assert_array_equal(merged1.ids, recfast.topk(q[0], x, k, metric=metric).ids)


@settings(deadline=None, max_examples=30)
@given(problems(max_n=200), st.integers(1, 8))
def test_num_threads_does_not_change_results(p, threads):
    q, x, k, metric, exclude, _, level = p
    with simd(level):
        one = recfast.topk(q, x, k, metric=metric, exclude=exclude, num_threads=1)
        many = recfast.topk(q, x, k, metric=metric, exclude=exclude, num_threads=threads)
    np.testing.assert_array_equal(one.ids, many.ids)
    np.testing.assert_array_equal(one.scores, many.scores)


# --- the hypothesis profile ------------------------------------------------------------------

_PROFILE_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); import conftest;"
    "from hypothesis import settings; d = settings.default;"
    "print(d.derandomize, d.deadline, d.print_blob)"
)


def _default_settings_in_child(ci: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    out = subprocess.run(
        [sys.executable, "-c", _PROFILE_CHILD, os.path.dirname(__file__)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_ci_variable_selects_the_derandomized_profile():
    """With CI set, the tests' settings are derandomized, without deadline, printing blobs;
    without it, hypothesis' default profile (random examples, its default deadline)."""
    assert _default_settings_in_child("true") == ["True", "None", "True"]
    assert _default_settings_in_child("1") == ["True", "None", "True"]
    derandomize, deadline, _ = _default_settings_in_child(None)
    assert derandomize == "False" and deadline != "None"
    # The property tests above inherit the loaded profile's derandomize (none overrides it).
    ci = bool(os.environ.get("CI"))
    assert settings.default.derandomize is ci
    for test in (
        test_matches_reference,
        test_permuting_items_permutes_ids,
        test_merge_of_shards_equals_whole,
        test_num_threads_does_not_change_results,
    ):
        assert test._hypothesis_internal_use_settings.derandomize is ci, test.__name__
