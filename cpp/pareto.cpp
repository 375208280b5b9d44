// Pareto ranking on the CPU.
//
// Every method works on the distinct points sorted lexicographically: then a point can only be
// dominated by points before it, and among distinct points "q before p and q <= p in every
// objective" already means that q dominates p. Duplicates are collapsed first and share a rank.
//
// Values are first mapped to unsigned integer keys with the same order (-0.0 and 0.0 get the
// same key), so that sorting is a radix sort and every later comparison is an integer one.
// After the sort, objective 0 is implied by the position of a point and is never read again.
//
// Ranking of the sorted distinct points:
//   M = 1  the position among the distinct values.
//   M = 2  one sweep with a binary search over fronts, O(N log N).
//   M = 3  the same sweep with a 2-D staircase per front, O(N log F log N) in practice; on
//          inputs where the staircases degenerate it gives up after a work budget and falls
//          back to divide and conquer.
//   M >= 4 divide and conquer (Jensen 2003; Fortin, Grenier, Parizeau 2013; Buzdalov and
//          Shalyto 2014), O(N log^(M-1) N), with vectorised brute force for small
//          subproblems and pruning by rank.
#include "evoforge/pareto.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "evoforge/common.h"
#include "evoforge/macros.h"

namespace evoforge {
namespace {

template <typename T>
void check_finite_or_inf(const T* x, int64_t rows, int64_t cols, const char* name) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      if (std::isnan(x[i * cols + j]))
        EVOFORGE_THROW(std::invalid_argument, name << " holds NaN in row " << i);
}

// ------------------------------------------------------------------------------------------
// Order-preserving integer keys and radix sort.

template <typename T>
using KeyOf = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;

// Flipping the sign bit of non-negative values and all bits of negative ones turns the IEEE
// order (including +-inf) into the unsigned integer order.
template <typename T>
inline KeyOf<T> order_key(T v) {
  using K = KeyOf<T>;
  if (v == T(0)) v = T(0);  // -0.0 -> 0.0
  K u;
  std::memcpy(&u, &v, sizeof u);
  constexpr K sign = K(1) << (8 * sizeof(K) - 1);
  return (u & sign) ? K(~u) : K(u | sign);
}

template <typename K>
struct KeyIdx {
  K key;
  uint32_t idx;
};

// Sorts a[0, n) by key. LSD radix sort with 11-bit digits; digits on which all keys agree
// (e.g. the exponent bits of values in [0, 1)) are skipped.
template <typename K>
void radix_sort(KeyIdx<K>* a, size_t n, std::vector<KeyIdx<K>>& tmp) {
  if (n < 512) {
    std::sort(a, a + n, [](const KeyIdx<K>& x, const KeyIdx<K>& y) {
      return x.key < y.key || (x.key == y.key && x.idx < y.idx);
    });
    return;
  }
  constexpr int kBits = 11;
  constexpr int kPasses = (8 * sizeof(K) + kBits - 1) / kBits;
  constexpr size_t kBuckets = size_t{1} << kBits;
  std::vector<uint32_t> hist(kPasses * kBuckets, 0);
  for (size_t i = 0; i < n; ++i) {
    K k = a[i].key;
    for (int p = 0; p < kPasses; ++p) ++hist[p * kBuckets + ((k >> (p * kBits)) & (kBuckets - 1))];
  }
  tmp.resize(n);
  KeyIdx<K>* src = a;
  KeyIdx<K>* dst = tmp.data();
  for (int p = 0; p < kPasses; ++p) {
    const int shift = p * kBits;
    uint32_t* h = hist.data() + p * kBuckets;
    if (h[(src[0].key >> shift) & (kBuckets - 1)] == n) continue;
    uint32_t sum = 0;
    for (size_t b = 0; b < kBuckets; ++b) {
      uint32_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; ++i) dst[h[(src[i].key >> shift) & (kBuckets - 1)]++] = src[i];
    std::swap(src, dst);
  }
  if (src != a) std::copy(src, src + n, a);
}

// ------------------------------------------------------------------------------------------
// Sorting and de-duplication.

// Lexicographically sorted distinct rows. pts holds objectives 1..M-1 of each distinct row
// (objective 0 is implied by the order); group[k] = position of row k in that order.
template <typename K>
struct SortedUnique {
  std::vector<K> pts;           // [U, M - 1]
  std::vector<uint32_t> group;  // [n]
  int64_t U = 0;
};

template <typename T>
SortedUnique<KeyOf<T>> sort_unique(const T* F, int64_t M, const std::vector<int64_t>& idx) {
  using K = KeyOf<T>;
  const int64_t n = static_cast<int64_t>(idx.size());
  EVOFORGE_CHECK(n < (int64_t{1} << 31), "at most 2^31 - 1 points are supported, got " << n);
  // Radix sort by the high 32 bits of the key of objective 0 (all of it for float); rows that
  // tie on those are then ordered by all their keys, computed on the fly.
  constexpr int kShift = 8 * sizeof(K) - 32;
  std::vector<KeyIdx<uint32_t>> items(n);
  {
    std::vector<KeyIdx<uint32_t>> tmp;
    for (int64_t k = 0; k < n; ++k)
      items[k] = {static_cast<uint32_t>(order_key(F[idx[k] * M]) >> kShift), static_cast<uint32_t>(k)};
    radix_sort(items.data(), n, tmp);
  }
  auto key = [&](uint32_t k, int64_t j) { return order_key(F[idx[k] * M + j]); };
  const int64_t j0 = kShift > 0 ? 0 : 1;  // objective 0 is settled by the 32-bit key of a float
  auto less = [&](const KeyIdx<uint32_t>& x, const KeyIdx<uint32_t>& y) {
    for (int64_t j = j0; j < M; ++j) {
      K a = key(x.idx, j), b = key(y.idx, j);
      if (a != b) return a < b;
    }
    return false;
  };
  auto equal = [&](const KeyIdx<uint32_t>& x, const KeyIdx<uint32_t>& y) {
    for (int64_t j = j0; j < M; ++j)
      if (key(x.idx, j) != key(y.idx, j)) return false;
    return true;
  };

  std::vector<K> run_keys;
  std::vector<KeyIdx<uint32_t>> run_order, run_items;
  SortedUnique<K> out;
  out.group.resize(n);
  out.pts.resize(static_cast<size_t>(n * (M - 1)));
  K* dst = out.pts.data();
  for (int64_t b = 0; b < n;) {
    int64_t e = b + 1;
    while (e < n && items[e].key == items[b].key) ++e;
    if (e - b > 32 && M > j0) {
      // A long run of ties: sort on a compact copy of its keys rather than reading F.
      const int64_t n_run = e - b, w = M - j0;
      run_keys.resize(static_cast<size_t>(n_run * w));
      run_order.resize(static_cast<size_t>(n_run));
      for (int64_t t = 0; t < n_run; ++t) {
        for (int64_t j = 0; j < w; ++j) run_keys[t * w + j] = key(items[b + t].idx, j0 + j);
        run_order[t] = {0, static_cast<uint32_t>(t)};
      }
      std::sort(run_order.begin(), run_order.end(), [&](const KeyIdx<uint32_t>& x, const KeyIdx<uint32_t>& y) {
        const K* a = run_keys.data() + x.idx * w;
        const K* c = run_keys.data() + y.idx * w;
        for (int64_t j = 0; j < w; ++j)
          if (a[j] != c[j]) return a[j] < c[j];
        return false;
      });
      run_items.assign(items.begin() + b, items.begin() + e);
      for (int64_t t = 0; t < n_run; ++t) items[b + t] = run_items[run_order[t].idx];
    } else if (e - b > 1 && M > j0) {
      std::sort(items.begin() + b, items.begin() + e, less);
    }
    for (int64_t k = b; k < e; ++k) {
      if (k == b || !equal(items[k - 1], items[k])) {
        const T* row = F + idx[items[k].idx] * M;
        for (int64_t j = 1; j < M; ++j) *dst++ = order_key(row[j]);
        ++out.U;
      }
      out.group[items[k].idx] = static_cast<uint32_t>(out.U - 1);
    }
    b = e;
  }
  out.pts.resize(static_cast<size_t>(out.U * (M - 1)));
  return out;
}

// ------------------------------------------------------------------------------------------
// M = 2 and M = 3: sweeps over the sorted points with a binary search over fronts. A front
// that dominates p implies that every earlier front does, so the fronts are bisected.

// M = 2: the smallest f1 of front k (its last point) does not decrease with k, and p joins the
// first front whose smallest f1 exceeds p's. The searches are the whole cost and each is a
// chain of dependent loads, so four consecutive points are searched together on the fronts as
// they were before the four, and each result is then corrected for the updates of the
// points before it: an update only lowers front_min[k] to some v (or appends v), which moves
// a later point q from front k to k + 1 exactly when it searched k and v <= q's f1.
template <typename K>
int32_t rank_sweep2(const K* f1, int64_t U, int32_t* rank) {
  std::vector<K> front_min;  // front_min[k] = f1 of the last point put in front k
  constexpr int kLanes = 4;
  for (int64_t i = 0; i < U; i += kLanes) {
    const int lanes = static_cast<int>(std::min<int64_t>(kLanes, U - i));
    K v[kLanes];
    size_t k[kLanes] = {};
    for (int j = 0; j < kLanes; ++j) v[j] = f1[i + std::min(j, lanes - 1)];
    if (!front_min.empty()) {  // branch-free upper bounds
      const K* data = front_min.data();
      const K* base[kLanes];
      for (int j = 0; j < kLanes; ++j) base[j] = data;
      for (size_t len = front_min.size(); len > 1;) {
        const size_t half = len / 2;
        for (int j = 0; j < kLanes; ++j) base[j] += half & (size_t{0} - (base[j][half - 1] <= v[j]));
        len -= half;
      }
      for (int j = 0; j < kLanes; ++j) k[j] = static_cast<size_t>(base[j] - data) + (*base[j] <= v[j]);
    }
    for (int j = 0; j < lanes; ++j) {
      for (int t = 0; t < j; ++t) k[j] += (k[j] == k[t] && v[t] <= v[j]);
      if (k[j] == front_min.size())
        front_min.push_back(v[j]);
      else
        front_min[k[j]] = v[j];
      rank[i + j] = static_cast<int32_t>(k[j]);
    }
  }
  return static_cast<int32_t>(front_min.size());
}

// Number of leading elements of s[0, n) (sorted by .a) with .a <= v. Branch-free: in the
// sweeps these comparisons are unpredictable and a mispredicted branch costs more than the
// whole search step.
template <typename Step, typename V>
inline size_t count_at_or_below(const Step* s, size_t n, V v) {
  if (n == 0) return 0;
  const Step* base = s;
  while (n > 1) {
    const size_t half = n / 2;
    base += half & (size_t{0} - (base[half - 1].a <= v));
    n -= half;
  }
  return static_cast<size_t>(base - s) + (base->a <= v);
}

// M = 3: front k dominates p iff some member q has (q1, q2) <= (p1, p2). Only the 2-D minima of
// a front's (f1, f2) matter: they form a staircase, f1 increasing and f2 decreasing, and the
// test is one binary search for the last step with f1 <= p1. Inserting into the middle of a
// staircase moves its tail; adversarial inputs can make that quadratic, so the moves are
// counted and the method gives up (returns false) once they exceed `budget`.
template <typename K>
bool rank_staircase3(const K* pts, int64_t U, int32_t* rank, int64_t budget) {
  struct Step {
    K a, b;
  };
  std::vector<std::vector<Step>> fronts;
  int64_t work = 0;
  for (int64_t i = 0; i < U; ++i) {
    const K a = pts[2 * i], b = pts[2 * i + 1];
    int64_t lo = 0, hi = static_cast<int64_t>(fronts.size());
    size_t u_hi = 0;  // the search result on front hi, once it was probed
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      const auto& s = fronts[mid];
      const size_t u = count_at_or_below(s.data(), s.size(), a);
      const int64_t dominated = u > 0 && s[u - 1].b <= b;
      lo += dominated * (mid + 1 - lo);
      hi -= (1 - dominated) * (hi - mid);
      u_hi = dominated ? u_hi : u;
    }
    if (lo == static_cast<int64_t>(fronts.size())) fronts.emplace_back();
    auto& s = fronts[lo];
    // p is not dominated by its front, so the steps it dominates follow it contiguously. Front
    // lo was probed last when it set hi (unless it is new and empty), which gives the number
    // of steps at or before a; the steps' a are distinct.
    auto pos = s.begin() + (u_hi - (u_hi > 0 && s[u_hi - 1].a == a));
    auto end = pos;
    while (end != s.end() && end->b >= b) ++end;
    if (end != pos) {
      *pos = {a, b};
      work += s.end() - end;
      s.erase(pos + 1, end);
    } else {
      work += s.end() - pos;
      s.insert(pos, {a, b});
    }
    if (work > budget) return false;
    rank[i] = static_cast<int32_t>(lo);
  }
  return true;
}

