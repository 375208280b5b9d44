// Pareto ranking on a CUDA device (host-side declarations; the kernels live in pareto.cu).
// The CPU twin is evoforge/pareto.h, and it is the reference these must equal.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace evoforge::cuda {

/// Bytes of device workspace that rank_sorted_unique_cuda needs for U points of M objectives.
size_t rank_sorted_unique_workspace_bytes(int64_t U, int64_t M);

/// Front index of each of U distinct points sorted lexicographically (row-major [U, M] on the
/// device), written to rank[U] (device, int32). Runs on `stream`; allocates nothing.
template <typename T>
void rank_sorted_unique_cuda(const T* pts, int64_t U, int64_t M, int32_t* rank, void* workspace,
                             size_t workspace_bytes, cudaStream_t stream);

}  // namespace evoforge::cuda
