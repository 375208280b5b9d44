// Fused KL-divergence fitness kernels (see evoforge/kl.h for the definitions).
//
// Student pass, full vocabulary: each row is swept once in blocks of 512 logits. Per block a max
// pass (L1-resident) updates the running max m (rescaling the float64 running sum of exp once per
// block), then one pass computes exp(s - m) and w * (s - c) together; both block sums go to float64.
// So memory is read once per row while the lanes accumulate at most 64 float32 terms.
// AVX2+FMA+F16C is chosen at run time (cpuid); the scalar path computes the same quantities in
// float64 with std::exp and a software float16 conversion (results agree to ~1e-6 relative).
#include "evoforge/kl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "evoforge/common.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define EVOFORGE_KL_X86 1
#include <immintrin.h>
#else
#define EVOFORGE_KL_X86 0
#endif

namespace evoforge {
namespace kl {

namespace {

constexpr int64_t kBlock = 512;
constexpr float kScale = 32768.0f;  // teacher weights are p * 2^15 (p = 1 -> 32768 < 65504)
constexpr double kLogScale = 10.397207708399179;  // 15 * ln 2
constexpr float kExpLo = -87.0f;     // exp clamps here: exp(-87) ~ 1.6e-38, still a normal float
constexpr float kDiffLo = -3.0e38f;  // w * (s - c) clamps s - c here, so 0 * (-inf) never occurs
constexpr double kInf = std::numeric_limits<double>::infinity();

inline float bf16_to_float(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <Dtype D>
inline float load1(const void* p, int64_t i) {
  if constexpr (D == Dtype::f32)
    return static_cast<const float*>(p)[i];
  else
    return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
}

int64_t min_rows(int64_t V) { return std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, V)); }

// ----- AVX2 -----------------------------------------------------------------------------------
#if EVOFORGE_KL_X86
#define KL_AVX2 __attribute__((target("avx2,fma,f16c"), always_inline)) inline

template <Dtype D>
KL_AVX2 __m256 load8(const void* p, int64_t i) {
  if constexpr (D == Dtype::f32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// exp(x) for x in [-87, 88] (callers clamp below); Cephes expf polynomial, ~1-2 ulp. NaN -> NaN.
KL_AVX2 __m256 exp8(__m256 x) {
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

KL_AVX2 double hsum_pd(__m256 v) {
  __m256d a = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

KL_AVX2 double hsum4d(__m256d a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

KL_AVX2 float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// One student row against full-vocabulary teacher weights: returns KL.
template <Dtype D>
__attribute__((target("avx2,fma,f16c"))) double row_full_avx2(const void* s, const uint16_t* w, int64_t V,
                                                               double norm, double cross, float c) {
  double m_run = -kInf, sum_run = 0.0, S = 0.0;
  const __m256 lo = _mm256_set1_ps(kExpLo), dlo = _mm256_set1_ps(kDiffLo), cv = _mm256_set1_ps(c);
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), zero = _mm256_setzero_ps();
  __m256 bad = zero;
  bool bad_tail = false;
  for (int64_t b0 = 0; b0 < V; b0 += kBlock) {
    const int64_t n = std::min(kBlock, V - b0), nv = n & ~int64_t{7};
    __m256 mv = ninf;
    for (int64_t i = 0; i < nv; i += 8) mv = _mm256_max_ps(mv, load8<D>(s, b0 + i));
    float bm = hmax(mv);
    for (int64_t i = nv; i < n; ++i) bm = std::max(bm, load1<D>(s, b0 + i));
    if (double(bm) > m_run) {
      sum_run *= std::exp(m_run - double(bm));
      m_run = bm;
    }
    const float mf = std::isinf(m_run) && m_run < 0 ? 0.0f : float(m_run);
    const __m256 mvv = _mm256_set1_ps(mf);
    __m256 ae = zero, as = zero;
    for (int64_t i = 0; i < nv; i += 8) {
      const __m256 x = load8<D>(s, b0 + i);
      ae = _mm256_add_ps(ae, exp8(_mm256_max_ps(lo, _mm256_sub_ps(x, mvv))));
      const __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + b0 + i)));
      as = _mm256_fmadd_ps(wv, _mm256_max_ps(dlo, _mm256_sub_ps(x, cv)), as);
      bad = _mm256_or_ps(bad, _mm256_and_ps(_mm256_cmp_ps(x, ninf, _CMP_EQ_OQ), _mm256_cmp_ps(wv, zero, _CMP_GT_OQ)));
    }
    double se = hsum_pd(ae), ss = hsum_pd(as);
    for (int64_t i = nv; i < n; ++i) {
      const double x = load1<D>(s, b0 + i);
      const double wi = float_from_half(w[b0 + i]);
      const double d = x - mf;
      se += std::exp(d < kExpLo ? double(kExpLo) : d);  // NaN stays NaN
      if (wi > 0 || std::isnan(x)) {
        ss += wi * (x - c);
        bad_tail |= std::isinf(x) && x < 0;
      }
    }
    sum_run += se;
    S += ss;
  }
  if (bad_tail || _mm256_movemask_ps(bad)) return kInf;
  return cross - S / norm + (m_run - double(c)) + std::log(sum_run);
}

// sum_i exp(x_i - m) over a float32 row, float32 lanes per 512-block, block sums in float64.
// -inf entries give exp(-87) ~ 1.6e-38 (the clamp), negligible next to any real tail.
__attribute__((target("avx2,fma,f16c"))) double sumexp_avx2(const float* x, int64_t V, float m) {
  const __m256 lo = _mm256_set1_ps(kExpLo), mv = _mm256_set1_ps(m);
  double sum = 0.0;
  const int64_t nv = V & ~int64_t{7};
  for (int64_t b0 = 0; b0 < nv; b0 += kBlock) {
    const int64_t e = std::min(nv, b0 + kBlock);
    __m256 a = _mm256_setzero_ps();
    for (int64_t i = b0; i < e; i += 8) a = _mm256_add_ps(a, exp8(_mm256_max_ps(lo, _mm256_sub_ps(_mm256_loadu_ps(x + i), mv))));
    sum += hsum_pd(a);
  }
  for (int64_t i = nv; i < V; ++i)
    if (x[i] != -std::numeric_limits<float>::infinity()) sum += std::exp(double(x[i]) - m);
  return sum;
}

// Teacher row (float32 values in buf) -> weights, norm, cross. m: row max, piv: its index.
__attribute__((target("avx2,fma,f16c"))) void teacher_row_avx2(const float* x, int64_t V, float m, int64_t piv,
                                                               uint16_t* w, double* norm, double* cross) {
  const __m256 lo = _mm256_set1_ps(kExpLo), dlo = _mm256_set1_ps(kDiffLo);
  const int64_t nv = V & ~int64_t{7};
  const double lse = double(m) + std::log(sumexp_avx2(x, V, m));
  // w = exp(x - lse + 15 ln 2), via float32 offset (lse - 15 ln 2) split into hi + lo parts.
  const double off = lse - kLogScale;
  const float off_hi = float(off), off_lo = float(off - double(off_hi));
  const __m256 ohi = _mm256_set1_ps(off_hi), olo = _mm256_set1_ps(off_lo), pv = _mm256_set1_ps(x[piv]);
  __m256d W = _mm256_setzero_pd(), A = _mm256_setzero_pd();
  for (int64_t i = 0; i < nv; i += 8) {
    const __m256 xi = _mm256_loadu_ps(x + i);
    const __m256 lp = _mm256_sub_ps(_mm256_sub_ps(xi, ohi), olo);
    const __m128i h = _mm256_cvtps_ph(exp8(_mm256_max_ps(lo, lp)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w + i), h);
    const __m256 wr = _mm256_cvtph_ps(h);
    const __m256 d = _mm256_max_ps(dlo, _mm256_sub_ps(xi, pv));
    const __m256d w0 = _mm256_cvtps_pd(_mm256_castps256_ps128(wr)), w1 = _mm256_cvtps_pd(_mm256_extractf128_ps(wr, 1));
    W = _mm256_add_pd(W, _mm256_add_pd(w0, w1));
    A = _mm256_fmadd_pd(w0, _mm256_cvtps_pd(_mm256_castps256_ps128(d)), A);
    A = _mm256_fmadd_pd(w1, _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1)), A);
  }
  double Ws = hsum4d(W), As = hsum4d(A);
  for (int64_t i = nv; i < V; ++i) {
    const uint16_t h = half_from_float(float(std::exp(std::max(double(kExpLo), double(x[i]) - off))));
    w[i] = h;
    const double wi = float_from_half(h);
    Ws += wi;
    if (wi > 0) As += wi * (double(x[i]) - double(x[piv]));
  }
  *norm = Ws;
  *cross = As / Ws + (double(x[piv]) - lse);
}


bool detect_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
const bool g_avx2 = detect_avx2();
#else
const bool g_avx2 = false;
#endif

// ----- scalar (float64) -------------------------------------------------------------------------
template <Dtype D>
double row_full_scalar(const void* s, const uint16_t* w, int64_t V, double norm, double cross, float c) {
  double m = -kInf;
  for (int64_t i = 0; i < V; ++i) {
    const double x = load1<D>(s, i);
    if (x > m) m = x;
  }
  const double mm = std::isinf(m) && m < 0 ? 0.0 : m;
  double se = 0.0, S = 0.0;
  bool bad = false;
  for (int64_t i = 0; i < V; ++i) {
    const double x = load1<D>(s, i);
    const double d = x - mm;
    se += std::exp(d < kExpLo ? double(kExpLo) : d);  // NaN stays NaN
    const double wi = float_from_half(w[i]);
    if (wi > 0 || std::isnan(x)) {
      S += wi * (x - c);
      bad |= std::isinf(x) && x < 0;
    }
  }
  if (bad) return kInf;
  return cross - S / norm + (mm - double(c)) + std::log(se);
}

void teacher_row_scalar(const float* x, int64_t V, float m, int64_t piv, uint16_t* w, double* norm,
                        double* cross) {
  double sum = 0.0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(x[i]) - m);
  const double lse = double(m) + std::log(sum);
  double W = 0.0, A = 0.0;
  for (int64_t i = 0; i < V; ++i) {
    const uint16_t h = half_from_float(float(std::exp(double(x[i]) - lse + kLogScale)));
    w[i] = h;
    const double wi = float_from_half(h);
    W += wi;
    if (wi > 0) A += wi * (double(x[i]) - double(x[piv]));
  }
  *norm = W;
  *cross = A / W + (double(x[piv]) - lse);
}

