// The CUDA kernels of the top-k backend. Included by topk_cuda.cu only.
//
// Keys. Every (score, item id) pair is packed into one 64-bit key whose unsigned order is the
// contract's order: the high word is the score mapped to an order-preserving unsigned integer
// (+0 and -0 made equal first), the low word is 0xFFFFFFFF - id, so that for equal scores the
// lower id has the larger key. Keys of distinct items are distinct, so the k best pairs are
// exactly the k largest keys, and a "k-th largest key" threshold has no ties. Key 0 is the
// empty slot: it would need the score bits 0xFFFFFFFF, a NaN, and NaNs never become keys.
//
// Algorithm, per query tile (up to 1024 queries) and per pass (up to 2048 keys):
//   for each item chunk:
//     score_filter_kernel  fp32 tiled GEMM (128 x 128 tile per block, 8 x 8 per thread); its
//                          epilogue compares each score with the query's running k-th key
//                          (thr), checks the exclusion list (binary search) for the few that
//                          pass, and appends their keys to the query's candidate queue with one
//                          atomicAdd per half-warp and row (the lanes sharing a query row
//                          prefix-sum their thread-local counts with shuffles).
//     merge_kernel         one block per query with candidates: merges the kept keys (state)
//                          with the queue; bitonic sort in shared memory when both fit
//                          (<= 4096 keys), else an MSB radix select over the 64-bit keys
//                          followed by a bitonic sort of the selected ones. Updates thr.
//   finish_pass_kernel     writes the sorted keys as (score, id), pads with (-inf, -1), and
//                          sets the next pass's strict upper bound to this pass's last key.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace recfast {
namespace cuda_kernels {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kThreads = 256;     // every kernel here runs 256-thread blocks
constexpr int kBN = 128;          // items per score tile
constexpr int kBK = 8;            // dimensions per shared-memory stage
constexpr int kMergeCap = 4096;   // keys a merge sorts in shared memory
constexpr int kMaxStateK = 2048;  // kept keys per query at most

__device__ __forceinline__ uint64_t make_key(float s, uint32_t id) {
  uint32_t u = (s == 0.0f) ? 0u : __float_as_uint(s);  // -0 -> +0: equal scores, equal keys
  uint32_t hi = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(hi) << 32) | static_cast<uint64_t>(0xFFFFFFFFu - id);
}

__device__ __forceinline__ float key_score(uint64_t key) {
  uint32_t hi = static_cast<uint32_t>(key >> 32);
  uint32_t u = (hi & 0x80000000u) ? (hi & 0x7FFFFFFFu) : ~hi;
  return __uint_as_float(u);
}

__device__ __forceinline__ int64_t key_id(uint64_t key) {
  return static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(key & 0xFFFFFFFFull));
}

// Lower bound of the score of any key above `thr` (a cheap float pre-filter).
__device__ __forceinline__ float key_floor(uint64_t thr) {
  return thr == 0 ? -__int_as_float(0x7f800000) : key_score(thr);
}

__device__ __forceinline__ bool is_excluded(const int64_t* indptr, const int64_t* indices,
                                            int64_t q, int64_t id) {
  if (indptr == nullptr) return false;
  int64_t lo = indptr[q], hi = indptr[q + 1];
  const int64_t end = hi;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (indices[mid] < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < end && indices[lo] == id;
}

// ---------------------------------------------------------------------------------------------
// Inverse L2 norms, one warp per row: 1 / sqrt(sum x^2), 0 for a zero row (IEEE division and
// square root: no fast-math anywhere in this backend).
__global__ void inv_norms_kernel(const float* __restrict__ x, int64_t stride, int64_t n, int dim,
                                 float* __restrict__ out) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= n) return;  // whole warps leave together
  const float* r = x + row * stride;
  float s = 0.0f;
  for (int p = lane; p < dim; p += 32) s = fmaf(r[p], r[p], s);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(kFullMask, s, o);
  if (lane == 0) out[row] = s > 0.0f ? 1.0f / sqrtf(s) : 0.0f;
}

