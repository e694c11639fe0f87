"""recfast.models: AutoEncoder (needs torch), EASE, Popularity on synthetic data made here."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from recfast.models import EASE, Popularity, load_model


def planted(n_users=600, n_items=200, n_groups=10, per_user=14, seed=0):
    """Users each belong to one group of items and mostly pick from it (90%), else anything."""
    rng = np.random.default_rng(seed)
    group_of_item = np.arange(n_items) % n_groups
    rows, cols = [], []
    for u in range(n_users):
        g = u % n_groups
        own = np.flatnonzero(group_of_item == g)
        n_own = int(per_user * 0.9)
        picks = set(rng.choice(own, n_own, replace=False).tolist())
        while len(picks) < per_user:
            picks.add(int(rng.integers(n_items)))
        rows += [u] * len(picks)
        cols += sorted(picks)
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    return X


def split_rows(X, seed=0, frac=0.8):
    """Per user, frac of the items as input and the rest as target."""
    rng = np.random.default_rng(seed)
    X = X.tocsr()
    inp, tgt = X.copy().tolil(), X.copy().tolil()
    for u in range(X.shape[0]):
        items = X.indices[X.indptr[u] : X.indptr[u + 1]]
        perm = rng.permutation(items)
        cut = int(len(items) * frac)
        for i in perm[cut:]:
            inp[u, i] = 0
        for i in perm[:cut]:
            tgt[u, i] = 0
    a, b = sp.csr_matrix(inp), sp.csr_matrix(tgt)
    a.eliminate_zeros()
    b.eliminate_zeros()
    return a, b


def ndcg100(ids, targets):
    disc = 1.0 / np.log2(np.arange(2, ids.shape[1] + 2))
    out = []
    for u in range(ids.shape[0]):
        t = targets.indices[targets.indptr[u] : targets.indptr[u + 1]]
        if len(t) == 0:
            continue
        hits = np.isin(ids[u], t)
        out.append((hits * disc).sum() / disc[: min(len(t), ids.shape[1])].sum())
    return float(np.mean(out))


@pytest.fixture(scope="module")
def data():
    X = planted()
    train, held = X[:500], X[500:]
    inp, tgt = split_rows(held)
    return train, inp, tgt


SMALL = dict(
    latent_dim=16,
    hidden=(32,),
    linear_rank=16,
    epochs=15,
    batch_size=100,
    lr=3e-3,
    verbose=False,
    num_threads=1,
    device="cpu",
)


@pytest.fixture(scope="module")
def ae(data):
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    return AutoEncoder(**SMALL, random_state=0).fit(data[0])


# ----------------------------------------------------------------------------- without torch
def test_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import recfast, recfast.models as m\n"
        "try:\n    m.AutoEncoder()\nexcept ImportError as e:\n"
        "    assert 'pip install recfast[train]' in str(e), e\n    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


# ----------------------------------------------------------------------------- AutoEncoder
def test_autoencoder_beats_popularity(ae, data):
    train, inp, tgt = data
    pop = Popularity().fit(train)
    n_ae = ndcg100(ae.recommend(inp, k=100).ids, tgt)
    n_pop = ndcg100(pop.recommend(inp, k=100).ids, tgt)
    assert n_ae > n_pop + 0.15, (n_ae, n_pop)


@pytest.mark.parametrize("variant", ["dae", "vae", "ae"])
def test_variants_train_and_rank(variant, data):
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    train, inp, tgt = data
    kw = dict(SMALL, epochs=40 if variant == "ae" else 8)
    kw.pop("linear_rank")
    m = AutoEncoder(**kw, variant=variant).fit(train)
    ids = m.recommend(inp, k=20).ids
    assert ids.shape == (inp.shape[0], 20)
    n_pop = ndcg100(Popularity().fit(train).recommend(inp, k=100).ids, tgt)
    assert ndcg100(m.recommend(inp, k=100).ids, tgt) > n_pop


def test_recommend_matches_model_scores(ae, data):
    _, inp, _ = data
    scores = ae.scores(inp[:20])
    res = ae.recommend(inp[:20], k=10)
    for u in range(20):
        s = scores[u].copy()
        s[inp[u].indices] = -np.inf
        np.testing.assert_allclose(res.scores[u], np.sort(s)[::-1][:10], rtol=1e-4, atol=1e-4)


def test_recommend_never_returns_seen_or_filtered(ae, data):
    _, inp, _ = data
    banned = np.array([0, 5, 17, 42])
    res = ae.recommend(inp, k=50, filter_items=banned)
    for u in range(inp.shape[0]):
        ids = res.ids[u]
        assert not np.isin(ids, inp[u].indices).any()
        assert not np.isin(ids, banned).any()
    # per-user sparse filter
    f = sp.csr_matrix(
        (np.ones(inp.shape[0]), (np.arange(inp.shape[0]), np.arange(inp.shape[0]) % 200)),
        shape=inp.shape,
    )
    res = ae.recommend(inp, k=30, filter_items=f)
    assert not (res.ids == (np.arange(inp.shape[0]) % 200)[:, None]).any()
    # k larger than what is left pads with -1
    res = ae.recommend(inp[:1], k=200)
    n_left = 200 - inp[0].nnz
    assert (res.ids[0, n_left:] == -1).all() and (res.ids[0, :n_left] >= 0).all()


def assert_similar_items_are_a_direct_search(model, n_items, k=10):
    """similar_items(ids) is each item's k nearest items by cosine over item_embeddings(),
    the item itself excluded: checked against the NumPy reference's search (tie-aware)."""
    from recfast import reference

    from helpers import assert_topk_equivalent

    emb = model.item_embeddings()
    assert emb.shape[0] == n_items
    ids = np.array([0, 3, 3, n_items - 1, 17])  # repeated ids are answered twice
    got = model.similar_items(ids, k=k)
    excl = [np.array([i]) for i in ids]
    want = reference.topk(emb[ids], emb, k, metric="cosine", exclude=excl)
    assert_topk_equivalent(got, want, emb[ids], emb, "cosine", k, excl)
    assert not (got.ids == ids[:, None]).any()
    everyone = model.similar_items(np.arange(n_items), k=k)
    assert not (everyone.ids == np.arange(n_items)[:, None]).any()
    np.testing.assert_array_equal(everyone.ids[ids], got.ids)
    one = model.similar_items(3, k=k)  # a single id: one row
    np.testing.assert_array_equal(one.ids, got.ids[1:2])


