// Weight-only quantised linear layers on the CPU: packing, dequantisation and Y = X W^T computed
// directly on the packed codes. Torch- and pybind-free.
//
// evoforge packed weight format v1 (quantised part; shared with the CUDA kernels and the sparse
// formats, which apply it to their kept values):
//
//   W is [N, K] = [out_features, in_features] (torch layout), y = x W^T + b.
//   bits b in {2, 3, 4, 8}; group_size g in {32, 64, 128, 256}, or g = 0 = one group per row.
//   G = ceil(K / g) groups per row (G = 1 when g = 0); the last group of a row may be partial.
//   codes q in [0, 2^b - 1]; w[n, k] = scales[n, k / g] * (q[n, k] - zeros[n, k / g]).
//   scales: float16 [N, G]. zeros: float16 [N, G] (asymmetric), or absent = symmetric, the implied
//   zero 2^(b-1) in every group.
//   packed: uint8 [N, row_bytes], rows packed independently, row_bytes = ceil(K / 32) * 4 * b
//   (K padded to a multiple of 32 with code 0; kernels never read x beyond K). Within each block
//   of 32 consecutive codes c[0..31] (k = 32t .. 32t + 31) the block's 4 * b bytes are
//     b = 8: byte j = c[j]                                                       (32 bytes)
//     b = 4: byte j = c[j] | c[j+16] << 4,  j < 16                               (16 bytes)
//     b = 2: byte j = c[j] | c[j+8] << 2 | c[j+16] << 4 | c[j+24] << 6,  j < 8    (8 bytes)
//     b = 3: bytes 0..7 = the low two bits of every code in the b = 2 layout; bytes 8..11 = one
//            little-endian uint32 whose bit j is bit 2 of c[j]                   (12 bytes)
//   so that one AND/shift per vector unpacks 16 or 32 consecutive codes.
//
// Half-precision values travel as their uint16 bit patterns (IEEE binary16).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace evoforge {
namespace quant {

/// Bytes of one packed row: ceil(K / 32) * 4 * bits.
int64_t row_bytes(int64_t K, int bits);
/// Groups per row: ceil(K / group_size), or 1 for group_size 0 (per row).
int64_t num_groups(int64_t K, int64_t group_size);

/// codes uint8 [N, K] -> packed uint8 [N, row_bytes(K, bits)]. Throws std::invalid_argument
/// naming the first (row, column) whose code exceeds 2^bits - 1.
void pack(const uint8_t* codes, int64_t N, int64_t K, int bits, uint8_t* packed, int threads);
/// packed uint8 [N, row_bytes(K, bits)] -> codes uint8 [N, K] (the padding is dropped).
void unpack(const uint8_t* packed, int64_t N, int64_t K, int bits, uint8_t* codes, int threads);

/// w float32 [N, K] = scales * (q - zeros), each element rounded once from the exact value.
/// scales, zeros: binary16 [N, G]; zeros == nullptr means symmetric (zero 2^(bits-1)).
void dequantize(const uint8_t* packed, const uint16_t* scales, const uint16_t* zeros, int64_t N, int64_t K,
                int bits, int64_t group_size, float* w, int threads);

/// The instruction sets a matmul kernel can be compiled for, best last.
enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };
/// The best kernel this CPU runs (AVX-512F + FMA, AVX2 + FMA, or the portable one).
Isa best_isa();
bool isa_supported(Isa isa);
const char* isa_name(Isa isa);

/// y float32 [B, N] = x [B, K] W^T (+ bias [N] when not null), W given packed as above; never
/// materialises W. Codes are unpacked in registers and multiply-added against x in float32 vector
/// lanes (scaled per group), the zero point enters once per group as (s * z) * sum_k x, with the
/// per-group sums of x computed once per call. Error against the exact product with these weights:
/// |err| <= 2u (K + G + 4) sum_k |s| (q + |z| + 2^bits) |x_k|, u = 2^-24 (first order).
/// Every output is computed by one thread in a fixed order, so y does not depend on `threads`
/// (it may differ in the last bits between instruction sets).
void matmul(const float* x, int64_t B, const uint8_t* packed, const uint16_t* scales, const uint16_t* zeros,
            const float* bias, int64_t N, int64_t K, int bits, int64_t group_size, float* y, int threads, Isa isa);

}  // namespace quant
}  // namespace evoforge
