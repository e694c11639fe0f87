"""Exact top-k for every query of a Ray Data dataset: recfast on a cluster.

`topk_dataset` ranks items for each row of a `ray.data.Dataset` of query vectors;
`recommend_all` does the same for users' histories through a fitted model. Both return a lazy
`ray.data.Dataset` with one row per query, streamed through the cluster: nothing holds all the
queries, or all the results, in one process (write them with `Dataset.write_parquet`).

How the work is split
---------------------
The queries are cut into batches of `batch_size` rows. A pool of long-lived actors (Ray Data's
`map_batches` with an actor pool) scores whole batches with the native core, each actor on as
many native threads as the CPUs it was given. Each actor loads the items once, when it starts:

- an array (or an in-memory `ItemIndex`) is put once in Ray's object store by the caller and
  read zero-copy by the actors: the actors of one node share the node's single copy;
- a path to a saved `ItemIndex` is memory-mapped by each actor: the pages are the operating
  system's page cache, one copy per node, and compressed (int8, float16) indexes keep their
  compressed scan.

With ``item_shards=S`` the items are cut into S contiguous shards of about N / S rows and the
query batches pass through S actor pools in a row, pool s holding shard s only: each (batch,
shard) pair gives a shard-local top-k whose ids are offset to global ids, and the last pool
combines the S parts with `recfast.merge_topk` into the exact top-k over all items: the same
rows as without shards.

Killed workers cost time, not rows: Ray restarts a dead actor and retries the batches it held,
and every batch's answer depends only on the batch, so the output is the same.

Everything here needs the ``ray`` extra (``pip install recfast[ray]``); importing this module
does not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _native
from ._types import TopK
from .index import ItemIndex
from .topk import merge_topk, topk

__all__ = ["topk_dataset", "recommend_all", "require_ray"]

_INSTALL_HINT = "pip install recfast[ray]"
_DEFAULT_BATCH = 1024
# Column names of the parts a shard pool passes on to the next one (internal to a pipeline).
_PART = "__recfast_part{}_{}"


def require_ray() -> Any:
    """Import and return the `ray` module, with Ray Data; ImportError naming the extra if not."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"recfast.distributed needs Ray Data, which is not installed ({exc}): {_INSTALL_HINT}"
        ) from None
    return ray


# ------------------------------------------------------------------------------------------------
# the items, as the workers receive them
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Items:
    """Where the workers find the items: an object-store array (with the external ids of an
    in-memory ItemIndex) or an ItemIndex file each worker maps."""

    n: int
    dim: int
    metric: str
    # object store: a one-element list holding the ObjectRef (a list, so that no layer of Ray
    # resolves it into a copy before the worker's own zero-copy ray.get)
    vectors_ref: list | None = None
    ids_ref: list | None = None
    path: str | None = None


def _items_source(ray: Any, items: Any, metric: str | None) -> _Items:
    if isinstance(items, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(items))
        if not os.path.isfile(path):
            raise ValueError(
                f"items: {os.fspath(items)} is not a file (expected a saved ItemIndex)"
            )
        index = ItemIndex.load(path, mmap=True)  # checks the header; reads no vectors
        _check_metric_matches(metric, index.metric)
        return _Items(len(index), index.dim, index.metric, path=path)
    if isinstance(items, ItemIndex):
        _check_metric_matches(metric, items.metric)
        vectors = np.ascontiguousarray(items.get(items.ids), dtype=np.float32)
        if vectors.ndim != 2:  # an empty index
            vectors = vectors.reshape(0, items.dim)
        return _Items(
            len(items),
            items.dim,
            items.metric,
            vectors_ref=[ray.put(vectors)],
            ids_ref=[ray.put(np.asarray(items.ids, dtype=np.int64))],
        )
    if metric is None:
        metric = "cosine"
    if metric not in ("cosine", "dot"):
        raise ValueError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    if hasattr(items, "detach"):  # a torch tensor
        items = items.detach().cpu().numpy()
    if not isinstance(items, np.ndarray):
        raise TypeError(
            f"items must be a float (N, d) numpy array, an ItemIndex or the path of a "
            f"saved ItemIndex, got {type(items).__name__}"
        )
    if items.ndim != 2:
        raise ValueError(f"items must be 2-D (N, d), got shape {items.shape}")
    if items.dtype.kind != "f":
        raise TypeError(f"items must hold floats, got dtype {items.dtype}")
    if items.shape[1] < 1:
        raise ValueError("items must have dimension d >= 1, got (N, 0)")
    vectors = np.ascontiguousarray(items, dtype=np.float32)
    return _Items(
        int(vectors.shape[0]), int(vectors.shape[1]), metric, vectors_ref=[ray.put(vectors)]
    )


