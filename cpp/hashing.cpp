// Functional hashing on the CPU. The algorithm is defined in evoforge/hashing.h; this file only
// produces the canonical stream (quantise + pack, any strides) block by block and runs the
// multiply-accumulate, with an AVX2 path chosen at run time (cpuid) and a scalar path that
// computes the same bits. Threads split the fixed 64 KiB chunks, never the digest.
#include "evoforge/hashing.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EVOFORGE_X86 1
#endif

#include "evoforge/common.h"

#if defined(__GNUC__)
#define EVOFORGE_INLINE inline __attribute__((always_inline))
#else
#define EVOFORGE_INLINE inline
#endif

namespace evoforge {
namespace hashing {
namespace {

// Keys of one chunk (see hashing.h): lane j, stripe s has data key k[j] + s * d[j]; block b is
// scrambled with s[j] + b * e[j].
struct alignas(64) ChunkKeys {
  uint64_t k[kLanes], d[kLanes], s[kLanes], e[kLanes];
};

EVOFORGE_INLINE void make_keys(uint64_t seed, uint64_t c, ChunkKeys& K) {
  uint64_t base = chunk_base(seed, c);
  for (int j = 0; j < kLanes; ++j) {
    K.k[j] = data_key(base, j);
    K.d[j] = lane_step(j);
    K.s[j] = scramble_key(base, j);
    K.e[j] = block_step(j);
  }
}

EVOFORGE_INLINE uint64_t load_word(const void* p, int64_t i) {
  uint64_t w;
  std::memcpy(&w, static_cast<const char*>(p) + 8 * i, 8);
  return w;
}

// One block (b-th of its chunk) of nw <= kBlockWords words, scalar: the reference.
EVOFORGE_INLINE void block_scalar(const void* p, int64_t nw, int64_t b, const ChunkKeys& K,
                                  uint64_t acc[kLanes]) {
  uint64_t B[kLanes] = {};
  const uint64_t s0 = uint64_t(b) * kStripesPerBlock;
  for (int64_t i = 0; i < nw; ++i) {
    const int j = int(i & (kLanes - 1));
    const uint64_t s = s0 + uint64_t(i / kLanes);
    B[j] += word_term(load_word(p, i), K.k[j] + s * K.d[j]);
  }
  for (int j = 0; j < kLanes; ++j) acc[j] += scramble(B[j], K.s[j] + uint64_t(b) * K.e[j]);
}

#if EVOFORGE_X86
// x * kScrambleMul mod 2^64 for a 32-bit multiplier: lo32(x)*m + (hi32(x)*m << 32).
__attribute__((target("avx2"), always_inline)) inline __m256i mul_by_u32(__m256i x, __m256i m) {
  __m256i lo = _mm256_mul_epu32(x, m);
  __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m);
  return _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
}

__attribute__((target("avx2"), always_inline)) inline __m256i scramble_v(__m256i x, __m256i key) {
  const __m256i m = _mm256_set1_epi64x(int64_t(kScrambleMul));
  x = _mm256_xor_si256(x, key);
  x = _mm256_xor_si256(x, _mm256_srli_epi64(x, 32));
  x = mul_by_u32(x, m);
  return _mm256_xor_si256(x, _mm256_srli_epi64(x, 29));
}

// Vector loaders: 32 bytes of source -> four canonical words.
struct VecWords {  // already canonical
  __attribute__((target("avx2"), always_inline)) __m256i operator()(const char* p) const {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
};
struct VecF32 {  // eight float32 -> canon_f32 lanes (see hashing.h)
  QuantF32 q;
  __attribute__((target("avx2"), always_inline)) __m256i operator()(const char* p) const {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i a = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    __m256i r = _mm256_and_si256(_mm256_add_epi32(a, _mm256_set1_epi32(int32_t(q.half))),
                                 _mm256_set1_epi32(int32_t(q.mask)));
    const __m256i zero = _mm256_cmpeq_epi32(r, _mm256_setzero_si256());
    const __m256i sign = _mm256_andnot_si256(zero, _mm256_and_si256(x, _mm256_set1_epi32(int32_t(0x80000000u))));
    const __m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));
    return _mm256_or_si256(_mm256_or_si256(r, sign), nan);
  }
};
struct VecF64 {  // four float64 -> canon_f64 lanes
  QuantF64 q;
  __attribute__((target("avx2"), always_inline)) __m256i operator()(const char* p) const {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i a = _mm256_and_si256(x, _mm256_set1_epi64x(0x7fffffffffffffffLL));
    __m256i r = _mm256_and_si256(_mm256_add_epi64(a, _mm256_set1_epi64x(int64_t(q.half))),
                                 _mm256_set1_epi64x(int64_t(q.mask)));
    const __m256i zero = _mm256_cmpeq_epi64(r, _mm256_setzero_si256());
    const __m256i sign = _mm256_andnot_si256(
        zero, _mm256_and_si256(x, _mm256_set1_epi64x(int64_t(0x8000000000000000ULL))));
    const __m256i nan = _mm256_cmpgt_epi64(a, _mm256_set1_epi64x(0x7ff0000000000000LL));
    return _mm256_or_si256(_mm256_or_si256(r, sign), nan);
  }
};

constexpr int kPrefetchBytes = 2048;

// One full block (kBlockWords words = 1 KiB of canonical stream) read from p through the loader V,
// with two 4-lane registers; bit-identical to block_scalar.
template <typename V>
__attribute__((target("avx2"))) inline void block_avx2(const void* p, int64_t b, const ChunkKeys& K,
                                                       uint64_t acc[kLanes], const V& load) {
  const char* q = static_cast<const char*>(p);
  const __m256i d0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(K.d));
  const __m256i d1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(K.d + 4));
  const __m256i s0 = _mm256_set1_epi64x(int64_t(uint64_t(b) * kStripesPerBlock));
  // k + s0 * d (s0 < 2^32: mul_by_u32 computes d * s0 mod 2^64).
  __m256i k0 = _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(K.k)), mul_by_u32(d0, s0));
  __m256i k1 = _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(K.k + 4)), mul_by_u32(d1, s0));
  __m256i B0 = _mm256_setzero_si256(), B1 = _mm256_setzero_si256();
  // Source bytes per stripe: 64 for words, float64 and float32 (16 floats = 8 words).
