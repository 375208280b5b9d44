// Weight-only quantised and 2:4 sparse linear layers on a CUDA device (host-side declarations;
// the kernels live in layers.cu). The packed formats are evoforge's packed weight formats v1
// (see python/evoforge/layers/_cuda.py); the Python emulation there mirrors these kernels.
//
// All pointers are device pointers, row-major and contiguous; packed, meta, scales, zeros and
// x must be 16-byte aligned. Nothing is allocated; work runs on `stream`; the result does not
// depend on timing (fixed reduction order).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace evoforge::cuda {

/// Activation (and output) element type.
enum class ActType : int { kF16 = 0, kBF16 = 1 };

/// Launch geometry of the matmul kernels (mirrored by evoforge/layers/_cuda.py).
constexpr int kQuantWarps = 4;                // warps per block
constexpr int kQuantTilesPerWarp = 2;         // 16-row mma tiles per warp
constexpr int kQuantRowsPerBlock = 16 * kQuantWarps * kQuantTilesPerWarp;
constexpr int kQuantCodesPerStep = 128;       // codes of a row one warp covers per step
constexpr int kQuantMaxBatch = 32;            // batch rows of one launch (4 mma n-tiles of 8)
constexpr int kQuantMaxSplits = 64;           // K splits (gridDim.y), reduced in a fixed order

/// A weight matrix in the packed format. For a dense layer packed is [N, ceil(K/32) * 4 * bits]
/// and scales/zeros are [N, G] with G = ceil(K / group_size) (1 when group_size = 0). For a 2:4
/// layer `packed` holds the kept values V [N, Kv] with Kv = ceil(K/32) * 16 in the same format
/// (G = ceil(Kv / group_size)) and `meta` is [N, ceil(K/32) * 4].
struct PackedWeight {
  const uint8_t* packed = nullptr;
  const uint16_t* scales = nullptr;  // float16 bits
  const uint16_t* zeros = nullptr;   // float16 bits, or nullptr: implied zero 2^(bits-1)
  const uint8_t* meta = nullptr;     // 2:4 only
  int bits = 4;                      // 2, 3, 4 or 8
  int group_size = 128;              // 32, 64, 128, 256, or 0 = one group per row
  int64_t N = 0;                     // out_features
  int64_t K = 0;                     // in_features
};

/// Throw std::invalid_argument for a bad format, size, split geometry or alignment; no device
/// access (the launchers below call them first).
void check_matmul_args(const void* x, int64_t B, bool x_aligned, const PackedWeight& w, bool sparse, int splits,
                       int64_t steps_per_split, const float* workspace, const void* y);
void check_dequantize_args(const PackedWeight& w, const void* out);

/// True when the current device runs the matmul kernels (tensor-core mma, compute capability
/// 8.0 or newer); elsewhere use dequantize + a dense matmul.
bool quant_matmul_supported(int device);

/// Blocks of the matmul kernel for (type, bits, batch, 2:4) resident on one SM of the current
/// device (the Python side sizes the K split to fill one wave).
int quant_matmul_blocks_per_sm(ActType type, int bits, int64_t B, bool sparse);

/// y [B, N] = x [B, K] W^T for 1 <= B <= kQuantMaxBatch, x and y of `type`; fp32 accumulation.
/// K is cut into `splits` ranges of `steps_per_split` steps of kQuantCodesPerStep codes; with
/// splits > 1, `workspace` holds splits * B * N floats of partial sums, added in split order.
/// x_aligned: x is 16-byte aligned and K % 8 == 0 (vector loads of x).
void quant_matmul_cuda(const void* x, ActType type, int64_t B, bool x_aligned, const PackedWeight& w,
                       int splits, int64_t steps_per_split, float* workspace, void* y, cudaStream_t stream);

/// The same for a 2:4 layer with 4-bit values (w.meta set, w.bits == 4).
void sparse24_matmul_cuda(const void* x, ActType type, int64_t B, bool x_aligned, const PackedWeight& w,
                          int splits, int64_t steps_per_split, float* workspace, void* y,
                          cudaStream_t stream);

/// Dense weight out [N, K] of `type` (rounded once from fp32 scales * (q - zeros)); for a 2:4
/// layer (w.meta set) the dropped weights are 0. Any bits; any compute capability.
void dequantize_cuda(const PackedWeight& w, ActType type, void* out, cudaStream_t stream);

}  // namespace evoforge::cuda
