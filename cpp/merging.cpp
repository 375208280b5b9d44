// Model merging on the CPU (see evoforge/merging.h). Compiled with -ffp-contract=off: every element
// is the same float64 operations in the same order on any thread count and any clone.
//
// merge_deltas_cpu makes one pass over the deltas: per lane group of kLanes elements, the modified
// deltas of the K models (kept in a small scratch of K kLanes doubles), their weighted sum, the
// sign election and the disjoint mean, written to out; no buffer of the model's size. The lane
// loops have a fixed length and no branches, so the compiler vectorises them (the per-mode
// functions are multiversioned for AVX-512, AVX2 and the baseline, evoforge/macros.h); vector
// double operations round like scalar ones, so the bits are those of the formulas of merging.h.
// DARE's Philox words are made per span of kDareSpan elements and model (AVX2: 8 blocks at once).
// The trim thresholds, when the caller gives none, come from a radix select over the magnitudes'
// bit patterns (three counting passes, no copy of a row).
#include "evoforge/merging.h"

#include <algorithm>
#include <limits>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "evoforge/common.h"
#include "evoforge/macros.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define EVOFORGE_MERGE_X86 1
#else
#define EVOFORGE_MERGE_X86 0
#endif

namespace evoforge {
namespace merging {
namespace {

constexpr int64_t kMergeChunk = 2048;  // elements per work item of the merge (whole DARE spans)
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

constexpr int64_t kSelectChunk = int64_t{1} << 16;  // elements per work item of the selection's histograms

/// out = the value of rank idx (0-based, ascending) among |d[i]|, i < N. Magnitudes of floats order
/// as their bit patterns with the sign cleared, so a radix select over those 31 bits finds the
/// value's bits exactly (what std::nth_element on the magnitudes gives): three digits of 11, 11 and
/// 9 bits, high first, each one pass over the row counting the elements of the prefix found so far
/// (threads count disjoint ranges; integer counts, so no dependence on the split). No copy of the
/// row. Returns false (out untouched) if a delta is NaN or inf (seen by the first pass).
bool select_magnitude(const float* d, int64_t N, int64_t idx, int threads, float& out) {
  constexpr int kShift[3] = {20, 9, 0};
  constexpr int kBits[3] = {11, 11, 9};
  constexpr uint32_t kMaxFinite = 0x7F7FFFFFu;  // FLT_MAX's bits: above it, inf and NaN
  const int64_t nchunks = (N + kSelectChunk - 1) / kSelectChunk;
  uint32_t prefix = 0;  // the digits found so far: bits [hi, 31) of the value sought
  for (int p = 0; p < 3; ++p) {
    const int sh = kShift[p], hi = kShift[p] + kBits[p];
    const int64_t nbins = int64_t{1} << kBits[p];
    const uint32_t dmask = static_cast<uint32_t>(nbins - 1);
    std::vector<int64_t> hist(static_cast<size_t>(nbins), 0);
    bool bad = false;
    std::mutex mu;
    const auto count = [&, p, sh, hi, nbins, dmask, prefix](int64_t c0, int64_t c1, int) {
      // 4 interleaved histograms: runs of equal digits do not serialise on one counter (the
      // captures by value: the counters' stores cannot alias them)
      std::vector<int64_t> hv(static_cast<size_t>(4 * nbins), 0);
      int64_t* __restrict h = hv.data();
      const float* __restrict row = d;
      uint32_t over = 0;
      const int64_t i0 = c0 * kSelectChunk, i1 = std::min(N, c1 * kSelectChunk);
      if (p == 0) {
        for (int64_t i = i0; i < i1; ++i) {
          uint32_t u;
          std::memcpy(&u, row + i, sizeof u);
          u &= 0x7FFFFFFFu;
          over |= static_cast<uint32_t>(u > kMaxFinite);
          ++h[(i & 3) * nbins + (u >> sh)];
        }
      } else {
        for (int64_t i = i0; i < i1; ++i) {
          uint32_t u;
          std::memcpy(&u, row + i, sizeof u);
          u &= 0x7FFFFFFFu;
          if ((u >> hi) == prefix) ++h[(i & 3) * nbins + ((u >> sh) & dmask)];
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      for (int64_t j = 0; j < nbins; ++j) hist[j] += (h[j] + h[nbins + j]) + (h[2 * nbins + j] + h[3 * nbins + j]);
      bad |= over != 0;
    };
    parallel_for_work(nchunks, threads, kSelectChunk * 4, count);
    if (bad) return false;
    uint32_t digit = 0;
    while (idx >= hist[digit]) idx -= hist[digit++];  // idx < the prefix's count: ends in range
    prefix = (prefix << kBits[p]) | digit;
  }
  std::memcpy(&out, &prefix, sizeof out);
  return true;
}

/// thr[k] = the n_keep-th largest |delta_k| (N >= 1). Throws naming the lowest k with a non-finite
/// delta (before anything is written).
std::vector<float> trim_thresholds(const MergeArgs& a, int threads) {
  std::vector<float> thr(static_cast<size_t>(a.K), 0.0f);
  for (int64_t k = 0; k < a.K; ++k)
    if (!select_magnitude(a.deltas + k * a.N, a.N, a.N - n_keep_of(a.densities[k], a.N), threads, thr[k]))
      throw_non_finite(k);
  return thr;
}

#if defined(__GNUC__)
#define EVOFORGE_MERGE_INLINE inline __attribute__((always_inline))
#else
#define EVOFORGE_MERGE_INLINE inline
#endif

/// A merge's arguments, resolved once (per model: the trim threshold, DARE's rescale and cut).
struct Job {
  const float* base;
  const float* deltas;  // row k at deltas + k * stride
  float* out;
  int64_t stride;
  const double* w;
  const float* thr;         // kTrim
  const double* rescale;    // kDare: 1 / rho_k
  const double* cut;        // kDare: rho_k 2^24; element kept iff (word >> 8) < cut
  int64_t K;
  bool normalize;
  bool keep_rows;  // the sign election reuses the K rows of modified deltas (else makes them again)
  double scale, wsum;
  uint64_t seed;
  uint32_t stream;
};

/// out[4 b + q] = word q of DARE's Philox block blk0 + b of model k, b < nb (dare_words).
void dare_words_scalar(uint64_t seed, uint32_t stream, uint32_t k, uint64_t blk0, int64_t nb, uint32_t* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const philox::U32x4 w = dare_words(seed, stream, k, blk0 + static_cast<uint64_t>(b));
    for (int q = 0; q < 4; ++q) out[4 * b + q] = w.v[q];
  }
}

#if EVOFORGE_MERGE_X86
#define EVOFORGE_MERGE_AVX2 __attribute__((target("avx2"), always_inline)) inline

/// (hi, lo) of the 32 x 32-bit products c m in each of the 8 lanes.
EVOFORGE_MERGE_AVX2 void mulhilo8(__m256i c, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(c, m);                         // lanes 0, 2, 4, 6: 64-bit products
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);  // lanes 1, 3, 5, 7
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/// dare_words_scalar with 8 blocks side by side in the lanes of AVX2 registers (the same bits).
__attribute__((target("avx2"))) void dare_words_avx2(uint64_t seed, uint32_t stream, uint32_t k, uint64_t blk0,
                                                     int64_t nb, uint32_t* out) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(philox::kM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(philox::kM1));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    const uint64_t blk = blk0 + static_cast<uint64_t>(b);
    if (static_cast<uint32_t>(blk) > 0xFFFFFFF8u) {  // c0 wraps inside these 8 blocks (c3 changes)
      dare_words_scalar(seed, stream, k, blk, 8, out + 4 * b);
      continue;
    }
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(blk))), lane);
    __m256i c1 = _mm256_set1_epi32(static_cast<int>(k));
    __m256i c2 = _mm256_set1_epi32(static_cast<int>(stream));
    __m256i c3 = _mm256_set1_epi32(static_cast<int>(philox::c3_of(kDareStream, static_cast<uint32_t>(blk >> 32))));
    uint32_t k0 = philox::key_lo(seed), k1 = philox::key_hi(seed);
    for (int r = 0; r < 10; ++r) {
      if (r > 0) {
        k0 += philox::kW0;
        k1 += philox::kW1;
      }
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(c0, m0, hi0, lo0);
      mulhilo8(c2, m1, hi1, lo1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
      c1 = lo1;
      c3 = lo0;
    }
    // 4 x 8 -> 8 x 4: block j's words c0..c3 at out[4 (b + j) ..]
    const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
    const __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);  // blocks 0 | 4, 1 | 5
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);  // blocks 2 | 6, 3 | 7
    __m256i* o = reinterpret_cast<__m256i*>(out + 4 * b);
    _mm256_storeu_si256(o, _mm256_permute2x128_si256(u0, u1, 0x20));
    _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(u2, u3, 0x20));
    _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(u0, u1, 0x31));
    _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(u2, u3, 0x31));
  }
  dare_words_scalar(seed, stream, k, blk0 + static_cast<uint64_t>(b), nb - b, out + 4 * b);
}

