"""Evaluation splits: strong generalization (disjoint users), random hold-out, leave-last-n."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .interactions import _FLOAT32_MAX, Interactions, _beyond_float32, _shown


@dataclass
class StrongSplit:
    """Strong-generalization split: disjoint train / validation / test users.

    `train` holds the training users' rows; `valid_input`/`valid_target` (and the test pair)
    hold the held-out users' rows split into the fold-in input and the items to predict. All
    matrices have the columns of the input matrix. `*_users` are the rows of the input matrix
    each part came from, in order.
    """

    train: sp.csr_matrix
    valid_input: sp.csr_matrix
    valid_target: sp.csr_matrix
    test_input: sp.csr_matrix
    test_target: sp.csr_matrix
    train_users: np.ndarray | None = None
    valid_users: np.ndarray | None = None
    test_users: np.ndarray | None = None


def _as_csr(X: Any, name: str = "X") -> sp.csr_matrix:
    if not sp.issparse(X):
        if isinstance(X, np.ndarray) and X.ndim == 2:
            X = sp.csr_matrix(X)
        else:
            raise TypeError(f"{name} must be a scipy.sparse matrix (users x items)")
    X = sp.csr_matrix(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}")
    if X.nnz:
        bad = _beyond_float32(np.asarray(X.data, dtype=np.float64))
        if bad.any():
            value = _shown(X.data[np.flatnonzero(bad)[0]])
            raise ValueError(
                f"{name} holds {value}; expected finite values within float32 range "
                f"(|x| <= {_FLOAT32_MAX:.4g})"
            )
    X = sp.csr_matrix(X, dtype=np.float32, copy=True)
    X.sum_duplicates()
    X.eliminate_zeros()
    return X


def _fraction_count(frac: float, n: np.ndarray) -> np.ndarray:
    """floor(frac * n) with the round-off of e.g. (1 - 0.8) * 5 = 0.99999 removed."""
    return np.floor(np.round(frac * n.astype(np.float64), 6)).astype(np.int64)


def _rank_in_rows(X: sp.csr_matrix, rng: np.random.Generator) -> np.ndarray:
    """For each stored entry, its position in a random order of its row (0-based)."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    order = np.lexsort((rng.random(X.nnz), rows))
    rank = np.empty(X.nnz, dtype=np.int64)
    rank[order] = np.arange(X.nnz) - X.indptr[rows[order]]
    return rank


