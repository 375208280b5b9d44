// Sparse linear-layer kernels (formats in evoforge/sparse.h).
//
// Work split: parallel_for over output rows; each row runs its batch rows in tiles of up to 8, so
// a weight chunk is expanded once per tile and stays in a register while up to 8 FMAs use it
// (tiles of fewer than 4 rows alternate two accumulator sets to hide the FMA latency).
// AVX-512 (F/BW/VL/DQ/VBMI2/VPOPCNTDQ): two mask bytes cover 16 columns; their popcount kept values
// are the next values of the stream, loaded and put in their columns by one permute whose indices
// are the ranks popcount(m & (2^j - 1)) (one vpopcntd; a register expand is microcoded and about
// three times slower on Zen 4); 2:4 does
// the same with the 16-bit mask of two meta bytes (a 256-entry table) over 8 consecutive values.
// AVX2: one mask byte, 8 columns: a permute from a 256-entry index table, absent columns zeroed by
// a compare against the mask bits; 2:4: a 4-float load (upper lanes 0) permuted with index 4 for
// the absent columns. Quantised values: the row's codes are unpacked to bytes once (per-thread
// buffer), and the kernels dequantise s * (q - z) on the fly before the expand. The portable
// scalar loop decodes the row to float32 first. Results do not depend on the thread count.
#include "evoforge/sparse.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "evoforge/common.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define EVOFORGE_SPARSE_X86 1
#include <immintrin.h>
#else
#define EVOFORGE_SPARSE_X86 0
#endif

namespace evoforge {
namespace sparse {

namespace {

constexpr int kTile = 8;  // batch rows per pass over a weight row

inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        man <<= 1;
        ++e;
      } while (!(man & 0x400u));
      bits = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float value_at(Values vt, const void* v, int64_t i) {
  return vt == Values::f32 ? static_cast<const float*>(v)[i] : half_to_float(static_cast<const uint16_t*>(v)[i]);
}

// The 32 codes of one block of the v1 layout (packed_format.md).
__attribute__((always_inline)) inline void decode_block(const uint8_t* p, int bits, uint8_t* c) {
  switch (bits) {
    case 8:
      for (int j = 0; j < 32; ++j) c[j] = p[j];
      break;
    case 4:
      for (int j = 0; j < 16; ++j) {
        c[j] = p[j] & 15;
        c[j + 16] = p[j] >> 4;
      }
      break;
    default:  // 2 and 3: the low two bits in the 2-bit layout
      for (int j = 0; j < 8; ++j) {
        c[j] = p[j] & 3;
        c[j + 8] = (p[j] >> 2) & 3;
        c[j + 16] = (p[j] >> 4) & 3;
        c[j + 24] = p[j] >> 6;
      }
      if (bits == 3) {
        const uint32_t hi = uint32_t(p[8]) | uint32_t(p[9]) << 8 | uint32_t(p[10]) << 16 | uint32_t(p[11]) << 24;
        for (int j = 0; j < 32; ++j) c[j] |= uint8_t(((hi >> j) & 1u) << 2);
      }
  }
}

// Codes [start, start + count) of a stream packed in blocks of 32 -> c[0 .. count).
__attribute__((always_inline)) inline void decode_range(const uint8_t* packed, int bits, int64_t start,
                                                        int64_t count, uint8_t* c) {
  uint8_t blk[32];
  int64_t i = 0;
  while (i < count) {
    const int64_t at = start + i, b = at / 32, j = at % 32;
    const int64_t take = std::min<int64_t>(32 - j, count - i);
    if (j == 0 && take == 32) {
      decode_block(packed + b * 4 * bits, bits, c + i);
    } else {
      decode_block(packed + b * 4 * bits, bits, blk);
      std::memcpy(c + i, blk + j, size_t(take));
    }
    i += take;
  }
}

// s * (q - z) for n codes of one group.
__attribute__((always_inline)) inline void dequant(const uint8_t* c, int64_t n, float s, float z, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = s * (float(c[i]) - z);
}

struct Group {
  float s, z;
};
inline Group group_of(const QuantValues& q, int64_t n, int64_t g) {
  const int64_t at = n * q.groups + g;
  return {half_to_float(q.scales[at]), q.zeros ? half_to_float(q.zeros[at]) : float(1 << (q.bits - 1))};
}

// One row's quantised values for the fused AVX2 kernels: codes, its grid as float, and the mask /
// meta bytes that one group spans.
struct QRow {
  const uint8_t* codes;
  const float* s;
  const float* z;
  int64_t gb;
};

// Row n's grid (scales, zeros) as float into s[G], z[G].
inline void row_grid(const QuantValues& q, int64_t n, float* s, float* z) {
  for (int64_t j = 0; j < q.groups; ++j) {
    const Group g = group_of(q, n, j);
    s[j] = g.s, z[j] = g.z;
  }
}

// Decode row n of quantised 2:4 V ([Kp/2] values) into out.
__attribute__((always_inline)) inline void decode_row24(const QuantValues& q, int64_t n, int64_t KV, uint8_t* codes,
                                                        float* out) {
  const int64_t row_bytes = (KV + 31) / 32 * 4 * q.bits;
  decode_range(q.packed + n * row_bytes, q.bits, 0, KV, codes);
  const int64_t g = q.group_size > 0 ? q.group_size : KV;
  for (int64_t j = 0, k0 = 0; k0 < KV; ++j, k0 += g) {
    const Group gr = group_of(q, n, j);
    dequant(codes + k0, std::min(g, KV - k0), gr.s, gr.z, out + k0);
  }
}

// Decode the kept values of unstructured row n (codes [row_ptr[n], row_ptr[n+1])) into out; the
// group of a kept value is its original column / g, so the mask tells how many fall in a group.
// Returns false when the mask has more kept bits than the row's codes.
__attribute__((always_inline)) inline bool decode_row_us(const QuantValues& q, int64_t n, const uint8_t* mrow,
                                                         int64_t KB, int64_t start, int64_t count, uint8_t* codes,
                                                         float* out) {
  decode_range(q.packed, q.bits, start, count, codes);
  const int64_t gb = q.group_size > 0 ? q.group_size / 8 : KB;  // mask bytes per group
  int64_t off = 0;
  for (int64_t j = 0, t0 = 0; t0 < KB; ++j, t0 += gb) {
    int64_t cnt = 0;
    for (int64_t t = t0; t < std::min(KB, t0 + gb); ++t) cnt += __builtin_popcount(mrow[t]);
    if (off + cnt > count) return false;
    const Group gr = group_of(q, n, j);
    dequant(codes + off, cnt, gr.s, gr.z, out + off);
    off += cnt;
  }
  return off == count;
}

// ---- scalar --------------------------------------------------------------------------------------

// Unstructured row, one batch row: returns false on a mask / row_ptr mismatch.
template <Values VT>
bool us_row_scalar(const void* vals, int64_t off, int64_t end, int64_t limit, const uint8_t* mrow, int64_t KB,
                   const float* x, float* out) {
  float acc = 0.0f;
  for (int64_t t = 0; t < KB; ++t) {
    unsigned m = mrow[t];
    while (m) {
      const int j = __builtin_ctz(m);
      m &= m - 1;
      if (off >= limit) return false;
      acc += value_at(VT, vals, off++) * x[8 * t + j];
    }
  }
  *out = acc;
  return off == end;
}

template <Values VT>
float s24_row_scalar(const void* V, const uint8_t* meta, int64_t MB, const float* x) {
  float acc = 0.0f;
  for (int64_t t = 0; t < MB; ++t) {
    const unsigned m = meta[t];
    for (int h = 0; h < 2; ++h) {
      const unsigned nib = m >> (4 * h);
      const float* xg = x + 8 * t + 4 * h;
      acc += value_at(VT, V, 4 * t + 2 * h) * xg[nib & 3] + value_at(VT, V, 4 * t + 2 * h + 1) * xg[(nib >> 2) & 3];
    }
  }
  return acc;
}

// ---- AVX2 ----------------------------------------------------------------------------------------
#if EVOFORGE_SPARSE_X86
#define SP_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SP_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

struct Tables {
  alignas(32) int32_t us[256][8];  // unstructured: lane j <- rank of bit j among the set bits
  alignas(32) int32_t s24[256][8];  // 2:4: kept lanes <- 0..3, the others <- 4 (a zero lane)
  Tables() {
    for (int m = 0; m < 256; ++m) {
      for (int j = 0; j < 8; ++j) us[m][j] = (m >> j) & 1 ? __builtin_popcount(m & ((1 << j) - 1)) : 0;
      for (int j = 0; j < 8; ++j) s24[m][j] = 4;
      for (int h = 0; h < 2; ++h) {
        const int nib = m >> (4 * h);
        s24[m][4 * h + ((nib >> 2) & 3)] = 2 * h + 1;
        s24[m][4 * h + (nib & 3)] = 2 * h;
      }
    }
  }
};
const Tables g_tab;

SP_AVX2_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <Values VT>
SP_AVX2_INLINE __m256 load8(const void* v, int64_t i) {
  if constexpr (VT == Values::f32)
    return _mm256_loadu_ps(static_cast<const float*>(v) + i);
  else
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(v) + i)));
}

