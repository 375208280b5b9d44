// Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011) and the exact conversions evoforge draws its numbers with. Header-only, usable from
// host code and, compiled by nvcc, from device code: the CPU and GPU give the same bits.
//
// Key and counter layout (every kernel of evoforge uses it; see docs of each kernel for `block`):
//   key     = (seed & 0xffffffff, seed >> 32)                       -- the 64-bit user seed
//   counter = (c0 = block, c1 = individual, c2 = generation, c3 = (stream << 24) | sub)
// `block` indexes 4-word blocks within one (individual, stream, sub) sequence (for per-gene draws
// it is derived from the gene index), `individual` is the row index plus the caller's
// individual_offset, `stream` names the operator (Stream below) and `sub` (24 bits) a sub-stream
// (e.g. the offspring index within a family). Deep GA noise uses key = the genome's seed and
// counter = (block & 0xffffffff, block >> 32, 0, kDeepGA << 24), block = parameter index / 4.
//
// Reproducibility of the floating-point conversions: every operation below is an IEEE single or
// double addition, multiplication, division or square root, each rounded to nearest (explicit
// __fadd_rn & co. on the device; on the host the sources are compiled with -ffp-contract=off),
// and log / sin / cos are evaluated by the explicit polynomials below instead of libm, so the
// results are bit-identical on any x86/ARM CPU and any CUDA GPU. The polynomials are accurate to
// a few ulp (|error| < 4e-7 relative for log, < 2e-7 absolute for sin and cos).
#pragma once

#include "evoforge/macros.h"

#include <cstdint>
#include <cstring>


namespace evoforge {
namespace philox {

/// Operator streams (the top 8 bits of counter word c3).
enum Stream : uint32_t {
  kRaw = 0,
  kLevelSwitch = 1,
  kPointMutation = 2,
  kGaussian = 3,
  kGaussianMask = 4,
  kPolynomial = 5,
  kCrossover = 6,
  kSBX = 7,
  kTournament = 8,
  kDeepGA = 9,
};

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments

struct U32x4 {
  uint32_t v[4];
};

EVOFORGE_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

/// The Philox4x32 bijection with 10 rounds: 4 words of counter, 2 words of key.
EVOFORGE_HD U32x4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c0, hi0, lo0);
    mulhilo(kM1, c2, hi1, lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return U32x4{{c0, c1, c2, c3}};
}

EVOFORGE_HD uint32_t key_lo(uint64_t seed) { return static_cast<uint32_t>(seed); }
EVOFORGE_HD uint32_t key_hi(uint64_t seed) { return static_cast<uint32_t>(seed >> 32); }
EVOFORGE_HD uint32_t c3_of(uint32_t stream, uint32_t sub) { return (stream << 24) | (sub & 0xFFFFFFu); }

/// One block of the evoforge layout: (seed; block, individual, generation, stream, sub).
EVOFORGE_HD U32x4 block(uint64_t seed, uint32_t blk, uint32_t individual, uint32_t generation,
                        uint32_t stream, uint32_t sub) {
  return philox4x32_10(blk, individual, generation, c3_of(stream, sub), key_lo(seed), key_hi(seed));
}

// ---- exact conversions -----------------------------------------------------------------------

/// [0, 1) from the top 24 bits: k * 2^-24, exact in float32.
EVOFORGE_HD float u01_f32(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }
/// (0, 1] from the top 24 bits: (k + 1) * 2^-24, exact in float32.
EVOFORGE_HD float u01_open_f32(uint32_t w) {
  return static_cast<float>((w >> 8) + 1u) * (1.0f / 16777216.0f);
}
/// [0, 1) with 53 bits: ((hi >> 5) * 2^26 + (lo >> 6)) * 2^-53, exact in float64.
EVOFORGE_HD double u01_f64(uint32_t hi, uint32_t lo) {
  uint64_t k = (static_cast<uint64_t>(hi >> 5) << 26) | static_cast<uint64_t>(lo >> 6);
  return static_cast<double>(k) * (1.0 / 9007199254740992.0);
}
/// Integer in [0, n) from 64 random bits x: floor(x * n / 2^64) (bias below n / 2^64).
/// (Stream32::below32 does the same on one word, for small n.)
EVOFORGE_HD uint64_t below64(uint64_t x, uint64_t n) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(x, n);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(x) * n) >> 64);
#endif
}
EVOFORGE_HD uint64_t join64(uint32_t hi, uint32_t lo) {
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
/// True with probability threshold / 2^24 (threshold = prob * 2^24 as a double, see prob_threshold).
EVOFORGE_HD bool bernoulli24(uint32_t w, double threshold) {
  return static_cast<double>(w >> 8) < threshold;
}
inline double prob_threshold(double p) { return p * 16777216.0; }

// ---- explicitly rounded float32 arithmetic ---------------------------------------------------

EVOFORGE_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
EVOFORGE_HD float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
EVOFORGE_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
EVOFORGE_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
EVOFORGE_HD float fsqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return __builtin_sqrtf(a);
#endif
}
EVOFORGE_HD double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
EVOFORGE_HD double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

EVOFORGE_HD uint32_t f2u(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}
EVOFORGE_HD float u2f(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}

