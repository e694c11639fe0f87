"""Quantized storage: float16 / int8 codes of float32 rows and the per-row terms that certify
how far a quantized score can be from the float32 one.

int8: codes in [-127, 127] with a float32 scale per row (symmetric, scale = max|x| / 127).
float16: binary16 codes of x / 2**e with a power-of-two scale 2**e per row (any finite float32
magnitude fits). Per row the index also stores err >= |x - x~| and norm >= |x| (both rounded
up to float32), from which the scan's certified radius is computed (docs/item-index.md).
"""

from __future__ import annotations

import numpy as np

STORAGES = ("float32", "float16", "int8")
# Rows quantized per block (bounds the float64 temporaries).
_CHUNK_ROWS = 1 << 15
# The largest |q'| * |x| for which the quantized bound is computed; beyond, the float32 path.
MAX_SCORE_MAGNITUDE = 1e36


def _round_up_f32(v: np.ndarray) -> np.ndarray:
    """The smallest float32 >= each (non-negative, finite) float64 value."""
    f = v.astype(np.float32)
    low = f.astype(np.float64) < v
    f[low] = np.nextafter(f[low], np.float32(np.inf))
    return f


def _row_norms_up(x64: np.ndarray) -> np.ndarray:
    return _round_up_f32(np.sqrt(np.einsum("ij,ij->i", x64, x64)) * (1.0 + 1e-12))


def quantize(x: np.ndarray, storage: str) -> dict[str, np.ndarray]:
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
