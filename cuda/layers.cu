// Weight-only quantised (int2/3/4/8) and 2:4 + int4 linear layers on a CUDA device:
// y [B, N] = x [B, K] W^T with W in evoforge's packed format v1, x fp16 or bf16, fp32 sums.
//
// Batch 1..32 is memory bound, so the weights are read once, as they are stored, and expanded
// in registers straight into tensor-core fragments. The weights bypass L1
// (ld.global.nc.L1::no_allocate) so that x stays there: x is read with 128-bit loads through L1
// rather than staged in shared memory, because the warps of a block walk the same K range
// together (after the first warp, x comes from L1, and no __syncthreads is needed). The mma is "swapped": W is the A operand
// (16 output rows x 16 k) and x^T the B operand (16 k x 8 batch rows), so one mma.m16n8k16
// serves up to 8 batch rows and 1..4 of them cover B <= 32.
//
// Geometry. A block has kQuantWarps warps; a warp owns kQuantTilesPerWarp tiles of 16 rows. In
// one step a warp covers 128 codes of each of its rows: the four lanes of a quad (same
// groupID g = lane/4, t = lane%4) own the 32-code block 4*step + t of rows g and g + 8 of each
// tile, loaded with one vector load per row (16 bytes for int4) - 64 contiguous bytes per row
// and quad. K is cut into `splits` ranges (gridDim.y); with splits > 1 every block writes its
// partial sums to a workspace and reduce_splits adds them in split order, so the result does not
// depend on timing. The Python side picks the split so that all blocks are resident at once (one
// wave, from the occupancy of the kernel instantiation).
//
// Which k goes into which fragment slot. A dot product does not care about the order of k as
// long as A and B agree, so the A fragments take the codes in the order that is cheapest to
// unpack, and the x fragments are permuted to match. For k-step i = 2j + m (j < 4, m < 2) and
// half h (fragment registers a0a1/a2a3 for h = 0, a4a5/a6a7 for h = 1; b0b1, b2b3 alike) a lane
// holds the pair of codes
//     (c[16h + 4j + m], c[16h + 4j + m + 2])       of its block,
// which for int4 is one shift and one mask of word j ((w >> (8m + 4h)) & 0x000F000F), and the
// matching x pair is one byte permutation of x words 8h + 2j and 8h + 2j + 1. The mma sums the
// four lanes of a quad, i.e. four consecutive 32-code blocks, per k-step.
//
// Dequantisation, per code pair: a code c < 1024 ORed into the mantissa of half 1024.0 (0x6400)
// is the half 1024 + c exactly (bf16: 128.0 = 0x4300, c < 128), so one LOP3 makes two halves;
// subtracting 1024 + zero (symmetric: an integer, exact) and multiplying by the scale in
// half2 arithmetic gives the fp16 weight (two roundings at most). bf16 with explicit zeros, and
// bf16 int8, go through fp32 instead (exact q, one fma, one rounding to bf16).
//
// 2:4: the 16 kept 4-bit values of a 32-column block (half of a 32-code value block) are
// dequantised as pairs and spread into the dense fragment order above with one byte
// permutation per pair, whose selector comes from the meta nibble (a 16-entry table in
// shared memory); dropped positions get 0.
//
// The Python emulation _emulate_matmul in python/evoforge/layers/_cuda.py follows these steps
// (word extraction, magic numbers, roundings, fragment slots, split order) and is tested
// against a float64 dequantise-then-matmul where no GPU exists.
#include "evoforge/cuda/layers.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "evoforge/cuda/common.h"

