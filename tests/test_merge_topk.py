"""merge_topk: bad parts are refused with an error naming parts[i], and merging the top-k of
item shards gives the top-k of all items."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recfast
from recfast import TopK

INT64_MAX = int(np.iinfo(np.int64).max)
Q = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
X = np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32)
PART = recfast.topk(Q, X, 4)


@pytest.mark.parametrize("offset", [-1, -(2**40), 2**63, 2**64, 10**30])
def test_offset_out_of_range(offset):
    with pytest.raises(ValueError, match=r"parts\[1\].*id_offset"):
        recfast.merge_topk([(PART, 0), (PART, offset)], 4)


@pytest.mark.parametrize(
    "offset", ["3", 3.0, 2.5, True, False, None, np.float64(1), [3], np.array([3])]
)
def test_offset_not_an_integer(offset):
    with pytest.raises(TypeError, match=r"parts\[1\].*id_offset"):
        recfast.merge_topk([(PART, 0), (PART, offset)], 4)


@pytest.mark.parametrize("offset", [0, 7, np.int64(7), np.uint32(7), 2**62])
def test_integer_offsets_are_accepted(offset):
    r = recfast.merge_topk([(PART, offset)], 4)
    np.testing.assert_array_equal(r.ids, PART.ids + int(offset))


def test_id_plus_offset_must_fit_in_int64():
    hi = int(PART.ids.max())
    # The largest offset that fits: the best id lands exactly on int64's maximum.
    r = recfast.merge_topk([(PART, INT64_MAX - hi)], 4)
    assert r.ids.max() == INT64_MAX and (r.ids >= 0).all()
    with pytest.raises(ValueError, match=r"parts\[0\].*int64"):
        recfast.merge_topk([(PART, INT64_MAX - hi + 1)], 4)
    with pytest.raises(ValueError, match=r"parts\[1\].*int64"):
        recfast.merge_topk([(PART, 0), (PART, INT64_MAX)], 4)
    # Padding carries no id: any offset in range is fine.
    pad = TopK(np.full((3, 2), -np.inf, np.float32), np.full((3, 2), -1, np.int64))
    r = recfast.merge_topk([(pad, INT64_MAX), (PART, 0)], 4)
    np.testing.assert_array_equal(r.ids, PART.ids)


def test_uint64_ids_beyond_int64():
    big = TopK(np.zeros(2, np.float32), np.array([1, 2**63], np.uint64))
    with pytest.raises(ValueError, match=r"parts\[0\].*int64"):
        recfast.merge_topk([(big, 0)], 2)


@pytest.mark.parametrize(
    "dtype", [np.complex64, np.complex128, np.bool_, object, "U3", "datetime64[s]"]
)
def test_scores_must_be_real_numbers(dtype):
    bad = TopK(PART.scores.astype(dtype), PART.ids)
    with pytest.raises(TypeError, match=r"parts\[1\].*scores"):
        recfast.merge_topk([(PART, 0), (bad, 10)], 4)


def test_complex_scores_are_not_truncated_silently():
    s = PART.scores.astype(np.complex64) + 1j
    with pytest.raises(TypeError, match=r"parts\[0\].*complex"):
        recfast.merge_topk([(TopK(s, PART.ids), 0)], 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.uint8])
def test_real_scores_are_accepted(dtype):
    s = np.arange(12, dtype=dtype).reshape(3, 4)[:, ::-1]
    r = recfast.merge_topk([(TopK(s, np.tile(np.arange(4), (3, 1))), 5)], 2)
    assert r.scores.dtype == np.float32
    np.testing.assert_array_equal(r.ids, np.full((3, 2), [5, 6]))


@pytest.mark.parametrize(
    "ids",
    [
        PART.ids.astype(np.float64),
        PART.ids.astype(bool),
        PART.ids.astype(str),
        PART.ids.astype(object),
    ],
)
def test_ids_must_be_integers(ids):
    with pytest.raises(TypeError, match=r"parts\[1\].*ids"):
        recfast.merge_topk([(PART, 0), (TopK(PART.scores, ids), 10)], 4)


def test_ids_below_padding():
    ids = PART.ids.copy()
    ids[1, 2] = -2
    with pytest.raises(ValueError, match=r"parts\[0\].*ids"):
        recfast.merge_topk([(TopK(PART.scores, ids), 0)], 4)


def test_shape_mismatch_and_mixed_ranks():
    with pytest.raises(ValueError, match=r"parts\[1\].*shape"):
        recfast.merge_topk([(PART, 0), (TopK(PART.scores, PART.ids[:, :2]), 10)], 4)
    with pytest.raises(ValueError, match=r"parts\[0\].*shape"):
        recfast.merge_topk([(TopK(PART.scores[None], PART.ids[None]), 0)], 4)
    one = recfast.topk(Q[0], X, 4)
    with pytest.raises(ValueError, match="parts.*1-D"):
        recfast.merge_topk([(one, 0), (TopK(PART.scores[:1], PART.ids[:1]), 10)], 4)


@pytest.mark.parametrize("part", [PART, (PART,), (PART, 0, 1), [PART, 0], "ab", (PART.scores, 0)])
def test_part_not_a_pair(part):
    with pytest.raises(TypeError, match=r"parts\[0\]"):
        recfast.merge_topk([part], 4)


def test_parts_not_a_sequence():
    with pytest.raises(TypeError, match="parts"):
        recfast.merge_topk(None, 4)
    with pytest.raises(TypeError, match="parts"):
        recfast.merge_topk(iter([(PART, 0)]), 4)


@settings(deadline=None, max_examples=60)
@given(st.data())
def test_merge_of_shards_equals_topk_of_all_items(data):
    b = data.draw(st.integers(0, 12), label="B")
    n = data.draw(st.integers(1, 200), label="N")
    d = data.draw(st.integers(1, 24), label="d")
    metric = data.draw(st.sampled_from(["cosine", "dot"]), label="metric")
    n_cuts = data.draw(st.integers(1, 6), label="cuts")
    cuts = data.draw(st.lists(st.integers(0, n), min_size=n_cuts, max_size=n_cuts), label="at")
    bounds = [0, *sorted(cuts), n]
    largest = max(hi - lo for lo, hi in zip(bounds[:-1], bounds[1:]))
    k = data.draw(st.integers(largest + 1, largest + 1 + n), label="k")  # above every shard
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    if data.draw(st.booleans(), label="small ints"):  # exact ties across shards
        q = rng.integers(-2, 3, (b, d)).astype(np.float32)
        x = rng.integers(-2, 3, (n, d)).astype(np.float32)
    else:
        q = rng.standard_normal((b, d)).astype(np.float32)
        x = rng.standard_normal((n, d)).astype(np.float32)
    whole = recfast.topk(q, x, k, metric=metric)
    parts = [
        (recfast.topk(q, x[lo:hi], k, metric=metric), lo) for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    merged = recfast.merge_topk(parts, k)
    assert merged.ids.shape == (b, k) and merged.ids.dtype == np.int64
    assert merged.scores.dtype == np.float32
    np.testing.assert_array_equal(merged.ids, whole.ids)
    np.testing.assert_array_equal(merged.scores, whole.scores)
    if b:
        ones = [
            (recfast.topk(q[0], x[lo:hi], k, metric=metric), lo)
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ]
        merged1 = recfast.merge_topk(ones, k)
        # Against a 1-D query's own result (the batch path may round a cosine differently).
        whole1 = recfast.topk(q[0], x, k, metric=metric)
        assert merged1.ids.shape == (k,)
        np.testing.assert_array_equal(merged1.ids, whole1.ids)
        np.testing.assert_array_equal(merged1.scores, whole1.scores)
