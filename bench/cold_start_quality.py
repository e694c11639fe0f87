"""Cold-start items on MovieLens: items nobody interacted with in training, ranked from their
attributes (genres; and tags on ml-latest-small). Run through `python bench/quality.py
--cold-start`.

Protocol (per seed): ratings > 3.5, users with >= 5 items; `recfast.data.cold_start_split`
holds out 10% of the items entirely (their interactions leave the training matrix) and keeps
the users who interacted with both a held-out and a training item: their training items are
the input, their held-out items the targets. Each method ranks only the held-out items for
each such user; reported are Recall@20, Recall@50 and NDCG@100 (`recfast.metrics`), mean +- sd
over seeds, and the paired ratio of the feature encoder to each baseline seed by seed.

- feature encoder: `AutoEncoder().fit(train, item_features=F)`: the held-out items get their
  vectors from F through the encoder; `recommend(..., filter_items=<training items>)`.
- content k-NN: score(u, j) = sum over the user's items i of cos(F_i, F_j) (a user profile of
  L2-normalized feature rows), by `recfast.topk`.
- random: a random order of the held-out items for each user.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import recfast
from recfast.data import (
    cold_start_split,
    item_features,
    load_movielens,
    load_movielens_genres,
    load_movielens_tags,
)
from recfast.metrics import ndcg_at_k, recall_at_k
from recfast.models import AutoEncoder

METHODS = ("feature encoder", "content k-NN", "random")
K = 100


def features_for(path: Path, item_ids: np.ndarray) -> tuple[sp.csr_matrix, str]:
    """The items x features matrix of MovieLens' genres (+ tags where the data has them), in
    the order of `item_ids`, and a description of what it holds."""
    import pandas as pd

    df = load_movielens_genres(path)
    used = ["genres"]
    if (path / "tags.csv").exists():
        df = df.merge(load_movielens_tags(path), on="item", how="left")
        used.append("tags")
    df = df.set_index("item").reindex(item_ids).reset_index()
    for col in used:
        df[col] = df[col].where(pd.notna(df[col]), "")
    F = item_features(df, multi_valued=used).matrix
    return sp.csr_matrix(F, dtype=np.float32), "+".join(used) + f" ({F.shape[1]} features)"


def _metrics(ids: np.ndarray, target: sp.csr_matrix) -> tuple[float, float, float]:
    return (
        recall_at_k(ids, target, 20),
        recall_at_k(ids, target, 50),
        ndcg_at_k(ids, target, K),
    )


def one_seed(X: sp.csr_matrix, F: sp.csr_matrix, seed: int, threads: int) -> dict[str, tuple]:
    split = cold_start_split(X, frac_items=0.1, seed=seed)
    cold = split.cold_items
    warm = np.setdiff1d(np.arange(X.shape[1]), cold)
    k = min(K, cold.size)
    out: dict[str, tuple] = {}

    t = time.perf_counter()
    model = AutoEncoder(random_state=seed, verbose=False, num_threads=threads)
    model.fit(split.train, item_features=F)
    ids = model.recommend(split.test_input, k=k, filter_items=warm).ids
    out["feature encoder"] = (*_metrics(ids, split.test_target), time.perf_counter() - t)

    t = time.perf_counter()
    norms = np.sqrt(np.asarray(F.multiply(F).sum(1)).ravel())
    fn = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ F, dtype=np.float32)
    profiles = np.asarray((split.test_input > 0).astype(np.float32) @ fn.toarray())
    res = recfast.topk(profiles, fn[cold].toarray(), k, metric="dot")
    ids = np.where(res.ids >= 0, cold[np.maximum(res.ids, 0)], -1)
    out["content k-NN"] = (*_metrics(ids, split.test_target), time.perf_counter() - t)

    rng = np.random.default_rng(seed)
    ids = np.stack([rng.permutation(cold)[:k] for _ in range(split.test_input.shape[0])])
    out["random"] = (*_metrics(ids, split.test_target), 0.0)
    return out


def run(path: Path, name: str, seeds: list[int], threads: int) -> str:
    data = load_movielens(path).filter(rating_above=3.5, min_user_interactions=5)
    X = data.matrix()
    F, what = features_for(path, data.item_ids)
    per_seed = []
    for seed in seeds:
        r = one_seed(X, F, seed, threads)
        per_seed.append(r)
        print(
            f"  {name} cold seed={seed}: "
            + ", ".join(f"{m} NDCG@100={r[m][2]:.4f}" for m in METHODS),
            file=sys.stderr,
            flush=True,
        )
    lines = [
        f"\n### {name}: cold-start items ({X.shape[0]} users x {X.shape[1]} items, 10% of the "
        f"items held out; features: {what}; {len(seeds)} seeds, mean +- sd)\n",
        "| method | R@20 | R@50 | NDCG@100 | fit + rank s |",
        "|---|---|---|---|---|",
    ]
    for m in METHODS:
        a = np.array([r[m] for r in per_seed])
        cells = [f"{a[:, c].mean():.4f} +- {a[:, c].std():.4f}" for c in range(3)]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {a[:, 3].mean():.1f} |")
    enc = np.array([r["feature encoder"][2] for r in per_seed])
    for base in ("content k-NN", "random"):
        b = np.array([r[base][2] for r in per_seed])
        ratio = enc / b
        lines.append(
            f"\nfeature encoder / {base}, NDCG@100 paired by seed: mean {ratio.mean():.2f}x "
            f"(min {ratio.min():.2f}x, max {ratio.max():.2f}x; ahead on "
            f"{int((enc > b).sum())}/{len(seeds)} seeds)"
        )
    return "\n".join(lines)
