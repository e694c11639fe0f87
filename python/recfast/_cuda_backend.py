"""The optional CUDA backend: loading `recfast._cuda`, choosing the device, calling it.

`HAS_CUDA` is True when the extension module `recfast._cuda` was built, imports, and sees at
least one CUDA device; `RECFAST_DISABLE_CUDA=1` (any value but "" and "0") forces it False.
`UNAVAILABLE_REASON` says why it is False.

Where results live:
  * torch CUDA tensors in (queries, or items): computed on that tensor's GPU with no copy of a
    float32 tensor whose rows are contiguous; results are torch CUDA tensors on that device
    (float32 scores, int64 ids). A non-CUDA operand beside it is copied to that GPU once.
  * numpy arrays / torch CPU tensors with device="cuda": copied to the GPU once; results are
    numpy arrays, like the CPU path's.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._exclusion import as_exclusion, single_query_exclude
from ._inputs import (
    as_float32_matrix,
    check_shapes,
    is_torch_tensor,
    prepare,
)
from ._types import TopK

DEVICES = ("auto", "cpu", "cuda")


def _load() -> tuple[Any, str | None]:
    if os.environ.get("RECFAST_DISABLE_CUDA", "") not in ("", "0"):
        return None, "RECFAST_DISABLE_CUDA is set"
    try:
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError as e:
        return None, f"recfast was built without its CUDA module ({e})"
    try:
        n = _cuda.device_count()
    except Exception as e:  # noqa: BLE001 - any failure here means: no usable GPU
        return None, f"the CUDA runtime failed to start: {e}"
    if n < 1:
        return None, f"no usable CUDA device ({_cuda.availability() or 'none found'})"
    return _cuda, None


_module, UNAVAILABLE_REASON = _load()
HAS_CUDA: bool = _module is not None


def is_cuda_tensor(x: Any) -> bool:
    return is_torch_tensor(x) and x.device.type == "cuda"


def _parse_device(device: Any) -> tuple[str, int | None]:
    """('auto'|'cpu'|'cuda', explicit GPU index or None)."""
    if isinstance(device, str):
        if device in DEVICES:
            return device, None
        if device.startswith("cuda:") and device[5:].isdigit():
            return "cuda", int(device[5:])
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def use_cuda(device: Any, queries: Any, items: Any) -> bool:
    """Validate `device` and say whether this call runs on the GPU.

    "auto" runs on the GPU exactly when queries or items are torch CUDA tensors.
    """
    kind, _ = _parse_device(device)
    on_gpu = [name for name, x in (("queries", queries), ("items", items)) if is_cuda_tensor(x)]
    if kind == "cpu":
        if on_gpu:
            raise ValueError(
                f"device='cpu' but {on_gpu[0]} is a torch tensor on a CUDA device; move it with "
                ".cpu(), or use device='auto' or 'cuda'"
            )
        return False
    if kind == "auto" and not on_gpu:
        return False
    if not HAS_CUDA:
        why = f"{on_gpu[0]} is a torch CUDA tensor" if on_gpu else "device='cuda' was asked for"
        raise RuntimeError(
            f"{why}, but recfast's CUDA backend is unavailable: {UNAVAILABLE_REASON}"
        )
    return True


def _torch_matrix(x: Any, name: str, torch_device: Any, *, allow_1d: bool = False) -> Any:
    """A float32 torch tensor on `torch_device` with contiguous rows (no copy when it is one)."""
    import torch

    if is_torch_tensor(x):
        t = x.detach()
        if t.device != torch_device:
            if t.device.type == "cuda":
                raise ValueError(
                    f"{name} is on {t.device} but the other operand is on {torch_device}"
                )
            t = _host_to_device(as_float32_matrix(t, name, allow_1d=allow_1d), torch_device)
        if t.dtype != torch.float32:
            if t.dtype in (torch.float16, torch.bfloat16, torch.float64):
                t = t.float()
            else:
                raise TypeError(
                    f"{name} must hold floating-point numbers (float32, or float16/bfloat16/"
                    f"float64 to be converted), got dtype {t.dtype}"
                )
    else:
        t = _host_to_device(as_float32_matrix(x, name, allow_1d=allow_1d), torch_device)
    if t.ndim == 1 and allow_1d:
        if t.shape[0] > 1 and t.stride(0) != 1:
            raise ValueError(f"{name} must be contiguous; call .contiguous() first")
    elif t.ndim != 2:
        expected = "1-D (one query) or 2-D (a batch)" if allow_1d else "2-D (rows of vectors)"
        raise ValueError(f"{name} must be {expected}, got a tensor of shape {tuple(t.shape)}")
    elif t.shape[0] > 0 and t.shape[1] > 1 and t.stride(1) != 1:
        raise ValueError(
            f"{name} rows must be contiguous (column stride 1) on the GPU; call .contiguous() first"
        )
    return t


def _host_to_device(a: np.ndarray, torch_device: Any) -> Any:
    """One copy of a host float32 array to the GPU (read-only arrays included)."""
    import torch

    if not a.flags.writeable:  # torch.from_numpy warns on read-only memory
        a = np.array(a)
    return torch.from_numpy(a).to(torch_device)


def _device_view(t: Any) -> tuple[int, int]:
    """(data pointer, row stride in floats) of a float32 CUDA matrix, read through
    `__cuda_array_interface__` (strides in bytes, or None for C order)."""
    iface = t.__cuda_array_interface__
    ptr = int(iface["data"][0])
    shape, strides = iface["shape"], iface.get("strides")
    if strides is None or shape[0] <= 1:
        return ptr, int(shape[1])
    return ptr, int(strides[0]) // 4


def topk(
    queries: Any,
    items: Any,
    k: int,
    *,
    metric: str,
    exclude: Any,
    device: Any,
    scratch_bytes: int = 0,
    max_query_tile: int = 0,
) -> TopK:
    """GPU top-k with validated k and metric (see `recfast.topk`). `scratch_bytes` and
    `max_query_tile` override the tiling (0: defaults); tests use them to force many tiles."""
    if _module is None:
        raise RuntimeError(f"recfast's CUDA backend is unavailable: {UNAVAILABLE_REASON}")
    _, index = _parse_device(device)
    cuda_in = [x for x in (queries, items) if is_cuda_tensor(x)]
    if cuda_in:
        return _topk_torch(
            queries, items, k, metric, exclude, index, cuda_in[0], scratch_bytes, max_query_tile
        )
    args = prepare(queries, items, exclude)
    indptr, indices = (
        (None, None) if args.exclude is None else (args.exclude.indptr, args.exclude.indices)
    )
    return args.result(
        *_module.topk_host(
            args.queries,
            args.items,
            k,
            metric,
            indptr,
            indices,
            index or 0,
            scratch_bytes,
            max_query_tile,
        )
    )


def _topk_torch(queries, items, k, metric, exclude, index, ref, scratch_bytes, max_query_tile):
    import torch

    dev = ref.device
    if index is not None and dev.index != index:
        raise ValueError(f"device='cuda:{index}' but the inputs are on {dev}")
    q = _torch_matrix(queries, "queries", dev, allow_1d=True)
    x = _torch_matrix(items, "items", dev)
    check_shapes(q, x)
    single = q.ndim == 1
    if single:
        q = q[None, :]
        exclude = single_query_exclude(exclude)
    b, n, d = int(q.shape[0]), int(x.shape[0]), int(x.shape[1])
    excl = as_exclusion(exclude, b, n)
    indptr, indices = (None, None) if excl is None else (excl.indptr, excl.indices)
    scores = torch.empty((b, k), dtype=torch.float32, device=dev)
    ids = torch.empty((b, k), dtype=torch.int64, device=dev)
    if b > 0:
        qp, qs = _device_view(q)
        xp, xs = _device_view(x) if n > 0 else (0, d)
        stream = torch.cuda.current_stream(dev).cuda_stream
        _module.topk_device(
            qp,
            b,
            qs,
            xp,
            n,
            xs,
            d,
            k,
            metric,
            indptr,
            indices,
            scores.data_ptr(),
            ids.data_ptr(),
            dev.index,
            stream,
            scratch_bytes,
            max_query_tile,
        )
    if single:
        return TopK(scores[0], ids[0])
    return TopK(scores, ids)


def info() -> dict[str, Any]:
    """What the CUDA backend sees: availability, versions, device names."""
    out: dict[str, Any] = {"has_cuda": HAS_CUDA, "reason": UNAVAILABLE_REASON}
    if _module is not None:
        out["runtime_version"] = _module.runtime_version()
        out["driver_version"] = _module.driver_version()
        out["devices"] = [_module.device_name(i) for i in range(_module.device_count())]
    return out


__all__ = ["HAS_CUDA", "UNAVAILABLE_REASON", "DEVICES", "use_cuda", "topk", "info"]
