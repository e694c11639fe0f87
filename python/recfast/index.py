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

Exact search from compressed storage
------------------------------------
The native scan reads only the codes. For query q and item x it computes the compressed score
T = q'.x~ (q' the query as the float32 path sees it: q / |q| for cosine) and a certified radius
r = |q'| (e + c (|x| + e)) + 1e-30, where e >= |x - x~| and |x| are stored per item rounded up
and c = (4 d + 64) 2^-24 covers every float32 rounding involved (the compressed dot, the float32
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
zero and huge queries go to the float32 scan, the rest to the compressed one), so ids and
scores equal `recfast.topk(queries, index.get(index.ids), k, metric=index.metric)` bit for bit. Only the survivors' float32 rows are read.

File format (version 1), little endian
--------------------------------------
==========  =====================================================================
offset      content
==========  =====================================================================
0           magic ``b"RECFIDX\\0"`` (8 bytes)
8           uint32 format version (1)
12          uint32 header length H
16          uint32 zlib.crc32 of the header
20          uint32 zero
24          header: UTF-8 JSON {"format": "recfast.ItemIndex", "version", "metric", "dim",
            "count", "storage", "align": 64, "data_end", "sections": [{"name", "dtype",
            "shape", "offset", "nbytes", "crc32"}, ...]}
...         sections, each at a 64-byte aligned offset, raw C-order arrays; zero padding
            between them; the file ends at data_end (a multiple of 64)
==========  =====================================================================

Sections: ``ids`` (<i8, n, strictly increasing), ``vectors`` (<f4, n x d), ``row_hash`` (<u8, n:
sum of the bits of each float32 word times an odd per-column constant, mod 2^64), and for
compressed storage ``codes`` (|i1 or <u2, n x d), ``scale``, ``err``, ``norm`` (<f4, n each).

