// SparseGPT and GPTQ layer solvers on the CPU (see evoforge/solvers.h for the contracts).
//
// Both algorithms walk the columns left to right. Column i is compressed (pruned or rounded),
// its error e = (w - q) / U[i,i] is subtracted, times U[i, i+1:], from the later columns of
// the same row, which is the optimal update under the layer-wise quadratic loss
// ||W X - W' X||^2 (Optimal Brain Surgeon with the Cholesky form of H^-1). As in the papers,
// the update of the columns beyond the current block of `blocksize` columns is deferred and done
// once per block: W[:, i2:] -= E[:, block] @ U[block, i2:], a rank-B update that is the hot loop.
// Within a row, every element receives the contributions of the earlier columns in increasing
// column order, both inside a block and in the batched update, so the result is the plain
// column loop's up to rounding.
//
// Rows are independent given U. They are solved in panels of kPanel rows: one block at a time
// for all panels (threads split the panels), so the block's slice of U stays in cache while
// every panel streams through it, and a register-blocked micro-kernel does the batched update
// for a panel with each value of U loaded once. Panels are fixed multiples of kPanel rows and a
// row's arithmetic never depends on its panel, so the output is the same on any thread count.
//
// The micro-kernel is written with GCC vector extensions and compiled three times (AVX-512,
// AVX2+FMA, baseline); the best one the CPU supports is picked at run time.
#include "evoforge/solvers.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>
#include <vector>

#include "evoforge/common.h"

