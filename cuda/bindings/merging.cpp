// Binding for the CUDA DARE mask: a device pointer, sizes and a stream as ints. The Python layer
// (evoforge/merging.py) validates and allocates the torch bool tensor.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "evoforge/cuda/common.h"
#include "evoforge/cuda/merging.h"

namespace py = pybind11;

namespace evoforge::cuda {

void register_merging(py::module_& m) {
  m.def(
      "dare_mask",
      [](uintptr_t out, int64_t n, double density, uint64_t seed, uint32_t stream_id, uint32_t k, uintptr_t stream) {
        if (!(density > 0.0 && density <= 1.0))
          throw std::invalid_argument(message("density must lie in (0, 1] [dare_mask]"));
        if (n < 0) throw std::invalid_argument(message("n must be >= 0, got ", n, " [dare_mask]"));
        py::gil_scoped_release release;
        dare_mask_cuda(n, density, seed, stream_id, k, reinterpret_cast<uint8_t*>(out),
                       reinterpret_cast<cudaStream_t>(stream));
      },
      py::arg("out"), py::arg("n"), py::arg("density"), py::arg("seed"), py::arg("stream_id"), py::arg("k"),
      py::arg("stream"));
}

}  // namespace evoforge::cuda
