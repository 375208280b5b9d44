// Bindings for the quantised layer kernels. The Python layer (evoforge/layers/quant.py) validates
// dtypes, shapes, ranges and contiguity and passes float16 arrays as their uint16 bits; here we
// check the shapes again, allocate the outputs, map the buffers and release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "arrays.h"
#include "evoforge/common.h"
#include "evoforge/quant.h"

namespace py = pybind11;

namespace evoforge {
namespace {

quant::Isa parse_isa(const std::string& s) {
  if (s == "auto") return quant::best_isa();
  if (s == "avx512") return quant::Isa::Avx512;
  if (s == "avx2") return quant::Isa::Avx2;
  if (s == "scalar") return quant::Isa::Scalar;
  EVOFORGE_THROW(std::invalid_argument, "isa must be 'auto', 'avx512', 'avx2' or 'scalar', got '" << s << "'");
}

// Checks the grid arrays against (N, K, group_size); returns the zeros pointer (null: symmetric).
const uint16_t* grid(const CArray<uint8_t>& packed, int64_t K, int bits, int64_t group_size,
                     const CArray<uint16_t>& scales, const std::optional<CArray<uint16_t>>& zeros) {
  EVOFORGE_CHECK(packed.ndim() == 2, "packed must be 2-D [N, row_bytes]");
  const int64_t N = packed.shape(0), G = quant::num_groups(K, group_size);
  check_shape(packed, N, quant::row_bytes(K, bits), "packed");
  check_shape(scales, N, G, "scales");
  if (!zeros) return nullptr;
  check_shape(*zeros, N, G, "zeros");
  return zeros->data();
}

CArray<uint8_t> pack(CArray<uint8_t> codes, int bits, int threads) {
  EVOFORGE_CHECK(codes.ndim() == 2, "codes must be 2-D [N, K]");
  const int64_t N = codes.shape(0), K = codes.shape(1);
  CArray<uint8_t> out({N, quant::row_bytes(K, bits)});
  uint8_t* o = out.mutable_data();
  const uint8_t* c = codes.data();
  py::gil_scoped_release release;
  quant::pack(c, N, K, bits, o, threads);
  return out;
}

CArray<uint8_t> unpack(CArray<uint8_t> packed, int bits, int64_t K, int threads) {
  EVOFORGE_CHECK(packed.ndim() == 2, "packed must be 2-D [N, row_bytes]");
  const int64_t N = packed.shape(0);
  check_shape(packed, N, quant::row_bytes(K, bits), "packed");
  CArray<uint8_t> out({N, K});
  uint8_t* o = out.mutable_data();
  const uint8_t* p = packed.data();
  py::gil_scoped_release release;
  quant::unpack(p, N, K, bits, o, threads);
  return out;
}

CArray<float> dequantize(CArray<uint8_t> packed, CArray<uint16_t> scales, std::optional<CArray<uint16_t>> zeros,
                         int bits, int64_t group_size, int64_t K, int threads) {
  const uint16_t* z = grid(packed, K, bits, group_size, scales, zeros);
  const int64_t N = packed.shape(0);
  CArray<float> out({N, K});
  float* o = out.mutable_data();
  const uint8_t* p = packed.data();
  const uint16_t* s = scales.data();
  py::gil_scoped_release release;
  quant::dequantize(p, s, z, N, K, bits, group_size, o, threads);
  return out;
}

CArray<float> matmul(CArray<float> x, CArray<uint8_t> packed, CArray<uint16_t> scales,
                     std::optional<CArray<uint16_t>> zeros, std::optional<CArray<float>> bias, int bits,
                     int64_t group_size, int threads, const std::string& isa) {
  EVOFORGE_CHECK(x.ndim() == 2, "x must be 2-D [B, K]");
  const int64_t B = x.shape(0), K = x.shape(1);
  const uint16_t* z = grid(packed, K, bits, group_size, scales, zeros);
  const int64_t N = packed.shape(0);
  const float* b = nullptr;
  if (bias) {
    EVOFORGE_CHECK(bias->ndim() == 1 && bias->shape(0) == N, "bias must have shape [" << N << "]");
    b = bias->data();
  }
  const quant::Isa which = parse_isa(isa);
  CArray<float> out({B, N});
  float* o = out.mutable_data();
  const float* xp = x.data();
  const uint8_t* p = packed.data();
  const uint16_t* s = scales.data();
  py::gil_scoped_release release;
  quant::matmul(xp, B, p, s, z, b, N, K, bits, group_size, o, threads, which);
  return out;
}

}  // namespace

void register_quant(py::module_& m) {
  m.def("quant_row_bytes", &quant::row_bytes, py::arg("K"), py::arg("bits"));
  m.def("quant_pack", &pack, py::arg("codes"), py::arg("bits"), py::arg("threads") = 0);
  m.def("quant_unpack", &unpack, py::arg("packed"), py::arg("bits"), py::arg("K"), py::arg("threads") = 0);
  m.def("quant_dequantize", &dequantize, py::arg("packed"), py::arg("scales"), py::arg("zeros"), py::arg("bits"),
        py::arg("group_size"), py::arg("K"), py::arg("threads") = 0);
  m.def("quant_matmul", &matmul, py::arg("x"), py::arg("packed"), py::arg("scales"), py::arg("zeros"),
        py::arg("bias"), py::arg("bits"), py::arg("group_size"), py::arg("threads") = 0, py::arg("isa") = "auto");
  m.def("quant_isas", [] {
    std::vector<std::string> out;
    for (auto i : {quant::Isa::Scalar, quant::Isa::Avx2, quant::Isa::Avx512})
      if (quant::isa_supported(i)) out.emplace_back(quant::isa_name(i));
    return out;
  });
}

}  // namespace evoforge
