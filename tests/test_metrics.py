"""Golden tests for recfast.metrics: every expected value is worked out by hand below."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recfast import TopK
from recfast.metrics import (
    coverage,
    evaluate,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

# 4 users, 6 items. User 2 has no target and is skipped by every metric but coverage.
TARGETS = {0: [1, 3], 1: [0], 2: [], 3: [2, 4, 5]}
RANKED = np.array(
    [
        [1, 2, 3, -1],  # hits 1 0 1 0
        [5, 4, -1, -1],  # hits 0 0 0 0
        [0, 1, 2, 3],  # no targets
        [0, 5, 4, 2],  # hits 0 1 1 1
    ]
)
L3 = 1 / math.log2(3)  # discount at rank 1
L4 = 1 / math.log2(4)  # rank 2
L5 = 1 / math.log2(5)  # rank 3


def targets() -> sp.csr_matrix:
    rows = [u for u, items in TARGETS.items() for _ in items]
    cols = [i for items in TARGETS.values() for i in items]
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(4, 6))


def test_recall_min_denominator() -> None:
    # k=2: u0 1 hit / min(2,2); u1 0; u3 1 hit / min(2,3)
    assert recall_at_k(RANKED, targets(), 2) == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    # k=4: u0 2/2; u1 0; u3 3/3
    assert recall_at_k(RANKED, targets(), 4) == pytest.approx(2 / 3)


def test_recall_all_denominator() -> None:
    # k=2: u0 1/2; u1 0; u3 1/3
    assert recall_at_k(RANKED, targets(), 2, denominator="all") == pytest.approx(
        (1 / 2 + 0 + 1 / 3) / 3
    )
    assert recall_at_k(RANKED, targets(), 4, denominator="all") == pytest.approx(2 / 3)


def test_ndcg() -> None:
    # k=2: u0 DCG 1, IDCG 1 + L3; u3 DCG L3, IDCG 1 + L3
    assert ndcg_at_k(RANKED, targets(), 2) == pytest.approx((1 / (1 + L3) + 0 + L3 / (1 + L3)) / 3)
    # k=4: u0 DCG 1 + L4 over IDCG 1 + L3 (2 targets); u3 DCG L3 + L4 + L5 over 1 + L3 + L4
    assert ndcg_at_k(RANKED, targets(), 4) == pytest.approx(
        ((1 + L4) / (1 + L3) + 0 + (L3 + L4 + L5) / (1 + L3 + L4)) / 3
    )


def test_precision_hit_rate_mrr() -> None:
    assert precision_at_k(RANKED, targets(), 4) == pytest.approx((2 / 4 + 0 + 3 / 4) / 3)
    assert precision_at_k(RANKED, targets(), 1) == pytest.approx((1 + 0 + 0) / 3)
    assert hit_rate_at_k(RANKED, targets(), 1) == pytest.approx(1 / 3)
    assert hit_rate_at_k(RANKED, targets(), 2) == pytest.approx(2 / 3)
    # first hit: u0 rank 0 -> 1; u1 none -> 0; u3 rank 1 -> 1/2
    assert mrr(RANKED, targets()) == pytest.approx((1 + 0 + 1 / 2) / 3)
    assert mrr(RANKED, targets(), k=1) == pytest.approx(1 / 3)


def test_coverage() -> None:
    assert coverage(RANKED, 6) == pytest.approx(6 / 6)
    # first column: items 1, 5, 0, 0 -> {0, 1, 5}
    assert coverage(RANKED, 6, k=1) == pytest.approx(3 / 6)
    assert coverage(np.full((2, 3), -1), 6) == 0.0
    with pytest.raises(ValueError, match="n_items"):
        coverage(RANKED, 0)


def test_perfect_and_padding_only() -> None:
    t = targets()
    perfect = np.array([[1, 3, -1], [0, -1, -1], [-1, -1, -1], [2, 4, 5]])
    assert recall_at_k(perfect, t, 3) == pytest.approx(1.0)
    assert ndcg_at_k(perfect, t, 3) == pytest.approx(1.0)
    pad = np.full((4, 3), -1)
    assert recall_at_k(pad, t, 3) == 0.0
    assert ndcg_at_k(pad, t, 3) == 0.0
    assert mrr(pad, t) == 0.0


def test_explicit_zeros_and_duplicates_in_targets() -> None:
    t = sp.csr_matrix(
        (np.array([1.0, 0.0, 2.0], np.float32), (np.array([0, 0, 0]), np.array([1, 2, 1]))),
        shape=(1, 4),
    )  # item 1 stored twice, item 2 an explicit zero
    assert recall_at_k(np.array([[2, 1]]), t, 2) == pytest.approx(1.0)
    assert precision_at_k(np.array([[2, 1]]), t, 2) == pytest.approx(0.5)


def test_validation_messages() -> None:
    t = targets()
    with pytest.raises(ValueError, match="k must be a positive int"):
        recall_at_k(RANKED, t, 0)
    with pytest.raises(ValueError, match="only 4 columns"):
        ndcg_at_k(RANKED, t, 5)
    with pytest.raises(ValueError, match="rows but targets has"):
        recall_at_k(RANKED[:2], t, 2)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        recall_at_k(RANKED + 10, t, 2)
    with pytest.raises(ValueError, match="denominator"):
        recall_at_k(RANKED, t, 2, denominator="max")
    with pytest.raises(ValueError, match="no user has a target"):
        recall_at_k(RANKED, sp.csr_matrix((4, 6), dtype=np.float32), 2)
    with pytest.raises(TypeError, match="targets"):
        recall_at_k(RANKED, t.toarray(), 2)
    with pytest.raises(TypeError, match="integers"):
        recall_at_k(RANKED.astype(float), t, 2)


class _FixedModel:
    """Returns RANKED's rows for whichever users are asked (by matching input rows)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def recommend(self, X: sp.csr_matrix, k: int = 10, **_: object) -> TopK:
        self.calls.append(k)
        ids = RANKED[[0, 1, 3]][:, :k]  # evaluate passes only the users with targets
        assert X.shape[0] == 3
        return TopK(np.zeros(ids.shape, np.float32), ids)