Checksums and memory mapping
----------------------------
Every load checks the preamble, the header checksum, the section table (names, dtypes, shapes,
sizes, alignment, order, file length) and the crc32 of the small per-item sections (ids, row_hash,
scale, err, norm: O(n) bytes). ``verify=True`` (the default of ``mmap=False``) also checks the
crc32 of ``codes`` and ``vectors`` at load. With ``mmap=True, verify=False`` those are not read at
load: the section a search streams in full (``codes``, or ``vectors`` for float32 storage) is
checked once by the first search that needs it, and the float32 rows of a compressed index are
checked one by one against ``row_hash`` whenever they are read (re-scoring, `get`, `similar`).
Any mismatch raises ValueError naming the section; a corrupted byte never yields a result.
"""

from __future__ import annotations

import json
import numbers
import os
import stat
import struct
import threading
import weakref
import zlib
from typing import Any, TypeGuard

import numpy as np
import scipy.sparse as sp

from . import _core
from ._inputs import (
    as_float32_matrix,
    as_row_batch,
    check_k,
    check_metric,
    check_num_threads,
    check_output_size,
    exclusion_csr,
)
from ._io import atomic_write
from ._types import TopK
from .topk import normalize

__all__ = ["ItemIndex", "FORMAT_VERSION", "STORAGES"]

STORAGES = ("float32", "float16", "int8")
FORMAT_MAGIC = b"RECFIDX\x00"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sIII4x")
_ALIGN = 64
_MAX_HEADER = 1 << 20
_CHUNK_ROWS = 1 << 15
_SMALL_SECTIONS = ("ids", "row_hash", "scale", "err", "norm")
# The largest |q'| * |x| for which the compressed bound is computed; beyond, the float32 path.
_MAX_SCORE_MAGNITUDE = 1e36


def _round_up_f32(v: np.ndarray) -> np.ndarray:
    """The smallest float32 >= each (non-negative, finite) float64 value."""
    f = v.astype(np.float32)
    low = f.astype(np.float64) < v
    f[low] = np.nextafter(f[low], np.float32(np.inf))
    return f


def _row_norms_up(x64: np.ndarray) -> np.ndarray:
    return _round_up_f32(np.sqrt(np.einsum("ij,ij->i", x64, x64)) * (1.0 + 1e-12))


def _quantize(x: np.ndarray, storage: str) -> dict[str, np.ndarray]:
    """Codes, scale, err >= |x - x~| and norm >= |x| of float32 rows x (finite)."""
    n, d = x.shape
    code_dtype = np.int8 if storage == "int8" else np.uint16
    out: dict[str, np.ndarray] = {
        "codes": np.empty((n, d), code_dtype),
        "scale": np.empty(n, np.float32),
        "err": np.empty(n, np.float32),
        "norm": np.empty(n, np.float32),
    }
    for s in range(0, n, _CHUNK_ROWS):
        xb = x[s : s + _CHUNK_ROWS]
        amax = np.abs(xb).max(axis=1) if d else np.zeros(len(xb), np.float32)
        if storage == "int8":
            scale = (amax / np.float32(127)).astype(np.float32)
            scale[scale == 0] = 1.0
            codes = np.clip(np.rint(xb / scale[:, None]), -127, 127).astype(np.int8)
            dec = codes.astype(np.float64) * scale[:, None].astype(np.float64)
            out["codes"][s : s + len(xb)] = codes
        else:
            _, e = np.frexp(amax)
            scale = np.ldexp(np.float32(1), np.where(amax > 0, e - 1, 0)).astype(np.float32)
            h = (xb / scale[:, None]).astype(np.float16)
            dec = h.astype(np.float64) * scale[:, None].astype(np.float64)
            out["codes"][s : s + len(xb)] = h.view(np.uint16)
        x64 = xb.astype(np.float64)
        out["scale"][s : s + len(xb)] = scale
        out["err"][s : s + len(xb)] = _row_norms_up(x64 - dec)
        out["norm"][s : s + len(xb)] = _row_norms_up(x64)
    return out


def _crc32(a: np.ndarray) -> int:
    crc = 0
    flat = a.reshape(-1) if a.size else a
    if flat.size == 0:
        return 0
    step = max(1, (16 << 20) // flat.itemsize)
    for s in range(0, flat.size, step):
        crc = zlib.crc32(np.ascontiguousarray(flat[s : s + step]).data.cast("B"), crc)
    return crc


def _check_ids_arg(ids: Any, name: str = "ids") -> np.ndarray:
    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        if a.size == 0:
            return np.empty(0, np.int64)
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds a value above the int64 range")
    return a.astype(np.int64, copy=False).reshape(-1)


class _Snapshot:
    """One consistent state of an index: its arrays and, for a mapped file, what reads it.

    `add` and `remove` build a new snapshot and swap it in with one assignment; a search takes
    the snapshot once at its start and uses only that one, so it never sees half a mutation,
    and the descriptor its re-scoring reads from stays open until the last user of the
    snapshot is gone (it is closed when the snapshot is garbage collected).
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        *,
        fd: int | None = None,
        vectors_offset: int = 0,
        pending: set[str] | None = None,
        expected_crc: dict[str, int] | None = None,
    ) -> None:
        self.arrays = arrays
        # A loaded, mapped index keeps a descriptor of its file: the few float32 rows a search
        # re-scores are read with pread, so their pages never become part of this process's
        # resident memory (a mapped access maps whole page-cache folios, up to 2 MiB each).
        self.fd = fd
        self.vectors_offset = vectors_offset
        self.pending = set(pending or ())  # sections whose crc32 is still to be checked
        self.expected_crc = dict(expected_crc or {})
        # float32 rows are checked against row_hash when read, until 'vectors' is verified
        self.rows_unverified = "vectors" in self.pending
        self.lock = threading.Lock()
        if fd is not None:
            self.attach_fd(fd, vectors_offset)

    def attach_fd(self, fd: int, vectors_offset: int) -> None:
        """Read re-scored rows from this descriptor from now on; it is closed with the snapshot."""
        self.fd, self.vectors_offset = fd, vectors_offset
        weakref.finalize(self, os.close, fd)

    def __len__(self) -> int:
        return int(self.arrays["ids"].shape[0])

    def ensure_verified(self, name: str) -> None:
        if name not in self.pending:
            return
        with self.lock:
            if name not in self.pending:
                return
            if _crc32(self.arrays[name]) != self.expected_crc[name]:
                raise ValueError(f"section {name!r} fails its crc32 check (the file is corrupted)")
            self.pending.discard(name)
            if name == "vectors":
                self.rows_unverified = False

    def rows(self, pos: np.ndarray) -> np.ndarray:
        """float32 rows at positions, checked against row_hash when not verified in full."""
        dim = self.arrays["vectors"].shape[1]
        if self.fd is not None and len(pos) <= 4096:
            rows = np.empty((len(pos), dim), np.float32)
            rb = dim * 4
            for i, p in enumerate(pos):
                raw = os.pread(self.fd, rb, self.vectors_offset + int(p) * rb)
                if len(raw) != rb:
                    raise ValueError("section 'vectors': the file is truncated")
                rows[i] = np.frombuffer(raw, np.float32)
        else:
            rows = np.array(self.arrays["vectors"][pos], dtype=np.float32, copy=True)
        if self.rows_unverified and len(pos):
            bad = np.nonzero(_core.row_hashes(rows) != self.arrays["row_hash"][pos])[0]
            if len(bad):
                raise ValueError(
                    f"section 'vectors': row {int(pos[bad[0]])} does not match its checksum "
                    "(the file is corrupted)"
                )
        return rows

    def in_memory_arrays(self) -> dict[str, np.ndarray]:
        """The arrays verified and (when mapped) copied into memory: the base of a mutation."""
        for name in list(self.pending):
            self.ensure_verified(name)
        if any(isinstance(v, np.memmap) for v in self.arrays.values()):
            return {k: np.array(v, copy=True) for k, v in self.arrays.items()}
        return self.arrays

    def positions(self, ids: Any, name: str = "ids") -> np.ndarray:
        """Positions of external ids; unknown ids are a ValueError."""
        q = _check_ids_arg(ids, name)
        pos, ok = _lookup(self.arrays["ids"], q)
        if not ok.all():
            raise ValueError(f"{name} holds id {int(q[~ok][0])}, which is not in the index")
        return pos

    def known_positions(self, ids: Any, name: str) -> np.ndarray:
        """Positions of the external ids that are in the index (others ignored), sorted unique."""
        q = _check_ids_arg(ids, name)
        pos, ok = _lookup(self.arrays["ids"], q)
        return np.unique(pos[ok]).astype(np.int64)


