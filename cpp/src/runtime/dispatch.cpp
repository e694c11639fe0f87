// The kernel tables of every family, and the quantized scans' test override (runtime/dispatch.h).
#include "runtime/dispatch.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "quant/kernels.h"
#include "recfast/quant.h"
#include "recfast/topk.h"
#include "rows/row_kernels.h"
#include "scan/kernels.h"

namespace recfast {
namespace {

KernelTable<KernelSet> scan_table() {
  const KernelSet* emulated = nullptr;
#ifdef RECFAST_SIMDE_TEST_KERNEL
  emulated = kernels_avx512_emulated();
#endif
  return {kernels_generic(), kernels_avx2(), kernels_avx512(), emulated};
}

std::atomic<bool> g_scan_mixing{true};  // set_scan_mixing

// At the AVX512 level the VNNI set when the CPU has VNNI: the level (detected, or forced by
// RECFAST_SIMD / set_level, which never raise it above the CPU's) says nothing of VNNI, so the
// CPU itself is asked before vpdpbusd runs. The emulated level takes the AVX2 set, as the
// emulated VNNI set is only ever forced.
KernelTable<QuantKernelSet> quant_table() {
  const QuantKernelSet* avx512 = nullptr;
  if (cpu_has_avx512_vnni()) avx512 = quant_kernels_avx512_vnni();
  if (avx512 == nullptr) avx512 = quant_kernels_avx512();
  return {quant_kernels_generic(), quant_kernels_avx2(), avx512, nullptr};
}

// The score rows have a portable and an AVX2 build only.
KernelTable<RowKernelSet> row_table() {
  return {row_kernels_generic(), row_kernels_avx2(), nullptr, nullptr};
}

std::atomic<const QuantKernelSet*> g_forced_quant{nullptr};  // set_quant_kernel

// The quantized-scan sets this build and CPU can run (detect(): the CPU, lowered by RECFAST_SIMD).
std::vector<const QuantKernelSet*> runnable_quant_kernels() {
  std::vector<const QuantKernelSet*> v{quant_kernels_generic()};
  const SimdLevel top = detect();
  if (top != SimdLevel::Generic) v.push_back(quant_kernels_avx2());
  if (top == SimdLevel::AVX512) {
    v.push_back(quant_kernels_avx512());
    if (cpu_has_avx512_vnni()) v.push_back(quant_kernels_avx512_vnni());
  }
  v.push_back(quant_kernels_vnni_emulated());  // portable code: runs anywhere
  v.erase(std::remove(v.begin(), v.end(), nullptr), v.end());
  return v;
}

}  // namespace

const KernelSet& scan_kernels() {
  static const KernelTable<KernelSet> table = scan_table();
  return pick_kernels(table, active_level());
}

// Where 512-bit operations run as two 256-bit halves (cpu_splits_512bit_ops: AMD Zen 4), the
// AVX2 kernels beat the AVX-512 ones on small batches: with as many FMAs per cycle, they fill
// their lanes with half as many queries (recfast.topk timed at each level side by side, N = 1M,
// d = 128, Zen 4: B = 16 took 54-62 ms with AVX2 and 73-79 ms with AVX-512; from B = 32 on
// AVX-512 is as fast or faster).
// The AVX512 level takes the AVX2 set for those batches on such CPUs: the whole set, so that its
// broadcast and packed paths still score alike (topk.h).
const KernelSet& scan_kernels_for_batch(long long batch) {
  const KernelSet& level_set = scan_kernels();
  if (batch > kTopkNarrowSetMaxQueries || &level_set != kernels_avx512() ||
      !g_scan_mixing.load(std::memory_order_relaxed) || !cpu_splits_512bit_ops())
    return level_set;
  return *kernels_avx2();
}

const char* scan_kernel_name() {
  const KernelSet& level_set = scan_kernels();
  return &scan_kernels_for_batch(1) != &level_set ? "avx512+avx2" : level_set.name;
}

void set_scan_mixing(bool allowed) { g_scan_mixing.store(allowed, std::memory_order_relaxed); }

const QuantKernelSet& quant_kernels() {
  const QuantKernelSet* forced = g_forced_quant.load(std::memory_order_relaxed);
  if (forced != nullptr) return *forced;
  static const KernelTable<QuantKernelSet> table = quant_table();
  return pick_kernels(table, active_level());
}

const RowKernelSet& row_kernels() {
  static const KernelTable<RowKernelSet> table = row_table();
  return pick_kernels(table, active_level());
}

const char* quant_kernel_name() { return quant_kernels().name; }

std::vector<std::string> quant_kernel_names() {
  std::vector<std::string> names;
  for (const QuantKernelSet* k : runnable_quant_kernels()) names.emplace_back(k->name);
  return names;
}

bool set_quant_kernel(const std::string& name) {
  if (name.empty()) {
    g_forced_quant.store(nullptr, std::memory_order_relaxed);
    return true;
  }
  for (const QuantKernelSet* k : runnable_quant_kernels())
    if (name == k->name) {
      g_forced_quant.store(k, std::memory_order_relaxed);
      return true;
    }
  return false;
}

}  // namespace recfast
