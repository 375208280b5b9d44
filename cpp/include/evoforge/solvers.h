// Layer-wise solvers for post-training compression (CPU): SparseGPT pruning (Frantar & Alistarh
// 2023) and GPTQ quantisation (Frantar et al. 2022), plus round-to-nearest.
//
// Shapes: a linear layer's weight W is row-major [rows, cols] (out x in). Both solvers take U, the
// upper Cholesky factor of the damped inverse Hessian (H^-1 = U^T U), row-major [cols, cols];
// its strict lower triangle must be 0 (in-block updates start at aligned columns and multiply
// by it). Dead inputs and dampening are the caller's job (evoforge/solvers/).
//
// Rows are solved independently (they share U only), so threads split the rows; every row's
// arithmetic is the same on any thread count, and so is the output. T = float or double.
#pragma once

#include <cstdint>

namespace evoforge {

/// SparseGPT. W is pruned in place (pruned weights become 0, the others absorb the error).
/// Columns are processed in blocks of `blocksize`; within a block, column i's error
/// (w - q) / U[i,i] is fed back to the later columns of the block, and at the end of the block
/// to all later columns at once (the lazy batch update).
///   unstructured (prune_m == 0): at the start of block b, row r prunes the counts[r*nblocks + b]
///     weights of the block with the smallest w^2 / U[j,j]^2 (ties: lower column first);
///     counts is [rows, nblocks], nblocks = ceil(cols / blocksize).
///   n:m (prune_m > 0, counts unused): at every column j with j % prune_m == 0, the prune_n
///     weights with the smallest w^2 / U[j,j]^2 among columns j .. j+prune_m-1 are pruned;
///     cols and blocksize must be multiples of prune_m.
///   pruned : [rows, cols] output, 1 where a weight was pruned, or nullptr.
template <typename T>
void sparsegpt_cpu(T* W, int64_t rows, int64_t cols, const T* U, int64_t blocksize,
                   const int32_t* counts, int prune_n, int prune_m, uint8_t* pruned,
                   int num_threads);

/// GPTQ. W is replaced in place by its dequantised values. Asymmetric (GPTQ's min/max grid
/// containing 0): scale = (max - min) / (2^bits - 1), zero = round(-min / scale); symmetric:
/// scale = 2 max|w| / (2^bits - 1), zero = 2^(bits-1). q = clamp(round(w / scale) + zero, 0,
/// 2^bits - 1) (round half to even), w' = scale * (q - zero).
///   group_size > 0: the grid of the group of columns [g*gs, min((g+1)*gs, cols)) is computed
///     from that group's current (error-updated) weights when its first column is reached; the
///     last group may be partial. blocksize must be a multiple of group_size (so that a group
///     lies in one block).
///   group_size <= 0: one grid per row from the weights as given (before any update).
///   scales, zeros : [rows, ngroups] outputs (ngroups = ceil(cols / group_size), or 1)
///   q             : [rows, cols] output, the integer codes
template <typename T>
void gptq_cpu(T* W, int64_t rows, int64_t cols, const T* U, int64_t blocksize, int bits,
              int64_t group_size, bool symmetric, T* scales, T* zeros, uint8_t* q,
              int num_threads);

/// Round-to-nearest with GPTQ's grid (no error feedback); same outputs as gptq_cpu.
template <typename T>
void rtn_cpu(T* W, int64_t rows, int64_t cols, int bits, int64_t group_size, bool symmetric,
             T* scales, T* zeros, uint8_t* q, int num_threads);

}  // namespace evoforge
