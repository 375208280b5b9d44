// CUDA twin of the DARE keep mask (evoforge/merging.h): one thread per Philox block of 4 elements,
// the same words and the same integer comparison as the CPU, so the masks are equal bit for bit.
#include "evoforge/cuda/common.h"
#include "evoforge/cuda/merging.h"
#include "evoforge/merging.h"

namespace evoforge::cuda {
namespace {

__global__ void dare_mask_kernel(int64_t n, double cut, uint64_t seed, uint32_t stream_id, uint32_t k,
                                 uint8_t* __restrict__ out) {
  const int64_t nb = (n + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < nb; b += int64_t{gridDim.x} * blockDim.x) {
    const philox::U32x4 w = merging::dare_words(seed, stream_id, k, static_cast<uint64_t>(b));
    const int64_t rest = n - 4 * b;
    const int m = static_cast<int>(rest < 4 ? rest : 4);
#pragma unroll
    for (int q = 0; q < 4; ++q)
      if (q < m) out[4 * b + q] = philox::bernoulli24(w.v[q], cut) ? 1 : 0;
  }
}

}  // namespace

void dare_mask_cuda(int64_t n, double density, uint64_t seed, uint32_t stream_id, uint32_t k, uint8_t* out,
                    cudaStream_t stream) {
  const int64_t nb = (n + 3) / 4;
  if (nb <= 0) return;
  constexpr int kThreads = 256;
  const int64_t g = (nb + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(g < 65535 * 64 ? g : 65535 * 64);
  dare_mask_kernel<<<grid, kThreads, 0, stream>>>(n, merging::dare_threshold(density), seed, stream_id, k, out);
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace evoforge::cuda
