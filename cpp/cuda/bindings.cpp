// recfast._cuda: marshalling only, over the C++ API of recfast/topk_cuda.h. Takes validated
// inputs (recfast/_cuda_backend.py validates and documents them), releases the GIL for the GPU
// work, and maps recfast::CudaError to RuntimeError (its message names the CUDA error, the
// source file and line).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>

#include "recfast/bindings/toolkit.h"
#include "recfast/topk_cuda.h"

namespace py = pybind11;

namespace {

namespace rb = recfast::bindings;
using rb::as_matrix;
using HostMatrix = rb::Matrix;

recfast::CudaTopkParams make_params(int64_t k, const std::string& metric, int64_t n_queries,
                                    const py::object& indptr, const py::object& indices,
                                    size_t scratch_bytes, int64_t max_query_tile) {
  rb::check_k(k);
  recfast::CudaTopkParams p;
  p.k = k;
  p.metric = rb::parse_metric(metric);
  // Host CSR: the Python layer guarantees sorted rows and ids in [0, n_items).
  p.exclude = rb::as_exclusion(indptr, indices, n_queries);
  p.exclude_on_host = !p.exclude.empty();
  p.scratch_bytes = scratch_bytes;
  p.max_query_tile = max_query_tile;
  return p;
}

py::tuple topk_host(const py::array& queries, const py::array& items, int64_t k,
                    const std::string& metric, const py::object& indptr, const py::object& indices,
                    int device, size_t scratch_bytes, int64_t max_query_tile) {
  const HostMatrix q = as_matrix(queries, "queries");
  const HostMatrix x = as_matrix(items, "items");
  rb::check_same_dim(q, x);
  recfast::CudaTopkParams p =
      make_params(k, metric, q.rows, indptr, indices, scratch_bytes, max_query_tile);
  rb::TopkOutput out(q.rows, k);
  rb::run_without_gil([&] {
    recfast::topk_cuda_host(q.data, q.rows, q.row_stride, x.data, x.rows, x.row_stride, q.cols, p,
                            out.s, out.i, device);
  });
  return out.to_tuple();
}

void topk_device(uintptr_t queries, int64_t n_queries, int64_t query_stride, uintptr_t items,
                 int64_t n_items, int64_t item_stride, int64_t dim, int64_t k,
                 const std::string& metric, const py::object& indptr, const py::object& indices,
                 uintptr_t out_scores, uintptr_t out_ids, int device, uintptr_t stream,
                 size_t scratch_bytes, int64_t max_query_tile) {
  recfast::CudaTopkParams p =
      make_params(k, metric, n_queries, indptr, indices, scratch_bytes, max_query_tile);
  py::gil_scoped_release release;
  recfast::CudaDeviceGuard guard(device);
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  recfast::topk_cuda(reinterpret_cast<const float*>(queries), n_queries, query_stride,
                     reinterpret_cast<const float*>(items), n_items, item_stride, dim, p,
                     reinterpret_cast<float*>(out_scores), reinterpret_cast<int64_t*>(out_ids), s);
  // Wait here so that a failure surfaces from this call, with its file and line.
  const cudaError_t e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw recfast::CudaError(static_cast<int>(e), "cudaStreamSynchronize", __FILE__, __LINE__);
  }
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "recfast CUDA backend: fused exact top-k on the GPU (validated inputs only)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const recfast::CudaError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  m.def("topk_host", &topk_host, py::arg("queries"), py::arg("items"), py::arg("k"),
        py::arg("metric"), py::arg("exclude_indptr"), py::arg("exclude_indices"),
        py::arg("device") = 0, py::arg("scratch_bytes") = 0, py::arg("max_query_tile") = 0,
        "Top-k of host float32 arrays: copied to the GPU once, results back as numpy arrays.");
  m.def("topk_device", &topk_device, py::arg("queries_ptr"), py::arg("n_queries"),
        py::arg("query_stride"), py::arg("items_ptr"), py::arg("n_items"), py::arg("item_stride"),
        py::arg("dim"), py::arg("k"), py::arg("metric"), py::arg("exclude_indptr"),
        py::arg("exclude_indices"), py::arg("out_scores_ptr"), py::arg("out_ids_ptr"),
        py::arg("device"), py::arg("stream"), py::arg("scratch_bytes") = 0,
        py::arg("max_query_tile") = 0,
        "Top-k on device pointers (strides in floats), results written to caller-owned device "
        "buffers of n_queries * k; enqueued on `stream`, which is synchronized before return.");
  m.def(
      "device_count", [] { return recfast::cuda_device_count(nullptr); },
      "Usable CUDA devices (0 without a driver or device).");
  m.def(
      "availability",
      [] {
        std::string why;
        return recfast::cuda_device_count(&why) > 0 ? std::string() : why;
      },
      "Empty when a CUDA device is usable, else why not.");
  m.def("runtime_version", [] {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    return v;
  });
  m.def("driver_version", [] {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess) cudaGetLastError();
    return v;
  });
  m.def(
      "device_name",
      [](int device) {
        cudaDeviceProp prop{};
        const cudaError_t e = cudaGetDeviceProperties(&prop, device);
        if (e != cudaSuccess) {
          cudaGetLastError();
          throw recfast::CudaError(static_cast<int>(e), "cudaGetDeviceProperties", __FILE__,
                                   __LINE__);
        }
        return std::string(prop.name);
      },
      py::arg("device") = 0);
  m.def(
      "plan",
      [](int64_t n_queries, int64_t n_items, int64_t dim, int64_t k, size_t scratch_bytes,
         int64_t max_query_tile) {
        recfast::CudaTopkParams p;
        p.k = k;
        p.scratch_bytes = scratch_bytes;
        p.max_query_tile = max_query_tile;
        const recfast::CudaTopkPlan plan = recfast::plan_topk_cuda(n_queries, n_items, dim, p);
        py::dict d;
        d["query_tile"] = plan.query_tile;
        d["item_chunk"] = plan.item_chunk;
        d["pass_k"] = plan.pass_k;
        d["passes"] = plan.passes;
        d["state_k"] = plan.state_k;
        d["scratch_bytes"] = plan.scratch_bytes;
        return d;
      },
      py::arg("n_queries"), py::arg("n_items"), py::arg("dim"), py::arg("k"),
      py::arg("scratch_bytes") = 0, py::arg("max_query_tile") = 0,
      "How a call of these sizes is tiled, and the device scratch it allocates (bytes).");
  m.attr("default_scratch_bytes") = recfast::kDefaultScratchBytes;
  m.attr("max_pass_k") = recfast::kMaxPassK;
}
