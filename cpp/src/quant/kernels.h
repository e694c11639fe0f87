// The interface between the quantized-scan driver (quant/search.cpp) and its per-instruction-set
// kernels (quant/kernels_<isa>.cpp, each compiling quant/scan_impl.h with its own flags).
//
// Nothing here may be an inline function with external linkage or a standard container: kernel
// files are compiled with different flags, and the linker could otherwise keep an AVX-512 copy
// for every caller. The only growth of a buffer goes through QueryState::grow, defined by the
// driver.
#pragma once

#include <atomic>
#include <cstdint>

#include "recfast/quant.h"

namespace recfast {

// One survivor: item position, certified upper bound and quantized score.
struct Cand {
  int64_t pos;
  float ub;
  float t;
};

// One query's running state within one task (an item chunk).
struct QueryState {
  float* lb_scores;  // heap (recfast/heap.h) of the k best lower bounds seen
  int64_t* lb_ids;
  Cand* cands;
  int64_t n_cands, cap;
  void (*grow)(QueryState* st);  // doubles cap, keeping the candidates
  void* owner;                   // driver bookkeeping for grow
};

// int8 storage is scanned with integer dot products when dim <= kQuantI8MaxDim (every partial
// sum then fits int32 with room: |sum| <= (128 + 255) * 63 * dim < 2^31). Larger dims (and the
// float16 type) take the float32 path.
constexpr int64_t kQuantI8MaxDim = 65536;

// The query rows padded to a multiple of this many int8 codes (zeros) for the integer scans.
constexpr int64_t kQuantI8QueryPad = 32;

// The largest |qi| of a query on each path: 63 (7 bits) on the direct path, where one vpmaddubsw
// pair sum of an offset item code (<= 255) reaches 2 * 255 * 63 = 32130 < 2^15; 31 (6 bits) on
// the packed path, whose AVX2 kernel adds two pair sums in int16 (<= 2 * 2 * 255 * 31 = 31620).
constexpr int kQuantI8DirectQMax = 63;
constexpr int kQuantI8PackedQMax = 31;

// The AVX-512 VNNI kernels (quant_i8_vnni.h) have no int16 step: vpdpbusd adds each group of 4
// products u * qi straight into int32, so their queries use 8 bits on both paths. Their sums
// start at 0 and stay within 255 * 127 * dim < 2^31 (the correction qcorr is subtracted once at
// the end), which is what limits kQuantI8MaxDim for them.
constexpr int kQuantI8VnniQMax = 127;
static_assert(255LL * kQuantI8VnniQMax * kQuantI8MaxDim < (1LL << 31), "VNNI int32 sums");

struct QuantTask {
  const float* queries;  // prepared queries (cosine: scaled to unit norm), row stride = dim
  const float* qnorm;    // upper bound on |query| per query (absolute index)
  // The quantized queries of the integer int8 scan (nullptr otherwise; absolute indices):
  // q~ = qscale * qcodes, qcodes in [-Q, Q] (Q: the kernel set's direct_qmax or packed_qmax),
  // rows of qstride (a multiple of kQuantI8QueryPad) zero-padded past dim; qcorr =
  // 128 * sum(qcodes) (the item-offset correction, see quant/scan_impl.h); qcoef =
  // eq + c * (|q'| + eq) rounded up, eq >= |q' - q~| (see quant.h).
  const int8_t* qcodes;
  int64_t qstride;
  const float* qscale;
  const float* qcoef;
  const int32_t* qcorr;
  const QuantItems* items;
  float rel_slack;
  int64_t dim;
  int64_t heap_k;  // size of each lower-bound heap
  int64_t q0, q1, j0, j1;
  QueryState* states;  // state of query q at states[q - q0]
  float* tau;          // running threshold of query q at tau[q - q0] (padded with +inf)
  Exclusion exclude;
  const uint8_t* allow;
  float* scratch;  // QuantKernelSet::scratch_floats(dim) floats, 64-byte aligned
  const std::atomic<bool>* cancel;
};

struct QuantKernelSet {
  const char* name;
  int64_t query_group;  // queries per register group on the packed path
  int64_t query_block;  // most queries one packed task takes (a multiple of query_group)
  // The largest |qi| the int8 integer scans accept on each path (the driver quantizes with it;
  // the radius follows from the quantization actually made, see quant.h).
  int direct_qmax, packed_qmax;
  int64_t (*scratch_floats)(int64_t dim);
  void (*scan_direct)(const QuantTask& t);  // a few queries: dot products from the rows
  void (*scan_packed)(const QuantTask& t);  // many queries: item tiles decoded, queries in lanes
};

const QuantKernelSet* quant_kernels_generic();
const QuantKernelSet* quant_kernels_avx2();    // nullptr when not compiled in
const QuantKernelSet* quant_kernels_avx512();  // nullptr when not compiled in
// AVX-512 + VNNI integer int8 scans (only for CPUs with avx512_vnni; nullptr when not compiled
// in), and the same source over SIMDe, a test-only build (RECFAST_SIMDE_TEST; nullptr without).
const QuantKernelSet* quant_kernels_avx512_vnni();
const QuantKernelSet* quant_kernels_vnni_emulated();

}  // namespace recfast
