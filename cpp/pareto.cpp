// Pareto ranking on the CPU.
//
// Every method works on the distinct points sorted lexicographically: then a point can only be
// dominated by points before it, and among distinct points "q before p and q <= p in every
// objective" already means that q dominates p. Duplicates are collapsed first and share a rank.
#include "evoforge/pareto.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "evoforge/common.h"

namespace evoforge {
namespace {

template <typename T>
void check_finite_or_inf(const T* x, int64_t rows, int64_t cols, const char* name) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      if (std::isnan(x[i * cols + j]))
        EVOFORGE_THROW(std::invalid_argument, name << " holds NaN in row " << i);
}

// Lexicographically sorted distinct rows of F[idx]. group[k] = position of F[idx[k]] in pts.
template <typename T>
struct SortedUnique {
  std::vector<T> pts;          // [U, M]
  std::vector<int64_t> group;  // [len(idx)]
  int64_t U = 0;
};

template <typename T>
SortedUnique<T> sort_unique(const T* F, int64_t M, const std::vector<int64_t>& idx) {
  const int64_t n = static_cast<int64_t>(idx.size());
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t{0});
  auto row = [&](int64_t k) { return F + idx[k] * M; };
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const T* x = row(a);
    const T* y = row(b);
    for (int64_t j = 0; j < M; ++j) {
      if (x[j] < y[j]) return true;
      if (y[j] < x[j]) return false;
    }
    return a < b;
  });
  SortedUnique<T> out;
  out.group.resize(n);
  out.pts.reserve(static_cast<size_t>(n * M));
  const T* prev = nullptr;
  for (int64_t k = 0; k < n; ++k) {
    const T* x = row(order[k]);
    // == treats -0.0 and 0.0 as equal, as the ranking must.
    bool same = prev != nullptr && std::equal(x, x + M, prev);
    if (!same) {
      for (int64_t j = 0; j < M; ++j) out.pts.push_back(x[j] + T(0));  // -0.0 -> 0.0
      ++out.U;
      prev = x;
    }
    out.group[order[k]] = out.U - 1;
  }
  return out;
}

// M = 2: one sweep. Among the fronts built so far, the smallest f1 of front k (its last point)
// does not decrease with k, so the first front that does not dominate p is a binary search.
template <typename T>
int32_t rank_sweep2(const T* pts, int64_t U, int32_t* rank) {
  std::vector<T> front_min;  // front_min[k] = f1 of the last point put in front k
  for (int64_t i = 0; i < U; ++i) {
    T f1 = pts[2 * i + 1];
    auto it = std::upper_bound(front_min.begin(), front_min.end(), f1);
    int32_t k = static_cast<int32_t>(it - front_min.begin());
    if (it == front_min.end())
      front_min.push_back(f1);
    else
      *it = f1;
    rank[i] = k;
  }
  return static_cast<int32_t>(front_min.size());
}

template <typename T>
inline bool weakly_dominates(const T* q, const T* p, int64_t M) {
  for (int64_t j = 1; j < M; ++j)  // objective 0 is ordered by the sort
    if (q[j] > p[j]) return false;
  return true;
}

// M >= 3: efficient non-dominated sort with binary search over fronts (ENS-BS, Zhang et al.
// 2015). Front k dominates p implies front k-1 does, so the fronts are searched by bisection.
template <typename T>
int32_t rank_ens(const T* pts, int64_t U, int64_t M, int32_t* rank) {
  std::vector<std::vector<int64_t>> fronts;
  for (int64_t i = 0; i < U; ++i) {
    const T* p = pts + i * M;
    auto dominated_by = [&](const std::vector<int64_t>& front) {
      for (auto it = front.rbegin(); it != front.rend(); ++it)
        if (weakly_dominates(pts + *it * M, p, M)) return true;
      return false;
    };
    int64_t lo = 0, hi = static_cast<int64_t>(fronts.size());
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (dominated_by(fronts[mid]))
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo == static_cast<int64_t>(fronts.size())) fronts.emplace_back();
    fronts[lo].push_back(i);
    rank[i] = static_cast<int32_t>(lo);
  }
  return static_cast<int32_t>(fronts.size());
}

// Ranks the distinct, lexicographically sorted points; returns the number of fronts.
template <typename T>
int32_t rank_sorted_unique(const T* pts, int64_t U, int64_t M, int32_t* rank, int /*threads*/) {
  if (U == 0) return 0;
  if (M == 1) {
    for (int64_t i = 0; i < U; ++i) rank[i] = static_cast<int32_t>(i);
    return static_cast<int32_t>(U);
  }
  if (M == 2) return rank_sweep2(pts, U, rank);
  return rank_ens(pts, U, M, rank);
}

// Ranks the rows idx of F into rank[idx[k]] + offset; returns the number of fronts.
template <typename T>
int32_t rank_rows(const T* F, int64_t M, const std::vector<int64_t>& idx, int32_t offset,
                  int32_t* rank, int threads) {
  SortedUnique<T> su = sort_unique(F, M, idx);
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
  // Counting sort of the points by front keeps each front in index order.
  std::vector<int64_t> start(static_cast<size_t>(max_rank) + 2, 0);
  for (int64_t i = 0; i < N; ++i) ++start[rank[i] + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<int64_t> members(N);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < N; ++i) members[fill[rank[i]]++] = i;
  }
  std::fill(out, out + N, 0.0);
  const double inf = std::numeric_limits<double>::infinity();
  const int64_t n_fronts = max_rank + 1;
  parallel_for(n_fronts, resolve_threads(num_threads), 1, [&](int64_t f0, int64_t f1, int) {
    std::vector<int64_t> order;
    for (int64_t f = f0; f < f1; ++f) {
      const int64_t* mem = members.data() + start[f];
      const int64_t n = start[f + 1] - start[f];
      if (n <= 2) {
        for (int64_t k = 0; k < n; ++k) out[mem[k]] = inf;
        continue;
      }
      order.assign(mem, mem + n);
      for (int64_t j = 0; j < M; ++j) {
        std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
          T x = F[a * M + j], y = F[b * M + j];
          return x < y || (!(y < x) && a < b);
        });
        const double lo = F[order.front() * M + j], hi = F[order.back() * M + j];
        out[order.front()] = inf;
        out[order.back()] = inf;
        const double range = hi - lo;
        if (!(range > 0) || std::isinf(range)) continue;
        for (int64_t k = 1; k + 1 < n; ++k)
          out[order[k]] += (double(F[order[k + 1] * M + j]) - double(F[order[k - 1] * M + j])) / range;
      }
    }
  });
}

template void nondominated_rank_cpu<float>(const float*, int64_t, int64_t, const float*, int32_t*, int);
template void nondominated_rank_cpu<double>(const double*, int64_t, int64_t, const double*, int32_t*, int);
template void crowding_distance_cpu<float>(const float*, int64_t, int64_t, const int32_t*, double*, int);
template void crowding_distance_cpu<double>(const double*, int64_t, int64_t, const int32_t*, double*, int);

}  // namespace evoforge
