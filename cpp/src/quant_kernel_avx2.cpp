// AVX2 + FMA + F16C compressed-scan kernels (compiled with -mavx2 -mfma -mf16c; used only when
// the CPU has all three). int8 codes widen to int32 then float (vpmovsxbd + vcvtdq2ps), float16
// codes convert with vcvtph2ps; the dot products are float32 FMAs.
#include <immintrin.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "quant_kernels.h"
#include "recfast/heap.h"
#include "scalar_helpers.h"

namespace recfast {
namespace qisa_avx2 {

#include "vec_avx2.h"

#include "quant_scan_impl.h"

// 2 query vectors (16 queries) x 6 items: 12 accumulators + 2 query vectors + 1 broadcast.
constexpr int kQV = 2, kNI = 6, kQB = 128;

const QuantKernelSet kSet = {"avx2", kQV * V::W, kQB, &q_scratch_floats<kQV, kNI, kQB>,
                             &q_scan_direct<kQV, kNI>, &q_scan_packed<kQV, kNI>};

}  // namespace qisa_avx2

const QuantKernelSet* quant_kernels_avx2() { return &qisa_avx2::kSet; }

}  // namespace recfast
