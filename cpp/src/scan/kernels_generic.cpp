// Portable kernels: plain C++ over 4-float blocks that the compiler vectorizes for the baseline
// instruction set. Used on CPUs without AVX2 + FMA, on non-x86 machines, or when forced.
#include <atomic>
#include <cmath>
#include <cstdint>

#include "recfast/heap.h"
#include "scan/kernels.h"
#include "vec/scalar_helpers.h"

namespace recfast {
namespace isa_generic {

#include "vec/vec_generic.h"

#include "scan/kernel_impl.h"

// 4 x 8 register tile: 8 accumulators over 16 SSE registers.
constexpr int kMR = 4, kNV = 2;
using P = Packed<kMR, kNV>;

// The broadcast path: 3 query vectors x 3 items up to 12 queries, else groups of 4 x 2.
static void scan_broadcast(const ScanTask& t) {
  if (t.q1 - t.q0 <= 12) return Broadcast<3, 3>::scan(t);
  Broadcast<4, 2>::scan(t);
}

const KernelSet kSet = {"generic", kMR,           &scratch_floats_impl<kMR, kNV>,
                        &P::scan,  &Direct::scan, &scan_broadcast};

}  // namespace isa_generic

const KernelSet* kernels_generic() { return &isa_generic::kSet; }

}  // namespace recfast

#ifdef RECFAST_NO_X86_KERNELS
namespace recfast {
const KernelSet* kernels_avx2() { return nullptr; }
const KernelSet* kernels_avx512() { return nullptr; }
}  // namespace recfast
#endif
