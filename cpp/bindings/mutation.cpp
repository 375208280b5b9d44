// Bindings for the mutation kernels. The Python layer (evoforge/variation/mutation.py) validates
// dtypes, shapes, bounds and probabilities and allocates nothing here but the outputs; we map
// buffers and release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <vector>

#include "arrays.h"
#include "evoforge/common.h"
#include "evoforge/mutation.h"

namespace py = pybind11;

namespace evoforge {
namespace {

py::tuple level_switch_impl(CArray<int32_t> parents, CArray<int32_t> lower, CArray<int32_t> upper,
                            CArray<int32_t> group_of, CArray<int32_t> members,
                            CArray<int32_t> group_start, std::optional<CArray<double>> costs,
                            double tol, int32_t n_offspring, int32_t max_switches,
                            int32_t max_attempts, uint64_t seed, uint32_t generation,
                            uint32_t individual_offset, int threads, bool sequential) {
  EVOFORGE_CHECK(parents.ndim() == 2, "parents must be 2-D [P, L]");
  EVOFORGE_CHECK(max_switches >= 1 && max_switches <= kMaxSwitches,
                 "max_switches must lie in [1, " << kMaxSwitches << "]");
  const int64_t P = parents.shape(0), L = parents.shape(1);
  LevelSwitchArgs a{};
  a.parents = parents.data();
  a.P = P;
  a.L = L;
  a.lower = lower.data();
  a.upper = upper.data();
  a.group_of = group_of.data();
  a.members = members.data();
  a.group_start = group_start.data();
  int32_t mg = 0;
  for (py::ssize_t g = 0; g + 1 < group_start.shape(0); ++g)
    mg = std::max(mg, group_start.data()[g + 1] - group_start.data()[g]);
  a.max_group = std::max(mg, 1);
  a.costs = costs ? costs->data() : nullptr;
  a.cost_stride = costs ? costs->shape(1) : 0;
  a.tol = tol;
  a.n_offspring = n_offspring;
  a.max_switches = max_switches;
  a.max_attempts = max_attempts;
  a.seed = seed;
  a.generation = generation;
  a.individual_offset = individual_offset;
  py::array_t<int32_t> out({P, int64_t{n_offspring}, L});
  std::optional<py::array_t<double>> drift;
  if (costs) drift.emplace(std::vector<int64_t>{P, int64_t{n_offspring}});
  a.out = out.mutable_data();
  a.drift = drift ? drift->mutable_data() : nullptr;
  const size_t no = static_cast<size_t>(P) * static_cast<size_t>(n_offspring);
  // Uninitialised workspace: every entry is written before it is read.
  std::unique_ptr<int32_t[]> ws(new int32_t[no * (2 * kMaxDiff + 1) + static_cast<size_t>(P)]);
  std::unique_ptr<uint64_t[]> hash(new uint64_t[no + 1]);
  a.ws_genes = ws.get();
  a.ws_delta = ws.get() + no * kMaxDiff;
  a.ws_count = ws.get() + 2 * no * kMaxDiff;
  a.status = ws.get() + no * (2 * kMaxDiff + 1);
  a.ws_hash = hash.get();
  {
    py::gil_scoped_release release;
    if (sequential)
      level_switch_sequential_cpu(a);
    else
      level_switch_cpu(a, threads);
  }
  return py::make_tuple(out, drift ? py::object(*drift) : py::object(py::none()));
}

py::array_t<int32_t> point_impl(CArray<int32_t> x, CArray<int32_t> lower, CArray<int32_t> upper,
                                double prob, uint64_t seed, uint32_t generation, uint32_t offset,
                                int threads) {
  EVOFORGE_CHECK(x.ndim() == 2, "x must be 2-D [P, L]");
  const int64_t P = x.shape(0), L = x.shape(1);
  py::array_t<int32_t> out({P, L});
  const int32_t* xp = x.data();
  int32_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    point_mutation_cpu(xp, P, L, lower.data(), upper.data(), prob, seed, generation, offset, o, threads);
  }
  return out;
}

template <typename T>
py::array_t<T> gaussian_impl(CArray<T> x, CArray<T> sigma, double prob, std::optional<CArray<T>> lower,
                             std::optional<CArray<T>> upper, uint64_t seed, uint32_t generation,
                             uint32_t offset, int threads) {
  EVOFORGE_CHECK(x.ndim() == 2, "x must be 2-D [P, L]");
  const int64_t P = x.shape(0), L = x.shape(1);
  py::array_t<T> out({P, L});
  const T* xp = x.data();
  const T* lo = lower ? lower->data() : nullptr;
  const T* hi = upper ? upper->data() : nullptr;
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    gaussian_mutation_cpu<T>(xp, P, L, sigma.data(), prob, lo, hi, seed, generation, offset, o, threads);
  }
  return out;
}

