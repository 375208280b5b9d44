// Model-merging kernels on a CUDA device (host-side declaration; the kernel lives in merging.cu).
// The CPU twin (evoforge::merging::dare_mask_cpu, evoforge/merging.h) runs the same header-only
// Philox code (merging::dare_words), and its mask is what this one must equal bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace evoforge::cuda {

/// The DARE keep mask of model k (see evoforge/merging.h): out [n] (device, one byte per element,
/// 1 = kept, 0 = dropped; a torch bool tensor's storage). One thread per Philox block of 4
/// elements; density in (0, 1] (checked by the caller). Runs on `stream`; allocates nothing.
void dare_mask_cuda(int64_t n, double density, uint64_t seed, uint32_t stream_id, uint32_t k, uint8_t* out,
                    cudaStream_t stream);

}  // namespace evoforge::cuda
