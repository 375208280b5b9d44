// Sparse (and sparse + quantised) linear-layer kernels: Y = X W^T (+ bias) computed on the packed
// weight, X float32 [B, K] row-major, Y float32 [B, N]. W is [N, K] = [out_features, in_features].
//
// Unstructured format (CPU only; chosen over CSR because at 50-70% sparsity a bitmask costs
// 1 bit per weight where CSR's column indices cost 16 bits per kept value, so fewer bytes are read
// at batch 1, and a mask byte expands 8 columns with one permute on AVX2):
//   mask    uint8 [N, KB], KB = ceil(K / 8): bit j (LSB first) of byte t is set when W[n, 8t + j]
//           is kept (numpy.packbits(W != 0, axis=1, bitorder="little")); padding bits are 0.
//   row_ptr int64 [N + 1]: row_ptr[n] = kept values before row n (row_ptr[0] = 0, row_ptr[N] = nnz).
//   values  float32 or float16 [nnz]: the kept values in row-major order, or
//   quantised: codes [nnz] packed as one stream with the v1 block layout (packed_format.md; blocks
//           of 32 codes in stream order, ceil(nnz / 32) * 4 * bits bytes), with scales/zeros
//           float16 [N, G] over ORIGINAL columns: the kept value at column k uses group k / g
//           (g = 0: one group per row), so W[n, k] = s[n, k/g] * (q - z[n, k/g]) where kept.
//
// 2:4 format (packed_format.md): K padded to Kp = ceil(K / 32) * 32; meta uint8 [N, Kp / 8];
//   values V float32 / float16 [N, Kp / 2], or quantised V (codes packed per row, row_bytes =
//   ceil(Kp / 2 / 32) * 4 * bits; scales/zeros float16 [N, G], G = ceil((Kp / 2) / g), g over V).
//
// Every output element is computed by one thread in a fixed order, so results do not depend on the
// thread count. The instruction set is picked at run time (cpuid): 2 = AVX-512 (F/BW/VL/DQ/VBMI2:
// expand-loads), 1 = AVX2 + FMA + F16C (permute tables), 0 = portable scalar loop; max_isa caps it
// (each level sums in its own order: results agree within float32 rounding). Kernels never read
// outside the given arrays: a mask whose bit counts disagree with row_ptr is reported as an error.
#pragma once

#include <cstdint>

namespace evoforge {
namespace sparse {

enum class Values { f32, f16, quant };

/// Quantised values (codes, scales and zeros as in packed_format.md). zeros may be null (symmetric:
/// the implied zero 2^(bits-1)). scales / zeros are float16 bit patterns [N, G].
struct QuantValues {
  const uint8_t* packed = nullptr;
  const uint16_t* scales = nullptr;
  const uint16_t* zeros = nullptr;
  int bits = 4;
  int64_t group_size = 0;  // 0: one group per row
  int64_t groups = 1;      // G
};

/// Unstructured: values is float* (f32), uint16_t* (f16 bits) or ignored (quant: q used).
/// Throws std::invalid_argument when the mask and row_ptr disagree.
void unstructured_matmul(const float* x, int64_t B, int64_t K, const uint8_t* mask, const int64_t* row_ptr,
                         int64_t N, Values vt, const void* values, const QuantValues* q, const float* bias,
                         float* y, int threads, int max_isa = 2);

/// 2:4: values as above ([N, Kp/2] f32 / f16), or q (quant, per-row packed V).
void sparse24_matmul(const float* x, int64_t B, int64_t K, const uint8_t* meta, int64_t N, Values vt,
                     const void* values, const QuantValues* q, const float* bias, float* y, int threads,
                     int max_isa = 2);

/// The dense weight w float32 [N, K] of a packed one (zeros where pruned); for batches where a dense
/// matmul beats the sparse kernel.
void unstructured_to_dense(int64_t K, const uint8_t* mask, const int64_t* row_ptr, int64_t N, Values vt,
                           const void* values, const QuantValues* q, float* w, int threads);
void sparse24_to_dense(int64_t K, const uint8_t* meta, int64_t N, Values vt, const void* values, const QuantValues* q,
                       float* w, int threads);

/// The best instruction set level available here (0 scalar, 1 AVX2, 2 AVX-512).
int best_isa();

}  // namespace sparse
}  // namespace evoforge
