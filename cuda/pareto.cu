// Pareto ranking of distinct, lexicographically sorted points on a CUDA device.
//
// With the points sorted lexicographically and distinct, a point can only be dominated by points
// before it, and q (before p) dominates p iff q[k] <= p[k] for k = 1..M-1 (objective 0 is
// ordered by the sort). The front index is the length of the longest domination chain ending
// at p:
//
//     rank[i] = max { rank[j] + 1 : j < i, p_j[1:] <= p_i[1:] }   (0 when there is no such j)
//
// The points are cut into tiles of `tile` consecutive points, processed in order. For tile t:
//   cross: every point of tile t takes the max over all points of tiles < t (whose ranks are
//          final). Grid = (tile points / (cross_block * cross_points)) x (segments of earlier
//          groups); a block stages one group of 256 earlier points at a time in shared memory
//          and folds them into per-point maxima held in registers, then atomicMax into rank[].
//          A group is skipped by the block when its componentwise minimum exceeds the block's
//          componentwise maximum in some objective (no point of the group can dominate a point
//          of the block), and by a warp when no lane's point can gain from it (bounding box of
//          the group, or its largest rank + 1 not above the lane's current value).
//   intra: one block of `tile` threads, thread i owning point i of the tile, resolves the tile
//          in order: at step j the rank of point j is final; it is published in shared memory,
//          and every later point it dominates takes it + 1. One __syncthreads per step.
// Kernel launches: 2 per tile. Work: U^2/2 pair tests at most (minus skipped groups), spread
// over the whole GPU; the intra steps are sequential: about U steps of a few shared-memory
// operations in total.
//
// Every max is exact integer arithmetic, so the result does not depend on the order in which
// blocks run or atomics land: it equals the CPU kernel (cpp/pareto.cpp). The numpy emulation
// `pareto_rank_sorted_unique` in tests/cuda_emulation.py mirrors this file step by step (same
// tiles, groups, skips) and is tested against the CPU kernel where no GPU exists.
#include "evoforge/cuda/pareto.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>

#include "evoforge/cuda/common.h"

namespace evoforge::cuda {
namespace {

constexpr int kGroup = 256;       // points per group (staging unit, bounding boxes, gmaxr)
constexpr int kCrossBlock = 256;  // threads of a cross block: one staged point each
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
static_assert(kGroup == kCrossBlock, "a cross block stages one group point per thread");

// Compile-time geometry per bucket of D = M - 1 compared objectives (D <= MAXD).
template <int MAXD>
struct Geometry {
  // The intra block holds its tile in shared memory: MAXD * kTile * 8 bytes <= 32 KiB, and
  // kTile threads with MAXD doubles in registers stay under the 64K-register file.
  static constexpr int kTile = MAXD <= 4 ? 1024 : (MAXD <= 8 ? 512 : 256);
  static constexpr int kCrossPoints = MAXD <= 8 ? 2 : 1;
  static_assert(kTile % kGroup == 0, "tiles are made of whole groups");
  static_assert(kTile % (kCrossBlock * kCrossPoints) == 0, "cross blocks split a tile evenly");
};

// +inf from its bit pattern (std::numeric_limits is host-only without --expt-relaxed-constexpr).
template <typename T>
__device__ __forceinline__ T pos_inf();
template <>
__device__ __forceinline__ float pos_inf<float>() {
  return __int_as_float(0x7f800000);
}
template <>
__device__ __forceinline__ double pos_inf<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}

// M == 1: distinct sorted values form a chain, rank = position.
__global__ void iota_kernel(int64_t U, int32_t* __restrict__ rank) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < U) rank[i] = static_cast<int32_t>(i);
}

// Componentwise min and max of objectives 1..D over each group: one thread per (group, k).
// Layout [g * D + k].
template <typename T>
__global__ void group_bounds_kernel(const T* __restrict__ pts, int64_t U, int64_t M, int D,
                                    int64_t ngroups, T* __restrict__ gmin, T* __restrict__ gmax) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= ngroups * D) return;
  const int64_t g = t / D;
  const int64_t k = t % D;
  const int64_t j0 = g * kGroup;
  const int64_t j1 = j0 + kGroup < U ? j0 + kGroup : U;
  T lo = pts[j0 * M + 1 + k];
  T hi = lo;
  for (int64_t j = j0 + 1; j < j1; ++j) {
    const T v = pts[j * M + 1 + k];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  gmin[t] = lo;
  gmax[t] = hi;
}

