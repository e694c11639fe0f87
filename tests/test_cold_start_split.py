"""recfast.data.cold_start_split: cold items vanish from training, targets are exactly theirs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recfast.data import cold_start_split


def random_interactions(seed: int, n_users: int = 60, n_items: int = 40) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.15) * rng.integers(1, 5, (n_users, n_items))
    dense[:, -3:] = 0  # items nobody touched are never drawn as cold
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("frac", [0.05, 0.2, 0.5, 0.9])
def test_cold_items_are_held_out_entirely(seed: int, frac: float) -> None:
    X = random_interactions(seed)
    s = cold_start_split(X, frac_items=frac, seed=seed)
    active = np.flatnonzero(np.asarray((X != 0).sum(0)).ravel())
    assert len(s.cold_items) == min(max(1, round(frac * len(active))), len(active) - 1)
    assert set(s.cold_items) <= set(active)
    cold = np.zeros(X.shape[1], bool)
    cold[s.cold_items] = True
    # training: no interaction with a cold item is left, every other one is unchanged
    assert s.train.shape == X.shape
    assert s.train[:, cold].nnz == 0
    assert (s.train[:, ~cold] != X[:, ~cold]).nnz == 0
    # test users: exactly those with a cold item and a warm history
    has_cold = np.asarray(X[:, cold].sum(1)).ravel() > 0
    has_warm = np.asarray(X[:, ~cold].sum(1)).ravel() > 0
    np.testing.assert_array_equal(s.test_users, np.flatnonzero(has_cold & has_warm))
    rows = X[s.test_users]
    assert (s.test_target != rows.multiply(cold[None, :])).nnz == 0
    assert (s.test_input != rows.multiply(~cold[None, :])).nnz == 0


def test_same_seed_same_split_other_seed_other_split() -> None:
    X = random_interactions(5)
    a, b = cold_start_split(X, seed=3), cold_start_split(X, seed=3)
    np.testing.assert_array_equal(a.cold_items, b.cold_items)
    c = cold_start_split(X, frac_items=0.3, seed=4)
    d = cold_start_split(X, frac_items=0.3, seed=5)
    assert not np.array_equal(c.cold_items, d.cold_items)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(frac_items=0), ValueError, "frac_items must be in"),
        (dict(frac_items=1.0), ValueError, "frac_items must be in"),
        (dict(frac_items="0.1"), TypeError, "frac_items must be a number"),
        (dict(frac_items=True), TypeError, "frac_items must be a number"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        cold_start_split(random_interactions(0), **kwargs)


def test_too_few_items_and_bad_matrix() -> None:
    one = sp.csr_matrix(np.array([[1, 0], [1, 0]], np.float32))
    with pytest.raises(ValueError, match="at least 2"):
        cold_start_split(one)
    with pytest.raises(TypeError, match="X must be a scipy.sparse"):
        cold_start_split([[1, 0]])
