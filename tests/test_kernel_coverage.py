"""Which kernel sets the tests run, and the test-only emulated AVX-512 top-k level.

The SIMD-level parameters of the tests (the simd_level fixture, available_simd_levels) and the
compressed-scan kernel sets of test_index.py follow what this CPU and build can run, so they
shrink on a machine without AVX-512, or in a build without SIMDe. In CI (environment variable CI
set, as .ci/run does) that must not pass unnoticed: the tests below then require every native
level the CPU's flags announce, plus the emulated sets of a RECFAST_SIMDE_TEST=ON build
("avx512_emulated": the AVX-512 float32 top-k kernels over SIMDe; "avx512_vnni_emulated": the
VNNI compressed-scan kernels over SIMDe). Elsewhere a missing set is a skip, with its reason.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import recfast
from recfast import _core, _native

from helpers import available_simd_levels

EMULATED = "avx512_emulated"
EMULATED_VNNI = "avx512_vnni_emulated"
LEVELS = available_simd_levels()  # the simd_level fixture's parameters


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags as the OS reports them (Linux), or None where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _expected() -> tuple[list[str], list[str]]:
    """(SIMD levels, compressed-scan kernel sets) a full test run covers on this CPU, from its
    flags rather than from recfast's own detection (which a bug could lower)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    flags = _cpu_flags() if x86 else set()
    if flags is None:
        pytest.fail(
            "cannot read the CPU's flags from /proc/cpuinfo: the expected kernel sets are unknown"
        )
    levels, quant = ["generic"], ["generic"]
    if {"avx2", "fma", "f16c"} <= flags:
        levels.append("avx2")
        quant.append("avx2")
        if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
            levels.append("avx512")
            quant.append("avx512")
            if "avx512_vnni" in flags:
                quant.append("avx512_vnni")
        levels.append(EMULATED)  # its other kernels are the avx2 ones: only where avx2 runs
    quant.append(EMULATED_VNNI)
    return levels, quant


def _require(kind: str, have: list[str], want: list[str]) -> None:
    missing = [name for name in want if name not in have]
    if not missing:
        assert have == want, f"{kind}: expected {want}, this build and CPU run {have}"
        return
    why = f"{kind} {missing} not tested (tested: {have})"
    if any(name.endswith("_emulated") for name in missing):
        why += (
            "; the emulated sets need a build with RECFAST_SIMDE_TEST=ON (SIMDe headers: "
            "Debian package libsimde-dev)"
        )
    if os.environ.get("RECFAST_SIMD") and not all(n.endswith("_emulated") for n in missing):
        why += f"; RECFAST_SIMD={os.environ['RECFAST_SIMD']} lowers the native levels"
    if _in_ci():
        pytest.fail("in CI every kernel set this CPU can run must be tested: " + why)
    pytest.skip(why)


def test_every_simd_level_is_tested() -> None:
    """The simd_level fixture covers every native level of this CPU and the emulated one."""
    want, _ = _expected()
    _require("SIMD levels", LEVELS, want)
    assert _core._simd_levels() == LEVELS


def test_every_quant_kernel_set_is_tested() -> None:
    """test_index.py's kernel sets: every native one of this CPU and the emulated VNNI one."""
    _, want = _expected()
    _require("compressed-scan kernel sets", _core._quant_kernels(), want)


def test_levels_are_listed_lowest_first() -> None:
    assert LEVELS[0] == "generic"
    native = [lv for lv in LEVELS if lv != EMULATED]
    assert native == ["generic", "avx2", "avx512"][: len(native)]
    assert native[-1] == _core.detected_simd_level()
    assert LEVELS.count(EMULATED) <= 1 and LEVELS[-1] in (native[-1], EMULATED)


_REFUSE_CHILD = (
    "from recfast import _core\n"
    "try:\n"
    "    _core.set_simd_level('avx512_emulated')\n"
    "except ValueError as e:\n"
    "    print('refused:', e)\n"
    "else:\n"
    "    print('accepted', _core.simd_level())\n"
)