def test_evaluate() -> None:
    model = _FixedModel()
    inp = sp.csr_matrix((4, 6), dtype=np.float32)
    out = evaluate(model, inp, targets(), ks=(2, 4))
    assert model.calls == [4]
    assert out["recall@2"] == pytest.approx(1 / 3)
    assert out["recall@4"] == pytest.approx(2 / 3)
    assert out["ndcg@2"] == pytest.approx(ndcg_at_k(RANKED, targets(), 2))
    assert out["precision@4"] == pytest.approx(5 / 12)
    assert out["hit_rate@2"] == pytest.approx(2 / 3)
    assert out["mrr"] == pytest.approx(0.5)
    # coverage over the evaluated users (u0, u1, u3): {1,2,3} | {5,4} | {0,5,4,2}
    assert out["coverage@4"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        evaluate(model, sp.csr_matrix((3, 6)), targets(), ks=(2,))


def _loop_metrics(ranked: np.ndarray, t: sp.csr_matrix, k: int) -> dict[str, float]:
    """The definitions, one user at a time."""
    acc: dict[str, list[float]] = {"r": [], "ra": [], "n": [], "p": [], "h": [], "m": []}
    for u in range(t.shape[0]):
        tset = set(t.indices[t.indptr[u] : t.indptr[u + 1]].tolist())
        if not tset:
            continue
        row = [i for i in ranked[u, :k].tolist()]
        hits = [1.0 if i >= 0 and i in tset else 0.0 for i in row]
        acc["r"].append(sum(hits) / min(k, len(tset)))
        acc["ra"].append(sum(hits) / len(tset))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(tset))))
        acc["n"].append(dcg / idcg)
        acc["p"].append(sum(hits) / k)
        acc["h"].append(float(any(hits)))
        first = next((j for j, h in enumerate(hits) if h), None)
        acc["m"].append(0.0 if first is None else 1 / (first + 1))
    return {key: float(np.mean(v)) for key, v in acc.items()}


@pytest.mark.parametrize("seed", range(5))
def test_vectorized_equals_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 37, 23, 9
    t = sp.random(n_users, n_items, density=0.15, random_state=rng, format="csr")
    ranked = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    ranked[rng.random(ranked.shape) < 0.1] = -1  # some padding (ids stay unique per row)
    want = _loop_metrics(ranked, t, k)
    assert recall_at_k(ranked, t, k) == pytest.approx(want["r"])
    assert recall_at_k(ranked, t, k, denominator="all") == pytest.approx(want["ra"])
    assert ndcg_at_k(ranked, t, k) == pytest.approx(want["n"])
    assert precision_at_k(ranked, t, k) == pytest.approx(want["p"])
    assert hit_rate_at_k(ranked, t, k) == pytest.approx(want["h"])
    assert mrr(ranked, t, k) == pytest.approx(want["m"])
