// Bindings for the raw Philox4x32-10 generator and its conversions (evoforge/philox.h), used by
// evoforge.random and by the tests that rebuild an operator's draws in numpy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "arrays.h"
#include "evoforge/common.h"
#include "evoforge/mutation.h"

#include <algorithm>
#include <vector>
#include "evoforge/philox.h"

namespace py = pybind11;

namespace evoforge {
namespace {

py::array_t<uint32_t> philox_impl(CArray<uint32_t> ctr, CArray<uint32_t> key) {
  EVOFORGE_CHECK(ctr.ndim() == 2 && ctr.shape(1) == 4, "counter must have shape [N, 4]");
  EVOFORGE_CHECK(key.ndim() == 2 && key.shape(1) == 2 && key.shape(0) == ctr.shape(0),
                 "key must have shape [N, 2]");
  const int64_t n = ctr.shape(0);
  py::array_t<uint32_t> out({n, int64_t{4}});
  const uint32_t* c = ctr.data();
  const uint32_t* k = key.data();
  uint32_t* o = out.mutable_data();
  for (int64_t i = 0; i < n; ++i) {
    philox::U32x4 r = philox::philox4x32_10(c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3], k[2 * i],
                                            k[2 * i + 1]);
    for (int q = 0; q < 4; ++q) o[4 * i + q] = r.v[q];
  }
  return out;
}

py::array_t<float> box_muller_impl(CArray<uint32_t> w1, CArray<uint32_t> w2) {
  EVOFORGE_CHECK(w1.ndim() == 1 && w2.ndim() == 1 && w1.shape(0) == w2.shape(0),
                 "w1 and w2 must be 1-D of one length");
  const int64_t n = w1.shape(0);
  py::array_t<float> out({n, int64_t{2}});
  float* o = out.mutable_data();
  for (int64_t i = 0; i < n; ++i) {
    philox::F32x2 z = philox::box_muller(w1.data()[i], w2.data()[i]);
    o[2 * i] = z.a;
    o[2 * i + 1] = z.b;
  }
  return out;
}

py::array_t<float> normal_impl(int64_t P, int64_t L, uint64_t seed, uint32_t generation,
                               uint32_t offset, int threads) {
  py::array_t<float> out({P, L});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    parallel_for(P, resolve_threads(threads), 1, [&](int64_t b, int64_t e, int) {
      std::vector<float> z(static_cast<size_t>((L + 3) / 4 * 4));
      for (int64_t r = b; r < e; ++r) {
        gaussian_normals_cpu(seed, generation, offset + static_cast<uint32_t>(r), 0, (L + 3) / 4, z.data());
        std::copy(z.begin(), z.begin() + L, o + r * L);
      }
    });
  }
  return out;
}

py::array_t<float> log_impl(CArray<float> x) {
  py::array_t<float> out(x.size());
  for (py::ssize_t i = 0; i < x.size(); ++i) out.mutable_data()[i] = philox::log_f32(x.data()[i]);
  return out;
}

}  // namespace

void register_random(py::module_& m) {
  m.def("philox4x32_10", &philox_impl, py::arg("counter").noconvert(), py::arg("key").noconvert());
  m.def("box_muller", &box_muller_impl, py::arg("w1").noconvert(), py::arg("w2").noconvert());
  m.def("gaussian_normals", &normal_impl, py::arg("P"), py::arg("L"), py::arg("seed"),
        py::arg("generation"), py::arg("individual_offset"), py::arg("threads") = 0);
  m.def("log_f32", &log_impl, py::arg("x").noconvert());
}

}  // namespace evoforge