#pragma GCC unroll 16
  for (int s = 0; s < kStripesPerBlock; ++s) {
    _mm_prefetch(q + 64 * s + kPrefetchBytes, _MM_HINT_T0);
    __m256i w0 = load(q + 64 * s);
    __m256i w1 = load(q + 64 * s + 32);
    __m256i v0 = _mm256_xor_si256(w0, k0), v1 = _mm256_xor_si256(w1, k1);
    B0 = _mm256_add_epi64(B0, _mm256_add_epi64(_mm256_mul_epu32(v0, _mm256_srli_epi64(v0, 32)), w0));
    B1 = _mm256_add_epi64(B1, _mm256_add_epi64(_mm256_mul_epu32(v1, _mm256_srli_epi64(v1, 32)), w1));
    k0 = _mm256_add_epi64(k0, d0);
    k1 = _mm256_add_epi64(k1, d1);
  }
  const __m256i bb = _mm256_set1_epi64x(int64_t(b));
  const __m256i sk0 = _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(K.s)),
                                       mul_by_u32(_mm256_load_si256(reinterpret_cast<const __m256i*>(K.e)), bb));
  const __m256i sk1 = _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(K.s + 4)),
                                       mul_by_u32(_mm256_load_si256(reinterpret_cast<const __m256i*>(K.e + 4)), bb));
  __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc));
  __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + 4));
  a0 = _mm256_add_epi64(a0, scramble_v(B0, sk0));
  a1 = _mm256_add_epi64(a1, scramble_v(B1, sk1));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc), a0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + 4), a1);
}
#endif

// ---- canonical lanes per element type -----------------------------------------------------