template <Values VT>
SP_AVX2_INLINE __m256 load4_zext(const void* v, int64_t i) {
  __m128 a;
  if constexpr (VT == Values::f32)
    a = _mm_loadu_ps(static_cast<const float*>(v) + i);
  else
    a = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(v) + i)));
  return _mm256_insertf128_ps(_mm256_setzero_ps(), a, 0);
}

// Batch tiles of T < 4 rows alternate between two accumulator sets so that consecutive FMAs do not
// wait on each other (the sets are added at the end in a fixed order).
template <int T>
constexpr int acc_sets() {
  return T < 4 ? 2 : 1;
}

struct QState {  // the current quantisation group while a row is swept
  int64_t next = 0, grp = 0;
};

template <Values VT, int T>
SP_AVX2_INLINE void us_step_avx2(const void* vals, int64_t& off, int64_t limit, unsigned m, int64_t t,
                                 const float* x, int64_t ldx, __m256 (&acc)[T], const QRow& qr, QState& qs,
                                 __m256& sv, __m256& zv) {
  if constexpr (VT == Values::quant) {
    if (t >= qs.next) {
      sv = _mm256_set1_ps(qr.s[qs.grp]), zv = _mm256_set1_ps(qr.z[qs.grp]);
      ++qs.grp, qs.next += qr.gb;
    }
  }
  if (!m) return;
  __m256 v;
  if constexpr (VT == Values::quant) {  // the codes buffer is padded: 8 codes can always be read
    const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qr.codes + off)));
    v = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(c), zv), sv);
  } else if (off + 8 <= limit) {
    _mm_prefetch(static_cast<const char*>(vals) + (off + 256) * (VT == Values::f32 ? 4 : 2), _MM_HINT_T0);
    v = load8<VT>(vals, off);
  } else {  // the stream's last values: never read past its end
    alignas(32) float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < std::min<int64_t>(8, limit - off); ++i) tmp[i] = value_at(VT, vals, off + i);
    v = _mm256_load_ps(tmp);
  }
  const __m256i bitsel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i idx = _mm256_load_si256(reinterpret_cast<const __m256i*>(g_tab.us[m]));
  const __m256i sel = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(int(m)), bitsel), bitsel);
  const __m256 w = _mm256_and_ps(_mm256_permutevar8x32_ps(v, idx), _mm256_castsi256_ps(sel));
  for (int i = 0; i < T; ++i) acc[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + i * ldx + 8 * t), acc[i]);
  off += __builtin_popcount(m);
}

