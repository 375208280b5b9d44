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

// The three phases of cpp/mutation.cpp's level_switch_cpu (same functions, same result).
__global__ void level_switch_phase1_kernel(LevelSwitchArgs a, int32_t* cand, double* exact) {
  const int64_t no = a.P * a.n_offspring;
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < no; o += int64_t{gridDim.x} * blockDim.x)
    level_switch_phase1(a, o, cand, exact);
}

__global__ void level_switch_phase2_kernel(LevelSwitchArgs a, const int32_t* cand, double* exact, int64_t* slots,
                                           uint64_t cap) {
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < a.P; p += int64_t{gridDim.x} * blockDim.x)
    level_switch_phase2(a, p, cand, exact, slots + p * static_cast<int64_t>(cap), cap);
}

// One thread per gene of an offspring: coalesced copies of the parent plus the stored diff.
__global__ void level_switch_write_kernel(LevelSwitchArgs a) {
  const int64_t no = a.P * a.n_offspring, n = no * a.L;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < n; t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t o = t / a.L, g = t % a.L, p = o / a.n_offspring;
    if (a.status[p] != kLevelSwitchOk) continue;
    int32_t v = a.parents[p * a.L + g];
    const int c = a.ws_count[o];
    for (int r = 0; r < c; ++r)
      if (a.ws_genes[o * kMaxDiff + r] == g) v += a.ws_delta[o * kMaxDiff + r];
    a.out[t] = v;
  }
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

void level_switch_cuda(const LevelSwitchArgs& args, int32_t* cand, double* exact, int64_t* slots,
                       cudaStream_t stream) {
  const int64_t no = args.P * args.n_offspring;
  if (no <= 0) return;
  constexpr int kHeavy = 64;  // candidate and family threads do a lot each: small blocks
  level_switch_phase1_kernel<<<grid_for(no, kHeavy), kHeavy, 0, stream>>>(args, cand, exact);
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
  level_switch_phase2_kernel<<<grid_for(args.P, kHeavy), kHeavy, 0, stream>>>(
      args, cand, exact, slots, level_switch_slot_capacity(args.n_offspring));
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
  if (args.L > 0) {
    level_switch_write_kernel<<<grid_for(no * args.L, kThreads), kThreads, 0, stream>>>(args);
    EVOFORGE_CUDA_CHECK(cudaGetLastError());
  }
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
