"""`Interactions`: user-item events with raw id <-> contiguous internal index maps."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


# --------------------------------------------------------------------------------------------
# Interactions
# --------------------------------------------------------------------------------------------


class Interactions:
    """User-item events with raw id <-> internal index maps.

    Attributes:
        user_ids: raw user ids, indexed by internal user index (sorted, unique).
        item_ids: raw item ids, indexed by internal item index (sorted, unique).
        users: internal user index of each interaction (int64, length len(self)).
        items: internal item index of each interaction (int64).
        ratings: float64 rating or weight of each interaction, or None.
        timestamps: timestamp of each interaction (int64 or float64), or None.
    """

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        ratings: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
    ) -> None:
        self.users = _index_array(users, "users")
        self.items = _index_array(items, "items")
        self.user_ids = np.asarray(user_ids)
        self.item_ids = np.asarray(item_ids)
        self.ratings = None if ratings is None else _ratings_array(ratings)
        self.timestamps = None if timestamps is None else np.asarray(timestamps)
        n = len(self.users)
        for name, arr in (
            ("items", self.items),
            ("ratings", self.ratings),
            ("timestamps", self.timestamps),
        ):
            if arr is not None and len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} entries but users has {n}")
        if n and (self.users.min() < 0 or self.users.max() >= len(self.user_ids)):
            raise ValueError(f"users must be indices in [0, {len(self.user_ids)})")
        if n and (self.items.min() < 0 or self.items.max() >= len(self.item_ids)):
            raise ValueError(f"items must be indices in [0, {len(self.item_ids)})")
        self._user_map: dict[Any, int] | None = None
        self._item_map: dict[Any, int] | None = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        users: Sequence[Any] | np.ndarray,
        items: Sequence[Any] | np.ndarray,
        ratings: Sequence[float] | np.ndarray | None = None,
        timestamps: Sequence[Any] | np.ndarray | None = None,
    ) -> Interactions:
        """Build from parallel arrays of raw user ids, raw item ids, ratings and timestamps."""
        users = np.asarray(users)
        items = np.asarray(items)
        if users.ndim != 1 or items.ndim != 1 or len(users) != len(items):
            raise ValueError("users and items must be 1-D arrays of the same length")
        for name, ids in (("users", users), ("items", items)):
            if ids.dtype.kind == "f" and not np.isfinite(ids).all():
                pos = int(np.flatnonzero(~np.isfinite(ids))[0])
                raise ValueError(
                    f"{name}[{pos}] is {_shown(ids[pos])}; expected an id (NaN and "
                    f"infinity identify nothing)"
                )
        user_ids, u = _factorize(users)
        item_ids, i = _factorize(items)
        return cls(
            u,
            i,
            user_ids,
            item_ids,
            None if ratings is None else _ratings_array(ratings),
            None if timestamps is None else np.asarray(timestamps),
        )

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        *,
        user_col: str,
        item_col: str,
        rating_col: str | None = None,
        time_col: str | None = None,
    ) -> Interactions:
        """Build from a DataFrame whose columns the caller names.

        Raises ValueError naming the column when one is missing, has missing values, or (for
        ratings and timestamps) holds something that is not a number.
        """
        from .readers import from_dataframe

        return from_dataframe(
            df, user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col
        )

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str],
        *,
        user_col: str,
        item_col: str,
        rating_col: str | None = None,
        time_col: str | None = None,
        sep: str = ",",
    ) -> Interactions:
        """Read a delimited text file with a header line naming the columns."""
        from .readers import read_csv

        return read_csv(
            path,
            user_col=user_col,
            item_col=item_col,
            rating_col=rating_col,
            time_col=time_col,
            sep=sep,
        )

    @classmethod
    def from_parquet(
        cls,
        path: str | os.PathLike[str],
        *,
        user_col: str,
        item_col: str,
        rating_col: str | None = None,
        time_col: str | None = None,
    ) -> Interactions:
        """Read a Parquet file (needs pyarrow or fastparquet)."""
        from .readers import read_parquet

        return read_parquet(
            path, user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col
        )

    # -- sizes and lookups --------------------------------------------------------------------

    @property
    def n_users(self) -> int:
        """Number of distinct users."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of distinct items."""
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}"
            for name, v in (("ratings", self.ratings), ("timestamps", self.timestamps))
            if v is not None
        )
        return (
            f"Interactions({len(self)} interactions, {self.n_users} users, "
            f"{self.n_items} items{extra})"
        )

    def user_index(self, raw_ids: Any) -> np.ndarray:
        """Internal indices (int64) of raw user ids; ValueError naming any unknown id.

        A string spelling a known integer id (as typed on a command line) matches it, and an
        int matches a string id with the same digits.
        """
        if self._user_map is None:
            self._user_map = {_key(v): j for j, v in enumerate(self.user_ids.tolist())}
        return _lookup(self._user_map, raw_ids, "user")

    def item_index(self, raw_ids: Any) -> np.ndarray:
        """Internal indices (int64) of raw item ids; ValueError naming any unknown id."""
        if self._item_map is None:
            self._item_map = {_key(v): j for j, v in enumerate(self.item_ids.tolist())}
        return _lookup(self._item_map, raw_ids, "item")

    # -- matrices and filters -----------------------------------------------------------------

    def matrix(self, binary: bool = True) -> sp.csr_matrix:
        """Users x items float32 CSR matrix with sorted indices, duplicates collapsed.

        binary=True: 1 where the user interacted with the item. binary=False: the rating (the
        last one in data order when a pair repeats), or the number of interactions of the pair
        when there are no ratings.
        """
        shape = (self.n_users, self.n_items)
        if binary or self.ratings is None:
            data = np.ones(len(self), dtype=np.float32)
            m = sp.csr_matrix((data, (self.users, self.items)), shape=shape)  # sums duplicates
            m.sum_duplicates()
            if binary:
                m.data[:] = 1.0
            return m
        key = self.users * self.n_items + self.items
        # last occurrence of each pair: unique over the reversed order gives first-in-reverse
        _, first_rev = np.unique(key[::-1], return_index=True)
        keep = len(key) - 1 - first_rev
        m = sp.csr_matrix(
            (self.ratings[keep].astype(np.float32), (self.users[keep], self.items[keep])),
            shape=shape,
        )
        m.sort_indices()
        return m

    def filter(
        self,
        *,
        min_rating: float | None = None,
        rating_above: float | None = None,
        min_user_interactions: int = 0,
        min_item_interactions: int = 0,
    ) -> Interactions:
        """A filtered copy, reindexed so that every remaining user and item has an interaction.

        Applied once, in this order (as Liang et al.'s preprocessing; not iterated to a k-core):
        1. ratings: keep rating >= `min_rating` and rating > `rating_above` (each if given);
        2. items with >= `min_item_interactions` distinct users;
        3. users with >= `min_user_interactions` distinct items.
        """
        keep = np.ones(len(self), dtype=bool)
        if min_rating is not None or rating_above is not None:
            if self.ratings is None:
                raise ValueError(
                    "min_rating/rating_above need ratings, and these interactions "
                    "have none (pass rating_col when reading)"
                )
            if min_rating is not None:
                keep &= self.ratings >= float(min_rating)
            if rating_above is not None:
                keep &= self.ratings > float(rating_above)
        for name, value in (
            ("min_user_interactions", min_user_interactions),
            ("min_item_interactions", min_item_interactions),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if min_item_interactions > 0:
            counts = _distinct_counts(self.items[keep], self.users[keep], self.n_items)
            keep &= counts[self.items] >= min_item_interactions
        if min_user_interactions > 0:
            counts = _distinct_counts(self.users[keep], self.items[keep], self.n_users)
            keep &= counts[self.users] >= min_user_interactions
        return self._subset(keep)

    def _subset(self, keep: np.ndarray) -> Interactions:
        u_used, users = np.unique(self.users[keep], return_inverse=True)
        i_used, items = np.unique(self.items[keep], return_inverse=True)
        return Interactions(
            users.reshape(-1),
            items.reshape(-1),
            self.user_ids[u_used],
            self.item_ids[i_used],
            None if self.ratings is None else self.ratings[keep],
            None if self.timestamps is None else self.timestamps[keep],
        )


def _distinct_counts(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Number of distinct `cols` per value of `rows` (length n)."""
    if len(rows) == 0:
        return np.zeros(n, dtype=np.int64)
    pairs = np.unique(rows * (int(cols.max()) + 1) + cols)
    return np.bincount(pairs // (int(cols.max()) + 1), minlength=n)


def _index_array(values: Any, name: str) -> np.ndarray:
    """Internal indices as int64; floats must be whole numbers (never silently truncated)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of indices, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        whole = np.isfinite(arr)
        whole[whole] = arr[whole] == np.round(arr[whole])
        whole &= np.abs(np.where(whole, arr, 0)) < 2.0**63
        if not whole.all():
            pos = int(np.flatnonzero(~whole)[0])
            raise ValueError(f"{name}[{pos}] is {_shown(arr[pos])}; expected an integer index")
    elif arr.dtype.kind not in "iu" and arr.size:
        raise TypeError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        raise ValueError(f"{name} holds an index beyond int64 ({int(arr.max())})")
    return np.ascontiguousarray(arr, dtype=np.int64)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _beyond_float32(values: np.ndarray) -> np.ndarray:
    """Mask of the float64 values that are not finite or become infinite as float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        return ~np.isfinite(values.astype(np.float32))


def _ratings_array(ratings: Any) -> np.ndarray:
    """Ratings as float64, each finite and within float32 range (matrix() stores float32)."""
    try:
        arr = np.asarray(ratings, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ratings must be numbers: {_one_line(exc)}") from None
    bad = _beyond_float32(arr)
    if bad.any():
        pos = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(
            f"ratings[{pos}] is {_shown(arr.reshape(-1)[pos])}; expected a finite "
            f"number within float32 range (|x| <= {_FLOAT32_MAX:.4g})"
        )
    return arr


# A float64 holds every integer up to 2**53 exactly; an id written as a float beyond that may
# already have been rounded to a neighbour (two ids could become one).
_FLOAT_EXACT = 2**53


def _bad_float_id(values: np.ndarray) -> tuple[int, str] | None:
    """(position, reason) of the first float that is not an exact integer id, or None."""
    ok = np.isfinite(values)
    ok[ok] = values[ok] == np.round(values[ok])
    exact = ok.copy()
    exact[ok] = np.abs(values[ok]) <= _FLOAT_EXACT
    if exact.all():
        return None
    pos = int(np.flatnonzero(~exact)[0])
    if not ok[pos]:
        return pos, f"expected an integer id, got {_shown(values[pos])}"
    return pos, (
        f"expected an integer id, got {_shown(values[pos])}: a number written with a "
        f"decimal point or exponent holds integers exactly only up to 2**53 = "
        f"{_FLOAT_EXACT} (write ids as plain integers or as text)"
    )


def _shown(value: Any) -> str:
    """repr of a value in a message, numpy scalars as plain Python ones (1e+30, not np.float64)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique raw ids, index of each value); insertion order if ids do not sort."""
    try:
        uniques, codes = np.unique(values, return_inverse=True)
        return uniques, codes.reshape(-1)
    except TypeError:  # mixed types that do not compare
        mapping: dict[Any, int] = {}
        codes = np.fromiter(
            (mapping.setdefault(v, len(mapping)) for v in values.tolist()),
            dtype=np.int64,
            count=len(values),
        )
        uniques = np.empty(len(mapping), dtype=object)
        uniques[:] = list(mapping)
        return uniques, codes


def _key(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _lookup(mapping: dict[Any, int], raw_ids: Any, what: str) -> np.ndarray:
    if isinstance(raw_ids, (str, bytes)) or np.ndim(raw_ids) == 0:
        values = [raw_ids]
    else:
        values = list(np.asarray(raw_ids, dtype=object).reshape(-1))
    out = np.empty(len(values), dtype=np.int64)
    unknown = []
    for j, v in enumerate(values):
        v = _key(v)
        idx = mapping.get(v)
        if idx is None:  # '42' for the int id 42 (ids typed on a command line), or the reverse
            alt: Any = None
            if isinstance(v, str):
                try:
                    alt = int(v.strip())
                except ValueError:
                    alt = None
            elif isinstance(v, (int, np.integer)):
                alt = str(v)
            idx = None if alt is None else mapping.get(alt)
        if idx is None:
            unknown.append(v)
            out[j] = -1
        else:
            out[j] = idx
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise ValueError(f"unknown {what} id(s): {shown}{more}")
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
