// Functional hashing: a fast, non-cryptographic 128-bit hash of quantised arrays.
//
// This header is the single definition of the algorithm. Everything marked EVOFORGE_HD is
// compiled both by the C++ compiler (cpp/hashing.cpp) and by nvcc (cuda/hashing.cu), so that the
// CPU and the GPU compute bit-identical digests. It is torch- and pybind-free.
//
// ## The canonical stream
// An array of N elements is read in C order (any strides), each element converted to a canonical
// lane (see canon_* below: quantisation, -0.0 -> 0.0, one NaN), and the lanes packed into 64-bit
// little-endian words: two 32-bit lanes per word for the float32 class (float16, bfloat16 and
// float32 are widened to float32 first), one 64-bit lane per word otherwise (float64, integers and
// bools as int64, grid-quantised floats). A trailing half word is zero. n = number of words.
//
// ## The hash (construction and why)
// The words are split into FIXED chunks of kChunkWords = 8192 words (64 KiB), hashed independently,
// so the digest never depends on the thread count or the device:
//
//  * Chunk c, word i (0 <= i < 8192) sits in lane j = i % 8, stripe s = i / 8, block b = s / 16.
//    Its key is k = K[c][j] + s * D[j] (K: 8 chunk keys derived from (seed, c) by splitmix64;
//    D: 8 odd lane steps), so every position in the chunk has its own key and moving a word
//    changes the digest. Its term is the multiply-accumulate of XXH3/UMAC's NH family:
//        v = w ^ k;   term = lo32(v) * hi32(v) + w          (one 32x32->64 multiply)
//    "+ w" keeps the word when lo32(v) or hi32(v) is zero. One 256-bit AVX2 register holds four
//    lanes, and the multiply is a single vpmuludq: eight lanes run in two registers.
//  * The terms of one block (16 stripes, 1 KiB) are summed per lane into B[b][j]; each block sum
//    is then scrambled by a keyed bijection g(x) = xs29(odd32 * xs32(x ^ (S[c][j] + b*E[j])))
//    and added to the lane accumulator A[j]. The scramble makes the chunk non-linear across
//    blocks (the sum of products alone would let structured differences cancel across blocks);
//    being a sum of independent block terms, it needs no sequential dependency, so the GPU
//    hashes every block of a chunk in parallel and reduces with exact integer sums.
//  * The chunk digest (lo, hi) absorbs A[0..7] and the chunk's word count into a 128-bit state
//    keyed by (seed, c), mixing with murmur3's fmix64 finaliser (a bijection with full avalanche)
//    in a two-lane Feistel-like permutation (perm128).
//  * Chunk digests are added (mod 2^64 per half). As each one is keyed by its index (as in the
//    XOR-MAC / PMAC constructions), the sum still depends on the chunk order, and being exact
//    integer addition it can be reduced in any order (threads, atomics on the GPU).
//  * The final digest absorbs the chunk sum, n, and the caller's header words (kind, dtype,
//    quantisation, shape: see python/evoforge/hashing/) into a seeded state and permutes it
//    twice, so that any change anywhere flips about half of the 128 output bits.
// Not cryptographic: fine for caching and deduplication, not against inputs crafted to collide.
#pragma once

#include "evoforge/macros.h"

#include <cstddef>
#include <cstdint>
#include <cstring>