namespace evoforge {
namespace {

constexpr int64_t kPanel = 6;

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define EVOFORGE_SOLVERS_X86 1
#endif

#if defined(__GNUC__)
#define EVO_INLINE inline __attribute__((always_inline))
#else
#define EVO_INLINE inline
#endif

// --------------------------------------------------------------------------------------------
// The batched update: W[r, 0:N] -= sum_{t<K} E[r*lde + t] * Urows[t][0:N] for r < R.
// Every element subtracts its K terms in order t = 0..K-1 with the same vector instruction
// whatever path handles it, so terms with E = 0 (skipped or not) never change the result.

template <typename T, int VB, int R>
EVO_INLINE void update_rows(T* W, int64_t ldw, const T* E, int64_t lde, const T* const* Urows,
                            int64_t K, int64_t N) {
  constexpr int VL = VB / int(sizeof(T));
  typedef T V __attribute__((vector_size(VB)));
  constexpr int NV = (VB >= 64) ? 4 : 2;  // 6 x 4 zmm or 6 x 2 ymm/xmm accumulators
  constexpr int64_t TW = int64_t(NV) * VL;
  int64_t c = 0;
  for (; c + TW <= N; c += TW) {
    V acc[R][NV];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) std::memcpy(&acc[r][v], W + r * ldw + c + v * VL, VB);
    for (int64_t t = 0; t < K; ++t) {
      const T* u = Urows[t] + c;
      V uv[NV];
      for (int v = 0; v < NV; ++v) std::memcpy(&uv[v], u + v * VL, VB);
      for (int r = 0; r < R; ++r) {
        const T e = E[r * lde + t];
        for (int v = 0; v < NV; ++v) acc[r][v] -= e * uv[v];
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) std::memcpy(W + r * ldw + c + v * VL, &acc[r][v], VB);
  }
  for (; c + VL <= N; c += VL) {
    V acc[R];
    for (int r = 0; r < R; ++r) std::memcpy(&acc[r], W + r * ldw + c, VB);
    for (int64_t t = 0; t < K; ++t) {
      V uv;
      std::memcpy(&uv, Urows[t] + c, VB);
      for (int r = 0; r < R; ++r) acc[r] -= E[r * lde + t] * uv;
    }
    for (int r = 0; r < R; ++r) std::memcpy(W + r * ldw + c, &acc[r], VB);
  }
  if (c < N) {  // a partial vector, staged so that it gets the same instructions
    const size_t bytes = size_t(N - c) * sizeof(T);
    V acc[R];
    for (int r = 0; r < R; ++r) {
      acc[r] = V{};
      std::memcpy(&acc[r], W + r * ldw + c, bytes);
    }
    for (int64_t t = 0; t < K; ++t) {
      V uv = {};
      std::memcpy(&uv, Urows[t] + c, bytes);
      for (int r = 0; r < R; ++r) acc[r] -= E[r * lde + t] * uv;
    }
    for (int r = 0; r < R; ++r) std::memcpy(W + r * ldw + c, &acc[r], bytes);
  }
}

template <typename T, int VB>
EVO_INLINE void update_panel(T* W, int64_t ldw, const T* E, int64_t lde, const T* const* Urows,
                             int64_t K, int64_t N, int64_t R) {
  switch (R) {
    case 6: update_rows<T, VB, 6>(W, ldw, E, lde, Urows, K, N); break;
    case 5: update_rows<T, VB, 5>(W, ldw, E, lde, Urows, K, N); break;
    case 4: update_rows<T, VB, 4>(W, ldw, E, lde, Urows, K, N); break;
    case 3: update_rows<T, VB, 3>(W, ldw, E, lde, Urows, K, N); break;
    case 2: update_rows<T, VB, 2>(W, ldw, E, lde, Urows, K, N); break;
    default: update_rows<T, VB, 1>(W, ldw, E, lde, Urows, K, N); break;
  }
}
static_assert(kPanel == 6, "update_panel handles panels of up to 6 rows");

// w[0:n] -= e * u[0:n], every element by the same vector instruction (a partial last vector is
// staged through registers), so that the result never depends on the address alignment.
template <typename T, int VB>
EVO_INLINE void axpy_sub(T* w, const T* u, T e, int64_t n) {
  constexpr int VL = VB / int(sizeof(T));
  typedef T V __attribute__((vector_size(VB)));
  int64_t k = 0;
  for (; k + VL <= n; k += VL) {
    V a, b;
    std::memcpy(&a, w + k, VB);
    std::memcpy(&b, u + k, VB);
    a -= e * b;
    std::memcpy(w + k, &a, VB);
  }
  if (k < n) {
    V a = {}, b = {};
    const size_t bytes = size_t(n - k) * sizeof(T);
    std::memcpy(&a, w + k, bytes);
    std::memcpy(&b, u + k, bytes);
    a -= e * b;
    std::memcpy(w + k, &a, bytes);
  }
}

// The in-block update after column i: w[i+1 : i2] -= e * u[i+1 : i2], u = U[i, :]. It starts at
// the last multiple of the vector length from the block start at or before i + 1, so that the
// partial vector is only ever at the block end: the extra columns j <= i see U[i, j] = 0 (the
// strict lower triangle of U is zero) except j = i itself, which the caller overwrites after.
template <typename T, int VB>
EVO_INLINE void block_axpy(T* w, const T* u, T e, int64_t i1, int64_t i, int64_t i2) {
  constexpr int64_t VL = VB / int64_t(sizeof(T));
  const int64_t start = i1 + ((i + 1 - i1) / VL) * VL;
  axpy_sub<T, VB>(w + start, u + start, e, i2 - start);
}

// --------------------------------------------------------------------------------------------
// Per-thread scratch for one panel and one block.

template <typename T>
struct Scratch {
  std::vector<T> E, Ec, score;
  std::vector<uint64_t> keys;
  std::vector<std::pair<double, int32_t>> pairs;
  std::vector<int64_t> kidx;
  std::vector<const T*> Urows;
  std::vector<uint8_t> mask, maskR;
  void size(int64_t B) {
    E.assign(size_t(kPanel * B), T(0));
    Ec.resize(size_t(kPanel * B));
    score.resize(size_t(B));
    keys.resize(size_t(B));
    pairs.resize(size_t(B));
    kidx.resize(size_t(B));
    Urows.resize(size_t(B));
    mask.resize(size_t(B));
    maskR.resize(size_t(kPanel * B));
  }
};

// The batched update of columns i2.. of a panel from its block errors E [R, B] (row stride B).
// Block columns whose errors are zero in every row of the panel are skipped.
template <typename T, int VB>
EVO_INLINE void lazy_update(T* Wp, int64_t cols, const T* U, int64_t i1, int64_t i2, int64_t R,
                            Scratch<T>& s) {
  const int64_t B = i2 - i1;
  if (i2 >= cols) return;
  int64_t K = 0;
  for (int64_t j = 0; j < B; ++j) {
    bool any = false;
    for (int64_t r = 0; r < R; ++r) any |= s.E[size_t(r * B + j)] != T(0);
    if (any) {
      s.kidx[size_t(K)] = j;
      s.Urows[size_t(K)] = U + (i1 + j) * cols + i2;
      ++K;
    }
  }
  if (K == 0) return;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t t = 0; t < K; ++t)
      s.Ec[size_t(r * K + t)] = s.E[size_t(r * B + s.kidx[size_t(t)])];
  update_panel<T, VB>(Wp + i2, cols, s.Ec.data(), K, s.Urows.data(), K, cols - i2, R);
}

// --------------------------------------------------------------------------------------------
// SparseGPT

template <typename T>
struct SparseArgs {
  T* W;
  int64_t rows, cols;
  const T* U;
  int64_t bs, nblocks;
  const int32_t* counts;
  int pn, pm;
  uint8_t* pruned;
};

// Marks in s.mask[j0 .. j0+n) the c entries of s.score with the smallest scores (ties: lower j).
// Scores are >= 0, so for float the IEEE bits order them like the values, and (bits << 32 | j)
// is a unique integer key; doubles are selected as (score, j) pairs.
inline void select_keys(std::vector<uint64_t>& keys, int64_t n, int64_t c) {
  std::nth_element(keys.begin(), keys.begin() + c, keys.begin() + n);
}

inline void mark_smallest(Scratch<float>& s, int64_t j0, int64_t n, int64_t c) {
  if (c <= 0) return;
  if (c >= n) {
    std::fill(s.mask.begin() + j0, s.mask.begin() + j0 + n, uint8_t(1));
    return;
  }
  for (int64_t k = 0; k < n; ++k) {
    uint32_t bits;
    std::memcpy(&bits, &s.score[size_t(j0 + k)], 4);
    s.keys[size_t(k)] = (uint64_t(bits) << 32) | uint64_t(j0 + k);
  }
  select_keys(s.keys, n, c);
  for (int64_t k = 0; k < c; ++k) s.mask[size_t(uint32_t(s.keys[size_t(k)]))] = 1;
}

inline void mark_smallest(Scratch<double>& s, int64_t j0, int64_t n, int64_t c) {
  if (c <= 0) return;
  if (c >= n) {
    std::fill(s.mask.begin() + j0, s.mask.begin() + j0 + n, uint8_t(1));
    return;
  }
  auto& p = s.pairs;
  for (int64_t k = 0; k < n; ++k) p[size_t(k)] = {s.score[size_t(j0 + k)], int32_t(j0 + k)};
  std::nth_element(p.begin(), p.begin() + c, p.begin() + n,
                   [](const std::pair<double, int32_t>& a, const std::pair<double, int32_t>& b) {
                     return a.first < b.first || (a.first == b.first && a.second < b.second);
                   });
  for (int64_t k = 0; k < c; ++k) s.mask[size_t(p[size_t(k)].second)] = 1;
}

// Inside a block, columns are taken in sub-blocks of S columns: a column's error goes at once to
// the rest of its sub-block (one vector when S is the vector length), and at the end of a
// sub-block to the rest of the block with the micro-kernel (K = S). S is the vector length when
// every selection group (n:m) or quantisation group starts on a sub-block boundary, else the block.
template <typename T, int VB>
EVO_INLINE int64_t sub_block(int64_t B, int64_t group) {
  constexpr int64_t VL = VB / int64_t(sizeof(T));
  return (group <= 0 || VL % group == 0 || group % VL == 0) ? VL : B;
}

template <typename T, int VB>
EVO_INLINE void sub_block_update(T* Wp, int64_t cols, const T* U, int64_t i1, int64_t j0,
                                 int64_t j1, int64_t B, int64_t R, Scratch<T>& s) {
  if (j1 >= B) return;
  const int64_t K = j1 - j0;
  for (int64_t t = 0; t < K; ++t) s.Urows[size_t(t)] = U + (i1 + j0 + t) * cols + i1 + j1;
  update_panel<T, VB>(Wp + i1 + j1, cols, s.E.data() + j0, B, s.Urows.data(), K, B - j1, R);
}

template <typename T, int VB>
EVO_INLINE void sparse_panel_block_impl(const SparseArgs<T>& a, int64_t r0, int64_t R, int64_t b,
                                        Scratch<T>& s) {
  const int64_t cols = a.cols, i1 = b * a.bs, i2 = std::min(i1 + a.bs, cols), B = i2 - i1;
  const T* U = a.U;
  T* Wp = a.W + r0 * cols;
  std::fill(s.E.begin(), s.E.begin() + R * B, T(0));
  std::fill(s.maskR.begin(), s.maskR.begin() + R * B, uint8_t(0));
  auto score = [&](const T* w, int64_t j) {
    const T d = U[(i1 + j) * (cols + 1)];
    const T x = w[i1 + j];
    return (x * x) / (d * d);
  };
  auto select = [&](int64_t rr, int64_t j0, int64_t n, int64_t c) {
    const T* w = Wp + rr * cols;
    for (int64_t k = j0; k < j0 + n; ++k) s.score[size_t(k)] = score(w, k);
    std::fill(s.mask.begin() + j0, s.mask.begin() + j0 + n, uint8_t(0));
    mark_smallest(s, j0, n, c);
    std::copy(s.mask.begin() + j0, s.mask.begin() + j0 + n, s.maskR.begin() + rr * B + j0);
  };
  if (a.pm == 0)
    for (int64_t rr = 0; rr < R; ++rr) select(rr, 0, B, a.counts[(r0 + rr) * a.nblocks + b]);
  const int64_t S = sub_block<T, VB>(B, a.pm);
  for (int64_t j0 = 0; j0 < B; j0 += S) {
    const int64_t j1 = std::min(j0 + S, B);
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t i = i1 + j;
      for (int64_t rr = 0; rr < R; ++rr) {
        T* w = Wp + rr * cols;
        if (a.pm > 0 && j % a.pm == 0) select(rr, j, a.pm, a.pn);
        if (!s.maskR[size_t(rr * B + j)]) continue;
        const T err = w[i] / U[i * (cols + 1)];
        s.E[size_t(rr * B + j)] = err;
        block_axpy<T, VB>(w, U + i * cols, err, i1, i, i1 + j1);
        w[i] = T(0);
        if (a.pruned) a.pruned[(r0 + rr) * cols + i] = 1;
      }
    }
    sub_block_update<T, VB>(Wp, cols, U, i1, j0, j1, B, R, s);
  }
  lazy_update<T, VB>(Wp, cols, U, i1, i2, R, s);
}

