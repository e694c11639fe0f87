// The CUDA top-k driver: plans the tiling under the scratch budget, allocates scratch
// stream-ordered, and enqueues the kernels of kernels.cuh (see there for the algorithm).
#include "recfast/topk_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "kernels.cuh"

#define RECFAST_CUDA_CHECK(call) ::recfast::cuda_check((call), #call, __FILE__, __LINE__)
#define RECFAST_CUDA_CHECK_LAUNCH(what) \
  ::recfast::cuda_check(cudaGetLastError(), what, __FILE__, __LINE__)

namespace recfast {

namespace {

std::string cuda_message(int code, const char* call, const char* file, int line) {
  const cudaError_t e = static_cast<cudaError_t>(code);
  return std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") at " +
         file + ":" + std::to_string(line) + " in " + call;
}

}  // namespace

CudaError::CudaError(int code, const char* call, const char* file, int line)
    : std::runtime_error(cuda_message(code, call, file, line)),
      code_(code),
      file_(file),
      line_(line) {}

inline void cuda_check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a sticky launch error so later calls start clean
    throw CudaError(static_cast<int>(e), call, file, line);
  }
}

namespace {

using namespace cuda_kernels;

// Device memory that lives for one call, freed stream-ordered (cudaMallocAsync) where the
// device supports memory pools, else with cudaMalloc / cudaFree.
class DeviceScratch {
 public:
  explicit DeviceScratch(cudaStream_t stream) : stream_(stream) {
    int dev = 0, pools = 0;
    RECFAST_CUDA_CHECK(cudaGetDevice(&dev));
    RECFAST_CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev));
    async_ = pools != 0;
  }
  ~DeviceScratch() {
    for (void* p : ptrs_) {
      if (async_)
        cudaFreeAsync(p, stream_);
      else
        cudaFree(p);
    }
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;

  template <typename T>
  T* alloc(size_t count) {
    const size_t bytes = std::max<size_t>(count * sizeof(T), 16);
    void* p = nullptr;
    if (async_)
      RECFAST_CUDA_CHECK(cudaMallocAsync(&p, bytes, stream_));
    else
      RECFAST_CUDA_CHECK(cudaMalloc(&p, bytes));
    ptrs_.push_back(p);
    return static_cast<T*>(p);
  }

 private:
  cudaStream_t stream_;
  bool async_ = false;
  std::vector<void*> ptrs_;
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t pow2_at_least(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

void launch_inv_norms(const float* x, int64_t stride, int64_t n, int64_t dim, float* out,
                      cudaStream_t stream) {
  if (n == 0) return;
  const int64_t blocks = ceil_div(n * 32, kThreads);
  inv_norms_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      x, stride, n, static_cast<int>(dim), out);
  RECFAST_CUDA_CHECK_LAUNCH("inv_norms_kernel");
}

void launch_pad(float* scores, int64_t* ids, int64_t stride, int64_t n_q, int64_t col0,
                int64_t col1, cudaStream_t stream) {
  if (n_q == 0 || col1 <= col0) return;
  const int64_t blocks = ceil_div(n_q * (col1 - col0), kThreads);
  pad_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(scores, ids, stride, n_q, col0,
                                                                     col1);
  RECFAST_CUDA_CHECK_LAUNCH("pad_kernel");
}

}  // namespace

CudaTopkPlan plan_topk_cuda(int64_t n_queries, int64_t n_items, int64_t /*dim*/,
                            const CudaTopkParams& params) {
  CudaTopkPlan plan{};
  const int64_t k_eff = std::max<int64_t>(1, std::min(params.k, n_items));
  plan.pass_k = std::min(k_eff, kMaxPassK);
  plan.passes = ceil_div(k_eff, kMaxPassK);
  plan.state_k = std::max<int64_t>(32, pow2_at_least(plan.pass_k));
  int64_t qt_max = params.max_query_tile > 0 ? params.max_query_tile : kDefaultMaxQueryTile;
  qt_max = std::min<int64_t>(qt_max, 16384);
  plan.query_tile = std::max<int64_t>(1, std::min(n_queries, qt_max));
  const size_t budget = params.scratch_bytes ? params.scratch_bytes : kDefaultScratchBytes;
  const int64_t qt = plan.query_tile;
  // Per query: kept keys, thr, upper, queue count, inverse norm. Per chunk item: a queue slot
  // for every tile query (a chunk can pass whole, e.g. the first one) and an inverse norm.
  const size_t fixed = static_cast<size_t>(qt) * (plan.state_k * 8 + 8 + 8 + 4 + 4);
  const size_t per_item = static_cast<size_t>(qt) * 8 + 4;
  int64_t chunk = budget > fixed ? static_cast<int64_t>((budget - fixed) / per_item) : 0;
  chunk = chunk / kBN * kBN;
  chunk = std::clamp<int64_t>(chunk, kBN, int64_t{1} << 18);
  chunk = std::min(chunk, std::max<int64_t>(kBN, ceil_div(n_items, kBN) * kBN));
  plan.item_chunk = chunk;
  plan.scratch_bytes = fixed + static_cast<size_t>(chunk) * per_item;
  return plan;
}

