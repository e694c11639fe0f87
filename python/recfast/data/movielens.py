"""MovieLens readers: ratings (ml-100k, ml-1m/10m, ml-latest, ml-20m/25m layouts), titles, and
the item attributes the datasets ship (genres, tags)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .interactions import Interactions, _bad_float_id, _one_line, _shown
from .readers import _check_columns, _from_frame, _numeric, _pandas, _read_text

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
    found = [
        d / name
        for d in sorted(d for d in p.iterdir() if d.is_dir())
        for name in names
        if (d / name).is_file()
    ]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ValueError(
            f"{p}: several MovieLens {what} files found "
            f"({', '.join(str(f.relative_to(p)) for f in found)}); name one"
        )
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
        return Interactions.from_csv(
            p, user_col="userId", item_col="movieId", rating_col="rating", time_col="timestamp"
        )
    names = ["user", "item", "rating", "timestamp"]
    sep = "\t" if layout == "u.data" else "::"
    df = _read_text(p, sep=sep, columns=names, header=False)
    bad = df["timestamp"].isna().to_numpy()
    if bad.any():  # too few fields on a line
        line = int(df.index[np.flatnonzero(bad)[0]]) + 1
        raise ValueError(
            f"{p}: line {line}: expected 4 fields (user, item, rating, timestamp) "
            f"separated by {sep!r}"
        )
    for col in ("user", "item"):
        numbers = _numeric(df[col], _pandas())
        bad = _bad_float_id(numbers)
        if bad is not None:
            pos = bad[0]
            raise ValueError(
                f"{p}: line {int(df.index[pos]) + 1}, column {col!r}: expected an "
                f"integer id, got {_shown(df[col].iloc[pos])}"
            )
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
            raise ValueError(
                f"{p}: the file is empty; expected a header 'movieId,title,genres'"
            ) from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: {_one_line(exc)}") from None
        _check_columns(p, list(df.columns), ["movieId", "title"])
        ids = _numeric(df["movieId"], pd)
        bad = _bad_float_id(ids)
        if bad is not None:
            pos = bad[0]
            raise ValueError(
                f"{p}: line {pos + 2}, column 'movieId': expected an integer id, "
                f"got {_shown(df['movieId'].iloc[pos])}"
            )
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
                raise ValueError(
                    f"{p}: line {lineno}: expected an integer item id, got {fields[0]!r}"
                ) from None
            titles[item] = fields[1]
    if not titles:
        raise ValueError(f"{p}: the file is empty; expected lines 'id{sep}title{sep}...'")
    return titles


# --------------------------------------------------------------------------------------------
# item attributes: genres and tags
# --------------------------------------------------------------------------------------------

# ml-100k's u.item ends in 19 genre flags in this order (the dataset's u.genre).
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_NO_GENRES = "(no genres listed)"  # ml-latest's movies.csv marker for an empty list
_TAG_FILES = ("tags.csv",)


def load_movielens_genres(path: str | os.PathLike[str]) -> Any:
    """Items' titles and genres as a pandas DataFrame with columns item, title, genres.

    Reads `u.item` (ml-100k: `id|title|release|video release|url|` then 19 0/1 genre flags,
    latin-1), `movies.dat` (ml-1m/10m: `id::title::A|B`, latin-1) or `movies.csv`
    (ml-latest(-small)/20m/25m: header `movieId,title,genres`, utf-8), given the file or its
    folder. `genres` holds each item's genres joined by "|" ("" for none; ml-latest's
    "(no genres listed)" is none), ready for `item_features(df, multi_valued=["genres"])`.
    Rows are in file order; `item` is the raw id (int64).
    """
    pd = _pandas()
    p = _find_file(path, _TITLE_FILES, "movies")
    layout = _layout(p, _TITLE_FILES)
    if layout == "movies.csv":
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise ValueError(
                f"{p}: the file is empty; expected a header 'movieId,title,genres'"
            ) from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: {_one_line(exc)}") from None
        _check_columns(p, list(df.columns), ["movieId", "title", "genres"])
        items = _int_ids(p, df["movieId"], "movieId", header_lines=1)
        cells = [("" if g.strip() == _NO_GENRES else g.strip()) for g in df["genres"]]
        return pd.DataFrame({"item": items, "title": df["title"].tolist(), "genres": cells})
    rows_item, rows_title, rows_genres = [], [], []
    with open(p, encoding="latin-1") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            if layout == "u.item":
                fields = line.split("|")
                if len(fields) != 5 + len(ML100K_GENRES):
                    raise ValueError(
                        f"{p}: line {lineno}: expected {5 + len(ML100K_GENRES)} "
                        f"fields separated by '|' (id, title, release date, video "
                        f"release date, url, 19 genre flags), got {len(fields)}"
                    )
                flags = fields[5:]
                if any(v not in ("0", "1") for v in flags):
                    raise ValueError(
                        f"{p}: line {lineno}: the genre flags must be 0 or 1, got "
                        f"{'|'.join(flags)!r}"
                    )
                genres = "|".join(g for g, v in zip(ML100K_GENRES, flags) if v == "1")
            else:
                fields = line.split("::")
                if len(fields) != 3:
                    raise ValueError(f"{p}: line {lineno}: expected 'id::title::genres'")
                genres = "" if fields[2].strip() == _NO_GENRES else fields[2].strip()
            try:
                rows_item.append(int(fields[0]))
            except ValueError:
                raise ValueError(
                    f"{p}: line {lineno}: expected an integer item id, got {fields[0]!r}"
                ) from None
            rows_title.append(fields[1])
            rows_genres.append(genres)
    if not rows_item:
        raise ValueError(f"{p}: the file is empty; expected one line per movie")
    return pd.DataFrame(
        {"item": np.array(rows_item, np.int64), "title": rows_title, "genres": rows_genres}
    )


def load_movielens_tags(path: str | os.PathLike[str], *, sep: str = "|") -> Any:
    """Items' user-given tags from `tags.csv` (ml-latest(-small)/20m/25m: header
    `userId,movieId,tag,timestamp`), given the file or its folder.

    Returns a pandas DataFrame with columns item (raw id, int64, ascending) and tags: each
    item's distinct tags, lower-cased and stripped, sorted, joined by `sep` (a `sep` inside a
    tag becomes a space), ready for `item_features(df, multi_valued=["tags"], sep=sep)`. Items
    nobody tagged are absent: merge on `item` with the genres to keep every movie.
    """
    pd = _pandas()
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"sep must be a non-empty string, got {sep!r}")
    p = _find_file(path, _TAG_FILES, "tags")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{p}: the file is empty; expected a header 'userId,movieId,tag,timestamp'"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: {_one_line(exc)}") from None
    _check_columns(p, list(df.columns), ["movieId", "tag"])
    items = _int_ids(p, df["movieId"], "movieId", header_lines=1)
    tags = df["tag"].str.replace(sep, " ", regex=False).str.strip().str.lower()
    long = pd.DataFrame({"item": items, "tag": tags})
    long = long[long["tag"] != ""].drop_duplicates()
    grouped = long.groupby("item", sort=True)["tag"].agg(lambda t: sep.join(sorted(t)))
    return pd.DataFrame(
        {"item": grouped.index.to_numpy(np.int64), "tags": grouped.to_numpy(dtype=object)}
    )


def _int_ids(p: Path, column: Any, name: str, *, header_lines: int) -> np.ndarray:
    """A column of integer ids; a ValueError naming the file, line and column otherwise."""
    ids = _numeric(column, _pandas())
    bad = _bad_float_id(ids)
    if bad is not None:
        pos, reason = bad
        raise ValueError(f"{p}: line {pos + 1 + header_lines}, column {name!r}: {reason}")
    return ids.astype(np.int64)