bool detect_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}
const bool g_avx2 = detect_avx2();
#endif

/// The words of dare_words_scalar, by the AVX2 path where the CPU has it.
void dare_words_range(uint64_t seed, uint32_t stream, uint32_t k, uint64_t blk0, int64_t nb, uint32_t* out) {
#if EVOFORGE_MERGE_X86
  if (g_avx2) return dare_words_avx2(seed, stream, k, blk0, nb, out);
#endif
  dare_words_scalar(seed, stream, k, blk0, nb, out);
}

/// dk[0 .. L) = d~_k at L elements (float64) from d, model k's deltas there, and (kDare) words, their
/// Philox words (dare_words_range). Returns false if one of those deltas is not finite (never for
/// kTrim: its thresholds' pass checked every delta). Branch-free, so that it vectorises: NaN fails
/// every comparison, inf exceeds FLT_MAX.
template <Sparsify S, int L>
EVOFORGE_MERGE_INLINE bool modified_delta(const Job& J, int64_t k, const float* __restrict d,
                                          const uint32_t* __restrict words, double* __restrict dk) {
  constexpr float kMax = std::numeric_limits<float>::max();
  if constexpr (S == Sparsify::kNone) {
    int ok = 1;
    for (int q = 0; q < L; ++q) {
      dk[q] = static_cast<double>(d[q]);
      ok &= static_cast<int>(std::fabs(d[q]) <= kMax);
    }
    return ok != 0;
  } else if constexpr (S == Sparsify::kTrim) {
    const double t = static_cast<double>(J.thr[k]);
    for (int q = 0; q < L; ++q) {
      const double v = static_cast<double>(d[q]);  // converted unconditionally: a select, not a branch
      dk[q] = std::fabs(v) >= t ? v : 0.0;
    }
    return true;
  } else {
    const double cut = J.cut[k];
    const double rescale = J.rescale[k];
    int ok = 1;
    for (int q = 0; q < L; ++q) {  // every product made (a loop of its own: not sunk into a branch)
      const double x = static_cast<double>(d[q]);
      dk[q] = x * rescale;
      ok &= static_cast<int>(std::fabs(x) <= static_cast<double>(kMax));
    }
    for (int q = 0; q < L; ++q) {
      // philox::bernoulli24, w >> 8 < 2^24 converted exactly through int32 and float32 (which
      // vectorise like the deltas)
      const double u = static_cast<double>(static_cast<float>(static_cast<int32_t>(words[q] >> 8)));
      dk[q] = u < cut ? dk[q] : 0.0;
    }
    return ok != 0;
  }
}