def _split_rows(X: sp.csr_matrix, to_second: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split the entries of X by a boolean mask over X.data into (first, second)."""
    a = X.copy()
    b = X.copy()
    a.data = np.where(to_second, 0, X.data).astype(np.float32)
    b.data = np.where(to_second, X.data, 0).astype(np.float32)
    a.eliminate_zeros()
    b.eliminate_zeros()
    return a, b


def strong_generalization_split(
    X: Any, *, n_heldout_users: int | float, fold_in: float = 0.8, seed: int = 0
) -> StrongSplit:
    """Split users into train / validation / test (Liang et al. 2018; docs/evaluation.md).

    Users are permuted with `seed`; the first `n_users - 2 * n_heldout` train, the next
    `n_heldout` are the validation users and the last `n_heldout` the test users.
    `n_heldout_users` is a count (int) or a fraction of all users (float in (0, 0.5)). For each
    held-out user with n items, a random floor((1 - fold_in) * n) of them (at least 1, at most
    n - 1) are the target and the rest the fold-in input, so input and target are disjoint,
    non-empty and together are the user's items. Every user needs >= 2 items.

    Unlike Liang et al.'s script, items seen only by held-out users keep their columns (all
    matrices share the input's columns); filter such items beforehand if that matters.
    """
    X = _as_csr(X)
    n_users = X.shape[0]
    if isinstance(n_heldout_users, bool) or not isinstance(
        n_heldout_users, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"n_heldout_users must be an int or a float fraction, got {n_heldout_users!r}"
        )
    if isinstance(n_heldout_users, (float, np.floating)):
        if not 0.0 < n_heldout_users < 0.5:
            raise ValueError(
                f"n_heldout_users as a fraction must be in (0, 0.5), got {n_heldout_users}"
            )
        n_heldout = max(1, int(round(n_heldout_users * n_users)))
    else:
        n_heldout = int(n_heldout_users)
    if n_heldout < 1 or 2 * n_heldout >= n_users:
        raise ValueError(
            f"n_heldout_users={n_heldout_users} leaves no training users: need "
            f"1 <= 2 * n_heldout_users < n_users = {n_users}"
        )
    if not 0.0 < fold_in < 1.0:
        raise ValueError(f"fold_in must be in (0, 1), got {fold_in}")
    counts = np.diff(X.indptr)
    if (counts < 2).any():
        raise ValueError(
            f"{int((counts < 2).sum())} user(s) have fewer than 2 items; a "
            f"strong-generalization split needs >= 2 per user (use "
            f"Interactions.filter(min_user_interactions=...))"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_users)
    n_train = n_users - 2 * n_heldout
    train_users = perm[:n_train]
    valid_users = perm[n_train : n_train + n_heldout]
    test_users = perm[n_train + n_heldout :]
    parts: list[sp.csr_matrix] = []
    for users in (valid_users, test_users):
        H = X[users]
        n = np.diff(H.indptr)
        n_target = np.clip(_fraction_count(1.0 - fold_in, n), 1, n - 1)
        rank = _rank_in_rows(H, rng)
        row_of = np.repeat(np.arange(H.shape[0]), n)
        parts.extend(_split_rows(H, rank < n_target[row_of]))
    valid_input, valid_target, test_input, test_target = parts
    return StrongSplit(
        X[train_users],
        valid_input,
        valid_target,
        test_input,
        test_target,
        train_users=train_users,
        valid_users=valid_users,
        test_users=test_users,
    )


def random_holdout_split(
    X: Any, *, holdout: float = 0.2, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per user, a random `holdout` fraction of the items goes to test, the rest to train.

    A user with n >= 2 items gets floor(holdout * n) test items, at least 1 and at most n - 1;
    a user with one item keeps it in train. Both matrices have X's shape and are disjoint.
    """
    X = _as_csr(X)
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    rng = np.random.default_rng(seed)
    n = np.diff(X.indptr)
    n_test = np.clip(_fraction_count(holdout, n), np.minimum(n - 1, 1), np.maximum(n - 1, 0))
    rank = _rank_in_rows(X, rng)
    row_of = np.repeat(np.arange(X.shape[0]), n)
    return _split_rows(X, rank < n_test[row_of])


def leave_last_n_split(
    interactions: Interactions, *, n: int = 1
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per user, the items of the `n` latest interactions go to test, the rest to train.

    A pair that repeats counts at its latest timestamp; equal timestamps are ordered by internal
    item index. Users with <= n distinct items keep everything in train. Both matrices are
    binary users x items (the shape of `interactions.matrix()`) and disjoint.
    """
    if not isinstance(interactions, Interactions):
        raise TypeError("interactions must be an Interactions (timestamps are needed)")
    timestamps = interactions.timestamps
    if timestamps is None:
        raise ValueError(
            "leave_last_n_split needs timestamps; these interactions have none "
            "(pass time_col when reading)"
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    d = interactions
    ts = timestamps.astype(np.float64) if timestamps.dtype.kind != "i" else timestamps
    # latest timestamp of each (user, item) pair: sort by (user, item, ts), keep the last
    order = np.lexsort((ts, d.items, d.users))
    u, i, t = d.users[order], d.items[order], ts[order]
    last = np.ones(len(u), dtype=bool)
    last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    u, i, t = u[last], i[last], t[last]
    # within each user, rank from the end by (ts, item)
    order = np.lexsort((i, t, u))
    u, i = u[order], i[order]
    counts = np.bincount(u, minlength=d.n_users)
    ends = np.cumsum(counts)
    from_end = ends[u] - 1 - np.arange(len(u))
    to_test = (from_end < n) & (counts[u] > n)
    shape = (d.n_users, d.n_items)

    def build(mask: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix(
            (np.ones(int(mask.sum()), dtype=np.float32), (u[mask], i[mask])), shape=shape
        )
        m.sort_indices()
        return m

    return build(~to_test), build(to_test)


@dataclass
class ColdStartSplit:
    """Cold-start split: a set of items held out entirely.

    `train` is the input matrix with the held-out items' columns emptied (no interaction with
    them is left to learn from); `test_input` holds, for each user who interacted with a
    held-out item, their remaining (warm) history, and `test_target` their held-out items.
    All matrices keep the input's columns, so item ids stay the same everywhere.
    """

    train: sp.csr_matrix
    test_input: sp.csr_matrix
    test_target: sp.csr_matrix
    cold_items: np.ndarray
    test_users: np.ndarray


def cold_start_split(X: Any, *, frac_items: float = 0.1, seed: int = 0) -> ColdStartSplit:
    """Hold out a random fraction of the items that have interactions, entirely.

    Parameters
    ----------
    X : scipy.sparse matrix, shape (n_users, n_items)
        Interactions.
    frac_items : float
        Fraction of the items with at least one interaction to hold out, in (0, 1); at least
        one item is held out and at least one kept.
    seed : int
        Seed of the item draw.

    Returns
    -------
    ColdStartSplit
        The training matrix without the cold items' interactions, and the test users' warm
        histories and cold targets (users whose warm history is empty are left out: there is
        nothing to rank from).
    """
    X = _as_csr(X)
    if isinstance(frac_items, bool) or not isinstance(frac_items, (int, float)):
        raise TypeError(f"frac_items must be a number in (0, 1), got {type(frac_items).__name__}")
    if not 0 < frac_items < 1:
        raise ValueError(f"frac_items must be in (0, 1), got {frac_items}")
    active = np.flatnonzero(np.diff(X.tocsc().indptr) > 0)
    if len(active) < 2:
        raise ValueError(
            f"X has {len(active)} item(s) with interactions; a cold-start split "
            "needs at least 2 (one held out, one kept)"
        )
    n_cold = int(min(max(1, round(frac_items * len(active))), len(active) - 1))
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(active, size=n_cold, replace=False)).astype(np.int64)
    is_cold = np.zeros(X.shape[1], bool)
    is_cold[cold] = True
    entry_cold = is_cold[X.indices]
    warm_part = X.copy()
    warm_part.data = np.where(entry_cold, 0, warm_part.data).astype(np.float32)
    warm_part.eliminate_zeros()
    cold_part = X.copy()
    cold_part.data = np.where(entry_cold, cold_part.data, 0).astype(np.float32)
    cold_part.eliminate_zeros()
    users = np.flatnonzero((np.diff(cold_part.indptr) > 0) & (np.diff(warm_part.indptr) > 0))
    return ColdStartSplit(
        train=warm_part,
        test_input=warm_part[users],
        test_target=cold_part[users],
        cold_items=cold,
        test_users=users.astype(np.int64),
    )
