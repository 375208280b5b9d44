// CUDA twins of the mutation kernels. The arithmetic is the header-only code shared with the CPU
// (evoforge/philox.h, evoforge/mutation_kernels.h), with explicitly rounded float operations, so
// the output equals the CPU's bit for bit.
#include "evoforge/cuda/common.h"
#include "evoforge/cuda/mutation.h"
#include "evoforge/mutation_kernels.h"
#include "evoforge/philox.h"

namespace evoforge::cuda {
namespace {

constexpr int kThreads = 256;

inline unsigned grid_for(int64_t n, int threads) {
  int64_t g = (n + threads - 1) / threads;
  return static_cast<unsigned>(g < 65535 * 64 ? (g > 0 ? g : 1) : 65535 * 64);
}

__global__ void level_switch_kernel(LevelSwitchArgs a) {
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < a.P;
       p += int64_t{gridDim.x} * blockDim.x)
    level_switch_family(a, p);
}

// One thread per block of 4 genes of one row.
__global__ void gaussian_kernel(const float* __restrict__ x, int64_t P, int64_t L,
                                const float* __restrict__ sigma, double thr, bool all,
                                const float* __restrict__ lower, const float* __restrict__ upper,
                                uint64_t seed, uint32_t generation, uint32_t offset,
                                float* __restrict__ out) {
  const int64_t nb = (L + 3) / 4, n = P * nb;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < n; t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = t / nb, b = t % nb;
    const uint32_t ind = offset + static_cast<uint32_t>(r);
    float z[4];
    gaussian_normals4(seed, generation, ind, static_cast<uint32_t>(b), z);
    philox::U32x4 w{{0, 0, 0, 0}};
    if (!all) w = philox::block(seed, static_cast<uint32_t>(b), ind, generation, philox::kGaussianMask, 0);
    for (int q = 0; q < 4; ++q) {
      const int64_t g = 4 * b + q;
      if (g >= L) break;
      float y = x[r * L + g];
      if (all || philox::bernoulli24(w.v[q], thr)) {
        y = philox::fadd(y, philox::fmul(sigma[g], z[q]));
        if (lower) {  // std::min(std::max(y, lo), hi), NaN handling included
          y = (y < lower[g]) ? lower[g] : y;
          y = (upper[g] < y) ? upper[g] : y;
        }
      }
      out[r * L + g] = y;
    }
  }
}

__global__ void normals_kernel(int64_t P, int64_t L, uint64_t seed, uint32_t generation, uint32_t offset,
                               float* __restrict__ out) {
  const int64_t nb = (L + 3) / 4, n = P * nb;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < n; t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = t / nb, b = t % nb;
    float z[4];
    gaussian_normals4(seed, generation, offset + static_cast<uint32_t>(r), static_cast<uint32_t>(b), z);
    for (int q = 0; q < 4 && 4 * b + q < L; ++q) out[r * L + 4 * b + q] = z[q];
  }
}

}  // namespace

void level_switch_cuda(const LevelSwitchArgs& args, cudaStream_t stream) {
  if (args.P <= 0) return;
  constexpr int kFamilyThreads = 64;  // one family per thread: heavy threads, small blocks
  level_switch_kernel<<<grid_for(args.P, kFamilyThreads), kFamilyThreads, 0, stream>>>(args);
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
}

void gaussian_mutation_cuda(const float* x, int64_t P, int64_t L, const float* sigma, double prob,
                            const float* lower, const float* upper, uint64_t seed, uint32_t generation,
                            uint32_t individual_offset, float* out, cudaStream_t stream) {
  const int64_t n = P * ((L + 3) / 4);
  if (n <= 0) return;
  gaussian_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      x, P, L, sigma, philox::prob_threshold(prob), prob >= 1.0, lower, upper, seed, generation,
      individual_offset, out);
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
}

void gaussian_normals_cuda(int64_t P, int64_t L, uint64_t seed, uint32_t generation,
                           uint32_t individual_offset, float* out, cudaStream_t stream) {
  const int64_t n = P * ((L + 3) / 4);
  if (n <= 0) return;
  normals_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(P, L, seed, generation, individual_offset, out);
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace evoforge::cuda
