"""Interactions, MovieLens readers and evaluation splits.

An `Interactions` holds one row per event (user, item, optional rating, optional timestamp) with
raw ids mapped to contiguous internal indices: internal user `u` is raw id `user_ids[u]`, and
internal item `i` is raw id `item_ids[i]`. Raw ids are kept sorted, so the same data always gives
the same indices. `matrix()` gives the users x items CSR matrix the models train on.

The evaluation protocol of docs/evaluation.md (Liang et al. 2018, strong generalization) reads::

    data = load_movielens("ml-latest-small")                # or Interactions.from_csv(...)
    data = data.filter(rating_above=3.5,                    # keep ratings > 3.5 (strictly)
                       min_user_interactions=5)             # then users with >= 5 items
    split = strong_generalization_split(data.matrix(), n_heldout_users=0.1, seed=0)
    model.fit(split.train)
    metrics.evaluate(model, split.test_input, split.test_target)

`filter(min_rating=x)` keeps ratings >= x; `filter(rating_above=x)` keeps ratings > x. The
published ML-20M protocol uses `rating_above=3.5` and `n_heldout_users=10_000`.

Malformed files raise ValueError naming the file, the line (1-based, counting the header) or the
column, and what was expected. Reading needs pandas (`pip install recfast[train]`); the
`Interactions` object, the matrices and the splits need only NumPy and SciPy.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "Interactions",
    "StrongSplit",
    "load_movielens",
    "load_movielens_titles",
    "strong_generalization_split",
    "random_holdout_split",
    "leave_last_n_split",
]

def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading interaction files needs pandas: pip install recfast[train]"
        ) from exc
    return pd


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
        for name, arr in (("items", self.items), ("ratings", self.ratings),
                          ("timestamps", self.timestamps)):
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
                raise ValueError(f"{name}[{pos}] is {_shown(ids[pos])}; expected an id (NaN and "
                                 f"infinity identify nothing)")
        user_ids, u = _factorize(users)
        item_ids, i = _factorize(items)
        return cls(u, i, user_ids, item_ids,
                   None if ratings is None else _ratings_array(ratings),
                   None if timestamps is None else np.asarray(timestamps))

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
        return _from_frame(df, user_col, item_col, rating_col, time_col,
                           source="DataFrame", line_offset=None)

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
        pd = _pandas()
        _check_sep(sep)
        path = _existing_file(path)
        wanted = _wanted(user_col, item_col, rating_col, time_col)
        try:
            header = pd.read_csv(path, sep=sep, nrows=0)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: the file is empty; expected a header line with the "
                             f"columns {wanted}") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the header line: {_one_line(exc)}") from None
        _check_columns(path, list(header.columns), wanted)
        df = _read_text(path, sep=sep, columns=wanted, header=True)
        return _from_frame(df, user_col, item_col, rating_col, time_col,
                           source=str(path), line_offset=2)

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
        pd = _pandas()
        path = _existing_file(path)
        wanted = _wanted(user_col, item_col, rating_col, time_col)
        try:
            df = pd.read_parquet(path)
        except ImportError:
            raise
        except Exception as exc:  # pyarrow raises its own types for corrupt files
            raise ValueError(f"{path}: not a readable Parquet file: {_one_line(exc)}") from None
        _check_columns(path, [str(c) for c in df.columns], wanted)
        return _from_frame(df, user_col, item_col, rating_col, time_col,
                           source=str(path), line_offset=None)

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
            f", {name}" for name, v in (("ratings", self.ratings), ("timestamps", self.timestamps))
            if v is not None
        )
        return (f"Interactions({len(self)} interactions, {self.n_users} users, "
                f"{self.n_items} items{extra})")

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
                raise ValueError("min_rating/rating_above need ratings, and these interactions "
                                 "have none (pass rating_col when reading)")
            if min_rating is not None:
                keep &= self.ratings >= float(min_rating)
            if rating_above is not None:
                keep &= self.ratings > float(rating_above)
        for name, value in (("min_user_interactions", min_user_interactions),
                            ("min_item_interactions", min_item_interactions)):
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
        whole &= np.abs(np.where(whole, arr, 0)) < 2.0 ** 63
        if not whole.all():
            pos = int(np.flatnonzero(~whole)[0])
            raise ValueError(f"{name}[{pos}] is {_shown(arr[pos])}; expected an integer index")
    elif arr.dtype.kind not in "iu" and arr.size:
        raise TypeError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2 ** 63:
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
        raise ValueError(f"ratings[{pos}] is {_shown(arr.reshape(-1)[pos])}; expected a finite "
                         f"number within float32 range (|x| <= {_FLOAT32_MAX:.4g})")
    return arr


# A float64 holds every integer up to 2**53 exactly; an id written as a float beyond that may
# already have been rounded to a neighbour (two ids could become one).
_FLOAT_EXACT = 2 ** 53


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
    return pos, (f"expected an integer id, got {_shown(values[pos])}: a number written with a "
                 f"decimal point or exponent holds integers exactly only up to 2**53 = "
                 f"{_FLOAT_EXACT} (write ids as plain integers or as text)")


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
        codes = np.fromiter((mapping.setdefault(v, len(mapping)) for v in values.tolist()),
                            dtype=np.int64, count=len(values))
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


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _existing_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if not p.is_file():
        raise ValueError(f"{p}: expected a file, found a directory")
    return p


def _check_sep(sep: Any) -> None:
    if not isinstance(sep, str) or len(sep) != 1 or sep in '\r\n"':
        raise ValueError(f"sep must be one character other than a quote or a line break, "
                         f"got {sep!r}")


def _wanted(user_col: str, item_col: str, rating_col: str | None, time_col: str | None) -> list:
    cols = [user_col, item_col] + [c for c in (rating_col, time_col) if c is not None]
    if len(set(cols)) != len(cols):
        raise ValueError(f"the column names must differ, got {cols}")
    return cols


def _check_columns(path: Path | str, have: list, wanted: list) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        raise ValueError(f"{path}: column {missing[0]!r} not found; the columns are {have}")


def _read_text(path: Path, *, sep: str, columns: list, header: bool,
               encoding: str = "utf-8") -> Any:
    """Read `columns` from a delimited file with pandas; errors become ValueErrors naming the
    file and the line. header=True: a header line names the columns (others are ignored);
    header=False: each line holds exactly len(columns) fields, in that order."""
    pd = _pandas()
    fields = len(columns)
    what = f"{fields} fields ({', '.join(map(str, columns))}) separated by {sep!r}"
    if header:
        what = f"a header line, then as many fields per line, separated by {sep!r}"
    kwargs: dict[str, Any] = dict(sep=sep, header=0 if header else None,
                                  skip_blank_lines=False, low_memory=False, encoding=encoding)
    positions = list(range(fields))
    if header:
        kwargs["index_col"] = False  # a line with an extra field is an error, not an index
    elif sep == "::":
        # the C parser takes one-character separators only: split on ':' and skip the empty
        # field between the two colons (10x faster than the python engine)
        kwargs["sep"] = ":"
        positions = [2 * j for j in range(fields)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, **kwargs)
    except pd.errors.ParserWarning:  # more fields on the first data line than in the header
        raise ValueError(f"{path}: line 2: more fields than the header line names") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; expected lines of {what}") from None
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        where = f"line {m.group(1)}: " if m else ""
        raise ValueError(f"{path}: {where}expected {what} ({_one_line(exc)})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not {encoding} text ({_one_line(exc)})") from None
    if header:
        df = df[columns]
    else:
        width = 2 * fields - 1 if kwargs["sep"] != sep else fields
        gaps = [c for c in range(df.shape[1]) if c not in positions]
        if df.shape[1] != width or (gaps and df.iloc[:, gaps].notna().any().any()):
            raise ValueError(f"{path}: line 1: expected {what}")
        df = df.iloc[:, positions]
        df.columns = columns
    # blank lines were kept (so that row positions map to line numbers); drop them now
    blank = df.isna().all(axis=1)
    if blank.any():
        df = df[~blank.to_numpy()]
    if len(df) == 0:
        raise ValueError(f"{path}: no data lines; expected lines of {what}")
    return df


def _from_frame(df: Any, user_col: str, item_col: str, rating_col: str | None,
                time_col: str | None, *, source: str, line_offset: int | None) -> Interactions:
    pd = _pandas()
    wanted = _wanted(user_col, item_col, rating_col, time_col)
    _check_columns(source, list(df.columns), wanted)
    if len(df) == 0:
        raise ValueError(f"{source}: no rows; expected interactions with columns {wanted}")

    def where(pos: int) -> str:
        if line_offset is None:
            return f"row {pos}"
        return f"line {int(df.index[pos]) + line_offset}"

    def check_present(col: str) -> None:
        missing = df[col].isna().to_numpy()
        if missing.any():
            pos = int(np.flatnonzero(missing)[0])
            expected = "a number" if col in (rating_col, time_col) else "an id"
            raise ValueError(f"{source}: {where(pos)}, column {col!r}: missing value; "
                             f"expected {expected}")

    check_present(user_col)
    check_present(item_col)
    ratings = None
    if rating_col is not None:
        check_present(rating_col)
        ratings = _numeric(df[rating_col], pd)
        bad = ~np.isfinite(ratings)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: {where(pos)}, column {rating_col!r}: expected a "
                             f"number, got {df[rating_col].iloc[pos]!r}")
        bad = _beyond_float32(ratings)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: {where(pos)}, column {rating_col!r}: expected a "
                             f"number within float32 range (|x| <= {_FLOAT32_MAX:.4g}), got "
                             f"{_shown(df[rating_col].iloc[pos])}")
    timestamps = None
    if time_col is not None:
        check_present(time_col)
        timestamps = _timestamps(df[time_col], pd, source, time_col, where)
    users = _raw_ids(df[user_col], source, user_col, where)
    items = _raw_ids(df[item_col], source, item_col, where)
    return Interactions.from_arrays(users, items, ratings, timestamps)


def _raw_ids(col: Any, source: str, name: str, where: Any) -> np.ndarray:
    values = col.to_numpy()
    if values.dtype.kind == "f":  # ids read as floats ("1.0", "9.3e18", a float Parquet column)
        bad = _bad_float_id(values)
        if bad is not None:
            raise ValueError(f"{source}: {where(bad[0])}, column {name!r}: {bad[1]}")
        values = values.astype(np.int64)
    if values.dtype.kind == "O":
        values = np.array([str(v) for v in values.tolist()], dtype=object)
    return values


def _numeric(col: Any, pd: Any) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _timestamps(col: Any, pd: Any, source: str, name: str, where: Any) -> np.ndarray:
    if col.dtype.kind in "iu":
        return col.to_numpy(dtype=np.int64)
    if col.dtype.kind == "f":
        return col.to_numpy(dtype=np.float64)
    if col.dtype.kind == "M":
        return col.to_numpy().astype("datetime64[ns]").astype(np.int64)
    numbers = _numeric(col, pd)
    if np.isfinite(numbers).all():
        return numbers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(col, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: {where(pos)}, column {name!r}: expected a number or a "
                         f"date, got {col.iloc[pos]!r}")
    return parsed.to_numpy().astype("datetime64[ns]").astype(np.int64)


# --------------------------------------------------------------------------------------------
# MovieLens
# --------------------------------------------------------------------------------------------

_RATING_FILES = ("u.data", "ratings.dat", "ratings.csv")
_TITLE_FILES = ("u.item", "movies.dat", "movies.csv")


def _find_file(path: str | os.PathLike[str], names: tuple, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if p.is_file():
        return p
    for name in names:
        if (p / name).is_file():
            return p / name
    # e.g. the parent folder of an unzipped ml-100k/: exactly one subfolder may match
    found = [d / name for d in sorted(d for d in p.iterdir() if d.is_dir()) for name in names
             if (d / name).is_file()]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ValueError(f"{p}: several MovieLens {what} files found "
                         f"({', '.join(str(f.relative_to(p)) for f in found)}); name one")
    raise ValueError(f"{p}: no MovieLens {what} file found; expected one of {list(names)}")


def _layout(p: Path, names: tuple) -> str:
    if p.name in names:
        return p.name
    suffix = {".data": names[0], ".dat": names[1], ".csv": names[2], ".item": names[0]}
    if p.suffix in suffix:
        return suffix[p.suffix]
    raise ValueError(f"{p}: unknown MovieLens layout; expected a file named one of {list(names)}")


def load_movielens(path: str | os.PathLike[str]) -> Interactions:
    """MovieLens ratings from a file or a folder (searched for the files below, one level deep).

    Layouts: `u.data` (ml-100k: user, item, rating, timestamp separated by tabs), `ratings.dat`
    (ml-1m/10m: `user::item::rating::timestamp`), `ratings.csv` (ml-latest(-small)/20m/25m:
    header `userId,movieId,rating,timestamp`). Raw user and item ids are the file's integers.
    """
    p = _find_file(path, _RATING_FILES, "ratings")
    layout = _layout(p, _RATING_FILES)
    if layout == "ratings.csv":
        return Interactions.from_csv(p, user_col="userId", item_col="movieId",
                                     rating_col="rating", time_col="timestamp")
    names = ["user", "item", "rating", "timestamp"]
    sep = "\t" if layout == "u.data" else "::"
    df = _read_text(p, sep=sep, columns=names, header=False)
    bad = df["timestamp"].isna().to_numpy()
    if bad.any():  # too few fields on a line
        line = int(df.index[np.flatnonzero(bad)[0]]) + 1
        raise ValueError(f"{p}: line {line}: expected 4 fields (user, item, rating, timestamp) "
                         f"separated by {sep!r}")
    for col in ("user", "item"):
        numbers = _numeric(df[col], _pandas())
        bad = _bad_float_id(numbers)
        if bad is not None:
            pos = bad[0]
            raise ValueError(f"{p}: line {int(df.index[pos]) + 1}, column {col!r}: expected an "
                             f"integer id, got {_shown(df[col].iloc[pos])}")
        df[col] = numbers.astype(np.int64)
    return _from_frame(df, "user", "item", "rating", "timestamp", source=str(p), line_offset=1)


def load_movielens_titles(path: str | os.PathLike[str]) -> dict[Any, str]:
    """{raw item id: title} from `u.item` (latin-1, `|`), `movies.dat` (latin-1, `::`) or
    `movies.csv` (utf-8, header `movieId,title,genres`), given the file or its folder."""
    p = _find_file(path, _TITLE_FILES, "titles")
    layout = _layout(p, _TITLE_FILES)
    if layout == "movies.csv":
        pd = _pandas()
        try:
            df = pd.read_csv(p, dtype={"title": str}, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{p}: the file is empty; expected a header "
                             f"'movieId,title,genres'") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: {_one_line(exc)}") from None
        _check_columns(p, list(df.columns), ["movieId", "title"])
        ids = _numeric(df["movieId"], pd)
        bad = _bad_float_id(ids)
        if bad is not None:
            pos = bad[0]
            raise ValueError(f"{p}: line {pos + 2}, column 'movieId': expected an integer id, "
                             f"got {_shown(df['movieId'].iloc[pos])}")
        return dict(zip(ids.astype(np.int64).tolist(), df["title"].tolist()))
    sep = "|" if layout == "u.item" else "::"
    titles: dict[Any, str] = {}
    with open(p, encoding="latin-1") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split(sep, 2)
            if len(fields) < 2:
                raise ValueError(f"{p}: line {lineno}: expected 'id{sep}title{sep}...'")
            try:
                item = int(fields[0])
            except ValueError:
                raise ValueError(f"{p}: line {lineno}: expected an integer item id, got "
                                 f"{fields[0]!r}") from None
            titles[item] = fields[1]
    if not titles:
        raise ValueError(f"{p}: the file is empty; expected lines 'id{sep}title{sep}...'")
    return titles


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


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
            raise ValueError(f"{name} holds {value}; expected finite values within float32 range "
                             f"(|x| <= {_FLOAT32_MAX:.4g})")
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
        raise TypeError(f"n_heldout_users must be an int or a float fraction, "
                        f"got {n_heldout_users!r}")
    if isinstance(n_heldout_users, (float, np.floating)):
        if not 0.0 < n_heldout_users < 0.5:
            raise ValueError(f"n_heldout_users as a fraction must be in (0, 0.5), "
                             f"got {n_heldout_users}")
        n_heldout = max(1, int(round(n_heldout_users * n_users)))
    else:
        n_heldout = int(n_heldout_users)
    if n_heldout < 1 or 2 * n_heldout >= n_users:
        raise ValueError(f"n_heldout_users={n_heldout_users} leaves no training users: need "
                         f"1 <= 2 * n_heldout_users < n_users = {n_users}")
    if not 0.0 < fold_in < 1.0:
        raise ValueError(f"fold_in must be in (0, 1), got {fold_in}")
    counts = np.diff(X.indptr)
    if (counts < 2).any():
        raise ValueError(f"{int((counts < 2).sum())} user(s) have fewer than 2 items; a "
                         f"strong-generalization split needs >= 2 per user (use "
                         f"Interactions.filter(min_user_interactions=...))")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_users)
    n_train = n_users - 2 * n_heldout
    train_users = perm[:n_train]
    valid_users = perm[n_train:n_train + n_heldout]
    test_users = perm[n_train + n_heldout:]
    parts: list[sp.csr_matrix] = []
    for users in (valid_users, test_users):
        H = X[users]
        n = np.diff(H.indptr)
        n_target = np.clip(_fraction_count(1.0 - fold_in, n), 1, n - 1)
        rank = _rank_in_rows(H, rng)
        row_of = np.repeat(np.arange(H.shape[0]), n)
        parts.extend(_split_rows(H, rank < n_target[row_of]))
    valid_input, valid_target, test_input, test_target = parts
    return StrongSplit(X[train_users], valid_input, valid_target, test_input, test_target,
                       train_users=train_users, valid_users=valid_users, test_users=test_users)


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
        raise ValueError("leave_last_n_split needs timestamps; these interactions have none "
                         "(pass time_col when reading)")
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
        m = sp.csr_matrix((np.ones(int(mask.sum()), dtype=np.float32), (u[mask], i[mask])),
                          shape=shape)
        m.sort_indices()
        return m

    return build(~to_test), build(to_test)