/// Natural log of x in (0, 1] (normal floats), float32. x = m * 2^e with m in [sqrt(1/2), sqrt(2));
/// log m = 2 atanh(s) = 2 (s + s^3/3 + ... + s^9/9) with s = (m - 1) / (m + 1), |s| < 0.1716;
/// e * ln2 is added in two parts (Cody and Waite): ln2 = 0x1.62e4p-1 + 0x1.7f7d1cp-20.
EVOFORGE_HD float log_f32(float x) {
  uint32_t b = f2u(x);
  int32_t e = static_cast<int32_t>((b >> 23) & 0xFFu) - 127;
  uint32_t mb = (b & 0x7FFFFFu) | 0x3F800000u;
  if (mb > 0x3FB504F3u) {  // m > sqrt(2): halve it (exact)
    mb -= 0x00800000u;
    e += 1;
  }
  float m = u2f(mb);
  float s = fdiv(fsub(m, 1.0f), fadd(m, 1.0f));
  float s2 = fmul(s, s);
  float p = 0.111111111f;                // 1/9
  p = fadd(fmul(p, s2), 0.142857143f);   // 1/7
  p = fadd(fmul(p, s2), 0.2f);           // 1/5
  p = fadd(fmul(p, s2), 0.333333333f);   // 1/3
  p = fmul(p, s2);
  float logm = fmul(2.0f, fadd(s, fmul(s, p)));
  float fe = static_cast<float>(e);
  return fadd(fmul(fe, 0.693145751953125f), fadd(fmul(fe, 1.42860682e-06f), logm));
}

struct F32x2 {
  float a, b;
};

/// (sin, cos) of 2 pi k / 2^24 for an integer k in [0, 2^24), float32. The octant is taken from
/// the top 3 bits exactly; within the octant the angle x in [0, pi/4] is reduced with one rounded
/// multiplication and sin, cos are Taylor polynomials to x^9 and x^10.
EVOFORGE_HD F32x2 sincos_2pi_k24(uint32_t k) {
  uint32_t o = k >> 21, t = k & 0x1FFFFFu;
  uint32_t tt = (o & 1u) ? (0x200000u - t) : t;
  float x = fmul(static_cast<float>(tt), 3.74507039e-07f);  // pi/4 / 2^21
  float x2 = fmul(x, x);
  float ps = -2.50521084e-08f;                 // -1/11!; sin x = x + x^3 (-1/3! + x^2 (1/5! + ...))
  ps = fadd(fmul(ps, x2), 2.75573192e-06f);    // 1/9!
  ps = fadd(fmul(ps, x2), -1.98412698e-04f);   // -1/7!
  ps = fadd(fmul(ps, x2), 8.33333333e-03f);    // 1/5!
  ps = fadd(fmul(ps, x2), -1.66666667e-01f);   // -1/3!
  float s = fadd(x, fmul(fmul(x, x2), ps));
  float pc = -2.75573192e-07f;                 // -1/10!
  pc = fadd(fmul(pc, x2), 2.48015873e-05f);    // 1/8!
  pc = fadd(fmul(pc, x2), -1.38888889e-03f);   // -1/6!
  pc = fadd(fmul(pc, x2), 4.16666667e-02f);    // 1/4!
  pc = fadd(fmul(pc, x2), -0.5f);
  float c = fadd(1.0f, fmul(x2, pc));
  float sa = (o & 1u) ? c : s, ca = (o & 1u) ? s : c;  // within the quadrant
  uint32_t q = o >> 1;
  float sn = (q == 0) ? sa : (q == 1) ? ca : (q == 2) ? -sa : -ca;
  float cs = (q == 0) ? ca : (q == 1) ? -sa : (q == 2) ? -ca : sa;
  return F32x2{sn, cs};
}

/// Two standard normals from two words by Box-Muller: r = sqrt(2 (0 - log u1)) with u1 = (k1 + 1) 2^-24
/// in (0, 1] (from w1), theta = 2 pi k2 / 2^24 (from w2); returns (r cos theta, r sin theta).
EVOFORGE_HD F32x2 box_muller(uint32_t w1, uint32_t w2) {
  float r = fsqrt(fmul(2.0f, fsub(0.0f, log_f32(u01_open_f32(w1)))));  // +0 at u1 = 1
  F32x2 sc = sincos_2pi_k24(w2 >> 8);
  return F32x2{fmul(r, sc.b), fmul(r, sc.a)};
}

/// A sequential stream of 32-bit words over consecutive blocks, starting at block `blk`.
struct Stream32 {
  uint32_t k0, k1, c0, c1, c2, c3;
  U32x4 buf;
  int pos;
  EVOFORGE_HD Stream32(uint64_t seed, uint32_t blk, uint32_t individual, uint32_t generation,
                       uint32_t stream, uint32_t sub)
      : k0(key_lo(seed)), k1(key_hi(seed)), c0(blk), c1(individual), c2(generation),
        c3(c3_of(stream, sub)), buf{{0, 0, 0, 0}}, pos(4) {}
  EVOFORGE_HD uint32_t next() {
    if (pos == 4) {
      buf = philox4x32_10(c0, c1, c2, c3, k0, k1);
      ++c0;
      pos = 0;
    }
    return buf.v[pos++];
  }
  EVOFORGE_HD uint64_t next64() {
    uint32_t hi = next();
    return join64(hi, next());
  }
  /// Integer in [0, n), n >= 1, from 64 bits (bias below n / 2^64).
  EVOFORGE_HD uint64_t below(uint64_t n) { return below64(next64(), n); }
  /// Integer in [0, n), 1 <= n < 2^32, from one word: floor(w n / 2^32) (bias below n / 2^32).
  EVOFORGE_HD uint32_t below32(uint32_t n) {
    return static_cast<uint32_t>((static_cast<uint64_t>(next()) * n) >> 32);
  }
};

}  // namespace philox
}  // namespace evoforge
