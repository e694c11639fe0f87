// Portable quantized-scan kernels: plain C++ over 4-float blocks (float16) and int32 sums of
// int8 products (int8) that the compiler vectorizes for the baseline instruction set. Used
// without AVX2 + FMA + F16C, off x86, or when forced.
#include <atomic>
#include <cstdint>
#include <cstring>

#include "quant/kernels.h"
#include "recfast/heap.h"
#include "vec/scalar_helpers.h"

namespace recfast {
namespace qisa_generic {

#include "vec/vec_generic.h"

#include "quant/scan_impl.h"

// 2 query vectors (8 queries) x 4 items.
constexpr int kQV = 2, kNI = 4, kQB = 64;

// int8: the portable integer scan (QI8Scalar) on both paths.
const QuantKernelSet kSet = {"generic",
                             (kQV * V::W),
                             kQB,
                             kQuantI8DirectQMax,
                             kQuantI8PackedQMax,
                             &q_scratch_floats<QI8Scalar, kQV, kNI, kQB>,
                             &q_scan_direct<QI8Scalar, kQV, kNI>,
                             &q_scan_packed<QI8Scalar, kQV, kNI>};

}  // namespace qisa_generic

const QuantKernelSet* quant_kernels_generic() { return &qisa_generic::kSet; }

}  // namespace recfast

#ifdef RECFAST_NO_X86_KERNELS
namespace recfast {
const QuantKernelSet* quant_kernels_avx2() { return nullptr; }
const QuantKernelSet* quant_kernels_avx512() { return nullptr; }
const QuantKernelSet* quant_kernels_avx512_vnni() { return nullptr; }
}  // namespace recfast
#endif

#ifndef RECFAST_SIMDE_TEST_KERNEL
namespace recfast {
const QuantKernelSet* quant_kernels_vnni_emulated() { return nullptr; }
}  // namespace recfast
#endif
