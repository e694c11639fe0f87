"""The ItemIndex file format (version 1): preamble, JSON header, aligned sections, checksums;
writing it atomically and reading it back (mapped or not) with every field checked.

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
quantized storage ``codes`` (|i1 or <u2, n x d), ``scale``, ``err``, ``norm`` (<f4, n each).

Checksums and memory mapping
----------------------------
Every load checks the preamble, the header checksum, the section table (names, dtypes, shapes,
sizes, alignment, order, file length) and the crc32 of the small per-item sections (ids, row_hash,
scale, err, norm: O(n) bytes). ``verify=True`` (the default of ``mmap=False``) also checks the
crc32 of ``codes`` and ``vectors`` at load. With ``mmap=True, verify=False`` those are not read at
load: the section a search streams in full (``codes``, or ``vectors`` for float32 storage) is
checked once by the first search that needs it, and the float32 rows of a quantized index are
checked one by one against ``row_hash`` whenever they are read (re-scoring, `get`, `similar`).
Any mismatch raises ValueError naming the section; a corrupted byte never yields a result.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zlib
from typing import Any, NamedTuple, TypeGuard

import numpy as np

from .._io import atomic_write
from .quantization import STORAGES
from .snapshot import Snapshot, crc32

FORMAT_MAGIC = b"RECFIDX\x00"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sIII4x")
_ALIGN = 64
_MAX_HEADER = 1 << 20
# Sections checked at every load (O(n) bytes); codes and vectors may be checked lazily.
SMALL_SECTIONS = ("ids", "row_hash", "scale", "err", "norm")


class IndexFile(NamedTuple):
    """What a file holds: the index's parameters and its arrays as one snapshot."""

    dim: int
    metric: str
    storage: str
    snapshot: Snapshot


def section_specs(dim: int, storage: str, n: int) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """(name, dtype, shape) of each section of an index of n rows, in file order."""
    specs: list[tuple[str, np.dtype, tuple[int, ...]]] = [
        ("ids", np.dtype("<i8"), (n,)),
        ("vectors", np.dtype("<f4"), (n, dim)),
        ("row_hash", np.dtype("<u8"), (n,)),
    ]
    if storage != "float32":
        code = np.dtype("|i1") if storage == "int8" else np.dtype("<u2")
        specs += [
            ("codes", code, (n, dim)),
            ("scale", np.dtype("<f4"), (n,)),
            ("err", np.dtype("<f4"), (n,)),
            ("norm", np.dtype("<f4"), (n,)),
        ]
    return specs


def write_index(
    path: str | os.PathLike[str], dim: int, metric: str, storage: str, arrays: dict[str, np.ndarray]
) -> None:
    """Write an index's arrays as one file, atomically (temp file in the same directory, fsync,
    rename, fsync of the directory)."""
    path = os.fspath(path)
    n = int(arrays["ids"].shape[0])
    sections: list[dict[str, Any]] = []
    offset = 0
    for name, dt, shape in section_specs(dim, storage, n):
        arr = arrays[name]
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        sections.append(
            {
                "name": name,
                "dtype": dt.str,
                "shape": list(shape),
                "offset": offset,  # relative for now
                "nbytes": nbytes,
                "crc32": crc32(np.ascontiguousarray(arr, dtype=dt)),
            }
        )
        offset += (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
    header: dict[str, Any] = {
        "format": "recfast.ItemIndex",
        "version": FORMAT_VERSION,
        "metric": metric,
        "dim": dim,
        "count": n,
        "storage": storage,
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


def read_index(path: str | os.PathLike[str], *, mmap: bool, verify: bool) -> IndexFile:
    """Open and check an index file (see `recfast.ItemIndex.load`)."""
    path = os.fspath(path)
    if verify is None:
        verify = not mmap
    # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            kind = "a directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "not a regular file"
            raise ValueError(f"{path}: {kind}, not a recfast index file")
        return _read_fd(fd, path, mmap, verify)
    except BaseException:
        os.close(fd)
        raise


def _read_fd(fd: int, path: str, mmap: bool, verify: bool) -> IndexFile:
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
            dim, metric, storage = _check_header(header, path, size)
        except (TypeError, KeyError, AttributeError, OverflowError, RecursionError) as e:
            # a crafted header (with a valid checksum) of unexpected types
            raise ValueError(f"{path}: invalid header ({type(e).__name__}: {e})") from None
        arrays: dict[str, np.ndarray] = {}
        for s in header["sections"]:
            dt, shape = np.dtype(s["dtype"]), tuple(s["shape"])
            if s["nbytes"] == 0:
                arrays[s["name"]] = np.empty(shape, dt)
            elif mmap and s["name"] not in SMALL_SECTIONS:
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
    snap = Snapshot(
        arrays,
        pending={s["name"] for s in header["sections"]},
        expected_crc={s["name"]: int(s["crc32"]) for s in header["sections"]},
    )
    for name in [s["name"] for s in header["sections"]]:
        if verify or name in SMALL_SECTIONS:
            snap.ensure_verified(name)
    ids = arrays["ids"]
    if len(ids) > 1 and not (np.diff(ids) > 0).all():
        raise ValueError(f"{path}: section 'ids' is not strictly increasing")
    if mmap and isinstance(arrays["vectors"], np.memmap):
        snap.attach_fd(fd, int(header["sections"][1]["offset"]))
    else:
        os.close(fd)
    return IndexFile(dim, metric, storage, snap)


def _check_header(h: Any, path: str, size: int) -> tuple[int, str, str]:
    """(dim, metric, storage) of a header, after checking it against the file's size."""

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
    specs = section_specs(dim, h["storage"], count)
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
    return dim, h["metric"], h["storage"]


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _rel_offsets(sections: list[dict[str, Any]]) -> list[int]:
    out, off = [], 0
    for s in sections:
        out.append(off)
        off += (s["nbytes"] + _ALIGN - 1) // _ALIGN * _ALIGN
    return out
