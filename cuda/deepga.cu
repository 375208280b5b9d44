// CUDA twin of Deep GA parameter reconstruction (evoforge/deepga.h): one thread per block of 4
// parameters of one genome, the same float32 operations in the same order as the CPU.
#include "evoforge/cuda/common.h"
#include "evoforge/cuda/mutation.h"
#include "evoforge/deepga.h"

namespace evoforge::cuda {
namespace {

__global__ void seeds_to_params_kernel(const float* __restrict__ base, int64_t base_stride, int64_t P,
                                       int64_t D, const uint64_t* __restrict__ seeds,
                                       const int64_t* __restrict__ offsets, float sigma,
                                       float* __restrict__ out) {
  const int64_t nb = (D + 3) / 4, n = P * nb;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < n; t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t p = t / nb, b = t % nb;
    const int nq = static_cast<int>(D - 4 * b < 4 ? D - 4 * b : 4);
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int q = 0; q < nq; ++q) acc[q] = base[p * base_stride + 4 * b + q];
    for (int64_t s = offsets[p]; s < offsets[p + 1]; ++s) {
      float z[4];
      deepga_noise4(seeds[s], static_cast<uint64_t>(b), z);
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[q] = philox::fadd(acc[q], philox::fmul(sigma, z[q]));
    }
    for (int q = 0; q < nq; ++q) out[p * D + 4 * b + q] = acc[q];
  }
}

}  // namespace

void seeds_to_params_cuda(const float* base, int64_t base_stride, int64_t P, int64_t D,
                          const uint64_t* seeds, const int64_t* offsets, float sigma, float* out,
                          cudaStream_t stream) {
  const int64_t n = P * ((D + 3) / 4);
  if (n <= 0) return;
  constexpr int kThreads = 256;
  int64_t g = (n + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(g < 65535 * 64 ? g : 65535 * 64);
  seeds_to_params_kernel<<<grid, kThreads, 0, stream>>>(base, base_stride, P, D, seeds, offsets, sigma, out);
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace evoforge::cuda