template <typename T>
EVOFORGE_INLINE T load_as(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Converters: storage bytes -> canonical lane. Lane32 for the float32 class, Lane64 otherwise.
struct ConvF32 {
  QuantF32 q;
  using Lane = uint32_t;
  using Storage = uint32_t;
  EVOFORGE_INLINE uint32_t operator()(const char* p) const { return canon_f32(load_as<uint32_t>(p), q.half, q.mask); }
#if EVOFORGE_X86
  static constexpr bool kVec = true;
  VecF32 vec() const { return {q}; }
#endif
};
struct ConvF16 {
  QuantF32 q;
  using Lane = uint32_t;
  using Storage = uint16_t;
  EVOFORGE_INLINE uint32_t operator()(const char* p) const {
    return canon_f32(f16_to_f32_bits(load_as<uint16_t>(p)), q.half, q.mask);
  }
};
struct ConvBF16 {
  QuantF32 q;
  using Lane = uint32_t;
  using Storage = uint16_t;
  EVOFORGE_INLINE uint32_t operator()(const char* p) const {
    return canon_f32(bf16_to_f32_bits(load_as<uint16_t>(p)), q.half, q.mask);
  }
};
struct ConvF64 {
  QuantF64 q;
  using Lane = uint64_t;
  using Storage = uint64_t;
  EVOFORGE_INLINE uint64_t operator()(const char* p) const { return canon_f64(load_as<uint64_t>(p), q.half, q.mask); }
#if EVOFORGE_X86
  static constexpr bool kVec = true;
  VecF64 vec() const { return {q}; }
#endif
};
template <typename T>
struct ConvInt {
  using Lane = uint64_t;
  using Storage = T;
  EVOFORGE_INLINE uint64_t operator()(const char* p) const { return uint64_t(int64_t(load_as<T>(p))); }
#if EVOFORGE_X86
  static constexpr bool kVec = sizeof(T) == 8;  // int64/uint64: the bits are the word
  VecWords vec() const { return {}; }
#endif
};
struct ConvBool {
  using Lane = uint64_t;
  using Storage = uint8_t;
  EVOFORGE_INLINE uint64_t operator()(const char* p) const { return load_as<uint8_t>(p) != 0; }
};
// Grid: value -> float64 -> nearbyint(x / g) (ties to even in the default rounding mode).
inline double f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return double(f);
}
template <typename ToF64>
struct ConvGrid {
  double g;
  ToF64 to_f64;
  using Lane = uint64_t;
  using Storage = typename ToF64::Storage;
  EVOFORGE_INLINE uint64_t operator()(const char* p) const { return canon_grid_bits(std::nearbyint(to_f64(p) / g)); }
};
struct F16ToF64 {
  using Storage = uint16_t;
  double operator()(const char* p) const { return f32_from_bits(f16_to_f32_bits(load_as<uint16_t>(p))); }
};
struct BF16ToF64 {
  using Storage = uint16_t;
  double operator()(const char* p) const { return f32_from_bits(bf16_to_f32_bits(load_as<uint16_t>(p))); }
};
struct F32ToF64 {
  using Storage = uint32_t;
  double operator()(const char* p) const { return f32_from_bits(load_as<uint32_t>(p)); }
};
struct F64ToF64 {
  using Storage = double;
  double operator()(const char* p) const { return load_as<double>(p); }
};

// ---- fillers: produce the canonical words [w0, w0 + nw) of the stream ------------------------

struct Geometry {
  const char* base;
  int ndim;
  int64_t n;  // elements
  const int64_t* shape;
  const int64_t* stride;  // bytes
  bool contiguous;
  int64_t itemsize;
};

template <typename Conv>
struct Filler {
  using ConvType = Conv;
  using Lane = typename Conv::Lane;
  static constexpr int64_t kPer = 8 / sizeof(Lane);  // lanes per word
  Conv conv;
  Geometry g;
  alignas(64) Lane buf[kBlockWords * kPer];
  // Odometer over the C-order index for strided views.
  int64_t idx[kMaxDims];
  int64_t offset = 0;
  int64_t next_elem = -1;