// Loads teacher row t as float32 into buf, checks it, and returns (max, first argmax).
template <Dtype D>
std::pair<float, int64_t> teacher_load_row(const void* logits, int64_t t, int64_t V, float* buf) {
  const int64_t base = t * V;
  float m = -std::numeric_limits<float>::infinity();
  int64_t piv = -1;
  for (int64_t i = 0; i < V; ++i) {
    const float x = load1<D>(logits, base + i);
    EVOFORGE_CHECK(!std::isnan(x), "teacher logits hold NaN at row " << t << ", column " << i);
    EVOFORGE_CHECK(!(std::isinf(x) && x > 0), "teacher logits hold +inf at row " << t << ", column " << i);
    buf[i] = x;
    if (x > m) m = x, piv = i;
  }
  EVOFORGE_CHECK(piv >= 0, "teacher logits row " << t << " is all -inf (no distribution)");
  return {m, piv};
}

template <Dtype D>
void student_error(const void* s, int64_t r, int64_t T, int64_t V) {
  for (int64_t i = 0; i < V; ++i) {
    const float x = load1<D>(s, r * V + i);
    EVOFORGE_CHECK(!std::isnan(x), "student logits hold NaN at row " << r << " (candidate " << r / T
                                       << ", token " << r % T << "), column " << i);
    EVOFORGE_CHECK(!(std::isinf(x) && x > 0), "student logits hold +inf at row " << r << " (candidate "
                                                  << r / T << ", token " << r % T << "), column " << i);
  }
}

