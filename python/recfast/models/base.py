"""`Recommender`: the interface every recfast model implements."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any

from .._types import TopK


class Recommender(ABC):
    """The interface of recfast's models: fit on interactions, recommend, save and load.

    Interactions are a users x items matrix (scipy.sparse, or a 2-D numpy array): entry (u, i)
    is the strength of user u's interaction with item i (1 for implicit feedback); zero means
    none. Items are the matrix's columns, 0 .. n_items - 1, in every argument and result.

    Attributes
    ----------
    n_items_ : int
        The number of items (columns) of the matrix the model was fit on.
    """

    n_items_: int

    @abstractmethod
    def fit(self, X: Any) -> Recommender:
        """Learn from the interactions X.

        Parameters
        ----------
        X : scipy.sparse matrix or numpy.ndarray, shape (n_users, n_items)
            Non-negative interaction strengths.

        Returns
        -------
        Recommender
            The fitted model itself.
        """

    @abstractmethod
    def recommend(
        self, X: Any, k: int = 10, *, filter_seen: bool = True, filter_items: Any = None
    ) -> TopK:
        """The k best items for each user whose history is a row of X.

        Parameters
        ----------
        X : scipy.sparse matrix or numpy.ndarray, shape (n_users, n_items)
            The users' histories (they need not be the users the model was fit on).
        k : int
            Items per user (>= 1); rows with fewer eligible items are padded with id -1 and
            score -inf.
        filter_seen : bool
            Never return an item of the user's own history.
        filter_items : None, sequence of int or scipy.sparse matrix
            Items never returned: ids for every user, or a (n_users, n_items) matrix whose
            nonzeros are excluded per user.

        Returns
        -------
        TopK
            (scores float32, ids int64), each (n_users, k), best first, equal scores lower id
            first.
        """

    @abstractmethod
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to one file, atomically.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced whole, never left half written).
        """

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike) -> Recommender:
        """Read a model written by `save`.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by this model type's `save`.

        Returns
        -------
        Recommender
            The model. A damaged or foreign file is a ValueError naming the file.
        """

    def _recommend_range(
        self, X: Any, k: int, filter_seen: bool, lo: int, hi: int, filter_items: Any = None
    ) -> TopK:
        """`recommend` over the items [lo, hi) only (global ids, the same scores bit for bit):
        the part one item shard of `recfast.distributed` scores; `recfast.merge_topk` of the
        parts of contiguous ranges is `recommend`'s answer, which is the range (0, n_items_)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score an item range")

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")

    def __repr__(self) -> str:
        params: dict[str, Any] = getattr(self, "_repr_params", lambda: {})()
        inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({inner})"
