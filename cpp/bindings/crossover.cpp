// Bindings for the crossover kernels; evoforge/variation/crossover.py validates first.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "evoforge/common.h"
#include "evoforge/crossover.h"

namespace py = pybind11;

namespace evoforge {
namespace {

py::tuple crossover_impl(int32_t kind, py::array a, py::array b, double prob, uint64_t seed,
                         uint32_t generation, uint32_t offset, int threads) {
  EVOFORGE_CHECK(a.ndim() == 2 && b.ndim() == 2 && a.shape(0) == b.shape(0) && a.shape(1) == b.shape(1),
                 "a and b must be 2-D [P, L] of one shape");
  EVOFORGE_CHECK(a.dtype().is(b.dtype()), "a and b must have one dtype");
  EVOFORGE_CHECK((a.flags() & py::array::c_style) && (b.flags() & py::array::c_style),
                 "a and b must be C-contiguous");
  const int64_t P = a.shape(0), L = a.shape(1);
  const int es = static_cast<int>(a.itemsize());
  std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(P), static_cast<py::ssize_t>(L)};
  py::array c1(a.dtype(), shape), c2(a.dtype(), shape);
  const void* ap = a.data();
  const void* bp = b.data();
  void* x = c1.mutable_data();
  void* y = c2.mutable_data();
  {
    py::gil_scoped_release release;
    crossover_cpu(static_cast<CrossoverKind>(kind), ap, bp, P, L, es, prob, seed, generation, offset, x, y,
                  threads);
  }
  return py::make_tuple(c1, c2);
}

template <typename T>
py::tuple sbx_impl(py::array_t<T, py::array::c_style> a, py::array_t<T, py::array::c_style> b,
                   py::array_t<double, py::array::c_style> lower, py::array_t<double, py::array::c_style> upper,
                   double eta, double prob, double prob_var, uint64_t seed, uint32_t generation,
                   uint32_t offset, int threads) {
  EVOFORGE_CHECK(a.ndim() == 2 && b.ndim() == 2 && a.shape(0) == b.shape(0) && a.shape(1) == b.shape(1),
                 "a and b must be 2-D [P, L] of one shape");
  const int64_t P = a.shape(0), L = a.shape(1);
  py::array_t<T> c1({P, L}), c2({P, L});
  const T* ap = a.data();
  const T* bp = b.data();
  T* x = c1.mutable_data();
  T* y = c2.mutable_data();
  {
    py::gil_scoped_release release;
    sbx_cpu<T>(ap, bp, P, L, lower.data(), upper.data(), eta, prob, prob_var, seed, generation, offset, x, y,
               threads);
  }
  return py::make_tuple(c1, c2);
}

}  // namespace

void register_crossover(py::module_& m) {
  m.def("crossover", &crossover_impl, py::arg("kind"), py::arg("a"), py::arg("b"), py::arg("prob"),
        py::arg("seed"), py::arg("generation"), py::arg("individual_offset"), py::arg("threads") = 0);
  m.def("sbx_f32", &sbx_impl<float>, py::arg("a").noconvert(), py::arg("b").noconvert(),
        py::arg("lower").noconvert(), py::arg("upper").noconvert(), py::arg("eta"), py::arg("prob"),
        py::arg("prob_var"), py::arg("seed"), py::arg("generation"), py::arg("individual_offset"),
        py::arg("threads") = 0);
  m.def("sbx_f64", &sbx_impl<double>, py::arg("a").noconvert(), py::arg("b").noconvert(),
        py::arg("lower").noconvert(), py::arg("upper").noconvert(), py::arg("eta"), py::arg("prob"),
        py::arg("prob_var"), py::arg("seed"), py::arg("generation"), py::arg("individual_offset"),
        py::arg("threads") = 0);
}

}  // namespace evoforge
