"""recfast.data: readers on small files written here, filters, splits, error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recfast.data import (
    Interactions,
    leave_last_n_split,
    load_movielens,
    load_movielens_titles,
    random_holdout_split,
    strong_generalization_split,
)

pd = pytest.importorskip("pandas")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

CSV = "user,item,rating,ts\nalice,i1,5,10\nbob,i2,3.5,20\nalice,i3,1,30\ncarol,i1,4,40\nalice,i1,2,50\n"


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding=encoding)
    return p


# -- Interactions -------------------------------------------------------------------------------


def test_from_csv_maps_and_matrix(tmp_path: Path) -> None:
    p = write(tmp_path, "x.csv", CSV)
    d = Interactions.from_csv(
        p, user_col="user", item_col="item", rating_col="rating", time_col="ts"
    )
    assert (d.n_users, d.n_items, len(d)) == (3, 3, 5)
    assert list(d.user_ids) == ["alice", "bob", "carol"]
    assert list(d.item_ids) == ["i1", "i2", "i3"]
    assert list(d.users) == [0, 1, 0, 2, 0]
    assert list(d.items) == [0, 1, 2, 0, 0]
    np.testing.assert_array_equal(d.ratings, [5, 3.5, 1, 4, 2])
    np.testing.assert_array_equal(d.timestamps, [10, 20, 30, 40, 50])
    m = d.matrix()
    assert isinstance(m, sp.csr_matrix) and m.dtype == np.float32 and m.has_sorted_indices
    np.testing.assert_array_equal(m.toarray(), [[1, 0, 1], [0, 1, 0], [1, 0, 0]])
    # the last rating of a repeated pair wins
    np.testing.assert_array_equal(
        d.matrix(binary=False).toarray(), [[2, 0, 1], [0, 3.5, 0], [4, 0, 0]]
    )
    np.testing.assert_array_equal(d.user_index(["carol", "alice"]), [2, 0])
    np.testing.assert_array_equal(d.item_index("i3"), [2])
    with pytest.raises(ValueError, match="unknown user id.*'dave'"):
        d.user_index(["alice", "dave"])


def test_counts_matrix_without_ratings_and_int_ids() -> None:
    d = Interactions.from_arrays([7, 3, 7, 7], [1, 1, 2, 1])
    assert list(d.user_ids) == [3, 7]
    np.testing.assert_array_equal(d.matrix(binary=False).toarray(), [[1, 0], [2, 1]])
    # ids typed on a command line arrive as strings
    np.testing.assert_array_equal(d.user_index(["7", 3]), [1, 0])


def test_from_dataframe_and_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"u": [1, 2, 2], "i": [10, 10, 20], "r": [1.0, 2.0, 3.0]})
    d = Interactions.from_dataframe(df, user_col="u", item_col="i", rating_col="r")
    assert (d.n_users, d.n_items) == (2, 2) and d.timestamps is None
    p = tmp_path / "x.parquet"
    df.to_parquet(p)
    d2 = Interactions.from_parquet(p, user_col="u", item_col="i", rating_col="r")
    np.testing.assert_array_equal(
        d2.matrix(binary=False).toarray(), d.matrix(binary=False).toarray()
    )
    with pytest.raises(ValueError, match=r"x\.parquet: column 'time' not found"):
        Interactions.from_parquet(p, user_col="u", item_col="i", time_col="time")
    with pytest.raises(ValueError, match="DataFrame: row 1, column 'r': expected a number"):
        Interactions.from_dataframe(
            df.assign(r=["1", "x", "3"]), user_col="u", item_col="i", rating_col="r"
        )


def test_filter_semantics() -> None:
    d = Interactions.from_arrays(
        ["a", "a", "a", "b", "b", "c", "c"], [1, 2, 3, 1, 3, 1, 3], ratings=[5, 4, 3.5, 5, 5, 4, 4]
    )
    assert len(d.filter(min_rating=3.5)) == 7
    above = d.filter(rating_above=3.5)  # drops (a, 3) rated exactly 3.5
    assert len(above) == 6 and list(above.item_ids) == [1, 2, 3]
    f = d.filter(rating_above=3.5, min_item_interactions=2, min_user_interactions=2)
    # item 2 has one user and goes; then a has {1} and goes; b and c keep {1, 3}
    assert list(f.user_ids) == ["b", "c"] and list(f.item_ids) == [1, 3]
    np.testing.assert_array_equal(f.matrix().toarray(), [[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="need ratings"):
        Interactions.from_arrays([1], [1]).filter(min_rating=1)
    with pytest.raises(ValueError, match="min_user_interactions"):
        d.filter(min_user_interactions=-1)


# -- MovieLens readers --------------------------------------------------------------------------


def test_movielens_100k_layout(tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    write(folder, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t1\n")
    write(
        folder,
        "u.item",
        "242|Kolya (1996)|24-Jan-1997||http://x|0|0\n"
        "302|L.A. Confidential (1997)|01-Jan-1997||http://y|0|1\n",
        encoding="latin-1",
    )
    for path in (folder, folder / "u.data", tmp_path):  # folder, file, parent folder
        d = load_movielens(path)
        assert (d.n_users, d.n_items, len(d)) == (2, 2, 3)
        assert list(d.user_ids) == [186, 196] and d.user_ids.dtype.kind == "i"
    assert load_movielens_titles(folder) == {242: "Kolya (1996)", 302: "L.A. Confidential (1997)"}
    (tmp_path / "other").mkdir()
    write(tmp_path / "other", "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,9\n")
    with pytest.raises(ValueError, match="several MovieLens ratings files found"):
        load_movielens(tmp_path)


def test_movielens_1m_layout(tmp_path: Path) -> None:
    write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::9\n")
    write(
        tmp_path,
        "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::Caf\u00e9: A Story (1996)::Animation\n",
        encoding="latin-1",
    )
    d = load_movielens(tmp_path)
    assert list(d.user_ids) == [1, 2] and list(d.item_ids) == [661, 1193]
    np.testing.assert_array_equal(d.ratings, [5, 3, 4])
    titles = load_movielens_titles(tmp_path / "movies.dat")
    assert titles[661] == "Caf\u00e9: A Story (1996)"


def test_movielens_csv_layout(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n\n2,3,0.5,1\n",
    )
    write(
        tmp_path,
        "movies.csv",
        "movieId,title,genres\n1,Toy Story (1995),Comedy\n"
        '3,"Grumpier Old Men, The (1995)",Comedy\n',
    )
    d = load_movielens(tmp_path)
    assert (d.n_users, d.n_items, len(d)) == (2, 2, 3)
    np.testing.assert_array_equal(d.ratings, [4.0, 4.5, 0.5])
    assert load_movielens_titles(tmp_path) == {
        1: "Toy Story (1995)",
        3: "Grumpier Old Men, The (1995)",
    }


# -- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("u.data", "", r"u\.data: the file is empty"),
        (
            "u.data",
            "1\t2\t3\t4\n1\t2\tfive\t4\n",
            r"u\.data: line 2, column 'rating': expected a number, got 'five'",
        ),
        ("u.data", "1\t2\t3\t4\n1\t2\t3\n", r"u\.data: line 2: expected 4 fields"),
        ("u.data", "1\t2\t3\t4\n1\t2\t3\t4\t5\n", r"u\.data: line 2: expected 4 fields"),
        ("u.data", "1\t2\t3\t4\t5\n", r"u\.data: line 1: expected 4 fields"),
        (
            "ratings.dat",
            "1::2::3::4\n1::2::3::4::5\n",
            r"ratings\.dat: line 2: expected 4 fields .* separated by '::'",
        ),
        ("ratings.dat", "1:2:3:4\n", r"ratings\.dat: line 1: expected 4 fields"),
        (
            "ratings.csv",
            "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3,4,5\n",
            r"ratings\.csv: line 3: expected",
        ),
        (
            "ratings.csv",
            "userId,movieId,rating,timestamp\n1,2,3,4,5\n",
            r"ratings\.csv: line 2: more fields than the header",
        ),
        ("u.data", "x\t2\t3\t4\n", r"u\.data: line 1, column 'user': expected an integer id"),
        ("ratings.dat", "1::2::3::4\n1::2::x::4\n", r"ratings\.dat: line 2, column 'rating'"),
        (
            "ratings.csv",
            "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,bad,4\n",
            r"ratings\.csv: line 3, column 'rating': expected a number, got 'bad'",
        ),
        (
            "ratings.csv",
            "userId,movieId,stars,timestamp\n1,2,3,4\n",
            r"ratings\.csv: column 'rating' not found; the columns are \['userId', 'movieId', 'stars', 'timestamp'\]",
        ),
        ("ratings.csv", "userId,movieId,rating,timestamp\n", r"ratings\.csv: no data lines"),
        (
            "ratings.csv",
            "userId,movieId,rating,timestamp\n1,,3,4\n",
            r"ratings\.csv: line 2, column 'movieId': missing value",
        ),
        ("ratings.csv", "", r"ratings\.csv: the file is empty"),
        ("u.item", "1|ok\nnotanumber|x\n", r"u\.item: line 2: expected an integer item id"),
        ("movies.csv", "id,name\n1,x\n", r"movies\.csv: column 'movieId' not found"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, text: str, match: str) -> None:
    p = write(tmp_path, name, text)
    loader = load_movielens_titles if name in ("u.item", "movies.csv") else load_movielens
    with pytest.raises(ValueError, match=match):
        loader(p)


def test_csv_errors(tmp_path: Path) -> None:
    p = write(tmp_path, "x.csv", CSV)
    with pytest.raises(ValueError, match=r"x\.csv: column 'when' not found"):
        Interactions.from_csv(p, user_col="user", item_col="item", time_col="when")
    bad = write(tmp_path, "bad.csv", "user,item,ts\na,b,yesterday-ish\n")
    with pytest.raises(
        ValueError, match=r"bad\.csv: line 2, column 'ts': expected a number or a date"
    ):
        Interactions.from_csv(bad, user_col="user", item_col="item", time_col="ts")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        Interactions.from_csv(tmp_path / "nope.csv", user_col="user", item_col="item")
    with pytest.raises(ValueError, match="no MovieLens ratings file"):
        load_movielens(tmp_path / "empty_dir" if (tmp_path / "empty_dir").mkdir() is None else "")
    with pytest.raises(ValueError, match="column names must differ"):
        Interactions.from_csv(p, user_col="user", item_col="user")


def test_dates_as_timestamps(tmp_path: Path) -> None:
    p = write(tmp_path, "d.csv", "user,item,ts\na,x,2024-01-02\na,y,2024-01-01\n")
    d = Interactions.from_csv(p, user_col="user", item_col="item", time_col="ts")
    assert d.timestamps[0] > d.timestamps[1]


# -- ids and values that would not survive as int64 ids or float32 ratings -----------------------


@pytest.mark.parametrize(
    "column, value, match",
    [
        (
            "user",
            "9.3e18",
            r"line 3, column 'user': expected an integer id, got 9\.3e\+18: .*2\*\*53",
        ),
        ("user", "1.5", r"line 3, column 'user': expected an integer id, got 1\.5$"),
        ("item", "1e30", r"line 3, column 'item': expected an integer id, got 1e\+30"),
        ("item", "inf", r"line 3, column 'item': expected an integer id, got inf"),
        ("user", "nan", r"line 3, column 'user': missing value; expected an id"),
        (
            "rating",
            "1e300",
            r"line 3, column 'rating': expected a number within float32 range.*"
            r"got '?1e\+300",
        ),
        ("rating", "-1e39", r"line 3, column 'rating': expected a number within float32 range"),
    ],
)
def test_csv_ids_and_ratings_out_of_range(
    tmp_path: Path, column: str, value: str, match: str
) -> None:
    row = {"user": "2", "item": "20", "rating": "4"}
    row[column] = value
    p = write(
        tmp_path,
        "r.csv",
        f"user,item,rating\n1,10,5\n{row['user']},{row['item']},{row['rating']}\n",
    )
    with pytest.raises(ValueError, match=r"r\.csv: " + match):
        Interactions.from_csv(p, user_col="user", item_col="item", rating_col="rating")


def test_float_ids_beyond_int64_are_not_merged(tmp_path: Path) -> None:
    # before: every id beyond 2**63 became the same int64 (with only a numpy warning)
    p = write(tmp_path, "big.csv", "user,item\n9.3e18,1\n9.4e18,2\n")
    with pytest.raises(ValueError, match=r"big\.csv: line 2, column 'user'"):
        Interactions.from_csv(p, user_col="user", item_col="item")
    # whole numbers written as floats below 2**53 are still int ids
    p = write(tmp_path, "ok.csv", "user,item\n1.0,1\n2,2\n")
    d = Interactions.from_csv(p, user_col="user", item_col="item")
    assert d.user_ids.dtype == np.int64 and list(d.user_ids) == [1, 2]


@pytest.mark.parametrize("name", ["u.data", "movies.csv"])
def test_movielens_ids_out_of_range(tmp_path: Path, name: str) -> None:
    if name == "u.data":
        p = write(tmp_path, name, "1\t2\t3\t4\n1e30\t2\t3\t4\n")
        with pytest.raises(
            ValueError,
            match=r"u\.data: line 2, column 'user': expected an "
            r"integer id",
        ):
            load_movielens(p)
    else:
        p = write(tmp_path, name, "movieId,title,genres\n1,a,x\n1.5,b,y\n")
        with pytest.raises(ValueError, match=r"movies\.csv: line 3, column 'movieId'"):
            load_movielens_titles(p)


def test_parquet_ids_and_ratings_out_of_range(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    p = tmp_path / "x.parquet"
    pd.DataFrame({"u": [1.0, 9.3e18], "i": [1, 2], "r": [1.0, 2.0]}).to_parquet(p)
    with pytest.raises(ValueError, match=r"x\.parquet: row 1, column 'u': expected an integer id"):
        Interactions.from_parquet(p, user_col="u", item_col="i")
    pd.DataFrame({"u": [1, 2], "i": [1.0, 2.5], "r": [1.0, 2.0]}).to_parquet(p)
    with pytest.raises(ValueError, match=r"x\.parquet: row 1, column 'i': expected an integer id"):
        Interactions.from_parquet(p, user_col="u", item_col="i")
    pd.DataFrame({"u": [1, 2], "i": [1, 2], "r": [1e300, 2.0]}).to_parquet(p)
    with pytest.raises(
        ValueError,
        match=r"x\.parquet: row 0, column 'r': expected a number "
        r"within float32 range",
    ):
        Interactions.from_parquet(p, user_col="u", item_col="i", rating_col="r")


def test_array_constructors_check_values() -> None:
    with pytest.raises(
        ValueError,
        match=r"ratings\[1\] is 1e\+300; expected a finite number "
        r"within float32 range",
    ):
        Interactions.from_arrays([1, 2], [1, 2], ratings=[1.0, 1e300])
    with pytest.raises(ValueError, match=r"ratings\[0\] is nan"):
        Interactions.from_arrays([1, 2], [1, 2], ratings=[np.nan, 1.0])
    with pytest.raises(ValueError, match="ratings must be numbers"):
        Interactions.from_arrays([1, 2], [1, 2], ratings=["a", 1.0])
    with pytest.raises(ValueError, match=r"users\[0\] is nan; expected an id"):
        Interactions.from_arrays([np.nan, 1.0], [1, 2])
    ids = np.array([10, 20])
    with pytest.raises(ValueError, match=r"users\[0\] is 0\.5; expected an integer index"):
        Interactions(np.array([0.5]), np.array([0]), ids, ids)
    with pytest.raises(ValueError, match=r"items\[0\] is 1e\+30; expected an integer index"):
        Interactions(np.array([0]), np.array([1e30]), ids, ids)
    with pytest.raises(TypeError, match="items must hold integer indices"):
        Interactions(np.array([0]), np.array(["0"]), ids, ids)
    with pytest.raises(ValueError, match=r"ratings\[0\] is 1e\+300"):
        Interactions(np.array([0]), np.array([1]), ids, ids, ratings=np.array([1e300]))
    # whole floats are fine as indices
    d = Interactions(np.array([0.0, 1.0]), np.array([1, 0]), ids, ids, ratings=[3.0, 4.0])
    assert d.users.dtype == np.int64
    np.testing.assert_array_equal(d.matrix(binary=False).toarray(), [[0, 3], [4, 0]])


def test_split_rejects_values_beyond_float32() -> None:
    X = sp.csr_matrix(np.array([[1e300, 1.0, 1.0]] * 10))
    with pytest.raises(
        ValueError,
        match=r"X holds 1e\+300; expected finite values within "
        r"float32 range",
    ):
        strong_generalization_split(X, n_heldout_users=2)
    with pytest.raises(ValueError, match=r"X holds inf"):
        random_holdout_split(sp.csr_matrix(np.array([[np.inf, 1.0]])))


@pytest.mark.parametrize("sep", ["", "::", "\n", '"'])
def test_csv_separator_checked(tmp_path: Path, sep: str) -> None:
    p = write(tmp_path, "x.csv", CSV)
    with pytest.raises(ValueError, match="sep must be one character"):
        Interactions.from_csv(p, user_col="user", item_col="item", sep=sep)


# -- splits -------------------------------------------------------------------------------------


def random_matrix(n_users: int = 300, n_items: int = 80, seed: int = 1) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    m = sp.random(n_users, n_items, density=0.08, random_state=rng, format="csr", dtype=np.float32)
    m.data[:] = 1
    # every user gets at least 2 items
    extra = sp.csr_matrix(
        (
            np.ones(2 * n_users, np.float32),
            (np.repeat(np.arange(n_users), 2), np.tile([0, 1], n_users)),
        ),
        shape=(n_users, n_items),
    )
    m = (m + extra).tocsr()
    m.data[:] = 1
    return m


def rows_as_sets(m: sp.csr_matrix) -> list[set]:
    return [set(m.indices[m.indptr[r] : m.indptr[r + 1]].tolist()) for r in range(m.shape[0])]


def test_strong_generalization_invariants() -> None:
    X = random_matrix()
    s = strong_generalization_split(X, n_heldout_users=40, fold_in=0.8, seed=3)
    assert s.train.shape == (220, 80)
    for m in (s.valid_input, s.valid_target, s.test_input, s.test_target):
        assert m.shape == (40, 80) and isinstance(m, sp.csr_matrix)
    users = np.concatenate([s.train_users, s.valid_users, s.test_users])
    assert sorted(users.tolist()) == list(range(300))  # disjoint and complete
    full = rows_as_sets(X)
    assert rows_as_sets(s.train) == [full[u] for u in s.train_users]
    for inp, tgt, who in (
        (s.valid_input, s.valid_target, s.valid_users),
        (s.test_input, s.test_target, s.test_users),
    ):
        for a, b, u in zip(rows_as_sets(inp), rows_as_sets(tgt), who):
            assert a and b and not (a & b) and (a | b) == full[u]
            n = len(full[u])
            assert len(b) == min(max(int(round(0.2 * n, 6)), 1), n - 1)
    # same seed, same split; another seed, another one
    s2 = strong_generalization_split(X, n_heldout_users=40, fold_in=0.8, seed=3)
    assert (s2.test_target != s.test_target).nnz == 0
    np.testing.assert_array_equal(s2.valid_users, s.valid_users)
    s3 = strong_generalization_split(X, n_heldout_users=40, seed=4)
    assert not np.array_equal(s3.valid_users, s.valid_users)
    # a float is a fraction of the users
    assert strong_generalization_split(X, n_heldout_users=0.1).valid_input.shape[0] == 30


def test_strong_generalization_five_items_gives_one_target() -> None:
    X = sp.csr_matrix(np.ones((10, 5), np.float32))
    s = strong_generalization_split(X, n_heldout_users=2)
    assert np.all(np.diff(s.test_target.indptr) == 1)  # (1 - 0.8) * 5 rounds to 1, not 0
    assert np.all(np.diff(s.test_input.indptr) == 4)


def test_strong_generalization_errors() -> None:
    X = random_matrix(20, 10)
    with pytest.raises(ValueError, match="n_heldout_users"):
        strong_generalization_split(X, n_heldout_users=10)
    with pytest.raises(ValueError, match="fold_in"):
        strong_generalization_split(X, n_heldout_users=2, fold_in=1.0)
    with pytest.raises(ValueError, match="fewer than 2 items"):
        strong_generalization_split(sp.eye(10, format="csr"), n_heldout_users=2)
    with pytest.raises(TypeError, match="n_heldout_users"):
        strong_generalization_split(X, n_heldout_users="2")


def test_random_holdout_split() -> None:
    X = random_matrix()
    X = X.tolil()
    X[5] = 0  # one user without items
    X[6] = 0
    X[6, 3] = 1  # one with a single item
    X = X.tocsr()
    X.eliminate_zeros()
    train, test = random_holdout_split(X, holdout=0.25, seed=0)
    assert train.shape == test.shape == X.shape
    assert train.multiply(test).nnz == 0
    assert ((train + test) != X).nnz == 0
    n = np.diff(X.indptr)
    expected = np.clip(np.floor(np.round(0.25 * n, 6)), np.minimum(n - 1, 1), np.maximum(n - 1, 0))
    np.testing.assert_array_equal(np.diff(test.indptr), expected)
    t2, _ = random_holdout_split(X, holdout=0.25, seed=0)
    assert (t2 != train).nnz == 0


def test_leave_last_n_split() -> None:
    d = Interactions.from_arrays(
        ["a", "a", "a", "a", "b", "c", "c"],
        [1, 2, 3, 1, 1, 2, 3],
        timestamps=[10, 20, 30, 5, 1, 7, 8],
    )
    train, test = leave_last_n_split(d, n=1)
    # a: latest is item 3 (t=30); the repeat of item 1 at t=5 does not matter
    np.testing.assert_array_equal(test.toarray(), [[0, 0, 1], [0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(train.toarray(), [[1, 1, 0], [1, 0, 0], [0, 1, 0]])
    train2, test2 = leave_last_n_split(d, n=2)
    np.testing.assert_array_equal(test2.toarray(), [[0, 1, 1], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="needs timestamps"):
        leave_last_n_split(Interactions.from_arrays([1], [1]))


# -- real MovieLens (optional) ------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.parametrize(
    "name, n_ratings, n_users", [("ml-100k", 100_000, 943), ("ml-latest-small", 100_836, 610)]
)
def test_real_movielens(name: str, n_ratings: int, n_users: int) -> None:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    d = load_movielens(path)
    assert len(d) == n_ratings and d.n_users == n_users
    titles = load_movielens_titles(path)
    assert set(d.item_ids.tolist()) <= set(titles)
    f = d.filter(rating_above=3.5, min_user_interactions=5)
    assert f.ratings.min() > 3.5
    assert np.diff(f.matrix().indptr).min() >= 5
    s = strong_generalization_split(f.matrix(), n_heldout_users=0.1, seed=0)
    assert s.test_input.shape[1] == f.n_items