// ------------------------------------------------------------------------------------------
// M >= 3: divide and conquer.
//
// Points are identified by their position in the sorted order (ids), which stands in for
// objective 0; coordinates c = 0..D-1 hold objectives 1..D. Sets of ids are always kept in
// increasing order. rank[] only grows, by rank[h] = max(rank[h], rank[l] + 1) for l dominating
// h, so the result does not depend on the order of independent updates.
//
//   solve(S, k): all points of S are equal on coordinates >= k; ranks S within itself (on top
//     of what S already received from outside).
//   update(L, H, k): ranks of L are final and every l <= every h on coordinates >= k; applies
//     the domination of L over H decided by the id order and coordinates < k.
//
// Both split at the median of coordinate k - 1 and recurse on k - 1 for pairs whose order on
// it is settled. Leaves: small solves and updates compare all pairs on local int32 copies
// (structure of arrays) with branch-free kernels that vectorise (AVX2 where the CPU has it);
// an update with one coordinate left is a sweep in id order over the minima of coordinate 0
// per rank. With several threads, helper threads take independent parts of large updates.
// Memory comes from stack-like arenas and scratch vectors that only grow, so calls rarely
// allocate.

// A stack allocator: memory from `alloc` stays valid until `release` of an earlier mark.
template <typename V>
class Arena {
 public:
  struct Mark {
    size_t block, used;
  };
  explicit Arena(size_t first_block) { blocks_.push_back({std::make_unique<V[]>(first_block), first_block, 0}); }
  V* alloc(size_t n) {
    while (blocks_[cur_].used + n > blocks_[cur_].cap) {
      if (cur_ + 1 == blocks_.size()) {
        size_t cap = std::max(n, 2 * blocks_[cur_].cap);
        blocks_.push_back({std::make_unique<V[]>(cap), cap, 0});
      }
      blocks_[++cur_].used = 0;
    }
    V* p = blocks_[cur_].mem.get() + blocks_[cur_].used;
    blocks_[cur_].used += n;
    return p;
  }
  Mark mark() const { return {cur_, blocks_[cur_].used}; }
  void release(Mark m) {
    cur_ = m.block;
    blocks_[cur_].used = m.used;
  }

