// Weight-only quantised matmul on the packed format of evoforge/quant.h, plus pack / unpack /
// dequantise.
//
// Batch 1 is memory bound: every packed byte is read once and unpacked in registers, never written
// back as floats. The zero point is factored out of each group, sum_k s (q - z) x =
// s sum_k q x - (s z) sum_k x, with the per-group sums of x computed once per call. Tiles of up to
// 4 rows of W x 4 rows of x (cpp/quant_kernel.h) share every x load across the rows of W and every
// unpacked block across the rows of x.
//
// The SIMD body is compiled for AVX-512 (F/BW/VL) and for AVX2 + FMA + F16C with intrinsics, and a
// plain C++ kernel serves every other CPU; the best one this CPU runs is picked at load time.
#include "evoforge/quant.h"

#include <algorithm>
#include <cstring>

#include "evoforge/common.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the packed format is read as little-endian words");

#define EVOFORGE_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EVOFORGE_QUANT_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace evoforge {
namespace quant {
namespace {

void check_bits(int bits) {
  EVOFORGE_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 8, "bits must be 2, 3, 4 or 8, got " << bits);
}

void check_group(int64_t g) {
  EVOFORGE_CHECK(g == 0 || g == 32 || g == 64 || g == 128 || g == 256,
                 "group_size must be 32, 64, 128, 256 or 0 (one group per row), got " << g);
}

// binary16 -> float32 without F16C: the exponent/mantissa bits shifted into a float and rescaled
// by 2^112 give every finite half (subnormals included) exactly.
EVOFORGE_INLINE float half_to_float(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h & 0x7FFF) << 13;
  float f;
  if ((h & 0x7C00) == 0x7C00) {
    u |= 0x7F800000u;  // inf / nan
    std::memcpy(&f, &u, 4);
  } else {
    std::memcpy(&f, &u, 4);
    f *= 0x1p112f;
  }
  std::memcpy(&u, &f, 4);
  u |= static_cast<uint32_t>(h & 0x8000) << 16;
  std::memcpy(&f, &u, 4);
  return f;
}

// kSpread[m] has byte j equal to 4 when bit j of m is set: bit 2 of eight int3 codes at once.
struct SpreadTable {
  uint64_t v[256];
  constexpr SpreadTable() : v() {
    for (int m = 0; m < 256; ++m)
      for (int j = 0; j < 8; ++j)
        if ((m >> j) & 1) v[m] |= uint64_t{4} << (8 * j);
  }
};
constexpr SpreadTable kSpread{};

// The 32 codes of one block into c[0..31].
void unpack_block(const uint8_t* p, int bits, uint8_t* c) {
  switch (bits) {
    case 8:
      std::memcpy(c, p, 32);
      break;
    case 4:
      for (int j = 0; j < 16; ++j) {
        c[j] = p[j] & 15;
        c[j + 16] = p[j] >> 4;
      }
      break;
    default:  // 2 and 3
      for (int j = 0; j < 8; ++j)
        for (int s = 0; s < 4; ++s) c[j + 8 * s] = (p[j] >> (2 * s)) & 3;
      if (bits == 3) {
        const uint32_t m = p[8] | uint32_t{p[9]} << 8 | uint32_t{p[10]} << 16 | uint32_t{p[11]} << 24;
        for (int j = 0; j < 32; ++j) c[j] |= ((m >> j) & 1) << 2;
      }
  }
}

void pack_block(const uint8_t* c, int bits, uint8_t* p) {
  switch (bits) {
    case 8:
      std::memcpy(p, c, 32);
      break;
    case 4:
      for (int j = 0; j < 16; ++j) p[j] = static_cast<uint8_t>(c[j] | c[j + 16] << 4);
      break;
    default:
      for (int j = 0; j < 8; ++j)
        p[j] = static_cast<uint8_t>((c[j] & 3) | (c[j + 8] & 3) << 2 | (c[j + 16] & 3) << 4 | (c[j + 24] & 3) << 6);
      if (bits == 3) {
        uint32_t m = 0;
        for (int j = 0; j < 32; ++j) m |= static_cast<uint32_t>((c[j] >> 2) & 1) << j;
        for (int i = 0; i < 4; ++i) p[8 + i] = static_cast<uint8_t>(m >> (8 * i));
      }
  }
}

// ---- the matmul kernel -------------------------------------------------------------------------

struct Args {
  const float* xp;   // [B, Kp] x padded with zeros to Kp = 32 * nblocks
  const float* xs;   // [B, G] per-group sums of x
  const uint8_t* packed;
  const uint16_t* scales;
  const uint16_t* zeros;  // null: symmetric
  const float* bias;      // null: none
  float* y;               // [B, N]
  int64_t N, Kp, G, rb, nblocks, gb;  // gb: blocks per group
};

