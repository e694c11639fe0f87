// recfast._core bindings of recfast/score_rows.h: select_topk and the two score-row products.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>

#include "recfast/bindings/toolkit.h"
#include "recfast/score_rows.h"

namespace py = pybind11;

namespace {

namespace rb = recfast::bindings;
using rb::as_int64_vector;
using rb::as_matrix;
using rb::Matrix;

py::tuple select_topk(const py::array& scores, int64_t k, const py::object& excl_indptr,
                      const py::object& excl_indices, int num_threads) {
  const Matrix s = as_matrix(scores, "scores");
  rb::check_k(k);
  rb::check_num_threads(num_threads);
  recfast::SelectParams params;
  params.k = k;
  params.num_threads = num_threads;
  params.exclude = rb::as_exclusion(excl_indptr, excl_indices, s.rows);  // ids in [0, n_cols)
  params.should_stop = rb::python_signals();
  rb::TopkOutput out(s.rows, k);
  rb::run_without_gil([&] {
    recfast::select_topk_rows(s.data, s.rows, s.cols, s.row_stride, params, out.s, out.i);
  });
  return out.to_tuple();
}

void csr_dense_accumulate(const py::array& indptr, const py::array& indices,
                          const py::array& values, const py::array& dense, py::array& out,
                          int num_threads) {
  const Matrix d = as_matrix(dense, "dense");
  const int64_t os = rb::output_row_stride(out);
  const int64_t n_rows = out.shape(0), n_cols = out.shape(1);
  if (d.cols != n_cols)
    throw py::value_error("dense has " + std::to_string(d.cols) + " columns but out has " +
                          std::to_string(n_cols));
  rb::check_num_threads(num_threads);
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
  const auto stop = rb::python_signals();
  rb::run_without_gil([&] {
    recfast::csr_dense_accumulate(ip, ix, v, n_rows, d.data, d.row_stride, n_cols, o, os,
                                  num_threads, stop);
  });
}

void dense_scores(const py::array& queries, const py::array& items, py::array& out, int num_threads,
                  const py::object& bias) {
  const Matrix q = as_matrix(queries, "queries");
  const Matrix x = as_matrix(items, "items");
  const int64_t os = rb::output_row_stride(out);
  rb::check_same_dim(q, x);
  if (out.shape(0) != q.rows || out.shape(1) != x.rows)
    throw py::value_error("out must have shape (n_queries, n_items)");
  rb::check_num_threads(num_threads);
  const float* b = nullptr;
  if (!bias.is_none()) {
    const Matrix bm = as_matrix(bias, "bias");
    if (bm.rows != 1 || bm.cols != x.rows)
      throw py::value_error("bias must have shape (1, n_items)");
    b = bm.data;
  }
  float* o = static_cast<float*>(out.mutable_data());
  const auto stop = rb::python_signals();
  rb::run_without_gil([&] {
    recfast::dense_scores(q.data, q.rows, q.row_stride, x.data, x.rows, x.row_stride, q.cols, b, o,
                          os, num_threads, stop);
  });
}

}  // namespace

void register_score_rows(py::module_& m) {
  m.def("select_topk", &select_topk, py::arg("scores"), py::arg("k"), py::arg("exclude_indptr"),
        py::arg("exclude_indices"), py::arg("num_threads"),
        "Top-k of each score row; validated inputs only (see recfast.select_topk).");
  m.def("csr_dense_accumulate", &csr_dense_accumulate, py::arg("indptr"), py::arg("indices"),
        py::arg("values"), py::arg("dense"), py::arg("out"), py::arg("num_threads"),
        "out += csr @ dense, the CSR given as int64 indptr/indices and float32 values.");
  m.def("dense_scores", &dense_scores, py::arg("queries"), py::arg("items"), py::arg("out"),
        py::arg("num_threads"), py::arg("bias") = py::none(),
        "out += queries @ items.T (or out = bias + queries @ items.T with bias of shape "
        "(1, n_items)), each product as topk's packed path computes a Dot score.");
}