def _check_metric_matches(metric: str | None, index_metric: str) -> None:
    if metric is not None and metric != index_metric:
        raise ValueError(
            f"metric={metric!r}, but the ItemIndex was built for {index_metric!r} "
            f"(leave metric=None to use the index's)"
        )


def _shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """S contiguous [lo, hi) ranges covering [0, n), sizes differing by at most one."""
    cuts = [n * s // shards for s in range(shards + 1)]
    return [(cuts[s], cuts[s + 1]) for s in range(shards)]


# ------------------------------------------------------------------------------------------------
# batches in, batches out
# ------------------------------------------------------------------------------------------------


def _vectors_of(batch: dict[str, Any], column: str, dim: int, ids: Any) -> np.ndarray:
    """The batch's query column as a (B, dim) float32 array; ValueError naming the column."""
    if column not in batch:
        raise ValueError(
            f"query_column {column!r} is not a column of the queries (columns: {sorted(batch)})"
        )
    v = batch[column]
    if isinstance(v, np.ndarray) and v.dtype == object:  # variable-length lists
        rows = [np.asarray(r) for r in v]
        for r, row in enumerate(rows):
            if row.ndim != 1 or row.shape[0] != dim:
                raise ValueError(
                    f"query_column {column!r}: the row with id {ids[r]!r} has "
                    f"shape {row.shape}, but the items have dimension {dim}"
                )
        v = np.stack(rows) if rows else np.empty((0, dim), np.float32)
    v = np.asarray(v)
    if v.ndim != 2 or v.shape[1] != dim:
        raise ValueError(
            f"query_column {column!r}: queries of shape {v.shape[1:]} but the items "
            f"have dimension {dim}"
        )
    if v.dtype.kind not in "fiu" or v.dtype.kind == "b":
        raise TypeError(f"query_column {column!r} must hold numbers, got dtype {v.dtype}")
    return np.ascontiguousarray(v, dtype=np.float32)


def _exclusions_of(batch: dict[str, Any], column: str | None, b: int) -> list[np.ndarray] | None:
    """The batch's exclusion column as B int64 arrays (None: no exclusions)."""
    if column is None:
        return None
    if column not in batch:
        raise ValueError(
            f"exclude_column {column!r} is not a column of the queries (columns: {sorted(batch)})"
        )
    out = []
    for r, row in enumerate(batch[column]):
        a = np.asarray([] if row is None else row)
        if a.size and a.dtype.kind not in "iu":
            raise TypeError(
                f"exclude_column {column!r}: row {r} holds {a.dtype}, expected integer item ids"
            )
        out.append(a.astype(np.int64).reshape(-1))
    if len(out) != b:
        raise ValueError(f"exclude_column {column!r} has {len(out)} rows for {b} queries")
    return out


def _list_column(values: np.ndarray, pa: Any) -> Any:
    """A (B, k) array as an Arrow list column (one list of k per row)."""
    b, k = values.shape
    offsets = np.arange(0, b * k + 1, k, dtype=np.int32 if b * k < 2**31 else np.int64)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1)))


def _result_table(id_values: Any, id_column: str, res: TopK, item_ids: np.ndarray | None) -> Any:
    import pyarrow as pa

    ids = res.ids
    if item_ids is not None:  # positions -> the ItemIndex's external ids
        ids = np.where(ids >= 0, item_ids[np.maximum(ids, 0)], -1)
    return pa.table(
        {
            id_column: pa.array(np.asarray(id_values))
            if not isinstance(id_values, pa.Array)
            else id_values,
            "item_ids": _list_column(np.ascontiguousarray(ids, dtype=np.int64), pa),
            "scores": _list_column(np.ascontiguousarray(res.scores, dtype=np.float32), pa),
        }
    )