 private:
  struct Block {
    std::unique_ptr<V[]> mem;
    size_t cap, used;
  };
  std::vector<Block> blocks_;
  size_t cur_ = 0;
};

// The coordinates of the divide and conquer: objectives 1..D of the distinct points replaced
// by their dense ranks (int32, one array per objective), so that the scans over a set of ids
// read one small array in increasing address order.
template <typename K>
std::vector<std::vector<int32_t>> dense_columns(const K* pts, int64_t U, int D, int threads) {
  std::vector<std::vector<int32_t>> cols(D, std::vector<int32_t>(U));
  parallel_for(D, U >= 20000 ? threads : 1, 1, [&](int64_t c0, int64_t c1, int) {
    if constexpr (sizeof(K) == 8) {
      // Sort by the high 32 bits (half the passes over half the bytes), then order the rare
      // runs that agree on them by the whole key.
      std::vector<KeyIdx<uint32_t>> items(U), tmp;
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t i = 0; i < U; ++i)
          items[i] = {static_cast<uint32_t>(static_cast<uint64_t>(pts[i * D + c]) >> 32), static_cast<uint32_t>(i)};
        radix_sort(items.data(), U, tmp);
        auto full = [&](const KeyIdx<uint32_t>& e) { return pts[e.idx * D + c]; };
        for (int64_t b = 0; b < U;) {
          int64_t e = b + 1;
          while (e < U && items[e].key == items[b].key) ++e;
          if (e - b > 1)
            std::sort(items.begin() + b, items.begin() + e,
                      [&](const KeyIdx<uint32_t>& x, const KeyIdx<uint32_t>& y) { return full(x) < full(y); });
          b = e;
        }
        int32_t r = 0;
        for (int64_t i = 0; i < U; ++i) {
          r += i > 0 && full(items[i]) != full(items[i - 1]);
          cols[c][items[i].idx] = r;
        }
      }
      return;
    }
    std::vector<KeyIdx<K>> items(U), tmp;
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t i = 0; i < U; ++i) items[i] = {pts[i * D + c], static_cast<uint32_t>(i)};
      radix_sort(items.data(), U, tmp);
      int32_t r = 0;
      for (int64_t i = 0; i < U; ++i) {
        r += i > 0 && items[i].key != items[i - 1].key;
        cols[c][items[i].idx] = r;
      }
    }
  });
  return cols;
}

