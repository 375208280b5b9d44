// Bindings for the selection kernels; evoforge/variation/selection.py validates first.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "evoforge/common.h"
#include "evoforge/selection.h"

namespace py = pybind11;

namespace evoforge {
namespace {

py::array_t<int64_t> tournament_impl(py::array_t<double, py::array::c_style> keys, int64_t n_select,
                                     int32_t k, uint64_t seed, uint32_t generation, uint32_t offset,
                                     int threads) {
  EVOFORGE_CHECK(keys.ndim() == 2, "keys must be 2-D [N, M]");
  const int64_t N = keys.shape(0), M = keys.shape(1);
  EVOFORGE_CHECK(N >= 1 && k >= 1, "need N >= 1 and k >= 1");
  py::array_t<int64_t> out(n_select);
  const double* kp = keys.data();
  int64_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    tournament_cpu(kp, N, M, n_select, k, seed, generation, offset, o, threads);
  }
  return out;
}

}  // namespace

void register_selection(py::module_& m) {
  m.def("tournament", &tournament_impl, py::arg("keys").noconvert(), py::arg("n_select"), py::arg("k"),
        py::arg("seed"), py::arg("generation"), py::arg("individual_offset"), py::arg("threads") = 0);
}

}  // namespace evoforge
