// Batched mutation kernels on the CPU. Compiled with -ffp-contract=off (cpp/CMakeLists.txt) so
// that float arithmetic is rounded exactly as on the GPU twin.
#include "evoforge/mutation.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "evoforge/common.h"
#include "evoforge/macros.h"


namespace evoforge {

EVOFORGE_CLONES
void gaussian_normals_cpu(uint64_t seed, uint32_t generation, uint32_t individual, uint32_t b0,
                          int64_t nb, float* __restrict z) {
  const uint32_t k0 = philox::key_lo(seed), k1 = philox::key_hi(seed);
  const uint32_t c3 = philox::c3_of(philox::kGaussian, 0);
  for (int64_t i = 0; i < nb; ++i) {
    philox::U32x4 w = philox::philox4x32_10(b0 + static_cast<uint32_t>(i), individual, generation, c3, k0, k1);
    philox::F32x2 a = philox::box_muller(w.v[0], w.v[1]);
    philox::F32x2 b = philox::box_muller(w.v[2], w.v[3]);
    z[4 * i] = a.a;
    z[4 * i + 1] = a.b;
    z[4 * i + 2] = b.a;
    z[4 * i + 3] = b.b;
  }
}

// The same result as level_switch_family on every parent, in three phases: (1) attempt 0 of every
// offspring in parallel (each a pure function of (parent, k, attempt)); (2) per family, in order
// of k, keep the candidate unless it repeats an accepted one, else draw attempts 1, 2, ... (a hash
// set replaces the linear scan); (3) write the rows in parallel.
void level_switch_cpu(const LevelSwitchArgs& args, int num_threads) {
  const LevelSwitchArgs& A = args;
  const int threads = resolve_threads(num_threads);
  const int64_t P = A.P, N = A.n_offspring, no = P * N;
  // Parents within their bounds (checked here, in parallel, rather than in Python).
  std::vector<int64_t> bad(static_cast<size_t>(P), -1);
  parallel_for(P, threads, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, A.L)), [&](int64_t b, int64_t e, int) {
    for (int64_t p = b; p < e; ++p) {
      const int32_t* x = A.parents + p * A.L;
      int any = 0;  // branch-free first, so that the scan vectorises
      for (int64_t g = 0; g < A.L; ++g) any |= (x[g] < A.lower[g]) | (x[g] > A.upper[g]);
      if (any)
        for (int64_t g = 0; g < A.L; ++g)
          if (x[g] < A.lower[g] || x[g] > A.upper[g]) {
            bad[p] = g;
            break;
          }
    }
  });
  for (int64_t p = 0; p < P; ++p)
    if (bad[p] >= 0) {
      const int64_t g = bad[p];
      EVOFORGE_THROW(std::invalid_argument, "parents[" << p << ", " << g << "] = " << A.parents[p * A.L + g]
                     << " lies outside [lower, upper] = [" << A.lower[g] << ", " << A.upper[g] << "]");
    }
  std::vector<int32_t> cand(static_cast<size_t>(no));
  std::vector<double> exact(static_cast<size_t>(no), 0.0);
  parallel_for(no, threads, 256, [&](int64_t b, int64_t e, int) {
    for (int64_t o = b; o < e; ++o) level_switch_phase1(A, o, cand.data(), exact.data());
  });
  const uint64_t cap = level_switch_slot_capacity(N);
  parallel_for(P, threads, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, N)), [&](int64_t b, int64_t e, int) {
    std::vector<int64_t> slot(cap);
    for (int64_t p = b; p < e; ++p) level_switch_phase2(A, p, cand.data(), exact.data(), slot.data(), cap);
  });
  parallel_for(no, threads, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, A.L)), [&](int64_t b, int64_t e, int) {
    for (int64_t o = b; o < e; ++o) {
      if (A.status[o / N] != kLevelSwitchOk) continue;
      level_switch_write(A, o / N, o);
      if (A.drift) A.drift[o] = exact[o];
    }
  });
  level_switch_throw_status(args);
}

