// Test-only (CMake option RECFAST_SIMDE_TEST): the AVX-512 float32 top-k kernels of
// kernel_avx512.cpp compiled a second time over SIMDe's portable AVX-512 (simde_avx512.h),
// without -m flags, so that their logic (tiles, tails, masks, horizontal sums) is tested on
// CPUs without AVX-512, bit for bit as the native ones would compute. The tests select it as the
// SIMD level "avx512_emulated" (recfast._core.set_simd_level); it is never chosen otherwise.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "recfast/heap.h"
#include "scan/kernels.h"
#include "vec/scalar_helpers.h"
#include "vec/simde_avx512.h"

namespace recfast {
// Its own namespace: the kernel structs' inline members have external linkage, and the linker
// must not merge an AVX-512 copy with a portable one.
namespace isa_avx512_emulated {

#include "vec/vec_avx512.h"

#include "scan/kernel_impl.h"

// The native set's tiles (keep in step with kernel_avx512.cpp): 12 x 32 register tile, and the
// broadcast path with one query vector of 24 items.
constexpr int kMR = 12, kNV = 2;
using P = Packed<kMR, kNV>;

static void scan_broadcast(const ScanTask& t) { broadcast_by_batch<24, 12>(t); }

const KernelSet kSet = {"avx512_emulated", kMR,           &scratch_floats_impl<kMR, kNV>,
                        &P::scan,          &Direct::scan, &scan_broadcast};

}  // namespace isa_avx512_emulated

const KernelSet* kernels_avx512_emulated() { return &isa_avx512_emulated::kSet; }

}  // namespace recfast
