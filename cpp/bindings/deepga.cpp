// Bindings for Deep GA parameter reconstruction; evoforge/variation/deepga.py validates first. The
// pointer-taking entry writes into caller-owned memory (a torch tensor's storage).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "evoforge/common.h"
#include "evoforge/deepga.h"

namespace py = pybind11;

namespace evoforge {

void register_deepga(py::module_& m) {
  // Raw pointers (ints): base [P or 1, D] f32, seeds [S] u64, offsets [P + 1] i64, out [P, D] f32.
  m.def(
      "seeds_to_params_ptr",
      [](uintptr_t base, int64_t base_stride, int64_t P, int64_t D, uintptr_t seeds, uintptr_t offsets,
         float sigma, uintptr_t out, int threads) {
        py::gil_scoped_release release;
        seeds_to_params_cpu(reinterpret_cast<const float*>(base), base_stride, P, D,
                            reinterpret_cast<const uint64_t*>(seeds), reinterpret_cast<const int64_t*>(offsets),
                            sigma, reinterpret_cast<float*>(out), threads);
      },
      py::arg("base"), py::arg("base_stride"), py::arg("P"), py::arg("D"), py::arg("seeds"),
      py::arg("offsets"), py::arg("sigma"), py::arg("out"), py::arg("threads") = 0);
}

}  // namespace evoforge