class _ShardWorker:
    """A long-lived actor of one pool: holds the items of [lo, hi) and scores whole batches.

    Pool s of S adds its shard-local top-k (global ids) as two columns; the last pool merges
    the S parts (S = 1: it just scores) and emits the result rows.
    """

    def __init__(
        self,
        items: _Items,
        k: int,
        shard: int,
        shards: int,
        query_column: str,
        id_column: str,
        exclude_column: str | None,
        num_threads: int,
    ) -> None:
        import ray

        self.k, self.shard, self.shards = k, shard, shards
        self.query_column, self.id_column = query_column, id_column
        self.exclude_column = exclude_column
        self.threads = max(1, int(num_threads))
        self.metric, self.n, self.dim = items.metric, items.n, items.dim
        self.lo, self.hi = _shard_bounds(items.n, shards)[shard]
        self.index: ItemIndex | None = None
        self.vectors: np.ndarray | None = None
        self.item_ids: np.ndarray | None = None  # an ItemIndex's external ids, by position
        if items.path is not None:
            index = ItemIndex.load(items.path, mmap=True)
            if len(index) != items.n or index.dim != items.dim:
                raise ValueError(
                    f"{items.path} changed since the job started: {len(index)} x "
                    f"{index.dim} items, expected {items.n} x {items.dim}"
                )
            self.item_ids = np.asarray(index.ids)
            if shards == 1:
                self.index = index  # searched as mapped, compressed storage included
            else:  # this shard's float32 rows, which `search` scores (bit for bit the same)
                self.vectors = np.ascontiguousarray(index.get(self.item_ids[self.lo : self.hi]))
        else:
            assert items.vectors_ref is not None
            # zero-copy: a read-only view of the node's one copy in the object store
            self.vectors = ray.get(items.vectors_ref[0])[self.lo : self.hi]
            if items.ids_ref is not None:
                self.item_ids = ray.get(items.ids_ref[0])

    # -- scoring --------------------------------------------------------------------------------
    def _positions(self, excl: list[np.ndarray] | None) -> list[np.ndarray] | None:
        """Exclusions as global positions: external ids of an index are looked up (unknown
        ones ignored, as ItemIndex.search does); positions outside [0, N) are an error."""
        if excl is None:
            return None
        out = []
        for r, e in enumerate(excl):
            if self.item_ids is not None:
                pos = np.searchsorted(self.item_ids, e)
                pos = np.minimum(pos, max(len(self.item_ids) - 1, 0))
                e = pos[(len(self.item_ids) > 0) & (self.item_ids[pos] == e)] if e.size else e
            elif e.size and (e.min() < 0 or e.max() >= self.n):
                bad = e[(e < 0) | (e >= self.n)][0]
                raise ValueError(
                    f"exclude_column {self.exclude_column!r}: row {r} excludes item "
                    f"{int(bad)}, outside [0, {self.n})"
                )
            out.append(e)
        return out

    def _score(self, q: np.ndarray, excl: list[np.ndarray] | None) -> TopK:
        b = q.shape[0]
        if 0 < b <= _native.SMALL_BATCH_MAX:
            # The native scan may score small batches on another path or kernel set, whose last
            # bits may differ: pad with zero queries so that every row gets the scores of a
            # large batch, however Ray cut the dataset into batches.
            pad = _native.SMALL_BATCH_MAX + 1 - b
            q = np.concatenate([q, np.zeros((pad, q.shape[1]), np.float32)])
            if excl is not None:
                excl = excl + [np.empty(0, np.int64)] * pad
            res = self._score_rows(q, excl)
            return TopK(res.scores[:b], res.ids[:b])
        return self._score_rows(q, excl)

    def _score_rows(self, q: np.ndarray, excl: list[np.ndarray] | None) -> TopK:
        if self.index is not None:  # the whole mapped index: its own search, external ids
            ex = None if excl is None else [self.item_ids[e] for e in excl]  # type: ignore[index]
            return self.index.search(q, self.k, exclude=ex, num_threads=self.threads)
        assert self.vectors is not None
        if excl is not None:  # this shard's exclusions, shard-local
            excl = [e[(e >= self.lo) & (e < self.hi)] - self.lo for e in excl]
        res = topk(
            q, self.vectors, self.k, metric=self.metric, exclude=excl, num_threads=self.threads
        )
        ids = np.where(res.ids >= 0, res.ids + self.lo, -1)
        if self.item_ids is not None:
            ids = np.where(ids >= 0, self.item_ids[np.maximum(ids, 0)], -1)
        return TopK(res.scores, ids)

    def __call__(self, batch: dict[str, Any]) -> Any:
        id_values = batch.get(self.id_column)
        if id_values is None:
            raise ValueError(
                f"id_column {self.id_column!r} is not a column of the queries "
                f"(columns: {sorted(batch)})"
            )
        q = _vectors_of(batch, self.query_column, self.dim, id_values)
        if not np.isfinite(q).all():
            r = int(np.nonzero(~np.isfinite(q).all(axis=1))[0][0])
            raise ValueError(
                f"query_column {self.query_column!r}: the row with id "
                f"{id_values[r]!r} is not finite (NaN or inf)"
            )
        excl = self._positions(_exclusions_of(batch, self.exclude_column, q.shape[0]))
        out = _pass_on_or_merge(batch, self._score(q, excl), self.shard, self.shards, self.k)
        return out if isinstance(out, dict) else _result_table(id_values, self.id_column, out, None)