namespace evoforge::cuda {
namespace {

constexpr int kThreads = kQuantWarps * 32;
constexpr int kMT = kQuantTilesPerWarp;
static_assert(kQuantCodesPerStep == 4 * 32, "a step is one 32-code block per lane of a quad");

// ------------------------------------------------------------------------------------------
// element types

struct F16 {
  using T2 = __half2;
  static constexpr uint32_t kMagic = 0x64006400u;  // (1024.0, 1024.0)
};
struct BF16 {
  using T2 = __nv_bfloat162;
  static constexpr uint32_t kMagic = 0x43004300u;  // (128.0, 128.0)
};

template <class V>
__device__ __forceinline__ uint32_t bits_of(V v) {
  static_assert(sizeof(V) == 4, "a pair of 16-bit values");
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}
template <class V>
__device__ __forceinline__ V from_bits(uint32_t u) {
  V v;
  memcpy(&v, &u, 4);
  return v;
}

__device__ __forceinline__ float half_bits_to_float(uint16_t b) { return __half2float(__ushort_as_half(b)); }

// Pair arithmetic on bit patterns, rounded to nearest (half2 / bfloat162 instructions).
template <class Act>
__device__ __forceinline__ uint32_t hsub2(uint32_t a, uint32_t b) {
  using V = typename Act::T2;
  return bits_of(__hsub2(from_bits<V>(a), from_bits<V>(b)));
}
template <class Act>
__device__ __forceinline__ uint32_t hmul2(uint32_t a, uint32_t b) {
  using V = typename Act::T2;
  return bits_of(__hmul2(from_bits<V>(a), from_bits<V>(b)));
}
__device__ __forceinline__ uint32_t pack2_bf16(float lo, float hi) { return bits_of(__floats2bfloat162_rn(lo, hi)); }
__device__ __forceinline__ uint16_t to_bits(float v, F16) { return __half_as_ushort(__float2half_rn(v)); }
__device__ __forceinline__ uint16_t to_bits(float v, BF16) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1, F16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  (void)c, (void)a0, (void)a1, (void)a2, (void)a3, (void)b0, (void)b1;
  __trap();  // no m16n8k16 before sm_80: the launcher refuses such devices
#else
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}
__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1, BF16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  (void)c, (void)a0, (void)a1, (void)a2, (void)a3, (void)b0, (void)b1;
  __trap();  // no m16n8k16 before sm_80: the launcher refuses such devices
#else
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

// Weights are read once: bypass L1 so that it keeps x.
__device__ __forceinline__ void load_stream(const uint8_t* p, uint32_t (&w)[4]) {
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
      : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
      : "l"(p));
}
__device__ __forceinline__ void load_stream(const uint8_t* p, uint32_t (&w)[2]) {
  asm("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];" : "=r"(w[0]), "=r"(w[1]) : "l"(p));
}
__device__ __forceinline__ uint32_t load_stream(const uint8_t* p) {
  uint32_t w;
  asm("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(w) : "l"(p));
  return w;
}

// ------------------------------------------------------------------------------------------
// the packed block of one lane and row: raw words, in the format's byte order

template <int BITS, bool SPARSE>
struct BlockWords {
  // bytes per 32-code block: 4 * BITS; a 2:4 lane reads the whole 16-byte value block that
  // holds its 16 kept values (two lanes share it) and one meta word.
  static constexpr int kWords = SPARSE ? 4 : BITS;
  uint32_t w[kWords];
  uint32_t meta;
};

template <int BITS, bool SPARSE>
__device__ __forceinline__ void load_block(const uint8_t* row, const uint8_t* meta_row, int64_t blk,
                                           BlockWords<BITS, SPARSE>& b) {
  if constexpr (SPARSE) {
    uint32_t v[4];
    load_stream(row + 16 * (blk >> 1), v);
#pragma unroll
    for (int i = 0; i < 4; ++i) b.w[i] = v[i];
    b.meta = load_stream(meta_row + 4 * blk);
  } else if constexpr (BITS == 4) {
    uint32_t v[4];
    load_stream(row + 16 * blk, v);
#pragma unroll
    for (int i = 0; i < 4; ++i) b.w[i] = v[i];
    b.meta = 0;
  } else if constexpr (BITS == 8) {
    uint32_t v[4], u[4];
    load_stream(row + 32 * blk, v);
    load_stream(row + 32 * blk + 16, u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      b.w[i] = v[i];
      b.w[4 + i] = u[i];
    }
    b.meta = 0;
  } else if constexpr (BITS == 2) {
    uint32_t v[2];
    load_stream(row + 8 * blk, v);
    b.w[0] = v[0];
    b.w[1] = v[1];
    b.meta = 0;
  } else {  // BITS == 3: 12 bytes, 4-byte aligned
    const uint8_t* p = row + 12 * blk;
    b.w[0] = load_stream(p);
    b.w[1] = load_stream(p + 4);
    b.w[2] = load_stream(p + 8);
    b.meta = 0;
  }
}

template <int BITS, bool SPARSE>
__device__ __forceinline__ void zero_block(BlockWords<BITS, SPARSE>& b) {
#pragma unroll
  for (int i = 0; i < BlockWords<BITS, SPARSE>::kWords; ++i) b.w[i] = 0;
  b.meta = 0;
}

// Raw code pair (c[16h + 4j + m], c[16h + 4j + m + 2]) of a dense block, codes in the low bits
// of each 16-bit half (see the header comment). I = 2j + m.
template <int BITS, int I, int H>
__device__ __forceinline__ uint32_t code_pair(const uint32_t* w) {
  constexpr int j = I >> 1, m = I & 1;
  if constexpr (BITS == 4) {
    return (w[j] >> (8 * m + 4 * H)) & 0x000F000Fu;
  } else if constexpr (BITS == 8) {
    return (w[4 * H + j] >> (8 * m)) & 0x00FF00FFu;
  } else {
    // 2-bit planes: code c sits in byte c % 8, bits 2 * (c / 8); c / 8 = 2h + j / 2.
    constexpr int a = 2 * H + (j >> 1);
    const uint32_t lo = (w[j & 1] >> (8 * m + 2 * a)) & 0x00030003u;
    if constexpr (BITS == 2) {
      return lo;
    } else {
      // bit 2 of code c is bit c of the little-endian word of bytes 8..11
      constexpr int c = 16 * H + 4 * j + m;
      const uint32_t hb = w[2];
      return lo | (((hb >> c) & 1u) << 2) | (((hb >> (c + 2)) & 1u) << 18);
    }
  }
}

// ------------------------------------------------------------------------------------------
// dequantisation of code pairs for one (row, group)

// The zero of symmetric codes: 2^(bits-1).
__host__ __device__ constexpr uint32_t implied_zero(int bits) { return 1u << (bits - 1); }

template <class Act, int BITS, bool ZEROS>
struct Dequant {
  // bf16 with explicit zeros (fractional) and bf16 int8 (codes >= 128 do not fit the magic)
  // go through fp32; everything else in half2 arithmetic.
  static constexpr bool kF32 = std::is_same_v<Act, BF16> && (ZEROS || BITS == 8);
  uint32_t off2 = 0, z2 = 0, s2 = 0;
  float sf = 0.f, nzs = 0.f;

  __device__ __forceinline__ void set(uint16_t s_bits, uint16_t z_bits) {
    if constexpr (kF32) {
      sf = half_bits_to_float(s_bits);
      const float z = ZEROS ? half_bits_to_float(z_bits) : float(implied_zero(BITS));
      nzs = -(z * sf);  // exact: two fp16 values
    } else if constexpr (std::is_same_v<Act, BF16>) {
      const uint16_t s16 = __bfloat16_as_ushort(__float2bfloat16_rn(half_bits_to_float(s_bits)));
      s2 = s16 | (uint32_t(s16) << 16);
      off2 = Act::kMagic | implied_zero(BITS) | (implied_zero(BITS) << 16);  // 128 + zero, exact
    } else {
      s2 = s_bits | (uint32_t(s_bits) << 16);
      if constexpr (ZEROS) {
        off2 = Act::kMagic;
        z2 = z_bits | (uint32_t(z_bits) << 16);
      } else {
        off2 = Act::kMagic | implied_zero(BITS) | (implied_zero(BITS) << 16);  // 1024 + zero, exact
      }
    }
  }

  __device__ __forceinline__ uint32_t operator()(uint32_t cp) const {
    if constexpr (kF32) {
      const float lo = __uint_as_float(0x4B000000u | (cp & 0xFFFFu)) - 8388608.f;  // exact code
      const float hi = __uint_as_float(0x4B000000u | (cp >> 16)) - 8388608.f;
      return pack2_bf16(fmaf(lo, sf, nzs), fmaf(hi, sf, nzs));
    } else {
      uint32_t d = hsub2<Act>(cp | Act::kMagic, off2);  // exact
      if constexpr (ZEROS) d = hsub2<Act>(d, z2);
      return hmul2<Act>(d, s2);
    }
  }
};

// Byte-permutation selectors that spread a dequantised pair (v0, v1) of kept values into the
// dense pairs (pos 0, pos 2) (low 16 bits) and (pos 1, pos 3) (high 16 bits) of a 4-group with
// meta nibble i0 | i1 << 2; selector byte 4 reads the zero operand.
__device__ __forceinline__ uint32_t spread_selectors(uint32_t nib) {
  const uint32_t i0 = nib & 3u, i1 = nib >> 2;
  uint32_t sel = 0;
#pragma unroll
  for (uint32_t p = 0; p < 4; ++p) {
    const uint32_t half_sel = p == i0 ? 0x10u : (p == i1 ? 0x32u : 0x44u);
    // p = m + 2q goes to byte q of selector m
    sel |= half_sel << (16 * (p & 1u) + 8 * (p >> 1));
  }
  return sel;
}

// ------------------------------------------------------------------------------------------
// the matmul kernel

struct MatmulArgs {
  const void* x;
  void* y;
  float* ws;
  PackedWeight w;
  int64_t B, row_bytes, G, meta_stride, nblk, n_steps, steps_per_split;
  int gshift;  // log2(group_size); unused when per_row
  bool per_row, has_zeros, x_aligned;
  int splits;
};

// The x fragments of one block (32 k) for batch row n: b[i][h] as described in the header.
__device__ __forceinline__ void load_x_fragments(const MatmulArgs& a, int64_t n, int64_t blk, bool valid,
                                                 uint32_t (&b)[8][2]) {
  uint32_t xw[16];
  const int64_t k0 = 32 * blk;
  if (!valid || n >= a.B) {
#pragma unroll
    for (int u = 0; u < 16; ++u) xw[u] = 0;
  } else {
    const uint16_t* xr = static_cast<const uint16_t*>(a.x) + n * a.w.K + k0;
    if (a.x_aligned && k0 + 32 <= a.w.K) {
      const uint4* p = reinterpret_cast<const uint4*>(xr);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const uint4 v = __ldg(p + q);
        xw[4 * q] = v.x;
        xw[4 * q + 1] = v.y;
        xw[4 * q + 2] = v.z;
        xw[4 * q + 3] = v.w;
      }
    } else {  // tail of K (never read beyond it) or unaligned rows
      const int64_t left = a.w.K - k0;
#pragma unroll
      for (int u = 0; u < 16; ++u) {
        const uint32_t lo = 2 * u < left ? __ldg(xr + 2 * u) : 0u;
        const uint32_t hi = 2 * u + 1 < left ? __ldg(xr + 2 * u + 1) : 0u;
        xw[u] = lo | (hi << 16);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int j = i >> 1, m = i & 1;
#pragma unroll
    for (int h = 0; h < 2; ++h)
      b[i][h] = __byte_perm(xw[8 * h + 2 * j], xw[8 * h + 2 * j + 1], m ? 0x7632 : 0x5410);
  }
}

template <int BITS, bool SPARSE>
struct StepData {
  BlockWords<BITS, SPARSE> blk[kMT][2];
  uint16_t s[kMT][2], z[kMT][2];
};

template <int BITS, bool SPARSE>
__device__ __forceinline__ void load_step(const MatmulArgs& a, int64_t row0, int t, int64_t step, int64_t end,
                                          StepData<BITS, SPARSE>& d) {
  const int64_t blk = 4 * step + t;
  const bool ok = step < end && blk < a.nblk;
  // first code of the block in the stored matrix (V for 2:4: 16 kept values per block)
  const int64_t code0 = SPARSE ? 16 * blk : 32 * blk;
  const int64_t gi = a.per_row ? 0 : (code0 >> a.gshift);
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int64_t row = row0 + 16 * mt + 8 * rr;
      if (ok && row < a.w.N) {
        load_block<BITS, SPARSE>(a.w.packed + row * a.row_bytes, a.w.meta + row * a.meta_stride, blk,
                                 d.blk[mt][rr]);
        d.s[mt][rr] = __ldg(a.w.scales + row * a.G + gi);
        d.z[mt][rr] = a.has_zeros ? __ldg(a.w.zeros + row * a.G + gi) : uint16_t(0);
      } else {  // scale 0: the weights of a missing row or block are 0
        zero_block<BITS, SPARSE>(d.blk[mt][rr]);
        d.s[mt][rr] = 0;
        d.z[mt][rr] = 0;
      }
    }
  }
}