template <Values VT, int T>
SP_AVX2 bool us_tile_avx2(const void* vals, int64_t off, int64_t end, int64_t limit, const uint8_t* mrow, int64_t KB,
                          const float* x, int64_t ldx, float* out, const QRow& qr) {
  __m256 a0[T], a1[T];
  for (int i = 0; i < T; ++i) a0[i] = a1[i] = _mm256_setzero_ps();
  __m256 sv = _mm256_setzero_ps(), zv = sv;
  QState qs;
  constexpr int S = acc_sets<T>();
  for (int64_t t = 0; t < KB; t += S) {
    us_step_avx2<VT, T>(vals, off, limit, mrow[t], t, x, ldx, a0, qr, qs, sv, zv);
    if constexpr (S == 2)
      if (t + 1 < KB) us_step_avx2<VT, T>(vals, off, limit, mrow[t + 1], t + 1, x, ldx, a1, qr, qs, sv, zv);
  }
  for (int i = 0; i < T; ++i) out[i] = hsum(_mm256_add_ps(a0[i], a1[i]));
  return off == end;
}

template <Values VT, int T>
SP_AVX2_INLINE void s24_step_avx2(const void* V, const uint8_t* meta, int64_t t, const float* x, int64_t ldx,
                                  __m256 (&acc)[T], const QRow& qr, QState& qs, __m128& sv, __m128& zv) {
  const __m256i idx = _mm256_load_si256(reinterpret_cast<const __m256i*>(g_tab.s24[meta[t]]));
  __m256 v4;
  if constexpr (VT == Values::quant) {
    if (t >= qs.next) {
      sv = _mm_set1_ps(qr.s[qs.grp]), zv = _mm_set1_ps(qr.z[qs.grp]);
      ++qs.grp, qs.next += qr.gb;
    }
    int32_t c4;
    std::memcpy(&c4, qr.codes + 4 * t, 4);
    const __m128 q = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(c4)));
    v4 = _mm256_insertf128_ps(_mm256_setzero_ps(), _mm_mul_ps(_mm_sub_ps(q, zv), sv), 0);
  } else {
    v4 = load4_zext<VT>(V, 4 * t);
  }
  const __m256 w = _mm256_permutevar8x32_ps(v4, idx);
  for (int i = 0; i < T; ++i) acc[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + i * ldx + 8 * t), acc[i]);
}

template <Values VT, int T>
SP_AVX2 void s24_tile_avx2(const void* V, const uint8_t* meta, int64_t MB, const float* x, int64_t ldx, float* out,
                           const QRow& qr) {
  __m256 a0[T], a1[T];
  for (int i = 0; i < T; ++i) a0[i] = a1[i] = _mm256_setzero_ps();
  __m128 sv = _mm_setzero_ps(), zv = sv;
  QState qs;
  constexpr int S = acc_sets<T>();
  for (int64_t t = 0; t < MB; t += S) {  // MB is a multiple of 4
    s24_step_avx2<VT, T>(V, meta, t, x, ldx, a0, qr, qs, sv, zv);
    if constexpr (S == 2) s24_step_avx2<VT, T>(V, meta, t + 1, x, ldx, a1, qr, qs, sv, zv);
  }
  for (int i = 0; i < T; ++i) out[i] = hsum(_mm256_add_ps(a0[i], a1[i]));
}

template <Values VT>
SP_AVX2 bool us_row_avx2(const void* vals, int64_t off, int64_t end, int64_t limit, const uint8_t* mrow, int64_t KB,
                         const float* x, int64_t ldx, int64_t B, float* out, const QRow& qr) {
  bool ok = true;
  for (int64_t b0 = 0; b0 < B; b0 += kTile) {
    const float* xb = x + b0 * ldx;
    float* o = out + b0;
    switch (std::min<int64_t>(kTile, B - b0)) {
#define SP_CASE(T) \
  case T:          \
    ok &= us_tile_avx2<VT, T>(vals, off, end, limit, mrow, KB, xb, ldx, o, qr); \
    break;
      SP_CASE(1) SP_CASE(2) SP_CASE(3) SP_CASE(4) SP_CASE(5) SP_CASE(6) SP_CASE(7) SP_CASE(8)
#undef SP_CASE
    }
  }
  return ok;
}

template <Values VT>
SP_AVX2 void s24_row_avx2(const void* V, const uint8_t* meta, int64_t MB, const float* x, int64_t ldx, int64_t B,
                          float* out, const QRow& qr) {
  for (int64_t b0 = 0; b0 < B; b0 += kTile) {
    const float* xb = x + b0 * ldx;
    float* o = out + b0;
    switch (std::min<int64_t>(kTile, B - b0)) {
#define SP_CASE(T) \
  case T:          \
    s24_tile_avx2<VT, T>(V, meta, MB, xb, ldx, o, qr); \
    break;
      SP_CASE(1) SP_CASE(2) SP_CASE(3) SP_CASE(4) SP_CASE(5) SP_CASE(6) SP_CASE(7) SP_CASE(8)
#undef SP_CASE
    }
  }
}

