// Measured machine rates, the floors the benchmarks compare every timing with: how fast this
// machine streams memory and issues float32 FMAs and float16 conversions. Each probe runs for
// a few tens of milliseconds; nothing here is used by the kernels themselves.
#pragma once

#include <cstddef>

namespace recfast {

// Streaming read rate in GB/s of `threads` threads summing their shares of a `bytes` buffer
// (ordinary pages, as a NumPy array gets); best of `reps` passes.
double probe_read_gbs(size_t bytes, int threads, int reps);

// float32 FMA rate in GFLOP/s (2 flops per lane) of `threads` threads issuing independent
// vfmadd231ps on vectors of `vector_bits` (256 or 512). 0 when this CPU cannot run that width
// (or the build is not for x86-64).
double probe_fma_gflops(int vector_bits, int threads);

// float16 -> float32 conversion rate (vcvtph2ps ymm from memory) in billions of floats per
// second over `threads` threads; 0 where unavailable.
double probe_f16_gfloats(int threads);

}  // namespace recfast