// Brute-force kernels on local structure-of-arrays copies: int32 compares folded into a mask
// and a maximum, without branches, so that the loop over L vectorises.
//
// The all-pairs update on local copies: lr[i] is the rank of l_i and lr[(c + 1) nl + i] its
// coordinate c; hv[j k + c] is coordinate c of h_j, and h_j may be dominated by l_i for
// i < io[j]. io[j] becomes 1 + the highest rank of an l dominating h_j, or 0 (in place).
template <int K>
inline __attribute__((always_inline)) void brute_body(const int32_t* lr, int64_t nl, const int32_t* hv,
                                                      int64_t* io, int64_t nh) {
  const int32_t* lc[K];
  for (int c = 0; c < K; ++c) lc[c] = lr + (c + 1) * nl;
  int64_t j = 0;
  // Two h at a time share the loads of l over the shorter prefix (io[j] <= io[j + 1]).
  for (; j + 1 < nh; j += 2) {
    int32_t h0[K], h1[K];
    for (int c = 0; c < K; ++c) h0[c] = hv[j * K + c], h1[c] = hv[(j + 1) * K + c];
    const int64_t n0 = io[j], n1 = io[j + 1];
    int32_t b0 = -1, b1 = -1;
    for (int64_t i = 0; i < n0; ++i) {
      int32_t bad0 = 0, bad1 = 0;
      for (int c = 0; c < K; ++c) {
        bad0 |= -static_cast<int32_t>(lc[c][i] > h0[c]);
        bad1 |= -static_cast<int32_t>(lc[c][i] > h1[c]);
      }
      const int32_t v0 = lr[i] | bad0, v1 = lr[i] | bad1;
      b0 = b0 > v0 ? b0 : v0;
      b1 = b1 > v1 ? b1 : v1;
    }
    for (int64_t i = n0; i < n1; ++i) {
      int32_t bad1 = 0;
      for (int c = 0; c < K; ++c) bad1 |= -static_cast<int32_t>(lc[c][i] > h1[c]);
      const int32_t v1 = lr[i] | bad1;
      b1 = b1 > v1 ? b1 : v1;
    }
    io[j] = b0 + 1;
    io[j + 1] = b1 + 1;
  }
  for (; j < nh; ++j) {
    int32_t h[K];
    for (int c = 0; c < K; ++c) h[c] = hv[j * K + c];
    const int64_t n = io[j];
    int32_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      int32_t bad = 0;
      for (int c = 0; c < K; ++c) bad |= -static_cast<int32_t>(lc[c][i] > h[c]);
      const int32_t v = lr[i] | bad;  // -1 unless l_i dominates h_j
      best = best > v ? best : v;
    }
    io[j] = best + 1;
  }
}

// On x86-64 with glibc (ifunc), the kernels also get an AVX2 version picked at load time.
#define EF_BRUTE_K(K)                                                                             \
  EVOFORGE_CLONES_AVX2 void brute_k##K(const int32_t* lr, int64_t nl, const int32_t* hv, int64_t* io, int64_t nh) { \
    brute_body<K>(lr, nl, hv, io, nh);                                                            \
  }
EF_BRUTE_K(1)
EF_BRUTE_K(2)
EF_BRUTE_K(3)
EF_BRUTE_K(4)
EF_BRUTE_K(5)
EF_BRUTE_K(6)
EF_BRUTE_K(7)
EF_BRUTE_K(8)
#undef EF_BRUTE_K

void brute_kernel(int k, const int32_t* lr, int64_t nl, const int32_t* hv, int64_t* io, int64_t nh) {
  switch (k) {
    case 1: return brute_k1(lr, nl, hv, io, nh);
    case 2: return brute_k2(lr, nl, hv, io, nh);
    case 3: return brute_k3(lr, nl, hv, io, nh);
    case 4: return brute_k4(lr, nl, hv, io, nh);
    case 5: return brute_k5(lr, nl, hv, io, nh);
    case 6: return brute_k6(lr, nl, hv, io, nh);
    case 7: return brute_k7(lr, nl, hv, io, nh);
    case 8: return brute_k8(lr, nl, hv, io, nh);
  }
  for (int64_t j = 0; j < nh; ++j) {
    const int64_t n = io[j];
    int32_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      bool ok = true;
      for (int c = 0; c < k && ok; ++c) ok = lr[(c + 1) * nl + i] <= hv[j * k + c];
      if (ok) best = std::max(best, lr[i]);
    }
    io[j] = best + 1;
  }
}

// The all-pairs solve on a local copy laid out as for brute_body (hv holds the same points as
// lr); lr[j] is raised in place, in order.
template <int K>
inline __attribute__((always_inline)) void brute_solve_body(int32_t* lr, int64_t n, const int32_t* hv) {
  const int32_t* lc[K];
  for (int c = 0; c < K; ++c) lc[c] = lr + (c + 1) * n;
  for (int64_t j = 1; j < n; ++j) {
    int32_t h[K];
    for (int c = 0; c < K; ++c) h[c] = hv[j * K + c];
    int32_t best = -1;
    for (int64_t i = 0; i < j; ++i) {
      int32_t bad = 0;
      for (int c = 0; c < K; ++c) bad |= -static_cast<int32_t>(lc[c][i] > h[c]);
      const int32_t v = lr[i] | bad;
      best = best > v ? best : v;
    }
    lr[j] = std::max(lr[j], best + 1);
  }
}
#define EF_BRUTE_SOLVE_K(K) \
  EVOFORGE_CLONES_AVX2 void brute_solve_k##K(int32_t* lr, int64_t n, const int32_t* hv) { brute_solve_body<K>(lr, n, hv); }
EF_BRUTE_SOLVE_K(1)
EF_BRUTE_SOLVE_K(2)
EF_BRUTE_SOLVE_K(3)
EF_BRUTE_SOLVE_K(4)
EF_BRUTE_SOLVE_K(5)
EF_BRUTE_SOLVE_K(6)
EF_BRUTE_SOLVE_K(7)
EF_BRUTE_SOLVE_K(8)
#undef EF_BRUTE_SOLVE_K

void brute_solve_kernel(int k, int32_t* lr, int64_t n, const int32_t* hv) {
  switch (k) {
    case 1: return brute_solve_k1(lr, n, hv);
    case 2: return brute_solve_k2(lr, n, hv);
    case 3: return brute_solve_k3(lr, n, hv);
    case 4: return brute_solve_k4(lr, n, hv);
    case 5: return brute_solve_k5(lr, n, hv);
    case 6: return brute_solve_k6(lr, n, hv);
    case 7: return brute_solve_k7(lr, n, hv);
    case 8: return brute_solve_k8(lr, n, hv);
  }
  for (int64_t j = 1; j < n; ++j)
    for (int64_t i = 0; i < j; ++i) {
      bool ok = true;
      for (int c = 0; c < k && ok; ++c) ok = lr[(c + 1) * n + i] <= hv[j * k + c];
      if (ok) lr[j] = std::max(lr[j], lr[i] + 1);
    }
}

// Shared state of one divide and conquer run. With several threads, a part of an update that
// is independent of the rest is offered in a single slot; an idle thread (a helper, or one
// waiting for its own offer to finish) takes and runs it.
class DivideConquer;
struct DCTask {
  void (*fn)(void* ctx, DivideConquer& w);
  void* ctx;
  std::atomic<bool> done{false};
  std::exception_ptr err;
};

struct DCShared {
  std::vector<const int32_t*> col;  // col[c][id]
  int32_t* rank;
  std::atomic<DCTask*> slot{nullptr};
  std::atomic<int> idle{0};  // threads looking for a task
  std::atomic<bool> stop{false};
};