void topk_cuda(const float* d_queries, int64_t n_queries, int64_t query_stride,
               const float* d_items, int64_t n_items, int64_t item_stride, int64_t dim,
               const CudaTopkParams& params, float* d_out_scores, int64_t* d_out_ids,
               cudaStream_t stream) {
  const int64_t k = params.k;
  if (k < 1) throw std::invalid_argument("k must be >= 1");
  if (n_queries < 0 || n_items < 0) throw std::invalid_argument("negative size");
  if (dim < 1 || dim > std::numeric_limits<int>::max())
    throw std::invalid_argument("dim must be in [1, 2^31)");
  if (n_items >= int64_t{0xFFFFFFFF})
    throw std::invalid_argument("the CUDA backend supports fewer than 2^32 - 1 items");
  if ((n_queries > 1 && query_stride < dim) || (n_items > 1 && item_stride < dim))
    throw std::invalid_argument("row strides must be >= dim (rows must not overlap)");
  if (n_queries == 0) return;
  if (n_items == 0) {
    launch_pad(d_out_scores, d_out_ids, k, n_queries, 0, k, stream);
    return;
  }

  const CudaTopkPlan plan = plan_topk_cuda(n_queries, n_items, dim, params);
  const int64_t k_eff = std::min(k, n_items);
  const bool cosine = params.metric == Metric::Cosine;
  const int64_t qt = plan.query_tile, chunk = plan.item_chunk, state_k = plan.state_k;

  DeviceScratch scratch(stream);
  // The exclusion, uploaded when it is given on the host.
  const int64_t* ex_indptr = params.exclude.indptr;
  const int64_t* ex_indices = params.exclude.indices;
  if (!params.exclude.empty() && params.exclude_on_host) {
    const int64_t nnz = params.exclude.indptr[n_queries];
    int64_t* dp = scratch.alloc<int64_t>(static_cast<size_t>(n_queries + 1));
    int64_t* di = scratch.alloc<int64_t>(static_cast<size_t>(std::max<int64_t>(nnz, 1)));
    RECFAST_CUDA_CHECK(cudaMemcpyAsync(dp, params.exclude.indptr, (n_queries + 1) * 8,
                                       cudaMemcpyHostToDevice, stream));
    if (nnz > 0)
      RECFAST_CUDA_CHECK(
          cudaMemcpyAsync(di, params.exclude.indices, nnz * 8, cudaMemcpyHostToDevice, stream));
    ex_indptr = dp;
    ex_indices = di;
  }

  uint64_t* state = scratch.alloc<uint64_t>(static_cast<size_t>(qt * state_k));
  uint64_t* thr = scratch.alloc<uint64_t>(static_cast<size_t>(qt));
  uint64_t* upper = scratch.alloc<uint64_t>(static_cast<size_t>(qt));
  unsigned* counts = scratch.alloc<unsigned>(static_cast<size_t>(qt));
  float* q_inv = cosine ? scratch.alloc<float>(static_cast<size_t>(qt)) : nullptr;
  float* x_inv = cosine ? scratch.alloc<float>(static_cast<size_t>(chunk)) : nullptr;
  uint64_t* cand = scratch.alloc<uint64_t>(static_cast<size_t>(qt) * static_cast<size_t>(chunk));
  RECFAST_CUDA_CHECK(cudaMemsetAsync(counts, 0, qt * sizeof(unsigned), stream));

  if (k_eff < k) launch_pad(d_out_scores, d_out_ids, k, n_queries, k_eff, k, stream);

  for (int64_t t0 = 0; t0 < n_queries; t0 += qt) {
    const int64_t nq = std::min(qt, n_queries - t0);
    const float* qbase = d_queries + t0 * query_stride;
    if (cosine) launch_inv_norms(qbase, query_stride, nq, dim, q_inv, stream);
    RECFAST_CUDA_CHECK(cudaMemsetAsync(upper, 0xFF, nq * sizeof(uint64_t), stream));
    for (int64_t p = 0; p < plan.passes; ++p) {
      const int64_t keep = std::min(kMaxPassK, k_eff - p * kMaxPassK);
      RECFAST_CUDA_CHECK(cudaMemsetAsync(state, 0, nq * state_k * sizeof(uint64_t), stream));
      RECFAST_CUDA_CHECK(cudaMemsetAsync(thr, 0, nq * sizeof(uint64_t), stream));
      for (int64_t c0 = 0; c0 < n_items; c0 += chunk) {
        const int64_t nx = std::min(chunk, n_items - c0);
        const float* xbase = d_items + c0 * item_stride;
        if (cosine) launch_inv_norms(xbase, item_stride, nx, dim, x_inv, stream);
        FilterArgs a;
        a.queries = qbase;
        a.q_stride = query_stride;
        a.items = xbase;
        a.x_stride = item_stride;
        a.n_q = static_cast<int>(nq);
        a.n_x = static_cast<int>(nx);
        a.dim = static_cast<int>(dim);
        a.id_base = static_cast<uint32_t>(c0);
        a.q_inv = q_inv;
        a.x_inv = x_inv;
        a.thr = thr;
        a.upper = upper;
        a.ex_indptr = ex_indptr;
        a.ex_indices = ex_indices;
        a.q_abs0 = t0;
        a.cand = cand;
        a.cand_stride = chunk;
        a.cand_count = counts;
        if (nq > 64) {
          const dim3 grid(static_cast<unsigned>(ceil_div(nq, 128)),
                          static_cast<unsigned>(ceil_div(nx, kBN)));
          score_filter_kernel<8><<<grid, kThreads, 0, stream>>>(a);
        } else {
          const dim3 grid(static_cast<unsigned>(ceil_div(nq, 64)),
                          static_cast<unsigned>(ceil_div(nx, kBN)));
          score_filter_kernel<4><<<grid, kThreads, 0, stream>>>(a);
        }
        RECFAST_CUDA_CHECK_LAUNCH("score_filter_kernel");
        merge_kernel<<<static_cast<unsigned>(nq), kThreads, 0, stream>>>(
            state, static_cast<int>(state_k), static_cast<int>(keep), thr, cand, chunk, counts);
        RECFAST_CUDA_CHECK_LAUNCH("merge_kernel");
      }
      const int64_t threads = nq * keep;
      finish_pass_kernel<<<static_cast<unsigned>(ceil_div(threads, kThreads)), kThreads, 0,
                           stream>>>(state, static_cast<int>(state_k), static_cast<int>(keep),
                                     upper, static_cast<int>(nq), d_out_scores + t0 * k,
                                     d_out_ids + t0 * k, k, p * kMaxPassK);
      RECFAST_CUDA_CHECK_LAUNCH("finish_pass_kernel");
    }
  }
}