// Codes [start, start + count) of a packed stream: whole blocks are unpacked into c (which holds
// count + 64 codes), the returned pointer is code `start`.
SP_AVX2 const uint8_t* decode_codes_avx2(const uint8_t* packed, int bits, int64_t start, int64_t count, uint8_t* c) {
  const int64_t b0 = start / 32, b1 = (start + count + 31) / 32;
  const __m128i lo4 = _mm_set1_epi8(0x0f), lo2 = _mm_set1_epi8(0x03);
  uint8_t* o = c;
  for (int64_t b = b0; b < b1; ++b, o += 32) {
    const uint8_t* p = packed + b * 4 * bits;
    if (bits == 4) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm_and_si128(v, lo4));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16), _mm_and_si128(_mm_srli_epi16(v, 4), lo4));
    } else if (bits == 8) {
      std::memcpy(o, p, 32);
    } else if (bits == 2) {
      const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(o), _mm_and_si128(v, lo2));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(o + 8), _mm_and_si128(_mm_srli_epi16(v, 2), lo2));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(o + 16), _mm_and_si128(_mm_srli_epi16(v, 4), lo2));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(o + 24), _mm_and_si128(_mm_srli_epi16(v, 6), lo2));
    } else {
      decode_block(p, bits, o);
    }
  }
  return c + start % 32;
}

// ---- AVX-512 (F + BW + VL + VBMI2): expand-loads put a chunk's kept values in their columns ----
#define SP_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi2,avx512vpopcntdq,avx2,fma,f16c,popcnt")))

struct Masks24 {
  uint8_t m[256];  // meta byte -> the 8-bit mask of its kept columns
  Masks24() {
    for (int b = 0; b < 256; ++b) m[b] = uint8_t(1 << (b & 3) | 1 << ((b >> 2) & 3) | 16 << ((b >> 4) & 3) | 16 << ((b >> 6) & 3));
  }
};
const Masks24 g_m24;

#define SP_AVX512_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi2,avx512vpopcntdq,avx2,fma,f16c,popcnt"), always_inline)) inline

// Lane j: 2^j - 1, the bits of a 16-bit mask below column j.
SP_AVX512_INLINE __m512i prefix_masks() {
  return _mm512_setr_epi32(0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095, 8191, 16383, 32767);
}

// Unstructured, 16 columns (two mask bytes) per step; false on a corrupt mask (never reads past
// the values).
template <Values VT, int T>
SP_AVX512_INLINE bool us_step_avx512(const void* vals, int64_t& off, int64_t limit, const uint8_t* mrow, int64_t KB,
                                     int64_t t, const float* x, int64_t ldx, __m512 (&acc)[T], const QRow& qr,
                                     QState& qs, __m512& sv, __m512& zv) {
  if constexpr (VT == Values::quant) {
    if (t >= qs.next) {  // groups span an even number of mask bytes (g is a multiple of 32)
      sv = _mm512_set1_ps(qr.s[qs.grp]), zv = _mm512_set1_ps(qr.z[qs.grp]);
      ++qs.grp, qs.next += qr.gb;
    }
  }
  const unsigned m = unsigned(mrow[t]) | (t + 1 < KB ? unsigned(mrow[t + 1]) << 8 : 0u);
  if (!m) return true;
  const int cnt = __builtin_popcount(m);
  const __mmask16 k = __mmask16(m);
  // Column j takes value rank(j) = popcount(m & (2^j - 1)): a broadcast, an AND and a vpopcntd
  // give all 16 ranks, one permute places the values (expand is microcoded and ~3x slower on Zen 4).
  const __m512i idx = _mm512_popcnt_epi32(_mm512_and_si512(_mm512_set1_epi32(int(m)), prefix_masks()));
  __m512 v;
  if constexpr (VT == Values::quant) {  // padded codes buffer: 16 codes can always be read
    const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qr.codes + off))));
    v = _mm512_mul_ps(_mm512_sub_ps(q, zv), sv);
  } else {
    // the value stream advances by a data-dependent amount: prefetch it well ahead
    _mm_prefetch(static_cast<const char*>(vals) + (off + 256) * (VT == Values::f32 ? 4 : 2), _MM_HINT_T0);
    if (off + 16 <= limit) {
      if constexpr (VT == Values::f32)
        v = _mm512_loadu_ps(static_cast<const float*>(vals) + off);
      else
        v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(vals) + off)));
    } else {  // the stream's last values: a masked load never reads past its end
      if (off + cnt > limit) return false;
      const __mmask16 first = __mmask16((1u << cnt) - 1u);
      if constexpr (VT == Values::f32)
        v = _mm512_maskz_loadu_ps(first, static_cast<const float*>(vals) + off);
      else
        v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first, static_cast<const uint16_t*>(vals) + off));
    }
  }
  const __m512 w = _mm512_maskz_permutexvar_ps(k, idx, v);
  for (int i = 0; i < T; ++i) acc[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i * ldx + 8 * t), acc[i]);
  off += cnt;
  return true;
}