// Tile [a, b): every point takes max(rank[j] + 1) over the dominating points j of the earlier
// groups [blockIdx.y * groups_per_seg, +groups_per_seg) (all final), atomicMax into rank[i].
template <typename T, int MAXD, int PTS>
__global__ void __launch_bounds__(kCrossBlock)
    cross_kernel(const T* __restrict__ pts, int64_t M, int D, int64_t a, int64_t b,
                 int64_t groups_per_seg, const T* __restrict__ gmin, const T* __restrict__ gmax,
                 const int32_t* __restrict__ gmaxr, int32_t* rank) {
  __shared__ T s_q[MAXD][kGroup];
  __shared__ int32_t s_r[kGroup];
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t first = a + static_cast<int64_t>(blockIdx.x) * (kCrossBlock * PTS);

  // This thread's tile points: first + p * kCrossBlock + tid. Objectives >= D are padded with
  // +inf here and -inf in s_q, so the unrolled comparisons need no bound on k.
  T own[PTS][MAXD];
  int32_t best[PTS];
  int32_t init[PTS];
#pragma unroll
  for (int p = 0; p < PTS; ++p) {
    const int64_t i = first + p * kCrossBlock + tid;
    const bool valid = i < b;
#pragma unroll
    for (int k = 0; k < MAXD; ++k)
      own[p][k] = k < D ? (valid ? pts[i * M + 1 + k] : T(0)) : pos_inf<T>();
    // rank[i] is a lower bound of the final value (other blocks may have raised it already).
    // An empty slot starts at INT_MAX: it never needs a group and never changes.
    init[p] = valid ? rank[i] : INT_MAX;
    best[p] = init[p];
  }

  // Componentwise max over the groups holding this block's points (same in every thread).
  T bmax[MAXD];
  {
    const int64_t last = first + kCrossBlock * PTS < b ? first + kCrossBlock * PTS : b;
    const int64_t g0 = first / kGroup;
    const int64_t g1 = (last - 1) / kGroup;
#pragma unroll
    for (int k = 0; k < MAXD; ++k) {
      T m = k < D ? gmax[g0 * D + k] : pos_inf<T>();
      for (int64_t g = g0 + 1; k < D && g <= g1; ++g) {
        const T v = gmax[g * D + k];
        m = v > m ? v : m;
      }
      bmax[k] = m;
    }
  }

  const int64_t n_earlier = a / kGroup;  // a is a multiple of the tile, hence of kGroup
  const int64_t g_lo = static_cast<int64_t>(blockIdx.y) * groups_per_seg;
  const int64_t g_hi = g_lo + groups_per_seg < n_earlier ? g_lo + groups_per_seg : n_earlier;
  // Latest groups first: they hold the largest ranks, which lets the rank test skip more.
  for (int64_t g = g_hi - 1; g >= g_lo; --g) {
    // The group's minimum, padded with -inf like s_q (registers: unrolled, constant indices).
    T gm[MAXD];
#pragma unroll
    for (int k = 0; k < MAXD; ++k) gm[k] = k < D ? gmin[g * D + k] : -pos_inf<T>();
    bool reach = true;  // block-uniform: depends only on gmin and bmax
#pragma unroll
    for (int k = 0; k < MAXD; ++k) reach &= !(gm[k] > bmax[k]);
    if (!reach) continue;

    __syncthreads();  // every warp is done reading the previous group
    const int64_t j = g * kGroup + tid;
#pragma unroll
    for (int k = 0; k < MAXD; ++k) s_q[k][tid] = k < D ? pts[j * M + 1 + k] : -pos_inf<T>();
    s_r[tid] = rank[j];
    __syncthreads();

    const int32_t gr = gmaxr[g];
    bool need = false;
#pragma unroll
    for (int p = 0; p < PTS; ++p) {
      bool c = best[p] <= gr;  // gr + 1 > best[p]: the group may raise this point
#pragma unroll
      for (int k = 0; k < MAXD; ++k) c &= !(gm[k] > own[p][k]);
      need = need || c;
    }
    if (__any_sync(kFullMask, need)) {
      for (int q = 0; q < kGroup; ++q) {
        const int32_t r1 = s_r[q] + 1;
        T qv[MAXD];
#pragma unroll
        for (int k = 0; k < MAXD; ++k) qv[k] = s_q[k][q];
#pragma unroll
        for (int p = 0; p < PTS; ++p) {
          bool dom = r1 > best[p];
#pragma unroll
          for (int k = 0; k < MAXD; ++k) dom &= qv[k] <= own[p][k];
          best[p] = dom ? r1 : best[p];
        }
      }
    }
  }

#pragma unroll
  for (int p = 0; p < PTS; ++p)
    if (best[p] > init[p]) atomicMax(rank + first + p * kCrossBlock + tid, best[p]);
}

