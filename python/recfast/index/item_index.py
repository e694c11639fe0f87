"""ItemIndex: item vectors with external ids, filters, similar items, a mappable file, and exact
search from int8 / float16 storage.

Storage
-------
Rows are kept sorted by external id, so a row's position order is its id order and ties (equal
scores) come out lower id first, as in `recfast.topk`. Cosine indexes store the normalized
vectors (`recfast.normalize`); `get` returns those.

- ``storage="float32"``: search is `recfast.topk` over the stored rows.
- ``storage="int8"``: codes in [-127, 127] with a float32 scale per vector (symmetric,
  scale = max|x| / 127), plus the float32 rows.
- ``storage="float16"``: binary16 codes of x / 2**e with a power-of-two scale 2**e per vector
  (any finite float32 magnitude fits), plus the float32 rows.

Exact search from quantized storage
------------------------------------
The native scan reads only the codes. For query q and item x it computes the quantized score
T = q'.x~ (q' the query as the float32 path sees it: q / |q| for cosine) and a certified radius
r = |q'| (e + c (|x| + e)) + 1e-30, where e >= |x - x~| and |x| are stored per item rounded up
and c = (4 d + 64) 2^-24 covers every float32 rounding involved (the quantized dot, the float32
path's own dot and normalizations) with a wide margin. So T - r <= S <= T + r, S being the score
`recfast.topk` returns. int8 storage is scanned (AVX2, AVX-512 VNNI and portable kernels; the
AVX-512 ones without VNNI keep the float32 scan) with integer dot products against the query
quantized to 7 bits (s_q = max|q'| / 63; 6 bits, / 31, for more than 8 queries; 8 bits, / 127,
on VNNI): T = s_q scale (qi . codes), whose radius also carries the query's quantization error
eq >= |q' - s_q qi|, r = |q'| e + (eq + c (|q'| + eq)) (|x| + e); an item whose integer bound reaches the threshold
is scored again as above (float32, the first radius) before it is kept. Per query the scan keeps the k best lower bounds (their worst is the
running threshold) and every item whose upper bound reaches the threshold. The survivors are
re-scored by the float32 kernel itself (`topk_cpu` on the gathered float32 rows, with the
caller's query rows, scored on the path the whole batch's size picks however the batch is split:
zero and huge queries go to the float32 scan, the rest to the quantized one), so ids and
scores equal `recfast.topk(queries, index.get(index.ids), k, metric=index.metric)` bit for bit. Only the survivors' float32 rows are read.

The file format, its checksums and memory mapping: docs/item-index.md and `file_format`.
"""

from __future__ import annotations

import numbers
import os
import threading
from typing import Any, Literal, overload

import numpy as np
import scipy.sparse as sp

from .. import _native
from .._exclusion import Exclusion, as_exclusion, from_rows
from .._inputs import (
    as_float32_matrix,
    as_row_batch,
    check_k,
    check_metric,
    check_num_threads,
    check_output_size,
)
from .._types import TopK
from ..topk import normalize
from .file_format import read_index, section_specs, write_index
from .quantization import MAX_SCORE_MAGNITUDE, STORAGES, quantize
from .snapshot import Snapshot, _check_ids_arg, _lookup

__all__ = ["ItemIndex"]


