// recfast._core index functions (ItemIndex's native half): marshalling only. Registered from
// module.cpp by register_index(m).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <utility>

#include "recfast/bindings/toolkit.h"
#include "recfast/quant.h"
#include "recfast/topk.h"

namespace py = pybind11;

namespace {

namespace rb = recfast::bindings;
using rb::c_matrix;
using rb::c_vector;

py::tuple quant_search(const py::array& queries, const std::string& quant_type,
                       const py::array& codes, const py::array& scale, const py::array& err,
                       const py::array& norm, const py::object& full, const py::object& row_hash,
                       int64_t k, const std::string& metric, bool exact,
                       const py::object& excl_indptr, const py::object& excl_indices,
                       const py::object& allow, int num_threads, int vectors_fd,
                       int64_t vectors_offset, int64_t batch_size) {
  if (queries.ndim() != 2 || queries.dtype().kind() != 'f' || queries.itemsize() != 4)
    throw py::type_error("queries must be a 2-D float32 array");
  const int64_t b = queries.shape(0), dim = queries.shape(1);
  if (dim > 0 && b > 1 && (queries.strides(1) != 4 || queries.strides(0) % 4 != 0))
    throw py::value_error("queries rows must be contiguous float32");
  const int64_t qstride = b > 1 ? queries.strides(0) / 4 : dim;
  if (codes.ndim() != 2) throw py::type_error("codes must be 2-D");
  const int64_t n = codes.shape(0);
  recfast::QuantItems it;
  it.type = rb::parse_quant_type(quant_type);
  it.n = n;
  it.dim = dim;
  it.codes = c_matrix(codes, "codes", it.type == recfast::QuantType::Int8 ? 1 : 2, n, dim);
  it.scale = static_cast<const float*>(c_vector(scale, "scale", 4, n));
  it.err = static_cast<const float*>(c_vector(err, "err", 4, n));
  it.norm = static_cast<const float*>(c_vector(norm, "norm", 4, n));
  if (!full.is_none()) {
    py::array f = full;
    it.full = static_cast<const float*>(c_matrix(f, "vectors", 4, n, dim));
    it.full_stride = dim;
  }
  if (vectors_fd >= 0 && exact) {
    it.full = nullptr;
    it.full_fd = vectors_fd;
    it.full_offset = vectors_offset;
  }
  if (!row_hash.is_none())
    it.row_hash = static_cast<const uint64_t*>(c_vector(row_hash, "row_hash", 8, n));
  rb::check_k(k);
  rb::check_num_threads(num_threads);
  rb::check_batch_size(batch_size, b);
  recfast::QuantSearchParams params;
  params.k = k;
  params.metric = rb::parse_metric(metric);
  params.num_threads = num_threads;
  params.exact = exact;
  params.batch_size = batch_size;
  if (!excl_indptr.is_none()) {
    params.exclude.indptr =
        static_cast<const int64_t*>(c_vector(excl_indptr, "exclude indptr", 8, b + 1));
    py::array ind = excl_indices;
    params.exclude.indices = static_cast<const int64_t*>(ind.data());
  }
  if (!allow.is_none()) params.allow = static_cast<const uint8_t*>(c_vector(allow, "allow", 1, n));
  params.should_stop = rb::python_signals();
  rb::TopkOutput out(b, k);
  recfast::QuantSearchStats stats;
  rb::run_without_gil([&] {
    recfast::quant_search(static_cast<const float*>(queries.data()), b, qstride, it, params, out.s,
                          out.i, &stats);
  });
  return py::make_tuple(std::move(out.scores), std::move(out.ids), stats.candidates);
}

py::array_t<uint64_t> row_hashes(const py::array& x) {
  if (x.ndim() != 2 || x.itemsize() != 4 || x.dtype().kind() != 'f')
    throw py::type_error("x must be a 2-D float32 array");
  const int64_t n = x.shape(0), dim = x.shape(1);
  const float* p = static_cast<const float*>(c_matrix(x, "x", 4, n, dim));
  py::array_t<uint64_t> out(n);
  uint64_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    for (int64_t j = 0; j < n; ++j) o[j] = recfast::row_hash(p + j * dim, dim);
  }
  return out;
}

}  // namespace

void register_index(py::module_& m) {
  m.def("quant_search", &quant_search, py::arg("queries"), py::arg("quant_type"), py::arg("codes"),
        py::arg("scale"), py::arg("err"), py::arg("norm"), py::arg("vectors"), py::arg("row_hash"),
        py::arg("k"), py::arg("metric"), py::arg("exact"), py::arg("exclude_indptr"),
        py::arg("exclude_indices"), py::arg("allow"), py::arg("num_threads"),
        py::arg("vectors_fd") = -1, py::arg("vectors_offset") = 0, py::arg("batch_size") = 0,
        "Top-k over quantized items with a certified bound; exact re-scores the survivors "
        "(validated inputs only, see recfast.ItemIndex). With vectors_fd >= 0 the survivors' "
        "float32 rows "
        "are read with pread from that descriptor at vectors_offset. batch_size: the user's "
        "whole batch when these queries are part of it (it picks the float32 scoring path). "
        "Returns (scores, positions, candidates).");
  m.def("row_hashes", &row_hashes, py::arg("x"), "The index file's 64-bit checksum of each row.");
  m.def(
      "quant_kernel", [] { return std::string(recfast::quant_kernel_name()); },
      "The quantized-scan kernel set ItemIndex searches use now (e.g. 'avx512_vnni').");
  m.def("_quant_kernels", &recfast::quant_kernel_names,
        "Tests: the quantized-scan kernel sets this build and CPU can run.");
  m.def(
      "_set_quant_kernel",
      [](const std::string& name) {
        if (!recfast::set_quant_kernel(name))
          throw py::value_error("quant kernel '" + name + "' is not built or not runnable here");
      },
      py::arg("name"), "Tests: force a quantized-scan kernel set; '' for the automatic choice.");
}