// --------------------------------------------------------------------------------------------
// GPTQ

template <typename T>
struct QuantArgs {
  T* W;
  int64_t rows, cols;
  const T* U;
  int64_t bs;
  int maxq;
  int64_t gs, ngroups;
  bool sym;
  T* scales;
  T* zeros;
  uint8_t* q;
};

// GPTQ's min/max grid over x[0:n]; the range always contains 0.
template <typename T>
EVO_INLINE void find_grid(const T* x, int64_t n, int maxq, bool sym, T& scale, T& zero) {
  T xmin = T(0), xmax = T(0);
  for (int64_t k = 0; k < n; ++k) {
    xmin = std::min(xmin, x[k]);
    xmax = std::max(xmax, x[k]);
  }
  if (sym) {
    xmax = std::max(-xmin, xmax);
    if (xmin < T(0)) xmin = -xmax;
  }
  if (xmin == T(0) && xmax == T(0)) {
    xmin = T(-1);
    xmax = T(1);
  }
  scale = (xmax - xmin) / T(maxq);
  zero = sym ? T((maxq + 1) / 2) : std::nearbyint(-xmin / scale);
}

template <typename T>
EVO_INLINE T quantize(T x, T scale, T zero, int maxq, uint8_t& code) {
  T v = std::nearbyint(x / scale) + zero;
  v = std::min(std::max(v, T(0)), T(maxq));
  code = uint8_t(v);
  return scale * (v - zero);
}

