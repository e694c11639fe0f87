"""The machine-rate probes behind the benchmarks' floor column (recfast._native.hw_floors)."""

from __future__ import annotations

import pytest

from recfast import _native


def test_rates_are_measured_for_what_the_cpu_has() -> None:
    f = _native.hw_floors(16, 2)
    assert f["threads"] == 2
    assert f["read_gbs"] > 0.1
    cpu = _native.simd_levels()
    if "avx2" in cpu:
        # Two threads issue at least one thread's FMAs (well within noise on a busy host).
        assert f["fma256_gflops_1thread"] > 1 and f["fma256_gflops"] > 1
        assert f["f16_gfloats"] > 0.1
    if "avx512" in cpu:
        assert f["fma512_gflops_1thread"] > 1 and f["fma512_gflops"] > 1
    with open("/proc/cpuinfo") as info:
        flags = next((line.split() for line in info if line.startswith("flags")), [])
    if "avx512f" not in flags:  # a 512-bit rate only where the CPU runs 512-bit FMAs
        assert f["fma512_gflops"] == 0.0 and f["fma512_gflops_1thread"] == 0.0


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="read_mib"):
        _native.hw_floors(0, 1)
    with pytest.raises(ValueError, match="num_threads"):
        _native.hw_floors(16, 0)
