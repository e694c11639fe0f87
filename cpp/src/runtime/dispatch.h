// Kernel dispatch: which compiled kernel set each family runs (the top-k scan, the quantized
// scans, the score rows). One rule for all of them: the active SIMD level (recfast/simd.h: the
// CPU's, lowered by RECFAST_SIMD or set_level) takes the best set compiled in at or below it.
// The test-only level AVX512Emulated takes a family's emulated set when it has one, else its
// AVX2 set. The quantized scans may also be forced to one set (set_quant_kernel, for tests).
#pragma once

#include "recfast/simd.h"

namespace recfast {

struct KernelSet;       // scan/kernels.h
struct QuantKernelSet;  // quant/kernels.h
struct RowKernelSet;    // rows/row_kernels.h

// A family's sets, one per level; nullptr where not compiled in (or, for avx512, not runnable
// on this CPU).
template <class Set>
struct KernelTable {
  const Set* generic;
  const Set* avx2;
  const Set* avx512;
  const Set* avx512_emulated;
};

// The set of `table` that runs at `level` (the rule above).
template <class Set>
const Set& pick_kernels(const KernelTable<Set>& table, SimdLevel level) {
  const Set* k = nullptr;
  if (level == SimdLevel::AVX512) k = table.avx512;
  if (level == SimdLevel::AVX512Emulated) k = table.avx512_emulated;
  if (k == nullptr && level != SimdLevel::Generic) k = table.avx2;
  if (k == nullptr) k = table.generic;
  return *k;
}

// The sets each family runs now (at active_level()).
const KernelSet& scan_kernels();
// The scan's set for a batch of `batch` queries (TopkParams::batch_size): scan_kernels(), except
// that on CPUs that split 512-bit operations the AVX512 level runs batches of up to
// kTopkNarrowSetMaxQueries (recfast/topk.h) queries with the AVX2 set (measured faster there;
// dispatch.cpp).
const KernelSet& scan_kernels_for_batch(long long batch);
const QuantKernelSet& quant_kernels();  // the forced set when set_quant_kernel chose one
const RowKernelSet& row_kernels();

}  // namespace recfast
