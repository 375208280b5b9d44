// Batched crossover kernels on the CPU (see evoforge/crossover.h).
#include "evoforge/crossover.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "evoforge/common.h"
#include "evoforge/philox.h"

namespace evoforge {
namespace {

template <typename W>
void crossover_rows(CrossoverKind kind, const W* a, const W* b, int64_t r0, int64_t r1, int64_t L,
                    double thr, bool always, uint64_t seed, uint32_t gen, uint32_t off, W* c1, W* c2) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint32_t ind = off + static_cast<uint32_t>(r);
    const W* ar = a + r * L;
    const W* br = b + r * L;
    W* x = c1 + r * L;
    W* y = c2 + r * L;
    philox::U32x4 w0 = philox::block(seed, 0, ind, gen, philox::kCrossover, 0);
    std::memcpy(x, ar, sizeof(W) * L);
    std::memcpy(y, br, sizeof(W) * L);
    if (!always && !philox::bernoulli24(w0.v[0], thr)) continue;
    int64_t lo = 0, hi = 0;  // exchanged range for the point crossovers
    if (kind == CrossoverKind::kUniform) {
      for (int64_t g0 = 0; g0 < L; g0 += 4) {
        philox::U32x4 w = philox::block(seed, static_cast<uint32_t>(g0 / 4), ind, gen, philox::kCrossover, 1);
        for (int q = 0; q < 4 && g0 + q < L; ++q)
          if (w.v[q] >> 31) std::swap(x[g0 + q], y[g0 + q]);
      }
      continue;
    }
    if (L < 2) continue;
    const uint64_t k1 = 1 + philox::below64(philox::join64(w0.v[2], w0.v[3]), static_cast<uint64_t>(L - 1));
    if (kind == CrossoverKind::kOnePoint || L == 2) {
      lo = static_cast<int64_t>(k1);
      hi = L;
    } else {
      philox::U32x4 w1 = philox::block(seed, 1, ind, gen, philox::kCrossover, 0);
      uint64_t k2 = 1 + philox::below64(philox::join64(w1.v[0], w1.v[1]), static_cast<uint64_t>(L - 2));
      if (k2 >= k1) ++k2;
      lo = static_cast<int64_t>(std::min(k1, k2));
      hi = static_cast<int64_t>(std::max(k1, k2));
    }
    for (int64_t g = lo; g < hi; ++g) std::swap(x[g], y[g]);
  }
}

inline double sbx_betaq(double u, double beta, double eta) {
  const double alpha = 2.0 - std::pow(beta, -(eta + 1.0));
  if (u <= 1.0 / alpha) return std::pow(u * alpha, 1.0 / (eta + 1.0));
  return std::pow(1.0 / (2.0 - u * alpha), 1.0 / (eta + 1.0));
}

}  // namespace

void crossover_cpu(CrossoverKind kind, const void* a, const void* b, int64_t P, int64_t L,
                   int elem_size, double prob, uint64_t seed, uint32_t generation,
                   uint32_t individual_offset, void* c1, void* c2, int num_threads) {
  EVOFORGE_CHECK(elem_size == 4 || elem_size == 8, "crossover: genes must be 4 or 8 bytes");
  const double thr = philox::prob_threshold(prob);
  const bool always = prob >= 1.0;
  parallel_for(P, resolve_threads(num_threads), std::max<int64_t>(1, 16384 / std::max<int64_t>(1, L)),
               [&](int64_t r0, int64_t r1, int) {
                 if (elem_size == 4)
                   crossover_rows(kind, static_cast<const uint32_t*>(a), static_cast<const uint32_t*>(b), r0, r1,
                                  L, thr, always, seed, generation, individual_offset,
                                  static_cast<uint32_t*>(c1), static_cast<uint32_t*>(c2));
                 else
                   crossover_rows(kind, static_cast<const uint64_t*>(a), static_cast<const uint64_t*>(b), r0, r1,
                                  L, thr, always, seed, generation, individual_offset,
                                  static_cast<uint64_t*>(c1), static_cast<uint64_t*>(c2));
               });
}

template <typename T>
void sbx_cpu(const T* a, const T* b, int64_t P, int64_t L, const double* lower, const double* upper,
             double eta, double prob, double prob_var, uint64_t seed, uint32_t generation,
             uint32_t individual_offset, T* c1, T* c2, int num_threads) {
  const double thr = philox::prob_threshold(prob), thr_var = philox::prob_threshold(prob_var);
  const bool always = prob >= 1.0, all_vars = prob_var >= 1.0;
  parallel_for(P, resolve_threads(num_threads), std::max<int64_t>(1, 4096 / std::max<int64_t>(1, L)),
               [&](int64_t r0, int64_t r1, int) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const uint32_t ind = individual_offset + static_cast<uint32_t>(r);
                   const T* ar = a + r * L;
                   const T* br = b + r * L;
                   T* x = c1 + r * L;
                   T* y = c2 + r * L;
                   std::copy(ar, ar + L, x);
                   std::copy(br, br + L, y);
                   philox::U32x4 w0 = philox::block(seed, 0, ind, generation, philox::kCrossover, 0);
                   if (!always && !philox::bernoulli24(w0.v[0], thr)) continue;
                   for (int64_t g = 0; g < L; ++g) {
                     const double xl = lower[g], xu = upper[g];
                     const double va = static_cast<double>(ar[g]), vb = static_cast<double>(br[g]);
                     if (!(xu > xl) || !(std::fabs(va - vb) > 1e-14)) continue;
                     philox::U32x4 w = philox::block(seed, static_cast<uint32_t>(g), ind, generation, philox::kSBX, 0);
                     if (!all_vars && !philox::bernoulli24(w.v[0], thr_var)) continue;
                     const double u = philox::u01_f64(w.v[1], w.v[2]);
                     const double y1 = std::min(va, vb), y2 = std::max(va, vb), d = y2 - y1;
                     const double bl = sbx_betaq(u, 1.0 + 2.0 * (y1 - xl) / d, eta);
                     const double bh = sbx_betaq(u, 1.0 + 2.0 * (xu - y2) / d, eta);
                     double lo = 0.5 * ((y1 + y2) - bl * d), hi = 0.5 * ((y1 + y2) + bh * d);
                     lo = std::min(std::max(lo, xl), xu);
                     hi = std::min(std::max(hi, xl), xu);
                     if (w.v[3] >> 31) std::swap(lo, hi);
                     x[g] = static_cast<T>(lo);
                     y[g] = static_cast<T>(hi);
                   }
                 }
               });
}

template void sbx_cpu<float>(const float*, const float*, int64_t, int64_t, const double*, const double*,
                             double, double, double, uint64_t, uint32_t, uint32_t, float*, float*, int);
template void sbx_cpu<double>(const double*, const double*, int64_t, int64_t, const double*, const double*,
                              double, double, double, uint64_t, uint32_t, uint32_t, double*, double*, int);

}  // namespace evoforge