// Portable kernel: each block unpacked to bytes once, then plain float loops per row of x.
void rows_portable(int bits, const Args& a, int64_t n0, int64_t n1, int64_t B) {
  std::vector<float> acc(B), tot(B), corr(B);
  uint8_t c[32];
  const float zsym = static_cast<float>(1 << (bits - 1));
  const int bpb = 4 * bits;
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(tot.begin(), tot.end(), 0.f);
    std::fill(corr.begin(), corr.end(), 0.f);
    for (int64_t g = 0; g < a.G; ++g) {
      const float s = half_to_float(a.scales[n * a.G + g]);
      const float z = a.zeros ? half_to_float(a.zeros[n * a.G + g]) : zsym;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t t = g * a.gb; t < std::min(a.nblocks, (g + 1) * a.gb); ++t) {
        unpack_block(a.packed + n * a.rb + t * bpb, bits, c);
        for (int64_t b = 0; b < B; ++b) {
          const float* xb = a.xp + b * a.Kp + 32 * t;
          float sum = acc[b];
          for (int j = 0; j < 32; ++j) sum += static_cast<float>(c[j]) * xb[j];
          acc[b] = sum;
        }
      }
      for (int64_t b = 0; b < B; ++b) {
        tot[b] += s * acc[b];
        corr[b] += s * z * a.xs[b * a.G + g];
      }
    }
    const float bias = a.bias ? a.bias[n] : 0.f;
    for (int64_t b = 0; b < B; ++b) a.y[b * a.N + n] = (tot[b] - corr[b]) + bias;
  }
}

#ifdef EVOFORGE_QUANT_X86
#define QK_UNROLL _Pragma("GCC unroll 16")

namespace avx2 {
#define QK_FN static inline __attribute__((always_inline, target("avx2,fma,f16c")))
constexpr int NBMAX = 2, RMAX = 2;
struct V {
  using F = __m256;
  static constexpr int W = 8;
  QK_FN F zero() { return _mm256_setzero_ps(); }
  QK_FN F load(const float* p) { return _mm256_loadu_ps(p); }
  QK_FN F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  QK_FN F add(F a, F b) { return _mm256_add_ps(a, b); }
  QK_FN F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  QK_FN F set1(float s) { return _mm256_set1_ps(s); }
  QK_FN float hsum(F v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_shuffle_ps(r, r, 1)));
  }
  QK_FN float half(uint16_t h) { return _cvtsh_ss(h); }
  template <int BITS>
  static constexpr bool biased = false;
  // h = 0 or 8: codes h..h+7 and 16+h..16+h+7 of the block at p.
  template <int BITS>
  QK_FN void codes(const uint8_t* p, int h, F& f0, F& f1) {
    __m128i lo, hi;
    if constexpr (BITS == 8) {
      lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + h));
      hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 16 + h));
    } else if constexpr (BITS == 4) {
      const __m128i r = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + h)), m = _mm_set1_epi8(15);
      lo = _mm_and_si128(r, m);
      hi = _mm_and_si128(_mm_srli_epi16(r, 4), m);
    } else {
      // Byte j holds codes j, j+8, j+16, j+24 in bit pairs.
      const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), m = _mm_set1_epi8(3);
      const __m128i s = h == 0 ? v : _mm_srli_epi64(v, 2);
      lo = _mm_and_si128(s, m);
      hi = _mm_and_si128(_mm_srli_epi64(s, 4), m);
      if constexpr (BITS == 3) {
        uint32_t hb;
        std::memcpy(&hb, p + 8, 4);
        lo = _mm_or_si128(lo, _mm_cvtsi64_si128(static_cast<long long>(kSpread.v[(hb >> h) & 255])));
        hi = _mm_or_si128(hi, _mm_cvtsi64_si128(static_cast<long long>(kSpread.v[(hb >> (16 + h)) & 255])));
      }
    }
    f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
    f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  }
};
#include "quant_kernel.h"
__attribute__((target("avx2,fma,f16c"))) void run(int bits, const Args& a, int64_t n0, int64_t n1, int64_t B) {
  switch (bits) {
    case 2: return rows<2>(a, n0, n1, B);
    case 3: return rows<3>(a, n0, n1, B);
    case 4: return rows<4>(a, n0, n1, B);
    default: return rows<8>(a, n0, n1, B);
  }
}
#undef QK_FN
}  // namespace avx2

