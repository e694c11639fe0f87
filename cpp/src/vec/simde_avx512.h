// Test-only (CMake option RECFAST_SIMDE_TEST): the AVX-512 intrinsics over SIMDe
// (https://github.com/simd-everywhere/simde), with native names, for kernel files compiled
// without -m flags so that their AVX-512 code runs on any CPU. On top of SIMDe 0.7.4 (Debian's
// libsimde-dev) it supplies what that version lacks, makes the fused multiply-add fused, and
// makes aligned loads and stores check their alignment, so that an emulated kernel gives the
// native one's results bit for bit and fails where the native one would crash.
// Include it first, in place of <immintrin.h>; requires <cstdint> and "vec/scalar_helpers.h".
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

// SIMDe 0.7.4 lacks these four AVX-512 intrinsics; lane-by-lane definitions from Intel's
// descriptions (int32 -> float rounds to nearest even, as vcvtdq2ps under the default MXCSR;
// binary16 -> binary32 is exact).
static inline simde__m512 recfast_emu_cvtepi32_ps(simde__m512i a) {
  alignas(64) int32_t i[16];
  alignas(64) float f[16];
  simde_mm512_store_si512(i, a);
  for (int k = 0; k < 16; ++k) f[k] = static_cast<float>(i[k]);
  return simde_mm512_load_ps(f);
}
static inline simde__m512i recfast_emu_cvtepi8_epi32(simde__m128i a) {
  alignas(16) int8_t b[16];
  alignas(64) int32_t i[16];
  simde_mm_store_si128(reinterpret_cast<simde__m128i*>(b), a);
  for (int k = 0; k < 16; ++k) i[k] = b[k];
  return simde_mm512_load_si512(i);
}
static inline simde__m512 recfast_emu_cvtph_ps(simde__m256i a) {
  alignas(32) uint16_t h[16];
  alignas(64) float f[16];
  simde_mm256_store_si256(reinterpret_cast<simde__m256i*>(h), a);
  for (int k = 0; k < 16; ++k) f[k] = recfast::half_to_float(h[k]);
  return simde_mm512_load_ps(f);
}
// Masked-off bytes are zero and never read (as the instruction, which does not fault on them).
static inline simde__m512i recfast_emu_maskz_loadu_epi8(uint64_t k, const void* p) {
  alignas(64) int8_t b[64];
  const int8_t* s = static_cast<const int8_t*>(p);
  for (int i = 0; i < 64; ++i) b[i] = (k >> i) & 1u ? s[i] : 0;
  return simde_mm512_load_si512(b);
}
#define _mm512_cvtepi32_ps(a) recfast_emu_cvtepi32_ps(a)
#define _mm512_cvtepi8_epi32(a) recfast_emu_cvtepi8_epi32(a)
#define _mm512_cvtph_ps(a) recfast_emu_cvtph_ps(a)
#define _mm512_maskz_loadu_epi8(k, p) recfast_emu_maskz_loadu_epi8(k, p)

// Without native FMA, SIMDe's fmadd is a multiply and an add, rounded twice: here it is fused,
// rounded once as vfmadd does (std::fma: glibc runs the FMA instruction where the CPU has it).
static inline simde__m512 recfast_emu_fmadd_ps(simde__m512 a, simde__m512 b, simde__m512 c) {
  alignas(64) float x[16], y[16], z[16];
  simde_mm512_store_ps(x, a);
  simde_mm512_store_ps(y, b);
  simde_mm512_store_ps(z, c);
  for (int k = 0; k < 16; ++k) x[k] = std::fma(x[k], y[k], z[k]);
  return simde_mm512_load_ps(x);
}
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps(a, b, c) recfast_emu_fmadd_ps(a, b, c)

// The hardware's aligned loads and stores fault on a misaligned address, SIMDe's do not: check
// the alignment here, so that this build fails (aborts) where the native one would crash.
template <class T>
static inline T* recfast_emu_aligned(T* p, uintptr_t a) {
  if (reinterpret_cast<uintptr_t>(p) % a != 0) std::abort();
  return p;
}
#undef _mm512_load_si512
#undef _mm512_store_si512
#undef _mm512_load_ps
#undef _mm512_store_ps
#undef _mm256_load_si256
#undef _mm256_load_ps
#undef _mm256_store_ps
#define _mm512_load_si512(p) simde_mm512_load_si512(recfast_emu_aligned(p, 64))
#define _mm512_store_si512(p, a) simde_mm512_store_si512(recfast_emu_aligned(p, 64), a)
#define _mm512_load_ps(p) simde_mm512_load_ps(recfast_emu_aligned(p, 64))
#define _mm512_store_ps(p, a) simde_mm512_store_ps(recfast_emu_aligned(p, 64), a)
#define _mm256_load_si256(p) simde_mm256_load_si256(recfast_emu_aligned(p, 32))
#define _mm256_load_ps(p) simde_mm256_load_ps(recfast_emu_aligned(p, 32))
#define _mm256_store_ps(p, a) simde_mm256_store_ps(recfast_emu_aligned(p, 32), a)
