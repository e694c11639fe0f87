// AVX2 + FMA + F16C quantized-scan kernels (compiled with -mavx2 -mfma -mf16c; used only when
// the CPU has all three). int8 codes meet the quantized queries in integer dot products
// (vpmaddubsw + vpmaddwd, quant_i8_avx2.h); float16 codes convert with vcvtph2ps and the dot
// products are float32 FMAs.
#include <immintrin.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>

#include "quant/kernels.h"
#include "recfast/heap.h"
#include "vec/scalar_helpers.h"

namespace recfast {
namespace qisa_avx2 {

#include "vec/vec_avx2.h"

#include "quant/scan_impl.h"

#include "quant/f16_bcast.h"

#include "quant/i8_drivers.h"

#include "quant/i8_avx2.h"

// float16: 2 query vectors (16 queries) x 6 items: 12 accumulators + 2 query vectors + 1
// broadcast. int8: the same 16 queries per group (the driver's query_group) x kNI8 items.
constexpr int kQV = 2, kNI = 6, kQB = 128;
constexpr int kNI8 = 4;

using I8D = QI8DirectAvx2;
using I8P = QI8PackedAvx2<kQV, kNI8>;
const QuantKernelSet kSet = {"avx2",
                             (kQV * V::W),
                             kQB,
                             kQuantI8DirectQMax,
                             kQuantI8PackedQMax,
                             &q_scratch_floats<I8P, kQV, kNI, kQB, QF16BcastSet>,
                             &q_scan_direct<I8D, kQV, kNI, QF16BcastSet>,
                             &q_scan_packed<I8P, kQV, kNI, QF16BcastSet>};

}  // namespace qisa_avx2

const QuantKernelSet* quant_kernels_avx2() { return &qisa_avx2::kSet; }

}  // namespace recfast
