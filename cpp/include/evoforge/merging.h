// Model merging of flattened parameter vectors: task arithmetic, TIES (Yadav et al. 2023: trim,
// elect sign, disjoint mean), DARE (Yu et al. 2023: drop and rescale) and SLERP. Torch- and
// pybind-free; the Python wrapper (evoforge/merging.py) checks every argument first.
//
// Symbols: K models, N parameters; base [N] float32, deltas [K, N] float32 (task vectors
// model_k - base), weights w [K] and densities rho [K] float64, out [N] float32.
//
// Modified deltas d~_k:
//   TIES trim: n_keep = clamp(floor(rho_k N + 0.5), 1, N) (float64 arithmetic); thr_k = the
//     n_keep-th largest |delta_k| (a float32 magnitude; found by a radix select over the bit
//     patterns of the magnitudes, which order as the magnitudes do); element i is kept iff
//     |delta_k[i]| >= thr_k (ties at the threshold are all kept), else 0.
//   DARE: element i of model k is kept iff u(seed, stream, k, i) < rho_k, and a kept element is
//     delta_k[i] * (1 / rho_k) (in float64), a dropped one 0.
//   neither: d~_k = delta_k.
// Combination, per element i, in float64 and in the order k = 0 .. K-1:
//   plain:  r = sum_k w_k d~_k[i]; normalize: r /= sum_k w_k (over all k).
//   TIES sign election: g = sign(sum_k w_k d~_k[i]); A = {k : d~_k[i] != 0, sign(d~_k[i]) == g};
//     r = sum_{k in A} w_k d~_k[i]; normalize: r /= sum_{k in A} w_k (r = 0 when A is empty or
//     that sum is 0); g = 0 gives r = 0.
//   out[i] = float32(base[i] + scale r)  (float64, one rounding to float32 at the end).
// Every element is computed alone from the same float64 operations, so the result does not depend
// on the thread count (the code is compiled with -ffp-contract=off).
//
// DARE's uniforms: Philox4x32-10 in evoforge's layout (evoforge/philox.h) with
//   key     = the 64-bit seed,
//   counter = (c0 = blk & 0xffffffff, c1 = k (the model's row in deltas), c2 = stream (32 bits),
//              c3 = (kDareStream << 24) | (blk >> 32)),   blk = i / 4 (so N < 2^58),
// and word i % 4 of that block, w, gives u = (w >> 8) 2^-24 in [0, 1) (24 bits, exact in float32):
// element i is kept iff (w >> 8) < rho_k 2^24, i.e. iff u < rho_k (rho_k = 1 keeps everything).
// kDareStream = 10 is the operator stream after philox::kDeepGA = 9. The same header-only function
// (dare_words) runs in the CUDA twin (cuda/merging.cu), so the masks are equal bit for bit.
//
// SLERP of two flattened vectors a, b [N] (mergekit's slerp): dot, |a|^2, |b|^2 in float64 over
// fixed chunks of kSlerpChunk elements (4 interleaved partial sums inside a chunk, elements
// j = q mod 4 in lane q, added as (l0 + l1) + (l2 + l3)), chunk partials added in chunk order (so
// independent of the thread count); cos = clamp(a.b / (|a| |b|), -1, 1); when |a| = 0,
// |b| = 0, |cos| > 1 - eps or sin(omega) = 0: out = (1 - t) a + t b, else with omega = acos(cos),
// out = sin((1 - t) omega) / sin(omega) a + sin(t omega) / sin(omega) b (coefficients and the
// sum in float64, one rounding to float32).
#pragma once

#include <cstdint>

#include "evoforge/philox.h"

namespace evoforge {
namespace merging {

/// The operator stream of DARE's draws (top 8 bits of counter word c3; philox::Stream + 1).
constexpr uint32_t kDareStream = 10;
static_assert(kDareStream == static_cast<uint32_t>(philox::kDeepGA) + 1,
              "DARE takes the operator stream after the last one of philox::Stream");

/// Elements per chunk of the SLERP reductions (fixed: the partial sums do not depend on threads).
constexpr int64_t kSlerpChunk = 4096;

/// The 4 Philox words of elements 4 blk .. 4 blk + 3 of model k (layout above).
EVOFORGE_HD philox::U32x4 dare_words(uint64_t seed, uint32_t stream, uint32_t k, uint64_t blk) {
  return philox::philox4x32_10(static_cast<uint32_t>(blk), k, stream,
                               philox::c3_of(kDareStream, static_cast<uint32_t>(blk >> 32)),
                               philox::key_lo(seed), philox::key_hi(seed));
}

/// rho 2^24 as a double: a word w keeps its element iff (w >> 8) < this (philox::bernoulli24).
EVOFORGE_HD double dare_threshold(double density) { return density * 16777216.0; }

/// What merge_deltas_cpu does to each delta (trim and dare exclude each other).
enum class Sparsify { kNone = 0, kTrim = 1, kDare = 2 };

struct MergeArgs {
  const float* base = nullptr;    // [N]
  const float* deltas = nullptr;  // [K, N], row k at deltas + k N
  const double* weights = nullptr;    // [K], finite
  const double* densities = nullptr;  // [K] in (0, 1]; read only for kTrim / kDare
  int64_t K = 0, N = 0;
  Sparsify sparsify = Sparsify::kNone;
  bool sign_election = false;
  bool normalize = false;
  double scale = 1.0;
  uint64_t seed = 0;
  uint32_t stream = 0;
  float* out = nullptr;  // [N]; must not overlap base or deltas
  // [K] or null, kTrim only: each model's n_keep-th largest |delta_k|, computed by the caller once for
  // many merges (the selection is then skipped, and with it the check that the deltas are finite).
  const float* thresholds = nullptr;
};

/// out = base + scale * merge(d~_0 .. d~_{K-1}) (see above). Throws std::invalid_argument for
/// K < 1, N < 0, a density outside (0, 1] (trim / dare), a non-finite weight, scale or delta
/// (the lowest k holding one is named), or normalize without sign election with sum_k w_k == 0.
/// Errors found before writing (arguments; non-finite deltas when trimming) leave out untouched;
/// a non-finite delta found while merging (no trim) leaves out's contents unspecified.
void merge_deltas_cpu(const MergeArgs& args, int num_threads);

/// The DARE keep mask of model k: out[i] = 1 if element i is kept, else 0 (out [n] uint8).
void dare_mask_cpu(int64_t n, double density, uint64_t seed, uint32_t stream, uint32_t k, uint8_t* out,
                   int num_threads);

/// SLERP of a, b [N] into out [N] (see above); 0 <= t <= 1, eps >= 0. Throws std::invalid_argument
/// for a bad t or eps, or a NaN / inf in a or b (before writing). out must not overlap a or b.
void slerp_cpu(const float* a, const float* b, int64_t N, double t, double eps, float* out, int num_threads);

}  // namespace merging
}  // namespace evoforge
