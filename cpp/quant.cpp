// Weight-only quantised matmul on the packed format of evoforge/quant.h.
//
// Batch 1 is memory bound: every packed byte is read once and unpacked in registers. Per group the
// codes are converted to float and multiplied into float32 vector accumulators against x; the
// scale and zero are factored out of the group sum, sum_k s (q - z) x = s (sum_k q x - z sum_k x),
// with the per-group sums of x computed once per call. For batch > 1 a tile of up to 8 rows of x
// shares each unpacked block, so the unpack cost is amortised over the tile.
//
// One kernel body, written with GCC/Clang vector extensions, is compiled three times: for AVX-512F
// (16 floats per vector), AVX2 + FMA (8) and the portable baseline (8 floats on SSE2 or whatever the
// target has); the best one this CPU supports is picked at run time.
#include "evoforge/quant.h"

#include <algorithm>
#include <cstring>

#include "evoforge/common.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the packed format is read as little-endian words");

#define EVOFORGE_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EVOFORGE_QUANT_X86 1
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

template <int W>
struct Vec {
  typedef float F __attribute__((vector_size(W * 4)));
  typedef int32_t I __attribute__((vector_size(W * 4)));
  typedef uint8_t U8 __attribute__((vector_size(W)));
};

// Codes h..h+W-1 of a block into lo and codes 16+h..16+h+W-1 into hi (h = 0, or 0 and 8 for W = 8).
template <int BITS, int W>
EVOFORGE_INLINE void codes(const uint8_t* p, int h, typename Vec<W>::U8& lo, typename Vec<W>::U8& hi) {
  using U8 = typename Vec<W>::U8;
  if constexpr (BITS == 8) {
    std::memcpy(&lo, p + h, W);
    std::memcpy(&hi, p + 16 + h, W);
  } else if constexpr (BITS == 4) {
    U8 r;
    std::memcpy(&r, p + h, W);
    lo = r & 15;
    hi = r >> 4;
  } else {
    // Byte j holds codes j, j+8, j+16, j+24 in bit pairs: four 64-bit words of eight codes each.
    uint64_t v;
    std::memcpy(&v, p, 8);
    constexpr uint64_t m = 0x0303030303030303ull;
    uint64_t q[4] = {v & m, (v >> 2) & m, (v >> 4) & m, (v >> 6) & m};
    if constexpr (BITS == 3) {
      uint32_t hb;
      std::memcpy(&hb, p + 8, 4);
      q[0] |= kSpread.v[hb & 255];
      q[1] |= kSpread.v[(hb >> 8) & 255];
      q[2] |= kSpread.v[(hb >> 16) & 255];
      q[3] |= kSpread.v[hb >> 24];
    }
    if constexpr (W == 16) {
      std::memcpy(&lo, q, 16);
      std::memcpy(&hi, q + 2, 16);
    } else {
      std::memcpy(&lo, q + h / 8, 8);
      std::memcpy(&hi, q + 2 + h / 8, 8);
    }
  }
}

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