namespace evoforge {
namespace hashing {

constexpr int64_t kChunkWords = 8192;  // 64 KiB of canonical stream per chunk
constexpr int kLanes = 8;              // words per stripe
constexpr int kStripesPerBlock = 16;   // stripes per scrambled block
constexpr int64_t kBlockWords = kLanes * kStripesPerBlock;            // 128 words = 1 KiB
constexpr int64_t kBlocksPerChunk = kChunkWords / kBlockWords;        // 64

struct Digest {
  uint64_t lo, hi;
};

// ---- mixing primitives --------------------------------------------------------------------

EVOFORGE_HD uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// murmur3's 64-bit finaliser: a bijection where each input bit flips each output bit with
// probability close to 1/2.
EVOFORGE_HD uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// splitmix64 (Steele, Lea, Flood 2014): used to derive keys from (seed, chunk, lane).
EVOFORGE_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A bijection of the 128-bit state (a, b): each step is invertible given the other half.
EVOFORGE_HD void perm128(uint64_t& a, uint64_t& b) {
  a = fmix64(a + b);
  b = fmix64(b ^ rotl64(a, 23)) + 0x2545f4914f6cdd1dULL;
  a ^= rotl64(b, 41);
}

// Absorbs one word: distinct words give distinct states (a ^ w and b + w * odd are injective).
EVOFORGE_HD void absorb(uint64_t& a, uint64_t& b, uint64_t w) {
  a ^= w;
  b += w * 0x9fb21c651e98df25ULL;
  perm128(a, b);
}

// ---- keys -----------------------------------------------------------------------------------

// Odd per-lane stripe steps D[j] and block steps E[j].
EVOFORGE_HD uint64_t lane_step(int j) { return splitmix64(0x6a09e667f3bcc908ULL + uint64_t(j)) | 1u; }
EVOFORGE_HD uint64_t block_step(int j) { return splitmix64(0xbb67ae8584caa73bULL + uint64_t(j)) | 1u; }

EVOFORGE_HD uint64_t chunk_base(uint64_t seed, uint64_t c) {
  return fmix64(seed ^ splitmix64(c ^ 0x3c6ef372fe94f82bULL));
}
// Data key K[c][j] and scramble key S[c][j].
EVOFORGE_HD uint64_t data_key(uint64_t base, int j) {
  return splitmix64(base + 0x9e3779b97f4a7c15ULL * uint64_t(2 * j + 1));
}
EVOFORGE_HD uint64_t scramble_key(uint64_t base, int j) {
  return splitmix64(base ^ (0xa54ff53a5f1d36f1ULL * uint64_t(2 * j + 2)));
}

constexpr uint64_t kScrambleMul = 0x9E3779B1ULL;  // odd 32-bit multiplier (golden ratio prime)

// ---- per-word term and per-block scramble -------------------------------------------------

EVOFORGE_HD uint64_t word_term(uint64_t w, uint64_t k) {
  uint64_t v = w ^ k;
  return (v & 0xffffffffULL) * (v >> 32) + w;
}

// g: keyed bijection of a block sum (xor key, xorshift, multiply by odd, xorshift).
EVOFORGE_HD uint64_t scramble(uint64_t x, uint64_t key) {
  x ^= key;
  x ^= x >> 32;
  x *= kScrambleMul;
  x ^= x >> 29;
  return x;
}

// Digest of one chunk from its 8 lane accumulators and word count.
EVOFORGE_HD Digest chunk_digest(const uint64_t acc[kLanes], uint64_t seed, uint64_t c,
                                uint64_t nwords) {
  uint64_t base = chunk_base(seed, c);
  uint64_t a = base ^ 0x510e527fade682d1ULL, b = rotl64(base, 32) ^ 0x9b05688c2b3e6c1fULL;
  for (int j = 0; j < kLanes; ++j) absorb(a, b, acc[j]);
  absorb(a, b, nwords);
  perm128(a, b);
  return {a, b};
}

// The final digest: sum of the chunk digests, the word count and the caller's header words.
EVOFORGE_HD Digest final_digest(Digest sum, uint64_t nwords, const uint64_t* header,
                                int64_t nheader, uint64_t seed) {
  uint64_t a = splitmix64(seed ^ 0x1f83d9abfb41bd6bULL), b = splitmix64(seed + 0x5be0cd19137e2179ULL);
  absorb(a, b, sum.lo);
  absorb(a, b, sum.hi);
  absorb(a, b, nwords);
  absorb(a, b, uint64_t(nheader));
  for (int64_t i = 0; i < nheader; ++i) absorb(a, b, header[i]);
  perm128(a, b);
  perm128(a, b);
  return {a, b};
}

// ---- canonical lanes ------------------------------------------------------------------------

// Quantisation of an IEEE value given by its bits: round the magnitude to `keep` explicit mantissa
// bits, ties away from zero (add half of the dropped unit, then clear the dropped bits; a carry
// moves to the next binade, or to inf from the top of the range; subnormals round on the same
// absolute grid). inf stays inf; -0.0 becomes 0.0; every NaN becomes the all-ones pattern (a NaN
// that no other input produces; one OR on the CPU).
// half = drop ? 1 << (drop - 1) : 0, mask = ~((1 << drop) - 1), drop = 23 (52) - keep.
EVOFORGE_HD uint32_t canon_f32(uint32_t u, uint32_t half, uint32_t mask) {
  uint32_t a = u & 0x7fffffffu;
  uint32_t r = (a + half) & mask;  // inf + half & mask == inf (half lies in the dropped bits)
  uint32_t s = r ? (u & 0x80000000u) : 0u;
  return a > 0x7f800000u ? 0xffffffffu : (r | s);
}

EVOFORGE_HD uint64_t canon_f64(uint64_t u, uint64_t half, uint64_t mask) {
  uint64_t a = u & 0x7fffffffffffffffULL;
  uint64_t r = (a + half) & mask;
  uint64_t s = r ? (u & 0x8000000000000000ULL) : 0u;
  return a > 0x7ff0000000000000ULL ? ~uint64_t(0) : (r | s);
}

struct QuantF32 {
  uint32_t half, mask;
};
struct QuantF64 {
  uint64_t half, mask;
};
EVOFORGE_HD QuantF32 quant_f32(int keep) {
  int drop = 23 - keep;
  return {drop ? (1u << (drop - 1)) : 0u, ~((1u << drop) - 1u)};
}
EVOFORGE_HD QuantF64 quant_f64(int keep) {
  int drop = 52 - keep;
  return {drop ? (uint64_t(1) << (drop - 1)) : 0u, ~((uint64_t(1) << drop) - 1u)};
}

// float16 bits -> float32 bits, exactly (subnormals normalised, NaN payload kept in the top bits).
EVOFORGE_HD uint32_t f16_to_f32_bits(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return sign | 0x7f800000u | (man << 13);
  if (exp == 0) {
    if (man == 0) return sign;
    // value = man * 2^-24; normalise: shift the leading one into bit 10.
    int e = -1;
    do {
      man <<= 1;
      ++e;
    } while ((man & 0x400u) == 0);
    return sign | (uint32_t(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  return sign | ((exp + 112u) << 23) | (man << 13);
}
EVOFORGE_HD uint32_t bf16_to_f32_bits(uint16_t h) { return uint32_t(h) << 16; }

// Grid quantisation: q = the integer nearest to x / g (ties to even, computed in float64; the
// caller rounds with nearbyint on the host, rint on the device), held as a float64 (exact for
// every integer it can represent; +-inf and NaN stay representable). Returns its canonical bits.
EVOFORGE_HD uint64_t canon_grid_bits(double q) {
#if defined(__CUDA_ARCH__)
  uint64_t u = static_cast<uint64_t>(__double_as_longlong(q));
#else
  uint64_t u;
  static_assert(sizeof(double) == sizeof(uint64_t), "double must be 64-bit");
  std::memcpy(&u, &q, 8);
#endif
  return canon_f64(u, 0, ~uint64_t(0));
}

// ---- CPU entry point (cpp/hashing.cpp) ------------------------------------------------------

/// Element types of the input.
enum class ElemType : int {
  kF16 = 0, kBF16, kF32, kF64, kI8, kI16, kI32, kI64, kU8, kU16, kU32, kU64, kBool
};
/// Quantisation modes of float elements (integers are always exact).
enum class QuantMode : int { kExact = 0, kMantissa = 1, kGrid = 2 };

constexpr int kMaxDims = 32;

/// A strided N-d view: element (i_0, ..., i_{d-1}) lies at base + sum_k i_k * stride_bytes[k].
struct ArrayView {
  const void* data = nullptr;
  ElemType type = ElemType::kF32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride_bytes[kMaxDims] = {};
};

struct Quant {
  QuantMode mode = QuantMode::kExact;
  int mantissa_bits = 0;  // kMantissa
  double grid = 1.0;      // kGrid
};

/// True when the canonical lanes of `type` under `q` are 32-bit (two per word).
inline bool lanes_are_32bit(ElemType type, const Quant& q) {
  return (type == ElemType::kF16 || type == ElemType::kBF16 || type == ElemType::kF32) &&
         q.mode != QuantMode::kGrid;
}

inline bool is_float(ElemType t) {
  return t == ElemType::kF16 || t == ElemType::kBF16 || t == ElemType::kF32 || t == ElemType::kF64;
}

/// Sum of the chunk digests of the canonical stream of `x`, and its word count.
/// force_scalar disables the AVX2 path (tests compare both).
Digest hash_stream_cpu(const ArrayView& x, const Quant& q, uint64_t seed, int num_threads,
                       uint64_t* nwords_out, bool force_scalar = false);

/// Sum of the chunk digests of raw bytes (zero-padded to whole words).
Digest hash_bytes_stream_cpu(const void* data, int64_t nbytes, uint64_t seed, int num_threads,
                             uint64_t* nwords_out);

/// True when this CPU runs the AVX2 path.
bool cpu_has_avx2();

}  // namespace hashing
}  // namespace evoforge
