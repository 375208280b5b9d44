// Functional hashing on a CUDA device (host-side declarations; the kernels live in hashing.cu).
// The algorithm and its CPU twin are in evoforge/hashing.h; the device computes the same chunk
// digests, so the final digest is bit-identical to the CPU one.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "evoforge/hashing.h"

namespace evoforge::cuda {

/// Bytes of device workspace hash_stream_cuda needs (the running sum of the chunk digests).
size_t hash_workspace_bytes();

/// Sum of the chunk digests of the canonical stream of a strided device array, and its word count.
///   data      : device pointer to element (0, ..., 0)
///   shape     : [ndim] extents;  strides : [ndim] strides in ELEMENTS (torch convention, >= 0)
///   workspace : hash_workspace_bytes() bytes of device memory (overwritten)
/// Runs on `stream`, then copies 16 bytes back and synchronises the stream. Allocates nothing.
hashing::Digest hash_stream_cuda(const void* data, hashing::ElemType type, int ndim,
                                 const int64_t* shape, const int64_t* strides,
                                 const hashing::Quant& q, uint64_t seed, void* workspace,
                                 size_t workspace_bytes, cudaStream_t stream, uint64_t* nwords_out);

}  // namespace evoforge::cuda
