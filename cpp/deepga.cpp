// Deep GA parameter reconstruction on the CPU (see evoforge/deepga.h). Compiled with
// -ffp-contract=off so that the float32 arithmetic matches the GPU twin bit for bit.
#include "evoforge/deepga.h"

#include <algorithm>

#include "evoforge/common.h"
#include "evoforge/macros.h"


namespace evoforge {
namespace {

// op[0 .. n) += sigma * noise(seed)[g0 .. g0 + n), g0 a multiple of 4; same IEEE ops in every clone.
EVOFORGE_CLONES
void add_noise(float* __restrict op, int64_t g0, int64_t n, uint64_t seed, float sigma) {
  const int64_t nb = n / 4;
  for (int64_t i = 0; i < nb; ++i) {
    float z[4];
    deepga_noise4(seed, static_cast<uint64_t>(g0 / 4 + i), z);
    for (int q = 0; q < 4; ++q) op[4 * i + q] = philox::fadd(op[4 * i + q], philox::fmul(sigma, z[q]));
  }
  if (n % 4) {
    float z[4];
    deepga_noise4(seed, static_cast<uint64_t>(g0 / 4 + nb), z);
    for (int64_t q = 0; q < n % 4; ++q) op[4 * nb + q] = philox::fadd(op[4 * nb + q], philox::fmul(sigma, z[q]));
  }
}

}  // namespace

void seeds_to_params_cpu(const float* base, int64_t base_stride, int64_t P, int64_t D,
                         const uint64_t* seeds, const int64_t* offsets, float sigma, float* out,
                         int num_threads) {
  const int64_t nb = (D + 3) / 4;
  constexpr int64_t kChunk = 1024;  // blocks per work item: rows x chunks run in parallel
  const int64_t nchunks = (nb + kChunk - 1) / kChunk;
  parallel_for(P * nchunks, resolve_threads(num_threads), 1, [&](int64_t w0, int64_t w1, int) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t p = w / nchunks, c = w % nchunks;
      const float* bp = base + p * base_stride;
      float* op = out + p * D;
      const int64_t g0 = c * kChunk * 4, g1 = std::min(D, g0 + kChunk * 4);
      std::copy(bp + g0, bp + g1, op + g0);
      for (int64_t s = offsets[p]; s < offsets[p + 1]; ++s) add_noise(op + g0, g0, g1 - g0, seeds[s], sigma);
    }
  });
}

}  // namespace evoforge
