"""Explanations shared by the models: one user's history checked, and per-item contributions
ranked into an `Explanation`."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from .._inputs import as_interactions, check_positive_int


class Explanation(NamedTuple):
    """Why a model scored `item` as it did for one user: the history items that raised it most.

    Attributes
    ----------
    item : int
        The explained item.
    ids : numpy.ndarray of int64, shape (m,)
        History items, largest contribution first (equal contributions: lower id first);
        m = min(n, number of items in the history).
    contributions : numpy.ndarray of float32, shape (m,)
        Each history item's contribution to the item's score: ``linear + deep``.
    linear : numpy.ndarray of float32, shape (m,)
        The exact linear part, ``x_j * B[j, item]`` (zero for models without one).
    deep : numpy.ndarray of float32, shape (m,)
        The deep part's attribution (gradient x input; zero for models without one).
    """

    item: int
    ids: np.ndarray
    contributions: np.ndarray
    linear: np.ndarray
    deep: np.ndarray


def check_history(history: Any, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """One user's history as (item ids int64 ascending, strengths float32).

    history: a 1-D sequence of distinct integer item ids (each of strength 1), or a
    scipy.sparse matrix of one row and n_items columns (its nonzeros are the strengths).
    """
    if sp.issparse(history):
        m = as_interactions(history, "history", n_items=n_items)
        if m.shape[0] != 1:
            raise ValueError(
                f"history as a sparse matrix must have one row (one user), got shape {m.shape}"
            )
        return m.indices.astype(np.int64), m.data.astype(np.float32)
    if isinstance(history, (str, bytes)) or history is None or np.isscalar(history):
        raise TypeError(
            f"history must be a sequence of item ids or a sparse row of {n_items} "
            f"items, got {type(history).__name__}"
        )
    ids = np.asarray(history)
    if ids.ndim != 1:
        raise ValueError(
            f"history must be a 1-D sequence of item ids (or a sparse row), got shape {ids.shape}"
        )
    if ids.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"history must hold integer item ids, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.min() < 0 or ids.max() >= n_items:
        bad = ids[(ids < 0) | (ids >= n_items)][0]
        raise ValueError(f"history holds item {bad}, outside [0, {n_items})")
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"history holds item {uniq[counts > 1][0]} more than once")
    return uniq, np.ones(uniq.size, np.float32)


def check_item(item: Any, n_items: int) -> int:
    """The explained item: an integer in [0, n_items)."""
    if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
        raise TypeError(f"item must be an integer item id, got {type(item).__name__}")
    value = int(item)
    if not 0 <= value < n_items:
        raise ValueError(f"item must be in [0, {n_items}), got {value}")
    return value


def check_n(n: Any) -> int:
    return check_positive_int(n, "n")


def ranked(item: int, ids: np.ndarray, linear: np.ndarray, deep: np.ndarray, n: int) -> Explanation:
    """The n history items of largest linear + deep contribution (ties: lower id first)."""
    linear = np.asarray(linear, np.float32)
    deep = np.asarray(deep, np.float32)
    total = linear + deep
    order = np.lexsort((ids, -total))[:n]  # ids are unique, so the order is total
    return Explanation(item, ids[order], total[order], linear[order], deep[order])
