// The AVX-512 VNNI quantized-scan kernel set, written once and compiled by two files: the
// native quant_kernel_avx512_vnni.cpp and the test-only quant_kernel_vnni_simde.cpp (the same
// code over SIMDe). The including file provides the intrinsics first (<immintrin.h>, or SIMDe
// with native aliases) and names the namespace and the set: RECFAST_VNNI_NS, RECFAST_VNNI_NAME.
// Each build needs its own namespace: the kernel structs' inline members have external linkage,
// and the linker must not merge an AVX-512 copy with a portable one.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>

#include "quant/kernels.h"
#include "recfast/heap.h"
#include "vec/scalar_helpers.h"

namespace recfast {
namespace RECFAST_VNNI_NS {

#include "vec/vec_avx512.h"

#include "quant/scan_impl.h"

#include "quant/i8_drivers.h"

#include "quant/i8_vnni.h"

#include "quant/f16_bcast.h"

// float16 (and int8 beyond kQuantI8MaxDim): as quant_kernel_avx512.cpp, 2 query vectors (32
// queries) x 12 items. int8: the same 32 queries per group (the driver's query_group) x kNI8
// items: 16 accumulators + 2 query vectors + 1 broadcast of the 32 zmm registers.
constexpr int kQV = 2, kNI = 12, kQB = 256;
constexpr int kNI8 = 8;

using I8D = QI8DirectVnni;
using I8P = QI8PackedVnni<kQV, kNI8>;
// Tasks of a few queries: the broadcast kernels (quant/i8_vnni.h, quant/f16_bcast.h).
using S = QSmallEither<QI8BcastVnniSet, QF16BcastSet>;

const QuantKernelSet kSet = {RECFAST_VNNI_NAME,
                             (kQV * V::W),
                             kQB,
                             kQuantI8VnniQMax,
                             kQuantI8VnniQMax,
                             &q_scratch_floats<I8P, kQV, kNI, kQB, S>,
                             &q_scan_direct<I8D, kQV, kNI, S>,
                             &q_scan_packed<I8P, kQV, kNI, S>};

}  // namespace RECFAST_VNNI_NS
}  // namespace recfast