void level_switch_sequential_cpu(const LevelSwitchArgs& args) {
  for (int64_t p = 0; p < args.P; ++p) level_switch_family(args, p);
  level_switch_throw_status(args);
}

void level_switch_throw_status(const LevelSwitchArgs& args) {
  for (int64_t p = 0; p < args.P; ++p) {
    if (args.status[p] == kLevelSwitchNoMove)
      EVOFORGE_THROW(std::invalid_argument,
                     "level_switch: parent " << p << " admits no switch: no gene of any group can be"
                     " raised while another gene of the same group is lowered within [lower, upper]"
                     << (args.costs ? " and the budget tolerance" : ""));
    if (args.status[p] == kLevelSwitchExhausted)
      EVOFORGE_THROW(std::invalid_argument,
                     "level_switch: could not draw " << args.n_offspring
                     << " distinct offspring of parent " << p << " in " << args.max_attempts
                     << " attempts each; the neighbourhood reachable with max_switches="
                     << args.max_switches << " is too small (lower n_offspring or raise max_switches)");
  }
}

void point_mutation_cpu(const int32_t* x, int64_t P, int64_t L, const int32_t* lower,
                        const int32_t* upper, double prob, uint64_t seed, uint32_t generation,
                        uint32_t individual_offset, int32_t* out, int num_threads) {
  const double thr = philox::prob_threshold(prob);
  parallel_for(P, resolve_threads(num_threads), std::max<int64_t>(1, 16384 / std::max<int64_t>(1, L)),
               [&](int64_t b, int64_t e, int) {
                 for (int64_t r = b; r < e; ++r) {
                   const uint32_t ind = individual_offset + static_cast<uint32_t>(r);
                   const int32_t* xr = x + r * L;
                   int32_t* yr = out + r * L;
                   for (int64_t g = 0; g < L; ++g) {
                     int32_t v = xr[g];
                     const int64_t n = int64_t{upper[g]} - lower[g];  // choices besides v
                     if (n > 0) {
                       philox::U32x4 w = philox::block(seed, static_cast<uint32_t>(g), ind, generation,
                                                       philox::kPointMutation, 0);
                       if (philox::bernoulli24(w.v[0], thr)) {
                         int64_t nv = lower[g] + static_cast<int64_t>(philox::below64(
                                                     philox::join64(w.v[1], w.v[2]), static_cast<uint64_t>(n)));
                         if (nv >= v) ++nv;
                         v = static_cast<int32_t>(nv);
                       }
                     }
                     yr[g] = v;
                   }
                 }
               });
}

namespace {

inline float widen_mul(float s, float z) { return philox::fmul(s, z); }
inline double widen_mul(double s, float z) { return s * static_cast<double>(z); }

template <typename T>
void gaussian_row(const T* xr, int64_t L, const T* sigma, double thr, bool all, const T* lower,
                  const T* upper, uint64_t seed, uint32_t generation, uint32_t ind, T* yr) {
  constexpr int64_t kBlocks = 64;  // 256 genes per chunk
  alignas(64) float z[4 * kBlocks];
  for (int64_t g0 = 0; g0 < L; g0 += 4 * kBlocks) {
    const int64_t ng = std::min<int64_t>(4 * kBlocks, L - g0);
    gaussian_normals_cpu(seed, generation, ind, static_cast<uint32_t>(g0 / 4), (ng + 3) / 4, z);
    if (all && !lower) {
      for (int64_t q = 0; q < ng; ++q) yr[g0 + q] = xr[g0 + q] + widen_mul(sigma[g0 + q], z[q]);
      continue;
    }
    for (int64_t q0 = 0; q0 < ng; q0 += 4) {  // chunks start at multiples of 4 genes
      philox::U32x4 w{{0, 0, 0, 0}};
      if (!all)
        w = philox::block(seed, static_cast<uint32_t>((g0 + q0) / 4), ind, generation,
                          philox::kGaussianMask, 0);
      for (int64_t q = q0; q < std::min(ng, q0 + 4); ++q) {
        const int64_t g = g0 + q;
        T y = xr[g];
        if (all || philox::bernoulli24(w.v[q - q0], thr)) {
          y = y + widen_mul(sigma[g], z[q]);
          if (lower) y = std::min(std::max(y, lower[g]), upper[g]);
        }
        yr[g] = y;
      }
    }
  }
}

}  // namespace

