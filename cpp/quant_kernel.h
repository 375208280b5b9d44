// The SIMD body of the quantised matmul (cpp/quant.cpp), included once per instruction set inside
// a namespace that defines:
//   QK_FN      the attributes of every kernel function (always_inline + the target ISA),
//   struct V   the vector primitives: F, W (floats per vector), zero, load, fma, add, mul, set1, hsum,
//              half, and codes<BITS>(block, h, f0, f1): codes h..h+W-1 and 16+h..16+h+W-1 as floats
//              (q, or 1 + q 2^-BITS when biased<BITS>),
//   NBMAX, RMAX  the tile: up to NBMAX rows of x times RMAX rows of W, sized so that the
//              accumulators stay in registers.
// Not a public header: no include guard, on purpose.
//
// A tile unpacks each block of its R weight rows once and multiply-adds it into NB x R vector
// accumulators, so every x load serves R rows and every unpacked block NB rows of x. The zero
// point is applied once per group and output: corr += (s * z) * sum_k x.
// An output's arithmetic depends on B and its row of x (which tile size NB covers it), never on the
// rows of W it is tiled with (R) or on the thread that computes it: results do not depend on the
// thread count.

template <int BITS, int NB, int R>
QK_FN void tile(const Args& a, int64_t n0, int64_t b0) {
  using F = typename V::F;
  constexpr int bpb = 4 * BITS;
  // One row of x: per-group sums in two chains (lo / hi codes), scaled once per group into tot.
  // Several rows of x: the codes are pre-scaled and multiply-added straight into tot.
  constexpr bool single = NB == 1;
  const uint8_t* row[R];
  const float* x[NB];
  F tot[NB][R];
  float corr[NB][R];
  QK_UNROLL for (int r = 0; r < R; ++r) row[r] = a.packed + (n0 + r) * a.rb;
  QK_UNROLL for (int i = 0; i < NB; ++i) {
    x[i] = a.xp + (b0 + i) * a.Kp;
    QK_UNROLL for (int r = 0; r < R; ++r) {
      corr[i][r] = 0.f;
      tot[i][r] = V::zero();
    }
  }
  for (int64_t g = 0; g < a.G; ++g) {
    F sv[R], lo[R], hi[R];
    QK_UNROLL for (int r = 0; r < R; ++r) {
      const int64_t at = (n0 + r) * a.G + g;
      float s = V::half(a.scales[at]);
      float z = a.zeros ? V::half(a.zeros[at]) : static_cast<float>(1 << (BITS - 1));
      if constexpr (V::template biased<BITS>) {  // codes arrive as 1 + q 2^-b: s (q - z) = s 2^b (f - 1 - z 2^-b)
        s *= static_cast<float>(1 << BITS);
        z = 1.f + z / static_cast<float>(1 << BITS);
      }
      const float sz = s * z;
      sv[r] = V::set1(s);
      lo[r] = hi[r] = V::zero();
      QK_UNROLL for (int i = 0; i < NB; ++i) corr[i][r] = __builtin_fmaf(sz, a.xs[(b0 + i) * a.G + g], corr[i][r]);
    }
    const int64_t t1 = std::min(a.nblocks, (g + 1) * a.gb);
    for (int64_t t = g * a.gb; t < t1; ++t) {
      // The next R rows start where these end: fetch them a row-block ahead, one prefetch per
      // cache line, so that DRAM latency overlaps the arithmetic (the hardware streamers ramp up
      // too late on 4 interleaved short streams).
      if ((t * bpb) % 64 < bpb) {
        QK_UNROLL for (int r = 0; r < R; ++r) __builtin_prefetch(row[r] + R * a.rb + t * bpb);
      }
      QK_UNROLL for (int h = 0; h < 16; h += V::W) {
        F f0[R], f1[R];
        QK_UNROLL for (int r = 0; r < R; ++r) {
          V::template codes<BITS>(row[r] + t * bpb, h, f0[r], f1[r]);
          if constexpr (!single) {
            f0[r] = V::mul(f0[r], sv[r]);
            f1[r] = V::mul(f1[r], sv[r]);
          }
        }
        QK_UNROLL for (int i = 0; i < NB; ++i) {
          const F x0 = V::load(x[i] + 32 * t + h), x1 = V::load(x[i] + 32 * t + 16 + h);
          QK_UNROLL for (int r = 0; r < R; ++r) {
            if constexpr (single) {
              lo[r] = V::fma(f0[r], x0, lo[r]);
              hi[r] = V::fma(f1[r], x1, hi[r]);
            } else {
              tot[i][r] = V::fma(f0[r], x0, tot[i][r]);
              tot[i][r] = V::fma(f1[r], x1, tot[i][r]);
            }
          }
        }
      }
    }
    if constexpr (single) {
      QK_UNROLL for (int r = 0; r < R; ++r) tot[0][r] = V::fma(sv[r], V::add(lo[r], hi[r]), tot[0][r]);
    }
  }
  QK_UNROLL for (int i = 0; i < NB; ++i) {
    QK_UNROLL for (int r = 0; r < R; ++r) {
      const float b = a.bias ? a.bias[n0 + r] : 0.f;
      a.y[(b0 + i) * a.N + n0 + r] = (V::hsum(tot[i][r]) - corr[i][r]) + b;
    }
  }
}

// Rows n..n+R-1 of W for all B rows of x: tiles of NBMAX rows of x, then 2, then 1.
template <int BITS, int R>
QK_FN void row_block(const Args& a, int64_t n, int64_t B) {
  int64_t b = 0;
  for (; b + NBMAX <= B; b += NBMAX) tile<BITS, NBMAX, R>(a, n, b);
  if constexpr (NBMAX > 2) {
    for (; b + 2 <= B; b += 2) tile<BITS, 2, R>(a, n, b);
  }
  for (; b < B; ++b) tile<BITS, 1, R>(a, n, b);
}

template <int BITS>
QK_FN void rows(const Args& a, int64_t n0, int64_t n1, int64_t B) {
  int64_t n = n0;
  for (; n + RMAX <= n1; n += RMAX) row_block<BITS, RMAX>(a, n, B);
  for (; n < n1; ++n) row_block<BITS, 1>(a, n, B);
}
