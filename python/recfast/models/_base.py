"""Shared pieces of the recommenders: input checks, exclusions, atomic files, dispatch by type."""

from __future__ import annotations

import errno
import io
import json
import math
import numbers
import os
import zipfile
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _core
from .._inputs import available_cpus
from .._io import atomic_write
from .._types import TopK
from ..topk import select_topk, topk

TRAIN_HINT = "pip install recfast[train]"


def require_torch() -> Any:
    """Import torch or raise ImportError telling how to install it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"this model is trained with PyTorch, which is not installed: {TRAIN_HINT}"
        ) from exc
    return torch


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(value: Any, name: str, *, minimum: float = 0.0, maximum: float | None = None,
                strict_min: bool = False, strict_max: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    if v < minimum or (strict_min and v == minimum):
        raise ValueError(f"{name} must be {'>' if strict_min else '>='} {minimum}, got {value}")
    if maximum is not None and (v > maximum or (strict_max and v == maximum)):
        raise ValueError(f"{name} must be {'<' if strict_max else '<='} {maximum}, got {value}")
    return v


def as_interactions(X: Any, name: str = "X", n_items: int | None = None) -> sp.csr_matrix:
    """X as a float32 CSR users x items matrix with sorted, summed indices (copied once)."""
    if sp.issparse(X):
        m = sp.csr_matrix(X, dtype=np.float32, copy=True)
    elif isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise ValueError(f"{name} must be a 2-D users x items matrix, got shape {X.shape}")
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
            raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}")
        m = sp.csr_matrix(X.astype(np.float32))
    else:
        raise TypeError(
            f"{name} must be a scipy.sparse users x items matrix (or a 2-D numpy array), "
            f"got {type(X).__name__}"
        )
    if m.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {m.shape}")
    if n_items is not None and m.shape[1] != n_items:
        raise ValueError(
            f"{name} has {m.shape[1]} item columns but the model was fit on {n_items} items"
        )
    m.sum_duplicates()
    m.eliminate_zeros()
    if m.nnz and not np.all(np.isfinite(m.data)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if m.nnz and m.data.min() < 0:
        raise ValueError(f"{name} must be non-negative (interaction strengths)")
    return m


def build_exclusion(X: sp.csr_matrix, filter_seen: bool, filter_items: Any) -> Any:
    """Exclusions for recfast.topk: the seen items and/or filter_items, as one CSR or None.

    filter_items: None; a 1-D sequence of item ids removed for every user; or a scipy.sparse
    (n_users, n_items) matrix whose nonzeros are removed per user.
    """
    n_users, n_items = X.shape
    parts = []
    if not isinstance(filter_seen, (bool, np.bool_)):
        raise TypeError(f"filter_seen must be True or False, got {type(filter_seen).__name__}")
    if filter_seen:
        parts.append(X)
    if filter_items is not None:
        if sp.issparse(filter_items):
            if filter_items.shape != (n_users, n_items):
                raise ValueError(
                    f"filter_items as a sparse matrix must have shape {(n_users, n_items)}, "
                    f"got {filter_items.shape}"
                )
            f = sp.csr_matrix(filter_items, dtype=np.float32, copy=True)
            f.eliminate_zeros()
            f.data[:] = 1.0
            parts.append(f)
        else:
            ids = check_item_ids(filter_items, n_items, "filter_items", allow_scalar=False)
            if ids.size and n_users:
                ids = np.unique(ids)
                rows = np.repeat(np.arange(n_users), ids.size)
                cols = np.tile(ids, n_users)
                parts.append(sp.csr_matrix(
                    (np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items)))
    if not parts:
        return None
    out = parts[0].copy()
    out.data = np.ones_like(out.data)
    for p in parts[1:]:
        out = out + p
    return sp.csr_matrix(out)


def check_item_ids(values: Any, n_items: int, name: str, *, allow_scalar: bool) -> np.ndarray:
    """Item column ids as int64, each in [0, n_items); `name` is the argument in messages."""
    ids = np.atleast_1d(np.asarray(values)) if allow_scalar else np.asarray(values)
    if ids.ndim != 1:
        what = "an id or a 1-D sequence of ids" if allow_scalar else "a 1-D sequence of item ids"
        raise ValueError(f"{name} must be {what}, got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name} must hold integer item ids, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_items):
        raise ValueError(f"{name} holds ids outside [0, {n_items})")
    return ids


def check_k_arg(k: Any) -> int:
    return check_positive_int(k, "k")


def dot_topk(users: np.ndarray, items: np.ndarray, k: int, exclude: Any) -> TopK:
    """recfast.topk by inner product; an empty batch gives empty results."""
    if users.shape[0] == 0:
        return TopK(np.empty((0, k), np.float32), np.empty((0, k), np.int64))
    return topk(users, items, k, metric="dot", exclude=exclude)


def cosine_similar_items(emb: np.ndarray, item_ids: Any, k: int) -> TopK:
    """Each item's k nearest items by cosine over the rows of emb, never the item itself."""
    k = check_k_arg(k)
    ids = check_item_ids(item_ids, emb.shape[0], "item_ids", allow_scalar=True)
    return topk(emb[ids], emb, k, metric="cosine", exclude=[np.array([i]) for i in ids])