// A fragments of one (tile, row) block: a[i][h] (k-step i, register half h).
template <class Act, int BITS, bool SPARSE, bool ZEROS>
__device__ __forceinline__ void weight_fragments(const BlockWords<BITS, SPARSE>& bw, const Dequant<Act, BITS, ZEROS>& dq,
                                                 int64_t blk, const uint32_t* lut, uint32_t (&f)[8][2]) {
  if constexpr (SPARSE) {
    const int nib_shift = 4 * int(blk & 1);  // which half of the value block
#pragma unroll
    for (int s8 = 0; s8 < 8; ++s8) {
      // kept values 2*s8 and 2*s8 + 1 of the half: bytes 2*(s8&1), 2*(s8&1)+1 of word s8/2
      const uint32_t x = bw.w[s8 >> 1] >> (16 * (s8 & 1) + nib_shift);
      const uint32_t cp = __byte_perm(x, 0u, 0x4140) & 0x000F000Fu;
      const uint32_t v = dq(cp);
      const uint32_t sel = lut[(bw.meta >> (4 * s8)) & 0xFu];
      const int h = s8 >> 2, j = s8 & 3;
      f[2 * j][h] = __byte_perm(v, 0u, sel & 0xFFFFu);
      f[2 * j + 1][h] = __byte_perm(v, 0u, sel >> 16);
    }
  } else {
    (void)blk;
    (void)lut;
#define EVOFORGE_PAIR(I)                                        \
  f[I][0] = dq(code_pair<BITS, I, 0>(bw.w));                    \
  f[I][1] = dq(code_pair<BITS, I, 1>(bw.w));
    EVOFORGE_PAIR(0)
    EVOFORGE_PAIR(1)
    EVOFORGE_PAIR(2)
    EVOFORGE_PAIR(3)
    EVOFORGE_PAIR(4)
    EVOFORGE_PAIR(5)
    EVOFORGE_PAIR(6)
    EVOFORGE_PAIR(7)
#undef EVOFORGE_PAIR
  }
}

