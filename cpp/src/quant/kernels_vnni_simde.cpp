// Test-only (CMake option RECFAST_SIMDE_TEST): the AVX-512 VNNI kernel set of
// quant_kernel_vnni_set.h compiled a second time over SIMDe
// (https://github.com/simd-everywhere/simde), whose portable AVX-512 code runs on any CPU, so
// that the VNNI kernels' logic (layouts, tails, offset correction, epilogue) is tested on
// machines without AVX-512. Built without -m flags; the tests select it by name
// (recfast._core._set_quant_kernel("avx512_vnni_emulated")).
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "quant/kernels.h"
#include "recfast/heap.h"
#include "vec/scalar_helpers.h"

// SIMDe with native names, the intrinsics SIMDe 0.7.4 lacks, a fused fmadd and checked
// aligned accesses (shared with the emulated float32 top-k kernels).
#include "vec/simde_avx512.h"

#define RECFAST_VNNI_NS qisa_vnni_emulated
#define RECFAST_VNNI_NAME "avx512_vnni_emulated"
#include "quant/kernels_vnni_set.h"

namespace recfast {

const QuantKernelSet* quant_kernels_vnni_emulated() { return &qisa_vnni_emulated::kSet; }

}  // namespace recfast