// Tile [a, a + n), n <= TILE: rank[] holds the max over earlier tiles; resolve the tile in order
// and write the final ranks, and the largest rank of each of its groups into gmaxr.
template <typename T, int MAXD, int TILE>
__global__ void __launch_bounds__(TILE)
    intra_kernel(const T* __restrict__ pts, int64_t M, int D, int64_t a, int n, int32_t* rank,
                 int32_t* __restrict__ gmaxr) {
  __shared__ T s_p[MAXD][TILE];
  __shared__ int32_t s_r[TILE];
  __shared__ int32_t s_gmax[TILE / kGroup];
  const int i = static_cast<int>(threadIdx.x);
  const bool valid = i < n;

  T own[MAXD];
#pragma unroll
  for (int k = 0; k < MAXD; ++k) {
    own[k] = k < D ? (valid ? pts[(a + i) * M + 1 + k] : T(0)) : pos_inf<T>();
    s_p[k][i] = k < D ? own[k] : -pos_inf<T>();
  }
  int32_t acc = valid ? rank[a + i] : 0;
  if (i < TILE / kGroup) s_gmax[i] = 0;
  if (i == 0) s_r[0] = acc;  // nothing in the tile comes before point 0
  __syncthreads();

  // Step j: s_r[j] is final. Warps whose lanes all lie at or before j, or past the tile, idle.
  const bool warp_busy_until_end = (i & ~(kWarp - 1)) < n;
  const int warp_last = i | (kWarp - 1);
  for (int j = 0; j + 1 < n; ++j) {
    if (warp_busy_until_end && warp_last > j) {
      const int32_t r1 = s_r[j] + 1;
      bool dom = (i > j) & (r1 > acc);
#pragma unroll
      for (int k = 0; k < MAXD; ++k) dom &= s_p[k][j] <= own[k];
      acc = dom ? r1 : acc;
      if (i == j + 1) s_r[i] = acc;  // point j + 1 has now seen every earlier point
    }
    __syncthreads();
  }

  if (valid) rank[a + i] = acc;
  int32_t m = valid ? acc : 0;
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const int32_t o = __shfl_xor_sync(kFullMask, m, off);
    m = o > m ? o : m;
  }
  if ((i & (kWarp - 1)) == 0) atomicMax(&s_gmax[i / kGroup], m);
  __syncthreads();
  if (i < (n + kGroup - 1) / kGroup) gmaxr[a / kGroup + i] = s_gmax[i];
}

int bucket_of(int64_t D) {
  if (D <= 4) return D < 1 ? 1 : static_cast<int>(D);
  return D <= 8 ? 8 : 16;
}

size_t align_up(size_t x) { return (x + 255) / 256 * 256; }

struct Layout {
  size_t gmin = 0, gmax = 0, gmaxr = 0, total = 0;
};

Layout layout(int64_t U, int64_t M, size_t elem_size) {
  Layout l;
  if (U <= 0 || M <= 1) return l;
  const size_t ngroups = static_cast<size_t>((U + kGroup - 1) / kGroup);
  const size_t bounds = align_up(ngroups * static_cast<size_t>(M - 1) * elem_size);
  l.gmin = 0;
  l.gmax = bounds;
  l.gmaxr = 2 * bounds;
  l.total = 2 * bounds + align_up(ngroups * sizeof(int32_t));
  return l;
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw CudaError(message("launch of ", what, " failed: ", cudaGetErrorString(err)));
  }
}

template <typename T, int MAXD>
void rank_bucket(const T* pts, int64_t U, int64_t M, int32_t* rank, char* ws,
                 cudaStream_t stream) {
  using Geo = Geometry<MAXD>;
  constexpr int kTile = Geo::kTile;
  constexpr int kPts = Geo::kCrossPoints;
  const int D = static_cast<int>(M - 1);
  const Layout l = layout(U, M, sizeof(T));
  T* gmin = reinterpret_cast<T*>(ws + l.gmin);
  T* gmax = reinterpret_cast<T*>(ws + l.gmax);
  int32_t* gmaxr = reinterpret_cast<int32_t*>(ws + l.gmaxr);
  const int64_t ngroups = (U + kGroup - 1) / kGroup;

  int dev = 0, sms = 0;
  EVOFORGE_CUDA_CHECK(cudaGetDevice(&dev));
  EVOFORGE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  // Enough cross blocks to fill the GPU a few times over; more only cost atomics.
  const int64_t target_blocks = 8 * static_cast<int64_t>(sms > 0 ? sms : 1);

  EVOFORGE_CUDA_CHECK(cudaMemsetAsync(rank, 0, static_cast<size_t>(U) * sizeof(int32_t), stream));
  {
    const int64_t threads = ngroups * D;
    const unsigned blocks = static_cast<unsigned>((threads + 255) / 256);
    group_bounds_kernel<T><<<blocks, 256, 0, stream>>>(pts, U, M, D, ngroups, gmin, gmax);
    check_launch("group_bounds_kernel");
  }
  const int64_t ntiles = (U + kTile - 1) / kTile;
  for (int64_t t = 0; t < ntiles; ++t) {
    const int64_t a = t * kTile;
    const int n = static_cast<int>(std::min<int64_t>(kTile, U - a));
    if (t > 0) {
      const int64_t gx = (n + kCrossBlock * kPts - 1) / (kCrossBlock * kPts);
      const int64_t earlier = a / kGroup;
      const int64_t per_seg = std::max<int64_t>(1, (earlier * gx + target_blocks - 1) / target_blocks);
      const int64_t gy = (earlier + per_seg - 1) / per_seg;
      if (gy > 65535) throw CudaError("cross_kernel grid too large");  // cannot happen: gy <= target_blocks
      cross_kernel<T, MAXD, kPts>
          <<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), kCrossBlock, 0, stream>>>(
              pts, M, D, a, a + n, per_seg, gmin, gmax, gmaxr, rank);
      check_launch("cross_kernel");
    }
    intra_kernel<T, MAXD, kTile><<<1, kTile, 0, stream>>>(pts, M, D, a, n, rank, gmaxr);
    check_launch("intra_kernel");
  }
}

}  // namespace

