// Batched crossover kernels (CPU). Row r of `a` mates with row r of `b` (both [P, L], row-major)
// and yields row r of c1 and of c2; the pair is individual `individual_offset + r` in the Philox
// layout of evoforge/philox.h, so the output depends on neither the thread count nor the split.
//
// Every pair first decides whether to cross at all: word 0 of block 0, stream kCrossover, sub 0,
// true with probability `prob` (prob >= 1: always); a pair that does not cross is copied (c1 = a,
// c2 = b). Genes "exchanged" go c1 <- b, c2 <- a.
#pragma once

#include <cstdint>

namespace evoforge {

enum class CrossoverKind : int32_t {
  kUniform = 0,   // gene g exchanged when the top bit of word g % 4 of block g / 4 (sub 1) is set
  kOnePoint = 1,  // cut k in [1, L - 1] from words 2-3 of block 0 (sub 0); genes g >= k exchanged
  kTwoPoint = 2,  // cuts k1 < k2 in [1, L - 1] (words 2-3 of block 0 and 0-1 of block 1, sub 0,
                  // the second drawn from the L - 2 values other than the first); genes in
                  // [k1, k2) exchanged. L = 2 falls back to one point.
};

/// Uniform, one-point or two-point crossover of any 4-byte or 8-byte gene type (bits are copied).
///   a, b, c1, c2 : [P, L], elem_size 4 or 8 bytes
void crossover_cpu(CrossoverKind kind, const void* a, const void* b, int64_t P, int64_t L,
                   int elem_size, double prob, uint64_t seed, uint32_t generation,
                   uint32_t individual_offset, void* c1, void* c2, int num_threads);

/// Simulated binary crossover (Deb and Agrawal 1995; the bounded form of Deb's NSGA-II code and
/// pymoo). Gene g of a crossing pair uses block g of stream kSBX: it is crossed with probability
/// prob_var (word 0) when |a - b| > 1e-14 and xl < xu; with u = u01_f64(words 1, 2),
/// y1 = min, y2 = max, d = y2 - y1, and for each side
///   beta = 1 + 2 (y1 - xl) / d  (resp. 1 + 2 (xu - y2) / d),  alpha = 2 - beta^-(eta + 1),
///   betaq = (u alpha)^(1/(eta+1)) if u <= 1/alpha else (1 / (2 - u alpha))^(1/(eta+1)),
///   c_low = (y1 + y2 - betaq d) / 2,  c_high = (y1 + y2 + betaq d) / 2,
/// both clipped to [xl, xu]; c1 gets c_low and c2 c_high, exchanged when the top bit of word 3 is set.
/// Computed in float64.
template <typename T>
void sbx_cpu(const T* a, const T* b, int64_t P, int64_t L, const double* lower, const double* upper,
             double eta, double prob, double prob_var, uint64_t seed, uint32_t generation,
             uint32_t individual_offset, T* c1, T* c2, int num_threads);

}  // namespace evoforge
