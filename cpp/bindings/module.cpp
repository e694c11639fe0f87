// recfast._core: marshalling only. Validate buffers, allocate outputs holding the GIL, release
// the GIL for compute, and map C++ errors to Python exceptions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>

#include "../src/thread_pool.h"
#include "marshal.h"
#include "recfast/simd.h"
#include "recfast/topk.h"

namespace py = pybind11;

void register_index(py::module_& m);        // index_bindings.cpp
void register_score_rows(py::module_& m);  // score_bindings.cpp

namespace {

using recfast::marshal::as_int64_vector;
using recfast::marshal::as_matrix;
using recfast::marshal::Matrix;

recfast::SimdLevel parse_level(const std::string& s) {
  if (s == "generic") return recfast::SimdLevel::Generic;
  if (s == "avx2") return recfast::SimdLevel::AVX2;
  if (s == "avx512") return recfast::SimdLevel::AVX512;
  if (s == "avx512_emulated") return recfast::SimdLevel::AVX512Emulated;
  throw py::value_error("level must be 'generic', 'avx2', 'avx512' or (test builds) "
                        "'avx512_emulated', got '" + s + "'");
}

py::tuple topk(const py::array& queries, const py::array& items, int64_t k,
               const std::string& metric, const py::object& excl_indptr,
               const py::object& excl_indices, int num_threads, int64_t batch_size) {
  const Matrix q = as_matrix(queries, "queries");
  const Matrix x = as_matrix(items, "items");
  if (q.cols != x.cols)
    throw py::value_error("queries have " + std::to_string(q.cols) + " columns but items have " +
                          std::to_string(x.cols));
  if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
  if (num_threads < 1) throw py::value_error("num_threads must be >= 1");
  recfast::TopkParams params;
  params.k = k;
  params.metric = recfast::marshal::parse_metric(metric);
  params.num_threads = num_threads;
  if (batch_size < 0 || (batch_size > 0 && batch_size < q.rows))
    throw py::value_error("batch_size must be 0 or at least the number of queries");
  params.batch_size = batch_size;
  if (!excl_indptr.is_none()) {
    // The Python layer guarantees sorted rows and ids in [0, n_items).
    params.exclude.indptr = as_int64_vector(excl_indptr, "exclude indptr", q.rows + 1);
    params.exclude.indices = as_int64_vector(excl_indices, "exclude indices", -1);
  }
  params.should_stop = [] {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };

  py::array_t<float> scores({q.rows, k});
  py::array_t<int64_t> ids({q.rows, k});
  float* s = scores.mutable_data();
  int64_t* i = ids.mutable_data();
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      recfast::topk_cpu(q.data, q.rows, q.row_stride, x.data, x.rows, x.row_stride, q.cols,
                        params, s, i);
    } catch (const recfast::Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) throw py::error_already_set();  // the signal handler's exception is set
  return py::make_tuple(std::move(scores), std::move(ids));
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
  m.def(
      "_raise_in_worker",
      [](int64_t n_tasks, int64_t failing_task, int num_threads) {
        // Exercises the pool's error path: task `failing_task` throws on a worker thread.
        py::gil_scoped_release release;
        recfast::parallel_for(
            n_tasks, num_threads,
            [failing_task](int64_t task, int) {
              if (task == failing_task)
                throw std::runtime_error("task " + std::to_string(task) + " failed");
            },
            nullptr);
      },
      py::arg("n_tasks"), py::arg("failing_task"), py::arg("num_threads"),
      "Test hook: run n_tasks no-op tasks on the pool, one of which throws RuntimeError.");
  m.def("simd_level", [] { return recfast::level_name(recfast::active_level()); },
        "The instruction set the kernels use now.");
  m.def("detected_simd_level", [] { return recfast::level_name(recfast::detect()); },
        "The best instruction set of this CPU, after RECFAST_SIMD.");
  m.def(
      "set_simd_level",
      [](const std::string& level) {
        const recfast::SimdLevel want = parse_level(level);
        if (recfast::set_level(want)) return;
        if (want == recfast::SimdLevel::AVX512Emulated)
          throw py::value_error(
              "level 'avx512_emulated' is not runnable here: it needs a build with "
              "RECFAST_SIMDE_TEST=ON and the avx2 level (this CPU, after RECFAST_SIMD: " +
              std::string(recfast::level_name(recfast::detect())) + ")");
        throw py::value_error("level '" + level + "' is above what this CPU supports (" +
                              recfast::level_name(recfast::detect()) + ")");
      },
      py::arg("level"),
      "Use a lower instruction set, or the test-only 'avx512_emulated', from now on (tests and "
      "benchmarks).");
  m.def(
      "_simd_levels",
      [] {
        py::list names;
        for (recfast::SimdLevel l : recfast::runnable_levels()) names.append(recfast::level_name(l));
        return names;
      },
      "The levels set_simd_level accepts here, lowest first, then 'avx512_emulated' (the AVX-512 "
      "top-k kernels over SIMDe) in builds with RECFAST_SIMDE_TEST=ON.");
  register_index(m);
  register_score_rows(m);
}