// GCC 12 reports its own _mm512_undefined_* helpers as maybe-uninitialized (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace avx512 {
#define QK_FN static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,fma,f16c")))
constexpr int NBMAX = 4, RMAX = 4;
struct V {
  using F = __m512;
  static constexpr int W = 16;
  QK_FN F zero() { return _mm512_setzero_ps(); }
  QK_FN F load(const float* p) { return _mm512_loadu_ps(p); }
  QK_FN F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  QK_FN F add(F a, F b) { return _mm512_add_ps(a, b); }
  QK_FN F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  QK_FN F set1(float s) { return _mm512_set1_ps(s); }
  QK_FN float hsum(F v) { return _mm512_reduce_add_ps(v); }
  QK_FN float half(uint16_t h) { return _cvtsh_ss(h); }
  // h = 0: codes 0..15 and 16..31 of the block at p. Codes of b < 8 bits are placed in the top
  // mantissa bits of 1.0f, f = 1 + q 2^-b (exact; a shift and a ternary logic op per 16 codes,
  // no integer-to-float conversion); the kernel rescales s and z accordingly (biased<BITS>).
  template <int BITS>
  static constexpr bool biased = BITS < 8;
  template <int BITS>
  QK_FN void codes(const uint8_t* p, int, F& f0, F& f1) {
    const __m512i one = _mm512_set1_epi32(0x3F800000);
    constexpr int kOr = 0xEA;  // ternary logic (a & b) | c
    if constexpr (BITS == 8) {
      f0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
      f1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16))));
    } else if constexpr (BITS == 4) {
      // Lane j holds byte j: code j in bits 0..3, code 16 + j in bits 4..7.
      const __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      const __m512i m = _mm512_set1_epi32(0x00780000);
      f0 = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_slli_epi32(d, 19), m, one, kOr));
      f1 = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_slli_epi32(d, 15), m, one, kOr));
    } else {
      // Lanes j and 8 + j both hold byte j (codes j, j+8, j+16, j+24 in bit pairs).
      const __m512i d = _mm512_cvtepu8_epi32(_mm_castpd_si128(_mm_loaddup_pd(reinterpret_cast<const double*>(p))));
      constexpr int top = 23 - BITS;  // where a code's bit 0 goes
      const __m512i s0 = _mm512_set_epi32(top - 2, top - 2, top - 2, top - 2, top - 2, top - 2, top - 2, top - 2,
                                          top, top, top, top, top, top, top, top);
      const __m512i s1 = _mm512_sub_epi32(s0, _mm512_set1_epi32(4));
      const __m512i m = _mm512_set1_epi32(3 << top);
      __m512i lo = _mm512_ternarylogic_epi32(_mm512_sllv_epi32(d, s0), m, one, kOr);
      __m512i hi = _mm512_ternarylogic_epi32(_mm512_sllv_epi32(d, s1), m, one, kOr);
      if constexpr (BITS == 3) {  // bit j of the mask word is bit 2 of code j
        uint32_t hb;
        std::memcpy(&hb, p + 8, 4);
        const __m512i b2 = _mm512_set1_epi32(4 << top);
        lo = _mm512_mask_or_epi32(lo, static_cast<__mmask16>(hb & 0xFFFF), lo, b2);
        hi = _mm512_mask_or_epi32(hi, static_cast<__mmask16>(hb >> 16), hi, b2);
      }
      f0 = _mm512_castsi512_ps(lo);
      f1 = _mm512_castsi512_ps(hi);
    }
  }
};
#include "quant_kernel.h"
__attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) void run(int bits, const Args& a, int64_t n0, int64_t n1,
                                                                  int64_t B) {
  switch (bits) {
    case 2: return rows<2>(a, n0, n1, B);
    case 3: return rows<3>(a, n0, n1, B);
    case 4: return rows<4>(a, n0, n1, B);
    default: return rows<8>(a, n0, n1, B);
  }
}
#undef QK_FN
}  // namespace avx512
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

Isa detect_isa() {
  __builtin_cpu_init();
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_F16C)) return Isa::Scalar;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
  return Isa::Scalar;
}
#else
Isa detect_isa() { return Isa::Scalar; }
#endif

const Isa g_best = detect_isa();

}  // namespace

int64_t row_bytes(int64_t K, int bits) { return (K + 31) / 32 * 4 * bits; }

int64_t num_groups(int64_t K, int64_t group_size) { return group_size > 0 ? (K + group_size - 1) / group_size : 1; }

Isa best_isa() { return g_best; }
bool isa_supported(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(g_best); }
const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

