// AVX-512 quantized-scan kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mf16c -mfma;
// used only when the CPU and OS support AVX-512). Same code as the AVX2 file over 16 lanes:
// int8 codes widen with vpmovsxbd + vcvtdq2ps, float16 codes with vcvtph2ps (zmm).
#include <immintrin.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "quant/kernels.h"
#include "recfast/heap.h"
#include "vec/scalar_helpers.h"

namespace recfast {
namespace qisa_avx512 {

#include "vec/vec_avx512.h"

#include "quant/scan_impl.h"

#include "quant/f16_bcast.h"

// 2 query vectors (32 queries) x 12 items: 24 accumulators + 2 query vectors + 1 broadcast.
constexpr int kQV = 2, kNI = 12, kQB = 256;

// int8 stays on the float32 path here (QDirect / QPacked ignore the quantized queries, so the
// query bit widths below are unused); CPUs with VNNI take quant_kernel_avx512_vnni.cpp instead.
using I8D = QDirect<int8_t>;
using I8P = QPacked<int8_t, kQV, kNI>;
const QuantKernelSet kSet = {"avx512",
                             (kQV * V::W),
                             kQB,
                             kQuantI8DirectQMax,
                             kQuantI8PackedQMax,
                             &q_scratch_floats<I8P, kQV, kNI, kQB, QF16BcastSet>,
                             &q_scan_direct<I8D, kQV, kNI, QF16BcastSet>,
                             &q_scan_packed<I8P, kQV, kNI, QF16BcastSet>};

}  // namespace qisa_avx512

const QuantKernelSet* quant_kernels_avx512() { return &qisa_avx512::kSet; }

}  // namespace recfast
