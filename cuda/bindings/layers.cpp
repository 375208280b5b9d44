// Bindings of the quantised / 2:4 layer kernels. The Python layer (evoforge/layers/_cuda.py)
// validates dtype, shape, device, contiguity and alignment, allocates the output and workspace
// with torch, and passes raw device pointers, sizes, the stream and the device index as ints;
// this module never links libtorch. The GIL is released while launching.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "evoforge/cuda/common.h"
#include "evoforge/cuda/device_guard.h"
#include "evoforge/cuda/layers.h"

namespace py = pybind11;

namespace evoforge::cuda {
namespace {

ActType act_type(int type) {
  if (type != int(ActType::kF16) && type != int(ActType::kBF16))
    throw std::invalid_argument("type must be 0 (float16) or 1 (bfloat16)");
  return static_cast<ActType>(type);
}

PackedWeight weight(uintptr_t packed, uintptr_t scales, uintptr_t zeros, uintptr_t meta, int bits, int group_size,
                    int64_t N, int64_t K) {
  PackedWeight w;
  w.packed = reinterpret_cast<const uint8_t*>(packed);
  w.scales = reinterpret_cast<const uint16_t*>(scales);
  w.zeros = reinterpret_cast<const uint16_t*>(zeros);
  w.meta = reinterpret_cast<const uint8_t*>(meta);
  w.bits = bits;
  w.group_size = group_size;
  w.N = N;
  w.K = K;
  return w;
}

void matmul(uintptr_t x, int type, int64_t B, bool x_aligned, uintptr_t packed, uintptr_t scales, uintptr_t zeros,
            uintptr_t meta, int bits, int group_size, int64_t N, int64_t K, int splits, int64_t steps_per_split,
            uintptr_t workspace, uintptr_t y, uintptr_t stream, int device) {
  const ActType t = act_type(type);
  const PackedWeight w = weight(packed, scales, zeros, meta, bits, group_size, N, K);
  check_matmul_args(reinterpret_cast<const void*>(x), B, x_aligned, w, meta != 0, splits, steps_per_split,
                    reinterpret_cast<const float*>(workspace), reinterpret_cast<const void*>(y));
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  auto fn = meta ? &sparse24_matmul_cuda : &quant_matmul_cuda;
  fn(reinterpret_cast<const void*>(x), t, B, x_aligned, w, splits, steps_per_split,
     reinterpret_cast<float*>(workspace), reinterpret_cast<void*>(y), reinterpret_cast<cudaStream_t>(stream));
}

void dequantize(uintptr_t packed, uintptr_t scales, uintptr_t zeros, uintptr_t meta, int bits, int group_size,
                int64_t N, int64_t K, int type, uintptr_t out, uintptr_t stream, int device) {
  const ActType t = act_type(type);
  const PackedWeight w = weight(packed, scales, zeros, meta, bits, group_size, N, K);
  check_dequantize_args(w, reinterpret_cast<const void*>(out));
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  dequantize_cuda(w, t, reinterpret_cast<void*>(out), reinterpret_cast<cudaStream_t>(stream));
}

}  // namespace

void register_layers(py::module_& m) {
  m.attr("quant_rows_per_block") = kQuantRowsPerBlock;
  m.attr("quant_codes_per_step") = kQuantCodesPerStep;
  m.attr("quant_max_batch") = kQuantMaxBatch;
  m.attr("quant_max_splits") = kQuantMaxSplits;
  m.def(
      "quant_matmul_supported",
      [](int device) {
        py::gil_scoped_release release;
        return quant_matmul_supported(device);
      },
      py::arg("device"), "True when the device runs the quantised matmul kernels (compute capability >= 8.0).");
  m.def(
      "quant_matmul_blocks_per_sm",
      [](int type, int bits, int64_t B, bool sparse, int device) {
        const ActType t = act_type(type);
        py::gil_scoped_release release;
        DeviceGuard guard(device);
        return quant_matmul_blocks_per_sm(t, bits, B, sparse);
      },
      py::arg("type"), py::arg("bits"), py::arg("B"), py::arg("sparse"), py::arg("device"),
      "Resident blocks per SM of the matmul kernel for this element type, bit width, batch and layout.");
  m.def("quant_matmul", &matmul, py::arg("x"), py::arg("type"), py::arg("B"), py::arg("x_aligned"),
        py::arg("packed"), py::arg("scales"), py::arg("zeros"), py::arg("meta"), py::arg("bits"),
        py::arg("group_size"), py::arg("N"), py::arg("K"), py::arg("splits"), py::arg("steps_per_split"),
        py::arg("workspace"), py::arg("y"), py::arg("stream"), py::arg("device"),
        "y [B, N] = x [B, K] W^T for a packed weight (2:4 when meta != 0) at device addresses; "
        "asynchronous on `stream` of `device`.");
  m.def("quant_dequantize", &dequantize, py::arg("packed"), py::arg("scales"), py::arg("zeros"), py::arg("meta"),
        py::arg("bits"), py::arg("group_size"), py::arg("N"), py::arg("K"), py::arg("type"), py::arg("out"),
        py::arg("stream"), py::arg("device"),
        "Dense out [N, K] of a packed weight (2:4 when meta != 0); asynchronous on `stream` of `device`.");
}

}  // namespace evoforge::cuda