  Filler(const Conv& c, const Geometry& geo) : conv(c), g(geo) {}

  void seek(int64_t e) {
    int64_t rem = e;
    offset = 0;
    for (int k = g.ndim - 1; k >= 0; --k) {
      idx[k] = rem % g.shape[k];
      rem /= g.shape[k];
      offset += idx[k] * g.stride[k];
    }
    next_elem = e;
  }
  EVOFORGE_INLINE void step() {
    int k = g.ndim - 1;
    offset += g.stride[k];
    while (++idx[k] == g.shape[k] && k > 0) {
      offset -= g.shape[k] * g.stride[k];
      idx[k] = 0;
      --k;
      offset += g.stride[k];
    }
  }

  // The source of words [w0, w0 + kBlockWords) when the loader can read them in place.
  EVOFORGE_INLINE const char* direct(int64_t w0) const {
    const int64_t e1 = (w0 + kBlockWords) * kPer;
    return g.contiguous && e1 <= g.n ? g.base + w0 * kPer * int64_t(sizeof(typename Conv::Storage))
                                     : nullptr;
  }

  EVOFORGE_INLINE const void* operator()(int64_t w0, int64_t nw) {
    const int64_t e0 = w0 * kPer;
    const int64_t want = nw * kPer;
    const int64_t cnt = std::min(want, g.n - e0);
    if (g.contiguous) {
      constexpr int64_t sz = sizeof(typename Conv::Storage);
      const char* src = g.base + e0 * sz;
      for (int64_t i = 0; i < cnt; ++i) buf[i] = conv(src + i * sz);
    } else {
      if (next_elem != e0) seek(e0);
      for (int64_t i = 0; i < cnt; ++i) {
        buf[i] = conv(g.base + offset);
        step();
      }
      next_elem = e0 + cnt;
    }
    for (int64_t i = cnt; i < want; ++i) buf[i] = 0;
    return buf;
  }
};

// Raw bytes, zero-padded to whole words.
struct BytesFiller {
  struct ConvType {};
  const char* base;
  int64_t nbytes;
  alignas(64) uint64_t buf[kBlockWords];
  EVOFORGE_INLINE const void* operator()(int64_t w0, int64_t nw) {
    const int64_t b0 = w0 * 8;
    if (b0 + nw * 8 <= nbytes) return base + b0;  // zero-copy
    std::memset(buf, 0, sizeof(buf));
    std::memcpy(buf, base + b0, size_t(nbytes - b0));
    return buf;
  }
};

// ---- chunk loop -----------------------------------------------------------------------------

template <typename C, typename = void>
struct has_vec : std::false_type {};
template <typename C>
struct has_vec<C, std::void_t<decltype(C::kVec)>> : std::bool_constant<C::kVec> {};

template <bool kAvx2, typename Fill>
EVOFORGE_INLINE Digest chunks_body(Fill& fill, int64_t c0, int64_t c1, int64_t nwords,
                                   uint64_t seed) {
  Digest sum{0, 0};
  ChunkKeys K;
  for (int64_t c = c0; c < c1; ++c) {
    make_keys(seed, uint64_t(c), K);
    const int64_t w0 = c * kChunkWords;
    const int64_t nw_c = std::min(kChunkWords, nwords - w0);
    uint64_t acc[kLanes] = {};
    for (int64_t b = 0; b * kBlockWords < nw_c; ++b) {
      const int64_t nb = std::min(kBlockWords, nw_c - b * kBlockWords);
#if EVOFORGE_X86
      if constexpr (kAvx2 && has_vec<typename Fill::ConvType>::value) {
        if (nb == kBlockWords) {
          if (const char* src = fill.direct(w0 + b * kBlockWords)) {
            block_avx2(src, b, K, acc, fill.conv.vec());
            continue;
          }
        }
      }
#endif
      const void* p = fill(w0 + b * kBlockWords, nb);
#if EVOFORGE_X86
      if (kAvx2 && nb == kBlockWords) {
        block_avx2(p, b, K, acc, VecWords{});
        continue;
      }
#endif
      block_scalar(p, nb, b, K, acc);
    }
    Digest d = chunk_digest(acc, seed, uint64_t(c), uint64_t(nw_c));
    sum.lo += d.lo;
    sum.hi += d.hi;
  }
  return sum;
}

