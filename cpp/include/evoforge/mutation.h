// Batched mutation kernels (CPU). A population is a row-major [P, L] array: P individuals of L
// genes. Randomness: Philox4x32-10 in the layout of evoforge/philox.h; row r is individual
// `individual_offset + r`, so any thread count and any split of the rows give the same output.
#pragma once

#include <cstdint>

#include "evoforge/mutation_kernels.h"

namespace evoforge {

/// The standard normals of blocks b0 .. b0 + nb - 1 (genes 4 b0 .. 4 (b0 + nb) - 1) of one
/// individual, as gaussian_normals4 gives them; vectorised (AVX2 / AVX-512 clones where available,
/// with the same bits as the scalar code).  z : [4 nb]
void gaussian_normals_cpu(uint64_t seed, uint32_t generation, uint32_t individual, uint32_t b0,
                          int64_t nb, float* z);

/// EvoPress level-switch mutation for every parent (see LevelSwitchArgs and level_switch_family);
/// families run in parallel. Throws std::invalid_argument naming the first failing parent.
void level_switch_cpu(const LevelSwitchArgs& args, int num_threads);

/// The definition, run as the GPU runs it (level_switch_family per parent, one after another):
/// the tests check that level_switch_cpu gives the same output.
void level_switch_sequential_cpu(const LevelSwitchArgs& args);

/// Throws std::invalid_argument for the first parent whose status is not kLevelSwitchOk.
void level_switch_throw_status(const LevelSwitchArgs& args);

/// Random-resetting integer mutation: each gene mutates with probability `prob`, to a value drawn
/// uniformly from [lower[g], upper[g]] minus its current value (unchanged when lower == upper).
/// Gene g of individual i uses block g of stream kPointMutation: word 0 decides, words 1-2 the value.
///   x, out : [P, L] int32 (may alias);  lower, upper : [L]
void point_mutation_cpu(const int32_t* x, int64_t P, int64_t L, const int32_t* lower,
                        const int32_t* upper, double prob, uint64_t seed, uint32_t generation,
                        uint32_t individual_offset, int32_t* out, int num_threads);

/// Gaussian mutation: out = x + sigma[g] * z with z ~ N(0, 1) by gaussian_normals4 (block g / 4 of
/// stream kGaussian), for each gene mutated with probability `prob` (word g % 4 of block g / 4 of
/// stream kGaussianMask; prob >= 1 mutates all and draws no mask), then clipped to [lower, upper]
/// when given. float32: one rounded multiply and add; float64: z is widened, then the same.
///   x, out : [P, L] (may alias);  sigma : [L];  lower, upper : [L] or nullptr
template <typename T>
void gaussian_mutation_cpu(const T* x, int64_t P, int64_t L, const T* sigma, double prob,
                           const T* lower, const T* upper, uint64_t seed, uint32_t generation,
                           uint32_t individual_offset, T* out, int num_threads);

/// Polynomial mutation (Deb and Goyal 1996; the bounded form of Deb's NSGA-II code and pymoo):
/// each gene mutates with probability `prob` (word 0 of block g, stream kPolynomial); with
/// u = u01_f64(words 1, 2), d1 = (x - xl) / (xu - xl), d2 = (xu - x) / (xu - xl), m = 1 / (eta + 1):
///   u <= 0.5: dq = (2u + (1 - 2u) (1 - d1)^(eta + 1))^m - 1
///   u >  0.5: dq = 1 - (2(1 - u) + 2(u - 0.5) (1 - d2)^(eta + 1))^m
/// y = clip(x + dq (xu - xl), xl, xu), computed in float64. Genes with xl == xu are left as they are.
template <typename T>
void polynomial_mutation_cpu(const T* x, int64_t P, int64_t L, const double* lower,
                             const double* upper, double eta, double prob, uint64_t seed,
                             uint32_t generation, uint32_t individual_offset, T* out,
                             int num_threads);

}  // namespace evoforge
