// recfast._core: marshalling only (bindings/include/recfast/bindings/toolkit.h). Validate
// buffers, allocate outputs holding the GIL, release the GIL for compute, and map C++ errors to
// Python exceptions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "recfast/bindings/toolkit.h"
#include "recfast/hw_probe.h"
#include "recfast/simd.h"
#include "recfast/test_hooks.h"
#include "recfast/topk.h"

namespace py = pybind11;

void register_index(py::module_& m);       // index_bindings.cpp
void register_score_rows(py::module_& m);  // score_bindings.cpp

namespace {

namespace rb = recfast::bindings;

py::tuple topk(const py::array& queries, const py::array& items, int64_t k,
               const std::string& metric, const py::object& excl_indptr,
               const py::object& excl_indices, int num_threads, int64_t batch_size) {
  const rb::Matrix q = rb::as_matrix(queries, "queries");
  const rb::Matrix x = rb::as_matrix(items, "items");
  rb::check_same_dim(q, x);
  rb::check_k(k);
  rb::check_num_threads(num_threads);
  rb::check_batch_size(batch_size, q.rows);
  recfast::TopkParams params;
  params.k = k;
  params.metric = rb::parse_metric(metric);
  params.num_threads = num_threads;
  params.batch_size = batch_size;
  params.exclude = rb::as_exclusion(excl_indptr, excl_indices, q.rows);  // ids in [0, n_items)
  params.should_stop = rb::python_signals();
  rb::TopkOutput out(q.rows, k);
  rb::run_without_gil([&] {
    recfast::topk_cpu(q.data, q.rows, q.row_stride, x.data, x.rows, x.row_stride, q.cols, params,
                      out.s, out.i);
  });
  return out.to_tuple();
}

void set_simd_level(const std::string& level) {
  const recfast::SimdLevel want = rb::parse_simd_level(level);
  if (recfast::set_level(want)) return;
  if (want == recfast::SimdLevel::AVX512Emulated)
    throw py::value_error(
        "level 'avx512_emulated' is not runnable here: it needs a build with "
        "RECFAST_SIMDE_TEST=ON and the avx2 level (this CPU, after RECFAST_SIMD: " +
        std::string(recfast::level_name(recfast::detect())) + ")");
  throw py::value_error("level '" + level + "' is above what this CPU supports (" +
                        recfast::level_name(recfast::detect()) + ")");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "recfast native core: fused exact top-k scan";
#ifdef RECFAST_VERSION
  m.attr("__version__") = RECFAST_VERSION;
#endif
  m.def("topk", &topk, py::arg("queries"), py::arg("items"), py::arg("k"), py::arg("metric"),
        py::arg("exclude_indptr"), py::arg("exclude_indices"), py::arg("num_threads"),
        py::arg("batch_size") = 0,
        "Exact top-k of queries against items; validated inputs only (see recfast.topk). "
        "batch_size: the size of the user's batch these queries belong to (0: this call's); it "
        "picks the scoring path, so that a query's scores do not depend on how a batch is split.");
  // A test hook (recfast/test_hooks.h), kept in the module because only the compiled pool can
  // show that a worker's exception reaches the caller (tests/test_topk_validation.py).
  m.def(
      "_raise_in_worker",
      [](int64_t n_tasks, int64_t failing_task, int num_threads) {
        rb::run_without_gil([&] { recfast::raise_in_worker(n_tasks, failing_task, num_threads); });
      },
      py::arg("n_tasks"), py::arg("failing_task"), py::arg("num_threads"),
      "Test hook: run n_tasks no-op tasks on the pool, one of which throws RuntimeError.");
  m.def(
      "simd_level", [] { return recfast::level_name(recfast::active_level()); },
      "The instruction set the kernels use now.");
  m.def(
      "scan_kernel", [] { return std::string(recfast::scan_kernel_name()); },
      "The float32 scan's kernel set now: the level's name, or 'avx512+avx2' where the "
      "AVX-512 level runs the AVX2 kernels for batches of up to 16 queries (measured faster on "
      "CPUs that split 512-bit operations).");
  m.def("_set_scan_mixing", &recfast::set_scan_mixing, py::arg("allowed"),
        "Test hook: False makes each level run only its own scan kernels; True restores the "
        "per-path choice.");
  m.def(
      "detected_simd_level", [] { return recfast::level_name(recfast::detect()); },
      "The best instruction set of this CPU, after RECFAST_SIMD.");
  m.def("set_simd_level", &set_simd_level, py::arg("level"),
        "Use a lower instruction set, or the test-only 'avx512_emulated', from now on (tests and "
        "benchmarks).");
  m.def(
      "_simd_levels",
      [] {
        py::list names;
        for (recfast::SimdLevel l : recfast::runnable_levels())
          names.append(recfast::level_name(l));
        return names;
      },
      "The levels set_simd_level accepts here, lowest first, then 'avx512_emulated' (the AVX-512 "
      "top-k kernels over SIMDe) in builds with RECFAST_SIMDE_TEST=ON.");
  m.def(
      "hw_floors",
      [](int64_t read_mib, int threads) {
        if (read_mib < 1) throw py::value_error("read_mib must be >= 1");
        rb::check_num_threads(threads);
        double read = 0, fma256 = 0, fma256_1 = 0, fma512 = 0, fma512_1 = 0, f16 = 0;
        rb::run_without_gil([&] {
          read = recfast::probe_read_gbs(static_cast<size_t>(read_mib) << 20, threads, 5);
          fma256_1 = recfast::probe_fma_gflops(256, 1);
          fma256 = recfast::probe_fma_gflops(256, threads);
          fma512_1 = recfast::probe_fma_gflops(512, 1);
          fma512 = recfast::probe_fma_gflops(512, threads);
          f16 = recfast::probe_f16_gfloats(threads);
        });
        py::dict d;
        d["threads"] = threads;
        d["read_gbs"] = read;
        d["fma256_gflops_1thread"] = fma256_1;
        d["fma256_gflops"] = fma256;
        d["fma512_gflops_1thread"] = fma512_1;
        d["fma512_gflops"] = fma512;
        d["f16_gfloats"] = f16;
        return d;
      },
      py::arg("read_mib"), py::arg("threads"),
      "Measured machine rates (a fraction of a second): streaming read GB/s over read_mib MiB, "
      "float32 FMA GFLOP/s with 256- and 512-bit vectors (1 thread and `threads`; 0 where the "
      "CPU lacks the width) and float16 conversions in billions per second.");
  // Batches of at most this many queries may score on another path or kernel set than a large
  // batch (topk.h; dispatch.h): callers that cut one batch into pieces pad the small pieces.
  m.attr("SMALL_BATCH_MAX") =
      std::max(recfast::kTopkDirectMaxQueries, recfast::kTopkNarrowSetMaxQueries);
  register_index(m);
  register_score_rows(m);
}
