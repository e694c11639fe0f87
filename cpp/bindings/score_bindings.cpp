// recfast._core bindings of recfast/score_rows.h: select_topk and the two score-row products.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>

#include "marshal.h"
#include "recfast/score_rows.h"

namespace py = pybind11;

namespace {

using recfast::marshal::as_int64_vector;
using recfast::marshal::as_matrix;
using recfast::marshal::Matrix;

std::function<bool()> python_signals() {
  return [] {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };
}

// Run fn with the GIL released; a Ctrl-C that cancelled it is re-raised.
template <class Fn>
void without_gil(const Fn& fn) {
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      fn();
    } catch (const recfast::Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) throw py::error_already_set();
}

py::tuple select_topk(const py::array& scores, int64_t k, const py::object& excl_indptr,
                      const py::object& excl_indices, int num_threads) {
  const Matrix s = as_matrix(scores, "scores");
  if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
  if (num_threads < 1) throw py::value_error("num_threads must be >= 1");
  recfast::SelectParams params;
  params.k = k;
  params.num_threads = num_threads;
  if (!excl_indptr.is_none()) {
    // The Python layer guarantees sorted rows and ids in [0, n_cols).
    params.exclude.indptr = as_int64_vector(excl_indptr, "exclude indptr", s.rows + 1);
    params.exclude.indices = as_int64_vector(excl_indices, "exclude indices", -1);
  }
  params.should_stop = python_signals();
  py::array_t<float> out_s({s.rows, k});
  py::array_t<int64_t> out_i({s.rows, k});
  float* os = out_s.mutable_data();
  int64_t* oi = out_i.mutable_data();
  without_gil([&] {
    recfast::select_topk_rows(s.data, s.rows, s.cols, s.row_stride, params, os, oi);
  });
  return py::make_tuple(std::move(out_s), std::move(out_i));
}

// The row stride (in floats) of `out`, which must be a writable float32 matrix with contiguous rows.
int64_t output_row_stride(py::array& out) {
  const auto bad = [] {
    return py::value_error("out must be a writable float32 matrix with contiguous rows");
  };
  if (out.dtype().kind() != 'f' || out.itemsize() != 4 || out.ndim() != 2 || !out.writeable())
    throw bad();
  if (out.shape(0) == 0 || out.shape(1) == 0) return out.shape(1);  // NumPy may give 0 strides
  if ((out.shape(1) > 1 && out.strides(1) != 4) || out.strides(0) % 4 != 0 ||
      (out.shape(0) > 1 && out.strides(0) < 4 * out.shape(1)))
    throw bad();
  return out.shape(0) > 1 ? out.strides(0) / 4 : out.shape(1);
}

void csr_dense_accumulate(const py::array& indptr, const py::array& indices,
                          const py::array& values, const py::array& dense, py::array& out,
                          int num_threads) {
  const Matrix d = as_matrix(dense, "dense");
  const int64_t os = output_row_stride(out);
  const int64_t n_rows = out.shape(0), n_cols = out.shape(1);
  if (d.cols != n_cols)
    throw py::value_error("dense has " + std::to_string(d.cols) + " columns but out has " +
                          std::to_string(n_cols));
  if (num_threads < 1) throw py::value_error("num_threads must be >= 1");
  const int64_t* ip = as_int64_vector(indptr, "indptr", n_rows + 1);
  const int64_t nnz = ip[n_rows];
  if (ip[0] != 0 || nnz < 0) throw py::value_error("indptr must start at 0");
  for (int64_t r = 0; r < n_rows; ++r)
    if (ip[r + 1] < ip[r]) throw py::value_error("indptr must be non-decreasing");
  const int64_t* ix = as_int64_vector(indices, "indices", nnz);
  if (values.dtype().kind() != 'f' || values.itemsize() != 4 || values.ndim() != 1 ||
      values.shape(0) != nnz || (nnz > 1 && values.strides(0) != 4))
    throw py::value_error("values must be a contiguous float32 vector of nnz entries");
  for (int64_t t = 0; t < nnz; ++t)
    if (ix[t] < 0 || ix[t] >= d.rows)
      throw py::value_error("indices hold " + std::to_string(ix[t]) + ", outside [0, " +
                            std::to_string(d.rows) + ")");
  const float* v = static_cast<const float*>(values.data());
  float* o = static_cast<float*>(out.mutable_data());
  const auto stop = python_signals();
  without_gil([&] {
    recfast::csr_dense_accumulate(ip, ix, v, n_rows, d.data, d.row_stride, n_cols, o, os,
                                  num_threads, stop);
  });
}

void dense_scores(const py::array& queries, const py::array& items, py::array& out,
                  int num_threads, const py::object& bias) {
  const Matrix q = as_matrix(queries, "queries");
  const Matrix x = as_matrix(items, "items");
  const int64_t os = output_row_stride(out);
  if (q.cols != x.cols)
    throw py::value_error("queries have " + std::to_string(q.cols) + " columns but items have " +
                          std::to_string(x.cols));
  if (out.shape(0) != q.rows || out.shape(1) != x.rows)
    throw py::value_error("out must have shape (n_queries, n_items)");
  if (num_threads < 1) throw py::value_error("num_threads must be >= 1");
  const float* b = nullptr;
  if (!bias.is_none()) {
    const Matrix bm = as_matrix(bias, "bias");
    if (bm.rows != 1 || bm.cols != x.rows)
      throw py::value_error("bias must have shape (1, n_items)");
    b = bm.data;
  }
  float* o = static_cast<float*>(out.mutable_data());
  const auto stop = python_signals();
  without_gil([&] {
    recfast::dense_scores(q.data, q.rows, q.row_stride, x.data, x.rows, x.row_stride, q.cols, b,
                          o, os, num_threads, stop);
  });
}

}  // namespace

void register_score_rows(py::module_& m) {
  m.def("select_topk", &select_topk, py::arg("scores"), py::arg("k"),
        py::arg("exclude_indptr"), py::arg("exclude_indices"), py::arg("num_threads"),
        "Top-k of each score row; validated inputs only (see recfast.select_topk).");
  m.def("csr_dense_accumulate", &csr_dense_accumulate, py::arg("indptr"), py::arg("indices"),
        py::arg("values"), py::arg("dense"), py::arg("out"), py::arg("num_threads"),
        "out += csr @ dense, the CSR given as int64 indptr/indices and float32 values.");
  m.def("dense_scores", &dense_scores, py::arg("queries"), py::arg("items"), py::arg("out"),
        py::arg("num_threads"), py::arg("bias") = py::none(),
        "out += queries @ items.T (or out = bias + queries @ items.T with bias of shape "
        "(1, n_items)), each product as topk's packed path computes a Dot score.");
}
