// Pareto ranking kernels (CPU). Minimisation throughout.
//
// Shapes: N points, M objectives; F is row-major [N, M].
#pragma once

#include <cstdint>

namespace evoforge {

/// Front index of every point (0 = non-dominated), constrained domination when cv != nullptr:
/// feasible points (cv <= 0) come before infeasible ones, which are ranked by cv alone
/// (equal cv share a rank). Equal points share a rank; -0.0 equals 0.0; +-inf allowed.
/// Throws std::invalid_argument naming the first row holding a NaN (in F or cv).
///   F    : [N, M] row-major, T = float or double
///   cv   : [N] or nullptr
///   rank : [N] output
template <typename T>
void nondominated_rank_cpu(const T* F, int64_t N, int64_t M, const T* cv, int32_t* rank,
                           int num_threads);

/// NSGA-II crowding distance (Deb et al. 2002) of every point within its front.
/// Per front and objective, points are ordered by value (ties by index); the two extremes
/// get +inf, an interior point adds (next - previous) / (max - min) of that objective
/// (nothing when max == min). Fronts of one or two points are all +inf.
///   F    : [N, M] row-major;  rank : [N] front indices (>= 0);  out : [N] float64
template <typename T>
void crowding_distance_cpu(const T* F, int64_t N, int64_t M, const int32_t* rank, double* out,
                           int num_threads);

}  // namespace evoforge