template <Dtype D>
void teacher_full_t(const void* logits, int64_t T, int64_t V, uint16_t* w, double* norm, double* cross,
                    int32_t* pivot, int threads, bool force_scalar) {
  const bool avx2 = g_avx2 && !force_scalar;
  parallel_for(T, resolve_threads(threads), min_rows(V), [&](int64_t t0, int64_t t1, int) {
    std::vector<float> buf(static_cast<size_t>(V));
    for (int64_t t = t0; t < t1; ++t) {
      auto [m, piv] = teacher_load_row<D>(logits, t, V, buf.data());
      pivot[t] = int32_t(piv);
#if EVOFORGE_KL_X86
      if (avx2) {
        teacher_row_avx2(buf.data(), V, m, piv, w + t * V, norm + t, cross + t);
        continue;
      }
#endif
      (void)avx2;
      teacher_row_scalar(buf.data(), V, m, piv, w + t * V, norm + t, cross + t);
    }
  });
}

template <Dtype D>
void teacher_topk_t(const void* logits, int64_t T, int64_t V, int64_t K, int32_t* idx, float* w, double* norm,
                    double* cross, double* tail, int threads) {
  parallel_for(T, resolve_threads(threads), min_rows(V), [&](int64_t t0, int64_t t1, int) {
    std::vector<float> buf(static_cast<size_t>(V));
    std::vector<int32_t> ord(static_cast<size_t>(V));
    for (int64_t t = t0; t < t1; ++t) {
      teacher_load_row<D>(logits, t, V, buf.data());
      std::iota(ord.begin(), ord.end(), 0);
      const float* x = buf.data();
      auto before = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
      if (K < V) std::nth_element(ord.begin(), ord.begin() + K, ord.end(), before);
      std::sort(ord.begin(), ord.begin() + K, before);
      const double g0 = x[ord[0]];
      double sum = 0.0;
      for (int64_t k = 0; k < K; ++k) sum += std::exp(double(x[ord[k]]) - g0);
      double rest = 0.0;  // summed directly over the other V - K entries: no cancellation
      for (int64_t k = K; k < V; ++k) rest += std::exp(double(x[ord[k]]) - g0);
      tail[t] = rest / (sum + rest);
      const double lse = g0 + std::log(sum);
      double W = 0.0, A = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const int32_t j = ord[k];
        const float wk = float(std::exp(double(x[j]) - lse));
        idx[t * K + k] = j;
        w[t * K + k] = wk;
        W += wk;
        if (wk > 0) A += double(wk) * (double(x[j]) - lse);
      }
      norm[t] = W;
      cross[t] = A / W;
    }
  });
}