def test_similar_items_are_the_cosine_neighbours_of_the_item_vectors(ae):
    assert_similar_items_are_a_direct_search(ae, 200)


def test_same_seed_same_embeddings(data):
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    train, inp, _ = data
    kw = dict(SMALL, epochs=3)
    a = AutoEncoder(**kw, random_state=7).fit(train)
    b = AutoEncoder(**kw, random_state=7).fit(train)
    c = AutoEncoder(**kw, random_state=8).fit(train)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())
    np.testing.assert_array_equal(a.user_embeddings(inp), b.user_embeddings(inp))
    assert not np.array_equal(a.item_embeddings(), c.item_embeddings())


TINY = dict(
    latent_dim=8,
    hidden=(16,),
    linear_rank=8,
    epochs=1,
    batch_size=250,
    verbose=False,
    num_threads=1,
    device="cpu",
)
# Every kind of network: the full-rank hybrid (B), the low-rank hybrid (U V'), Mult-DAE,
# Mult-VAE (its encoder doubles the last layer), the plain AE; with and without hidden layers.
AE_VARIANTS = {
    "hybrid-full": dict(variant="hybrid"),
    "hybrid-low-rank": dict(variant="hybrid", full_rank_max_items=100),
    "dae": dict(variant="dae"),
    "dae-no-hidden": dict(variant="dae", hidden=()),
    "vae": dict(variant="vae"),
    "vae-no-hidden": dict(variant="vae", hidden=()),
    "ae": dict(variant="ae"),
}


def assert_same_model_outputs(a, b, inp):
    """Identical recommend() ids and scores (with filters too), embeddings, similar_items."""
    for kw in (dict(k=20), dict(k=250, filter_items=[0, 5])):
        ra, rb = a.recommend(inp, **kw), b.recommend(inp, **kw)
        np.testing.assert_array_equal(ra.ids, rb.ids)
        np.testing.assert_array_equal(ra.scores, rb.scores)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())
    sa, sb = a.similar_items(np.arange(20), k=5), b.similar_items(np.arange(20), k=5)
    np.testing.assert_array_equal(sa.ids, sb.ids)
    np.testing.assert_array_equal(sa.scores, sb.scores)


@pytest.mark.parametrize("name", list(AE_VARIANTS))
def test_save_load_round_trip(name, data, tmp_path):
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    train, inp, _ = data
    model = AutoEncoder(**dict(TINY, **AE_VARIANTS[name]), random_state=3).fit(train)
    if name.startswith("hybrid"):
        assert model.net_.full == (name == "hybrid-full")
        assert model.net_.rank == (0 if name == "hybrid-full" else 8)
    path = tmp_path / "ae.pt"
    model.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["ae.pt"]  # no temp file left
    for loaded in (AutoEncoder.load(path), AutoEncoder.load(path, device="cpu"), load_model(path)):
        assert isinstance(loaded, AutoEncoder)
        assert loaded.config == model.config
        assert loaded.n_items_ == model.n_items_ == 200
        assert all(t.device.type == "cpu" for t in loaded.net_.state_dict().values())
        assert loaded.net_.full == model.net_.full and loaded.net_.rank == model.net_.rank
        assert_same_model_outputs(model, loaded, inp)
        np.testing.assert_array_equal(model.user_embeddings(inp), loaded.user_embeddings(inp))
    # Saved again after loading: the same file contents give the same model.
    loaded.save(tmp_path / "again.pt")
    assert_same_model_outputs(model, AutoEncoder.load(tmp_path / "again.pt", device="cpu"), inp)


