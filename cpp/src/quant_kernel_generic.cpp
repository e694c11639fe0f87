// Portable compressed-scan kernels: plain C++ over 4-float blocks that the compiler vectorizes for
// the baseline instruction set. Used without AVX2 + FMA + F16C, off x86, or when forced.
#include <atomic>
#include <cstdint>
#include <cstring>

#include "quant_kernels.h"
#include "recfast/heap.h"
#include "scalar_helpers.h"

namespace recfast {
namespace qisa_generic {

#include "vec_generic.h"

#include "quant_scan_impl.h"

// 2 query vectors (8 queries) x 4 items.
constexpr int kQV = 2, kNI = 4, kQB = 64;

const QuantKernelSet kSet = {"generic", kQV * V::W, kQB, &q_scratch_floats<kQV, kNI, kQB>,
                             &q_scan_direct<kQV, kNI>, &q_scan_packed<kQV, kNI>};

}  // namespace qisa_generic

const QuantKernelSet* quant_kernels_generic() { return &qisa_generic::kSet; }

}  // namespace recfast

#ifdef RECFAST_NO_X86_KERNELS
namespace recfast {
const QuantKernelSet* quant_kernels_avx2() { return nullptr; }
const QuantKernelSet* quant_kernels_avx512() { return nullptr; }
}  // namespace recfast
#endif