/// out[0 .. L) of the merge of base[0 .. L) and the K rows deltas + k stride (kDare: their Philox
/// words at words + k wstride), every element by the float64 operations of merging.h in the order
/// k = 0 .. K-1; rows: scratch of K L doubles (keep_rows) or L. Returns the lowest k whose deltas
/// there are not finite, or K.
template <Sparsify S, bool Sign, int L>
EVOFORGE_MERGE_INLINE int64_t merge_lanes(const Job& J, const float* __restrict base, const float* __restrict deltas,
                                          float* __restrict out, int64_t stride, const uint32_t* __restrict words,
                                          int64_t wstride, double* __restrict rows) {
  int64_t bad = J.K;
  double s[L];
  for (int q = 0; q < L; ++q) s[q] = 0.0;
  for (int64_t k = 0; k < J.K; ++k) {
    double* __restrict dk = rows + (J.keep_rows ? k * L : 0);
    if (!modified_delta<S, L>(J, k, deltas + k * stride, words + k * wstride, dk) && bad == J.K) bad = k;
    const double w = J.w[k];
    for (int q = 0; q < L; ++q) s[q] += w * dk[q];
  }
  if constexpr (Sign) {
    // r += w d~, ws += w where d~ is non-zero with the elected sign sign(s) (d~ s > 0: deltas and
    // sums of float32 deltas are far from double underflow). Selects, not branches: the products
    // and quotients are made in loops of their own, so that the compiler does not sink them into a
    // branch taken only where they are kept (which would not vectorise).
    double r[L], ws[L], x[L];
    for (int q = 0; q < L; ++q) r[q] = ws[q] = 0.0;
    for (int64_t k = 0; k < J.K; ++k) {
      double* __restrict dk = rows + (J.keep_rows ? k * L : 0);
      if (!J.keep_rows) modified_delta<S, L>(J, k, deltas + k * stride, words + k * wstride, dk);
      const double w = J.w[k];
      for (int q = 0; q < L; ++q) x[q] = w * dk[q];
      for (int q = 0; q < L; ++q) {
        const bool agree = dk[q] * s[q] > 0.0;
        const double add_r = agree ? x[q] : 0.0, add_w = agree ? w : 0.0;
        r[q] = r[q] + add_r;
        ws[q] = ws[q] + add_w;
      }
    }
    if (J.normalize) {
      for (int q = 0; q < L; ++q) x[q] = ws[q] != 0.0 ? ws[q] : 1.0;  // never 0 / 0
      for (int q = 0; q < L; ++q) x[q] = r[q] / x[q];
      for (int q = 0; q < L; ++q) {
        const double v = ws[q] != 0.0 ? x[q] : 0.0;
        s[q] = v;
      }
    } else
      for (int q = 0; q < L; ++q) s[q] = r[q];
  } else if (J.normalize) {
    for (int q = 0; q < L; ++q) s[q] /= J.wsum;
  }
  for (int q = 0; q < L; ++q) out[q] = static_cast<float>(static_cast<double>(base[q]) + J.scale * s[q]);
  return bad;
}

