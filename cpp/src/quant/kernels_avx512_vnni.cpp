// AVX-512 VNNI quantized-scan kernels (compiled with the AVX-512 flags plus -mavx512vnni; used
// only when the CPU has avx512_vnni on top of the AVX-512 level, see quant/search.cpp). int8
// codes meet the quantized queries in vpdpbusd dot products (quant_i8_vnni.h); float16 and int8
// beyond kQuantI8MaxDim take the same float32 scans as quant_kernel_avx512.cpp.
#include <immintrin.h>

#define RECFAST_VNNI_NS qisa_avx512_vnni
#define RECFAST_VNNI_NAME "avx512_vnni"
#include "quant/kernels_vnni_set.h"

namespace recfast {

const QuantKernelSet* quant_kernels_avx512_vnni() { return &qisa_avx512_vnni::kSet; }

}  // namespace recfast
