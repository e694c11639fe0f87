"""model.explain(history, item, n): exact linear contributions, gradient x input for the deep
part, ordering, and argument errors, for EASE and the AutoEncoder."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from recfast.models import EASE, Explanation
from test_models import SMALL, planted


@pytest.fixture(scope="module")
def X():
    return planted(n_users=300, n_items=120, n_groups=6, per_user=12)


@pytest.fixture(scope="module")
def ease(X):
    return EASE(l2=50.0).fit(X)


@pytest.fixture(scope="module")
def ae(X):
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    return AutoEncoder(**dict(SMALL, epochs=4), random_state=1).fit(X)


def hand_ranked(ids, contrib, n):
    """Reference order: largest contribution first, equal ones lower id first (pure Python)."""
    pairs = sorted(zip(ids.tolist(), contrib.tolist()), key=lambda p: (-p[1], p[0]))[:n]
    return [p[0] for p in pairs], np.array([p[1] for p in pairs], np.float32)


# ----------------------------------------------------------------------------- EASE
def test_ease_explanation_is_the_exact_linear_terms(ease, X):
    hist = X[7].indices
    item = 100
    e = ease.explain(hist, item, n=5)
    assert isinstance(e, Explanation) and e.item == item
    want_ids, want = hand_ranked(hist, np.array([ease.B_[j, item] for j in hist]), 5)
    assert e.ids.tolist() == want_ids
    np.testing.assert_allclose(e.contributions, want, rtol=1e-6)
    np.testing.assert_array_equal(e.linear, e.contributions)
    assert not e.deep.any()


def test_ease_whole_history_sums_to_the_score(ease, X):
    row = X[11].multiply(np.arange(1, 121, dtype=np.float32)[None, :] % 4 + 1).tocsr()  # weights
    item = 3
    e = ease.explain(row, item, n=10_000)
    assert len(e.ids) == row.nnz
    score = float((row @ ease.B_)[0, item])
    np.testing.assert_allclose(e.contributions.sum(dtype=np.float64), score, rtol=1e-4, atol=1e-6)
    for j, c in zip(e.ids, e.contributions):  # strength x B, not just B
        np.testing.assert_allclose(c, row[0, j] * ease.B_[j, item], rtol=1e-6)


def test_ties_lower_id_first_and_n_caps():
    m = EASE()
    m.B_ = np.zeros((6, 6), np.float32)
    m.B_[[5, 1, 3, 0], 2] = [0.5, 0.5, 0.9, -1.0]
    m.n_items_ = 6
    e = m.explain([5, 3, 1, 0, 4], 2, n=4)
    assert e.ids.tolist() == [3, 1, 5, 4]  # 0.9, then the 0.5 tie by id, then 0.0 before -1.0
    np.testing.assert_array_equal(e.contributions, np.array([0.9, 0.5, 0.5, 0.0], np.float32))
    assert m.explain([5, 3], 2, n=5).ids.tolist() == [3, 5]  # n > history: all of it


def test_empty_history_gives_an_empty_explanation(ease):
    e = ease.explain([], 4)
    assert e.ids.shape == (0,) and e.ids.dtype == np.int64 and e.contributions.shape == (0,)


@pytest.mark.parametrize(
    "history, exc, words",
    [
        ("12", TypeError, "history"),
        (None, TypeError, "history"),
        (3, TypeError, "history"),
        ([[1, 2]], ValueError, "history must be a 1-D"),
        ([1.5, 2.0], TypeError, "history must hold integer"),
        ([0, 120], ValueError, "history holds item 120"),
        ([-1], ValueError, "history holds item -1"),
        ([4, 4], ValueError, "history holds item 4 more than once"),
        (
            sp.csr_matrix(np.ones((2, 120))),
            ValueError,
            "history as a sparse matrix must have one row",
        ),
        (sp.csr_matrix(np.ones((1, 7))), ValueError, "history has 7 item columns"),
        (sp.csr_matrix(-np.ones((1, 120))), ValueError, "history must be non-negative"),
    ],
)
def test_bad_history_names_the_argument(ease, history, exc, words):
    with pytest.raises(exc, match=words):
        ease.explain(history, 0)


@pytest.mark.parametrize(
    "item, n, exc, words",
    [
        (1.0, 5, TypeError, "item must be an integer"),
        (True, 5, TypeError, "item must be an integer"),
        ("3", 5, TypeError, "item must be an integer"),
        (-1, 5, ValueError, r"item must be in \[0, 120\)"),
        (120, 5, ValueError, r"item must be in \[0, 120\)"),
        (0, 0, ValueError, "n must be >= 1"),
        (0, "5", TypeError, "n must be an integer"),
    ],
)
def test_bad_item_or_n_names_the_argument(ease, item, n, exc, words):
    with pytest.raises(exc, match=words):
        ease.explain([1, 2], item, n=n)


def test_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        EASE().explain([1], 0)


# ----------------------------------------------------------------------------- AutoEncoder
def test_autoencoder_linear_part_is_x_times_b(ae, X):
    assert ae.net_.full
    b = ae.net_.item_item.numpy()
    row = X[20]
    item = 55
    e = ae.explain(row, item, n=row.nnz)
    assert sorted(e.ids.tolist()) == sorted(row.indices.tolist())
    for j, lin in zip(e.ids, e.linear):
        np.testing.assert_allclose(lin, row[0, j] * b[j, item], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(e.contributions, e.linear + e.deep, rtol=1e-6, atol=1e-9)
    assert np.all(np.diff(e.contributions) <= 0)
    assert ae.explain(row, item, n=3).ids.tolist() == e.ids[:3].tolist()


def _deep_score64(net, xn, item):
    """The deep part's score <h, W_item> + b_item in float64 from a dense normalized input."""
    import torch

    with torch.no_grad():
        mu, _ = net.encode(torch.from_numpy(xn)[None, :])
        return float(net.out(net.hidden_of(mu))[0, item])


