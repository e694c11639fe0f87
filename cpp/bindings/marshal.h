// Marshalling helpers shared by the extension modules (recfast._core, recfast._cuda): checks of
// NumPy buffers with messages naming the argument, and the metric's parsing. No copies: a
// buffer of the wrong layout is refused, and the Python layer converts it first.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "recfast/topk.h"

namespace recfast::marshal {

namespace py = pybind11;

// A float32 matrix whose rows are contiguous (column stride 4 bytes); any row stride.
struct Matrix {
  const float* data;
  int64_t rows, cols, row_stride;
};

inline Matrix as_matrix(const py::array& a, const char* name) {
  if (a.dtype().kind() != 'f' || a.itemsize() != 4)
    throw py::type_error(std::string(name) + " must be a float32 array, got dtype " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 2)
    throw py::value_error(std::string(name) + " must be 2-D, got " + std::to_string(a.ndim()) +
                          " dimensions");
  const int64_t rows = a.shape(0), cols = a.shape(1);
  const int64_t s0 = a.strides(0), s1 = a.strides(1);
  if ((cols > 1 && s1 != 4) || s0 < 0 || s0 % 4 != 0)  // overlapping rows are fine: read only
    throw py::value_error(std::string(name) +
                          " rows must be contiguous float32 with a positive row stride; "
                          "try numpy.ascontiguousarray");
  return {static_cast<const float*>(a.data()), rows, cols, rows > 1 ? s0 / 4 : cols};
}

// A contiguous 1-D int64 array of expect_len entries (any length when expect_len < 0).
inline const int64_t* as_int64_vector(const py::array& a, const char* name, int64_t expect_len) {
  if (a.dtype().kind() != 'i' || a.itemsize() != 8 || a.ndim() != 1 ||
      (a.shape(0) > 1 && a.strides(0) != 8))
    throw py::type_error(std::string(name) + " must be a contiguous 1-D int64 array");
  if (expect_len >= 0 && a.shape(0) != expect_len)
    throw py::value_error(std::string(name) + " must have " + std::to_string(expect_len) +
                          " entries");
  return static_cast<const int64_t*>(a.data());
}

inline Metric parse_metric(const std::string& metric) {
  if (metric == "cosine") return Metric::Cosine;
  if (metric == "dot") return Metric::Dot;
  throw py::value_error("metric must be 'cosine' or 'dot', got '" + metric + "'");
}

}  // namespace recfast::marshal