ParetoConfig pareto_config(int64_t M) {
  if (M < 1 || M > kParetoMaxObjectives) {
    throw std::invalid_argument(
        message("the CUDA Pareto kernels take 1 <= M <= ", kParetoMaxObjectives, " objectives, got M = ", M));
  }
  ParetoConfig c{};
  c.group = kGroup;
  c.cross_block = kCrossBlock;
  switch (bucket_of(M - 1)) {
    case 1: c.tile = Geometry<1>::kTile; c.cross_points = Geometry<1>::kCrossPoints; break;
    case 2: c.tile = Geometry<2>::kTile; c.cross_points = Geometry<2>::kCrossPoints; break;
    case 3: c.tile = Geometry<3>::kTile; c.cross_points = Geometry<3>::kCrossPoints; break;
    case 4: c.tile = Geometry<4>::kTile; c.cross_points = Geometry<4>::kCrossPoints; break;
    case 8: c.tile = Geometry<8>::kTile; c.cross_points = Geometry<8>::kCrossPoints; break;
    default: c.tile = Geometry<16>::kTile; c.cross_points = Geometry<16>::kCrossPoints; break;
  }
  return c;
}

size_t rank_sorted_unique_workspace_bytes(int64_t U, int64_t M, size_t elem_size) {
  return layout(U, M, elem_size).total;
}

template <typename T>
void rank_sorted_unique_cuda(const T* pts, int64_t U, int64_t M, int32_t* rank, void* workspace,
                             size_t workspace_bytes, cudaStream_t stream) {
  pareto_config(M);  // validates M
  if (U < 0 || U > INT_MAX) {
    throw std::invalid_argument(message("the CUDA Pareto kernels take 0 <= U < 2^31 points, got ", U));
  }
  if (U == 0) return;
  const size_t need = rank_sorted_unique_workspace_bytes(U, M, sizeof(T));
  if (pts == nullptr || rank == nullptr || (need > 0 && workspace == nullptr))
    throw std::invalid_argument("rank_sorted_unique_cuda: null device pointer");
  if (workspace_bytes < need) {
    throw std::invalid_argument(
        message("rank_sorted_unique_cuda: workspace of ", workspace_bytes, " bytes, need ", need));
  }
  if (reinterpret_cast<uintptr_t>(workspace) % 16 != 0 || reinterpret_cast<uintptr_t>(pts) % sizeof(T) != 0 ||
      reinterpret_cast<uintptr_t>(rank) % sizeof(int32_t) != 0)
    throw std::invalid_argument("rank_sorted_unique_cuda: misaligned device pointer");
  if (M == 1) {
    const unsigned blocks = static_cast<unsigned>((U + 255) / 256);
    iota_kernel<<<blocks, 256, 0, stream>>>(U, rank);
    check_launch("iota_kernel");
    return;
  }
  char* ws = static_cast<char*>(workspace);
  switch (bucket_of(M - 1)) {
    case 1: rank_bucket<T, 1>(pts, U, M, rank, ws, stream); break;
    case 2: rank_bucket<T, 2>(pts, U, M, rank, ws, stream); break;
    case 3: rank_bucket<T, 3>(pts, U, M, rank, ws, stream); break;
    case 4: rank_bucket<T, 4>(pts, U, M, rank, ws, stream); break;
    case 8: rank_bucket<T, 8>(pts, U, M, rank, ws, stream); break;
    default: rank_bucket<T, 16>(pts, U, M, rank, ws, stream); break;
  }
}

template void rank_sorted_unique_cuda<float>(const float*, int64_t, int64_t, int32_t*, void*, size_t,
                                             cudaStream_t);
template void rank_sorted_unique_cuda<double>(const double*, int64_t, int64_t, int32_t*, void*, size_t,
                                              cudaStream_t);

}  // namespace evoforge::cuda
