"""MovieLens item attribute readers (genres, tags) and recfast.data.item_features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recfast.data import (
    item_features,
    load_movielens_genres,
    load_movielens_tags,
)
from recfast.data.movielens import ML100K_GENRES

pd = pytest.importorskip("pandas")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def u_item_line(item: int, title: str, genres: list[str]) -> str:
    flags = ["1" if g in genres else "0" for g in ML100K_GENRES]
    return "|".join([str(item), title, "01-Jan-1995", "", "http://x", *flags])


# ----------------------------------------------------------------------------- readers
def test_u_item_genres(tmp_path: Path) -> None:
    (tmp_path / "u.item").write_text(
        u_item_line(1, "Toy Story (1995)", ["Animation", "Children's", "Comedy"])
        + "\n"
        + u_item_line(7, "Nothing", [])
        + "\n"
        + u_item_line(3, "Four Rooms (1995)", ["Thriller"])
        + "\n",
        encoding="latin-1",
    )
    df = load_movielens_genres(tmp_path)
    assert df["item"].tolist() == [1, 7, 3] and df["item"].dtype == np.int64
    assert df["title"].tolist() == ["Toy Story (1995)", "Nothing", "Four Rooms (1995)"]
    assert df["genres"].tolist() == ["Animation|Children's|Comedy", "", "Thriller"]


@pytest.mark.parametrize(
    "line, words",
    [
        ("1|Toy|01-Jan-1995||url|0|1", "line 1: expected 24 fields"),
        ("x|Toy|d||u|" + "|".join(["0"] * 19), "line 1: expected an integer item id, got 'x'"),
        ("1|Toy|d||u|" + "|".join(["2"] * 19), "line 1: the genre flags must be 0 or 1"),
    ],
)
def test_u_item_errors_name_the_line(tmp_path: Path, line: str, words: str) -> None:
    (tmp_path / "u.item").write_text(line + "\n")
    with pytest.raises(ValueError, match=words):
        load_movielens_genres(tmp_path / "u.item")


def test_movies_csv_genres(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n"
        '5,"Father of the Bride, Part II (1995)",Comedy\n9,Odd,(no genres listed)\n'
    )
    df = load_movielens_genres(tmp_path)
    assert df["item"].tolist() == [1, 5, 9]
    assert df["title"].tolist()[1] == "Father of the Bride, Part II (1995)"
    assert df["genres"].tolist() == ["Adventure|Animation", "Comedy", ""]


def test_movies_dat_genres(tmp_path: Path) -> None:
    (tmp_path / "movies.dat").write_text(
        "1::Toy Story (1995)::Animation|Comedy\n2::J::Drama\n", encoding="latin-1"
    )
    df = load_movielens_genres(tmp_path)
    assert df["genres"].tolist() == ["Animation|Comedy", "Drama"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("movieId,title\n1,A\n", "column 'genres' not found"),
        ("movieId,title,genres\n1.5,A,Drama\n", "line 2, column 'movieId': expected an integer"),
        ("", "the file is empty"),
    ],
)
def test_movies_csv_errors(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "movies.csv").write_text(text)
    with pytest.raises(ValueError, match=words):
        load_movielens_genres(tmp_path / "movies.csv")


def test_tags_aggregated_per_item(tmp_path: Path) -> None:
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n2,60,funny,1\n3,60,Funny ,2\n2,60,dark|comedy,3\n"
        "4,10,pixar,4\n4,10,,5\n"
    )
    df = load_movielens_tags(tmp_path)
    assert df["item"].tolist() == [10, 60]
    assert df["tags"].tolist() == ["pixar", "dark comedy|funny"]  # lower-cased, deduplicated


def test_tags_errors(tmp_path: Path) -> None:
    (tmp_path / "tags.csv").write_text("userId,movieId,label\n1,2,x\n")
    with pytest.raises(ValueError, match="column 'tag' not found"):
        load_movielens_tags(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no MovieLens tags file found"):
        load_movielens_tags(tmp_path / "empty")
    with pytest.raises(ValueError, match="sep must be"):
        load_movielens_tags(tmp_path, sep="")


@pytest.mark.skipif(not (SHARED_DATA / "ml-100k" / "u.item").is_file(), reason="no ml-100k")
def test_real_ml100k_genres() -> None:
    df = load_movielens_genres(SHARED_DATA / "ml-100k")
    assert len(df) == 1682 and df["item"].tolist() == list(range(1, 1683))
    assert df["genres"].iloc[0] == "Animation|Children's|Comedy"  # Toy Story
    genre_file = (SHARED_DATA / "ml-100k" / "u.genre").read_text().split()
    assert tuple(line.rsplit("|", 1)[0] for line in genre_file) == ML100K_GENRES
    f = item_features(df, multi_valued="genres")
    assert f.matrix.shape[0] == 1682 and set(f.names) <= {f"genres={g}" for g in ML100K_GENRES}


@pytest.mark.skipif(
    not (SHARED_DATA / "ml-latest-small" / "tags.csv").is_file(), reason="no ml-latest-small"
)
def test_real_ml_latest_small_genres_and_tags() -> None:
    folder = SHARED_DATA / "ml-latest-small"
    g = load_movielens_genres(folder)
    t = load_movielens_tags(folder)
    assert len(g) == 9742 and g["genres"].iloc[0] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert (g["genres"] == "").sum() == 34  # the "(no genres listed)" movies
    assert t["item"].is_unique and set(t["item"]) <= set(g["item"])
    both = g.merge(t, on="item", how="left")
    f = item_features(both, multi_valued=["genres", "tags"])
    assert f.matrix.shape[0] == 9742 and sp.issparse(f.matrix)
    assert "genres=Comedy" in f.names and "tags=funny" in f.names
    assert f.matrix[0, f.names.index("genres=Comedy")] == 1.0


# ----------------------------------------------------------------------------- item_features
def frame() -> object:
    return pd.DataFrame(
        {
            "brand": ["b", "a", None, "b"],
            "genres": ["x|y", "", "y", None],
            "price": [1.0, 2.0, 3.0, 6.0],
            "emb": [np.array([0.5, 1.0]), [0.0, -1.0], (2.0, 2.0), np.zeros(2, np.float32)],
        }
    )


def test_item_features_by_hand() -> None:
    f = item_features(
        frame(), categorical="brand", multi_valued=["genres"], numeric="price", embedding="emb"
    )
    assert f.names == ["brand=a", "brand=b", "genres=x", "genres=y", "price", "emb[0]", "emb[1]"]
    assert sp.isspmatrix_csr(f.matrix) and f.matrix.dtype == np.float32
    price = np.array([1.0, 2.0, 3.0, 6.0])
    z = (price - price.mean()) / price.std()
    want = np.array(
        [
            [0, 1, 1, 1, z[0], 0.5, 1.0],
            [1, 0, 0, 0, z[1], 0.0, -1.0],
            [0, 0, 0, 1, z[2], 2.0, 2.0],
            [0, 1, 0, 0, z[3], 0.0, 0.0],
        ]
    )
    np.testing.assert_allclose(f.matrix.toarray(), want, rtol=1e-6, atol=1e-7)
    dense = item_features(frame(), categorical="brand", numeric="price", sparse=False)
    assert isinstance(dense.matrix, np.ndarray)
    np.testing.assert_allclose(dense.matrix, want[:, [0, 1, 4]], rtol=1e-6, atol=1e-7)


def test_list_cells_and_other_separator() -> None:
    df = pd.DataFrame({"tags": [["a", "b", "a"], "b;c", ()]})
    f = item_features(df, multi_valued="tags", sep=";")
    assert f.names == ["tags=a", "tags=b", "tags=c"]
    np.testing.assert_array_equal(f.matrix.toarray(), [[1, 1, 0], [0, 1, 1], [0, 0, 0]])


def test_constant_numeric_column_is_zeros() -> None:
    f = item_features(pd.DataFrame({"p": [4, 4, 4]}), numeric="p")
    assert f.matrix.nnz == 0 and f.matrix.shape == (3, 1)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(categorical="nope"), ValueError, "categorical: column 'nope' not found"),
        (
            dict(numeric="price", embedding=["price"]),
            ValueError,
            "column 'price' is named in both numeric and embedding",
        ),
        (dict(), ValueError, "name at least one column"),
        (dict(numeric="brand"), TypeError, "numeric column 'brand' holds text"),
        (dict(numeric="bad"), ValueError, "numeric column 'bad' holds a missing or non-finite"),
        (dict(embedding="ragged"), ValueError, "embedding column 'ragged': row 1 has 3 dimensions"),
        (dict(embedding="brand"), TypeError, "embedding column 'brand', row 0: expected a vector"),
        (dict(embedding="nanemb"), ValueError, "embedding column 'nanemb', row 2 holds NaN"),
        (dict(multi_valued="price"), TypeError, "multi_valued column 'price', row 0"),
        (dict(categorical=3), TypeError, "categorical must be a column name"),
        (dict(categorical="brand", sep=""), ValueError, "sep must be"),
    ],
)
def test_item_features_errors_name_the_column(kwargs: dict, exc: type, words: str) -> None:
    df = frame()
    df["bad"] = [1.0, np.nan, 2.0, 3.0]
    df["ragged"] = [[1, 2], [1, 2, 3], [1, 2], [1, 2]]
    df["nanemb"] = [[1.0], [2.0], [np.nan], [0.0]]
    with pytest.raises(exc, match=words):
        item_features(df, **kwargs)


def test_item_features_needs_a_dataframe() -> None:
    with pytest.raises(TypeError, match="df must be a pandas DataFrame"):
        item_features({"a": [1]}, numeric="a")