def test_emulated_level_needs_a_simde_build_and_avx2() -> None:
    """Refused, naming what it needs, where it cannot run: in a build without SIMDe, or (its
    other kernels are AVX2 code) below the avx2 level, e.g. with RECFAST_SIMD=generic."""
    if EMULATED not in LEVELS:
        with pytest.raises(ValueError, match="not runnable here.*RECFAST_SIMDE_TEST=ON"):
            _core.set_simd_level(EMULATED)
        assert _core.simd_level() != EMULATED
        return
    env = dict(os.environ, RECFAST_SIMD="generic")
    out = subprocess.run(
        [sys.executable, "-c", _REFUSE_CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:"), out.stdout
    assert "avx2 level" in out.stdout and "generic" in out.stdout


def test_emulated_level_is_only_used_when_set() -> None:
    if EMULATED not in LEVELS:
        pytest.skip("built without RECFAST_SIMDE_TEST=ON")
    before = _core.simd_level()
    assert before != EMULATED and _core.detected_simd_level() != EMULATED
    _core.set_simd_level(EMULATED)
    try:
        assert _core.simd_level() == recfast.simd_level() == EMULATED
        assert _core.detected_simd_level() == before
    finally:
        _core.set_simd_level(before)
    assert _core.simd_level() == before


# --- the emulated kernels compute what the native AVX-512 ones do, bit for bit ---------------

needs_both = pytest.mark.skipif(
    not {"avx512", EMULATED} <= set(LEVELS),
    reason="needs the native avx512 level and a RECFAST_SIMDE_TEST=ON build",
)


def _at(level: str, fn):
    before = _core.simd_level()
    _core.set_simd_level(level)
    try:
        return fn()
    finally:
        _core.set_simd_level(before)


def _assert_bits_equal(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    differ = np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))
    assert differ.size == 0, (
        f"{what}: {differ.size} values differ, first at flat index "
        f"{differ[:5].tolist()}: native {a.ravel()[differ[:5]]}, emulated "
        f"{b.ravel()[differ[:5]]}"
    )


def _data(seed: int, b: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, d)).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return q, x


def _own_kernels(fn):
    """fn() with each level running only its own scan kernels (no AVX2 kernels at avx512)."""
    _native.set_scan_mixing(False)
    try:
        return fn()
    finally:
        _native.set_scan_mixing(True)


def _same_topk(q: np.ndarray, x: np.ndarray, k: int, what: str, **kw) -> None:
    native = _own_kernels(lambda: _at("avx512", lambda: recfast.topk(q, x, k, **kw)))
    emulated = _at(EMULATED, lambda: recfast.topk(q, x, k, **kw))
    np.testing.assert_array_equal(native.ids, emulated.ids, err_msg=what)
    _assert_bits_equal(native.scores, emulated.scores, what)


@needs_both
@pytest.mark.parametrize("metric", ["cosine", "dot"])
# b: the direct (1), broadcast (2..128: one or two query vectors, one or more groups) and packed
# paths, with partial query groups of 12.
@pytest.mark.parametrize("b", [1, 2, 3, 8, 11, 16, 25, 40, 64, 100, 129])
# d: below, at and past the 16 lanes and the 8 x 8 transpose; n: partial 32-item panels.
@pytest.mark.parametrize("d, n", [(1, 50), (7, 33), (16, 31), (17, 97), (64, 200), (133, 65)])
def test_emulated_topk_is_native_avx512_bit_for_bit(metric: str, b: int, d: int, n: int) -> None:
    q, x = _data(b * 1000 + d * 10 + n, b, n, d)
    for k in (1, 10, n):
        _same_topk(q, x, k, f"k={k}", metric=metric)


@needs_both
@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("b", [2, 12, 30])
def test_emulated_topk_special_values_bit_for_bit(metric: str, b: int) -> None:
    """Zero, huge, infinite and NaN rows; exclusions; several threads and item chunks."""
    q, x = _data(b, b, 300, 19)
    x[3] = 0.0
    x[5] = 3e38
    x[7, 4] = np.inf
    x[9, 2] = np.nan
    x[11] = x[12]  # a tie, broken by id
    q[0, 1] = np.inf
    q[-1] = 0.0
    excl = [list(range(i, 300, 7)) for i in range(b)]
    for kw in ({}, {"exclude": excl}, {"num_threads": 2}):
        _same_topk(q, x, 17, f"{kw}", metric=metric, **kw)


@needs_both
def test_emulated_topk_large_threaded_bit_for_bit() -> None:
    """A batch split into several query blocks and item chunks over two threads."""
    q, x = _data(5, 300, 3000, 24)
    _same_topk(q, x, 5, "threaded", metric="cosine", num_threads=2)


@needs_both
@pytest.mark.parametrize("d, n", [(3, 15), (17, 33), (97, 100)])
def test_emulated_dense_scores_bit_for_bit(d: int, n: int) -> None:
    """dense_scores (the packed path's write mode, with and without a bias)."""
    q, x = _data(d + n, 40, n, d)
    rng = np.random.default_rng(1)
    init = rng.standard_normal((40, n)).astype(np.float32)
    bias = rng.standard_normal((1, n)).astype(np.float32)
    for kw in ({}, {"bias": bias}):
        outs = []
        for level in ("avx512", EMULATED):
            out = init.copy()
            _at(level, lambda out=out, kw=kw: _core.dense_scores(q, x, out, 2, **kw))
            outs.append(out)
        _assert_bits_equal(outs[0], outs[1], f"dense_scores {list(kw)}")
