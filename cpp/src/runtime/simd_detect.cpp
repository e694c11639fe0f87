// Run-time instruction-set detection: cpuid for the CPU, xgetbv for what the OS saves.
#include "recfast/simd.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define RECFAST_X86 1
#endif

namespace recfast {
namespace {

#ifdef RECFAST_X86
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

SimdLevel cpu_level() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return SimdLevel::Generic;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  const bool f16c = c & (1u << 29);  // every AVX2 CPU has it; the quantized scans use it
  if (!(fma && osxsave && avx && f16c)) return SimdLevel::Generic;
  const unsigned long long xcr0 = xgetbv0();
  if ((xcr0 & 0x6) != 0x6) return SimdLevel::Generic;  // XMM and YMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return SimdLevel::Generic;
  const bool avx2 = b & (1u << 5);
  if (!avx2) return SimdLevel::Generic;
  const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  if (f && dq && bw && vl && (xcr0 & 0xE0) == 0xE0) return SimdLevel::AVX512;  // opmask, ZMM
  return SimdLevel::AVX2;
}

// AMD family 0x19 (Zen 4) runs each 512-bit op as two 256-bit halves.
bool cpu_split_512() {
  unsigned a, b, c, d;
  if (cpu_level() != SimdLevel::AVX512) return false;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  const bool amd = b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;  // "AuthenticAMD"
  if (!amd || !__get_cpuid(1, &a, &b, &c, &d)) return false;
  const unsigned base = (a >> 8) & 0xF, ext = (a >> 20) & 0xFF;
  return (base == 0xF ? base + ext : base) == 0x19;
}

bool cpu_vnni() {
  unsigned a, b, c, d;
  if (cpu_level() != SimdLevel::AVX512) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return c & (1u << 11);  // AVX512_VNNI
}
#else
SimdLevel cpu_level() { return SimdLevel::Generic; }
bool cpu_split_512() { return false; }
bool cpu_vnni() { return false; }
#endif

SimdLevel env_level(SimdLevel cpu) {
  const char* env = std::getenv("RECFAST_SIMD");
  if (env == nullptr || *env == '\0') return cpu;
  SimdLevel want = cpu;
  if (std::strcmp(env, "generic") == 0)
    want = SimdLevel::Generic;
  else if (std::strcmp(env, "avx2") == 0)
    want = SimdLevel::AVX2;
  else if (std::strcmp(env, "avx512") == 0)
    want = SimdLevel::AVX512;
  return static_cast<int>(want) < static_cast<int>(cpu) ? want : cpu;
}

std::atomic<int> g_active{-1};

}  // namespace

SimdLevel detect_cpu() {
  static const SimdLevel level = cpu_level();
  return level;
}

SimdLevel detect() {
  static const SimdLevel level = env_level(detect_cpu());
  return level;
}

SimdLevel active_level() {
  int v = g_active.load(std::memory_order_relaxed);
  return v < 0 ? detect() : static_cast<SimdLevel>(v);
}

std::vector<SimdLevel> runnable_levels() {
  std::vector<SimdLevel> v;
  const SimdLevel top = detect();
  for (SimdLevel l : {SimdLevel::Generic, SimdLevel::AVX2, SimdLevel::AVX512})
    if (static_cast<int>(l) <= static_cast<int>(top)) v.push_back(l);
#ifdef RECFAST_SIMDE_TEST_KERNEL
  // Its top-k kernels run anywhere, but at this level the other kernels (score_rows, the
  // quantized scans) take their AVX2 code: offered only where that runs, and RECFAST_SIMD allows.
  if (top != SimdLevel::Generic) v.push_back(SimdLevel::AVX512Emulated);
#endif
  return v;
}

bool set_level(SimdLevel level) {
  const std::vector<SimdLevel> ok = runnable_levels();
  if (std::find(ok.begin(), ok.end(), level) == ok.end()) return false;
  g_active.store(static_cast<int>(level), std::memory_order_relaxed);
  return true;
}

bool cpu_has_avx512_vnni() {
  static const bool has = cpu_vnni();
  return has;
}

bool cpu_splits_512bit_ops() {
  static const bool split = cpu_split_512();
  return split;
}

const char* level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::AVX512Emulated:
      return "avx512_emulated";
    case SimdLevel::AVX512:
      return "avx512";
    case SimdLevel::AVX2:
      return "avx2";
    default:
      return "generic";
  }
}

}  // namespace recfast
