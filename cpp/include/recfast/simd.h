// Instruction-set levels and their run-time detection.
#pragma once

#include <vector>

namespace recfast {

// AVX2 means AVX2 + FMA + F16C; AVX512 means F, DQ, BW and VL on top of it.
// AVX512Emulated is test-only (builds with RECFAST_SIMDE_TEST=ON): the AVX-512 float32 top-k
// kernels compiled over SIMDe's portable AVX-512 (kernel_avx512_simde.cpp), every other kernel
// as at AVX2, so it runs where AVX2 does. It is never detected and not ordered with the others:
// only set_level() selects it.
enum class SimdLevel { Generic = 0, AVX2 = 1, AVX512 = 2, AVX512Emulated = 3 };

// The best level this CPU and OS support (cpuid + xgetbv), lowered by the environment variable
// RECFAST_SIMD=generic|avx2|avx512 (a level above what the CPU has is ignored). Detected once.
SimdLevel detect();

// The best level of the CPU and OS alone, whatever RECFAST_SIMD says (hw_probe.h).
SimdLevel detect_cpu();

// The level the compute kernels use; equal to detect() unless set_level() changed it.
SimdLevel active_level();

// Force a level at or below detect(), or AVX512Emulated where runnable_levels() has it; returns
// false (and changes nothing) otherwise.
bool set_level(SimdLevel level);

// The levels set_level accepts: Generic up to detect(), then AVX512Emulated when it is built
// and detect() is at least AVX2.
std::vector<SimdLevel> runnable_levels();

const char* level_name(SimdLevel level);

// Whether the CPU has AVX512_VNNI (vpdpbusd) with the AVX512 level's features and OS support;
// independent of RECFAST_SIMD and set_level (callers check the level first). Detected once.
bool cpu_has_avx512_vnni();

// Whether the CPU has AVX-512 but executes each 512-bit operation as two 256-bit halves
// (AMD Zen 4): there the narrower kernels win on some paths (runtime/dispatch.h). Detected once.
bool cpu_splits_512bit_ops();

}  // namespace recfast
