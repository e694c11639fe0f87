// Instruction-set levels and their run-time detection.
#pragma once

namespace recfast {

// AVX2 means AVX2 + FMA + F16C; AVX512 means F, DQ, BW and VL on top of it.
enum class SimdLevel { Generic = 0, AVX2 = 1, AVX512 = 2 };

// The best level this CPU and OS support (cpuid + xgetbv), lowered by the environment variable
// RECFAST_SIMD=generic|avx2|avx512 (a level above what the CPU has is ignored). Detected once.
SimdLevel detect();

// The level the compute kernels use; equal to detect() unless set_level() lowered it.
SimdLevel active_level();

// Force a level at or below detect(); returns false (and changes nothing) when it is above.
bool set_level(SimdLevel level);

const char* level_name(SimdLevel level);

// Whether the CPU has AVX512_VNNI (vpdpbusd) with the AVX512 level's features and OS support;
// independent of RECFAST_SIMD and set_level (callers check the level first). Detected once.
bool cpu_has_avx512_vnni();

}  // namespace recfast
