// Top-k over precomputed score rows and the CSR x dense accumulation (recfast/score_rows.h).
#include "recfast/score_rows.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "recfast/heap.h"
#include "rows/row_kernels.h"
#include "runtime/dispatch.h"
#include "runtime/task_grid.h"

namespace recfast {
namespace {

// Below this many elements a call runs on the calling thread: waking workers costs more.
constexpr int64_t kInlineMaxElements = 1 << 20;
// Output columns per task of the accumulation (1 KiB of an output row, kept in L1).
constexpr int64_t kAccumulateColumns = 256;

// Run fn(first_row, last_row) over row blocks, on the pool when the work is large enough.
template <class Fn>
void for_row_blocks(int64_t n_rows, double work_per_row, int num_threads,
                    const std::function<bool()>& should_stop, const Fn& fn) {
  const int threads = std::max(1, num_threads);
  const bool on_caller = n_rows * work_per_row < kInlineMaxElements;
  const int64_t n_tasks = on_caller ? 1 : std::min<int64_t>(n_rows, threads * kTasksPerThread);
  // The rows take the grid's query side; there is one item chunk.
  const TaskGrid grid(n_rows, (n_rows + n_tasks - 1) / n_tasks, 0, 1, 1);
  TaskRunner runner(grid.size(), threads, on_caller, 0);
  runner.run(
      [&](int64_t task, float*) {
        const TaskCell cell = grid.cell(task);
        fn(cell.q0, cell.q1);
      },
      should_stop);
}

}  // namespace

// Selection keeps candidates in a buffer instead of a heap: rows are short (all items of a
// model, thousands) and k can be large, so on such rows a heap spends most of its time sifting
// (k ln(n / k) insertions of log k steps each). Once the buffer fills, nth_element keeps its k
// best and their worst becomes the bar the rest of the row must beat; the scan in between is a
// single compare per column. The order is recfast/heap.h's `better` (score descending, then
// id ascending), so the result is the same as the heap's.
namespace {

using Entry = RowEntry;

// A function object, not a function pointer, so that nth_element and sort inline it.
struct EntryBetter {
  bool operator()(const Entry& a, const Entry& b) const {
    return better(a.score, a.id, b.score, b.id);
  }
};
constexpr EntryBetter entry_better{};

typedef float Lane8 __attribute__((vector_size(32)));
typedef int32_t Mask8 __attribute__((vector_size(32)));

// Bit i set when x[i] >= bar (never for NaN): in the AVX2 build one compare and one movemask.
inline unsigned reach_mask(const float* x, float bar) {
  Lane8 v;
  std::memcpy(&v, x, sizeof v);
  const Mask8 m = v >= (Lane8{} + bar);
  unsigned bits = 0;
  for (int i = 0; i < 8; ++i) bits |= static_cast<unsigned>(m[i] & 1) << i;
  return bits;
}

// The scan of one row: candidates that pass `bar` go to the buffer (cut to the k best when
// full). With have_bar the test is s > bar (after a cut), else s >= floor (NaN always fails).
// Returns the number of candidates kept in buf[0, used). Columns are tested eight at a time
// against the bar (s >= bar covers both tests) and only those that reach it are looked at.
__attribute__((always_inline)) inline size_t scan_row_body(const float* row, int64_t n, int64_t k,
                                                           const int64_t* e, const int64_t* e_end,
                                                           float floor, std::vector<Entry>& buf) {
  const size_t cap = buf.size();
  size_t used = 0;
  bool have_bar = false;
  float bar = floor;
  auto consider = [&](int64_t j) {
    const float s = row[j];
    // Columns come in increasing id order, so a later column equal to the k-th best loses.
    if (have_bar ? !(s > bar) : !(s >= bar)) return;
    if (e != e_end) {
      while (e != e_end && *e < j) ++e;
      if (e != e_end && *e == j) return;
    }
    buf[used++] = Entry{s, j};
    if (used == cap) {
      std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end(), entry_better);
      used = static_cast<size_t>(k);
      bar = buf[k - 1].score;
      have_bar = true;
    }
  };
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (unsigned bits = reach_mask(row + j, bar); bits != 0; bits &= bits - 1)
      consider(j + __builtin_ctz(bits));
  for (; j < n; ++j) consider(j);
  return used;
}

// The two builds of each hot loop here (the body inlined into each): portable, and compiled for
// AVX2 (without FMA: accumulate_row must not contract its multiply and add). The dispatch
// (runtime/dispatch.h) picks one set per call, so RECFAST_SIMD and set_simd_level govern them
// as they do the scan kernels; results do not depend on the choice.
using ScanRowFn = decltype(RowKernelSet::scan_row);
size_t scan_row_generic(const float* row, int64_t n, int64_t k, const int64_t* e,
                        const int64_t* e_end, float floor, std::vector<Entry>& buf) {
  return scan_row_body(row, n, k, e, e_end, floor, buf);
}
#ifndef RECFAST_NO_X86_KERNELS
__attribute__((target("avx2"))) size_t scan_row_avx2(const float* row, int64_t n, int64_t k,
                                                     const int64_t* e, const int64_t* e_end,
                                                     float floor, std::vector<Entry>& buf) {
  return scan_row_body(row, n, k, e, e_end, floor, buf);
}
#endif

// A starting floor for long rows: the value that about 2k columns reach, estimated from a
// strided sample, so the scan admits few columns and rarely cuts. It is only a guess: if fewer
// than k eligible columns reach it the row is scanned again without it. -inf when not worth it.
float sampled_floor(const float* row, int64_t n, int64_t k, std::vector<float>& sample) {
  constexpr int64_t kSample = 256;
  if (n < 4 * kSample || n < 8 * k) return -std::numeric_limits<float>::infinity();
  const int64_t rank = 2 * k * kSample / n;  // 2k of n columns ~ rank of kSample samples
  if (rank < 1 || rank > kSample / 4) return -std::numeric_limits<float>::infinity();
  sample.clear();
  const int64_t stride = n / kSample;
  for (int64_t i = 0; i < kSample; ++i) {
    const float v = row[i * stride];
    if (v == v) sample.push_back(v);
  }
  if (static_cast<int64_t>(sample.size()) <= rank) return -std::numeric_limits<float>::infinity();
  std::nth_element(sample.begin(), sample.begin() + (rank - 1), sample.end(),
                   [](float a, float b) { return a > b; });
  return sample[rank - 1];
}

void select_row(ScanRowFn scan_row, const float* row, int64_t n, int64_t k, const int64_t* e,
                const int64_t* e_end, std::vector<Entry>& buf, std::vector<float>& sample,
                float* out_scores, int64_t* out_ids) {
  const float floor = sampled_floor(row, n, k, sample);
  size_t used = scan_row(row, n, k, e, e_end, floor, buf);
  // Fewer than k columns reached the guessed floor: the k best may lie below it.
  if (used < static_cast<size_t>(k) && floor != -std::numeric_limits<float>::infinity())
    used = scan_row(row, n, k, e, e_end, -std::numeric_limits<float>::infinity(), buf);
  const size_t keep = std::min(used, static_cast<size_t>(k));
  if (used > keep)
    std::nth_element(buf.begin(), buf.begin() + (keep - 1), buf.begin() + used, entry_better);
  std::sort(buf.begin(), buf.begin() + keep, entry_better);
  for (size_t i = 0; i < keep; ++i) {
    out_scores[i] = buf[i].score;
    out_ids[i] = buf[i].id;
  }
  std::fill(out_scores + keep, out_scores + k, -std::numeric_limits<float>::infinity());
  std::fill(out_ids + keep, out_ids + k, int64_t{-1});
}

}  // namespace