inline void cpu_relax(int& spins) {
  if (++spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    spins = 0;
    std::this_thread::yield();
  }
}

class DivideConquer {
 public:
  DivideConquer(DCShared& s, size_t n_hint) : s_(s), rank_(s.rank), ids_(4 * n_hint + 1024), vals_(n_hint + 1024) {}

  void run(int64_t U, int D) {
    int32_t* all = ids_.alloc(U);
    std::iota(all, all + U, 0);
    solve(all, U, D);
  }

 private:
  // Cut-overs, measured at N = 1e5, M = 4..6 on uniform, simplex and correlated points.
  static constexpr int64_t kBruteSolve = 128;      // solve() by all pairs up to this size
  static constexpr int64_t kBrutePairs = 131072;   // update() by all pairs up to |L| |H|
  static constexpr int64_t kBruteSide = 16;        // ... or when |L| or |H| is this small
  static constexpr int64_t kBruteCopy = 8;         // ... on copies when |H| exceeds this
  static constexpr int64_t kParallelMin = 1024;    // update() offers a part from this |L| + |H|

  // q dominates p on coordinates < k (q is before p).
  bool dominates(int32_t q, int32_t p, int k) const {
    for (int c = 0; c < k; ++c)
      if (s_.col[c][q] > s_.col[c][p]) return false;
    return true;
  }

