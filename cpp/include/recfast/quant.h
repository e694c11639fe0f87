// recfast exact search from quantized item storage (int8 or float16): the C++ API, free of
// Python.
//
// Storage, per item j (row-major, contiguous rows of `dim` codes):
//  * Int8:    codes int8 in [-127, 127]; the decoded vector is x~ = scale[j] * codes.
//  * Float16: codes IEEE binary16 bits; x~ = scale[j] * codes with scale[j] a power of two (so a
//             vector of any finite float32 magnitude fits).
//  * err[j]:  an upper bound on |x - x~| (L2), x the float32 vector; norm[j]: an upper bound
//             on |x|.
//  * full:    the float32 vectors x (row stride full_stride), read only for the survivors.
//
// Let S be the score that the float32 path (recfast::topk_cpu) returns, q' the query as the
// float32 path sees it (cosine: q / |q|), u = 2^-24 and c = (4 dim + 64) u (quant_rel_slack).
// The scan computes, for each (query, item), a quantized score T and a certified radius r with
// S - r <= T <= S + r:
//
//  * Float16 (and int8 on the AVX-512 kernels without VNNI, or when dim > 65536):
//    T = scale * (q' . codes) in float32 and
//        r = |q'| * (err + c * (norm + err)) + abs_slack.
//    Cauchy-Schwarz gives |q'.x - q'.x~| <= |q'| |x - x~|, and c * |q'| (norm + err) covers, with
//    a wide margin, the float32 rounding of both dot products, of the query and item
//    normalization and of the bound's own arithmetic (each costs at most about (dim + 8) u
//    relative to |q'| |x~|).
//
//  * Int8: the query is quantized once: s_q = max_i |q'_i| / Q (a float), qi = round(q' / s_q)
//    in [-Q, Q] with Q = 63 for a few queries (the direct path) and Q = 31 for many (the packed
//    path, whose AVX2 kernel adds two vpmaddubsw results in int16), or Q = 127 on both paths of
//    the AVX-512 VNNI kernels (vpdpbusd adds the products in int32, no int16 step), q~ = s_q * qi
//    (real products), and eq >= |q' - q~| is computed in double and rounded up. The dot product
//    qi . codes is an exact integer (int32: |partial sums| <= 383 * 63 * dim, or 255 * 127 * dim
//    for VNNI, whose sums start at 0 and take the offset correction at the end: < 2^31 for
//    dim <= 65536), and
//        T = (s_q * scale) * float(qi . codes)          (float32, in this order)
//        r = |q'| * err + (eq + c * (|q'| + eq)) * (norm + err) + abs_slack.
//    Why: S - T = (S - q'.x) + q'.(x - x~) + (q' - q~).x~ + (q~.x~ - T), with
//    |q'.(x - x~)| <= |q'| err, |(q' - q~).x~| <= eq |x~| <= eq (norm + err) and |q~| <= |q'| + eq.
//    T differs from q~.x~ = s_q * scale * (qi . codes) by three float32 roundings (the int32 to
//    float conversion, exact below 2^24, and the two products): at most 3 u (1 + u)^2 |q~| |x~|.
//    The remaining terms are each at most a few u times (|q'| + eq)(norm + err): |S - q'.x| as
//    above (the float32 path's dot and normalizations, at most 2 (dim + 8) u), the float32
//    evaluation of r (norm + err and two fused multiply-adds or four operations: at most 5 u (1 +
//    c)) and of T + r, T - r (one rounding each, at most 2 u (2 + c)). Their sum, below
//    (2 dim + 30) u (1 + c), stays under c (|q'| + eq)(norm + err) = (4 dim + 64) u (...); the
//    integer scan's own dot product has no rounding at all. |q'| is the stored upper bound qnorm,
//    norm and err are stored rounded up, eq and the coefficient are rounded up from double.
//    Nothing here depends on Q: eq is measured on the quantization actually made, so any Q
//    whose integer dot products are exact gives a valid radius; a larger Q only makes eq, and
//    so the number of second looks, smaller.
//
//    An item whose integer bound reaches the running threshold (T + r >= tau, below) gets a
//    second look: it is scored as in the float16 case, T' = scale * (q' . codes) in float32 with
//    the float radius, and that pair is the one offered. The integer radius carries the query's
//    quantization error eq (norm + err), a few times the item's err (for d = 128 unit vectors
//    eq ~ 0.013 with Q = 63, 0.026 with Q = 31, 0.0065 with Q = 127, against err ~ 0.0065), so
//    the integer test alone would keep a few times more survivors to re-score; both pairs are
//    certified, so mixing them is sound.
//
// abs_slack covers underflow (e.g. s_q * scale below the normal range: the product then loses at
// most 2^-150 absolutely, times |qi . codes| <= 127 * 127 dim).
//
// Per query it keeps the k best lower bounds T - r seen so far; their worst is the running
// threshold tau. Every item whose upper bound T + r reaches tau is a candidate; tau only grows,
// so at the end the candidates hold every item whose true score can reach the k-th best true
// score. With `exact`, the candidates are re-scored by topk_cpu itself on the gathered float32
// rows (see quant_search), so the result is the float32 search's result bit for bit.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "recfast/topk.h"

