// Bindings for the model-merging kernels; evoforge/merging.py validates first (dtypes, shapes,
// contiguity, aliasing, values). `out` is written in place: it is taken as a plain array and
// checked here (float32, C-contiguous, writeable), never converted, so no copy is written instead.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "arrays.h"
#include "evoforge/common.h"
#include "evoforge/merging.h"

namespace py = pybind11;

namespace evoforge {
namespace {

template <typename T>
T* out_data(py::array& out, int64_t n, const char* name) {
  EVOFORGE_CHECK(out.dtype().is(py::dtype::of<T>()), name << " has the wrong dtype");
  EVOFORGE_CHECK((out.flags() & py::array::c_style) != 0, name << " must be C-contiguous");
  EVOFORGE_CHECK(out.writeable(), name << " must be writeable");
  EVOFORGE_CHECK(out.ndim() == 1 && out.shape(0) == n, name << " must have shape [" << n << "]");
  return static_cast<T*>(out.mutable_data());
}

void check_vector(int64_t ndim, int64_t len, int64_t n, const char* name) {
  EVOFORGE_CHECK(ndim == 1 && len == n, name << " must have shape [" << n << "]");
}

}  // namespace

void register_merging(py::module_& m) {
  // mode: 0 none, 1 trim (TIES), 2 dare. densities is ignored (may be empty) for mode 0.
  m.def(
      "merge_deltas",
      [](py::array out, CArray<float> base, CArray<float> deltas, CArray<double> weights, CArray<double> densities,
         int mode, bool sign_election, bool normalize, double scale, uint64_t seed, uint32_t stream, int threads,
         CArray<float> thresholds) {
        EVOFORGE_CHECK(deltas.ndim() == 2, "deltas must be 2-D [K, N]");
        EVOFORGE_CHECK(mode >= 0 && mode <= 2, "mode must be 0 (none), 1 (trim) or 2 (dare), got " << mode);
        merging::MergeArgs a;
        a.K = deltas.shape(0);
        a.N = deltas.shape(1);
        check_vector(base.ndim(), base.ndim() ? base.shape(0) : 0, a.N, "base");
        check_vector(weights.ndim(), weights.ndim() ? weights.shape(0) : 0, a.K, "weights");
        a.sparsify = static_cast<merging::Sparsify>(mode);
        if (a.sparsify != merging::Sparsify::kNone)
          check_vector(densities.ndim(), densities.ndim() ? densities.shape(0) : 0, a.K, "densities");
        a.out = out_data<float>(out, a.N, "out");
        a.base = base.data();
        a.deltas = deltas.data();
        a.weights = weights.data();
        a.densities = densities.data();
        a.sign_election = sign_election;
        a.normalize = normalize;
        a.scale = scale;
        a.seed = seed;
        a.stream = stream;
        if (thresholds.size() > 0) {
          EVOFORGE_CHECK(a.sparsify == merging::Sparsify::kTrim, "thresholds are for trim only");
          check_vector(thresholds.ndim(), thresholds.shape(0), a.K, "thresholds");
          a.thresholds = thresholds.data();
        }
        py::gil_scoped_release release;
        merging::merge_deltas_cpu(a, threads);
      },
      py::arg("out"), py::arg("base"), py::arg("deltas"), py::arg("weights"), py::arg("densities"),
      py::arg("mode"), py::arg("sign_election"), py::arg("normalize"), py::arg("scale"), py::arg("seed"),
      py::arg("stream"), py::arg("threads") = 0, py::arg("thresholds") = py::array_t<float>(0));
  m.def(
      "dare_mask",
      // out: bool [n], written with 0 / 1.
      [](py::array out, double density, uint64_t seed, uint32_t stream, uint32_t k, int threads) {
        EVOFORGE_CHECK(out.ndim() == 1, "out must be 1-D (bool [n])");
        const int64_t n = out.shape(0);
        static_assert(sizeof(bool) == 1, "numpy's bool is one byte");
        uint8_t* o = reinterpret_cast<uint8_t*>(out_data<bool>(out, n, "out"));
        py::gil_scoped_release release;
        merging::dare_mask_cpu(n, density, seed, stream, k, o, threads);
      },
      py::arg("out"), py::arg("density"), py::arg("seed"), py::arg("stream"), py::arg("k"), py::arg("threads") = 0);
  m.def(
      "slerp",
      [](py::array out, CArray<float> a, CArray<float> b, double t, double eps, int threads) {
        EVOFORGE_CHECK(a.ndim() == 1, "a must be 1-D");
        const int64_t n = a.shape(0);
        check_vector(b.ndim(), b.ndim() ? b.shape(0) : 0, n, "b");
        float* o = out_data<float>(out, n, "out");
        const float *ap = a.data(), *bp = b.data();
        py::gil_scoped_release release;
        merging::slerp_cpu(ap, bp, n, t, eps, o, threads);
      },
      py::arg("out"), py::arg("a"), py::arg("b"), py::arg("t"), py::arg("eps"), py::arg("threads") = 0);
}

}  // namespace evoforge