/// Elements per lane group of the fused merge: 8 Philox blocks (DARE), and whole vectors of every width.
constexpr int kLanes = 32;
static_assert(kMergeChunk % kLanes == 0, "chunks hold whole lane groups");

/// Elements whose DARE words are made together, per model (a loop over their Philox blocks).
constexpr int64_t kDareSpan = 4 * kLanes;
static_assert(kMergeChunk % kDareSpan == 0, "chunks hold whole DARE spans");

/// Scratch of one thread: the kept rows of modified deltas; DARE's words of a span (K rows of
/// kDareSpan); a padded copy of the last, partial lane group of the vector (K + 2 rows of kLanes
/// floats: deltas, base, out) so that it runs the same code.
struct Scratch {
  std::vector<double> rows;
  std::vector<uint32_t> words;
  std::vector<float> pad;
};

/// Merges chunks [c0, c1) of kMergeChunk elements in one pass per lane group: the modified deltas
/// of the K models, the (signed) weighted sum, the sign election and the disjoint mean, written to
/// out. Returns the lowest k holding a non-finite delta there, or K.
template <Sparsify S, bool Sign>
EVOFORGE_MERGE_INLINE int64_t merge_chunks(const Job& J, int64_t N, int64_t c0, int64_t c1, Scratch& sc) {
  int64_t bad = J.K;
  double* rows = sc.rows.data();
  uint32_t* words = sc.words.data();
  const int64_t begin = c0 * kMergeChunk, end = std::min(N, c1 * kMergeChunk);
  const int64_t full = begin + (end - begin) / kLanes * kLanes;
  for (int64_t i0 = begin; i0 < full; i0 += kDareSpan) {
    const int64_t i1 = std::min(full, i0 + kDareSpan);
    if constexpr (S == Sparsify::kDare)
      for (int64_t k = 0; k < J.K; ++k)
        dare_words_range(J.seed, J.stream, static_cast<uint32_t>(k), static_cast<uint64_t>(i0 / 4), (i1 - i0) / 4,
                         words + k * kDareSpan);
    for (int64_t i = i0; i < i1; i += kLanes)
      bad = std::min(bad, merge_lanes<S, Sign, kLanes>(J, J.base + i, J.deltas + i, J.out + i, J.stride,
                                                       words + (i - i0), kDareSpan, rows));
  }
  if (full < end) {  // the vector's last elements: zero-padded to a lane group
    const int64_t m = end - full;
    float* pad = sc.pad.data();  // rows 0 .. K-1: deltas; row K: base; row K + 1: out
    std::fill(sc.pad.begin(), sc.pad.end(), 0.0f);
    for (int64_t k = 0; k < J.K; ++k)
      std::copy(J.deltas + k * J.stride + full, J.deltas + k * J.stride + end, pad + k * kLanes);
    float* pb = pad + J.K * kLanes;
    float* po = pb + kLanes;
    std::copy(J.base + full, J.base + end, pb);
    if constexpr (S == Sparsify::kDare)
      for (int64_t k = 0; k < J.K; ++k)
        dare_words_range(J.seed, J.stream, static_cast<uint32_t>(k), static_cast<uint64_t>(full / 4), kLanes / 4,
                         words + k * kDareSpan);
    bad = std::min(bad, merge_lanes<S, Sign, kLanes>(J, pb, pad, po, kLanes, words, kDareSpan, rows));
    std::copy(po, po + m, J.out + full);
  }
  return bad;
}

