"""Item features -> item vectors: the checks of an items x features matrix and the ridge
regression that maps features into a model's item-vector space (cold-start items).

The mapping is linear (Gantner et al. 2010, "Learning attribute-to-feature mappings for
cold-start recommendations"): T ~ (F - mean F) A + mean T over the items that have
interactions, A = (Fc' Fc + l2 I)^-1 Fc' Tc. It is fitted in closed form (no randomness, no
epochs) without densifying a sparse F: Fc' Fc = F' F - n f f' and Fc' Tc = F' T - n f t'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

# Features beyond this make the f x f normal equations too large (4096^2 doubles = 128 MiB).
MAX_FEATURES = 8192


def check_item_features(F: Any, n_rows: int | None, name: str = "item_features") -> Any:
    """F as float64 CSR (sparse input) or C-contiguous float64 array, shape (n_rows, f).

    Raises TypeError for non-numeric data (a column of strings, objects) and ValueError for a
    wrong row count, NaN or infinite values, no columns or too many.
    """
    if sp.issparse(F):
        m = sp.csr_matrix(F)
        if m.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {m.dtype}")
        m = m.astype(np.float64)
        values = m.data
    else:
        if hasattr(F, "to_numpy") and not isinstance(F, np.ndarray):  # a DataFrame
            F = F.to_numpy()
        if not isinstance(F, np.ndarray):
            try:
                F = np.asarray(F)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{name} must be a numeric items x features matrix ({exc})"
                ) from None
        if F.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} must hold numbers, got dtype {F.dtype} (encode categorical or text "
                f"columns first, e.g. with recfast.data.item_features)"
            )
        if F.ndim != 2:
            raise ValueError(f"{name} must be 2-D (items x features), got shape {F.shape}")
        m = np.ascontiguousarray(F, dtype=np.float64)
        values = m
    if n_rows is not None and m.shape[0] != n_rows:
        raise ValueError(f"{name} has {m.shape[0]} rows but there are {n_rows} items")
    if m.shape[1] < 1:
        raise ValueError(f"{name} must have at least one feature column, got shape {m.shape}")
    if m.shape[1] > MAX_FEATURES:
        raise ValueError(
            f"{name} has {m.shape[1]} columns; at most {MAX_FEATURES} are supported (reduce "
            f"them, e.g. keep the frequent tags or project embeddings)"
        )
    if values.size and not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return m


@dataclass(frozen=True)
class FeatureEncoder:
    """T ~ F @ weight + bias: features (f) to item vectors (d), float32."""

    weight: np.ndarray  # (f, d)
    bias: np.ndarray  # (d,)
    l2: float

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[0])

    def predict(self, F: Any) -> np.ndarray:
        out = F @ self.weight.astype(np.float64)
        return np.asarray(out + self.bias, dtype=np.float32)


class RidgeProblem:
    """The normal equations of one (F, T), solved for any l2 (factored once per l2)."""

    def __init__(self, F: Any, T: np.ndarray) -> None:
        n = F.shape[0]
        t = np.asarray(T, np.float64)
        f_mean = np.asarray(F.mean(axis=0)).ravel()
        self.t_mean = t.mean(axis=0)
        gram = F.T @ F
        gram = gram.toarray() if sp.issparse(gram) else np.asarray(gram)
        self.gram = gram - n * np.outer(f_mean, f_mean)
        self.cross = np.asarray(F.T @ t) - n * np.outer(f_mean, self.t_mean)
        self.f_mean = f_mean
        # l2 on the scale of the features: a multiple of the mean diagonal of Fc'Fc
        self.scale = max(float(np.trace(self.gram)) / max(F.shape[1], 1), 1e-12)

    def solve(self, l2: float) -> FeatureEncoder:
        a = self.gram.copy()
        a[np.diag_indices_from(a)] += l2 * self.scale
        weight = np.linalg.solve(a, self.cross)
        bias = self.t_mean - self.f_mean @ weight
        return FeatureEncoder(weight.astype(np.float32), bias.astype(np.float32), float(l2))