template <typename T>
void gaussian_mutation_cpu(const T* x, int64_t P, int64_t L, const T* sigma, double prob,
                           const T* lower, const T* upper, uint64_t seed, uint32_t generation,
                           uint32_t individual_offset, T* out, int num_threads) {
  const double thr = philox::prob_threshold(prob);
  const bool all = prob >= 1.0;
  parallel_for(P, resolve_threads(num_threads), std::max<int64_t>(1, 8192 / std::max<int64_t>(1, L)),
               [&](int64_t b, int64_t e, int) {
                 for (int64_t r = b; r < e; ++r)
                   gaussian_row<T>(x + r * L, L, sigma, thr, all, lower, upper, seed, generation,
                                   individual_offset + static_cast<uint32_t>(r), out + r * L);
               });
}

template <typename T>
void polynomial_mutation_cpu(const T* x, int64_t P, int64_t L, const double* lower,
                             const double* upper, double eta, double prob, uint64_t seed,
                             uint32_t generation, uint32_t individual_offset, T* out,
                             int num_threads) {
  const double thr = philox::prob_threshold(prob);
  const double m = 1.0 / (eta + 1.0);
  parallel_for(P, resolve_threads(num_threads), std::max<int64_t>(1, 4096 / std::max<int64_t>(1, L)),
               [&](int64_t b, int64_t e, int) {
                 for (int64_t r = b; r < e; ++r) {
                   const uint32_t ind = individual_offset + static_cast<uint32_t>(r);
                   for (int64_t g = 0; g < L; ++g) {
                     const double xl = lower[g], xu = upper[g];
                     T v = x[r * L + g];
                     if (xu > xl) {
                       philox::U32x4 w = philox::block(seed, static_cast<uint32_t>(g), ind, generation,
                                                       philox::kPolynomial, 0);
                       if (philox::bernoulli24(w.v[0], thr)) {
                         const double y = static_cast<double>(v), range = xu - xl;
                         const double u = philox::u01_f64(w.v[1], w.v[2]);
                         double dq;
                         if (u <= 0.5) {
                           const double d1 = (y - xl) / range;
                           const double val = 2.0 * u + (1.0 - 2.0 * u) * std::pow(1.0 - d1, eta + 1.0);
                           dq = std::pow(val, m) - 1.0;
                         } else {
                           const double d2 = (xu - y) / range;
                           const double val = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * std::pow(1.0 - d2, eta + 1.0);
                           dq = 1.0 - std::pow(val, m);
                         }
                         v = static_cast<T>(std::min(std::max(y + dq * range, xl), xu));
                       }
                     }
                     out[r * L + g] = v;
                   }
                 }
               });
}

template void gaussian_mutation_cpu<float>(const float*, int64_t, int64_t, const float*, double,
                                           const float*, const float*, uint64_t, uint32_t, uint32_t,
                                           float*, int);
template void gaussian_mutation_cpu<double>(const double*, int64_t, int64_t, const double*, double,
                                            const double*, const double*, uint64_t, uint32_t,
                                            uint32_t, double*, int);
template void polynomial_mutation_cpu<float>(const float*, int64_t, int64_t, const double*,
                                             const double*, double, double, uint64_t, uint32_t,
                                             uint32_t, float*, int);
template void polynomial_mutation_cpu<double>(const double*, int64_t, int64_t, const double*,
                                              const double*, double, double, uint64_t, uint32_t,
                                              uint32_t, double*, int);

}  // namespace evoforge