template <Values VT, int T>
SP_AVX512 bool us_tile_avx512(const void* vals, int64_t off, int64_t end, int64_t limit, const uint8_t* mrow,
                              int64_t KB, const float* x, int64_t ldx, float* out, const QRow& qr) {
  __m512 a0[T], a1[T];
  for (int i = 0; i < T; ++i) a0[i] = a1[i] = _mm512_setzero_ps();
  __m512 sv = _mm512_setzero_ps(), zv = sv;
  QState qs;
  constexpr int S = acc_sets<T>();
  for (int64_t t = 0; t < KB; t += 2 * S) {
    if (!us_step_avx512<VT, T>(vals, off, limit, mrow, KB, t, x, ldx, a0, qr, qs, sv, zv)) return false;
    if constexpr (S == 2)
      if (t + 2 < KB && !us_step_avx512<VT, T>(vals, off, limit, mrow, KB, t + 2, x, ldx, a1, qr, qs, sv, zv))
        return false;
  }
  for (int i = 0; i < T; ++i) out[i] = _mm512_reduce_add_ps(_mm512_add_ps(a0[i], a1[i]));
  return off == end;
}

// 2:4, 16 columns (two meta bytes, 8 values) per step.
template <Values VT, int T>
SP_AVX512_INLINE void s24_step_avx512(const void* V, const uint8_t* meta, int64_t t, const float* x, int64_t ldx,
                                      __m512 (&acc)[T], const QRow& qr, QState& qs, __m256& sv, __m256& zv) {
  const __mmask16 k = __mmask16(g_m24.m[meta[t]] | unsigned(g_m24.m[meta[t + 1]]) << 8);
  __m256 v8;
  if constexpr (VT == Values::quant) {
    if (t >= qs.next) {
      sv = _mm256_set1_ps(qr.s[qs.grp]), zv = _mm256_set1_ps(qr.z[qs.grp]);
      ++qs.grp, qs.next += qr.gb;
    }
    const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qr.codes + 4 * t))));
    v8 = _mm256_mul_ps(_mm256_sub_ps(q, zv), sv);
  } else if constexpr (VT == Values::f32) {
    v8 = _mm256_loadu_ps(static_cast<const float*>(V) + 4 * t);
  } else {
    v8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(V) + 4 * t)));
  }
  const __m512 w = _mm512_maskz_expand_ps(k, _mm512_castps256_ps512(v8));
  for (int i = 0; i < T; ++i) acc[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i * ldx + 8 * t), acc[i]);
}

template <Values VT, int T>
SP_AVX512 void s24_tile_avx512(const void* V, const uint8_t* meta, int64_t MB, const float* x, int64_t ldx,
                               float* out, const QRow& qr) {
  __m512 a0[T], a1[T];
  for (int i = 0; i < T; ++i) a0[i] = a1[i] = _mm512_setzero_ps();
  __m256 sv = _mm256_setzero_ps(), zv = sv;
  QState qs;
  constexpr int S = acc_sets<T>();
  for (int64_t t = 0; t < MB; t += 2 * S) {  // MB = Kp / 8 is a multiple of 4
    s24_step_avx512<VT, T>(V, meta, t, x, ldx, a0, qr, qs, sv, zv);
    if constexpr (S == 2) s24_step_avx512<VT, T>(V, meta, t + 2, x, ldx, a1, qr, qs, sv, zv);
  }
  for (int i = 0; i < T; ++i) out[i] = _mm512_reduce_add_ps(_mm512_add_ps(a0[i], a1[i]));
}

template <Values VT>
SP_AVX512 bool us_row_avx512(const void* vals, int64_t off, int64_t end, int64_t limit, const uint8_t* mrow,
                             int64_t KB, const float* x, int64_t ldx, int64_t B, float* out, const QRow& qr) {
  bool ok = true;
  for (int64_t b0 = 0; b0 < B; b0 += kTile) {
    const float* xb = x + b0 * ldx;
    float* o = out + b0;
    switch (std::min<int64_t>(kTile, B - b0)) {
#define SP_CASE(T) \
  case T:          \
    ok &= us_tile_avx512<VT, T>(vals, off, end, limit, mrow, KB, xb, ldx, o, qr); \
    break;
      SP_CASE(1) SP_CASE(2) SP_CASE(3) SP_CASE(4) SP_CASE(5) SP_CASE(6) SP_CASE(7) SP_CASE(8)
#undef SP_CASE
    }
  }
  return ok;
}

template <Values VT>
SP_AVX512 void s24_row_avx512(const void* V, const uint8_t* meta, int64_t MB, const float* x, int64_t ldx, int64_t B,
                              float* out, const QRow& qr) {
  for (int64_t b0 = 0; b0 < B; b0 += kTile) {
    const float* xb = x + b0 * ldx;
    float* o = out + b0;
    switch (std::min<int64_t>(kTile, B - b0)) {
#define SP_CASE(T) \
  case T:          \
    s24_tile_avx512<VT, T>(V, meta, MB, xb, ldx, o, qr); \
    break;
      SP_CASE(1) SP_CASE(2) SP_CASE(3) SP_CASE(4) SP_CASE(5) SP_CASE(6) SP_CASE(7) SP_CASE(8)
#undef SP_CASE
    }
  }
}

// Dense rows (the unpacking for large batches): the kernels' expand, stored instead of multiplied.
SP_AVX512_INLINE void store16(float* wr, int64_t t, int64_t K, __m512 w) {
  const int64_t valid = std::min<int64_t>(16, K - 8 * t);
  _mm512_mask_storeu_ps(wr + 8 * t, __mmask16((1u << valid) - 1u), w);
}

