// Bindings of the CUDA Pareto kernels. The Python layer (evoforge/_pareto_cuda.py) validates,
// sorts and allocates with torch, then passes raw device pointers, sizes, the stream and the
// device index as ints; this module never links libtorch. The GIL is released while launching.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "evoforge/cuda/common.h"
#include "evoforge/cuda/device_guard.h"
#include "evoforge/cuda/pareto.h"

namespace py = pybind11;

namespace evoforge::cuda {
namespace {

template <typename T>
void rank_impl(uintptr_t pts, int64_t U, int64_t M, uintptr_t rank, uintptr_t workspace,
               size_t workspace_bytes, uintptr_t stream, int device) {
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  rank_sorted_unique_cuda<T>(reinterpret_cast<const T*>(pts), U, M, reinterpret_cast<int32_t*>(rank),
                             reinterpret_cast<void*>(workspace), workspace_bytes,
                             reinterpret_cast<cudaStream_t>(stream));
}

}  // namespace

void register_pareto(py::module_& m) {
  m.attr("pareto_max_objectives") = kParetoMaxObjectives;
  m.def(
      "pareto_config",
      [](int64_t M) {
        const ParetoConfig c = pareto_config(M);
        py::dict d;
        d["tile"] = c.tile;
        d["group"] = c.group;
        d["cross_block"] = c.cross_block;
        d["cross_points"] = c.cross_points;
        return d;
      },
      py::arg("M"), "Launch geometry of the ranking kernels for M objectives.");
  m.def("rank_sorted_unique_workspace_bytes", &rank_sorted_unique_workspace_bytes, py::arg("U"),
        py::arg("M"), py::arg("elem_size"),
        "Bytes of device workspace rank_sorted_unique_f32/f64 need for U points of M objectives.");
  const char* doc =
      "Front index of U distinct lexicographically sorted points (row-major [U, M] at device "
      "address pts) into int32 rank[U], on `stream` of `device`; asynchronous.";
  m.def("rank_sorted_unique_f32", &rank_impl<float>, py::arg("pts"), py::arg("U"), py::arg("M"),
        py::arg("rank"), py::arg("workspace"), py::arg("workspace_bytes"), py::arg("stream"),
        py::arg("device"), doc);
  m.def("rank_sorted_unique_f64", &rank_impl<double>, py::arg("pts"), py::arg("U"), py::arg("M"),
        py::arg("rank"), py::arg("workspace"), py::arg("workspace_bytes"), py::arg("stream"),
        py::arg("device"), doc);
}

}  // namespace evoforge::cuda