// ---------------------------------------------------------------------------------------------
struct FilterArgs {
  const float* queries;  // first query of the tile
  int64_t q_stride;
  const float* items;  // first item of the chunk
  int64_t x_stride;
  int n_q;  // queries in the tile
  int n_x;  // items in the chunk
  int dim;
  uint32_t id_base;          // global id of the chunk's first item
  const float* q_inv;        // per tile query, nullptr for Dot
  const float* x_inv;        // per chunk item, nullptr for Dot
  const uint64_t* thr;       // per tile query: keys must be > thr
  const uint64_t* upper;     // per tile query: keys must be < upper (multi-pass)
  const int64_t* ex_indptr;  // CSR over all queries (device), or nullptr
  const int64_t* ex_indices;
  int64_t q_abs0;  // absolute index of the tile's first query (for the CSR)
  uint64_t* cand;  // per tile query, cand_stride keys
  int64_t cand_stride;
  unsigned* cand_count;  // per tile query
};

// Block tile: BM = 16 * TM queries x 128 items; thread (ty, tx) owns TM x 8 scores at rows
// {g * BM / (TM/4) + 4 ty + r} and columns {h * 64 + 4 tx + c}, so every shared-memory read is
// a conflict-free 16-byte vector. Accumulation is fmaf over the dimensions in order.
template <int TM>
__global__ void __launch_bounds__(kThreads, 2) score_filter_kernel(const FilterArgs a) {
  constexpr int BM = 16 * TM;
  constexpr int TN = 8;
  constexpr int RG = TM / 4;  // row groups of 4
  constexpr int PAD = 4;      // keeps the transposed stores conflict-free, vectors aligned
  constexpr int A_PER_T = BM * kBK / kThreads;
  constexpr int B_PER_T = kBN * kBK / kThreads;
  __shared__ __align__(16) float As[2][kBK][BM + PAD];
  __shared__ __align__(16) float Bs[2][kBK][kBN + PAD];

  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.x * BM;   // first query of this block (tile-relative)
  const int n0 = blockIdx.y * kBN;  // first item of this block (chunk-relative)

  float ra[A_PER_T], rb[B_PER_T];
  auto load_global = [&](int k0) {
#pragma unroll
    for (int i = 0; i < A_PER_T; ++i) {
      const int e = tid + i * kThreads;
      const int row = e / kBK, kk = e % kBK;
      const int q = m0 + row, p = k0 + kk;
      ra[i] = (q < a.n_q && p < a.dim) ? __ldg(a.queries + q * a.q_stride + p) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < B_PER_T; ++i) {
      const int e = tid + i * kThreads;
      const int row = e / kBK, kk = e % kBK;
      const int j = n0 + row, p = k0 + kk;
      rb[i] = (j < a.n_x && p < a.dim) ? __ldg(a.items + j * a.x_stride + p) : 0.0f;
    }
  };
  auto store_shared = [&](int buf) {
#pragma unroll
    for (int i = 0; i < A_PER_T; ++i) {
      const int e = tid + i * kThreads;
      As[buf][e % kBK][e / kBK] = ra[i];
    }
#pragma unroll
    for (int i = 0; i < B_PER_T; ++i) {
      const int e = tid + i * kThreads;
      Bs[buf][e % kBK][e / kBK] = rb[i];
    }
  };

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  load_global(0);
  store_shared(0);
  __syncthreads();
  int buf = 0;
  for (int k0 = 0; k0 < a.dim; k0 += kBK) {
    const bool has_next = k0 + kBK < a.dim;
    if (has_next) load_global(k0 + kBK);
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      float av[TM], bv[TN];
#pragma unroll
      for (int g = 0; g < RG; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&As[buf][kk][g * (BM / RG) + ty * 4]);
        av[g * 4 + 0] = v.x;
        av[g * 4 + 1] = v.y;
        av[g * 4 + 2] = v.z;
        av[g * 4 + 3] = v.w;
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[buf][kk][h * 64 + tx * 4]);
        bv[h * 4 + 0] = v.x;
        bv[h * 4 + 1] = v.y;
        bv[h * 4 + 2] = v.z;
        bv[h * 4 + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    if (has_next) store_shared(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }

  // Epilogue: threshold filter, exclusion, warp-aggregated append. Every lane runs every
  // iteration (the shuffles below need the whole warp); lanes 0-15 and 16-31 of a warp have
  // different ty, so each half-warp shares its query rows.
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int row = (i / 4) * (BM / RG) + ty * 4 + (i % 4);
    const int q = m0 + row;
    const bool row_ok = q < a.n_q;
    uint64_t thr = 0, upper = 0;
    float floor_s = 0.0f, qs = 1.0f;
    if (row_ok) {
      thr = a.thr[q];
      upper = a.upper[q];
      floor_s = key_floor(thr);
      if (a.q_inv) qs = a.q_inv[q];
    }
    unsigned mask = 0;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int col = (j / 4) * 64 + tx * 4 + (j % 4);
      const int x = n0 + col;
      if (row_ok && x < a.n_x) {
        float s = acc[i][j];
        if (a.x_inv) s = s * qs * a.x_inv[x];
        if (s >= floor_s) {  // false for NaN
          const uint32_t id = a.id_base + static_cast<uint32_t>(x);
          const uint64_t key = make_key(s, id);
          if (key > thr && key < upper &&
              !is_excluded(a.ex_indptr, a.ex_indices, a.q_abs0 + q, static_cast<int64_t>(id)))
            mask |= 1u << j;
        }
      }
    }
    const int cnt = __popc(mask);
    if (__any_sync(kFullMask, cnt != 0)) {
      int incl = cnt;
#pragma unroll
      for (int o = 1; o < 16; o <<= 1) {
        const int v = __shfl_up_sync(kFullMask, incl, o, 16);
        if (tx >= o) incl += v;
      }
      const int total = __shfl_sync(kFullMask, incl, 15, 16);
      unsigned base = 0;
      if (tx == 0 && total > 0) base = atomicAdd(a.cand_count + q, static_cast<unsigned>(total));
      base = __shfl_sync(kFullMask, base, 0, 16);
      if (cnt) {
        uint64_t* dst = a.cand + static_cast<int64_t>(q) * a.cand_stride;
        unsigned pos = base + static_cast<unsigned>(incl - cnt);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          if (mask & (1u << j)) {
            const int col = (j / 4) * 64 + tx * 4 + (j % 4);
            const int x = n0 + col;
            float s = acc[i][j];
            if (a.x_inv) s = s * qs * a.x_inv[x];
            dst[pos++] = make_key(s, a.id_base + static_cast<uint32_t>(x));
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Sort n (a power of two, <= kMergeCap) keys in shared memory, largest first. Ends synchronized.
__device__ void bitonic_sort_desc(uint64_t* s, int n) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
        const int i = 2 * t - (t & (stride - 1));
        const int j = i + stride;
        const bool desc = (i & size) == 0;
        const uint64_t x = s[i], y = s[j];
        if ((x < y) == desc && x != y) {
          s[i] = y;
          s[j] = x;
        }
      }
      __syncthreads();
    }
  }
}