template <class Act, int BITS, int NT, bool SPARSE>
__device__ __forceinline__ void compute_step(const MatmulArgs& a, int g, int t, int64_t step,
                                             const StepData<BITS, SPARSE>& d, const uint32_t* lut,
                                             float (&acc)[kMT][NT][4]) {
  const int64_t blk = 4 * step + t;
  const bool valid = blk < a.nblk;
  uint32_t bx[NT][8][2];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) load_x_fragments(a, g + 8 * nt, blk, valid, bx[nt]);
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
    uint32_t f[2][8][2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      // one uniform branch per row and step, not per pair
      if (a.has_zeros) {
        Dequant<Act, BITS, true> dq;
        dq.set(d.s[mt][rr], d.z[mt][rr]);
        weight_fragments<Act, BITS, SPARSE>(d.blk[mt][rr], dq, blk, lut, f[rr]);
      } else {
        Dequant<Act, BITS, false> dq;
        dq.set(d.s[mt][rr], 0);
        weight_fragments<Act, BITS, SPARSE>(d.blk[mt][rr], dq, blk, lut, f[rr]);
      }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
        mma16816(acc[mt][nt], f[0][i][0], f[1][i][0], f[0][i][1], f[1][i][1], bx[nt][i][0], bx[nt][i][1], Act{});
    }
  }
}