# ------------------------------------------------------------------------------------------------
# the public functions
# ------------------------------------------------------------------------------------------------


def _check_positive(value: Any, name: str, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}"
        )
    return int(value)


def _cluster_cpus(ray: Any) -> int:
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < 1:
        raise RuntimeError("the Ray cluster has no CPUs to run workers on")
    return cpus


def _worker_plan(
    ray: Any, num_workers: int | None, num_cpus_per_worker: int | None, pools: int
) -> tuple[int, float, int]:
    """(actors per pool, CPUs each actor asks for, its native threads).

    By default one CPU per actor and the cluster's CPUs shared evenly by the pools. The actors
    together never ask for every CPU: one is left for Ray Data's own read and write tasks
    (read_parquet, write_parquet), which would otherwise wait for a CPU the actors hold until
    the end, and the pipeline would stall. Pools that would ask for more (more shards than
    CPUs) ask for a fraction of a CPU each, so that every pool's actors are alive at once. The
    native threads stay as many as the CPUs asked for by the caller.

    Fractions leave one CPU per node: whole-CPU asks on whole-CPU nodes leave whole free CPUs,
    so one spare CPU in all is a whole one on some node; fractional ones may leave 0.5 on each
    of two nodes, where no read task fits, unless the actors leave `nodes` CPUs in all (then
    some node has at least one CPU free, wherever Ray placed them).
    """
    cpus = _cluster_cpus(ray)
    per = num_cpus_per_worker or 1
    if num_workers is None:
        num_workers = max(1, cpus // (per * pools))
    room: float = cpus - 1 if cpus > 1 else cpus / 2
    actors = num_workers * pools
    if actors * per > room:  # fractional asks
        nodes = sum(1 for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= 1)
        room = cpus - nodes if cpus > nodes else room
    ask = float(per) if actors * per <= room else room / actors
    return num_workers, ask, per


def topk_dataset(
    queries: Any,
    items: Any,
    k: int,
    *,
    metric: str | None = None,
    query_column: str = "vector",
    id_column: str = "id",
    exclude_column: str | None = None,
    item_shards: int | None = None,
    batch_size: int = _DEFAULT_BATCH,
    num_workers: int | None = None,
    num_cpus_per_worker: int | None = None,
) -> Any:
    """The exact top-k items of every query of a Ray dataset, as a lazy Ray dataset.

    Parameters
    ----------
    queries : ray.data.Dataset
        One row per query: `id_column` (any value, passed through), `query_column` (a vector
        of d numbers: a list or a tensor column) and, with `exclude_column`, the items that
        row must not get (a list of item ids, possibly empty).
    items : numpy.ndarray, ItemIndex or path
        A float (N, d) array (item ids are row numbers), an `ItemIndex` (its external ids), or
        the path of a saved `ItemIndex` file, memory-mapped by every worker (the file must be
        readable at that path on every node).
    k : int
        Items per query (>= 1). Rows with fewer than k eligible items are padded with id -1
        and score -inf, as in `recfast.topk`.
    metric : {"cosine", "dot"} or None
        For an array: "cosine" when None. For an ItemIndex: the index's own (None, or the same).
    query_column, id_column : str
        Column names of the query vectors and of the query ids.
    exclude_column : str or None
        Column of per-query item ids never returned (row numbers for an array, external ids
        for an ItemIndex; for an array, an id outside [0, N) is an error).
    item_shards : int or None
        None or 1: every worker holds all items. S > 1: S contiguous item shards, each held by
        its own pool of workers; the merged result is the same.
    batch_size : int
        Query rows per batch (1024): one native scan per batch and shard.
    num_workers : int or None
        Actors per pool; by default the cluster's CPUs divided among the pools.
    num_cpus_per_worker : int or None
        CPUs each actor asks Ray for, and its native threads (1 by default).

    Returns
    -------
    ray.data.Dataset
        One row per query: `id_column`, ``item_ids`` (list of k int64) and ``scores`` (list of
        k float32), best first, equal scores lower id first (recfast's rules). Lazy: execute
        it by iterating, `materialize()` or `write_parquet(...)`.

    Raises
    ------
    ImportError
        Without Ray Data (``pip install recfast[ray]``).
    ValueError, TypeError
        Bad arguments here; a query of the wrong dimension, a missing column or an excluded id
        out of range when the dataset runs (Ray reports the worker's ValueError).
    """
    ray = require_ray()
    if not isinstance(queries, ray.data.Dataset):
        raise TypeError(f"queries must be a ray.data.Dataset, got {type(queries).__name__}")
    k = _check_positive(k, "k", allow_none=False)  # type: ignore[assignment]
    shards = _check_positive(item_shards, "item_shards") or 1
    batch: int = _check_positive(batch_size, "batch_size", allow_none=False)  # type: ignore[assignment]
    workers = _check_positive(num_workers, "num_workers")
    per = _check_positive(num_cpus_per_worker, "num_cpus_per_worker")
    for name, value in (("query_column", query_column), ("id_column", id_column)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a non-empty string, got {value!r}")
    if exclude_column is not None and not isinstance(exclude_column, str):
        raise TypeError(f"exclude_column must be a string or None, got {exclude_column!r}")
    if not ray.is_initialized():
        ray.init()
    source = _items_source(ray, items, metric)
    if shards > max(source.n, 1):
        raise ValueError(f"item_shards={shards} is more than the {source.n} items")
    _check_schema(queries, query_column, id_column, exclude_column, source.dim)
    workers, ask, threads = _worker_plan(ray, workers, per, shards)
    kwargs = dict(
        items=source,
        k=k,
        query_column=query_column,
        id_column=id_column,
        exclude_column=exclude_column,
        num_threads=threads,
    )
    return _chain_pools(ray, queries, _ShardWorker, kwargs, shards, batch, workers, ask)


def _chain_pools(
    ray: Any,
    ds: Any,
    worker: type,
    kwargs: dict[str, Any],
    shards: int,
    batch: int,
    workers: int,
    ask: float,
) -> Any:
    """One actor pool of `worker` per item shard, in a row: pool s gets shard=s (its part
    travels on with the batch) and the last one merges the parts."""
    for s in range(shards):
        ds = ds.map_batches(
            worker,
            fn_constructor_kwargs=dict(kwargs, shard=s, shards=shards),
            batch_size=batch,
            batch_format="numpy",
            zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=ask,
        )
    return ds


def _pass_on_or_merge(batch: dict[str, Any], res: TopK, shard: int, shards: int, k: int) -> Any:
    """A shard's result: for every pool but the last, the batch with this shard's part added
    (a dict); for the last, the merge of every part (a TopK)."""
    if shard < shards - 1:
        out = dict(batch)
        out[_PART.format(shard, "scores")] = res.scores
        out[_PART.format(shard, "ids")] = res.ids
        return out
    if shards == 1:
        return res
    parts = [
        (TopK(batch[_PART.format(s, "scores")], batch[_PART.format(s, "ids")]), 0)
        for s in range(shards - 1)
    ]
    return merge_topk([*parts, (res, 0)], k)


def _check_schema(
    queries: Any, query_column: str, id_column: str, exclude_column: str | None, dim: int
) -> None:
    """Fail before the run when the dataset's schema is known and lacks a column, or its
    vectors have a fixed shape that is not (dim,). (A schema not known yet is checked by the
    workers, batch by batch.)"""
    try:
        schema = queries.schema(fetch_if_missing=False)
    except Exception:  # an older or newer Ray without this form: the workers check
        return
    if schema is None:
        return
    names = list(schema.names)
    for name, col in (
        ("query_column", query_column),
        ("id_column", id_column),
        ("exclude_column", exclude_column),
    ):
        if col is not None and col not in names:
            raise ValueError(f"{name} {col!r} is not a column of the queries (columns: {names})")
    types = dict(zip(schema.names, schema.types))
    shape = getattr(types.get(query_column), "shape", None)
    if isinstance(shape, tuple) and len(shape) >= 1 and shape != (dim,):
        raise ValueError(
            f"query_column {query_column!r}: queries of shape {shape} but the "
            f"items have dimension {dim}"
        )


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------


class _ModelWorker:
    """A long-lived actor holding one fitted model (from the object store) that recommends for
    whole batches of user histories."""

    def __init__(
        self,
        model_ref: list,
        k: int,
        filter_seen: bool,
        user_column: str,
        items_column: str,
        num_threads: int,
        shard: int = 0,
        shards: int = 1,
    ) -> None:
        import ray

        self.model = ray.get(model_ref[0])
        self.k, self.filter_seen = k, filter_seen
        self.user_column, self.items_column = user_column, items_column
        self.threads = max(1, int(num_threads))
        self.shard, self.shards = shard, shards
        self.lo, self.hi = _shard_bounds(int(self.model.n_items_), shards)[shard]

    def __call__(self, batch: dict[str, Any]) -> Any:
        import scipy.sparse as sp

        for name, col in (("user_column", self.user_column), ("items_column", self.items_column)):
            if col not in batch:
                raise ValueError(
                    f"{name} {col!r} is not a column of the histories (columns: {sorted(batch)})"
                )
        users = batch[self.user_column]
        n_items = int(self.model.n_items_)
        rows = [np.asarray([] if h is None else h) for h in batch[self.items_column]]
        for r, h in enumerate(rows):
            if h.size and (h.dtype.kind not in "iu" or h.min() < 0 or h.max() >= n_items):
                raise ValueError(
                    f"items_column {self.items_column!r}: user {users[r]!r} has "
                    f"item {h.reshape(-1)[0]!r}... outside the model's columns "
                    f"[0, {n_items})"
                )
        lengths = np.array([h.size for h in rows], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = (
            np.concatenate([h.reshape(-1) for h in rows]).astype(np.int64)
            if rows and indptr[-1]
            else np.empty(0, np.int64)
        )
        X = sp.csr_matrix(
            (np.ones(indices.size, np.float32), indices, indptr), shape=(len(rows), n_items)
        )
        X.sum_duplicates()
        X.data[:] = 1.0  # a history is binary, as in training
        if self.shards == 1:
            res = self.model.recommend(X, k=self.k, filter_seen=self.filter_seen)
        else:
            res = self.model._recommend_range(X, self.k, self.filter_seen, self.lo, self.hi)
        out = _pass_on_or_merge(batch, res, self.shard, self.shards, self.k)
        return out if isinstance(out, dict) else _result_table(users, self.user_column, out, None)


def recommend_all(
    model: Any,
    interactions: Any,
    k: int,
    *,
    filter_seen: bool = True,
    user_column: str = "user",
    item_column: str = "item",
    item_shards: int | None = None,
    batch_size: int = _DEFAULT_BATCH,
    num_workers: int | None = None,
    num_cpus_per_worker: int | None = None,
) -> Any:
    """Top-k items for every user of a Ray dataset through a fitted recfast model.

    Parameters
    ----------
    model : AutoEncoder, EASE or Popularity
        A fitted model; it is put once in the object store (NumPy weights are then shared
        zero-copy by the workers of a node).
    interactions : ray.data.Dataset
        Either one row per (user, item) interaction, `item_column` holding an int model column
        in [0, n_items) (rows are grouped by user, a shuffle, in the cluster), or one row per
        user whose `item_column` holds the list of the user's model columns (no shuffle).
    k : int
        Items per user (>= 1).
    filter_seen : bool
        Never recommend a user's own items (the models' rule).
    user_column, item_column : str
        Column names.
    item_shards : int or None
        Split the items into this many contiguous ranges, each scored by its own pool of
        workers (which keeps only its range's columns of an item-item model); the parts are
        merged into the exact top-k, equal to the unsharded answer.
    batch_size, num_workers, num_cpus_per_worker : int or None
        As in `topk_dataset`.

    Returns
    -------
    ray.data.Dataset
        One row per user: `user_column`, ``item_ids`` (list of k int64 model columns, -1 for
        padding) and ``scores`` (list of k float32), exactly `model.recommend`'s answer for
        that user's history.
    """
    ray = require_ray()
    from .models import Recommender

    if not isinstance(model, Recommender):
        raise TypeError(
            f"model must be a fitted recfast model (AutoEncoder, EASE, Popularity), "
            f"got {type(model).__name__}"
        )
    if not hasattr(model, "n_items_"):
        raise ValueError(f"this {type(model).__name__} is not fitted yet: call fit(X) first")
    if not isinstance(interactions, ray.data.Dataset):
        raise TypeError(
            f"interactions must be a ray.data.Dataset, got {type(interactions).__name__}"
        )
    k = _check_positive(k, "k", allow_none=False)  # type: ignore[assignment]
    if not isinstance(filter_seen, (bool, np.bool_)):
        raise TypeError(f"filter_seen must be True or False, got {type(filter_seen).__name__}")
    shards = _check_positive(item_shards, "item_shards") or 1
    if shards > max(int(model.n_items_), 1):
        raise ValueError(f"item_shards={shards} is more than the model's {model.n_items_} items")
    batch: int = _check_positive(batch_size, "batch_size", allow_none=False)  # type: ignore[assignment]
    workers = _check_positive(num_workers, "num_workers")
    per = _check_positive(num_cpus_per_worker, "num_cpus_per_worker")
    if not ray.is_initialized():
        ray.init()
    histories = user_histories(interactions, user_column=user_column, item_column=item_column)
    workers, ask, threads = _worker_plan(ray, workers, per, shards)
    kwargs = dict(
        model_ref=[ray.put(model)],
        k=k,
        filter_seen=bool(filter_seen),
        user_column=user_column,
        items_column=item_column,
        num_threads=threads,
    )
    return _chain_pools(ray, histories, _ModelWorker, kwargs, shards, batch, workers, ask)


def user_histories(
    interactions: Any, *, user_column: str = "user", item_column: str = "item"
) -> Any:
    """One row per user (`user_column`, `item_column`: the list of the user's items) from a
    Ray dataset of (user, item) rows, grouped in the cluster; a dataset whose `item_column`
    already holds lists is returned as it is."""
    require_ray()
    schema = interactions.schema(fetch_if_missing=True)
    if schema is None:  # an empty dataset
        return interactions
    names = list(schema.names)
    for name, col in (("user_column", user_column), ("item_column", item_column)):
        if col not in names:
            raise ValueError(
                f"{name} {col!r} is not a column of the interactions (columns: {names})"
            )
    import pyarrow as pa

    item_type = dict(zip(schema.names, schema.types))[item_column]
    if not (isinstance(item_type, pa.DataType) and pa.types.is_integer(item_type)):
        # lists (Arrow lists, tensors, ragged objects): one row per user already
        return interactions.select_columns([user_column, item_column])

    def gather(group: dict[str, np.ndarray]) -> dict[str, Any]:
        items = np.asarray(group[item_column])
        return {
            user_column: group[user_column][:1],
            item_column: np.array([np.unique(items.astype(np.int64))], dtype=object)
            if items.dtype.kind in "iu"
            else np.array([items], dtype=object),
        }

    return (
        interactions.select_columns([user_column, item_column])
        .groupby(user_column)
        .map_groups(gather, batch_format="numpy")
    )
