// Bindings for the CUDA hashing kernel. The Python layer (evoforge/hashing/) checks dtype and
// options, builds the header, allocates the workspace with torch and passes raw device pointers,
// shape, strides (elements) and the current stream as ints.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <vector>

#include "evoforge/cuda/common.h"
#include "evoforge/cuda/hashing.h"
#include "evoforge/hashing.h"

namespace py = pybind11;

namespace evoforge::cuda {
namespace {

py::bytes hash_array(uintptr_t data, int type, const std::vector<int64_t>& shape,
                     const std::vector<int64_t>& strides, int mode, int mantissa_bits, double grid,
                     const std::vector<uint64_t>& header, uint64_t seed, uintptr_t workspace,
                     size_t workspace_bytes, uintptr_t stream) {
  if (type < 0 || type > int(hashing::ElemType::kBool))
    throw std::invalid_argument("unknown element type");
  if (shape.size() != strides.size()) throw std::invalid_argument("shape and strides differ in length");
  if (shape.size() > size_t(hashing::kMaxDims))
    throw std::invalid_argument("at most 32 dimensions");
  if (mode < 0 || mode > 2) throw std::invalid_argument("quantisation mode must be 0, 1 or 2");
  hashing::Quant q;
  q.mode = static_cast<hashing::QuantMode>(mode);
  q.mantissa_bits = mantissa_bits;
  q.grid = grid;
  hashing::Digest d;
  {
    py::gil_scoped_release release;
    uint64_t nwords = 0;
    hashing::Digest sum = hash_stream_cuda(
        reinterpret_cast<const void*>(data), static_cast<hashing::ElemType>(type), int(shape.size()),
        shape.data(), strides.data(), q, seed, reinterpret_cast<void*>(workspace), workspace_bytes,
        reinterpret_cast<cudaStream_t>(stream), &nwords);
    d = hashing::final_digest(sum, nwords, header.data(), int64_t(header.size()), seed);
  }
  char out[16];
  for (int i = 0; i < 8; ++i) {
    out[i] = char((d.lo >> (8 * i)) & 0xff);
    out[8 + i] = char((d.hi >> (8 * i)) & 0xff);
  }
  return py::bytes(out, 16);
}

}  // namespace

void register_hashing(py::module_& m) {
  m.def("hash_array", &hash_array, py::arg("data"), py::arg("type"), py::arg("shape"),
        py::arg("strides"), py::arg("mode"), py::arg("mantissa_bits"), py::arg("grid"),
        py::arg("header"), py::arg("seed"), py::arg("workspace"), py::arg("workspace_bytes"),
        py::arg("stream"));
  m.def("hash_workspace_bytes", &hash_workspace_bytes);
}

}  // namespace evoforge::cuda
