// The SIMD body of the quantised matmul (cpp/quant.cpp), included once per instruction set inside
// a namespace that defines:
//   QK_FN      the attributes of every kernel function (always_inline + the target ISA),
//   struct V   the vector primitives: F, W (floats per vector), zero, load, fma, add, set1, hsum, half,
//              and codes<BITS>(block, h, f0, f1): codes h..h+W-1 and 16+h..16+h+W-1 as floats,
//   NBMAX      the largest tile of x rows that keeps its accumulators in registers.
// Not a public header: no include guard, on purpose.

// Outputs y[b0 .. b0+NB-1, n]: one pass over row n's packed bytes for NB rows of x.
template <int BITS, int NB>
QK_FN void tile(const Args& a, int64_t n, int64_t b0) {
  using F = typename V::F;
  constexpr int bpb = 4 * BITS;
  const uint8_t* row = a.packed + n * a.rb;
  const float* x[NB];
  F tot[NB];
  float corr[NB];
  QK_UNROLL for (int i = 0; i < NB; ++i) {
    x[i] = a.xp + (b0 + i) * a.Kp;
    tot[i] = V::zero();
    corr[i] = 0.f;
  }
  for (int64_t g = 0; g < a.G; ++g) {
    const float s = V::half(a.scales[n * a.G + g]);
    const float z = a.zeros ? V::half(a.zeros[n * a.G + g]) : static_cast<float>(1 << (BITS - 1));
    F acc0[NB], acc1[NB];
    QK_UNROLL for (int i = 0; i < NB; ++i) acc0[i] = acc1[i] = V::zero();
    const int64_t t1 = std::min(a.nblocks, (g + 1) * a.gb);
    for (int64_t t = g * a.gb; t < t1; ++t) {
      const uint8_t* p = row + t * bpb;
      QK_UNROLL for (int h = 0; h < 16; h += V::W) {
        F f0, f1;
        V::template codes<BITS>(p, h, f0, f1);
        QK_UNROLL for (int i = 0; i < NB; ++i) {
          acc0[i] = V::fma(f0, V::load(x[i] + 32 * t + h), acc0[i]);
          acc1[i] = V::fma(f1, V::load(x[i] + 32 * t + 16 + h), acc1[i]);
        }
      }
    }
    const F sv = V::set1(s);
    QK_UNROLL for (int i = 0; i < NB; ++i) {
      tot[i] = V::fma(sv, V::add(acc0[i], acc1[i]), tot[i]);
      corr[i] += s * z * a.xs[(b0 + i) * a.G + g];
    }
  }
  const float b = a.bias ? a.bias[n] : 0.f;
  QK_UNROLL for (int i = 0; i < NB; ++i) a.y[(b0 + i) * a.N + n] = (V::hsum(tot[i]) - corr[i]) + b;
}

// Rows [n0, n1) for all B rows of x: tiles of NBMAX rows of x, then 4, 2, 1.
template <int BITS>
QK_FN void rows(const Args& a, int64_t n0, int64_t n1, int64_t B) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t b = 0;
    for (; b + NBMAX <= B; b += NBMAX) tile<BITS, NBMAX>(a, n, b);
    if constexpr (NBMAX > 4) {
      if (B - b >= 4) {
        tile<BITS, 4>(a, n, b);
        b += 4;
      }
    }
    if (B - b >= 2) {
      tile<BITS, 2>(a, n, b);
      b += 2;
    }
    if (B - b >= 1) tile<BITS, 1>(a, n, b);
  }
}