template <class Act, int BITS, int NT, bool SPARSE>
__global__ void __launch_bounds__(kThreads) quant_mma_kernel(MatmulArgs a) {
  __shared__ uint32_t lut[16];
  if constexpr (SPARSE) {
    if (threadIdx.x < 16) lut[threadIdx.x] = spread_selectors(threadIdx.x);
    __syncthreads();
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  // row of this lane in tile mt, half rr: row0 + 16 * mt + 8 * rr
  const int64_t row0 = int64_t(blockIdx.x) * kQuantRowsPerBlock + warp * 16 * kMT + g;
  const int64_t begin = int64_t(blockIdx.y) * a.steps_per_split;
  const int64_t end = begin + a.steps_per_split < a.n_steps ? begin + a.steps_per_split : a.n_steps;

  float acc[kMT][NT][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

  // Two steps of weights in flight: step s + 2 is loaded as soon as step s has been used, while
  // step s + 1 is still on its way.
  StepData<BITS, SPARSE> d0, d1;
  load_step<BITS, SPARSE>(a, row0, t, begin, end, d0);
  load_step<BITS, SPARSE>(a, row0, t, begin + 1, end, d1);
  for (int64_t s = begin; s < end; s += 2) {
    compute_step<Act, BITS, NT, SPARSE>(a, g, t, s, d0, lut, acc);
    load_step<BITS, SPARSE>(a, row0, t, s + 2, end, d0);
    if (s + 1 < end) {
      compute_step<Act, BITS, NT, SPARSE>(a, g, t, s + 1, d1, lut, acc);
      load_step<BITS, SPARSE>(a, row0, t, s + 3, end, d1);
    }
  }

  // c0, c1: (row g, batch 2t, 2t + 1); c2, c3: (row g + 8, same batch columns)
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t row = row0 + 16 * mt + 8 * (e >> 1);
        const int64_t b = 8 * nt + 2 * t + (e & 1);
        if (row >= a.w.N || b >= a.B) continue;
        if (a.splits == 1) {
          static_cast<uint16_t*>(a.y)[b * a.w.N + row] = to_bits(acc[mt][nt][e], Act{});
        } else {
          a.ws[(int64_t(blockIdx.y) * a.B + b) * a.w.N + row] = acc[mt][nt][e];
        }
      }
    }
  }
}

