// Bindings for the Pareto kernels. The Python layer (evoforge/pareto.py) validates dtype, shape
// and contiguity; here we only map buffers and release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "arrays.h"
#include "evoforge/common.h"
#include "evoforge/pareto.h"

namespace py = pybind11;

namespace evoforge {
namespace {

template <typename T>
py::array_t<int32_t> rank_impl(CArray<T> F, std::optional<CArray<T>> cv, int threads) {
  EVOFORGE_CHECK(F.ndim() == 2, "F must be 2-D [N, M], got " << F.ndim() << "-D");
  const int64_t N = F.shape(0), M = F.shape(1);
  const T* cvp = nullptr;
  if (cv) {
    EVOFORGE_CHECK(cv->ndim() == 1 && cv->shape(0) == N,
                   "constraint_violation must have shape [" << N << "]");
    cvp = cv->data();
  }
  py::array_t<int32_t> out(N);
  int32_t* o = out.mutable_data();
  const T* f = F.data();
  {
    py::gil_scoped_release release;
    nondominated_rank_cpu<T>(f, N, M, cvp, o, threads);
  }
  return out;
}

template <typename T>
py::array_t<double> crowding_impl(CArray<T> F, CArray<int32_t> rank, int threads) {
  EVOFORGE_CHECK(F.ndim() == 2, "F must be 2-D [N, M]");
  const int64_t N = F.shape(0), M = F.shape(1);
  EVOFORGE_CHECK(rank.ndim() == 1 && rank.shape(0) == N, "ranks must have shape [" << N << "]");
  py::array_t<double> out(N);
  double* o = out.mutable_data();
  const T* f = F.data();
  const int32_t* r = rank.data();
  {
    py::gil_scoped_release release;
    crowding_distance_cpu<T>(f, N, M, r, o, threads);
  }
  return out;
}

}  // namespace

void register_pareto(py::module_& m) {
  // noconvert: the Python layer has already chosen the dtype; no silent copies here.
  m.def("nondominated_rank_f64", &rank_impl<double>, py::arg("F").noconvert(),
        py::arg("cv").noconvert() = py::none(), py::arg("threads") = 0);
  m.def("nondominated_rank_f32", &rank_impl<float>, py::arg("F").noconvert(),
        py::arg("cv").noconvert() = py::none(), py::arg("threads") = 0);
  m.def("crowding_distance_f64", &crowding_impl<double>, py::arg("F").noconvert(),
        py::arg("ranks").noconvert(), py::arg("threads") = 0);
  m.def("crowding_distance_f32", &crowding_impl<float>, py::arg("F").noconvert(),
        py::arg("ranks").noconvert(), py::arg("threads") = 0);
}

}  // namespace evoforge