# Users per score block of the item-item models: a block of scores over 4,000 items is 16 MiB.
SCORE_BLOCK_USERS = 1024


def item_item_scores(m: sp.csr_matrix, item_item: np.ndarray,
                     dense: np.ndarray | None = None) -> np.ndarray:
    """Scores X @ item_item (+ `dense`, updated in place when given) of the histories m.

    X is sparse, so this costs nnz(X) x n_items multiply-adds (natively, cache-blocked), where
    folding the rows of X into recfast.topk's query vectors would cost n_users x n_items^2.
    """
    out = dense if dense is not None else np.zeros((m.shape[0], item_item.shape[1]), np.float32)
    if m.nnz:
        _core.csr_dense_accumulate(m.indptr.astype(np.int64), m.indices.astype(np.int64),
                                   m.data.astype(np.float32, copy=False), item_item, out,
                                   available_cpus())
    return out


def item_item_topk(m: sp.csr_matrix, item_item: np.ndarray, k: int, exclude: Any,
                   dense_part: Any = None) -> TopK:
    """recfast.select_topk over the score rows X @ item_item (+ dense_part(X)), by blocks.

    dense_part(block) gives the float32 dense scores of a block of histories (or None).
    """
    n = m.shape[0]
    if n == 0:
        return TopK(np.empty((0, k), np.float32), np.empty((0, k), np.int64))
    scores, ids = [], []
    for s in range(0, n, SCORE_BLOCK_USERS):
        e = min(n, s + SCORE_BLOCK_USERS)
        rows = m[s:e]
        block = item_item_scores(rows, item_item, dense_part(rows) if dense_part else None)
        r = select_topk(block, k, exclude=exclude[s:e] if exclude is not None else None)
        scores.append(r.scores)
        ids.append(r.ids)
    return TopK(np.concatenate(scores), np.concatenate(ids))


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
                raise ValueError(f"member {info.filename!r} claims {info.compress_size} bytes "
                                 f"at offset {info.header_offset} in a file of {size}")
            if info.compress_type == zipfile.ZIP_STORED:
                ok = info.file_size == info.compress_size
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                ok = info.file_size <= _MAX_DEFLATE_RATIO * max(info.compress_size, 1)
            else:
                raise ValueError(f"member {info.filename!r} uses an unsupported compression")
            if not ok:
                raise ValueError(f"member {info.filename!r} claims {info.file_size} bytes from "
                                 f"{info.compress_size} stored")
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
                raise ValueError(f"{what} claims shape {shape} ({nbytes} bytes) but the file "
                                 f"holds {info.file_size - f.tell()} bytes of it")
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


def load_npz(path: str | os.PathLike, model_type: str,
             arrays: dict[str, int]) -> tuple[dict, dict[str, np.ndarray]]:
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
                raise ValueError(f"{p}: the array {name!r} holds NaN or infinite values; "
                                 f"damaged model file")
            out[name] = arr
    return header, out


def header_n_items(header: dict, path: str | os.PathLike, n_items: int) -> None:
    """Check the item count a header states (files of older versions state none)."""
    stated = header.get("n_items", n_items)
    if isinstance(stated, bool) or not isinstance(stated, int) or stated != n_items:
        raise ValueError(f"{os.fspath(path)}: the header states {stated!r} items but the arrays "
                         f"hold {n_items}; damaged model file")


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


class Recommender:
    """Common interface: fit(X) -> self, recommend(X, k) -> TopK, save(path), load(path)."""

    n_items_: int

    def fit(self, X: Any) -> Recommender:
        raise NotImplementedError

    def recommend(self, X: Any, k: int = 10, *, filter_seen: bool = True,
                  filter_items: Any = None) -> TopK:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recommender:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")

    def __repr__(self) -> str:
        params: dict[str, Any] = getattr(self, "_repr_params", lambda: {})()
        inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({inner})"