void select_topk_rows(const float* scores, int64_t n_rows, int64_t n_cols, int64_t stride,
                      const SelectParams& params, float* out_scores, int64_t* out_ids) {
  const int64_t k = params.k;
  if (k < 1) throw std::invalid_argument("k must be >= 1");
  if (n_rows < 0 || n_cols < 0) throw std::invalid_argument("negative size");
  const Exclusion ex = params.exclude;
  // A buffer of 2k (at least 64) entries: each cut then admits at least k more candidates.
  // (n_cols + 1 when smaller: the buffer then never fills).
  const size_t cap =
      static_cast<size_t>(std::min<int64_t>(std::max<int64_t>(2 * k, 64), n_cols + 1));
  const ScanRowFn scan_row = row_kernels().scan_row;
  auto rows = [&](int64_t r0, int64_t r1) {
    std::vector<Entry> buf(cap);
    std::vector<float> sample;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t* e = ex.empty() ? nullptr : ex.indices + ex.indptr[r];
      const int64_t* e_end = ex.empty() ? nullptr : ex.indices + ex.indptr[r + 1];
      select_row(scan_row, scores + r * stride, n_cols, k, e, e_end, buf, sample,
                 out_scores + r * k, out_ids + r * k);
    }
  };
  for_row_blocks(n_rows, static_cast<double>(n_cols), params.num_threads, params.should_stop, rows);
}

