"""The scan's kernel choice by batch size (runtime/dispatch.cpp): on CPUs that split 512-bit
operations the AVX-512 level runs batches of up to 16 queries with the AVX2 set; the broadcast
and packed paths of a batch always come from one set, so that they keep scoring bit for bit
alike, and the set follows the user's batch size, as the path does."""

from __future__ import annotations

import numpy as np
import pytest

import recfast
from recfast import _core, _native

from helpers import available_simd_levels

HAS_AVX512 = "avx512" in available_simd_levels()


def _at(level: str, mixing: bool, fn):
    before = _core.simd_level()
    _core.set_simd_level(level)
    _native.set_scan_mixing(mixing)
    try:
        return fn()
    finally:
        _native.set_scan_mixing(True)
        _core.set_simd_level(before)


def _cpu_splits_512() -> bool:
    with open("/proc/cpuinfo") as f:
        info = f.read()
    family = next(
        (int(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu family")), 0
    )
    return "AuthenticAMD" in info and family == 0x19 and "avx512f" in info


@pytest.mark.parametrize("level", available_simd_levels())
def test_scan_kernel_names_what_runs(level: str) -> None:
    name = _at(level, True, _native.scan_kernel)
    own = _at(level, False, _native.scan_kernel)
    assert own == level
    if level == "avx512" and _cpu_splits_512():
        assert name == "avx512+avx2"
    else:
        assert name == level


@pytest.mark.skipif(not HAS_AVX512, reason="needs an AVX-512 CPU")
@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("b", [1, 5, 8, 9, 16, 17, 33, 64, 65, 128, 129, 200])
@pytest.mark.parametrize("d", [3, 17, 128])
def test_mixed_and_own_avx512_sets_agree(metric: str, b: int, d: int) -> None:
    """Batches of up to 16 queries are the AVX2 set's in the mixed set, bit for bit; larger ones
    the AVX-512 set's in both."""
    rng = np.random.default_rng(b * 100 + d)
    x = rng.standard_normal((3001, d)).astype(np.float32)
    q = rng.standard_normal((b, d)).astype(np.float32)
    x[7] = 0.0
    x[11] = x[12]

    def run():
        return recfast.topk(q, x, 10, metric=metric)

    mixed = _at("avx512", True, run)
    own = _at("avx512", False, run)
    avx2 = _at("avx2", True, run)
    mixed_here = _at("avx512", True, _native.scan_kernel) == "avx512+avx2"
    same_as = avx2 if (b <= 16 and mixed_here) else own
    np.testing.assert_array_equal(mixed.ids, same_as.ids)
    np.testing.assert_array_equal(mixed.scores.view(np.uint32), same_as.scores.view(np.uint32))
    # Against the other set: the same items up to float32 rounding.
    np.testing.assert_allclose(mixed.scores, own.scores, rtol=1e-5, atol=1e-5 * np.sqrt(d))


@pytest.mark.parametrize("level", available_simd_levels())
@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("b", [2, 3, 5, 8, 40])
def test_broadcast_and_packed_paths_score_alike(level: str, metric: str, b: int) -> None:
    """A query scored in a batch of 2..128 (broadcast) and of 129+ (packed) gets the same bits,
    in one kernel set: both sum in order along d (batches of 2 to 8 once took the direct path,
    whose sums are reduced across lanes). The ItemIndex re-scoring relies on it."""
    rng = np.random.default_rng(b)
    x = rng.standard_normal((2000, 37)).astype(np.float32)
    q = rng.standard_normal((b, 37)).astype(np.float32)
    x[5] = 0.0
    reps = 129 // b + 1  # a packed batch

    def run():
        small = recfast.topk(q, x, 7, metric=metric)  # broadcast path
        big = recfast.topk(np.repeat(q, reps, axis=0), x, 7, metric=metric)  # packed path
        return small, big

    small, big = _at(level, False, run)
    np.testing.assert_array_equal(small.ids, big.ids[::reps])
    np.testing.assert_array_equal(small.scores.view(np.uint32), big.scores[::reps].view(np.uint32))