// y = sum of the split partials in split order, rounded once.
template <class Act>
__global__ void reduce_splits_kernel(const float* __restrict__ ws, int splits, int64_t count,
                                     uint16_t* __restrict__ y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int k = 0; k < splits; ++k) s += ws[int64_t(k) * count + i];
    y[i] = to_bits(s, Act{});
  }
}

// ------------------------------------------------------------------------------------------
// dequantisation to a dense matrix (B > 32, and devices without the mma kernels)

__device__ __forceinline__ uint32_t decode_code(const uint8_t* block, int bits, int j) {
  switch (bits) {
    case 8:
      return block[j];
    case 4:
      return (block[j & 15] >> (4 * (j >> 4))) & 15u;
    case 2:
      return (block[j & 7] >> (2 * (j >> 3))) & 3u;
    default: {  // 3
      const uint32_t lo = (block[j & 7] >> (2 * (j >> 3))) & 3u;
      const uint32_t hi = (block[8 + (j >> 3)] >> (j & 7)) & 1u;
      return lo | (hi << 2);
    }
  }
}

struct DequantArgs {
  PackedWeight w;
  int64_t row_bytes, G, meta_stride, chunks_per_row;  // chunk = 8 columns of the output
  bool out_aligned;
};

// One thread per 8 output columns of a row: w = scale * (q - zero) in fp32, rounded once.
template <class Act>
__global__ void dequantize_kernel(DequantArgs a, uint16_t* __restrict__ out) {
  const int64_t total = a.w.N * a.chunks_per_row;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = idx / a.chunks_per_row, c = idx % a.chunks_per_row;
    const int64_t k0 = 8 * c;
    const bool sparse = a.w.meta != nullptr;
    // stored codes of this chunk: 8 dense codes, or the 4 kept values of two 4-groups
    const int64_t code0 = sparse ? 4 * c : 8 * c;
    const int64_t gi = a.w.group_size == 0 ? 0 : code0 / a.w.group_size;
    const float s = half_bits_to_float(a.w.scales[row * a.G + gi]);
    const float z = a.w.zeros ? half_bits_to_float(a.w.zeros[row * a.G + gi]) : float(implied_zero(a.w.bits));
    const uint8_t* block = a.w.packed + row * a.row_bytes + (code0 >> 5) * 4 * a.w.bits;
    const int j0 = int(code0 & 31);
    float v[8];
    if (sparse) {
      const uint32_t mb = a.w.meta[row * a.meta_stride + c];
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = 0.f;
#pragma unroll
      for (int gg = 0; gg < 2; ++gg) {
        const uint32_t nib = (mb >> (4 * gg)) & 15u;
        const float v0 = s * (float(decode_code(block, a.w.bits, j0 + 2 * gg)) - z);
        const float v1 = s * (float(decode_code(block, a.w.bits, j0 + 2 * gg + 1)) - z);
        v[4 * gg + (nib >> 2)] = v1;  // i0 wins when the nibble repeats a position (as the matmul)
        v[4 * gg + (nib & 3u)] = v0;
      }
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = s * (float(decode_code(block, a.w.bits, j0 + e)) - z);
    }
    uint16_t* o = out + row * a.w.K + k0;
    if (a.out_aligned && k0 + 8 <= a.w.K) {
      uint32_t p[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) p[q] = to_bits(v[2 * q], Act{}) | (uint32_t(to_bits(v[2 * q + 1], Act{})) << 16);
      *reinterpret_cast<uint4*>(o) = make_uint4(p[0], p[1], p[2], p[3]);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e)
        if (k0 + e < a.w.K) o[e] = to_bits(v[e], Act{});
    }
  }
}