template <typename T, int VB>
EVO_INLINE void quant_panel_block_impl(const QuantArgs<T>& a, int64_t r0, int64_t R, int64_t b,
                                       Scratch<T>& s) {
  const int64_t cols = a.cols, i1 = b * a.bs, i2 = std::min(i1 + a.bs, cols), B = i2 - i1;
  const T* U = a.U;
  T* Wp = a.W + r0 * cols;
  // Per-row grid: found up front. Per-group grid: blocks start on a group boundary, so the
  // grid is found at j = 0 before its first use.
  T scale[kPanel], zero[kPanel];
  for (int64_t rr = 0; rr < R; ++rr) {
    scale[rr] = a.gs > 0 ? T(1) : a.scales[(r0 + rr) * a.ngroups];
    zero[rr] = a.gs > 0 ? T(0) : a.zeros[(r0 + rr) * a.ngroups];
  }
  const int64_t S = sub_block<T, VB>(B, a.gs);
  for (int64_t j0 = 0; j0 < B; j0 += S) {
    const int64_t j1 = std::min(j0 + S, B);
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t i = i1 + j;
      for (int64_t rr = 0; rr < R; ++rr) {
        const int64_t r = r0 + rr;
        T* w = Wp + rr * cols;
        if (a.gs > 0 && i % a.gs == 0) {
          const int64_t g = i / a.gs;
          find_grid(w + i, std::min(a.gs, cols - i), a.maxq, a.sym, scale[rr], zero[rr]);
          a.scales[r * a.ngroups + g] = scale[rr];
          a.zeros[r * a.ngroups + g] = zero[rr];
        }
        const T x = w[i];
        const T wq = quantize(x, scale[rr], zero[rr], a.maxq, a.q[r * cols + i]);
        const T err = (x - wq) / U[i * (cols + 1)];
        s.E[size_t(rr * B + j)] = err;
        if (err != T(0)) block_axpy<T, VB>(w, U + i * cols, err, i1, i, i1 + j1);
        w[i] = wq;
      }
    }
    sub_block_update<T, VB>(Wp, cols, U, i1, j0, j1, B, R, s);
  }
  lazy_update<T, VB>(Wp, cols, U, i1, i2, R, s);
}

