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

from .interactions import Interactions
from .movielens import load_movielens, load_movielens_titles
from .splits import (
    ColdStartSplit,
    StrongSplit,
    cold_start_split,
    leave_last_n_split,
    random_holdout_split,
    strong_generalization_split,
)

__all__ = [
    "Interactions",
    "StrongSplit",
    "load_movielens",
    "load_movielens_titles",
    "strong_generalization_split",
    "random_holdout_split",
    "leave_last_n_split",
    "ColdStartSplit",
    "cold_start_split",
]
