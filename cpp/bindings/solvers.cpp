// Bindings for the layer solvers. The Python layer (evoforge/solvers/) validates shapes, dtypes
// and values, factorises the Hessian and allocates every output; here we check the buffer
// shapes, map them and release the GIL. W is updated in place (the caller passes a copy).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "arrays.h"
#include "evoforge/common.h"
#include "evoforge/solvers.h"

namespace py = pybind11;

namespace evoforge {
namespace {

template <typename T>
void sparsegpt_impl(CArray<T> W, CArray<T> U, int64_t blocksize,
                    std::optional<CArray<int32_t>> counts, int prune_n, int prune_m,
                    std::optional<CArray<uint8_t>> pruned, int threads) {
  EVOFORGE_CHECK(W.ndim() == 2, "W must be 2-D [rows, cols]");
  const int64_t rows = W.shape(0), cols = W.shape(1);
  check_shape(U, cols, cols, "U");
  EVOFORGE_CHECK(blocksize > 0, "blocksize must be positive");
  const int32_t* cp = nullptr;
  if (counts) {
    check_shape(*counts, rows, (cols + blocksize - 1) / blocksize, "counts");
    cp = counts->data();
  }
  uint8_t* mp = nullptr;
  if (pruned) {
    check_shape(*pruned, rows, cols, "pruned");
    mp = pruned->mutable_data();
  }
  T* w = W.mutable_data();
  const T* u = U.data();
  py::gil_scoped_release release;
  sparsegpt_cpu<T>(w, rows, cols, u, blocksize, cp, prune_n, prune_m, mp, threads);
}

template <typename T>
void gptq_impl(CArray<T> W, CArray<T> U, int64_t blocksize, int bits, int64_t group_size,
               bool symmetric, CArray<T> scales, CArray<T> zeros, CArray<uint8_t> q,
               int threads) {
  EVOFORGE_CHECK(W.ndim() == 2, "W must be 2-D [rows, cols]");
  const int64_t rows = W.shape(0), cols = W.shape(1);
  check_shape(U, cols, cols, "U");
  const int64_t ng = group_size > 0 ? (cols + group_size - 1) / group_size : 1;
  check_shape(scales, rows, ng, "scales");
  check_shape(zeros, rows, ng, "zeros");
  check_shape(q, rows, cols, "q");
  T* w = W.mutable_data();
  const T* u = U.data();
  T* s = scales.mutable_data();
  T* z = zeros.mutable_data();
  uint8_t* qp = q.mutable_data();
  py::gil_scoped_release release;
  gptq_cpu<T>(w, rows, cols, u, blocksize, bits, group_size, symmetric, s, z, qp, threads);
}

template <typename T>
void rtn_impl(CArray<T> W, int bits, int64_t group_size, bool symmetric, CArray<T> scales,
              CArray<T> zeros, CArray<uint8_t> q, int threads) {
  EVOFORGE_CHECK(W.ndim() == 2, "W must be 2-D [rows, cols]");
  const int64_t rows = W.shape(0), cols = W.shape(1);
  const int64_t ng = group_size > 0 ? (cols + group_size - 1) / group_size : 1;
  check_shape(scales, rows, ng, "scales");
  check_shape(zeros, rows, ng, "zeros");
  check_shape(q, rows, cols, "q");
  T* w = W.mutable_data();
  T* s = scales.mutable_data();
  T* z = zeros.mutable_data();
  uint8_t* qp = q.mutable_data();
  py::gil_scoped_release release;
  rtn_cpu<T>(w, rows, cols, bits, group_size, symmetric, s, z, qp, threads);
}

template <typename T>
void register_typed(py::module_& m, const char* suffix) {
  using std::string;
  // noconvert: the Python layer has already chosen the dtypes; no silent copies here.
  m.def((string("sparsegpt_") + suffix).c_str(), &sparsegpt_impl<T>, py::arg("W").noconvert(),
        py::arg("U").noconvert(), py::arg("blocksize"), py::arg("counts").noconvert(),
        py::arg("prune_n"), py::arg("prune_m"), py::arg("pruned").noconvert(),
        py::arg("threads") = 0);
  m.def((string("gptq_") + suffix).c_str(), &gptq_impl<T>, py::arg("W").noconvert(),
        py::arg("U").noconvert(), py::arg("blocksize"), py::arg("bits"), py::arg("group_size"),
        py::arg("symmetric"), py::arg("scales").noconvert(), py::arg("zeros").noconvert(),
        py::arg("q").noconvert(), py::arg("threads") = 0);
  m.def((string("rtn_") + suffix).c_str(), &rtn_impl<T>, py::arg("W").noconvert(),
        py::arg("bits"), py::arg("group_size"), py::arg("symmetric"),
        py::arg("scales").noconvert(), py::arg("zeros").noconvert(), py::arg("q").noconvert(),
        py::arg("threads") = 0);
}

}  // namespace

void register_solvers(py::module_& m) {
  register_typed<float>(m, "f32");
  register_typed<double>(m, "f64");
}

}  // namespace evoforge
