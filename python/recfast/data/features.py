"""`item_features`: an items x features matrix from a DataFrame of item attributes."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp


class ItemFeatures(NamedTuple):
    """An items x features matrix and the name of each column.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix or numpy.ndarray, float32, shape (n_items, n_features)
        Row r describes the DataFrame's r-th row.
    names : list of str
        Column names: "col=value" for one-hot and multi-hot columns, "col" for a numeric
        column, "col[d]" for dimension d of an embedding column.
    """

    matrix: Any
    names: list[str]


def _columns(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence):
        raise TypeError(
            f"{what} must be a column name or a list of column names, got {type(value).__name__}"
        )
    return list(value)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def item_features(
    df: Any,
    *,
    categorical: Any = (),
    multi_valued: Any = (),
    numeric: Any = (),
    embedding: Any = (),
    sep: str = "|",
    sparse: bool = True,
) -> ItemFeatures:
    """Build an items x features matrix from a DataFrame with one row per item.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per item, in the order of the model's item columns (reindex it first, e.g.
        ``df.set_index("item").reindex(data.item_ids).reset_index()``).
    categorical : str or list of str
        One-hot columns: one feature per distinct value (sorted by its text); a missing value
        (None, NaN) sets none.
    multi_valued : str or list of str
        Multi-hot columns: each cell a string of values joined by `sep` (or a list, tuple or
        set of values); one feature per distinct value; empty and missing cells set none.
    numeric : str or list of str
        Numeric columns, standardized to mean 0 and standard deviation 1 (a constant column
        becomes all zeros). A missing or non-finite value is a ValueError naming the column.
    embedding : str or list of str
        Columns whose cells are vectors of one length (e.g. precomputed text or image
        embeddings), used as they are: one feature per dimension.
    sep : str
        The separator of the multi-valued columns' strings.
    sparse : bool
        Return a scipy.sparse CSR matrix (True) or a dense numpy array.

    Returns
    -------
    ItemFeatures
        (matrix float32 of shape (len(df), n_features), names of the features), the column
        groups in the order categorical, multi_valued, numeric, embedding.

    Raises
    ------
    TypeError
        df is not a DataFrame; a numeric column holds text; an embedding cell is not a vector.
    ValueError
        A column is missing or named twice; no column is named; a numeric column holds a
        missing or non-finite value; embedding cells differ in length or hold NaN.
    """
    from .readers import _pandas

    pd = _pandas()
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"sep must be a non-empty string, got {sep!r}")
    if not isinstance(sparse, (bool, np.bool_)):
        raise TypeError(f"sparse must be True or False, got {type(sparse).__name__}")
    groups = {
        "categorical": _columns(categorical, "categorical"),
        "multi_valued": _columns(multi_valued, "multi_valued"),
        "numeric": _columns(numeric, "numeric"),
        "embedding": _columns(embedding, "embedding"),
    }
    seen: dict[Any, str] = {}
    for group, cols in groups.items():
        for c in cols:
            if c not in df.columns:
                raise ValueError(
                    f"{group}: column {c!r} not found; the columns are {list(df.columns)}"
                )
            if c in seen:
                raise ValueError(f"column {c!r} is named in both {seen[c]} and {group}")
            seen[c] = group
    if not seen:
        raise ValueError(
            "name at least one column (categorical, multi_valued, numeric or embedding)"
        )
    n = len(df)
    blocks: list[Any] = []
    names: list[str] = []
    for c in groups["categorical"]:
        cells = [None if _is_missing(v) else str(v) for v in df[c].tolist()]
        blocks.append(_hot(c, [[v] if v is not None else [] for v in cells], names))
    for c in groups["multi_valued"]:
        blocks.append(
            _hot(c, [_split(c, v, sep, r) for r, v in zip(df.index, df[c].tolist())], names)
        )
    for c in groups["numeric"]:
        blocks.append(sp.csr_matrix(_standardized(df[c], c, pd)[:, None]))
        names.append(str(c))
    for c in groups["embedding"]:
        emb = _embedding(df[c], c)
        blocks.append(sp.csr_matrix(emb))
        names += [f"{c}[{d}]" for d in range(emb.shape[1])]
    m = sp.hstack(blocks, format="csr", dtype=np.float32) if blocks else sp.csr_matrix((n, 0))
    m.eliminate_zeros()
    return ItemFeatures(m if sparse else m.toarray(), names)


def _split(col: Any, v: Any, sep: str, row: Any) -> list[str]:
    if _is_missing(v):
        return []
    if isinstance(v, str):
        parts = v.split(sep)
    elif isinstance(v, (list, tuple, set, frozenset)):
        parts = [str(x) for x in v]
    else:
        raise TypeError(
            f"multi_valued column {col!r}, row {row!r}: expected a string of values "
            f"joined by {sep!r} or a list of values, got {type(v).__name__}"
        )
    return [p for p in (s.strip() for s in parts) if p]


def _hot(col: Any, cells: list[list[str]], names: list[str]) -> sp.csr_matrix:
    """One row per cell with a 1 in the column of each of its (distinct) values."""
    values = sorted({v for cell in cells for v in cell})
    index = {v: j for j, v in enumerate(values)}
    rows, cols = [], []
    for r, cell in enumerate(cells):
        for j in sorted({index[v] for v in cell}):
            rows.append(r)
            cols.append(j)
    names += [f"{col}={v}" for v in values]
    return sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(cells), len(values))
    )


def _standardized(series: Any, col: Any, pd: Any) -> np.ndarray:
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        numbers_ = pd.to_numeric(series, errors="coerce")
        text = series[numbers_.isna() & series.notna()]
        if len(text):
            raise TypeError(
                f"numeric column {col!r} holds text: row {text.index[0]!r} is {text.iloc[0]!r}"
            )
        series = numbers_
    if series.dtype == bool:
        series = series.astype(np.float64)
    if not pd.api.types.is_numeric_dtype(series.dtype):
        raise TypeError(f"numeric column {col!r} must hold numbers, got dtype {series.dtype}")
    x = series.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(x)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"numeric column {col!r} holds a missing or non-finite value at row "
            f"{series.index[pos]!r}; fill or drop it first"
        )
    if x.size == 0:
        return x
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _embedding(series: Any, col: Any) -> np.ndarray:
    rows: list[np.ndarray] = []
    for r, v in zip(series.index, series.tolist()):
        if isinstance(v, (str, bytes)) or _is_missing(v) or isinstance(v, numbers.Number):
            raise TypeError(
                f"embedding column {col!r}, row {r!r}: expected a vector (list or "
                f"array of numbers), got {type(v).__name__}"
            )
        a = np.asarray(v)
        if a.ndim != 1 or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise TypeError(
                f"embedding column {col!r}, row {r!r}: expected a 1-D vector of "
                f"numbers, got shape {a.shape}, dtype {a.dtype}"
            )
        if rows and a.shape[0] != rows[0].shape[0]:
            raise ValueError(
                f"embedding column {col!r}: row {r!r} has {a.shape[0]} dimensions "
                f"but the first row has {rows[0].shape[0]}"
            )
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"embedding column {col!r}, row {r!r} holds NaN or infinite values")
        rows.append(a)
    if not rows:
        return np.zeros((0, 0))
    return np.stack(rows)
