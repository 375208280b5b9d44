// Variation kernels on a CUDA device (host-side declarations; the kernels live in mutation.cu and
// deepga.cu). The CPU twins (evoforge/mutation.h, evoforge/deepga.h) run the same header-only
// code (evoforge/mutation_kernels.h, evoforge/philox.h), and their output is what these must equal
// bit for bit. All pointers are device pointers; nothing is allocated; work runs on `stream`.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "evoforge/mutation_kernels.h"

namespace evoforge::cuda {

/// level_switch in the CPU's three phases (evoforge/mutation_kernels.h): candidates, one thread per
/// offspring; distinctness, one thread per family with a hash set in `slots`; rows, one thread per
/// gene. Every pointer is a device pointer: those of `args` (workspace and status included),
/// cand [P N] int32, exact [P N] float64 (the drift; args.drift may alias it) and
/// slots [P * level_switch_slot_capacity(N)] int64.
void level_switch_cuda(const LevelSwitchArgs& args, int32_t* cand, double* exact, int64_t* slots,
                       cudaStream_t stream);

/// Gaussian mutation of a float32 population (see evoforge::gaussian_mutation_cpu).
///   x, out : [P, L];  sigma : [L];  lower, upper : [L] or nullptr
void gaussian_mutation_cuda(const float* x, int64_t P, int64_t L, const float* sigma, double prob,
                            const float* lower, const float* upper, uint64_t seed, uint32_t generation,
                            uint32_t individual_offset, float* out, cudaStream_t stream);

/// The standard normals of evoforge.random.normal: out [P, L] float32.
void gaussian_normals_cuda(int64_t P, int64_t L, uint64_t seed, uint32_t generation,
                           uint32_t individual_offset, float* out, cudaStream_t stream);

/// Deep GA reconstruction (see evoforge::seeds_to_params_cpu).
void seeds_to_params_cuda(const float* base, int64_t base_stride, int64_t P, int64_t D,
                          const uint64_t* seeds, const int64_t* offsets, float sigma, float* out,
                          cudaStream_t stream);

}  // namespace evoforge::cuda
