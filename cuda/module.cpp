// The optional evoforge._cuda extension. Takes raw device pointers and a stream (as ints) from
// the Python layer, which has already checked dtype, shape, device and contiguity.
#include <pybind11/pybind11.h>

#include "evoforge/cuda/common.h"

namespace py = pybind11;

namespace evoforge::cuda {
void register_pareto(py::module_& m);
void register_hashing(py::module_& m);
void register_variation(py::module_& m);
void register_layers(py::module_& m);
void register_merging(py::module_& m);
}

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "evoforge CUDA kernels. Use the Python wrappers in evoforge.*.";
  py::register_exception<evoforge::cuda::CudaError>(m, "CudaError", PyExc_RuntimeError);
  m.def("build_info", [] {
    py::dict d;
    d["cuda_version"] = EVOFORGE_CUDA_VERSION;
    d["architectures"] = EVOFORGE_CUDA_ARCHS;
    return d;
  });
  // 0 when there is no driver or no device: never raises, so info() can always call it.
  m.def("device_count", [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  });
  evoforge::cuda::register_pareto(m);
  evoforge::cuda::register_hashing(m);
  evoforge::cuda::register_variation(m);
  evoforge::cuda::register_layers(m);
  evoforge::cuda::register_merging(m);
}
