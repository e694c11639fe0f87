"""Model files: one .npz (a JSON header and the arrays), written atomically and read back with
every size checked before anything is allocated."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import zipfile
from typing import Any

import numpy as np

from .._io import atomic_write

NPZ_FORMAT = 1

# Deflate expands at most ~1032 times; a zip member claiming more than this per stored byte is
# not a real one (checked before anything is read, so that a tampered size allocates nothing).
_MAX_DEFLATE_RATIO = 1100


def save_npz(path: str | os.PathLike, model_type: str, header: dict, arrays: dict) -> None:
    """One .npz file: a JSON header (model type, format, config) plus the arrays."""
    head = dict(header, model_type=model_type, format_version=NPZ_FORMAT)
    # Any: numpy's savez stub would match a **dict of arrays against allow_pickle: bool
    payload: dict[str, Any] = {
        "header": np.frombuffer(json.dumps(head).encode("utf-8"), dtype=np.uint8)
    }
    payload.update(arrays)

    def write(f: Any) -> None:
        buf = io.BytesIO()
        np.savez(buf, **payload)
        f.write(buf.getvalue())

    atomic_write(path, write)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def damaged(path: str, exc: BaseException) -> ValueError:
    """The error for a model file that cannot be read back (truncated, altered, foreign)."""
    return ValueError(f"{path}: damaged or not a recfast model file ({_one_line(exc)})")


def open_model_zip(path: str | os.PathLike) -> tuple[str, zipfile.ZipFile]:
    """(path, open ZipFile) of a model file, after checking every member's stated sizes
    against the file's size (so that nothing read later allocates more than the file holds).
    FileNotFoundError when missing; ValueError naming the file for anything else."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(errno.ENOENT, "no such model file", p)
    if os.path.isdir(p):
        raise ValueError(f"{p} is a folder, not a recfast model file")
    size = os.path.getsize(p)
    try:
        zf = zipfile.ZipFile(p)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # BadZipFile, and what a damaged directory makes zipfile raise
        raise ValueError(f"{p} is not a recfast model file ({_one_line(exc)})") from None
    try:
        for info in zf.infolist():
            if info.header_offset < 0 or info.header_offset + info.compress_size > size:
                raise ValueError(
                    f"member {info.filename!r} claims {info.compress_size} bytes "
                    f"at offset {info.header_offset} in a file of {size}"
                )
            if info.compress_type == zipfile.ZIP_STORED:
                ok = info.file_size == info.compress_size
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                ok = info.file_size <= _MAX_DEFLATE_RATIO * max(info.compress_size, 1)
            else:
                raise ValueError(f"member {info.filename!r} uses an unsupported compression")
            if not ok:
                raise ValueError(
                    f"member {info.filename!r} claims {info.file_size} bytes from "
                    f"{info.compress_size} stored"
                )
    except ValueError as exc:
        zf.close()
        raise damaged(p, exc) from None
    return p, zf


def _read_npy(zf: zipfile.ZipFile, name: str, path: str, ndim: int | None = None) -> np.ndarray:
    """One array of an .npz, its header (shape, dtype) checked against the member's size before
    the data is read; the zip's CRC is checked as it is read."""
    try:
        info = zf.getinfo(name)
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            what = f"array {name[:-4]!r}"
            if dtype.hasobject or dtype.kind not in "biuf":
                raise ValueError(f"{what} has dtype {dtype}, expected numbers")
            if ndim is not None and len(shape) != ndim:
                raise ValueError(f"{what} has shape {shape}, expected {ndim}-D")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes != info.file_size - f.tell():
                raise ValueError(
                    f"{what} claims shape {shape} ({nbytes} bytes) but the file "
                    f"holds {info.file_size - f.tell()} bytes of it"
                )
            return _read_data(f, shape, fortran, dtype)
    except MemoryError:
        raise
    except Exception as exc:  # OSError too: a damaged offset makes zipfile seek before 0
        raise damaged(path, exc) from None


def _read_data(f: Any, shape: tuple, fortran: bool, dtype: np.dtype) -> np.ndarray:
    count = math.prod(shape)
    data = f.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise ValueError("the array data is truncated")
    arr = np.frombuffer(data, dtype=dtype, count=count).copy()
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def _read_header(zf: zipfile.ZipFile, path: str) -> dict:
    if "header.npy" not in zf.namelist():
        raise ValueError(f"{path} is not a recfast model file (no header)")
    raw = _read_npy(zf, "header.npy", path, ndim=1)
    try:
        header = json.loads(raw.astype(np.uint8).tobytes().decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise damaged(path, exc) from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a JSON object; not a recfast model file")
    return header


def load_npz(
    path: str | os.PathLike, model_type: str, arrays: dict[str, int]
) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a file written by save_npz for `model_type`.

    `arrays` names the arrays the model needs and the number of dimensions of each; every one
    must be there, hold finite numbers and have the size its .npy header states, all checked
    before its data is read. header["config"] is a dict (the model checks its contents).
    """
    p, zf = open_model_zip(path)
    with zf:
        header = _read_header(zf, p)
        if header.get("model_type") != model_type:
            raise ValueError(f"{p} holds a {header.get('model_type')!r} model, not {model_type!r}")
        if header.get("format_version") != NPZ_FORMAT:
            raise ValueError(f"{p}: unsupported format version {header.get('format_version')!r}")
        if not isinstance(header.get("config"), dict):
            raise ValueError(f"{p}: the header has no 'config' object; damaged model file")
        names = set(zf.namelist())
        out: dict[str, np.ndarray] = {}
        for name, ndim in arrays.items():
            if f"{name}.npy" not in names:
                raise ValueError(f"{p}: the array {name!r} is missing; damaged model file")
            arr = _read_npy(zf, f"{name}.npy", p, ndim=ndim)
            if arr.size and not np.isfinite(arr).all():
                raise ValueError(
                    f"{p}: the array {name!r} holds NaN or infinite values; damaged model file"
                )
            out[name] = arr
    return header, out


def header_n_items(header: dict, path: str | os.PathLike, n_items: int) -> None:
    """Check the item count a header states (files of older versions state none)."""
    stated = header.get("n_items", n_items)
    if isinstance(stated, bool) or not isinstance(stated, int) or stated != n_items:
        raise ValueError(
            f"{os.fspath(path)}: the header states {stated!r} items but the arrays "
            f"hold {n_items}; damaged model file"
        )


def stored_model_type(path: str | os.PathLike) -> str:
    """The model type stored in a file written by any recfast model's save()."""
    p, zf = open_model_zip(path)
    with zf:
        names = zf.namelist()
        if "header.npy" in names:
            return str(_read_header(zf, p).get("model_type"))
        if any(n.endswith("data.pkl") for n in names):
            return "AutoEncoder"
    raise ValueError(f"{p} is not a recfast model file")
