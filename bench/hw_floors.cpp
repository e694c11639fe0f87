// The machine's floors that bound the ItemIndex scans (x86-64 with AVX2 + FMA):
//   1. streaming read rate of T threads over a buffer, on 4 KiB pages and on transparent huge
//      pages (what B = 1 scans approach: int8 reads 1 byte per dimension, float16 2);
//   2. issue rate of the AVX2 integer multiplies the int8 kernels use (vpmaddubsw, vpmaddwd),
//      alone and mixed with the adds and broadcasts around them, in cycles per op, taking
//      vfmadd231ps at 2 per cycle as the clock reference (what B = 1024 int8 scans approach);
//   3. the float32 FMA rate with 256- and 512-bit vectors, on 1 and all threads, and the float16
//      conversion rate (the probes of cpp/src/runtime/hw_probe.cpp, which `python -m
//      recfast.bench` also runs for its floor column): the compute floor of float32 scans is
//      2 B N d flops at the best of these rates.
//
//   bash bench/hw_floors.sh            (builds this file and runs it)
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <immintrin.h>

#include "recfast/hw_probe.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best of `reps` passes of `threads` threads each summing its share of p[0, bytes).
double read_gbs(const char* p, size_t bytes, int threads, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    std::vector<std::thread> pool;
    std::vector<long long> sink(static_cast<size_t>(threads));
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const size_t a = bytes / threads * t, b = bytes / threads * (t + 1);
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        for (size_t i = a; i + 128 <= b; i += 128) {
          s0 = _mm256_add_epi8(s0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
          s1 = _mm256_add_epi8(s1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
          s2 = _mm256_add_epi8(s2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
          s3 = _mm256_add_epi8(s3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
        }
        const __m256i s = _mm256_add_epi8(_mm256_add_epi8(s0, s1), _mm256_add_epi8(s2, s3));
        sink[static_cast<size_t>(t)] = _mm256_extract_epi64(s, 0);
      });
    for (auto& th : pool) th.join();
    const double s = seconds_since(t0);
    if (s < best) best = s;
  }
  return static_cast<double>(bytes) / best / 1e9;
}

void report_read_rate(size_t mib, int threads) {
  const size_t bytes = mib << 20;
  for (int huge = 0; huge < 2; ++huge) {
    char* p = static_cast<char*>(std::aligned_alloc(2u << 20, bytes));
    if (p == nullptr) return;
    madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    std::memset(p, 1, bytes);
    std::printf("read %zu MiB, %d threads, %s: %.1f GB/s (best of 8)\n", mib, threads,
                huge ? "huge pages" : "4 KiB pages", read_gbs(p, bytes, threads, 8));
    std::free(p);
  }
}

// 12 independent ops per iteration into ymm1..ymm12 from ymm14, ymm15 (and broadcasts from
// `mem`); returns seconds for `iters` iterations.
#define RF_CLOBBER                                                                          \
  "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
      "xmm12", "xmm14", "xmm15"
#define RF_LOOP(body)                                                                    \
  [](long iters, const int* mem) {                                                       \
    const auto t0 = std::chrono::steady_clock::now();                                    \
    __asm__ volatile(                                                                    \
        "vxorps %%ymm14, %%ymm14, %%ymm14\n vxorps %%ymm15, %%ymm15, %%ymm15\n1:\n" body \
        "dec %0\n jnz 1b\n"                                                              \
        : "+r"(iters)                                                                    \
        : "r"(mem)                                                                       \
        : RF_CLOBBER);                                                                   \
    return seconds_since(t0);                                                            \
  }
#define RF_OP(op, r) #op " %%ymm14, %%ymm15, %%ymm" #r "\n"
#define RF_BC(r, off) "vpbroadcastd " #off "(%1), %%ymm" #r "\n"
// clang-format off
#define RF_SAME12(op)                                                              \
  RF_OP(op, 1) RF_OP(op, 2) RF_OP(op, 3) RF_OP(op, 4)  RF_OP(op, 5)  RF_OP(op, 6)  \
  RF_OP(op, 7) RF_OP(op, 8) RF_OP(op, 9) RF_OP(op, 10) RF_OP(op, 11) RF_OP(op, 12)
// clang-format on

void report_issue_rates() {
  alignas(64) static int mem[16] = {};
  const long iters = 100000000;
  auto fma = RF_LOOP(RF_SAME12(vfmadd231ps));
  auto mub = RF_LOOP(RF_SAME12(vpmaddubsw));
  auto mwd = RF_LOOP(RF_SAME12(vpmaddwd));
  // clang-format off
  auto mub_mwd = RF_LOOP(
      RF_OP(vpmaddubsw, 1) RF_OP(vpmaddwd, 2)  RF_OP(vpmaddubsw, 3)  RF_OP(vpmaddwd, 4)
      RF_OP(vpmaddubsw, 5) RF_OP(vpmaddwd, 6)  RF_OP(vpmaddubsw, 7)  RF_OP(vpmaddwd, 8)
      RF_OP(vpmaddubsw, 9) RF_OP(vpmaddwd, 10) RF_OP(vpmaddubsw, 11) RF_OP(vpmaddwd, 12));
  auto mub_add = RF_LOOP(
      RF_OP(vpmaddubsw, 1) RF_OP(vpaddd, 2)  RF_OP(vpmaddubsw, 3)  RF_OP(vpaddw, 4)
      RF_OP(vpmaddubsw, 5) RF_OP(vpaddd, 6)  RF_OP(vpmaddubsw, 7)  RF_OP(vpaddw, 8)
      RF_OP(vpmaddubsw, 9) RF_OP(vpaddd, 10) RF_OP(vpmaddubsw, 11) RF_OP(vpaddw, 12));
  auto mub_bc = RF_LOOP(
      RF_OP(vpmaddubsw, 1) RF_BC(2, 0)   RF_OP(vpmaddubsw, 3)  RF_BC(4, 4)
      RF_OP(vpmaddubsw, 5) RF_BC(6, 8)   RF_OP(vpmaddubsw, 7)  RF_BC(8, 12)
      RF_OP(vpmaddubsw, 9) RF_BC(10, 16) RF_OP(vpmaddubsw, 11) RF_BC(12, 20));
  // clang-format on
  const double cycle = fma(iters, mem) / (iters * 12.0) * 2.0;  // FMA: 2 per cycle
  auto per_op = [&](double s) { return s / (iters * 12.0) / cycle; };
  std::printf("clock (vfmadd231ps at 2 per cycle): %.2f GHz\n", 1.0 / cycle / 1e9);
  std::printf("cycles per op: vpmaddubsw %.2f, vpmaddwd %.2f, the two alternating %.2f\n",
              per_op(mub(iters, mem)), per_op(mwd(iters, mem)), per_op(mub_mwd(iters, mem)));
  std::printf("cycles per op: vpmaddubsw with vpaddd/vpaddw %.2f, with vpbroadcastd %.2f\n",
              per_op(mub_add(iters, mem)), per_op(mub_bc(iters, mem)));
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 256;
  const int threads =
      argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::thread::hardware_concurrency());
  report_read_rate(mib, threads);
  report_issue_rates();
  for (int bits : {256, 512}) {
    const double one = recfast::probe_fma_gflops(bits, 1);
    if (one == 0.0) {
      std::printf("float32 FMA, %d-bit vectors: not on this CPU\n", bits);
      continue;
    }
    std::printf("float32 FMA, %d-bit vectors: %.0f GFLOP/s on 1 thread, %.0f on %d threads\n", bits,
                one, recfast::probe_fma_gflops(bits, threads), threads);
  }
  std::printf("float16 -> float32 conversion (vcvtph2ps): %.1f G floats/s on %d threads\n",
              recfast::probe_f16_gfloats(threads), threads);
  return 0;
}
