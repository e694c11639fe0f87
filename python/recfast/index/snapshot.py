"""`Snapshot`: one consistent state of an ItemIndex (arrays, and for a mapped file its open
descriptor and what is still to be verified), swapped whole on every mutation."""

from __future__ import annotations

import os
import threading
import weakref
import zlib
from typing import Any

import numpy as np

from .. import _native


def crc32(a: np.ndarray) -> int:
    """zlib.crc32 of an array's bytes in C order, read in 16 MiB blocks."""
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


class Snapshot:
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
            if crc32(self.arrays[name]) != self.expected_crc[name]:
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
            bad = np.nonzero(_native.row_hashes(rows) != self.arrays["row_hash"][pos])[0]
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
