"""`Exclusion`: per-query excluded item positions as CSR, built once from the user's input.

Every backend (native CPU, CUDA, `ItemIndex`, the models) takes an `Exclusion` and passes it
down unchanged; only the row subsets a caller scores separately are derived from it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Exclusion:
    """Excluded item positions per query: CSR rows (int64), each sorted and unique.

    Attributes:
        indptr: (n_queries + 1,) int64 row offsets into `indices`.
        indices: int64 item positions in [0, n_items), sorted and unique within each row.
        n_items: the number of items the positions index.
    """

    indptr: np.ndarray
    indices: np.ndarray
    n_items: int

    @property
    def n_queries(self) -> int:
        return len(self.indptr) - 1

    def rows(self, sel: np.ndarray) -> Exclusion:
        """The exclusions of the queries `sel` (positions into this batch), in that order."""
        parts = [self.indices[self.indptr[r] : self.indptr[r + 1]] for r in sel]
        indptr = np.zeros(len(sel) + 1, np.int64)
        np.cumsum([len(p) for p in parts], out=indptr[1:])
        indices = np.concatenate(parts) if parts else np.empty(0, np.int64)
        return Exclusion(indptr, indices.astype(np.int64, copy=False), self.n_items)

    def block(self, start: int, stop: int) -> Exclusion:
        """The exclusions of the queries start..stop-1 (a contiguous block of the batch)."""
        a, b = int(self.indptr[start]), int(self.indptr[stop])
        return Exclusion(self.indptr[start : stop + 1] - a, self.indices[a:b], self.n_items)

    def restricted_to(self, keep: np.ndarray) -> Exclusion:
        """The same exclusions over the sub-catalogue `keep` (sorted item positions): item
        keep[j] becomes position j; excluded items outside `keep` are dropped."""
        local = np.searchsorted(keep, self.indices)
        hit = local < len(keep)
        hit[hit] = keep[local[hit]] == self.indices[hit]
        row_of = np.repeat(np.arange(self.n_queries), np.diff(self.indptr))
        indptr = np.zeros(self.n_queries + 1, np.int64)
        np.cumsum(np.bincount(row_of[hit], minlength=self.n_queries), out=indptr[1:])
        return Exclusion(indptr, local[hit].astype(np.int64), len(keep))


def as_exclusion(exclude: Any, n_queries: int, n_items: int) -> Exclusion | None:
    """The user's `exclude` as an `Exclusion` (None stays None).

    `exclude` is None, an `Exclusion` of that shape (passed through), a scipy.sparse
    matrix/array of shape (n_queries, n_items) whose stored nonzeros are the excluded items, or
    a sequence of n_queries integer arrays of item ids.
    """
    if exclude is None:
        return None
    if isinstance(exclude, Exclusion):
        if (exclude.n_queries, exclude.n_items) != (n_queries, n_items):
            raise ValueError(
                f"exclude must have shape (n_queries, n_items) = ({n_queries}, {n_items}), "
                f"got ({exclude.n_queries}, {exclude.n_items})"
            )
        return exclude
    if sp.issparse(exclude):
        if exclude.shape != (n_queries, n_items):
            raise ValueError(
                f"exclude must have shape (n_queries, n_items) = ({n_queries}, {n_items}), "
                f"got {exclude.shape}"
            )
        return from_sparse(exclude)
    if isinstance(exclude, (str, bytes, dict)) or not hasattr(exclude, "__len__"):
        raise TypeError(
            "exclude must be None, a scipy.sparse matrix or a sequence of integer arrays, "
            f"got {type(exclude).__name__}"
        )
    if len(exclude) != n_queries:
        raise ValueError(f"exclude has {len(exclude)} rows but there are {n_queries} queries")
    rows = []
    for r, row in enumerate(exclude):
        arr = np.asarray(row if row is not None else [])
        if arr.size == 0:
            rows.append(np.empty(0, np.int64))
            continue
        if arr.dtype.kind not in "iu":
            raise TypeError(f"exclude[{r}] must hold integer item ids, got dtype {arr.dtype}")
        arr = arr.ravel().astype(np.int64, copy=False)
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= n_items:
            bad = lo if lo < 0 else hi
            raise ValueError(f"exclude[{r}] holds item id {bad}, outside [0, {n_items})")
        arr = np.sort(arr)  # sort + dedupe: np.unique (hash based in NumPy 2.4) is ~100x slower
        rows.append(arr[np.concatenate(([True], arr[1:] != arr[:-1]))])
    return from_rows(rows, n_items)


def from_rows(rows: list[np.ndarray], n_items: int) -> Exclusion:
    """An `Exclusion` from per-query int64 position arrays, each already sorted and unique."""
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.concatenate(rows) if rows else np.empty(0, np.int64)
    return Exclusion(indptr, indices.astype(np.int64, copy=False), n_items)


def from_sparse(m: Any) -> Exclusion:
    """An `Exclusion` from a scipy.sparse (n_queries, n_items) matrix: its stored nonzeros.

    A CSR matrix in canonical form (sorted indices, no duplicates, no stored zeros: what the
    models' `as_interactions` gives) is used without a copy of its structure beyond int64.
    """
    if sp.isspmatrix_csr(m) or isinstance(m, sp.csr_array):
        canonical = m.has_canonical_format and (m.nnz == 0 or bool(np.all(m.data != 0)))
    else:
        canonical = False
    if not canonical:
        m = sp.csr_array(m, copy=True)
        m.sum_duplicates()  # also sorts each row
        m.eliminate_zeros()  # after summing: duplicates that sum to 0 are a zero entry
    return Exclusion(
        m.indptr.astype(np.int64, copy=False), m.indices.astype(np.int64, copy=False), m.shape[1]
    )


def single_query_exclude(exclude: Any) -> Any:
    """For a 1-D query, allow a flat array of ids as its exclusion list."""
    if exclude is None or sp.issparse(exclude) or isinstance(exclude, Exclusion):
        return exclude
    arr = exclude if isinstance(exclude, np.ndarray) else None
    if arr is not None and arr.ndim == 1:
        return [arr]
    if isinstance(exclude, (list, tuple)) and all(isinstance(v, numbers.Integral) for v in exclude):
        return [np.asarray(exclude, dtype=np.int64)]
    return exclude