void topk_cuda_host(const float* queries, int64_t n_queries, int64_t query_stride,
                    const float* items, int64_t n_items, int64_t item_stride, int64_t dim,
                    const CudaTopkParams& params, float* out_scores, int64_t* out_ids, int device) {
  if (params.k < 1) throw std::invalid_argument("k must be >= 1");
  if (n_queries < 0 || n_items < 0 || dim < 1) throw std::invalid_argument("bad sizes");
  if (n_queries == 0) return;
  CudaDeviceGuard guard(device);
  cudaStream_t stream = nullptr;
  RECFAST_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct StreamOwner {
    cudaStream_t s;
    ~StreamOwner() { cudaStreamDestroy(s); }
  } owner{stream};
  {
    DeviceScratch inputs(stream);
    const size_t row = static_cast<size_t>(dim) * sizeof(float);
    float* dq = inputs.alloc<float>(static_cast<size_t>(n_queries * dim));
    float* dx = inputs.alloc<float>(static_cast<size_t>(std::max<int64_t>(n_items, 1) * dim));
    const size_t out_n = static_cast<size_t>(n_queries * params.k);
    float* ds = inputs.alloc<float>(out_n);
    int64_t* di = inputs.alloc<int64_t>(out_n);
    const size_t qpitch = n_queries > 1 ? static_cast<size_t>(query_stride) * 4 : row;
    RECFAST_CUDA_CHECK(cudaMemcpy2DAsync(dq, row, queries, qpitch, row,
                                         static_cast<size_t>(n_queries), cudaMemcpyHostToDevice,
                                         stream));
    if (n_items > 0) {
      const size_t xpitch = n_items > 1 ? static_cast<size_t>(item_stride) * 4 : row;
      RECFAST_CUDA_CHECK(cudaMemcpy2DAsync(dx, row, items, xpitch, row,
                                           static_cast<size_t>(n_items), cudaMemcpyHostToDevice,
                                           stream));
    }
    CudaTopkParams p = params;
    p.exclude_on_host = true;
    topk_cuda(dq, n_queries, dim, dx, n_items, dim, dim, p, ds, di, stream);
    RECFAST_CUDA_CHECK(
        cudaMemcpyAsync(out_scores, ds, out_n * sizeof(float), cudaMemcpyDeviceToHost, stream));
    RECFAST_CUDA_CHECK(
        cudaMemcpyAsync(out_ids, di, out_n * sizeof(int64_t), cudaMemcpyDeviceToHost, stream));
  }
  RECFAST_CUDA_CHECK(cudaStreamSynchronize(stream));
}

int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device found";
  return n;
}

CudaDeviceGuard::CudaDeviceGuard(int device) {
  RECFAST_CUDA_CHECK(cudaGetDevice(&previous_));
  if (device != previous_) RECFAST_CUDA_CHECK(cudaSetDevice(device));
}

CudaDeviceGuard::~CudaDeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_ && previous_ >= 0)
    cudaSetDevice(previous_);
}

}  // namespace recfast