def test_load_rejects_a_bad_device(ae, tmp_path):
    from recfast.models import AutoEncoder

    path = tmp_path / "ae.pt"
    ae.save(path)
    with pytest.raises(ValueError, match="device"):
        AutoEncoder.load(path, device="tpu9")


def test_similar_items_of_every_variant(data):
    """similar_items is the direct search over item_embeddings() whatever the network."""
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    for name in ("hybrid-low-rank", "vae"):
        m = AutoEncoder(**dict(TINY, **AE_VARIANTS[name])).fit(data[0])
        assert_similar_items_are_a_direct_search(m, 200)


def test_validation_keeps_best_epoch_and_callback(data):
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    train, inp, tgt = data
    seen = []

    def cb(model, epoch, logs):
        seen.append(epoch)
        return epoch < 3  # stop after the 4th epoch

    m = AutoEncoder(**dict(SMALL, epochs=10)).fit(train, validation=(inp, tgt), callback=cb)
    assert seen == [0, 1, 2, 3]
    assert len(m.history_) == 4 and all("ndcg@100" in h for h in m.history_)
    best = max(range(4), key=lambda e: m.history_[e]["ndcg@100"])
    assert m.best_epoch_ == best
    assert ndcg100(m.recommend(inp, k=100).ids, tgt) == pytest.approx(m.history_[best]["ndcg@100"])


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(latent_dim=0), ValueError, "latent_dim"),
        (dict(latent_dim=2.5), TypeError, "latent_dim"),
        (dict(dropout=1.0), ValueError, "dropout"),
        (dict(dropout=-0.1), ValueError, "dropout"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(lr=0), ValueError, "lr"),
        (dict(batch_size="8"), TypeError, "batch_size"),
        (dict(weight_decay=-1.0), ValueError, "weight_decay"),
        (dict(variant="xyz"), ValueError, "variant"),
        (dict(hidden=(0,)), ValueError, "hidden"),
        (dict(hidden="big"), TypeError, "hidden"),
        (dict(device="tpu9"), ValueError, "device"),
        (dict(random_state=-1), ValueError, "random_state"),
    ],
)
def test_autoencoder_bad_arguments(kwargs, exc, word):
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    with pytest.raises(exc, match=word):
        AutoEncoder(**kwargs)


def test_autoencoder_bad_inputs(ae, data):
    _, inp, _ = data
    with pytest.raises(ValueError, match="items"):
        ae.recommend(sp.csr_matrix((3, 7)), k=5)
    with pytest.raises(ValueError, match="k"):
        ae.recommend(inp, k=0)
    with pytest.raises(TypeError, match="X"):
        ae.recommend("users", k=5)
    with pytest.raises(ValueError, match="filter_items"):
        ae.recommend(inp, k=5, filter_items=[1000])
    with pytest.raises(ValueError, match="item_ids"):
        ae.similar_items([-1])


# ----------------------------------------------------------------------------- baselines
def test_ease_beats_popularity_and_round_trips(data, tmp_path):
    train, inp, tgt = data
    ease = EASE(l2=50.0).fit(train)
    pop = Popularity().fit(train)
    assert (
        ndcg100(ease.recommend(inp, k=100).ids, tgt)
        > ndcg100(pop.recommend(inp, k=100).ids, tgt) + 0.15
    )
    assert np.allclose(np.diag(ease.B_), 0)
    for model, name in ((ease, "ease.npz"), (pop, "pop.npz")):
        path = tmp_path / name
        model.save(path)
        assert sorted(p.name for p in tmp_path.iterdir())[-1] == name  # no temp file left
        for loaded in (load_model(path), type(model).load(path)):
            assert type(loaded) is type(model)
            assert loaded.n_items_ == model.n_items_
            for kw in (dict(k=20), dict(k=250, filter_items=[0, 5]), dict(k=7, filter_seen=False)):
                a, b = model.recommend(inp, **kw), loaded.recommend(inp, **kw)
                np.testing.assert_array_equal(a.ids, b.ids)
                np.testing.assert_array_equal(a.scores, b.scores)
        a = model.recommend(inp, k=20)
        assert not any(np.isin(a.ids[u], inp[u].indices).any() for u in range(inp.shape[0]))
    loaded = EASE.load(tmp_path / "ease.npz")
    assert loaded.l2 == ease.l2
    np.testing.assert_array_equal(loaded.B_, ease.B_)
    sa, sb = ease.similar_items(np.arange(30), k=5), loaded.similar_items(np.arange(30), k=5)
    np.testing.assert_array_equal(sa.ids, sb.ids)
    np.testing.assert_array_equal(sa.scores, sb.scores)
    np.testing.assert_array_equal(
        Popularity.load(tmp_path / "pop.npz").item_counts_, pop.item_counts_
    )