// --------------------------------------------------------------------------------------------
// One entry per instruction set; the implementation is inlined into each.

template <typename T>
using SparseFn = void (*)(const SparseArgs<T>&, int64_t, int64_t, int64_t, Scratch<T>&);
template <typename T>
using QuantFn = void (*)(const QuantArgs<T>&, int64_t, int64_t, int64_t, Scratch<T>&);

template <typename T>
void sparse_generic(const SparseArgs<T>& a, int64_t r0, int64_t R, int64_t b, Scratch<T>& s) {
  sparse_panel_block_impl<T, 16>(a, r0, R, b, s);
}
template <typename T>
void quant_generic(const QuantArgs<T>& a, int64_t r0, int64_t R, int64_t b, Scratch<T>& s) {
  quant_panel_block_impl<T, 16>(a, r0, R, b, s);
}

#ifdef EVOFORGE_SOLVERS_X86
template <typename T>
__attribute__((target("avx2,fma"))) void sparse_avx2(const SparseArgs<T>& a, int64_t r0,
                                                     int64_t R, int64_t b, Scratch<T>& s) {
  sparse_panel_block_impl<T, 32>(a, r0, R, b, s);
}
template <typename T>
__attribute__((target("avx512f,fma"))) void sparse_avx512(const SparseArgs<T>& a, int64_t r0,
                                                          int64_t R, int64_t b, Scratch<T>& s) {
  sparse_panel_block_impl<T, 64>(a, r0, R, b, s);
}
template <typename T>
__attribute__((target("avx2,fma"))) void quant_avx2(const QuantArgs<T>& a, int64_t r0, int64_t R,
                                                    int64_t b, Scratch<T>& s) {
  quant_panel_block_impl<T, 32>(a, r0, R, b, s);
}
template <typename T>
__attribute__((target("avx512f,fma"))) void quant_avx512(const QuantArgs<T>& a, int64_t r0,
                                                         int64_t R, int64_t b, Scratch<T>& s) {
  quant_panel_block_impl<T, 64>(a, r0, R, b, s);
}