template <Values VT>
SP_AVX512 bool us_dense_avx512(const void* vals, int64_t off, int64_t end, int64_t limit, const uint8_t* mrow,
                               int64_t KB, int64_t K, float* wr, const QRow& qr) {
  __m512 sv = _mm512_setzero_ps(), zv = sv;
  QState qs;
  for (int64_t t = 0; t < KB; t += 2) {
    if constexpr (VT == Values::quant) {
      if (t >= qs.next) {
        sv = _mm512_set1_ps(qr.s[qs.grp]), zv = _mm512_set1_ps(qr.z[qs.grp]);
        ++qs.grp, qs.next += qr.gb;
      }
    }
    const unsigned m = unsigned(mrow[t]) | (t + 1 < KB ? unsigned(mrow[t + 1]) << 8 : 0u);
    const int cnt = __builtin_popcount(m);
    const __mmask16 k = __mmask16(m);
    const __m512i idx = _mm512_popcnt_epi32(_mm512_and_si512(_mm512_set1_epi32(int(m)), prefix_masks()));
    __m512 w;
    if constexpr (VT == Values::quant) {
      const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qr.codes + off))));
      w = _mm512_maskz_permutexvar_ps(k, idx, _mm512_mul_ps(_mm512_sub_ps(q, zv), sv));
    } else {
      if (off + cnt > limit) return false;
      const __mmask16 first = __mmask16((1u << cnt) - 1u);  // a masked load: never past the stream
      if constexpr (VT == Values::f32)
        w = _mm512_maskz_permutexvar_ps(k, idx, _mm512_maskz_loadu_ps(first, static_cast<const float*>(vals) + off));
      else
        w = _mm512_maskz_permutexvar_ps(
            k, idx, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first, static_cast<const uint16_t*>(vals) + off)));
    }
    store16(wr, t, K, w);
    off += cnt;
  }
  return off == end;
}

template <Values VT>
SP_AVX512 void s24_dense_avx512(const void* V, const uint8_t* meta, int64_t MB, int64_t K, float* wr, const QRow& qr) {
  __m256 sv = _mm256_setzero_ps(), zv = sv;
  QState qs;
  for (int64_t t = 0; t < MB && 8 * t < K; t += 2) {
    const __mmask16 k = __mmask16(g_m24.m[meta[t]] | unsigned(g_m24.m[meta[t + 1]]) << 8);
    __m256 v8;
    if constexpr (VT == Values::quant) {
      while (t >= qs.next) {
        sv = _mm256_set1_ps(qr.s[qs.grp]), zv = _mm256_set1_ps(qr.z[qs.grp]);
        ++qs.grp, qs.next += qr.gb;
      }
      const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qr.codes + 4 * t))));
      v8 = _mm256_mul_ps(_mm256_sub_ps(q, zv), sv);
    } else if constexpr (VT == Values::f32) {
      v8 = _mm256_loadu_ps(static_cast<const float*>(V) + 4 * t);
    } else {
      v8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(V) + 4 * t)));
    }
    store16(wr, t, K, _mm512_maskz_expand_ps(k, _mm512_castps256_ps512(v8)));
  }
}

int detect_isa() {
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))) return 0;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vbmi2") &&
      __builtin_cpu_supports("avx512vpopcntdq"))
    return 2;
  return 1;
}
const int g_isa = detect_isa();
#else
const int g_isa = 0;
#endif

// X copied into rows of ldx floats, zero-padded past K (kernels read whole 8-column chunks).
std::vector<float> pad_x(const float* x, int64_t B, int64_t K, int64_t ldx) {
  std::vector<float> xp(size_t(B * ldx), 0.0f);
  for (int64_t b = 0; b < B; ++b) std::memcpy(xp.data() + b * ldx, x + b * K, size_t(K) * sizeof(float));
  return xp;
}

// Rows per chunk: a row's work in bytes-read units is about its mask and values (K / 2 bytes at
// 50-60% sparsity in float16) plus a multiply-add term for larger B (evoforge/common.h's threshold).
int64_t min_rows(int64_t K, int64_t B) {
  const int64_t row_work = std::max<int64_t>(1, K / 2 + K * B / 8);
  return (kMinWorkPerThread + row_work - 1) / row_work;
}

// Runs row(n, out[B], scratch codes, scratch floats) over the rows, writes y[b, n] (+ bias).
template <typename RowFn>
void over_rows(int64_t N, int64_t B, int64_t K, int64_t scratch, const float* bias, float* y, int threads,
               RowFn&& row) {
  parallel_for(N, resolve_threads(threads), min_rows(K, B), [&](int64_t n0, int64_t n1, int) {
    std::vector<float> out(static_cast<size_t>(B)), fbuf(static_cast<size_t>(scratch + 8));
    std::vector<uint8_t> cbuf(size_t(scratch + 96));  // + block rounding + vector over-read
    for (int64_t n = n0; n < n1; ++n) {
      row(n, out.data(), cbuf.data(), fbuf.data());
      const float bn = bias ? bias[n] : 0.0f;
      for (int64_t b = 0; b < B; ++b) y[b * N + n] = out[size_t(b)] + bn;
    }
  });
}

// Runs row(n, scratch codes, scratch floats) over the rows (the dense unpacking).
template <typename RowFn>
void over_rows_dense(int64_t N, int64_t K, int threads, RowFn&& row) {
  parallel_for(N, resolve_threads(threads), min_rows(K, 1), [&](int64_t n0, int64_t n1, int) {
    std::vector<float> fbuf(static_cast<size_t>(K + 8));
    std::vector<uint8_t> cbuf(size_t(K + 96));
    for (int64_t n = n0; n < n1; ++n) row(n, cbuf.data(), fbuf.data());
  });
}

}  // namespace

int best_isa() { return g_isa; }