template <Dtype D>
void kl_full_t(const uint16_t* w, const double* norm, const double* cross, const int32_t* pivot, int64_t T,
               int64_t V, const void* s, int64_t R, double* out, int threads, bool force_scalar) {
  const bool avx2 = g_avx2 && !force_scalar;
  parallel_for(R, resolve_threads(threads), min_rows(V), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r % T;
      float c = load1<D>(s, r * V + pivot[t]);
      if (!std::isfinite(c)) c = 0.0f;
      const void* row = D == Dtype::f32 ? static_cast<const void*>(static_cast<const float*>(s) + r * V)
                                        : static_cast<const void*>(static_cast<const uint16_t*>(s) + r * V);
#if EVOFORGE_KL_X86
      if (avx2) {
        out[r] = row_full_avx2<D>(row, w + t * V, V, norm[t], cross[t], c);
        continue;
      }
#endif
      (void)avx2;
      out[r] = row_full_scalar<D>(row, w + t * V, V, norm[t], cross[t], c);
    }
  });
  for (int64_t r = 0; r < R; ++r)
    if (std::isnan(out[r])) student_error<D>(s, r, T, V);
}

template <Dtype D>
void kl_topk_t(const int32_t* idx, const float* w, const double* norm, const double* cross, int64_t T, int64_t V,
               int64_t K, const void* s, int64_t R, double* out, int threads) {
  parallel_for(R, resolve_threads(threads), std::max<int64_t>(1, min_rows(K) / 4), [&](int64_t r0, int64_t r1, int) {
    std::vector<double> g(static_cast<size_t>(K));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r % T;
      const int32_t* ix = idx + t * K;
      const float* wk = w + t * K;
      double m = -kInf;
      for (int64_t k = 0; k < K; ++k) {
        g[k] = load1<D>(s, r * V + ix[k]);
        if (g[k] > m) m = g[k];
      }
      const double mm = std::isinf(m) && m < 0 ? 0.0 : m;
      const double c = std::isfinite(g[0]) ? g[0] : 0.0;
      double se = 0.0, S = 0.0;
      bool bad = false;
      for (int64_t k = 0; k < K; ++k) {
        se += std::exp(g[k] - mm);
        if (wk[k] > 0 || std::isnan(g[k])) {
          S += double(wk[k]) * (g[k] - c);
          bad |= std::isinf(g[k]) && g[k] < 0;
        }
      }
      out[r] = bad ? kInf : cross[t] - S / norm[t] + (mm - c) + std::log(se);
    }
  });
  for (int64_t r = 0; r < R; ++r)
    if (std::isnan(out[r])) student_error<D>(s, r, T, V);
}