def _lookup(all_ids: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.searchsorted(all_ids, q).astype(np.int64)
    ok = pos < len(all_ids)
    ok[ok] = all_ids[pos[ok]] == q[ok]
    return pos, ok


class ItemIndex:
    """Item vectors addressed by int64 external ids, searched exactly.

    Thread safety: any number of threads may call `search`, `similar`, `get` and `save` while
    others `add` or `remove`. Each call works on one consistent state of the index (the state
    before or after a concurrent mutation, never a mix), and mutations are serialized. The
    native code releases the GIL, so searches run in parallel.

    Parameters
    ----------
    dim
        vector dimension (>= 1).
    metric
        "cosine" (vectors normalized on add) or "dot".
    storage
        "float32", "float16" or "int8" (compressed scan, exact re-scoring; see the module
        docstring).
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
        self._snap = _Snapshot(self._empty_arrays())
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

    # -- arrays ------------------------------------------------------------------------------------
    def _section_specs(self, n: int) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        d = self._dim
        specs: list[tuple[str, np.dtype, tuple[int, ...]]] = [
            ("ids", np.dtype("<i8"), (n,)),
            ("vectors", np.dtype("<f4"), (n, d)),
            ("row_hash", np.dtype("<u8"), (n,)),
        ]
        if self._storage != "float32":
            code = np.dtype("|i1") if self._storage == "int8" else np.dtype("<u2")
            specs += [
                ("codes", code, (n, d)),
                ("scale", np.dtype("<f4"), (n,)),
                ("err", np.dtype("<f4"), (n,)),
                ("norm", np.dtype("<f4"), (n,)),
            ]
        return specs

    def _empty_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.empty(shape, dt) for name, dt, shape in self._section_specs(0)}

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
        new = {"ids": np.empty(0, np.int64), "vectors": x, "row_hash": _core.row_hashes(x)}
        if self._storage != "float32":
            new.update(_quantize(x, self._storage))
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
            self._snap = _Snapshot(merged)

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
            self._snap = _Snapshot({k: v[keep] for k, v in arrays.items()})

    def get(self, ids: Any) -> np.ndarray:
        """The stored float32 vectors of ids ((n, d), or (d,) for one id); unknown id: ValueError."""
        snap = self._snap
        single = np.ndim(ids) == 0
        rows = snap.rows(snap.positions(np.atleast_1d(ids)))
        return rows[0] if single else rows

    # -- search ------------------------------------------------------------------------------------
    def search(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Any = None,
        include: Any = None,
        exact: bool = True,
        num_threads: int | None = None,
    ) -> TopK:
        """Top-k items per query, with external ids.

        Parameters
        ----------
        queries
            (B, d) or (d,) floats (finite).
        k
            items per query (>= 1); rows with fewer eligible items are padded id -1, -inf.
        exclude
            items never returned, per query: a sequence of B arrays of external ids
            (ids not in the index are ignored; a flat array for a 1-D query), or a
            scipy.sparse matrix (B, len(index)) over positions (position = rank of the id in
            `ids`).
        include
            a global allow-list of external ids (ids not in the index are ignored);
            None allows every item, an empty list none.
        exact
            True returns exactly `recfast.topk`'s answer on the float32 vectors (ids and
            scores), for each query whatever the other queries of the batch are. False, for
            compressed storage, skips the float32 re-scoring: ids and scores come from the
            compressed scan (approximate: scores off by up to the quantization error,
            near-ties possibly swapped). float32 storage is always exact.
        num_threads
            None for all usable CPUs, or a positive count.

        Returns
        -------
        TopK
            TopK(scores float32, ids int64 external), each (B, k) or (k,), best first, equal
            scores lower id first.
        """
        return self.search_with_stats(
            queries, k, exclude=exclude, include=include, exact=exact, num_threads=num_threads
        )[0]

    def search_with_stats(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Any = None,
        include: Any = None,
        exact: bool = True,
        num_threads: int | None = None,
    ) -> tuple[TopK, dict[str, int]]:
        """`search`, plus {"candidates": survivors of the compressed scan summed over queries}."""
        # one state for the whole call (see the class docstring)
        return self._search(self._snap, queries, k, exclude, include, exact, num_threads)

    def _search(
        self,
        snap: _Snapshot,
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
            scores = np.full((b, k), -np.inf, np.float32)
            pos = np.full((b, k), -1, np.int64)
        elif self._storage == "float32":
            snap.ensure_verified("vectors")
            scores, pos = self._float_search(snap, q, k, excl, allow, threads, b)
        else:
            snap.ensure_verified("codes")
            scores, pos, stats["candidates"] = self._compressed_search(
                snap, q, k, excl, allow, bool(exact), threads
            )
        ids = np.full(pos.shape, -1, np.int64)
        ids[pos >= 0] = snap.arrays["ids"][pos[pos >= 0]]
        if single:
            return TopK(scores[0], ids[0]), stats
        return TopK(scores, ids), stats

    @staticmethod
    def _exclusion(snap: _Snapshot, exclude: Any, b: int) -> tuple[np.ndarray, np.ndarray] | None:
        n = len(snap)
        if exclude is None:
            return None
        if sp.issparse(exclude):
            return exclusion_csr(exclude, b, n)
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
        return exclusion_csr(rows, b, n) if n else None

    def _float_search(self, snap, q, k, excl, allow, threads, batch_size):
        """recfast.topk over the float32 rows (all, or the allowed ones); `batch_size` is the
        user's whole batch, of which q may be a part (it picks the scoring path)."""
        if allow is None:
            rows, keep = snap.arrays["vectors"], None
        else:
            keep = np.nonzero(allow)[0]
            rows = snap.rows(keep) if snap.rows_unverified else snap.arrays["vectors"][keep]
            if excl is not None:
                excl = _restrict_exclusion(excl, keep)
        rows = as_float32_matrix(rows, "vectors")
        indptr, indices = excl if excl is not None else (None, None)
        metric = self._metric
        scores, pos = _core.topk(q, rows, k, metric, indptr, indices, threads, batch_size)
        if keep is not None:
            pos = np.where(pos >= 0, keep[np.maximum(pos, 0)], -1)
        return scores, pos

    def _compressed_search(self, snap, q, k, excl, allow, exact, threads):
        a = snap.arrays
        qq = q.astype(np.float64)
        qn2 = np.einsum("ij,ij->i", qq, qq)
        max_norm = float(a["norm"].max()) if len(a["norm"]) else 0.0
        qn = np.sqrt(qn2) if self._metric == "dot" else np.ones_like(qn2)
        routed = (qn2 == 0) | (qn * max_norm > _MAX_SCORE_MAGNITUDE)
        b = q.shape[0]
        scores = np.empty((b, k), np.float32)
        pos = np.empty((b, k), np.int64)
        cands = 0
        main = np.nonzero(~routed)[0]
        if len(main):
            qm = q if len(main) == b else np.ascontiguousarray(q[main])
            indptr = indices = None
            if excl is not None:
                indptr, indices = excl if len(main) == b else _csr_rows(excl, main)
            s, p, cands = _core.quant_search(
                qm,
                self._storage,
                a["codes"],
                a["scale"],
                a["err"],
                a["norm"],
                a["vectors"] if exact else None,
                a["row_hash"] if (exact and snap.rows_unverified) else None,
                k,
                self._metric,
                exact,
                indptr,
                indices,
                allow,
                threads,
                snap.fd if snap.fd is not None else -1,
                snap.vectors_offset,
                b,
            )
            scores[main], pos[main] = s, p
        other = np.nonzero(routed)[0]
        if len(other):
            # Zero queries (every score 0) and scores beyond the bound's float range: float32,
            # scored as part of the whole batch.
            snap.ensure_verified("vectors")
            sub = None if excl is None else _csr_rows(excl, other)
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
        rename, fsync of the directory). See the module docstring for the format."""
        path = os.fspath(path)
        snap = self._snap  # one state for the whole call
        for name in list(snap.pending):  # a mapped index: check what was not checked yet
            snap.ensure_verified(name)
        arrays = snap.arrays
        n = len(snap)
        sections: list[dict[str, Any]] = []
        offset = 0
        for name, dt, shape in self._section_specs(n):
            arr = arrays[name]
            nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            sections.append(
                {
                    "name": name,
                    "dtype": dt.str,
                    "shape": list(shape),
                    "offset": offset,  # relative for now
                    "nbytes": nbytes,
                    "crc32": _crc32(np.ascontiguousarray(arr, dtype=dt)),
                }
            )
            offset += (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        header: dict[str, Any] = {
            "format": "recfast.ItemIndex",
            "version": FORMAT_VERSION,
            "metric": self._metric,
            "dim": self._dim,
            "count": n,
            "storage": self._storage,
            "align": _ALIGN,
            "data_end": 0,
            "sections": sections,
        }
        # The header's length depends on the offsets; fix it with room to spare.
        base = 0
        for _ in range(3):
            for s, rel in zip(sections, _rel_offsets(sections)):
                s["offset"] = base + rel
            header["data_end"] = base + offset
            blob = json.dumps(header, sort_keys=True).encode()
            need = (_PREAMBLE.size + len(blob) + _ALIGN - 1) // _ALIGN * _ALIGN
            if need == base:
                break
            base = need
        blob = json.dumps(header, sort_keys=True).encode()
        assert _PREAMBLE.size + len(blob) <= base

        def write(f: Any) -> None:
            f.write(_PREAMBLE.pack(FORMAT_MAGIC, FORMAT_VERSION, len(blob), zlib.crc32(blob)))
            f.write(blob)
            pos = _PREAMBLE.size + len(blob)
            for s in sections:
                f.write(b"\0" * (s["offset"] - pos))
                arr = np.ascontiguousarray(arrays[s["name"]], dtype=np.dtype(s["dtype"]))
                flat = arr.reshape(-1)
                step = max(1, (16 << 20) // max(1, flat.itemsize))
                for i in range(0, flat.size, step):
                    f.write(np.ascontiguousarray(flat[i : i + step]).data.cast("B"))
                pos = s["offset"] + s["nbytes"]
            f.write(b"\0" * (header["data_end"] - pos))

        atomic_write(path, write)

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
        path = os.fspath(path)
        if verify is None:
            verify = not mmap
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                kind = "a directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "not a regular file"
                raise ValueError(f"{path}: {kind}, not a recfast index file")
            return cls._load_fd(fd, path, mmap, verify)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _load_fd(cls, fd: int, path: str, mmap: bool, verify: bool) -> ItemIndex:
        size = os.fstat(fd).st_size
        with os.fdopen(os.dup(fd), "rb") as f:
            pre = f.read(_PREAMBLE.size)
            if len(pre) >= 8 and pre[:8] != FORMAT_MAGIC:
                raise ValueError(f"{path}: not a recfast index file (bad magic {pre[:8]!r})")
            if len(pre) < _PREAMBLE.size:
                raise ValueError(f"{path}: truncated: {size} bytes, shorter than the preamble")
            magic, version, hlen, hcrc = _PREAMBLE.unpack(pre)
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: unsupported format version {version} (this recfast reads "
                    f"version {FORMAT_VERSION})"
                )
            if hlen > _MAX_HEADER:
                raise ValueError(f"{path}: corrupted preamble (header length {hlen})")
            blob = f.read(hlen)
            if len(blob) < hlen:
                raise ValueError(f"{path}: truncated: the file ends inside the header")
            if zlib.crc32(blob) != hcrc:
                raise ValueError(f"{path}: header checksum mismatch (the header is corrupted)")
            try:
                header = json.loads(blob.decode())
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                raise ValueError(f"{path}: header is not valid JSON ({e})") from None
            try:
                index = cls._from_header(header, path, size)
            except (TypeError, KeyError, AttributeError, OverflowError, RecursionError) as e:
                # a crafted header (with a valid checksum) of unexpected types
                raise ValueError(f"{path}: invalid header ({type(e).__name__}: {e})") from None
            arrays: dict[str, np.ndarray] = {}
            for s in header["sections"]:
                dt, shape = np.dtype(s["dtype"]), tuple(s["shape"])
                if s["nbytes"] == 0:
                    arrays[s["name"]] = np.empty(shape, dt)
                elif mmap and s["name"] not in _SMALL_SECTIONS:
                    arrays[s["name"]] = np.memmap(
                        f, dtype=dt, mode="r", offset=s["offset"], shape=shape
                    )
                else:
                    buf = np.empty(shape, dt)
                    f.seek(s["offset"])
                    got = f.readinto(buf.reshape(-1).data.cast("B"))
                    if got != s["nbytes"]:
                        raise ValueError(f"{path}: truncated inside section {s['name']!r}")
                    arrays[s["name"]] = buf
        snap = _Snapshot(
            arrays,
            pending={s["name"] for s in header["sections"]},
            expected_crc={s["name"]: int(s["crc32"]) for s in header["sections"]},
        )
        for name in [s["name"] for s in header["sections"]]:
            if verify or name in _SMALL_SECTIONS:
                snap.ensure_verified(name)
        ids = arrays["ids"]
        if len(ids) > 1 and not (np.diff(ids) > 0).all():
            raise ValueError(f"{path}: section 'ids' is not strictly increasing")
        if mmap and isinstance(arrays["vectors"], np.memmap):
            snap.attach_fd(fd, int(header["sections"][1]["offset"]))
        else:
            os.close(fd)
        index._snap = snap
        return index

    @classmethod
    def _from_header(cls, h: Any, path: str, size: int) -> ItemIndex:
        def bad(what: str) -> ValueError:
            return ValueError(f"{path}: invalid header: {what}")

        if not isinstance(h, dict) or h.get("format") != "recfast.ItemIndex":
            raise bad("not a recfast.ItemIndex header")
        if h.get("version") != FORMAT_VERSION:
            raise bad(f"version {h.get('version')!r} differs from the preamble's")
        dim, count = h.get("dim"), h.get("count")
        if not (_is_int(dim) and dim >= 1 and _is_int(count) and count >= 0):
            raise bad(f"dim {dim!r} / count {count!r}")
        if h.get("metric") not in ("cosine", "dot") or h.get("storage") not in STORAGES:
            raise bad(f"metric {h.get('metric')!r} / storage {h.get('storage')!r}")
        if h.get("align") != _ALIGN:
            raise bad(f"alignment {h.get('align')!r}")
        index = cls(dim, metric=h["metric"], storage=h["storage"])
        specs = index._section_specs(count)
        secs = h.get("sections")
        if not isinstance(secs, list) or [s.get("name") for s in secs if isinstance(s, dict)] != [
            name for name, _, _ in specs
        ]:
            raise bad(f"sections should be {[name for name, _, _ in specs]}")
        end = _PREAMBLE.size
        for s, (name, dt, shape) in zip(secs, specs):
            got_shape = s.get("shape")
            if not (isinstance(got_shape, list) and all(_is_int(v) for v in got_shape)):
                raise bad(f"section {name!r} shape {got_shape!r}")
            if s.get("dtype") != dt.str or tuple(got_shape) != shape:
                raise bad(f"section {name!r} should be {dt.str} {shape}")
            off, nb = s.get("offset"), s.get("nbytes")
            if not (_is_int(off) and _is_int(nb) and _is_int(s.get("crc32"))):
                raise bad(f"section {name!r} offset/nbytes/crc32")
            if nb != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
                raise bad(f"section {name!r} size {nb}")
            if off % _ALIGN or off < end:
                raise bad(f"section {name!r} offset {off}")
            end = off + nb
        data_end = h.get("data_end")
        if not _is_int(data_end) or data_end < end or data_end - end >= _ALIGN:
            raise bad(f"data_end {data_end!r}")
        if size < data_end:
            missing = [s["name"] for s in secs if s["offset"] + s["nbytes"] > size]
            raise ValueError(
                f"{path}: truncated: {size} bytes but the header says {data_end} "
                f"(section {missing[0] if missing else 'padding'!r} incomplete)"
            )
        if size > data_end:
            raise ValueError(f"{path}: {size - data_end} unexpected bytes after the last section")
        return index


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _rel_offsets(sections: list[dict[str, Any]]) -> list[int]:
    out, off = [], 0
    for s in sections:
        out.append(off)
        off += (s["nbytes"] + _ALIGN - 1) // _ALIGN * _ALIGN
    return out


def _restrict_exclusion(
    excl: tuple[np.ndarray, np.ndarray], keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exclusions over all positions as exclusions over the rows `keep` (sorted positions)."""
    indptr, indices = excl
    local = np.searchsorted(keep, indices)
    hit = local < len(keep)
    hit[hit] = keep[local[hit]] == indices[hit]
    row_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    new_ptr = np.zeros(len(indptr), np.int64)
    np.cumsum(np.bincount(row_of[hit], minlength=len(indptr) - 1), out=new_ptr[1:])
    return new_ptr, local[hit].astype(np.int64)


def _csr_rows(excl: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    indptr, indices = excl
    parts = [indices[indptr[r] : indptr[r + 1]] for r in rows]
    new_ptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=new_ptr[1:])
    new_idx = np.concatenate(parts) if parts else np.empty(0, np.int64)
    return new_ptr, new_idx.astype(np.int64)

