// AVX-512 kernels (compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma; used only when
// the CPU and OS support AVX-512).
#include <immintrin.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "recfast/heap.h"
#include "scan/kernels.h"
#include "vec/scalar_helpers.h"

namespace recfast {
namespace isa_avx512 {

#include "vec/vec_avx512.h"

#include "scan/kernel_impl.h"

// 12 x 32 register tile: 24 accumulators + 2 item vectors + 1 broadcast of the 32 registers.
constexpr int kMR = 12, kNV = 2;
using P = Packed<kMR, kNV>;

// The broadcast path: 24 items x 1 query vector, or 12 x 2 (24 accumulators either way).
static void scan_broadcast(const ScanTask& t) { broadcast_by_batch<24, 12>(t); }

const KernelSet kSet = {"avx512", kMR,           &scratch_floats_impl<kMR, kNV>,
                        &P::scan, &Direct::scan, &scan_broadcast};

}  // namespace isa_avx512

const KernelSet* kernels_avx512() { return &isa_avx512::kSet; }

}  // namespace recfast