#if EVOFORGE_X86
template <typename Fill>
__attribute__((target("avx2"), noinline)) Digest chunks_avx2(Fill& fill, int64_t c0, int64_t c1,
                                                            int64_t nwords, uint64_t seed) {
  return chunks_body<true>(fill, c0, c1, nwords, seed);
}
#endif
template <typename Fill>
__attribute__((noinline)) Digest chunks_scalar(Fill& fill, int64_t c0, int64_t c1, int64_t nwords,
                                               uint64_t seed) {
  return chunks_body<false>(fill, c0, c1, nwords, seed);
}

bool detect_avx2() {
#if EVOFORGE_X86 && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}
const bool g_avx2 = detect_avx2();

// Runs make_fill() per worker over the chunks and adds the partial sums (exact, order-free).
template <typename MakeFill>
Digest run_chunks(MakeFill make_fill, int64_t nwords, uint64_t seed, int num_threads,
                  bool force_scalar) {
  const int64_t nchunks = (nwords + kChunkWords - 1) / kChunkWords;
  const int threads = resolve_threads(num_threads);
  std::vector<Digest> part(size_t(std::max(1, threads)), Digest{0, 0});
  const bool avx2 = g_avx2 && !force_scalar;
  // At least 16 chunks (1 MiB) per worker: below that, starting a thread costs more than it saves.
  parallel_for(nchunks, threads, 16, [&](int64_t c0, int64_t c1, int w) {
    auto fill = make_fill();
    Digest d;
#if EVOFORGE_X86
    if (avx2)
      d = chunks_avx2(*fill, c0, c1, nwords, seed);
    else
#endif
      d = chunks_scalar(*fill, c0, c1, nwords, seed);
    (void)avx2;
    part[size_t(w)] = d;
  });
  Digest sum{0, 0};
  for (const Digest& d : part) {
    sum.lo += d.lo;
    sum.hi += d.hi;
  }
  return sum;
}

template <typename Conv>
Digest run_conv(const Conv& conv, const Geometry& g, uint64_t seed, int num_threads,
                uint64_t* nwords_out, bool force_scalar) {
  using F = Filler<Conv>;
  const int64_t nwords = (g.n + F::kPer - 1) / F::kPer;
  *nwords_out = uint64_t(nwords);
  return run_chunks([&] { return std::make_unique<F>(conv, g); }, nwords, seed, num_threads,
                    force_scalar);
}

int64_t itemsize_of(ElemType t) {
  switch (t) {
    case ElemType::kI8: case ElemType::kU8: case ElemType::kBool: return 1;
    case ElemType::kF16: case ElemType::kBF16: case ElemType::kI16: case ElemType::kU16: return 2;
    case ElemType::kF32: case ElemType::kI32: case ElemType::kU32: return 4;
    default: return 8;
  }
}

}  // namespace

bool cpu_has_avx2() { return g_avx2; }

