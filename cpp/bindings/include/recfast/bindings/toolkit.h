// The binding toolkit shared by the extension modules (recfast._core, recfast._cuda): views of
// NumPy buffers with checks whose messages name the argument, output allocation, the argument
// checks every call repeats, the enum parsers, the Ctrl-C poll and run_without_gil. No copies: a
// buffer of the wrong layout is refused, and the Python layer converts it first.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "recfast/interrupted.h"
#include "recfast/quant.h"
#include "recfast/simd.h"
#include "recfast/topk.h"

namespace recfast::bindings {

namespace py = pybind11;

// ---- views ----------------------------------------------------------------------------------

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
  // Overlapping rows are fine (read only); a single row's stride is never used (numpy calls a
  // reversed one-row view contiguous, so ascontiguousarray keeps its negative stride).
  if ((cols > 1 && s1 != 4) || (rows > 1 && (s0 < 0 || s0 % 4 != 0)))
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

// A C-contiguous 2-D array of the given item size and shape; returns its data pointer.
inline const void* c_matrix(const py::array& a, const char* name, ssize_t itemsize, ssize_t rows,
                            ssize_t cols) {
  if (a.ndim() != 2 || a.itemsize() != itemsize)
    throw py::type_error(std::string(name) + " must be a 2-D array of " + std::to_string(itemsize) +
                         "-byte elements");
  if (a.shape(0) != rows || a.shape(1) != cols)
    throw py::value_error(std::string(name) + " has the wrong shape");
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  return a.data();
}

// A contiguous 1-D array of `len` elements of the given item size; returns its data pointer.
inline const void* c_vector(const py::array& a, const char* name, ssize_t itemsize, ssize_t len) {
  if (a.ndim() != 1 || a.itemsize() != itemsize || a.shape(0) != len)
    throw py::type_error(std::string(name) + " must be a 1-D array of " + std::to_string(len) +
                         " " + std::to_string(itemsize) + "-byte elements");
  if (len > 1 && a.strides(0) != itemsize)
    throw py::value_error(std::string(name) + " must be contiguous");
  return a.data();
}

// The row stride (in floats) of `out`, which must be a writable float32 matrix with contiguous
// rows.
inline int64_t output_row_stride(py::array& out) {
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

// ---- outputs --------------------------------------------------------------------------------

// A top-k result: rows x k scores and ids, allocated holding the GIL; s and i are written
// without it.
struct TopkOutput {
  py::array_t<float> scores;
  py::array_t<int64_t> ids;
  float* s;
  int64_t* i;

  TopkOutput(int64_t rows, int64_t k) : scores({rows, k}), ids({rows, k}) {
    s = scores.mutable_data();
    i = ids.mutable_data();
  }
  py::tuple to_tuple() { return py::make_tuple(std::move(scores), std::move(ids)); }
};

// ---- argument checks ------------------------------------------------------------------------

inline void check_k(int64_t k) {
  if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
}

inline void check_num_threads(int num_threads) {
  if (num_threads < 1) throw py::value_error("num_threads must be >= 1");
}

inline void check_same_dim(const Matrix& queries, const Matrix& items) {
  if (queries.cols != items.cols)
    throw py::value_error("queries have " + std::to_string(queries.cols) +
                          " columns but items have " + std::to_string(items.cols));
}

// batch_size (TopkParams::batch_size): 0, or the user's whole batch, at least this call's rows.
inline void check_batch_size(int64_t batch_size, int64_t n_queries) {
  if (batch_size < 0 || (batch_size > 0 && batch_size < n_queries))
    throw py::value_error("batch_size must be 0 or at least the number of queries");
}

// An exclusion CSR over n_queries rows, or none when indptr is None (the Python layer guarantees
// sorted rows and ids in range).
inline Exclusion as_exclusion(const py::object& indptr, const py::object& indices,
                              int64_t n_queries) {
  Exclusion ex;
  if (indptr.is_none()) return ex;
  ex.indptr = as_int64_vector(indptr, "exclude indptr", n_queries + 1);
  ex.indices = as_int64_vector(indices, "exclude indices", -1);
  return ex;
}

// ---- enum parsers ---------------------------------------------------------------------------

inline Metric parse_metric(const std::string& metric) {
  if (metric == "cosine") return Metric::Cosine;
  if (metric == "dot") return Metric::Dot;
  throw py::value_error("metric must be 'cosine' or 'dot', got '" + metric + "'");
}

inline SimdLevel parse_simd_level(const std::string& s) {
  if (s == "generic") return SimdLevel::Generic;
  if (s == "avx2") return SimdLevel::AVX2;
  if (s == "avx512") return SimdLevel::AVX512;
  if (s == "avx512_emulated") return SimdLevel::AVX512Emulated;
  throw py::value_error(
      "level must be 'generic', 'avx2', 'avx512' or (test builds) "
      "'avx512_emulated', got '" +
      s + "'");
}

inline QuantType parse_quant_type(const std::string& s) {
  if (s == "int8") return QuantType::Int8;
  if (s == "float16") return QuantType::Float16;
  throw py::value_error("quant_type must be 'int8' or 'float16', got '" + s + "'");
}

// ---- running without the GIL ----------------------------------------------------------------

// A should_stop for the core's calls: true when Python has a pending signal (Ctrl-C), whose
// handler's exception is then set. Polled from the calling thread with the GIL released.
inline std::function<bool()> python_signals() {
  return [] {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };
}

// Run fn with the GIL released. A call cancelled by python_signals() (Interrupted) re-raises
// the signal handler's exception (KeyboardInterrupt); a corrupted row (CorruptRow) is a
// ValueError with its message. Any other exception, including one thrown on a pool worker and
// rethrown here, propagates with the GIL held again, for pybind11 to translate
// (std::invalid_argument: ValueError, std::runtime_error: RuntimeError).
template <class Fn>
void run_without_gil(const Fn& fn) {
  bool interrupted = false;
  std::string corrupt;
  {
    py::gil_scoped_release release;
    try {
      fn();
    } catch (const Interrupted&) {
      interrupted = true;
    } catch (const CorruptRow& e) {
      corrupt = e.what();
    }
  }
  if (interrupted) throw py::error_already_set();
  if (!corrupt.empty()) throw py::value_error(corrupt);
}

}  // namespace recfast::bindings