template <typename T>
py::array_t<T> polynomial_impl(CArray<T> x, CArray<double> lower, CArray<double> upper, double eta,
                               double prob, uint64_t seed, uint32_t generation, uint32_t offset,
                               int threads) {
  EVOFORGE_CHECK(x.ndim() == 2, "x must be 2-D [P, L]");
  const int64_t P = x.shape(0), L = x.shape(1);
  py::array_t<T> out({P, L});
  const T* xp = x.data();
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    polynomial_mutation_cpu<T>(xp, P, L, lower.data(), upper.data(), eta, prob, seed, generation,
                               offset, o, threads);
  }
  return out;
}

}  // namespace

void register_mutation(py::module_& m) {
  m.def("level_switch", &level_switch_impl, py::arg("parents").noconvert(), py::arg("lower").noconvert(),
        py::arg("upper").noconvert(), py::arg("group_of").noconvert(), py::arg("members").noconvert(),
        py::arg("group_start").noconvert(), py::arg("costs").noconvert(), py::arg("tol"),
        py::arg("n_offspring"), py::arg("max_switches"), py::arg("max_attempts"), py::arg("seed"),
        py::arg("generation"), py::arg("individual_offset"), py::arg("threads") = 0,
        py::arg("sequential") = false);
  m.attr("level_switch_max_switches") = kMaxSwitches;
  m.def("point_mutation", &point_impl, py::arg("x").noconvert(), py::arg("lower").noconvert(),
        py::arg("upper").noconvert(), py::arg("prob"), py::arg("seed"), py::arg("generation"),
        py::arg("individual_offset"), py::arg("threads") = 0);
  m.def("gaussian_mutation_f32", &gaussian_impl<float>, py::arg("x").noconvert(),
        py::arg("sigma").noconvert(), py::arg("prob"), py::arg("lower").noconvert(),
        py::arg("upper").noconvert(), py::arg("seed"), py::arg("generation"),
        py::arg("individual_offset"), py::arg("threads") = 0);
  m.def("gaussian_mutation_f64", &gaussian_impl<double>, py::arg("x").noconvert(),
        py::arg("sigma").noconvert(), py::arg("prob"), py::arg("lower").noconvert(),
        py::arg("upper").noconvert(), py::arg("seed"), py::arg("generation"),
        py::arg("individual_offset"), py::arg("threads") = 0);
  m.def("polynomial_mutation_f32", &polynomial_impl<float>, py::arg("x").noconvert(),
        py::arg("lower").noconvert(), py::arg("upper").noconvert(), py::arg("eta"), py::arg("prob"),
        py::arg("seed"), py::arg("generation"), py::arg("individual_offset"), py::arg("threads") = 0);
  m.def("polynomial_mutation_f64", &polynomial_impl<double>, py::arg("x").noconvert(),
        py::arg("lower").noconvert(), py::arg("upper").noconvert(), py::arg("eta"), py::arg("prob"),
        py::arg("seed"), py::arg("generation"), py::arg("individual_offset"), py::arg("threads") = 0);
}

}  // namespace evoforge