// Top K with the tail: the teacher's K entries keep their full-vocabulary probabilities
// P_k = (1 - p_t) w_k / norm and the other V - K entries form one bin of mass p_t; the student's
// K probabilities are its full softmax, its tail bin the rest. The row is copied (converted to
// float32) with the K entries set to -inf, so the student's tail sum is computed directly, not as
// the difference of two sums.
template <Dtype D>
void kl_topk_tail_t(const int32_t* idx, const float* w, const double* norm, const double* cross, const double* tail,
                    int64_t T, int64_t V, int64_t K, const void* s, int64_t R, double* out, int threads,
                    bool force_scalar) {
  const bool avx2 = g_avx2 && !force_scalar;
  parallel_for(R, resolve_threads(threads), min_rows(V), [&](int64_t r0, int64_t r1, int) {
    std::vector<float> buf(static_cast<size_t>(V));
    std::vector<double> g(static_cast<size_t>(K));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r % T;
      const int32_t* ix = idx + t * K;
      const float* wk = w + t * K;
      float m = -std::numeric_limits<float>::infinity();
      bool nan = false;
      for (int64_t i = 0; i < V; ++i) {
        const float x = load1<D>(s, r * V + i);
        buf[i] = x;
        m = x > m ? x : m;
        nan |= std::isnan(x);
      }
      if (nan) {
        out[r] = std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      const double mm = std::isinf(m) && m < 0 ? 0.0 : double(m);
      double zk = 0.0, S = 0.0;
      bool bad = false;
      for (int64_t k = 0; k < K; ++k) {
        g[k] = buf[ix[k]];
        buf[ix[k]] = -std::numeric_limits<float>::infinity();
        zk += std::exp(g[k] - mm);
        if (wk[k] > 0) {
          S += double(wk[k]) * (g[k] - mm);
          bad |= std::isinf(g[k]);
        }
      }
      double zt = 0.0;
#if EVOFORGE_KL_X86
      if (avx2) zt = sumexp_avx2(buf.data(), V, float(mm));
#endif
      if (!avx2)
        for (int64_t i = 0; i < V; ++i) zt += buf[i] == -std::numeric_limits<float>::infinity() ? 0.0 : std::exp(double(buf[i]) - mm);
      const double pt = tail[t], keep = 1.0 - pt;
      const double C = keep * (cross[t] + std::log1p(-pt)) + (pt > 0 ? pt * std::log(pt) : 0.0);
      double kl = C - keep * S / norm[t] + std::log(zk + zt);
      if (pt > 0) kl = zt > 0 ? kl - pt * std::log(zt) : kInf;
      out[r] = bad ? kInf : kl;
    }
  });
  for (int64_t r = 0; r < R; ++r)
    if (std::isnan(out[r])) student_error<D>(s, r, T, V);
}

}  // namespace