def test_autoencoder_deep_part_is_gradient_times_input(ae, X):
    net64 = copy.deepcopy(ae.net_).double()
    row = X[33]
    item = 9
    e = ae.explain(row, item, n=row.nnz)
    x = row.toarray()[0].astype(np.float64)
    xn = x / np.linalg.norm(x)
    # the dense path the explanation differentiates computes the model's own deep scores
    deep_native = ae.scores(row)[0, item] - float((row @ ae.net_.item_item.numpy())[0, item])
    np.testing.assert_allclose(_deep_score64(net64, xn, item), deep_native, rtol=1e-3, atol=1e-4)
    eps = 1e-6
    for j, d in zip(e.ids, e.deep):  # central differences in float64, independent of autograd
        up, down = xn.copy(), xn.copy()
        up[j] += eps
        down[j] -= eps
        grad = (_deep_score64(net64, up, item) - _deep_score64(net64, down, item)) / (2 * eps)
        np.testing.assert_allclose(d, xn[j] * grad, rtol=1e-3, atol=1e-6)
    assert np.abs(e.deep).max() > 0  # the trained deep part is not a zero correction


def test_autoencoder_low_rank_linear_part(X):
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    m = AutoEncoder(**dict(SMALL, epochs=2), full_rank_max_items=0).fit(X)
    assert not m.net_.full and m.net_.rank
    u, v = m.net_.u.detach().numpy(), m.net_.v.detach().numpy()
    hist = X[5].indices
    e = m.explain(hist, 17, n=len(hist))
    for j, lin in zip(e.ids, e.linear):
        np.testing.assert_allclose(lin, u[j] @ v[17], rtol=1e-5, atol=1e-7)


def test_autoencoder_without_linear_part_is_all_deep(X):
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    kw = dict(SMALL, epochs=2)
    kw.pop("linear_rank")
    m = AutoEncoder(**kw, variant="vae").fit(X)
    e = m.explain(X[2].indices, 40)
    assert not e.linear.any() and np.abs(e.deep).max() > 0
    np.testing.assert_array_equal(e.contributions, e.deep)


def test_autoencoder_explanations_survive_save_and_load(ae, X, tmp_path):
    from recfast.models import AutoEncoder

    ae.save(tmp_path / "m.pt")
    back = AutoEncoder.load(tmp_path / "m.pt")
    a, b = ae.explain(X[4].indices, 8), back.explain(X[4].indices, 8)
    assert a.ids.tolist() == b.ids.tolist()
    np.testing.assert_allclose(a.contributions, b.contributions, rtol=1e-5, atol=1e-7)


def test_autoencoder_bad_arguments(ae):
    with pytest.raises(TypeError, match="history"):
        ae.explain("1,2", 0)
    with pytest.raises(ValueError, match="item must be in"):
        ae.explain([1, 2], 10_000)