// Outputs y[b0 .. b0+NB-1, n]: one pass over row n's packed bytes for NB rows of x.
template <int BITS, int W, int NB>
EVOFORGE_INLINE void tile(const Args& a, int64_t n, int64_t b0) {
  using F = typename Vec<W>::F;
  using I = typename Vec<W>::I;
  using U8 = typename Vec<W>::U8;
  constexpr int bpb = 4 * BITS;
  const uint8_t* row = a.packed + n * a.rb;
  const float* x[NB];
  for (int i = 0; i < NB; ++i) x[i] = a.xp + (b0 + i) * a.Kp;
  F tot[NB];
  float corr[NB];
  for (int i = 0; i < NB; ++i) {
    tot[i] = F{};
    corr[i] = 0.f;
  }
  for (int64_t g = 0; g < a.G; ++g) {
    const float s = half_to_float(a.scales[n * a.G + g]);
    const float z = a.zeros ? half_to_float(a.zeros[n * a.G + g]) : static_cast<float>(1 << (BITS - 1));
    F acc0[NB], acc1[NB];
    for (int i = 0; i < NB; ++i) acc0[i] = acc1[i] = F{};
    const int64_t t1 = std::min(a.nblocks, (g + 1) * a.gb);
    for (int64_t t = g * a.gb; t < t1; ++t) {
      const uint8_t* p = row + t * bpb;
      for (int h = 0; h < 16; h += W) {
        U8 lo, hi;
        codes<BITS, W>(p, h, lo, hi);
        const F f0 = __builtin_convertvector(__builtin_convertvector(lo, I), F);
        const F f1 = __builtin_convertvector(__builtin_convertvector(hi, I), F);
        for (int i = 0; i < NB; ++i) {
          F x0, x1;
          std::memcpy(&x0, x[i] + 32 * t + h, sizeof(F));
          std::memcpy(&x1, x[i] + 32 * t + 16 + h, sizeof(F));
          acc0[i] += f0 * x0;
          acc1[i] += f1 * x1;
        }
      }
    }
    for (int i = 0; i < NB; ++i) {
      tot[i] += s * (acc0[i] + acc1[i]);
      corr[i] += s * z * a.xs[(b0 + i) * a.G + g];
    }
  }
  const float b = a.bias ? a.bias[n] : 0.f;
  for (int i = 0; i < NB; ++i) {
    float sum = 0.f;
    for (int l = 0; l < W; ++l) sum += tot[i][l];
    a.y[(b0 + i) * a.N + n] = (sum - corr[i]) + b;
  }
}

// Rows [n0, n1) for all B rows of x, in tiles of NBMAX, then 4, 2, 1.
template <int BITS, int W, int NBMAX>
EVOFORGE_INLINE void rows(const Args& a, int64_t n0, int64_t n1, int64_t B) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t b = 0;
    for (; b + NBMAX <= B; b += NBMAX) tile<BITS, W, NBMAX>(a, n, b);
    if constexpr (NBMAX > 4) {
      if (B - b >= 4) {
        tile<BITS, W, 4>(a, n, b);
        b += 4;
      }
    }
    if (B - b >= 2) {
      tile<BITS, W, 2>(a, n, b);
      b += 2;
    }
    if (B - b >= 1) tile<BITS, W, 1>(a, n, b);
  }
}

template <int W, int NBMAX>
EVOFORGE_INLINE void rows_any(int bits, const Args& a, int64_t n0, int64_t n1, int64_t B) {
  switch (bits) {
    case 2: rows<2, W, NBMAX>(a, n0, n1, B); break;
    case 3: rows<3, W, NBMAX>(a, n0, n1, B); break;
    case 4: rows<4, W, NBMAX>(a, n0, n1, B); break;
    default: rows<8, W, NBMAX>(a, n0, n1, B); break;
  }
}

void rows_scalar(int bits, const Args& a, int64_t n0, int64_t n1, int64_t B) { rows_any<8, 4>(bits, a, n0, n1, B); }

#ifdef EVOFORGE_QUANT_X86
__attribute__((target("avx2,fma"))) void rows_avx2(int bits, const Args& a, int64_t n0, int64_t n1, int64_t B) {
  rows_any<8, 4>(bits, a, n0, n1, B);
}
__attribute__((target("avx512f,fma"))) void rows_avx512(int bits, const Args& a, int64_t n0, int64_t n1,
                                                         int64_t B) {
  rows_any<16, 8>(bits, a, n0, n1, B);
}

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return Isa::Avx512;
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
  // Workers get at least ~2^18 multiply-adds each, so that small layers are not split into
  // chunks cheaper than starting a thread.
  const int64_t min_rows = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, Kp * B));
  parallel_for(N, resolve_threads(threads), min_rows, [&](int64_t n0, int64_t n1, int) {
#ifdef EVOFORGE_QUANT_X86
    if (isa == Isa::Avx512) return rows_avx512(bits, a, n0, n1, B);
    if (isa == Isa::Avx2) return rows_avx2(bits, a, n0, n1, B);
#endif
    rows_scalar(bits, a, n0, n1, B);
  });
}

}  // namespace quant
}  // namespace evoforge