  // Splits S (ids in order, v[i] = coordinate of S[i]) against m into out = [< m | == m | > m],
  // each in order; returns the sizes of the first two parts. Branch-free: the class of an
  // element is unpredictable, so it is stored at the cursor of its class picked
  // arithmetically, and only that cursor advances.
  static std::pair<int64_t, int64_t> split(const int32_t* S, const int32_t* v, int64_t n, int32_t m, int32_t* out) {
    int64_t nl = 0, ne = 0;
    for (int64_t i = 0; i < n; ++i) {
      nl += v[i] < m;
      ne += v[i] == m;
    }
    int64_t pl = 0, pe = nl, ph = nl + ne;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t lt = v[i] < m, gt = v[i] > m, eq = 1 - lt - gt;
      out[lt * pl + eq * pe + gt * ph] = S[i];
      pl += lt;
      pe += eq;
      ph += gt;
    }
    return {nl, ne};
  }

  // A pivot among v[0, n): the median of a small sample, which is cheap and splits typical
  // data well; the exact median is the fallback that keeps the recursion depth logarithmic
  // when the sample misleads (see balanced()).
  static int32_t sample_median(const int32_t* v, int64_t n) {
    constexpr int kSample = 15;
    int32_t s[kSample];
    for (int i = 0; i < kSample; ++i) s[i] = v[(2 * i + 1) * n / (2 * kSample)];
    std::nth_element(s, s + kSample / 2, s + kSample);
    return s[kSample / 2];
  }
  int32_t exact_median(const int32_t* v, int64_t n) {
    auto vm = vals_.mark();
    int32_t* w = vals_.alloc(n);
    std::copy(v, v + n, w);
    std::nth_element(w, w + n / 2, w + n);
    const int32_t m = w[n / 2];
    vals_.release(vm);
    return m;
  }
  // v[i] = coordinate c of ids[i], in vals_.
  int32_t* gather(const int32_t* ids, int64_t n, int c, int32_t* v) const {
    const int32_t* col = s_.col[c];
    for (int64_t i = 0; i < n; ++i) v[i] = col[ids[i]];
    return v;
  }
  // Neither strict side may hold more than 15/16 of the points.
  static bool balanced(int64_t below, int64_t above, int64_t n) { return 16 * std::max(below, above) <= 15 * n; }

  void solve(const int32_t* S, int64_t n, int k) {
    if (n < 2) return;
    if (n <= kBruteSolve) {
      if (n <= 24) {
        for (int64_t i = 1; i < n; ++i)
          for (int64_t j = 0; j < i; ++j)
            if (rank_[S[j]] >= rank_[S[i]] && dominates(S[j], S[i], k)) rank_[S[i]] = rank_[S[j]] + 1;
        return;
      }
      return brute_solve_copy(S, n, k);
    }
    if (k == 1) return sweep_solve(S, n);
    // Each coordinate is gathered once: its range, the pivot and the split read the copy.
    auto vm = vals_.mark();
    const int32_t* v = gather(S, n, k - 1, vals_.alloc(n));
    int32_t lo = v[0], hi = lo;
    for (int64_t i = 1; i < n; ++i) {
      lo = std::min(lo, v[i]);
      hi = std::max(hi, v[i]);
    }
    if (lo == hi) {
      vals_.release(vm);
      return solve(S, n, k - 1);
    }
    auto im = ids_.mark();
    int32_t* P = ids_.alloc(n);
    int64_t nl, ne;
    std::tie(nl, ne) = split(S, v, n, sample_median(v, n), P);
    if (!balanced(nl, n - nl - ne, n)) std::tie(nl, ne) = split(S, v, n, exact_median(v, n), P);
    vals_.release(vm);
    const int64_t nh = n - nl - ne;
    int32_t *L = P, *E = P + nl, *H = P + nl + ne;
    solve(L, nl, k);
    update(L, nl, E, ne, k - 1);
    solve(E, ne, k - 1);
    int32_t* LE = ids_.alloc(nl + ne);
    std::merge(L, L + nl, E, E + ne, LE);
    update(LE, nl + ne, H, nh, k - 1);
    solve(H, nh, k);
    ids_.release(im);
  }

  void update(const int32_t* L, int64_t nl, const int32_t* H, int64_t nh, int k) {
    if (nl == 0 || nh == 0) return;
    auto im = ids_.mark();
    // rank[h] can only rise to rank[l] + 1: drop the h already above every l and the l too
    // low to raise any h.
    int32_t max_l = rank_[L[0]], min_h = rank_[H[0]];
    for (int64_t i = 1; i < nl; ++i) max_l = std::max(max_l, rank_[L[i]]);
    for (int64_t i = 1; i < nh; ++i) min_h = std::min(min_h, rank_[H[i]]);
    if (min_h > max_l) return;
    if (min_h > 0 && rank_[L[0]] < min_h - 1) {
      int32_t* f = ids_.alloc(nl);
      int64_t m = 0;
      for (int64_t i = 0; i < nl; ++i) f[m] = L[i], m += rank_[L[i]] >= min_h - 1;
      L = f, nl = m;
    }
    if (rank_[H[nh - 1]] > max_l) {
      int32_t* f = ids_.alloc(nh);
      int64_t m = 0;
      for (int64_t i = 0; i < nh; ++i) f[m] = H[i], m += rank_[H[i]] <= max_l;
      H = f, nh = m;
    }
    update_filtered(L, nl, H, nh, k);
    ids_.release(im);
  }

  void update_filtered(const int32_t* L, int64_t nl, const int32_t* H, int64_t nh, int k) {
    if (nl * nh <= kBrutePairs || std::min(nl, nh) <= kBruteSide) return brute_update(L, nl, H, nh, k);
    if (k == 1) return sweep_update(L, nl, H, nh);
    auto vm = vals_.mark();
    int32_t* lv = gather(L, nl, k - 1, vals_.alloc(nl + nh));
    int32_t* hv = gather(H, nh, k - 1, lv + nl);
    int32_t lmin = lv[0], lmax = lmin, hmin = hv[0], hmax = hmin;
    for (int64_t i = 1; i < nl; ++i) {
      lmin = std::min(lmin, lv[i]);
      lmax = std::max(lmax, lv[i]);
    }
    for (int64_t i = 1; i < nh; ++i) {
      hmin = std::min(hmin, hv[i]);
      hmax = std::max(hmax, hv[i]);
    }
    if (lmax <= hmin || lmin > hmax) {
      vals_.release(vm);
      if (lmax <= hmin) update(L, nl, H, nh, k - 1);
      return;
    }
    auto im = ids_.mark();
    int32_t* PL = ids_.alloc(nl);
    int32_t* PH = ids_.alloc(nh);
    int32_t m = sample_median(lv, nl + nh);  // lv and hv are adjacent
    int64_t ll, le, hl, he;
    std::tie(ll, le) = split(L, lv, nl, m, PL);
    std::tie(hl, he) = split(H, hv, nh, m, PH);
    if (!balanced(ll + hl, nl - ll - le + nh - hl - he, nl + nh)) {
      m = exact_median(lv, nl + nh);
      std::tie(ll, le) = split(L, lv, nl, m, PL);
      std::tie(hl, he) = split(H, hv, nh, m, PH);
    }
    vals_.release(vm);
    const int64_t lg = nl - ll - le, hg = nh - hl - he;
    int32_t* LM = ids_.alloc(ll + le);  // L< and L= in id order
    std::merge(PL, PL + ll, PL + ll, PL + ll + le, LM);
    int32_t* HM = ids_.alloc(he + hg);  // H= and H> in id order
    std::merge(PH + hl, PH + hl + he, PH + hl + he, PH + nh, HM);
    // The first call writes only H<, the other two only H= and H>, and none reads what
    // another writes, so the first may run on another thread.
    auto low = [&](DivideConquer& w) { w.update(PL, ll, PH, hl, k); };
    auto rest = [&] {
      update(LM, ll + le, HM, he + hg, k - 1);
      update(PL + ll + le, lg, PH + hl + he, hg, k);
    };
    if (ll + hl >= kParallelMin && s_.idle.load(std::memory_order_relaxed) > 0) {
      fork_join(low, rest);
    } else {
      low(*this);
      rest();
    }
    ids_.release(im);
  }

  // update() by all pairs. L is copied into local columns so that the inner loop over L is a
  // branch-free, vectorisable maximum over the l that dominate h.
  // L and H are copied into local columns (rank and coordinates < k) so that the loop over L is
  // a branch-free, vectorised maximum over the l that dominate h (see brute_kernel).
  void brute_update_copy(const int32_t* L, int64_t nl, const int32_t* H, int64_t nh, int k) {
    bl_.resize(static_cast<size_t>((k + 1) * nl));
    bh_.resize(static_cast<size_t>(k * nh));
    bend_.resize(static_cast<size_t>(nh));
    int32_t* lr = bl_.data();
    for (int64_t i = 0; i < nl; ++i) lr[i] = rank_[L[i]];
    for (int c = 0; c < k; ++c) {
      const int32_t* col = s_.col[c];
      int32_t* dst = lr + (c + 1) * nl;
      for (int64_t i = 0; i < nl; ++i) dst[i] = col[L[i]];
      for (int64_t j = 0; j < nh; ++j) bh_[j * k + c] = col[H[j]];
    }
    for (int64_t j = 0, i_end = 0; j < nh; ++j) {
      while (i_end < nl && L[i_end] < H[j]) ++i_end;
      bend_[j] = i_end;
    }
    brute_kernel(k, lr, nl, bh_.data(), bend_.data(), nh);
    for (int64_t j = 0; j < nh; ++j) rank_[H[j]] = std::max(rank_[H[j]], static_cast<int32_t>(bend_[j]));
  }
  // solve() by all pairs on a local copy, in order: point j is final once the points before it
  // have been compared with it.
  void brute_solve_copy(const int32_t* S, int64_t n, int k) {
    bl_.resize(static_cast<size_t>((k + 1) * n));
    bh_.resize(static_cast<size_t>(k * n));
    int32_t* lr = bl_.data();
    for (int64_t i = 0; i < n; ++i) lr[i] = rank_[S[i]];
    for (int c = 0; c < k; ++c) {
      const int32_t* col = s_.col[c];
      int32_t* dst = lr + (c + 1) * n;
      for (int64_t i = 0; i < n; ++i) dst[i] = bh_[i * k + c] = col[S[i]];
    }
    brute_solve_kernel(k, lr, n, bh_.data());
    for (int64_t i = 0; i < n; ++i) rank_[S[i]] = lr[i];
  }

  void brute_update(const int32_t* L, int64_t nl, const int32_t* H, int64_t nh, int k) {
    if (nh <= kBruteCopy) {
      for (int64_t j = 0, i_end = 0; j < nh; ++j) {
        const int32_t h = H[j];
        while (i_end < nl && L[i_end] < h) ++i_end;
        for (int64_t i = 0; i < i_end; ++i)
          if (rank_[L[i]] >= rank_[h] && dominates(L[i], h, k)) rank_[h] = rank_[L[i]] + 1;
      }
      return;
    }
    brute_update_copy(L, nl, H, nh, k);
  }

  // Offers low(w) to another thread while this one runs rest(); runs low itself if nobody took
  // it, and helps with other offers while it waits.
  template <typename Low, typename Rest>
  void fork_join(Low& low, Rest& rest) {
    DCTask t;
    t.fn = [](void* ctx, DivideConquer& w) { (*static_cast<Low*>(ctx))(w); };
    t.ctx = &low;
    DCTask* expected = nullptr;
    if (!s_.slot.compare_exchange_strong(expected, &t)) {
      low(*this);
      rest();
      return;
    }
    try {
      rest();
    } catch (...) {
      join(t);
      throw;
    }
    join(t);
    if (t.err) std::rethrow_exception(t.err);
  }

 public:
  void execute(DCTask& t) {
    try {
      t.fn(t.ctx, *this);
    } catch (...) {
      t.err = std::current_exception();
    }
    t.done.store(true, std::memory_order_release);
  }
  // A helper thread: runs offered tasks until stop.
  void serve() {
    s_.idle.fetch_add(1);
    for (int spins = 0; !s_.stop.load(std::memory_order_acquire);) {
      if (take_any()) {
        spins = 0;
        continue;
      }
      cpu_relax(spins);
    }
    s_.idle.fetch_sub(1);
  }

 private:
  bool take_any() {
    DCTask* o = s_.slot.load(std::memory_order_acquire);
    if (!o || !s_.slot.compare_exchange_strong(o, nullptr)) return false;
    s_.idle.fetch_sub(1);
    execute(*o);
    s_.idle.fetch_add(1);
    return true;
  }
  void join(DCTask& t) {
    DCTask* expected = &t;
    if (s_.slot.compare_exchange_strong(expected, nullptr)) return execute(t);
    s_.idle.fetch_add(1);
    for (int spins = 0; !t.done.load(std::memory_order_acquire);) {
      if (take_any()) {
        spins = 0;
        continue;
      }
      cpu_relax(spins);
    }
    s_.idle.fetch_sub(1);
  }

  // Staircase for the sweeps on coordinate 0: steps (a, r) with a increasing and r strictly
  // increasing; the best rank among inserted points with coordinate <= a is the last step
  // at or before a.
  struct Step {
    int32_t a, r;
  };
  int32_t stair_query(int32_t a) const {  // -1 when nothing is at or before a
    const size_t u = count_at_or_below(stair_.data(), stair_.size(), a);
    return u == 0 ? -1 : stair_[u - 1].r;
  }
  void stair_insert(int32_t a, int32_t r) {
    auto pos = std::lower_bound(stair_.begin(), stair_.end(), a, [](const Step& e, int32_t v) { return e.a < v; });
    if (pos != stair_.begin() && std::prev(pos)->r >= r) return;
    auto end = pos;
    while (end != stair_.end() && end->r <= r) ++end;
    if (end != pos) {
      *pos = {a, r};
      stair_.erase(pos + 1, end);
    } else {
      stair_.insert(pos, {a, r});
    }
  }

  void sweep_solve(const int32_t* S, int64_t n) {
    const int32_t* col = s_.col[0];
    stair_.clear();
    for (int64_t i = 0; i < n; ++i) {
      const int32_t p = S[i];
      rank_[p] = std::max(rank_[p], stair_query(col[p]) + 1);
      stair_insert(col[p], rank_[p]);
    }
  }

  // k = 1: for each rank r of L, lo[r - r0] = the smallest coordinate among the l inserted so far
  // with rank >= r. It does not decrease with r, so the best rank at or below h is one
  // branch-free search; an insertion lowers a run of entries ending at its rank.
  void sweep_update(const int32_t* L, int64_t nl, const int32_t* H, int64_t nh) {
    const int32_t* col = s_.col[0];
    int32_t r0 = rank_[L[0]], r1 = r0;
    for (int64_t i = 1; i < nl; ++i) {
      r0 = std::min(r0, rank_[L[i]]);
      r1 = std::max(r1, rank_[L[i]]);
    }
    lo_.assign(static_cast<size_t>(r1 - r0 + 1), std::numeric_limits<int32_t>::max());
    int32_t* lo = lo_.data();
    const size_t nr = lo_.size();
    int64_t i = 0;
    for (int64_t j = 0; j < nh; ++j) {
      const int32_t h = H[j];
      for (; i < nl && L[i] < h; ++i) {
        const int32_t a = col[L[i]];
        for (int64_t t = rank_[L[i]] - r0; t >= 0 && lo[t] > a; --t) lo[t] = a;
      }
      const int32_t a = col[h];
      const int32_t* base = lo;
      for (size_t len = nr; len > 1;) {
        const size_t half = len / 2;
        base += half & (size_t{0} - (base[half - 1] <= a));
        len -= half;
      }
      const int32_t cnt = static_cast<int32_t>(base - lo) + (*base <= a);
      rank_[h] = std::max(rank_[h], cnt == 0 ? 0 : r0 + cnt);
    }
  }

  DCShared& s_;
  int32_t* rank_;
  Arena<int32_t> ids_;
  Arena<int32_t> vals_;
  std::vector<Step> stair_;
  std::vector<int32_t> bl_, bh_;  // brute_update_copy's copies of L and H
  std::vector<int64_t> bend_;
  std::vector<int32_t> lo_;  // sweep_update's minima by rank
};