__host__ __device__ inline int next_pow2(int v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

// One block per tile query. state: state_k keys per query, sorted descending (zeros = empty).
// Keeps the `keep` largest keys of state + queue (state_k >= keep; positions >= keep may hold
// further keys or zeros), sets thr to the keep-th largest (0 if there are fewer), empties the
// queue.
__global__ void __launch_bounds__(kThreads)
    merge_kernel(uint64_t* __restrict__ state, int state_k, int keep, uint64_t* __restrict__ thr,
                 const uint64_t* __restrict__ cand, int64_t cand_stride,
                 unsigned* __restrict__ cand_count) {
  __shared__ uint64_t sk[kMergeCap];
  __shared__ unsigned hist[256];
  __shared__ unsigned s_m, s_rem, s_count;
  __shared__ uint64_t s_prefix, s_mask;
  __shared__ int s_done;

  const int q = blockIdx.x;
  const int tid = threadIdx.x;
  if (tid == 0) s_m = cand_count[q];
  __syncthreads();
  const unsigned m = s_m;
  if (m == 0) return;               // uniform
  if (tid == 0) cand_count[q] = 0;  // only the next score launch reads it

  uint64_t* st = state + static_cast<int64_t>(q) * state_k;
  const uint64_t* cd = cand + static_cast<int64_t>(q) * cand_stride;
  const int64_t total = static_cast<int64_t>(state_k) + m;

  if (total <= kMergeCap) {
    const int n = next_pow2(static_cast<int>(total));
    for (int i = tid; i < n; i += blockDim.x)
      sk[i] = i < state_k ? st[i] : (i < total ? cd[i - state_k] : 0ull);
    __syncthreads();
    bitonic_sort_desc(sk, n);
    for (int i = tid; i < state_k; i += blockDim.x) st[i] = sk[i];
    if (tid == 0) thr[q] = sk[keep - 1];
    return;
  }

  // Radix select of the keep-th largest key of state + queue, 8 bits at a time from the top.
  // There are more than kMergeCap - state_k >= keep nonzero keys, so it is nonzero.
  auto key_at = [&](int64_t i) -> uint64_t { return i < state_k ? st[i] : cd[i - state_k]; };
  if (tid == 0) {
    s_prefix = 0;
    s_mask = 0;
    s_rem = static_cast<unsigned>(keep);
    s_done = 0;
  }
  __syncthreads();
  for (int shift = 56; shift >= 0; shift -= 8) {
    const uint64_t prefix = s_prefix, mask = s_mask;
    for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (int64_t i = tid; i < total; i += blockDim.x) {
      const uint64_t key = key_at(i);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xFF], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      unsigned above = 0, rem = s_rem;
      int d = 255;
      for (; d > 0; --d) {
        if (above + hist[d] >= rem) break;
        above += hist[d];
      }
      rem -= above;
      s_rem = rem;
      s_prefix = prefix | (static_cast<uint64_t>(d) << shift);
      s_mask = mask | (0xFFull << shift);
      s_done = hist[d] == rem;  // every key with this prefix is selected
    }
    __syncthreads();
    if (s_done) break;  // uniform
  }
  // Selected: exactly `keep` keys, those whose masked bits are >= the prefix.
  const uint64_t prefix = s_prefix, mask = s_mask;
  if (tid == 0) s_count = 0;
  __syncthreads();
  for (int64_t i = tid; i < total; i += blockDim.x) {
    const uint64_t key = key_at(i);
    if (key != 0 && (key & mask) >= prefix) {
      const unsigned p = atomicAdd(&s_count, 1u);
      if (p < static_cast<unsigned>(state_k)) sk[p] = key;
    }
  }
  __syncthreads();
  const int got = min(static_cast<int>(s_count), state_k);
  for (int i = got + tid; i < state_k; i += blockDim.x) sk[i] = 0;
  __syncthreads();
  bitonic_sort_desc(sk, state_k);
  for (int i = tid; i < state_k; i += blockDim.x) st[i] = sk[i];
  if (tid == 0) thr[q] = sk[keep - 1];
}

