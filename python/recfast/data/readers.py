"""CSV and Parquet readers: files and DataFrames into `Interactions`, with errors naming the
file, the line and the column."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .interactions import (
    _FLOAT32_MAX,
    Interactions,
    _bad_float_id,
    _beyond_float32,
    _one_line,
    _shown,
)


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading interaction files needs pandas: pip install recfast[train]"
        ) from exc
    return pd


def from_dataframe(
    df: Any,
    *,
    user_col: str,
    item_col: str,
    rating_col: str | None = None,
    time_col: str | None = None,
) -> Interactions:
    """`Interactions` from a DataFrame whose columns the caller names."""
    return _from_frame(
        df, user_col, item_col, rating_col, time_col, source="DataFrame", line_offset=None
    )


def read_csv(
    path: str | os.PathLike[str],
    *,
    user_col: str,
    item_col: str,
    rating_col: str | None = None,
    time_col: str | None = None,
    sep: str = ",",
) -> Interactions:
    """`Interactions` from a delimited text file with a header line naming the columns."""
    pd = _pandas()
    _check_sep(sep)
    path = _existing_file(path)
    wanted = _wanted(user_col, item_col, rating_col, time_col)
    try:
        header = pd.read_csv(path, sep=sep, nrows=0)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: the file is empty; expected a header line with the columns {wanted}"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the header line: {_one_line(exc)}") from None
    _check_columns(path, list(header.columns), wanted)
    df = _read_text(path, sep=sep, columns=wanted, header=True)
    return _from_frame(
        df, user_col, item_col, rating_col, time_col, source=str(path), line_offset=2
    )


def read_parquet(
    path: str | os.PathLike[str],
    *,
    user_col: str,
    item_col: str,
    rating_col: str | None = None,
    time_col: str | None = None,
) -> Interactions:
    """`Interactions` from a Parquet file (needs pyarrow or fastparquet)."""
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
    return _from_frame(
        df, user_col, item_col, rating_col, time_col, source=str(path), line_offset=None
    )


def _existing_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if not p.is_file():
        raise ValueError(f"{p}: expected a file, found a directory")
    return p


def _check_sep(sep: Any) -> None:
    if not isinstance(sep, str) or len(sep) != 1 or sep in '\r\n"':
        raise ValueError(
            f"sep must be one character other than a quote or a line break, got {sep!r}"
        )


def _wanted(user_col: str, item_col: str, rating_col: str | None, time_col: str | None) -> list:
    cols = [user_col, item_col] + [c for c in (rating_col, time_col) if c is not None]
    if len(set(cols)) != len(cols):
        raise ValueError(f"the column names must differ, got {cols}")
    return cols


def _check_columns(path: Path | str, have: list, wanted: list) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        raise ValueError(f"{path}: column {missing[0]!r} not found; the columns are {have}")


def _read_text(
    path: Path, *, sep: str, columns: list, header: bool, encoding: str = "utf-8"
) -> Any:
    """Read `columns` from a delimited file with pandas; errors become ValueErrors naming the
    file and the line. header=True: a header line names the columns (others are ignored);
    header=False: each line holds exactly len(columns) fields, in that order."""
    pd = _pandas()
    fields = len(columns)
    what = f"{fields} fields ({', '.join(map(str, columns))}) separated by {sep!r}"
    if header:
        what = f"a header line, then as many fields per line, separated by {sep!r}"
    kwargs: dict[str, Any] = dict(
        sep=sep,
        header=0 if header else None,
        skip_blank_lines=False,
        low_memory=False,
        encoding=encoding,
    )
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


def _from_frame(
    df: Any,
    user_col: str,
    item_col: str,
    rating_col: str | None,
    time_col: str | None,
    *,
    source: str,
    line_offset: int | None,
) -> Interactions:
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
            raise ValueError(
                f"{source}: {where(pos)}, column {col!r}: missing value; expected {expected}"
            )

    check_present(user_col)
    check_present(item_col)
    ratings = None
    if rating_col is not None:
        check_present(rating_col)
        ratings = _numeric(df[rating_col], pd)
        bad = ~np.isfinite(ratings)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{source}: {where(pos)}, column {rating_col!r}: expected a "
                f"number, got {df[rating_col].iloc[pos]!r}"
            )
        bad = _beyond_float32(ratings)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{source}: {where(pos)}, column {rating_col!r}: expected a "
                f"number within float32 range (|x| <= {_FLOAT32_MAX:.4g}), got "
                f"{_shown(df[rating_col].iloc[pos])}"
            )
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
        raise ValueError(
            f"{source}: {where(pos)}, column {name!r}: expected a number or a "
            f"date, got {col.iloc[pos]!r}"
        )
    return parsed.to_numpy().astype("datetime64[ns]").astype(np.int64)