constexpr int64_t kParallelMinPoints = 1 << 14;  // helper threads from this many points

template <typename K>
void rank_divide_conquer(const K* pts, int64_t U, int D, int32_t* rank, int threads) {
  auto cols = dense_columns(pts, U, D, threads);
  DCShared s;
  for (auto& c : cols) s.col.push_back(c.data());
  s.rank = rank;
  const int helpers = U >= kParallelMinPoints ? threads - 1 : 0;
  std::vector<std::thread> pool;
  struct Stop {
    DCShared& s;
    std::vector<std::thread>& pool;
    ~Stop() {
      s.stop.store(true, std::memory_order_release);
      for (auto& t : pool) t.join();
    }
  } stop{s, pool};
  try {  // helpers only steal work: fewer of them (a thread limit) changes nothing but speed
    for (int h = 0; h < helpers; ++h)
      pool.emplace_back([&s, U] {
        DivideConquer w(s, U / 2);
        w.serve();
      });
  } catch (const std::system_error&) {
  }
  DivideConquer(s, U).run(U, D);
}

// Ranks the distinct, lexicographically sorted points; returns the number of fronts.
template <typename K>
int32_t rank_sorted_unique(const K* pts, int64_t U, int64_t M, int32_t* rank, int threads) {
  if (U == 0) return 0;
  if (M == 1) {
    for (int64_t i = 0; i < U; ++i) rank[i] = static_cast<int32_t>(i);
    return static_cast<int32_t>(U);
  }
  if (M == 2) return rank_sweep2(pts, U, rank);
  bool done = false;
  if (M == 3) {
    int64_t log_u = 1;
    while ((int64_t{1} << log_u) < U) ++log_u;
    done = rank_staircase3(pts, U, rank, 4 * U * log_u * log_u);
  }
  if (!done) {
    std::fill(rank, rank + U, 0);
    rank_divide_conquer(pts, U, static_cast<int>(M - 1), rank, threads);
  }
  return *std::max_element(rank, rank + U) + 1;
}

