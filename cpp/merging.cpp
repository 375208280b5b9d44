// Model merging on the CPU (see evoforge/merging.h). Compiled with -ffp-contract=off: every element
// is the same float64 operations in the same order on any thread count and any clone.
#include "evoforge/merging.h"

#include <algorithm>
#include <limits>
#include <atomic>
#include <cmath>
#include <vector>

#include "evoforge/common.h"

namespace evoforge {
namespace merging {
namespace {

constexpr int64_t kMergeChunk = 2048;  // elements per work item of the merge (a multiple of 4)
constexpr int64_t kKeepRows = 64;     // models whose modified deltas a chunk keeps for the sign election
static_assert(kMergeChunk % 4 == 0, "merge chunks must start on Philox blocks");


/// Lowers `slot` to v (atomically): the lowest k holding a non-finite delta.
void lower_to(std::atomic<int64_t>& slot, int64_t v) {
  int64_t cur = slot.load(std::memory_order_relaxed);
  while (v < cur && !slot.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

[[noreturn]] void throw_non_finite(int64_t k) {
  EVOFORGE_THROW(std::invalid_argument, "deltas[" << k << "] holds a non-finite value (NaN or inf)");
}

int64_t n_keep_of(double density, int64_t N) {
  const double f = std::floor(density * static_cast<double>(N) + 0.5);
  return std::clamp<int64_t>(static_cast<int64_t>(std::min(f, static_cast<double>(N))), 1, N);
}

/// thr[k] = the n_keep-th largest |delta_k| (N >= 1). Throws naming the lowest k with a non-finite
/// delta (before anything is written).
std::vector<float> trim_thresholds(const MergeArgs& a, int threads) {
  std::vector<float> thr(static_cast<size_t>(a.K), 0.0f);
  std::vector<uint8_t> bad(static_cast<size_t>(a.K), 0);
  parallel_for(a.K, threads, 1, [&](int64_t k0, int64_t k1, int) {
    std::vector<float> mag(static_cast<size_t>(a.N));
    for (int64_t k = k0; k < k1; ++k) {
      const float* d = a.deltas + k * a.N;
      bool finite = true;
      for (int64_t i = 0; i < a.N; ++i) {
        finite &= std::isfinite(d[i]);
        mag[i] = std::fabs(d[i]);
      }
      if (!finite) {
        bad[k] = 1;
        continue;
      }
      const int64_t idx = a.N - n_keep_of(a.densities[k], a.N);
      std::nth_element(mag.begin(), mag.begin() + idx, mag.end());
      thr[k] = mag[idx];
    }
  });
  for (int64_t k = 0; k < a.K; ++k)
    if (bad[k]) throw_non_finite(k);
  return thr;
}

/// dk[0 .. n) = d~_k[i0 .. i0 + n) in float64; i0 is a multiple of 4. Returns false if a delta of
/// the range is not finite (never for kTrim: its thresholds' pass checked every delta).
bool modified_delta(const MergeArgs& a, const float* thr, int64_t k, int64_t i0, int64_t n, double* dk) {
  const float* d = a.deltas + k * a.N + i0;
  bool finite = true;
  switch (a.sparsify) {
    case Sparsify::kNone: {
      // branch-free (vectorised): NaN fails the comparison, inf exceeds FLT_MAX
      int ok = 1;
      double* __restrict out = dk;
      for (int64_t j = 0; j < n; ++j) out[j] = static_cast<double>(d[j]);
      for (int64_t j = 0; j < n; ++j) ok &= static_cast<int>(std::fabs(d[j]) <= std::numeric_limits<float>::max());
      finite = ok != 0;
      break;
    }
    case Sparsify::kTrim: {
      const double t = static_cast<double>(thr[k]);
      double* __restrict out = dk;
      for (int64_t j = 0; j < n; ++j) {
        const double v = static_cast<double>(d[j]);  // converted unconditionally: a select, not a branch
        out[j] = std::fabs(v) >= t ? v : 0.0;
      }
      break;
    }
    case Sparsify::kDare: {
      const double rescale = 1.0 / a.densities[k];
      const double cut = dare_threshold(a.densities[k]);
      for (int64_t j = 0; j < n; j += 4) {
        const philox::U32x4 w = dare_words(a.seed, a.stream, static_cast<uint32_t>(k),
                                           static_cast<uint64_t>((i0 + j) / 4));
        const int64_t m = std::min<int64_t>(4, n - j);
        for (int64_t q = 0; q < m; ++q) {
          finite &= std::isfinite(d[j + q]);
          dk[j + q] = philox::bernoulli24(w.v[q], cut) ? static_cast<double>(d[j + q]) * rescale : 0.0;
        }
      }
      break;
    }
  }
  return finite;
}

/// r += w d~, ws += w where d~ is non-zero with the elected sign sign(s) (d~ s > 0: deltas and sums
/// of float32 deltas are far from double underflow). Separate buffers (restrict) so it vectorises.
void merge_agreeing(const double* __restrict dk, const double* __restrict s, double w, int64_t n,
                    double* __restrict r, double* __restrict ws) {
  for (int64_t j = 0; j < n; ++j) {
    const double x = w * dk[j];  // computed unconditionally: selects, not branches, so it vectorises
    const bool agree = dk[j] * s[j] > 0.0;
    r[j] += agree ? x : 0.0;
    ws[j] += agree ? w : 0.0;
  }
}

}  // namespace

void merge_deltas_cpu(const MergeArgs& a, int num_threads) {
  EVOFORGE_CHECK(a.K >= 1, "merging needs at least one delta (K >= 1), got K = " << a.K);
  EVOFORGE_CHECK(a.N >= 0, "N must be >= 0, got " << a.N);
  EVOFORGE_CHECK(std::isfinite(a.scale), "scale must be finite, got " << a.scale);
  for (int64_t k = 0; k < a.K; ++k) {
    EVOFORGE_CHECK(std::isfinite(a.weights[k]), "weights[" << k << "] must be finite, got " << a.weights[k]);
    if (a.sparsify != Sparsify::kNone)
      EVOFORGE_CHECK(a.densities[k] > 0.0 && a.densities[k] <= 1.0,
                     "densities[" << k << "] must lie in (0, 1], got " << a.densities[k]);
  }
  EVOFORGE_CHECK(a.sparsify != Sparsify::kDare || a.K <= (int64_t{1} << 32),
                 "DARE numbers the models with 32 bits: K must be <= 2^32, got " << a.K);
  double wsum = 0.0;
  for (int64_t k = 0; k < a.K; ++k) wsum += a.weights[k];
  EVOFORGE_CHECK(!(a.normalize && !a.sign_election && wsum == 0.0),
                 "normalize divides by the sum of the weights, which is 0");
  if (a.N == 0) return;
  const int threads = resolve_threads(num_threads);
  std::vector<float> thr;
  if (a.sparsify == Sparsify::kTrim)
    thr = a.thresholds ? std::vector<float>(a.thresholds, a.thresholds + a.K) : trim_thresholds(a, threads);
  const float* thr_p = thr.data();

  std::atomic<int64_t> first_bad{a.K};
  const int64_t nchunks = (a.N + kMergeChunk - 1) / kMergeChunk;
  // work per chunk: K rows of 4 bytes read (twice with sign election), plus base and out
  const int64_t work = kMergeChunk * (4 * a.K * (a.sign_election ? 2 : 1) + 8);
  // The modified deltas of a chunk are made once per model and kept (K rows of a chunk) when K is
  // small, else made again for the sign election; the loops are branch-free so that they vectorise.
  const bool keep_rows = a.sign_election && a.K <= kKeepRows;
  parallel_for_work(nchunks, threads, work, [&](int64_t c0, int64_t c1, int) {
    std::vector<double> sum(kMergeChunk), rA, wA;
    std::vector<double> rows(static_cast<size_t>(kMergeChunk) * (keep_rows ? a.K : 1));
    if (a.sign_election) rA.resize(kMergeChunk), wA.resize(kMergeChunk);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i0 = c * kMergeChunk, n = std::min(kMergeChunk, a.N - i0);
      double* s = sum.data();
      std::fill(s, s + n, 0.0);
      for (int64_t k = 0; k < a.K; ++k) {
        double* dk = rows.data() + (keep_rows ? k * kMergeChunk : 0);
        if (!modified_delta(a, thr_p, k, i0, n, dk)) lower_to(first_bad, k);
        const double w = a.weights[k];
        for (int64_t j = 0; j < n; ++j) s[j] += w * dk[j];
      }
      if (a.sign_election) {
        double* r = rA.data();
        double* ws = wA.data();
        std::fill(r, r + n, 0.0);
        std::fill(ws, ws + n, 0.0);
        for (int64_t k = 0; k < a.K; ++k) {
          double* dk_rw = rows.data() + (keep_rows ? k * kMergeChunk : 0);
          if (!keep_rows) modified_delta(a, thr_p, k, i0, n, dk_rw);
          merge_agreeing(dk_rw, s, a.weights[k], n, r, ws);
        }
        if (a.normalize)
          for (int64_t j = 0; j < n; ++j) {
            const bool any = ws[j] != 0.0;
            const double q = r[j] / (any ? ws[j] : 1.0);  // never 0 / 0: a select, so it vectorises
            s[j] = any ? q : 0.0;
          }
        else
          std::copy(r, r + n, s);
      } else if (a.normalize) {
        for (int64_t j = 0; j < n; ++j) s[j] /= wsum;
      }
      const float* b = a.base + i0;
      float* o = a.out + i0;
      for (int64_t j = 0; j < n; ++j) o[j] = static_cast<float>(static_cast<double>(b[j]) + a.scale * s[j]);
    }
  });
  const int64_t bad = first_bad.load();
  if (bad < a.K) throw_non_finite(bad);
}

void dare_mask_cpu(int64_t n, double density, uint64_t seed, uint32_t stream, uint32_t k, uint8_t* out,
                   int num_threads) {
  EVOFORGE_CHECK(n >= 0, "n must be >= 0, got " << n);
  EVOFORGE_CHECK(density > 0.0 && density <= 1.0, "density must lie in (0, 1], got " << density);
  const double cut = dare_threshold(density);
  const int64_t nb = (n + 3) / 4;
  parallel_for_work(nb, resolve_threads(num_threads), 64, [&](int64_t b0, int64_t b1, int) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const philox::U32x4 w = dare_words(seed, stream, k, static_cast<uint64_t>(blk));
      const int64_t m = std::min<int64_t>(4, n - 4 * blk);
      for (int64_t q = 0; q < m; ++q) out[4 * blk + q] = philox::bernoulli24(w.v[q], cut) ? 1 : 0;
    }
  });
}

void slerp_cpu(const float* a, const float* b, int64_t N, double t, double eps, float* out, int num_threads) {
  EVOFORGE_CHECK(N >= 0, "N must be >= 0, got " << N);
  EVOFORGE_CHECK(t >= 0.0 && t <= 1.0, "t must lie in [0, 1], got " << t);
  EVOFORGE_CHECK(eps >= 0.0 && std::isfinite(eps), "eps must be finite and >= 0, got " << eps);
  const int threads = resolve_threads(num_threads);
  const int64_t nchunks = (N + kSlerpChunk - 1) / kSlerpChunk;
  std::vector<double> part(static_cast<size_t>(3 * nchunks));  // (a.b, a.a, b.b) per chunk
  parallel_for_work(nchunks, threads, kSlerpChunk * 8, [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i0 = c * kSlerpChunk, n = std::min(kSlerpChunk, N - i0);
      double ab[4] = {0, 0, 0, 0}, aa[4] = {0, 0, 0, 0}, bb[4] = {0, 0, 0, 0};
      int64_t j = 0;
      for (; j + 4 <= n; j += 4) {
        for (int q = 0; q < 4; ++q) {
          const double x = a[i0 + j + q], y = b[i0 + j + q];
          ab[q] += x * y;
          aa[q] += x * x;
          bb[q] += y * y;
        }
      }
      for (int q = 0; j < n; ++j, ++q) {
        const double x = a[i0 + j], y = b[i0 + j];
        ab[q] += x * y;
        aa[q] += x * x;
        bb[q] += y * y;
      }
      part[3 * c] = (ab[0] + ab[1]) + (ab[2] + ab[3]);
      part[3 * c + 1] = (aa[0] + aa[1]) + (aa[2] + aa[3]);
      part[3 * c + 2] = (bb[0] + bb[1]) + (bb[2] + bb[3]);
    }
  });
  double dot = 0.0, na2 = 0.0, nb2 = 0.0;
  for (int64_t c = 0; c < nchunks; ++c) {
    dot += part[3 * c];
    na2 += part[3 * c + 1];
    nb2 += part[3 * c + 2];
  }
  // Squares of float32 values cannot overflow float64 (N < 2^64): a non-finite sum is a NaN or inf.
  EVOFORGE_CHECK(std::isfinite(na2), "a holds a non-finite value (NaN or inf)");
  EVOFORGE_CHECK(std::isfinite(nb2), "b holds a non-finite value (NaN or inf)");
  const double na = std::sqrt(na2), nb = std::sqrt(nb2);
  double ca = 1.0 - t, cb = t;  // lerp
  if (na > 0.0 && nb > 0.0) {
    const double cosv = std::clamp(dot / (na * nb), -1.0, 1.0);
    const double omega = std::acos(cosv), s = std::sin(omega);
    if (!(std::fabs(cosv) > 1.0 - eps) && s > 0.0) {  // s > 0: eps = 0 with colinear a, b lerps too
      ca = std::sin((1.0 - t) * omega) / s;
      cb = std::sin(t * omega) / s;
    }
  }
  parallel_for_work(N, threads, 12, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i)
      out[i] = static_cast<float>(ca * static_cast<double>(a[i]) + cb * static_cast<double>(b[i]));
  });
}

}  // namespace merging
}  // namespace evoforge
