// AVX2 + FMA kernels (compiled with -mavx2 -mfma -mf16c; used only when the CPU has all three).
#include <immintrin.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "recfast/heap.h"
#include "scan/kernels.h"
#include "vec/scalar_helpers.h"

namespace recfast {
namespace isa_avx2 {

#include "vec/vec_avx2.h"

#include "scan/kernel_impl.h"

// 6 x 16 register tile: 12 accumulators + 2 item vectors + 1 broadcast of the 16 registers.
constexpr int kMR = 6, kNV = 2;
using P = Packed<kMR, kNV>;

// The broadcast path: 12 items x 1 query vector, or 6 x 2 (12 accumulators either way).
static void scan_broadcast(const ScanTask& t) { broadcast_by_batch<12, 6>(t); }

const KernelSet kSet = {"avx2",   kMR,           &scratch_floats_impl<kMR, kNV>,
                        &P::scan, &Direct::scan, &scan_broadcast};

}  // namespace isa_avx2

const KernelSet* kernels_avx2() { return &isa_avx2::kSet; }

}  // namespace recfast