void unstructured_matmul(const float* x, int64_t B, int64_t K, const uint8_t* mask, const int64_t* row_ptr, int64_t N,
                         Values vt, const void* values, const QuantValues* q, const float* bias, float* y, int threads,
                         int max_isa) {
  EVOFORGE_CHECK(B >= 1 && K >= 1 && N >= 1, "unstructured_matmul needs B, K, N >= 1");
  EVOFORGE_CHECK(vt != Values::quant || q != nullptr, "quantised values need their codes and scales");
  const int64_t KB = (K + 7) / 8, ldx = (K + 15) / 16 * 16, nnz = row_ptr[N];
  const std::vector<float> xp = pad_x(x, B, K, ldx);
  const int isa = std::min(g_isa, max_isa);
  std::atomic<bool> bad{false};
  over_rows(N, B, K, K, bias, y, threads, [&](int64_t n, float* out, uint8_t* codes, float* fbuf) {
    const uint8_t* mrow = mask + n * KB;
    int64_t off = row_ptr[n], end = row_ptr[n + 1], limit = nnz;
#if EVOFORGE_SPARSE_X86
    if (isa >= 1) {
      bool ok;
      const bool w512 = isa >= 2;
      if (vt == Values::quant) {  // this row's codes, then the fused kernel dequantises as it goes
        const uint8_t* c = decode_codes_avx2(q->packed, q->bits, off, end - off, codes);
        row_grid(*q, n, fbuf, fbuf + q->groups);
        const QRow qr{c, fbuf, fbuf + q->groups, q->group_size > 0 ? q->group_size / 8 : KB};
        ok = w512 ? us_row_avx512<Values::quant>(nullptr, 0, end - off, 0, mrow, KB, xp.data(), ldx, B, out, qr)
                  : us_row_avx2<Values::quant>(nullptr, 0, end - off, 0, mrow, KB, xp.data(), ldx, B, out, qr);
      } else if (vt == Values::f32) {
        ok = w512 ? us_row_avx512<Values::f32>(values, off, end, limit, mrow, KB, xp.data(), ldx, B, out, QRow{})
                  : us_row_avx2<Values::f32>(values, off, end, limit, mrow, KB, xp.data(), ldx, B, out, QRow{});
      } else {
        ok = w512 ? us_row_avx512<Values::f16>(values, off, end, limit, mrow, KB, xp.data(), ldx, B, out, QRow{})
                  : us_row_avx2<Values::f16>(values, off, end, limit, mrow, KB, xp.data(), ldx, B, out, QRow{});
      }
      if (!ok) bad = true;
      return;
    }
#endif
    const void* vals = values;
    Values v = vt;
    if (vt == Values::quant) {  // decode this row's kept values into fbuf, then read them as float32
      if (!decode_row_us(*q, n, mrow, KB, off, end - off, codes, fbuf)) {
        bad = true;
        return;
      }
      vals = fbuf, v = Values::f32, limit = end - off, end = limit, off = 0;
    }
    for (int64_t b = 0; b < B; ++b) {
      const float* xb = xp.data() + b * ldx;
      const bool ok = v == Values::f32 ? us_row_scalar<Values::f32>(vals, off, end, limit, mrow, KB, xb, out + b)
                                       : us_row_scalar<Values::f16>(vals, off, end, limit, mrow, KB, xb, out + b);
      if (!ok) bad = true;
    }
  });
  EVOFORGE_CHECK(!bad, "the sparsity mask's kept counts disagree with row_ptr (corrupt unstructured weight)");
}

void sparse24_matmul(const float* x, int64_t B, int64_t K, const uint8_t* meta, int64_t N, Values vt,
                     const void* values, const QuantValues* q, const float* bias, float* y, int threads,
                     int max_isa) {
  EVOFORGE_CHECK(B >= 1 && K >= 1 && N >= 1, "sparse24_matmul needs B, K, N >= 1");
  EVOFORGE_CHECK(vt != Values::quant || q != nullptr, "quantised values need their codes and scales");
  const int64_t Kp = (K + 31) / 32 * 32, MB = Kp / 8, KV = Kp / 2;
  const std::vector<float> xp = pad_x(x, B, K, Kp);
  const int isa = std::min(g_isa, max_isa);
  over_rows(N, B, K, KV, bias, y, threads, [&](int64_t n, float* out, uint8_t* codes, float* fbuf) {
    const uint8_t* mrow = meta + n * MB;
    const void* V = vt == Values::f32 ? static_cast<const void*>(static_cast<const float*>(values) + n * KV)
                                      : static_cast<const void*>(static_cast<const uint16_t*>(values) + n * KV);
#if EVOFORGE_SPARSE_X86
    if (isa >= 1) {
      const bool w512 = isa >= 2;
      if (vt == Values::quant) {
        const int64_t row_bytes = (KV + 31) / 32 * 4 * q->bits;
        decode_codes_avx2(q->packed + n * row_bytes, q->bits, 0, KV, codes);
        row_grid(*q, n, fbuf, fbuf + q->groups);
        const QRow qr{codes, fbuf, fbuf + q->groups, q->group_size > 0 ? q->group_size / 4 : MB};
        if (w512)
          s24_row_avx512<Values::quant>(nullptr, mrow, MB, xp.data(), Kp, B, out, qr);
        else
          s24_row_avx2<Values::quant>(nullptr, mrow, MB, xp.data(), Kp, B, out, qr);
      } else if (vt == Values::f32) {
        if (w512)
          s24_row_avx512<Values::f32>(V, mrow, MB, xp.data(), Kp, B, out, QRow{});
        else
          s24_row_avx2<Values::f32>(V, mrow, MB, xp.data(), Kp, B, out, QRow{});
      } else {
        if (w512)
          s24_row_avx512<Values::f16>(V, mrow, MB, xp.data(), Kp, B, out, QRow{});
        else
          s24_row_avx2<Values::f16>(V, mrow, MB, xp.data(), Kp, B, out, QRow{});
      }
      return;
    }
#endif
    Values v = vt;
    if (vt == Values::quant) {
      decode_row24(*q, n, KV, codes, fbuf);
      V = fbuf, v = Values::f32;
    }
    for (int64_t b = 0; b < B; ++b)
      out[b] = v == Values::f32 ? s24_row_scalar<Values::f32>(V, mrow, MB, xp.data() + b * Kp)
                                : s24_row_scalar<Values::f16>(V, mrow, MB, xp.data() + b * Kp);
  });
}