// ------------------------------------------------------------------------------------------
// host side

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_weight(const PackedWeight& w, bool sparse) {
  std::string msg;
  if (!(w.bits == 2 || w.bits == 3 || w.bits == 4 || w.bits == 8))
    msg = message("bits must be 2, 3, 4 or 8, got ", w.bits);
  else if (!(w.group_size == 0 || w.group_size == 32 || w.group_size == 64 || w.group_size == 128 ||
             w.group_size == 256))
    msg = message("group_size must be 0, 32, 64, 128 or 256, got ", w.group_size);
  else if (w.N < 1 || w.K < 1 || w.K > (int64_t(1) << 31) - 32 || w.N > (int64_t(1) << 31) - 1)
    msg = message("need 1 <= N < 2^31 and 1 <= K < 2^31 - 32, got N = ", w.N, ", K = ", w.K);
  else if (!w.packed || !w.scales)
    msg = "packed and scales must be device pointers";
  else if (sparse && !w.meta)
    msg = "a 2:4 weight needs meta";
  else if ((reinterpret_cast<uintptr_t>(w.packed) | reinterpret_cast<uintptr_t>(w.meta)) % 16 != 0)
    msg = "packed and meta must be 16-byte aligned";
  if (!msg.empty()) throw std::invalid_argument(msg);
}

struct Layout {
  int64_t nblk, row_bytes, G, meta_stride;
};

Layout layout(const PackedWeight& w, bool sparse) {
  Layout l;
  l.nblk = ceil_div(w.K, 32);
  const int64_t stored = sparse ? 16 * l.nblk : w.K;  // columns of the stored (value) matrix
  l.row_bytes = ceil_div(stored, 32) * 4 * w.bits;
  l.G = w.group_size == 0 ? 1 : ceil_div(stored, w.group_size);
  l.meta_stride = sparse ? 4 * l.nblk : 0;
  return l;
}

int log2_exact(int v) {
  int s = 0;
  while ((1 << s) < v) ++s;
  return s;
}

using KernelFn = void (*)(MatmulArgs);

template <class Act, int BITS, bool SPARSE>
KernelFn select_nt(int64_t B) {
  switch ((B + 7) / 8) {
    case 1:
      return quant_mma_kernel<Act, BITS, 1, SPARSE>;
    case 2:
      return quant_mma_kernel<Act, BITS, 2, SPARSE>;
    case 3:
      return quant_mma_kernel<Act, BITS, 3, SPARSE>;
    default:
      return quant_mma_kernel<Act, BITS, 4, SPARSE>;
  }
}

template <class Act>
KernelFn select_bits(int bits, int64_t B, bool sparse) {
  if (sparse) return select_nt<Act, 4, true>(B);
  switch (bits) {
    case 2:
      return select_nt<Act, 2, false>(B);
    case 3:
      return select_nt<Act, 3, false>(B);
    case 4:
      return select_nt<Act, 4, false>(B);
    default:
      return select_nt<Act, 8, false>(B);
  }
}

// The kernel instantiation for an element type, bit width, batch (n-tiles of 8) and layout.
KernelFn select_kernel(ActType type, int bits, int64_t B, bool sparse) {
  return type == ActType::kF16 ? select_bits<F16>(bits, B, sparse) : select_bits<BF16>(bits, B, sparse);
}

