// The interface between the scan driver (topk.cpp) and the per-instruction-set kernels.
// Each kernel_<isa>.cpp compiles scan_impl.h with its own flags and returns a KernelSet.
#pragma once

#include <atomic>
#include <cstdint>

#include "recfast/simd.h"
#include "recfast/topk.h"

namespace recfast {

// One unit of work: queries [q0, q1) against items [j0, j1), pushing into per-query heaps.
struct ScanTask {
  const float* queries;
  int64_t query_stride;
  const float* inv_qnorm;  // per query (indexed by absolute query id); nullptr for Dot
  const float* items;
  int64_t item_stride;
  int64_t dim;
  int64_t q0, q1, j0, j1;
  float* heap_scores;  // heap of query q at heap_scores + (q - q0) * heap_k
  int64_t* heap_ids;
  int64_t heap_k;
  Exclusion exclude;
  float* scratch;  // KernelSet::scratch_floats(dim, q1 - q0) floats, 64-byte aligned
  const std::atomic<bool>* cancel;  // checked between item tiles
  // Packed path only: when set, score (q, j) is added to out[q * out_stride + j] instead of
  // being offered to a heap (the heap fields are then unused); with out_bias, out is instead
  // set to out_bias[j] + score.
  float* out = nullptr;
  int64_t out_stride = 0;
  const float* out_bias = nullptr;
};

struct KernelSet {
  const char* name;
  // Queries per register tile on the packed path.
  int64_t packed_query_group;
  // Scratch a task needs for `queries` queries of dimension dim (either path).
  int64_t (*scratch_floats)(int64_t dim, int64_t queries);
  // Packed path: queries and item tiles re-laid out for a register-tiled micro-kernel.
  void (*scan_packed)(const ScanTask& task);
  // Direct path (kTopkDirectMaxQueries: one query): dot products straight from the rows.
  void (*scan_direct)(const ScanTask& task);
  // Broadcast path (up to kTopkBroadcastMaxQueries): item values broadcast against queries.
  void (*scan_broadcast)(const ScanTask& task);
};

// The sets of each level (runtime/dispatch.h picks one: scan_kernels()).
const KernelSet* kernels_generic();
const KernelSet* kernels_avx2();    // nullptr when not compiled in
const KernelSet* kernels_avx512();  // nullptr when not compiled in
// Test-only, defined only in RECFAST_SIMDE_TEST builds (kernel_avx512_simde.cpp).
const KernelSet* kernels_avx512_emulated();

struct TaskCell;  // task_grid.h

// A task of one grid cell over rows of the given layout (Dot: inv_qnorm unset; no heaps, no
// exclusion, no output: the caller sets those it uses).
ScanTask scan_task(const TaskCell& cell, const float* queries, int64_t query_stride,
                   const float* items, int64_t item_stride, int64_t dim, float* scratch,
                   const std::atomic<bool>* cancel);

}  // namespace recfast