def test_ease_similar_items_are_the_cosine_neighbours_of_its_columns(data):
    ease = EASE(l2=50.0).fit(data[0])
    np.testing.assert_array_equal(ease.item_embeddings(), ease.B_.T)
    assert_similar_items_are_a_direct_search(ease, 200)


def test_ease_refuses_too_large():
    X = sp.random(50, 30_000, density=1e-3, format="csr", random_state=0, dtype=np.float32)
    with pytest.raises(MemoryError, match="30000 x 30000"):
        EASE(memory_limit=1 << 30).fit(X)


def test_baseline_bad_arguments(data):
    with pytest.raises(ValueError, match="l2"):
        EASE(l2=0)
    with pytest.raises(TypeError, match="l2"):
        EASE(l2="big")
    pop = Popularity().fit(data[0])
    with pytest.raises(ValueError, match="k"):
        pop.recommend(data[1], k=-1)
    with pytest.raises(TypeError, match="filter_seen"):
        pop.recommend(data[1], filter_seen="yes")
    with pytest.raises(RuntimeError, match="fit"):
        Popularity().recommend(data[1])
    with pytest.raises(ValueError, match="not a recfast model"):
        load_model(__file__)


def test_hybrid_item_item_part(ae, data):
    """Default hybrid: full-rank B with a zero diagonal; above full_rank_max_items, low rank."""
    from recfast.models import AutoEncoder

    assert ae.net_.full and ae.net_.rank == 0
    b = ae.net_.item_item.numpy()
    assert b.shape == (200, 200) and np.all(np.diag(b) == 0) and np.abs(b).max() > 0
    assert ae.linear_l2_ == ae.config.linear_l2
    train, inp, tgt = data
    low = AutoEncoder(**dict(SMALL, epochs=2), full_rank_max_items=100).fit(train)
    assert not low.net_.full and low.net_.rank == 16
    assert low.recommend(inp, k=5).ids.shape == (inp.shape[0], 5)
    # with validation data, lambda comes from the grid
    m = AutoEncoder(**dict(SMALL, epochs=1), linear_l2_grid=(10.0, 100.0)).fit(
        train, validation=(inp, tgt)
    )
    assert m.linear_l2_ in (10.0, 100.0)


def test_full_rank_hybrid_scores_are_the_networks_and_recommend_selects_them(ae, data):
    """scores() (sparse x B + dense part, natively) equals the training forward pass, and
    recommend is exactly recfast.select_topk over those scores (reference tie/padding rules)."""
    import torch

    from recfast import reference

    _, inp, _ = data
    m = inp[:40]
    scores = ae.scores(m)
    with torch.no_grad():
        logits, _ = ae._forward(ae._sparse_batch(m, train=False), train=False)
    np.testing.assert_allclose(scores, logits.numpy(), rtol=1e-5, atol=1e-5)
    for k in (1, 10, 250):  # 250 > 200 items: padded rows
        got = ae.recommend(m, k=k, filter_items=[0, 1])
        excl = [np.union1d(m[u].indices, [0, 1]) for u in range(m.shape[0])]
        want = reference.select_topk(scores, k, exclude=excl)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.scores, want.scores)


def test_ease_recommend_equals_the_reference_top_k(data):
    from recfast import reference

    from helpers import assert_topk_equivalent

    train, inp, _ = data
    ease = EASE(l2=50.0).fit(train)
    q = inp.toarray().astype(np.float32)
    items = np.ascontiguousarray(ease.B_.T)
    for k in (5, 100):
        got = ease.recommend(inp, k=k)
        want = reference.topk(q, items, k, metric="dot", exclude=inp)
        assert_topk_equivalent(got, want, q, items, "dot", k, exclude=inp)


def test_item_ranges_follow_a_refit():
    """An item range's columns of B are cached per range; after a refit they come from the new
    B (the cache once returned the old copy), so the merged ranges stay recommend's answer."""
    import recfast

    rng = np.random.default_rng(5)
    X1, X2 = (sp.csr_matrix((rng.random((80, 40)) < 0.2).astype(np.float32)) for _ in range(2))
    model = EASE(l2=10.0).fit(X1)
    bounds = [(0, 13), (13, 27), (27, 40)]
    for X in (X1, X2):
        model.fit(X)
        got = recfast.merge_topk(
            [(model._recommend_range(X, 6, True, lo, hi), 0) for lo, hi in bounds], 6
        )
        want = model.recommend(X, k=6)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.scores, want.scores)