Digest hash_stream_cpu(const ArrayView& x, const Quant& q, uint64_t seed, int num_threads,
                       uint64_t* nwords_out, bool force_scalar) {
  EVOFORGE_CHECK(x.ndim >= 0 && x.ndim <= kMaxDims, "at most " << kMaxDims << " dimensions");
  Geometry g;
  g.base = static_cast<const char*>(x.data);
  g.ndim = x.ndim;
  g.shape = x.shape;
  g.stride = x.stride_bytes;
  g.itemsize = itemsize_of(x.type);
  g.n = 1;
  for (int k = 0; k < x.ndim; ++k) {
    EVOFORGE_CHECK(x.shape[k] >= 0, "negative extent");
    g.n *= x.shape[k];
  }
  // C-contiguous when every dimension of extent > 1 has the packed stride.
  g.contiguous = true;
  int64_t expect = g.itemsize;
  for (int k = x.ndim - 1; k >= 0; --k) {
    if (x.shape[k] != 1 && x.stride_bytes[k] != expect) g.contiguous = false;
    expect *= x.shape[k];
  }
  if (g.ndim == 0) g.contiguous = true;
  if (g.n == 0) {
    *nwords_out = 0;
    return {0, 0};
  }
  const bool fl = is_float(x.type);
  if (fl && q.mode == QuantMode::kMantissa) {
    const int maxb = x.type == ElemType::kF64 ? 52 : 23;
    EVOFORGE_CHECK(q.mantissa_bits >= 0 && q.mantissa_bits <= maxb,
                   "mantissa_bits must lie in [0, " << maxb << "], got " << q.mantissa_bits);
  }
  if (fl && q.mode == QuantMode::kGrid)
    EVOFORGE_CHECK(q.grid > 0 && std::isfinite(q.grid), "grid must be a positive finite number");
  const int keep32 = q.mode == QuantMode::kMantissa ? q.mantissa_bits : 23;
  const int keep64 = q.mode == QuantMode::kMantissa ? q.mantissa_bits : 52;
  const int ns = num_threads;
  auto* nw = nwords_out;
  const bool fs = force_scalar;
  if (fl && q.mode == QuantMode::kGrid) {
    switch (x.type) {
      case ElemType::kF16: return run_conv(ConvGrid<F16ToF64>{q.grid, {}}, g, seed, ns, nw, fs);
      case ElemType::kBF16: return run_conv(ConvGrid<BF16ToF64>{q.grid, {}}, g, seed, ns, nw, fs);
      case ElemType::kF32: return run_conv(ConvGrid<F32ToF64>{q.grid, {}}, g, seed, ns, nw, fs);
      default: return run_conv(ConvGrid<F64ToF64>{q.grid, {}}, g, seed, ns, nw, fs);
    }
  }
  switch (x.type) {
    case ElemType::kF16: return run_conv(ConvF16{quant_f32(keep32)}, g, seed, ns, nw, fs);
    case ElemType::kBF16: return run_conv(ConvBF16{quant_f32(keep32)}, g, seed, ns, nw, fs);
    case ElemType::kF32: return run_conv(ConvF32{quant_f32(keep32)}, g, seed, ns, nw, fs);
    case ElemType::kF64: return run_conv(ConvF64{quant_f64(keep64)}, g, seed, ns, nw, fs);
    case ElemType::kI8: return run_conv(ConvInt<int8_t>{}, g, seed, ns, nw, fs);
    case ElemType::kI16: return run_conv(ConvInt<int16_t>{}, g, seed, ns, nw, fs);
    case ElemType::kI32: return run_conv(ConvInt<int32_t>{}, g, seed, ns, nw, fs);
    case ElemType::kI64: return run_conv(ConvInt<int64_t>{}, g, seed, ns, nw, fs);
    case ElemType::kU8: return run_conv(ConvInt<uint8_t>{}, g, seed, ns, nw, fs);
    case ElemType::kU16: return run_conv(ConvInt<uint16_t>{}, g, seed, ns, nw, fs);
    case ElemType::kU32: return run_conv(ConvInt<uint32_t>{}, g, seed, ns, nw, fs);
    case ElemType::kU64: return run_conv(ConvInt<uint64_t>{}, g, seed, ns, nw, fs);
    case ElemType::kBool: return run_conv(ConvBool{}, g, seed, ns, nw, fs);
  }
  EVOFORGE_THROW(std::invalid_argument, "unknown element type");
}

Digest hash_bytes_stream_cpu(const void* data, int64_t nbytes, uint64_t seed, int num_threads,
                             uint64_t* nwords_out) {
  const int64_t nwords = (nbytes + 7) / 8;
  *nwords_out = uint64_t(nwords);
  const char* base = static_cast<const char*>(data);
  return run_chunks([&] { return std::make_unique<BytesFiller>(BytesFiller{base, nbytes, {}}); },
                    nwords, seed, num_threads, false);
}

}  // namespace hashing
}  // namespace evoforge