void matmul(const void* x, ActType type, int64_t B, bool x_aligned, const PackedWeight& w, int splits,
            int64_t steps_per_split, float* workspace, void* y, cudaStream_t stream, bool sparse) {
  check_matmul_args(x, B, x_aligned, w, sparse, splits, steps_per_split, workspace, y);
  const Layout l = layout(w, sparse);
  const int64_t n_steps = ceil_div(l.nblk, 4);
  int dev = 0;
  EVOFORGE_CUDA_CHECK(cudaGetDevice(&dev));
  if (!quant_matmul_supported(dev))
    throw std::invalid_argument("the quantised matmul kernels need compute capability 8.0 or newer");

  MatmulArgs a;
  a.x = x;
  a.y = y;
  a.ws = workspace;
  a.w = w;
  a.B = B;
  a.row_bytes = l.row_bytes;
  a.G = l.G;
  a.meta_stride = l.meta_stride;
  a.nblk = l.nblk;
  a.n_steps = n_steps;
  a.steps_per_split = steps_per_split;
  a.gshift = w.group_size == 0 ? 0 : log2_exact(w.group_size);
  a.per_row = w.group_size == 0;
  a.has_zeros = w.zeros != nullptr;
  a.x_aligned = x_aligned;
  a.splits = splits;
  const dim3 grid(unsigned(ceil_div(w.N, kQuantRowsPerBlock)), unsigned(splits));
  select_kernel(type, w.bits, B, sparse)<<<grid, kThreads, 0, stream>>>(a);
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
  if (splits > 1) {
    const int64_t count = B * w.N;
    const int blocks = int(ceil_div(count, 256) < 4096 ? ceil_div(count, 256) : 4096);
    if (type == ActType::kF16)
      reduce_splits_kernel<F16><<<blocks, 256, 0, stream>>>(workspace, splits, count, static_cast<uint16_t*>(y));
    else
      reduce_splits_kernel<BF16><<<blocks, 256, 0, stream>>>(workspace, splits, count, static_cast<uint16_t*>(y));
    EVOFORGE_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace

void check_matmul_args(const void* x, int64_t B, bool x_aligned, const PackedWeight& w, bool sparse, int splits,
                       int64_t steps_per_split, const float* workspace, const void* y) {
  check_weight(w, sparse);
  if (sparse && w.bits != 4) throw std::invalid_argument("the 2:4 matmul kernel takes 4-bit values");
  if (B < 1 || B > kQuantMaxBatch) throw std::invalid_argument("batch must be 1..32");
  if (!x || !y) throw std::invalid_argument("x and y must be device pointers");
  const int64_t n_steps = ceil_div(ceil_div(w.K, 32), 4);
  if (splits < 1 || splits > kQuantMaxSplits || steps_per_split < 1 || (splits - 1) * steps_per_split >= n_steps ||
      splits * steps_per_split < n_steps)
    throw std::invalid_argument("splits * steps_per_split must cover the K steps with no empty split");
  if (splits > 1 && !workspace) throw std::invalid_argument("splits > 1 needs a workspace");
  if (x_aligned && (reinterpret_cast<uintptr_t>(x) % 16 != 0 || w.K % 8 != 0))
    throw std::invalid_argument("x_aligned needs a 16-byte aligned x and K % 8 == 0");
}

void check_dequantize_args(const PackedWeight& w, const void* out) {
  check_weight(w, w.meta != nullptr);
  if (!out) throw std::invalid_argument("out must be a device pointer");
}

int quant_matmul_blocks_per_sm(ActType type, int bits, int64_t B, bool sparse) {
  if (!(bits == 2 || bits == 3 || bits == 4 || bits == 8) || B < 1 || B > kQuantMaxBatch)
    throw std::invalid_argument("need bits in {2, 3, 4, 8} and 1 <= batch <= 32");
  int blocks = 0;
  EVOFORGE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &blocks, reinterpret_cast<const void*>(select_kernel(type, bits, B, sparse)), kThreads, 0));
  return blocks;
}

bool quant_matmul_supported(int device) {
  int major = 0;
  EVOFORGE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 8;
}

void quant_matmul_cuda(const void* x, ActType type, int64_t B, bool x_aligned, const PackedWeight& w, int splits,
                       int64_t steps_per_split, float* workspace, void* y, cudaStream_t stream) {
  PackedWeight dense = w;
  dense.meta = nullptr;
  matmul(x, type, B, x_aligned, dense, splits, steps_per_split, workspace, y, stream, false);
}

void sparse24_matmul_cuda(const void* x, ActType type, int64_t B, bool x_aligned, const PackedWeight& w,
                          int splits, int64_t steps_per_split, float* workspace, void* y, cudaStream_t stream) {
  matmul(x, type, B, x_aligned, w, splits, steps_per_split, workspace, y, stream, true);
}

void dequantize_cuda(const PackedWeight& w, ActType type, void* out, cudaStream_t stream) {
  check_dequantize_args(w, out);
  const bool sparse = w.meta != nullptr;
  const Layout l = layout(w, sparse);
  DequantArgs a;
  a.w = w;
  a.row_bytes = l.row_bytes;
  a.G = l.G;
  a.meta_stride = l.meta_stride;
  a.chunks_per_row = ceil_div(w.K, 8);
  a.out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0 && w.K % 8 == 0;
  const int64_t total = w.N * a.chunks_per_row;
  const int blocks = int(ceil_div(total, 256) < 65536 ? ceil_div(total, 256) : 65536);
  if (type == ActType::kF16)
    dequantize_kernel<F16><<<blocks, 256, 0, stream>>>(a, static_cast<uint16_t*>(out));
  else
    dequantize_kernel<BF16><<<blocks, 256, 0, stream>>>(a, static_cast<uint16_t*>(out));
  EVOFORGE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace evoforge::cuda