int isa_level() {  // 2 = AVX-512F, 1 = AVX2 + FMA, 0 = baseline
  static const int level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
  }();
  return level;
}
#endif

template <typename T>
SparseFn<T> pick_sparse() {
#ifdef EVOFORGE_SOLVERS_X86
  switch (isa_level()) {
    case 2: return &sparse_avx512<T>;
    case 1: return &sparse_avx2<T>;
    default: break;
  }
#endif
  return &sparse_generic<T>;
}

template <typename T>
QuantFn<T> pick_quant() {
#ifdef EVOFORGE_SOLVERS_X86
  switch (isa_level()) {
    case 2: return &quant_avx512<T>;
    case 1: return &quant_avx2<T>;
    default: break;
  }
#endif
  return &quant_generic<T>;
}

// Runs fn(r0, R, b, scratch) for every panel, block by block; threads split the panels.
template <typename Fn, typename T>
void for_panels_by_block(int64_t rows, int64_t cols, int64_t bs, int threads, Fn&& fn,
                         T /*tag*/) {
  const int64_t npanels = (rows + kPanel - 1) / kPanel;
  const int64_t nblocks = (cols + bs - 1) / bs;
  const int nt = resolve_threads(threads);
  for (int64_t b = 0; b < nblocks; ++b) {
    parallel_for(npanels, nt, 4, [&](int64_t p0, int64_t p1, int) {
      Scratch<T> s;
      s.size(std::min(bs, cols));
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t r0 = p * kPanel;
        fn(r0, std::min(kPanel, rows - r0), b, s);
      }
    });
  }
}

}  // namespace

template <typename T>
void sparsegpt_cpu(T* W, int64_t rows, int64_t cols, const T* U, int64_t blocksize,
                   const int32_t* counts, int prune_n, int prune_m, uint8_t* pruned,
                   int num_threads) {
  EVOFORGE_CHECK(rows >= 0 && cols >= 0, "negative shape");
  EVOFORGE_CHECK(blocksize > 0, "blocksize must be positive, got " << blocksize);
  if (rows == 0 || cols == 0) return;
  if (prune_m > 0) {
    EVOFORGE_CHECK(prune_n >= 0 && prune_n <= prune_m,
                   "prune_n must lie in [0, prune_m], got " << prune_n << ":" << prune_m);
    EVOFORGE_CHECK(cols % prune_m == 0 && blocksize % prune_m == 0,
                   "cols and blocksize must be multiples of prune_m=" << prune_m);
  } else {
    EVOFORGE_CHECK(counts != nullptr, "unstructured pruning needs the counts per row and block");
  }
  SparseArgs<T> a{W, rows, cols, U, blocksize, (cols + blocksize - 1) / blocksize,
                  counts, prune_n, prune_m, pruned};
  SparseFn<T> fn = pick_sparse<T>();
  for_panels_by_block(
      rows, cols, blocksize, num_threads,
      [&](int64_t r0, int64_t R, int64_t b, Scratch<T>& s) { fn(a, r0, R, b, s); }, T(0));
}