// One thread per (tile query, kept position): writes the pass's results into the output and,
// from the last position, the next pass's upper bound.
__global__ void finish_pass_kernel(const uint64_t* __restrict__ state, int state_k, int keep,
                                   uint64_t* __restrict__ upper, int n_q,
                                   float* __restrict__ out_scores, int64_t* __restrict__ out_ids,
                                   int64_t out_stride, int64_t col0) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= static_cast<int64_t>(n_q) * keep) return;
  const int q = static_cast<int>(t / keep), i = static_cast<int>(t % keep);
  const uint64_t key = state[static_cast<int64_t>(q) * state_k + i];
  float* os = out_scores + q * out_stride + col0 + i;
  int64_t* oi = out_ids + q * out_stride + col0 + i;
  if (key == 0) {
    *os = -__int_as_float(0x7f800000);
    *oi = -1;
  } else {
    *os = key_score(key);
    *oi = key_id(key);
  }
  if (i == keep - 1) upper[q] = key;  // 0 when this pass ran out: later passes find nothing
}

// Fill columns [col0, col1) of n_q rows with (-inf, -1).
__global__ void pad_kernel(float* __restrict__ out_scores, int64_t* __restrict__ out_ids,
                           int64_t out_stride, int64_t n_q, int64_t col0, int64_t col1) {
  const int64_t w = col1 - col0;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_q * w) return;
  const int64_t q = t / w, c = col0 + t % w;
  out_scores[q * out_stride + c] = -__int_as_float(0x7f800000);
  out_ids[q * out_stride + c] = -1;
}

}  // namespace cuda_kernels
}  // namespace recfast