// Ranks the rows idx of F into rank[idx[k]] + offset; returns the number of fronts.
template <typename T>
int32_t rank_rows(const T* F, int64_t M, const std::vector<int64_t>& idx, int32_t offset,
                  int32_t* rank, int threads) {
  if (idx.empty()) return 0;
  auto su = sort_unique(F, M, idx);
  std::vector<int32_t> r(static_cast<size_t>(su.U));
  int32_t fronts = rank_sorted_unique(su.pts.data(), su.U, M, r.data(), threads);
  for (size_t k = 0; k < idx.size(); ++k) rank[idx[k]] = r[su.group[k]] + offset;
  return fronts;
}

}  // namespace

template <typename T>
void nondominated_rank_cpu(const T* F, int64_t N, int64_t M, const T* cv, int32_t* rank,
                           int num_threads) {
  EVOFORGE_CHECK(N >= 0 && M >= 1, "F must have shape [N, M] with M >= 1, got [" << N << ", " << M << "]");
  check_finite_or_inf(F, N, M, "F");
  if (cv) check_finite_or_inf(cv, N, 1, "constraint_violation");
  const int threads = resolve_threads(num_threads);
  std::vector<int64_t> feasible, infeasible;
  feasible.reserve(N);
  for (int64_t i = 0; i < N; ++i) (cv && cv[i] > 0 ? infeasible : feasible).push_back(i);
  int32_t fronts = rank_rows(F, M, feasible, 0, rank, threads);
  if (!infeasible.empty()) rank_rows(cv, 1, infeasible, fronts, rank, threads);
}

template <typename T>
void crowding_distance_cpu(const T* F, int64_t N, int64_t M, const int32_t* rank, double* out,
                           int num_threads) {
  EVOFORGE_CHECK(N >= 0 && M >= 1, "F must have shape [N, M] with M >= 1");
  check_finite_or_inf(F, N, M, "F");
  int32_t max_rank = -1;
  for (int64_t i = 0; i < N; ++i) {
    EVOFORGE_CHECK(rank[i] >= 0, "ranks must be >= 0, got " << rank[i] << " in row " << i);
    max_rank = std::max(max_rank, rank[i]);
  }
  // Fronts are numbered densely (0 .. n_fronts - 1) so that memory grows with the number of
  // fronts present, not with the largest label: ranks such as {0, 5, 2**31 - 1} are legal.
  std::vector<int32_t> front(rank, rank + N);
  int64_t n_fronts = int64_t{max_rank} + 1;
  if (n_fronts > N) {
    std::vector<int32_t> labels(front);
    std::sort(labels.begin(), labels.end());
    labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
    for (auto& f : front)
      f = static_cast<int32_t>(std::lower_bound(labels.begin(), labels.end(), f) - labels.begin());
    n_fronts = static_cast<int64_t>(labels.size());
  }
  // Counting sort of the points by front keeps each front in index order.
  std::vector<int64_t> start(static_cast<size_t>(n_fronts) + 1, 0);
  for (int64_t i = 0; i < N; ++i) ++start[front[i] + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<int64_t> members(N);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < N; ++i) members[fill[front[i]]++] = i;
  }
  std::fill(out, out + N, 0.0);
  const double inf = std::numeric_limits<double>::infinity();
  // Threads pay for themselves only on large populations (a generation of NSGA-II is often
  // a few hundred points, where starting a thread costs more than the whole call).
  const int threads = N >= 32768 ? resolve_threads(num_threads) : 1;
  parallel_for(n_fronts, threads, 1, [&](int64_t f0, int64_t f1, int) {
    // Members are in index order and the radix sort is stable, so ties stay in index order.
    std::vector<KeyIdx<KeyOf<T>>> items, tmp;
    for (int64_t f = f0; f < f1; ++f) {
      const int64_t* mem = members.data() + start[f];
      const int64_t n = start[f + 1] - start[f];
      if (n <= 2) {
        for (int64_t k = 0; k < n; ++k) out[mem[k]] = inf;
        continue;
      }
      items.resize(n);
      for (int64_t j = 0; j < M; ++j) {
        for (int64_t k = 0; k < n; ++k) items[k] = {order_key(F[mem[k] * M + j]), static_cast<uint32_t>(k)};
        radix_sort(items.data(), n, tmp);
        auto val = [&](int64_t k) { return double(F[mem[items[k].idx] * M + j]); };
        const double lo = val(0), hi = val(n - 1);
        out[mem[items[0].idx]] = inf;
        out[mem[items[n - 1].idx]] = inf;
        const double range = hi - lo;
        if (!(range > 0) || std::isinf(range)) continue;
        double prev = lo, cur = val(1);
        for (int64_t k = 1; k + 1 < n; ++k) {
          const double next = val(k + 1);
          out[mem[items[k].idx]] += (next - prev) / range;
          prev = cur;
          cur = next;
        }
      }
    }
  });
}

template void nondominated_rank_cpu<float>(const float*, int64_t, int64_t, const float*, int32_t*, int);
template void nondominated_rank_cpu<double>(const double*, int64_t, int64_t, const double*, int32_t*, int);
template void crowding_distance_cpu<float>(const float*, int64_t, int64_t, const int32_t*, double*, int);
template void crowding_distance_cpu<double>(const double*, int64_t, int64_t, const int32_t*, double*, int);

}  // namespace evoforge
