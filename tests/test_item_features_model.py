"""AutoEncoder(...).fit(X, item_features=F): the feature encoder gives cold items vectors,
add_items adds new ones, save/load keeps it, bad feature matrices are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("torch")

from recfast.data import cold_start_split  # noqa: E402
from recfast.metrics import ndcg_at_k  # noqa: E402
from recfast.models import AutoEncoder, load_model  # noqa: E402

N_CATS = 12


def planted(n_users=500, n_items=300, seed=0):
    """Each item belongs to one of 12 categories (its features: the one-hot category and three
    noise columns); each user likes two categories and interacted with 10 of their items."""
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, N_CATS, n_items)
    F = np.concatenate(
        [
            np.eye(N_CATS, dtype=np.float32)[cat],
            rng.standard_normal((n_items, 3)).astype(np.float32),
        ],
        1,
    )
    rows, cols = [], []
    for u in range(n_users):
        likes = rng.choice(N_CATS, 2, replace=False)
        pool = np.flatnonzero(np.isin(cat, likes))
        chosen = rng.choice(pool, 10, replace=False)
        rows += [u] * 10
        cols += chosen.tolist()
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    return X, F, cat


# the deep variants' item vectors need more epochs than the full-rank item-item part
VARIANTS = {
    "hybrid full rank": dict(),
    "hybrid low rank": dict(full_rank_max_items=10, linear_rank=8, epochs=60),
    "dae": dict(variant="dae", epochs=60),
}


def model(**kw):
    kw = {"epochs": 15, "latent_dim": 16, "hidden": (32,), **kw}
    return AutoEncoder(verbose=False, device="cpu", **kw)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cold_items_ranked_far_above_random(name):
    X, F, cat = planted()
    split = cold_start_split(X, frac_items=0.2, seed=1)
    cold = split.cold_items
    warm = np.setdiff1d(np.arange(X.shape[1]), cold)
    m = model(**VARIANTS[name]).fit(split.train, item_features=F)
    assert m.feature_encoder_ is not None and m.feature_encoder_.n_features == F.shape[1]
    k = 10
    ids = m.recommend(split.test_input, k=k, filter_items=warm).ids
    assert np.isin(ids[ids >= 0], cold).all()
    got = ndcg_at_k(ids, split.test_target, k)
    rng = np.random.default_rng(0)
    rand = np.stack([rng.permutation(cold)[:k] for _ in range(ids.shape[0])])
    base = ndcg_at_k(rand, split.test_target, k)
    # the oracle knows the planted rule: the cold items of the user's categories first
    liked = [np.isin(cat[cold], cat[split.test_input[u].indices]) for u in range(ids.shape[0])]
    oracle = np.stack([cold[np.argsort(~lk, kind="stable")][:k] for lk in liked])
    best = ndcg_at_k(oracle, split.test_target, k)
    assert got > 2.5 * base and got > 0.5 * best, (got, base, best)
    # without features the same items are ranked no better than at random
    plain = model(**VARIANTS[name]).fit(split.train)
    ids0 = plain.recommend(split.test_input, k=k, filter_items=warm).ids
    assert got > 1.5 * ndcg_at_k(ids0, split.test_target, k), (got, base)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_add_items_then_recommend_returns_them_never_seen(name):
    X, F, cat = planted()
    m = model(**VARIANTS[name]).fit(X, item_features=F)
    n = X.shape[1]
    rng = np.random.default_rng(3)
    new_cat = np.repeat(np.arange(N_CATS), 2)
    new_f = np.concatenate(
        [
            np.eye(N_CATS, dtype=np.float32)[new_cat],
            rng.standard_normal((24, 3)).astype(np.float32),
        ],
        1,
    )
    new = m.add_items(new_f)
    np.testing.assert_array_equal(new, np.arange(n, n + 24))
    assert m.n_items_ == n + 24
    wide = sp.hstack([X, sp.csr_matrix((X.shape[0], 24), dtype=np.float32)]).tocsr()
    res = m.recommend(wide[:50], k=n + 24)
    for u in range(50):
        row = res.ids[u]
        assert np.isin(new, row).all()  # every new item is rankable
        assert not np.isin(X[u].indices, row).any()
    # a new item in a history is never recommended back
    seen_new = wide[:50].tolil()
    seen_new[:, n] = 1.0
    res = m.recommend(sp.csr_matrix(seen_new), k=n + 24)
    assert not (res.ids == n).any()
    # new items of a user's liked category rank above new items of the others, on average
    scores = m.scores(wide[:200])[:, n:]
    liked = np.zeros((200, 24), bool)
    for u in range(200):
        liked[u] = np.isin(new_cat, np.unique(cat[X[u].indices]))
    assert scores[liked].mean() > scores[~liked].mean()
    sim = m.similar_items(new[:3], k=5)
    assert sim.ids.shape == (3, 5) and not (sim.ids == new[:3, None]).any()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_save_load_keeps_the_feature_encoder(tmp_path, name):
    X, F, _ = planted()
    m = model(**VARIANTS[name]).fit(X, item_features=sp.csr_matrix(F))
    path = tmp_path / "ae.pt"
    m.save(path)
    back = load_model(path)
    np.testing.assert_array_equal(back.feature_encoder_.weight, m.feature_encoder_.weight)
    new_f = F[:4] + 0.5
    a, b = m.add_items(new_f), back.add_items(new_f)
    np.testing.assert_array_equal(a, b)
    wide = sp.hstack([X[:20], sp.csr_matrix((20, 4), dtype=np.float32)]).tocsr()
    np.testing.assert_array_equal(m.scores(wide), back.scores(wide))
    # saved after items were added: the grown model loads as it was
    m.save(path)
    again = load_model(path)
    assert again.n_items_ == X.shape[1] + 4
    np.testing.assert_array_equal(again.recommend(wide, k=7).ids, m.recommend(wide, k=7).ids)
    np.testing.assert_array_equal(again.scores(wide), m.scores(wide))


def test_bad_feature_matrices_name_the_argument():
    X, F, _ = planted(n_users=60, n_items=120)
    F = F[:, :6]  # 6 of the columns: 6 categories flags
    with pytest.raises(ValueError, match="item_features has 119 rows but there are 120 items"):
        model().fit(X, item_features=F[:119])
    bad = F.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="item_features contains NaN"):
        model().fit(X, item_features=bad)
    strings = np.array([["a", "b"]] * 120, dtype=object)
    with pytest.raises(TypeError, match="item_features must hold numbers"):
        model().fit(X, item_features=strings)
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"price": np.arange(120.0), "brand": ["x"] * 120})
    with pytest.raises(TypeError, match="item_features must hold numbers"):
        model().fit(X, item_features=df)
    with pytest.raises(ValueError, match="item_features must be 2-D"):
        model().fit(X, item_features=np.ones(120))
    plain = model().fit(X)
    with pytest.raises(ValueError, match="fit the model with item_features="):
        plain.add_items(F[:2])
    m = model().fit(X, item_features=F)
    with pytest.raises(ValueError, match="item_features has 3 columns but the model was fit on 6"):
        m.add_items(F[:2, :3])
    assert m.add_items(np.empty((0, 6), np.float32)).size == 0
    assert m.n_items_ == 120


def test_user_vectors_do_not_copy_the_item_vectors(monkeypatch):
    """recommend for one user once copied every item vector (item_embeddings() for a width):
    158 ms per call at 100,000 items; the width now comes from the cached scoring matrix."""
    X, F, _ = planted(n_users=60, n_items=120)
    m = model().fit(X)
    want = m.recommend(X[:3], k=5)
    m.user_embeddings(X[:0])  # fills the cache; an empty batch needs the width too

    def copy_all():
        raise AssertionError("item_embeddings() called on the recommend path")

    monkeypatch.setattr(m, "item_embeddings", copy_all)
    np.testing.assert_array_equal(m.recommend(X[:3], k=5).ids, want.ids)
    assert m.user_embeddings(X[:0]).shape == (0, m._scoring_items().shape[1] - 1)
