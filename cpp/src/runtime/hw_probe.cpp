// The machine-rate probes of recfast/hw_probe.h. The FMA and conversion loops are inline
// assembly, so this file needs no instruction-set flags: a loop runs only after the CPU check
// (recfast/simd.h) says its width is supported.
#include "recfast/hw_probe.h"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "recfast/simd.h"

namespace recfast {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs body(t) on `threads` threads at once; the wall time of the slowest.
template <class Body>
double timed_on_threads(int threads, Body body) {
  std::vector<std::thread> pool;
  const auto t0 = Clock::now();
  for (int t = 1; t < threads; ++t) pool.emplace_back([&, t] { body(t); });
  body(0);
  for (auto& th : pool) th.join();
  return seconds_since(t0);
}

#if defined(__x86_64__) && !defined(RECFAST_NO_X86_KERNELS)
// 12 independent FMA chains (more than latency x ports on current cores) per iteration.
// clang-format off
#define RF_FMA12(R)                                                                           \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "1\n vfmadd231ps %%" R "14, %%" R "15, %%" R "2\n"   \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "3\n vfmadd231ps %%" R "14, %%" R "15, %%" R "4\n"   \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "5\n vfmadd231ps %%" R "14, %%" R "15, %%" R "6\n"   \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "7\n vfmadd231ps %%" R "14, %%" R "15, %%" R "8\n"   \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "9\n vfmadd231ps %%" R "14, %%" R "15, %%" R "10\n"  \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "11\n vfmadd231ps %%" R "14, %%" R "15, %%" R "12\n"
// clang-format on
#define RF_CLOBBERS                                                                         \
  "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
      "xmm12", "xmm14", "xmm15", "cc"

void fma_loop_256(long iters) {
  __asm__ volatile(
      "vxorps %%ymm14, %%ymm14, %%ymm14\n vxorps %%ymm15, %%ymm15, %%ymm15\n"
      "1:\n" RF_FMA12("ymm") "dec %0\n jnz 1b\n vzeroupper\n"
      : "+r"(iters)
      :
      : RF_CLOBBERS);
}

void fma_loop_512(long iters) {
  __asm__ volatile(
      "vpxord %%zmm14, %%zmm14, %%zmm14\n vpxord %%zmm15, %%zmm15, %%zmm15\n"
      "1:\n" RF_FMA12("zmm") "dec %0\n jnz 1b\n vzeroupper\n"
      : "+r"(iters)
      :
      : RF_CLOBBERS);
}

// 12 conversions of 8 halves each per iteration, from a line that stays in L1.
void f16_loop(long iters, const void* src) {
  __asm__ volatile(
      "1:\n"
      "vcvtph2ps (%1), %%ymm1\n vcvtph2ps 16(%1), %%ymm2\n vcvtph2ps 32(%1), %%ymm3\n"
      "vcvtph2ps 48(%1), %%ymm4\n vcvtph2ps (%1), %%ymm5\n vcvtph2ps 16(%1), %%ymm6\n"
      "vcvtph2ps 32(%1), %%ymm7\n vcvtph2ps 48(%1), %%ymm8\n vcvtph2ps (%1), %%ymm9\n"
      "vcvtph2ps 16(%1), %%ymm10\n vcvtph2ps 32(%1), %%ymm11\n vcvtph2ps 48(%1), %%ymm12\n"
      "dec %0\n jnz 1b\n vzeroupper\n"
      : "+r"(iters)
      : "r"(src)
      : RF_CLOBBERS, "memory");
}
#endif

// Per-thread loop iterations: about 30 ms at 3-4 GHz.
constexpr long kProbeIters = 10'000'000;

}  // namespace

double probe_read_gbs(size_t bytes, int threads, int reps) {
  if (threads < 1) threads = 1;
  bytes = bytes / (static_cast<size_t>(threads) * 256) * (static_cast<size_t>(threads) * 256);
  if (bytes == 0) return 0.0;
  auto* p = static_cast<uint64_t*>(std::aligned_alloc(4096, bytes));
  if (p == nullptr) return 0.0;
  std::memset(p, 1, bytes);
  const size_t words = bytes / sizeof(uint64_t), share = words / threads;
  std::vector<uint64_t> sink(static_cast<size_t>(threads));
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double s = timed_on_threads(threads, [&](int t) {
      const uint64_t* a = p + share * t;
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // the compiler vectorizes these sums
      for (size_t i = 0; i + 4 <= share; i += 4) {
        s0 += a[i];
        s1 += a[i + 1];
        s2 += a[i + 2];
        s3 += a[i + 3];
      }
      sink[static_cast<size_t>(t)] = s0 + s1 + s2 + s3;
    });
    if (s < best) best = s;
  }
  std::free(p);
  return static_cast<double>(bytes) / best / 1e9;
}

double probe_fma_gflops(int vector_bits, int threads) {
#if defined(__x86_64__) && !defined(RECFAST_NO_X86_KERNELS)
  if (threads < 1) threads = 1;
  const SimdLevel cpu = detect_cpu();
  void (*loop)(long) = nullptr;
  if (vector_bits == 256 && cpu >= SimdLevel::AVX2) loop = fma_loop_256;
  if (vector_bits == 512 && cpu == SimdLevel::AVX512) loop = fma_loop_512;
  if (loop == nullptr) return 0.0;
  loop(kProbeIters / 10);  // wake the vector units (and the clock) first
  const double s = timed_on_threads(threads, [&](int) { loop(kProbeIters); });
  const double lanes = vector_bits / 32;
  return 12.0 * kProbeIters * threads * lanes * 2.0 / s / 1e9;
#else
  (void)vector_bits;
  (void)threads;
  return 0.0;
#endif
}

double probe_f16_gfloats(int threads) {
#if defined(__x86_64__) && !defined(RECFAST_NO_X86_KERNELS)
  if (threads < 1) threads = 1;
  if (detect_cpu() < SimdLevel::AVX2) return 0.0;  // F16C comes with the AVX2 level
  alignas(64) static const uint16_t halves[32] = {};
  f16_loop(kProbeIters / 10, halves);
  const double s = timed_on_threads(threads, [&](int) { f16_loop(kProbeIters, halves); });
  return 12.0 * 8.0 * kProbeIters * threads / s / 1e9;
#else
  (void)threads;
  return 0.0;
#endif
}

}  // namespace recfast