uint16_t half_from_float(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return uint16_t(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (x >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (x < 0x38800000u) {                                  // below 2^-14: subnormal half
    float a;
    std::memcpy(&a, &x, 4);
    return uint16_t(sign | uint16_t(std::nearbyint(a * 16777216.0f)));
  }
  uint32_t h = (((x >> 23) - 112u) << 10) | ((x >> 13) & 0x3ffu);
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return uint16_t(sign | h);
}

float float_from_half(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = std::ldexp(float(m), -24);
    return sign ? -v : v;
  }
  const uint32_t u = sign | (e == 31 ? (0xffu << 23) | (m << 13) : ((e + 112u) << 23) | (m << 13));
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

bool cpu_has_avx2() { return g_avx2; }

void teacher_full(const void* logits, Dtype dt, int64_t T, int64_t V, uint16_t* w, double* norm, double* cross,
                  int32_t* pivot, int threads, bool force_scalar) {
  if (dt == Dtype::f32)
    teacher_full_t<Dtype::f32>(logits, T, V, w, norm, cross, pivot, threads, force_scalar);
  else
    teacher_full_t<Dtype::bf16>(logits, T, V, w, norm, cross, pivot, threads, force_scalar);
}

void teacher_topk(const void* logits, Dtype dt, int64_t T, int64_t V, int64_t K, int32_t* idx, float* w,
                  double* norm, double* cross, double* tail, int threads) {
  EVOFORGE_CHECK(K >= 1 && K <= V, "top_k must lie in [1, V=" << V << "], got " << K);
  if (dt == Dtype::f32)
    teacher_topk_t<Dtype::f32>(logits, T, V, K, idx, w, norm, cross, tail, threads);
  else
    teacher_topk_t<Dtype::bf16>(logits, T, V, K, idx, w, norm, cross, tail, threads);
}

void kl_full(const uint16_t* w, const double* norm, const double* cross, const int32_t* pivot, int64_t T,
             int64_t V, const void* student, Dtype dt, int64_t R, double* out, int threads, bool force_scalar) {
  EVOFORGE_CHECK(T >= 1 && R % T == 0, "student rows (" << R << ") must be a multiple of teacher rows (" << T << ")");
  if (dt == Dtype::f32)
    kl_full_t<Dtype::f32>(w, norm, cross, pivot, T, V, student, R, out, threads, force_scalar);
  else
    kl_full_t<Dtype::bf16>(w, norm, cross, pivot, T, V, student, R, out, threads, force_scalar);
}

void kl_topk(const int32_t* idx, const float* w, const double* norm, const double* cross, int64_t T, int64_t V,
             int64_t K, const void* student, Dtype dt, int64_t R, double* out, int threads) {
  EVOFORGE_CHECK(T >= 1 && R % T == 0, "student rows (" << R << ") must be a multiple of teacher rows (" << T << ")");
  if (dt == Dtype::f32)
    kl_topk_t<Dtype::f32>(idx, w, norm, cross, T, V, K, student, R, out, threads);
  else
    kl_topk_t<Dtype::bf16>(idx, w, norm, cross, T, V, K, student, R, out, threads);
}

void kl_topk_tail(const int32_t* idx, const float* w, const double* norm, const double* cross, const double* tail,
                  int64_t T, int64_t V, int64_t K, const void* student, Dtype dt, int64_t R, double* out, int threads,
                  bool force_scalar) {
  EVOFORGE_CHECK(T >= 1 && R % T == 0, "student rows (" << R << ") must be a multiple of teacher rows (" << T << ")");
  if (dt == Dtype::f32)
    kl_topk_tail_t<Dtype::f32>(idx, w, norm, cross, tail, T, V, K, student, R, out, threads, force_scalar);
  else
    kl_topk_tail_t<Dtype::bf16>(idx, w, norm, cross, tail, T, V, K, student, R, out, threads, force_scalar);
}

}  // namespace kl
}  // namespace evoforge