namespace {

// One output row slice o[0, w) += the terms of one CSR row, four terms per pass so that o stays
// in registers: each element still adds its terms one by one in CSR order after its initial
// value (one rounded multiply and one rounded add each, as a plain loop), so results do not
// depend on threads or instruction set. Two builds, as scan_row.
__attribute__((always_inline)) inline void accumulate_row_body(float* __restrict o, int64_t w,
                                                               const int64_t* idx, const float* val,
                                                               int64_t n_terms, const float* dense,
                                                               int64_t dense_stride) {
  int64_t t = 0;
  for (; t + 4 <= n_terms; t += 4) {
    const float* __restrict b0 = dense + idx[t] * dense_stride;
    const float* __restrict b1 = dense + idx[t + 1] * dense_stride;
    const float* __restrict b2 = dense + idx[t + 2] * dense_stride;
    const float* __restrict b3 = dense + idx[t + 3] * dense_stride;
    const float v0 = val[t], v1 = val[t + 1], v2 = val[t + 2], v3 = val[t + 3];
    for (int64_t c = 0; c < w; ++c) {
      float a = o[c];
      a += v0 * b0[c];
      a += v1 * b1[c];
      a += v2 * b2[c];
      a += v3 * b3[c];
      o[c] = a;
    }
  }
  for (; t < n_terms; ++t) {
    const float* __restrict b = dense + idx[t] * dense_stride;
    const float v = val[t];
    for (int64_t c = 0; c < w; ++c) o[c] += v * b[c];
  }
}

void accumulate_row_generic(float* o, int64_t w, const int64_t* idx, const float* val,
                            int64_t n_terms, const float* dense, int64_t dense_stride) {
  accumulate_row_body(o, w, idx, val, n_terms, dense, dense_stride);
}
#ifndef RECFAST_NO_X86_KERNELS
__attribute__((target("avx2"))) void accumulate_row_avx2(float* o, int64_t w, const int64_t* idx,
                                                         const float* val, int64_t n_terms,
                                                         const float* dense, int64_t dense_stride) {
  accumulate_row_body(o, w, idx, val, n_terms, dense, dense_stride);
}
#endif

const RowKernelSet kRowsGeneric = {"generic", &scan_row_generic, &accumulate_row_generic};
#ifndef RECFAST_NO_X86_KERNELS
const RowKernelSet kRowsAvx2 = {"avx2", &scan_row_avx2, &accumulate_row_avx2};
#endif

}  // namespace

const RowKernelSet* row_kernels_generic() { return &kRowsGeneric; }
#ifndef RECFAST_NO_X86_KERNELS
const RowKernelSet* row_kernels_avx2() { return &kRowsAvx2; }
#else
const RowKernelSet* row_kernels_avx2() { return nullptr; }
#endif

void csr_dense_accumulate(const int64_t* indptr, const int64_t* indices, const float* values,
                          int64_t n_rows, const float* dense, int64_t dense_stride, int64_t n_cols,
                          float* out, int64_t out_stride, int num_threads,
                          const std::function<bool()>& should_stop) {
  if (n_rows <= 0 || n_cols <= 0) return;
  const double nnz = static_cast<double>(indptr[n_rows] - indptr[0]);
  // Tasks are column blocks over all rows: a block of the dense rows (n_dense x 1 KiB, 3.5 MiB
  // at 3,500 rows) is then read from memory once per call and served from cache to every
  // output row, where row-block tasks would each stream the whole dense matrix again.
  const int64_t n_blocks = (n_cols + kAccumulateColumns - 1) / kAccumulateColumns;
  const auto accumulate_row = row_kernels().accumulate_row;
  auto blocks = [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * kAccumulateColumns;
      const int64_t w = std::min(kAccumulateColumns, n_cols - c0);
      for (int64_t r = 0; r < n_rows; ++r)
        accumulate_row(out + r * out_stride + c0, w, indices + indptr[r], values + indptr[r],
                       indptr[r + 1] - indptr[r], dense + c0, dense_stride);
    }
  };
  for_row_blocks(n_blocks, (nnz + n_rows) * kAccumulateColumns, num_threads, should_stop, blocks);
}

}  // namespace recfast