namespace recfast {

enum class QuantType { Int8, Float16 };

struct QuantItems {
  QuantType type = QuantType::Int8;
  int64_t n = 0, dim = 0;
  const void* codes = nullptr;  // n * dim int8 or uint16 (binary16 bits), contiguous rows
  const float* scale = nullptr;
  const float* err = nullptr;
  const float* norm = nullptr;
  const float* full = nullptr;  // n rows of float32, needed when exact (unless full_fd)
  int64_t full_stride = 0;      // in floats
  // Alternatively a file descriptor holding the n contiguous float32 rows from byte full_offset:
  // the survivors are then read with pread, so a memory-mapped copy's pages are never mapped
  // into the process just to re-score a few rows (used when full_fd >= 0).
  int full_fd = -1;
  int64_t full_offset = 0;
  const uint64_t* row_hash = nullptr;  // optional: row_hash(full row j) checked before use
};

struct QuantSearchParams {
  int64_t k = 10;
  Metric metric = Metric::Cosine;
  int num_threads = 1;
  bool exact = true;
  Exclusion exclude;                  // CSR over queries of item positions (sorted rows)
  const uint8_t* allow = nullptr;     // optional: allow[j] != 0 marks item j eligible
  int64_t batch_size = 0;             // the user's whole batch (TopkParams::batch_size)
  std::function<bool()> should_stop;  // as in TopkParams
};

struct QuantSearchStats {
  int64_t candidates = 0;  // survivors summed over queries (re-scored when exact)
};

// Thrown when a float32 row read for re-scoring does not match its stored row hash.
struct CorruptRow : std::runtime_error {
  explicit CorruptRow(const std::string& what) : std::runtime_error(what) {}
};

// Top-k of each query (rows of `dim` floats at queries + r * query_stride) over the quantized
// items. Outputs as topk_cpu: n_queries * k scores and item positions, sorted, padded -1/-inf.
// With exact, the output equals topk_cpu(queries, full, ...) with the same metric and queries.
// Without exact, scores are the quantized scores T (approximate) and ids their top k.
// Queries must be finite and non-zero (the Python layer routes other rows to topk_cpu).
void quant_search(const float* queries, int64_t n_queries, int64_t query_stride,
                  const QuantItems& items, const QuantSearchParams& params, float* out_scores,
                  int64_t* out_ids, QuantSearchStats* stats);

// The 64-bit row checksum used by the index file: sum over i of bits(x[i]) * m_i mod 2^64, with
// m_i an odd constant per column (splitmix64(i) | 1). Any change of a single 32-bit word
// changes it.
uint64_t row_hash(const float* x, int64_t dim);

// Relative slack c of the certified radius for a dimension (see above).
float quant_rel_slack(int64_t dim);

// Absolute slack of the certified radius.
constexpr float kQuantAbsSlack = 1e-30f;

// The quantized-scan kernels. quant_search picks them from active_level() (simd.h): "generic",
// "avx2", "avx512", or "avx512_vnni" at the AVX512 level when the CPU has AVX512_VNNI. For tests:
// quant_kernel_names() lists the sets this build and CPU can run (with the test-only
// "avx512_vnni_emulated" of a RECFAST_SIMDE_TEST build), set_quant_kernel forces one of them
// (false, nothing changed, for any other name; "" returns to the automatic choice), and
// quant_kernel_name() says which set a search would use now.
const char* quant_kernel_name();
std::vector<std::string> quant_kernel_names();
bool set_quant_kernel(const std::string& name);

}  // namespace recfast
