// recfast CUDA top-k: the C++ API of the GPU backend, free of Python.
//
// Same contract as topk_cpu (recfast/topk.h): scores q.x (Dot) or q.x / (|q| |x|) (Cosine, a
// zero vector scoring 0); each output row sorted by score descending, equal scores lower id
// first; NaN scores never returned; rows with fewer than k eligible items padded with id -1 and
// score -inf; per-query exclusions as sorted CSR rows.
//
// Arithmetic is plain fp32 with fused multiply-adds in dimension order (no TF32, no tensor
// cores), so scores match the CPU path to float32 accumulation error.
//
// Memory beyond inputs and outputs is bounded by CudaTopkParams::scratch_bytes (default
// kDefaultScratchBytes): the queries x items score matrix is never allocated. Item ids must fit
// in 32 bits (n_items < 2^32 - 1).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "recfast/topk.h"  // Metric, Exclusion

namespace recfast {

// Scratch target of one call when CudaTopkParams::scratch_bytes is 0: 768 MiB.
constexpr size_t kDefaultScratchBytes = size_t{768} << 20;
// Queries handled together at most (one "query tile"); more are processed tile after tile.
constexpr int64_t kDefaultMaxQueryTile = 1024;
// Largest k selected in one pass; a larger k runs ceil(k / kMaxPassK) passes over the items,
// each selecting the next kMaxPassK keys strictly below the previous pass's last one.
constexpr int64_t kMaxPassK = 2048;

// A failed CUDA call: what() reads "CUDA error <name> (<message>) at <file>:<line> in <call>".
class CudaError : public std::runtime_error {
 public:
  CudaError(int code, const char* call, const char* file, int line);
  int code() const { return code_; }
  const std::string& file() const { return file_; }
  int line() const { return line_; }

 private:
  int code_;
  std::string file_;
  int line_;
};

struct CudaTopkParams {
  int64_t k = 10;
  Metric metric = Metric::Cosine;
  // Sorted CSR rows (n_queries + 1 indptr entries), or empty. Device pointers for topk_cuda,
  // unless exclude_on_host is set; host pointers for topk_cuda_host.
  Exclusion exclude;
  bool exclude_on_host = false;
  size_t scratch_bytes = 0;    // 0: kDefaultScratchBytes
  int64_t max_query_tile = 0;  // 0: kDefaultMaxQueryTile (tests use small values)
};

// How a call is split, and the scratch it allocates (bytes on the device).
struct CudaTopkPlan {
  int64_t query_tile;  // queries per tile
  int64_t item_chunk;  // items scored between two selection merges
  int64_t pass_k;      // keys selected per pass (<= kMaxPassK)
  int64_t passes;      // passes over the items per query tile
  int64_t state_k;     // per-query kept keys: pass_k rounded up to a power of two (>= 32)
  size_t scratch_bytes;
};

CudaTopkPlan plan_topk_cuda(int64_t n_queries, int64_t n_items, int64_t dim,
                            const CudaTopkParams& params);

// Device pointers in and out; rows are contiguous, row r at base + r * stride (floats). Work is
// enqueued on `stream` on the current device; scratch is allocated and freed stream-ordered, so
// the call returns before the results are ready: synchronize the stream before reading them.
// Throws std::invalid_argument for bad sizes and CudaError for CUDA failures.
void topk_cuda(const float* d_queries, int64_t n_queries, int64_t query_stride,
               const float* d_items, int64_t n_items, int64_t item_stride, int64_t dim,
               const CudaTopkParams& params, float* d_out_scores, int64_t* d_out_ids,
               cudaStream_t stream);

// Host convenience: copies host inputs (and the exclusion) to `device` once, runs topk_cuda on
// its own stream, copies the results to the caller's host buffers and synchronizes.
void topk_cuda_host(const float* queries, int64_t n_queries, int64_t query_stride,
                    const float* items, int64_t n_items, int64_t item_stride, int64_t dim,
                    const CudaTopkParams& params, float* out_scores, int64_t* out_ids, int device);

// Number of usable CUDA devices; 0 when there is no driver or device, with the reason in *why.
int cuda_device_count(std::string* why = nullptr);

// Makes `device` current for its lifetime and restores the previous one.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace recfast
