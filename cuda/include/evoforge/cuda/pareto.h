// Pareto ranking on a CUDA device (host-side declarations; the kernels live in pareto.cu).
// The CPU twin is evoforge/pareto.h, and it is the reference these must equal.
//
// Only the ranking of distinct, lexicographically sorted points runs here; sorting, collapsing
// duplicates, constraints and scattering the ranks back are done by the caller (in torch, see
// python/evoforge/_pareto_cuda.py). Nothing here allocates device memory: the caller passes a
// workspace of rank_sorted_unique_workspace_bytes bytes.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace evoforge::cuda {

/// Largest number of objectives the CUDA kernels take (objectives 1..M-1 live in registers).
constexpr int kParetoMaxObjectives = 16;

/// Launch geometry of rank_sorted_unique_cuda for M objectives (mirrored by the Python emulation
/// in evoforge/_pareto_cuda.py, which the tests check against these numbers).
struct ParetoConfig {
  int tile;          // points resolved in order by one block of the intra kernel (its block size)
  int group;         // points per group: staging unit of the cross kernel and bounding-box unit
  int cross_block;   // threads per block of the cross kernel
  int cross_points;  // tile points per thread of the cross kernel
};
ParetoConfig pareto_config(int64_t M);

/// Bytes of device workspace that rank_sorted_unique_cuda needs for U points of M objectives of
/// elem_size bytes each (4 or 8).
size_t rank_sorted_unique_workspace_bytes(int64_t U, int64_t M, size_t elem_size);

/// Front index of each of U distinct points sorted lexicographically (row-major [U, M] on the
/// device, -0.0 already replaced by 0.0, no NaN), written to rank[U] (device, int32). Runs on
/// `stream` of the current device; allocates nothing; throws std::invalid_argument for bad
/// sizes and CudaError when a launch fails. 1 <= M <= kParetoMaxObjectives, U < 2^31.
template <typename T>
void rank_sorted_unique_cuda(const T* pts, int64_t U, int64_t M, int32_t* rank, void* workspace,
                             size_t workspace_bytes, cudaStream_t stream);

}  // namespace evoforge::cuda