template <typename T>
void gptq_cpu(T* W, int64_t rows, int64_t cols, const T* U, int64_t blocksize, int bits,
              int64_t group_size, bool symmetric, T* scales, T* zeros, uint8_t* q,
              int num_threads) {
  EVOFORGE_CHECK(rows >= 0 && cols >= 0, "negative shape");
  EVOFORGE_CHECK(bits >= 1 && bits <= 8, "bits must lie in [1, 8], got " << bits);
  EVOFORGE_CHECK(blocksize > 0, "blocksize must be positive, got " << blocksize);
  EVOFORGE_CHECK(group_size <= 0 || blocksize % group_size == 0,
                 "blocksize (" << blocksize << ") must be a multiple of group_size ("
                               << group_size << ")");
  if (rows == 0 || cols == 0) return;
  const int maxq = (1 << bits) - 1;
  const int64_t ngroups = group_size > 0 ? (cols + group_size - 1) / group_size : 1;
  if (group_size <= 0) {  // one grid per row, from the weights as given
    parallel_for(rows, resolve_threads(num_threads), 64, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r)
        find_grid(W + r * cols, cols, maxq, symmetric, scales[r], zeros[r]);
    });
  }
  QuantArgs<T> a{W, rows, cols, U, blocksize, maxq, group_size, ngroups, symmetric,
                 scales, zeros, q};
  QuantFn<T> fn = pick_quant<T>();
  for_panels_by_block(
      rows, cols, blocksize, num_threads,
      [&](int64_t r0, int64_t R, int64_t b, Scratch<T>& s) { fn(a, r0, R, b, s); }, T(0));
}

template <typename T>
void rtn_cpu(T* W, int64_t rows, int64_t cols, int bits, int64_t group_size, bool symmetric,
             T* scales, T* zeros, uint8_t* q, int num_threads) {
  EVOFORGE_CHECK(rows >= 0 && cols >= 0, "negative shape");
  EVOFORGE_CHECK(bits >= 1 && bits <= 8, "bits must lie in [1, 8], got " << bits);
  if (rows == 0 || cols == 0) return;
  const int maxq = (1 << bits) - 1;
  const int64_t gs = group_size > 0 ? group_size : cols;
  const int64_t ngroups = (cols + gs - 1) / gs;
  parallel_for(rows, resolve_threads(num_threads), 16, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      T* w = W + r * cols;
      for (int64_t g = 0; g < ngroups; ++g) {
        const int64_t c0 = g * gs, n = std::min(gs, cols - c0);
        T scale, zero;
        find_grid(w + c0, n, maxq, symmetric, scale, zero);
        scales[r * ngroups + g] = scale;
        zeros[r * ngroups + g] = zero;
        for (int64_t c = c0; c < c0 + n; ++c) w[c] = quantize(w[c], scale, zero, maxq, q[r * cols + c]);
      }
    }
  });
}

#define EVOFORGE_INSTANTIATE(T)                                                                \
  template void sparsegpt_cpu<T>(T*, int64_t, int64_t, const T*, int64_t, const int32_t*, int, \
                                 int, uint8_t*, int);                                          \
  template void gptq_cpu<T>(T*, int64_t, int64_t, const T*, int64_t, int, int64_t, bool, T*,   \
                            T*, uint8_t*, int);                                                \
  template void rtn_cpu<T>(T*, int64_t, int64_t, int, int64_t, bool, T*, T*, uint8_t*, int);
EVOFORGE_INSTANTIATE(float)
EVOFORGE_INSTANTIATE(double)
#undef EVOFORGE_INSTANTIATE

}  // namespace evoforge