// One function per mode, multiversioned (evoforge/macros.h): every clone does the same IEEE double
// operations per element (no contraction), so the result does not depend on the clone picked.
#define EVOFORGE_MERGE_CHUNKS(NAME, S, SIGN)                                                \
  EVOFORGE_CLONES int64_t NAME(const Job& J, int64_t N, int64_t c0, int64_t c1, Scratch& sc) { \
    return merge_chunks<S, SIGN>(J, N, c0, c1, sc);                                          \
  }
EVOFORGE_MERGE_CHUNKS(merge_none, Sparsify::kNone, false)
EVOFORGE_MERGE_CHUNKS(merge_none_sign, Sparsify::kNone, true)
EVOFORGE_MERGE_CHUNKS(merge_trim, Sparsify::kTrim, false)
EVOFORGE_MERGE_CHUNKS(merge_trim_sign, Sparsify::kTrim, true)
EVOFORGE_MERGE_CHUNKS(merge_dare, Sparsify::kDare, false)
EVOFORGE_MERGE_CHUNKS(merge_dare_sign, Sparsify::kDare, true)
#undef EVOFORGE_MERGE_CHUNKS

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
  std::vector<double> rescale;
  std::vector<double> cut;
  if (a.sparsify == Sparsify::kDare) {
    rescale.resize(static_cast<size_t>(a.K));
    cut.resize(static_cast<size_t>(a.K));
    for (int64_t k = 0; k < a.K; ++k) {
      rescale[k] = 1.0 / a.densities[k];
      cut[k] = dare_threshold(a.densities[k]);
    }
  }
  Job J;
  J.base = a.base;
  J.deltas = a.deltas;
  J.out = a.out;
  J.stride = a.N;
  J.w = a.weights;
  J.thr = thr.data();
  J.rescale = rescale.data();
  J.cut = cut.data();
  J.K = a.K;
  J.normalize = a.normalize;
  J.keep_rows = a.sign_election && a.K <= kKeepRows;
  J.scale = a.scale;
  J.wsum = wsum;
  J.seed = a.seed;
  J.stream = a.stream;
  using Fn = int64_t (*)(const Job&, int64_t, int64_t, int64_t, Scratch&);
  Fn fn = nullptr;
  switch (a.sparsify) {
    case Sparsify::kNone: fn = a.sign_election ? merge_none_sign : merge_none; break;
    case Sparsify::kTrim: fn = a.sign_election ? merge_trim_sign : merge_trim; break;
    case Sparsify::kDare: fn = a.sign_election ? merge_dare_sign : merge_dare; break;
  }

  std::atomic<int64_t> first_bad{a.K};
  const int64_t nchunks = (a.N + kMergeChunk - 1) / kMergeChunk;
  // work per chunk: K rows of 4 bytes read, plus base and out
  const int64_t work = kMergeChunk * (4 * a.K + 8);
  parallel_for_work(nchunks, threads, work, [&](int64_t c0, int64_t c1, int) {
    Scratch sc;
    sc.rows.resize(static_cast<size_t>(kLanes) * (J.keep_rows ? a.K : 1));
    sc.pad.resize(static_cast<size_t>(kLanes) * (a.K + 2));
    sc.words.resize(static_cast<size_t>(kDareSpan) * a.K);  // read by kDare only
    const int64_t bad = fn(J, a.N, c0, c1, sc);
    if (bad < a.K) lower_to(first_bad, bad);
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