class ItemIndex:
    """Item vectors addressed by int64 external ids, searched exactly.

    Args:
        dim: vector dimension (>= 1).
        metric: "cosine" (vectors normalized on add) or "dot".
        storage: "float32", "float16" or "int8" (quantized scan, exact re-scoring; see the module
            docstring).

    Thread safety: any number of threads may call `search`, `similar`, `get` and `save` while
    others `add` or `remove`. Each call works on one consistent state of the index (the state
    before or after a concurrent mutation, never a mix), and mutations are serialized. The
    native code releases the GIL, so searches run in parallel.
    """

    def __init__(self, dim: int, metric: str = "cosine", storage: str = "float32") -> None:
        # checked as Any: to mypy an int is never a numbers.Integral, so it would take the rest
        # of __init__ as unreachable and leave every attribute untyped
        dim_arg: Any = dim
        if isinstance(dim_arg, bool) or not isinstance(dim_arg, numbers.Integral) or dim_arg < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self._metric = check_metric(metric)
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self._dim = int(dim)
        self._storage = str(storage)
        self._snap = Snapshot(self._empty_arrays())
        self._write_lock = threading.Lock()  # add / remove, one at a time

    # -- basic properties ------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def storage(self) -> str:
        return self._storage

    def __len__(self) -> int:
        return len(self._snap)

    def __repr__(self) -> str:
        return (
            f"ItemIndex(dim={self._dim}, metric={self._metric!r}, storage={self._storage!r}, "
            f"len={len(self)})"
        )

    @property
    def ids(self) -> np.ndarray:
        """The external ids, ascending (a read-only view)."""
        v = self._snap.arrays["ids"].view()
        v.flags.writeable = False
        return v

    def _empty_arrays(self) -> dict[str, np.ndarray]:
        specs = section_specs(self._dim, self._storage, 0)
        return {name: np.empty(shape, dt) for name, dt, shape in specs}

    # -- mutation ---------------------------------------------------------------------------------
    def add(self, vectors: Any, ids: Any = None) -> None:
        """Add vectors (n, d) (or one (d,)) under int64 ids (default: after the largest id).

        A wrong dimension, a non-finite value, or an id already present or repeated is a
        ValueError and leaves the index unchanged. Cosine indexes store normalized vectors.
        """
        x = as_float32_matrix(vectors, "vectors", allow_1d=True)
        if x.ndim == 1:
            x = x[None, :]
        if x.shape[1] != self._dim:
            raise ValueError(f"vectors have dimension {x.shape[1]} but the index has {self._dim}")
        n_new = x.shape[0]
        if not np.isfinite(x).all():
            bad = int(np.nonzero(~np.isfinite(x).all(axis=1))[0][0])
            raise ValueError(f"vectors row {bad} holds a non-finite value (NaN or inf)")
        given_ids = None if ids is None else _check_ids_arg(ids)
        if given_ids is not None and given_ids.shape[0] != n_new:
            raise ValueError(f"ids has {given_ids.shape[0]} entries but vectors has {n_new} rows")
        if n_new == 0:
            return
        if self._metric == "cosine":
            x = normalize(x)
        x = np.ascontiguousarray(x, dtype=np.float32)
        new = {"ids": np.empty(0, np.int64), "vectors": x, "row_hash": _native.row_hashes(x)}
        if self._storage != "float32":
            new.update(quantize(x, self._storage))
        with self._write_lock:
            old = self._snap.in_memory_arrays()
            cur = old["ids"]
            new["ids"] = new_ids = self._new_ids(cur, given_ids, n_new)
            if len(cur) == 0 or new_ids.min() > cur[-1]:
                order = np.argsort(new_ids, kind="stable")
                merged = {k: np.concatenate([old[k], new[k][order]]) for k in old}
            else:
                order = np.argsort(np.concatenate([cur, new_ids]), kind="stable")
                merged = {k: np.concatenate([old[k], new[k]])[order] for k in old}
            self._snap = Snapshot(merged)

    @staticmethod
    def _new_ids(cur: np.ndarray, given: np.ndarray | None, n_new: int) -> np.ndarray:
        """The ids of n_new added rows: `given` checked against the index, or the next ones."""
        if given is None:
            start = int(cur[-1]) + 1 if len(cur) else 0
            if start + n_new - 1 > np.iinfo(np.int64).max:
                raise ValueError(
                    f"ids: the index's largest id is {int(cur[-1])}, so {n_new} new default ids "
                    "would exceed the int64 range; pass ids explicitly"
                )
            return np.arange(start, start + n_new, dtype=np.int64)
        uniq, counts = np.unique(given, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"ids repeats id {int(uniq[counts > 1][0])}")
        _, hit = _lookup(cur, given)
        if hit.any():
            raise ValueError(f"id {int(given[hit][0])} is already in the index")
        return given

    def remove(self, ids: Any) -> None:
        """Remove items by id; an unknown id is a ValueError and removes nothing."""
        with self._write_lock:
            snap = self._snap
            pos = snap.positions(ids)
            if len(pos) == 0:
                return
            arrays = snap.in_memory_arrays()
            keep = np.ones(len(snap), bool)
            keep[pos] = False
            self._snap = Snapshot({k: v[keep] for k, v in arrays.items()})

    def get(self, ids: Any) -> np.ndarray:
        """The stored float32 vectors of ids ((n, d), or (d,) for one id); unknown id: ValueError."""
        snap = self._snap
        single = np.ndim(ids) == 0
        rows = snap.rows(snap.positions(np.atleast_1d(ids)))
        return rows[0] if single else rows

    # -- search ------------------------------------------------------------------------------------
    @overload
    def search(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Any = ...,
        include: Any = ...,
        exact: bool = ...,
        num_threads: int | None = ...,
        return_stats: Literal[False] = ...,
    ) -> TopK: ...

    @overload
    def search(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Any = ...,
        include: Any = ...,
        exact: bool = ...,
        num_threads: int | None = ...,
        return_stats: Literal[True],
    ) -> tuple[TopK, dict[str, int]]: ...

    def search(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Any = None,
        include: Any = None,
        exact: bool = True,
        num_threads: int | None = None,
        return_stats: bool = False,
    ) -> TopK | tuple[TopK, dict[str, int]]:
        """Top-k items per query, with external ids.

        Args:
            queries: (B, d) or (d,) floats (finite).
            k: items per query (>= 1); rows with fewer eligible items are padded id -1, -inf.
            exclude: items never returned, per query: a sequence of B arrays of external ids
                (ids not in the index are ignored; a flat array for a 1-D query), or a
                scipy.sparse matrix (B, len(index)) over positions (position = rank of the id in
                `ids`).
            include: a global allow-list of external ids (ids not in the index are ignored);
                None allows every item, an empty list none.
            exact: True returns exactly `recfast.topk`'s answer on the float32 vectors (ids and
                scores), for each query whatever the other queries of the batch are. False, for
                quantized storage, skips the float32 re-scoring: ids and scores come from the
                quantized scan (approximate: scores off by up to the quantization error,
                near-ties possibly swapped). float32 storage is always exact.
            num_threads: None for all usable CPUs, or a positive count.
            return_stats: also return {"candidates": the quantized scan's survivors (items
                re-scored in float32), summed over the queries}.

        Returns:
            TopK(scores float32, ids int64 external), each (B, k) or (k,), best first, equal
            scores lower id first; with return_stats, the pair (TopK, stats).
        """
        # one state for the whole call (see the class docstring)
        res, stats = self._search(self._snap, queries, k, exclude, include, exact, num_threads)
        return (res, stats) if return_stats else res

    def _search(
        self,
        snap: Snapshot,
        queries: Any,
        k: int,
        exclude: Any,
        include: Any,
        exact: bool,
        num_threads: int | None,
    ) -> tuple[TopK, dict[str, int]]:
        k = check_k(k)
        threads = check_num_threads(num_threads)
        q, exclude, single = as_row_batch(queries, "queries", exclude)
        if q.shape[1] != self._dim:
            raise ValueError(f"queries have dimension {q.shape[1]} but the index has {self._dim}")
        if not np.isfinite(q).all():
            raise ValueError("queries must be finite (NaN or inf found)")
        b, n = q.shape[0], len(snap)
        check_output_size(b, k, n)
        excl = self._exclusion(snap, exclude, b)
        allow = None
        if include is not None:
            allow = np.zeros(n, np.uint8)
            allow[snap.known_positions(include, "include")] = 1
        stats = {"candidates": 0}
        if n == 0 or (allow is not None and not allow.any()):
            scores, pos = TopK.empty(b, k)
        elif self._storage == "float32":
            snap.ensure_verified("vectors")
            scores, pos = self._float_search(snap, q, k, excl, allow, threads, b)
        else:
            snap.ensure_verified("codes")
            scores, pos, stats["candidates"] = self._quantized_search(
                snap, q, k, excl, allow, bool(exact), threads
            )
        ids = np.full(pos.shape, -1, np.int64)
        ids[pos >= 0] = snap.arrays["ids"][pos[pos >= 0]]
        if single:
            return TopK(scores[0], ids[0]), stats
        return TopK(scores, ids), stats

    @staticmethod
    def _exclusion(snap: Snapshot, exclude: Any, b: int) -> Exclusion | None:
        """The user's `exclude` (external ids per query, or a sparse matrix over positions) as
        one `Exclusion` over positions, built once for the whole call."""
        n = len(snap)
        if exclude is None or sp.issparse(exclude):
            return as_exclusion(exclude, b, n)
        if isinstance(exclude, (str, bytes, dict)) or not hasattr(exclude, "__len__"):
            raise TypeError(
                "exclude must be None, a scipy.sparse matrix or a sequence of id arrays, "
                f"got {type(exclude).__name__}"
            )
        if len(exclude) != b:
            raise ValueError(f"exclude has {len(exclude)} rows but there are {b} queries")
        rows = [
            snap.known_positions(r if r is not None else [], f"exclude[{i}]")
            for i, r in enumerate(exclude)
        ]
        return from_rows(rows, n) if n else None

    def _float_search(
        self,
        snap: Snapshot,
        q: np.ndarray,
        k: int,
        excl: Exclusion | None,
        allow: np.ndarray | None,
        threads: int,
        batch_size: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """recfast.topk over the float32 rows (all, or the allowed ones); `batch_size` is the
        user's whole batch, of which q may be a part (it picks the scoring path)."""
        if allow is None:
            rows, keep = snap.arrays["vectors"], None
        else:
            keep = np.nonzero(allow)[0]
            rows = snap.rows(keep) if snap.rows_unverified else snap.arrays["vectors"][keep]
            if excl is not None:
                excl = excl.restricted_to(keep)
        rows = as_float32_matrix(rows, "vectors")
        scores, pos = _native.topk(q, rows, k, self._metric, excl, threads, batch_size)
        if keep is not None:
            pos = np.where(pos >= 0, keep[np.maximum(pos, 0)], -1)
        return scores, pos

    def _quantized_search(
        self,
        snap: Snapshot,
        q: np.ndarray,
        k: int,
        excl: Exclusion | None,
        allow: np.ndarray | None,
        exact: bool,
        threads: int,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The quantized scan, with the queries it cannot bound (zero, or scores beyond the
        bound's float range) scored by the float32 path as part of the same batch."""
        a = snap.arrays
        qq = q.astype(np.float64)
        qn2 = np.einsum("ij,ij->i", qq, qq)
        max_norm = float(a["norm"].max()) if len(a["norm"]) else 0.0
        qn = np.sqrt(qn2) if self._metric == "dot" else np.ones_like(qn2)
        routed = (qn2 == 0) | (qn * max_norm > MAX_SCORE_MAGNITUDE)
        b = q.shape[0]
        scores = np.empty((b, k), np.float32)
        pos = np.empty((b, k), np.int64)
        cands = 0
        main = np.nonzero(~routed)[0]
        if len(main):
            whole = len(main) == b
            s, p, cands = _native.quant_search(
                q if whole else np.ascontiguousarray(q[main]),
                self._storage,
                a,
                k,
                self._metric,
                exact=exact,
                exclude=excl if excl is None or whole else excl.rows(main),
                allow=allow,
                num_threads=threads,
                check_rows=snap.rows_unverified,
                vectors_fd=snap.fd if snap.fd is not None else -1,
                vectors_offset=snap.vectors_offset,
                batch_size=b,
            )
            scores[main], pos[main] = s, p
        other = np.nonzero(routed)[0]
        if len(other):
            snap.ensure_verified("vectors")
            sub = None if excl is None else excl.rows(other)
            s, p = self._float_search(
                snap, np.ascontiguousarray(q[other]), k, sub, allow, threads, b
            )
            scores[other], pos[other] = s, p
        return scores, pos, int(cands)

    def similar(
        self, ids: Any, k: int, *, exact: bool = True, num_threads: int | None = None
    ) -> TopK:
        """The k nearest items of each item in ids (never the item itself), external ids.

        One id gives 1-D outputs. Unknown ids are a ValueError.
        """
        snap = self._snap
        single = np.ndim(ids) == 0
        pos = snap.positions(np.atleast_1d(ids))
        q = snap.rows(pos)
        b = len(pos)
        ex = sp.csr_array((np.ones(b, np.int8), pos, np.arange(b + 1)), shape=(b, len(snap)))
        res, _ = self._search(snap, q, k, ex, None, exact, num_threads)
        if single:
            return TopK(res.scores[0], res.ids[0])
        return res

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to one file atomically (temp file in the same directory, fsync,
        rename, fsync of the directory). The format is described in docs/item-index.md."""
        snap = self._snap  # one state for the whole call
        for name in list(snap.pending):  # a mapped index: check what was not checked yet
            snap.ensure_verified(name)
        write_index(path, self._dim, self._metric, self._storage, snap.arrays)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = True, verify: bool | None = None
    ) -> ItemIndex:
        """Open an index file.

        mmap=True maps the arrays (np.memmap, read-only) without reading them: pages are read on
        demand and shared between processes. verify (default: not mmap) checks the crc32 of
        every section now; otherwise the large sections are checked as described in the module
        docstring. A truncated, corrupted, foreign or wrong-version file is a ValueError naming
        what is wrong. Mutating a mapped index first copies it into memory.
        """
        if verify is None:
            verify = not mmap
        f = read_index(path, mmap=mmap, verify=verify)
        index = cls(f.dim, metric=f.metric, storage=f.storage)
        index._snap = f.snapshot
        return index