void unstructured_to_dense(int64_t K, const uint8_t* mask, const int64_t* row_ptr, int64_t N, Values vt,
                           const void* values, const QuantValues* q, float* w, int threads) {
  const int64_t KB = (K + 7) / 8, nnz = row_ptr[N];
  std::atomic<bool> bad{false};
  over_rows_dense(N, K, threads, [&](int64_t n, uint8_t* codes, float* fbuf) {
    const uint8_t* mrow = mask + n * KB;
    int64_t off = row_ptr[n];
    const int64_t end = row_ptr[n + 1];
#if EVOFORGE_SPARSE_X86
    if (g_isa >= 2) {
      bool ok;
      if (vt == Values::quant) {
        const uint8_t* c = decode_codes_avx2(q->packed, q->bits, off, end - off, codes);
        row_grid(*q, n, fbuf, fbuf + q->groups);
        const QRow qr{c, fbuf, fbuf + q->groups, q->group_size > 0 ? q->group_size / 8 : KB};
        ok = us_dense_avx512<Values::quant>(nullptr, 0, end - off, 0, mrow, KB, K, w + n * K, qr);
      } else if (vt == Values::f32) {
        ok = us_dense_avx512<Values::f32>(values, off, end, nnz, mrow, KB, K, w + n * K, QRow{});
      } else {
        ok = us_dense_avx512<Values::f16>(values, off, end, nnz, mrow, KB, K, w + n * K, QRow{});
      }
      if (!ok) bad = true;
      return;
    }
#endif
    const void* vals = values;
    Values v = vt;
    if (vt == Values::quant) {
      if (!decode_row_us(*q, n, mrow, KB, off, end - off, codes, fbuf)) {
        bad = true;
        return;
      }
      vals = fbuf, v = Values::f32, off = 0;
    }
    const int64_t stop = vt == Values::quant ? end - row_ptr[n] : end;
    float* wr = w + n * K;
    std::fill(wr, wr + K, 0.0f);
    for (int64_t t = 0; t < KB; ++t)
      for (unsigned m = mrow[t]; m; m &= m - 1) {
        if (off >= stop) {
          bad = true;
          return;
        }
        wr[8 * t + __builtin_ctz(m)] = value_at(v, vals, off++);
      }
    if (off != stop) bad = true;
  });
  EVOFORGE_CHECK(!bad, "the sparsity mask's kept counts disagree with row_ptr (corrupt unstructured weight)");
}

void sparse24_to_dense(int64_t K, const uint8_t* meta, int64_t N, Values vt, const void* values, const QuantValues* q,
                       float* w, int threads) {
  const int64_t Kp = (K + 31) / 32 * 32, MB = Kp / 8, KV = Kp / 2;
  over_rows_dense(N, KV, threads, [&](int64_t n, uint8_t* codes, float* fbuf) {
    const void* V = vt == Values::f32 ? static_cast<const void*>(static_cast<const float*>(values) + n * KV)
                                      : static_cast<const void*>(static_cast<const uint16_t*>(values) + n * KV);
#if EVOFORGE_SPARSE_X86
    if (g_isa >= 2) {
      if (vt == Values::quant) {
        const int64_t row_bytes = (KV + 31) / 32 * 4 * q->bits;
        decode_codes_avx2(q->packed + n * row_bytes, q->bits, 0, KV, codes);
        row_grid(*q, n, fbuf, fbuf + q->groups);
        const QRow qr{codes, fbuf, fbuf + q->groups, q->group_size > 0 ? q->group_size / 4 : MB};
        s24_dense_avx512<Values::quant>(nullptr, meta + n * MB, MB, K, w + n * K, qr);
      } else if (vt == Values::f32) {
        s24_dense_avx512<Values::f32>(V, meta + n * MB, MB, K, w + n * K, QRow{});
      } else {
        s24_dense_avx512<Values::f16>(V, meta + n * MB, MB, K, w + n * K, QRow{});
      }
      return;
    }
#endif
    Values v = vt;
    if (vt == Values::quant) {
      decode_row24(*q, n, KV, codes, fbuf);
      V = fbuf, v = Values::f32;
    }
    float* wr = w + n * K;
    std::fill(wr, wr + K, 0.0f);
    for (int64_t t = 0; t < MB; ++t)
      for (int h = 0; h < 2; ++h) {
        const unsigned nib = meta[n * MB + t] >> (4 * h);
        const int64_t c0 = 8 * t + 4 * h + (nib & 3), c1 = 8 * t + 4 * h + ((nib >> 2) & 3);
        if (c0 < K) wr[c0] = value_at(v, V, 4 * t + 2 * h);
        if (c1 < K) wr[c1] = value_at(v, V, 4 * t + 2 * h + 1);
      }
  });
}

}  // namespace sparse
}  // namespace evoforge