void pack(const uint8_t* codes_, int64_t N, int64_t K, int bits, uint8_t* packed, int threads) {
  check_bits(bits);
  const int64_t rb = row_bytes(K, bits), nb = (K + 31) / 32;
  const int maxc = (1 << bits) - 1;
  parallel_for(N, resolve_threads(threads), 256, [&](int64_t n0, int64_t n1, int) {
    uint8_t c[32];
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* src = codes_ + n * K;
      for (int64_t t = 0; t < nb; ++t) {
        const int64_t len = std::min<int64_t>(32, K - 32 * t);
        std::memset(c, 0, 32);
        std::memcpy(c, src + 32 * t, len);
        for (int j = 0; j < len; ++j)
          if (c[j] > maxc)
            EVOFORGE_THROW(std::invalid_argument, "code " << int{c[j]} << " at row " << n << ", column " << 32 * t + j
                                                          << " is out of range [0, " << maxc << "] for bits=" << bits);
        pack_block(c, bits, packed + n * rb + t * 4 * bits);
      }
    }
  });
}

void unpack(const uint8_t* packed, int64_t N, int64_t K, int bits, uint8_t* codes_, int threads) {
  check_bits(bits);
  const int64_t rb = row_bytes(K, bits), nb = (K + 31) / 32;
  parallel_for(N, resolve_threads(threads), 256, [&](int64_t n0, int64_t n1, int) {
    uint8_t c[32];
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t t = 0; t < nb; ++t) {
        unpack_block(packed + n * rb + t * 4 * bits, bits, c);
        std::memcpy(codes_ + n * K + 32 * t, c, std::min<int64_t>(32, K - 32 * t));
      }
  });
}

void dequantize(const uint8_t* packed, const uint16_t* scales, const uint16_t* zeros, int64_t N, int64_t K, int bits,
                int64_t group_size, float* w, int threads) {
  check_bits(bits);
  check_group(group_size);
  const int64_t rb = row_bytes(K, bits), nb = (K + 31) / 32, G = num_groups(K, group_size);
  const int64_t g = group_size > 0 ? group_size : std::max<int64_t>(K, 1);
  const float zsym = static_cast<float>(1 << (bits - 1));
  parallel_for(N, resolve_threads(threads), 64, [&](int64_t n0, int64_t n1, int) {
    uint8_t c[32];
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t t = 0; t < nb; ++t) {
        unpack_block(packed + n * rb + t * 4 * bits, bits, c);
        const int64_t len = std::min<int64_t>(32, K - 32 * t);
        for (int j = 0; j < len; ++j) {
          const int64_t k = 32 * t + j, gi = k / g;
          const float s = half_to_float(scales[n * G + gi]);
          const float z = zeros ? half_to_float(zeros[n * G + gi]) : zsym;
          // q - z is exact in float32 (z is a half below 2^9 in magnitude); one rounding for the product.
          w[n * K + k] = s * (static_cast<float>(c[j]) - z);
        }
      }
  });
}

void matmul(const float* x, int64_t B, const uint8_t* packed, const uint16_t* scales, const uint16_t* zeros,
            const float* bias, int64_t N, int64_t K, int bits, int64_t group_size, float* y, int threads, Isa isa) {
  check_bits(bits);
  check_group(group_size);
  EVOFORGE_CHECK(isa_supported(isa), "this CPU cannot run the " << isa_name(isa) << " kernel");
  if (B <= 0 || N <= 0) return;
  const int64_t nblocks = (K + 31) / 32, Kp = 32 * nblocks, G = num_groups(K, group_size);
  const int64_t gb = group_size > 0 ? group_size / 32 : nblocks;
  std::vector<float> xp(static_cast<size_t>(B * Kp), 0.f), xs(static_cast<size_t>(B * G));
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(xp.data() + b * Kp, x + b * K, sizeof(float) * K);
    for (int64_t g = 0; g < G; ++g) {
      double s = 0;
      for (int64_t k = g * gb * 32; k < std::min(K, (g + 1) * gb * 32); ++k) s += x[b * K + k];
      xs[b * G + g] = static_cast<float>(s);
    }
  }
  Args a{xp.data(), xs.data(), packed, scales, zeros, bias, y, N, Kp, G, row_bytes(K, bits), nblocks, gb};
  // Work per row of W in bytes-read units: its packed bytes and grid, plus a term for the
  // multiply-adds at larger B, so that small layers run on the caller (evoforge/common.h).
  const int64_t row_work = row_bytes(K, bits) + 2 * G * (zeros ? 2 : 1) + Kp * B / 8;
  parallel_for_work(N, resolve_threads(threads), row_work, [&](int64_t n0, int64_t n1, int) {
#ifdef EVOFORGE_QUANT_X86
    if (isa == Isa::Avx512) return avx512::run(bits, a, n0, n1, B);
    if (isa == Isa::Avx2) return avx2::run(bits, a, n0, n1, B);
#endif
    rows_portable(bits, a, n0, n1, B);
  });
}

}  // namespace quant
}  // namespace evoforge
