// Per-family and per-block mutation kernels shared by the CPU (cpp/mutation.cpp) and the CUDA
// twins (cuda/mutation.cu): the same code, hence the same bits. Header-only; host and device.
#pragma once

#include <cstdint>
#include <cstring>

#include "evoforge/philox.h"

namespace evoforge {

constexpr int kMaxSwitches = 16;                  // level_switch: max_switches <= this
constexpr int kMaxDiff = 2 * kMaxSwitches;        // genes an offspring may differ from its parent in
constexpr int kPairTries = 64;                    // proposals before enumerating the valid pairs
constexpr uint32_t kAttemptShift = 20;            // block = attempt << 20 | word block

/// Status of one family (one parent's offspring).
enum LevelSwitchStatus : int32_t {
  kLevelSwitchOk = 0,
  kLevelSwitchNoMove = 1,       // no valid (raise, lower) pair exists for this parent
  kLevelSwitchExhausted = 2,    // max_attempts drawn without finding enough distinct offspring
};

/// Everything level_switch reads and writes. Shapes: P parents, L genes, N = n_offspring.
/// Groups are given in CSR form: the genes of group g are members[group_start[g] ..
/// group_start[g + 1]), and group_of[i] is the group of gene i. costs (or nullptr) is [L, cost_stride]
/// with costs[i * cost_stride + (level - lower[i])] the cost of gene i at `level`.
struct LevelSwitchArgs {
  const int32_t* parents;      // [P, L]
  int64_t P, L;
  const int32_t* lower;        // [L]
  const int32_t* upper;        // [L]
  const int32_t* group_of;     // [L]
  const int32_t* members;      // [L]
  const int32_t* group_start;  // [G + 1]
  int32_t max_group;           // largest group size
  const double* costs;         // [L, cost_stride] or nullptr
  int64_t cost_stride;
  double tol;                  // |budget(child) - budget(parent)| <= tol (costs only)
  int32_t n_offspring, max_switches, max_attempts;
  uint64_t seed;
  uint32_t generation, individual_offset;
  int32_t* out;                // [P, N, L]
  double* drift;               // [P, N] or nullptr
  int32_t* ws_genes;           // [P * N, kMaxDiff]   accepted diffs (workspace)
  int32_t* ws_delta;           // [P * N, kMaxDiff]
  int32_t* ws_count;           // [P * N]
  uint64_t* ws_hash;           // [P * N]
  int32_t* status;             // [P]
};

namespace detail {

struct Diff {
  int32_t gene[kMaxDiff];
  int32_t delta[kMaxDiff];
  int n;
};

EVOFORGE_HD int32_t diff_get(const Diff& d, int32_t g) {
  for (int k = 0; k < d.n; ++k)
    if (d.gene[k] == g) return d.delta[k];
  return 0;
}

EVOFORGE_HD void diff_add(Diff& d, int32_t g, int32_t v) {
  for (int k = 0; k < d.n; ++k)
    if (d.gene[k] == g) {
      d.delta[k] += v;
      return;
    }
  d.gene[d.n] = g;
  d.delta[d.n] = v;
  ++d.n;
}

/// Budget change of raising gene i from level a and lowering gene j from level b.
EVOFORGE_HD double switch_delta(const LevelSwitchArgs& A, int32_t i, int32_t a, int32_t j, int32_t b) {
  const double* ci = A.costs + i * A.cost_stride - A.lower[i];
  const double* cj = A.costs + j * A.cost_stride - A.lower[j];
  return philox::dadd(philox::dadd(ci[a + 1], -ci[a]), -philox::dadd(cj[b], -cj[b - 1]));
}

/// Is (raise i, lower j) a valid switch from the current state? Sets *dd to its budget change.
EVOFORGE_HD bool valid_pair(const LevelSwitchArgs& A, const int32_t* parent, const Diff& d,
                            double drift, int32_t i, int32_t j, double* dd) {
  if (i == j) return false;
  int32_t a = parent[i] + diff_get(d, i);
  if (a >= A.upper[i]) return false;
  int32_t b = parent[j] + diff_get(d, j);
  if (b <= A.lower[j]) return false;
  *dd = 0.0;
  if (A.costs) {
    double x = switch_delta(A, i, a, j, b);
    double nd = philox::dadd(drift, x);
    if (!(nd <= A.tol && -nd <= A.tol)) return false;  // NaN fails too
    *dd = x;
  }
  return true;
}

/// Draws one switch; false when no valid pair exists.
EVOFORGE_HD bool one_switch(const LevelSwitchArgs& A, const int32_t* parent, Diff& d, double& drift,
                            philox::Stream32& rng) {
  const uint32_t L = static_cast<uint32_t>(A.L), G = static_cast<uint32_t>(A.max_group);
  double dd = 0.0;
  // Rejection: i uniform over all genes, then a slot t uniform in [0, max_group) of i's group
  // (rejected past its size), so that every ordered pair of one group has the same chance.
  // One word each (L < 2^31: bias below L / 2^32).
  for (int t = 0; t < kPairTries; ++t) {
    int32_t i = static_cast<int32_t>(rng.below32(L));
    uint32_t slot = rng.below32(G);
    int32_t g = A.group_of[i];
    int32_t gs = A.group_start[g], ge = A.group_start[g + 1];
    if (slot >= static_cast<uint32_t>(ge - gs)) continue;
    int32_t j = A.members[gs + static_cast<int32_t>(slot)];
    if (valid_pair(A, parent, d, drift, i, j, &dd)) {
      diff_add(d, i, +1);
      diff_add(d, j, -1);
      drift = philox::dadd(drift, dd);
      return true;
    }
  }
  // Exact fallback: count the valid ordered pairs group by group, then take a uniform one.
  uint64_t total = 0;
  for (int64_t i = 0; i < A.L; ++i) {
    int32_t g = A.group_of[i];
    for (int32_t k = A.group_start[g]; k < A.group_start[g + 1]; ++k)
      total += valid_pair(A, parent, d, drift, static_cast<int32_t>(i), A.members[k], &dd) ? 1 : 0;
  }
  if (total == 0) return false;
  uint64_t pick = rng.below(total);
  for (int64_t i = 0; i < A.L; ++i) {
    int32_t g = A.group_of[i];
    for (int32_t k = A.group_start[g]; k < A.group_start[g + 1]; ++k) {
      int32_t j = A.members[k];
      if (!valid_pair(A, parent, d, drift, static_cast<int32_t>(i), j, &dd)) continue;
      if (pick-- == 0) {
        diff_add(d, static_cast<int32_t>(i), +1);
        diff_add(d, j, -1);
        drift = philox::dadd(drift, dd);
        return true;
      }
    }
  }
  return false;  // not reached
}

/// Drops zero deltas and sorts by gene, so that equal offspring have equal diffs.
EVOFORGE_HD void normalise(Diff& d) {
  int n = 0;
  for (int k = 0; k < d.n; ++k)
    if (d.delta[k] != 0) {
      d.gene[n] = d.gene[k];
      d.delta[n] = d.delta[k];
      ++n;
    }
  d.n = n;
  for (int a = 1; a < n; ++a) {
    int32_t g = d.gene[a], v = d.delta[a];
    int b = a - 1;
    while (b >= 0 && d.gene[b] > g) {
      d.gene[b + 1] = d.gene[b];
      d.delta[b + 1] = d.delta[b];
      --b;
    }
    d.gene[b + 1] = g;
    d.delta[b + 1] = v;
  }
}

EVOFORGE_HD uint64_t diff_hash(const Diff& d) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(d.n);
  for (int k = 0; k < d.n; ++k) {
    h ^= (static_cast<uint64_t>(static_cast<uint32_t>(d.gene[k])) << 8) ^
         static_cast<uint64_t>(static_cast<uint32_t>(d.delta[k]) & 0xFFu);
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  return h;
}

}  // namespace detail

/// Outcome of one draw of an offspring.
enum CandidateStatus : int32_t { kCandidateOk = 0, kCandidateRejected = 1, kCandidateNoMove = 2 };

/// Draws attempt `att` of offspring k of parent p (sub-stream k, blocks att << 20 onwards), one
/// word at a time: n = 1 + min(below32(K), below32(K)) switches, each proposing (i, slot) from
/// two words (up to kPairTries proposals, then an exact enumeration drawing its pick from two
/// words), then the normalised diff. Rejected when a switch finds no
/// valid pair, when the switches cancel out, or (costs) when |drift| > tol; kCandidateNoMove when
/// not even the first switch from the parent is possible. *exact = the drift summed over the
/// changed genes in gene order.
EVOFORGE_HD int32_t level_switch_candidate(const LevelSwitchArgs& A, int64_t p, int32_t k, int32_t att,
                                           detail::Diff& d, double* exact) {
  const int32_t* parent = A.parents + p * A.L;
  philox::Stream32 rng(A.seed, static_cast<uint32_t>(att) << kAttemptShift,
                       A.individual_offset + static_cast<uint32_t>(p), A.generation, philox::kLevelSwitch,
                       static_cast<uint32_t>(k));
  const uint32_t K = static_cast<uint32_t>(A.max_switches);
  uint32_t n1 = rng.below32(K), n2 = rng.below32(K);
  int n = 1 + static_cast<int>(n1 < n2 ? n1 : n2);
  d.n = 0;
  double drift = 0.0;
  for (int s = 0; s < n; ++s)
    if (!detail::one_switch(A, parent, d, drift, rng)) return s == 0 ? kCandidateNoMove : kCandidateRejected;
  detail::normalise(d);
  if (d.n == 0) return kCandidateRejected;  // switched back to the parent
  *exact = 0.0;
  if (A.costs) {
    double e = 0.0;
    for (int q = 0; q < d.n; ++q) {
      int32_t g = d.gene[q];
      const double* c = A.costs + g * A.cost_stride - A.lower[g];
      e = philox::dadd(e, philox::dadd(c[parent[g] + d.delta[q]], -c[parent[g]]));
    }
    if (!(e <= A.tol && -e <= A.tol)) return kCandidateRejected;
    *exact = e;
  }
  return kCandidateOk;
}

/// Stores an accepted diff of offspring o = p * N + k in the workspace.
EVOFORGE_HD void level_switch_store(const LevelSwitchArgs& A, int64_t o, const detail::Diff& d, uint64_t h) {
  A.ws_hash[o] = h;
  A.ws_count[o] = d.n;
  for (int r = 0; r < d.n; ++r) {
    A.ws_genes[o * kMaxDiff + r] = d.gene[r];
    A.ws_delta[o * kMaxDiff + r] = d.delta[r];
  }
}

EVOFORGE_HD bool level_switch_same(const LevelSwitchArgs& A, int64_t o, const detail::Diff& d, uint64_t h) {
  if (A.ws_hash[o] != h || A.ws_count[o] != d.n) return false;
  for (int r = 0; r < d.n; ++r)
    if (A.ws_genes[o * kMaxDiff + r] != d.gene[r] || A.ws_delta[o * kMaxDiff + r] != d.delta[r]) return false;
  return true;
}

/// Writes offspring o of parent p: the parent's row plus the stored diff.
EVOFORGE_HD void level_switch_write(const LevelSwitchArgs& A, int64_t p, int64_t o) {
  const int32_t* parent = A.parents + p * A.L;
  int32_t* child = A.out + o * A.L;
#if defined(__CUDA_ARCH__)
  for (int64_t g = 0; g < A.L; ++g) child[g] = parent[g];
  for (int r = 0; r < A.ws_count[o]; ++r) child[A.ws_genes[o * kMaxDiff + r]] += A.ws_delta[o * kMaxDiff + r];
#else
  // Copy the runs between changed genes (sorted) and write those genes once: no read-back.
  int64_t at = 0;
  for (int r = 0; r < A.ws_count[o]; ++r) {
    const int64_t g = A.ws_genes[o * kMaxDiff + r];
    std::memcpy(child + at, parent + at, sizeof(int32_t) * static_cast<size_t>(g - at));
    child[g] = parent[g] + A.ws_delta[o * kMaxDiff + r];
    at = g + 1;
  }
  std::memcpy(child + at, parent + at, sizeof(int32_t) * static_cast<size_t>(A.L - at));
#endif
}

/// Slots of one family's open-addressing set of accepted offspring: a power of two >= 2 N.
EVOFORGE_HD uint64_t level_switch_slot_capacity(int64_t n_offspring) {
  uint64_t cap = 16;
  while (cap < static_cast<uint64_t>(2 * n_offspring)) cap <<= 1;
  return cap;
}

/// True when an accepted offspring with the same diff is in the set (slot[cap], -1 = empty);
/// otherwise inserts o (whose diff is d, hash h) when `insert`.
EVOFORGE_HD bool level_switch_seen(const LevelSwitchArgs& A, int64_t* slot, uint64_t cap, int64_t o,
                                   const detail::Diff& d, uint64_t h, bool insert) {
  for (uint64_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
    if (slot[i] < 0) {
      if (insert) slot[i] = o;
      return false;
    }
    if (level_switch_same(A, slot[i], d, h)) return true;
  }
}

EVOFORGE_HD detail::Diff level_switch_load(const LevelSwitchArgs& A, int64_t o) {
  detail::Diff d;
  d.n = A.ws_count[o];
  for (int r = 0; r < d.n; ++r) {
    d.gene[r] = A.ws_genes[o * kMaxDiff + r];
    d.delta[r] = A.ws_delta[o * kMaxDiff + r];
  }
  return d;
}

/// Phase 1 (any order, in parallel): attempt 0 of offspring o; cand[o] its status, the diff stored
/// and exact[o] its drift when valid.
EVOFORGE_HD void level_switch_phase1(const LevelSwitchArgs& A, int64_t o, int32_t* cand, double* exact) {
  const int64_t N = A.n_offspring;
  detail::Diff d;
  double x = 0.0;
  cand[o] = level_switch_candidate(A, o / N, static_cast<int32_t>(o % N), 0, d, &x);
  exact[o] = x;
  if (cand[o] == kCandidateOk) level_switch_store(A, o, d, detail::diff_hash(d));
}

/// Phase 2 (per family, families in parallel): in order of k, keep offspring k's candidate unless
/// an accepted one has the same diff, else draw attempts 1, 2, ...; sets status[p]. `slot` is
/// this family's set (cap entries), cleared here.
EVOFORGE_HD void level_switch_phase2(const LevelSwitchArgs& A, int64_t p, const int32_t* cand, double* exact,
                                     int64_t* slot, uint64_t cap) {
  const int64_t N = A.n_offspring;
  for (uint64_t i = 0; i < cap; ++i) slot[i] = -1;
  A.status[p] = kLevelSwitchOk;
  for (int32_t k = 0; k < N; ++k) {
    const int64_t o = p * N + k;
    if (cand[o] == kCandidateNoMove) {
      A.status[p] = kLevelSwitchNoMove;
      return;
    }
    bool ok = false;
    if (cand[o] == kCandidateOk)
      ok = !level_switch_seen(A, slot, cap, o, level_switch_load(A, o), A.ws_hash[o], true);
    for (int32_t att = 1; !ok && att < A.max_attempts; ++att) {
      detail::Diff d;
      double x = 0.0;
      if (level_switch_candidate(A, p, k, att, d, &x) != kCandidateOk) continue;
      const uint64_t h = detail::diff_hash(d);
      if (level_switch_seen(A, slot, cap, o, d, h, false)) continue;
      level_switch_store(A, o, d, h);
      level_switch_seen(A, slot, cap, o, d, h, true);
      exact[o] = x;
      ok = true;
    }
    if (!ok) {
      A.status[p] = kLevelSwitchExhausted;
      return;
    }
  }
}

/// The n_offspring offspring of parent p (one family), sequentially: offspring k takes the first
/// attempt whose candidate is valid and differs from offspring 0..k-1 (a candidate never equals
/// the parent: its diff is not empty). This is the definition; the CPU and the GPU reach the same
/// result with the phases above (parallel candidates, then a hash set per family, then parallel
/// writes), which the tests check against it. Writes status[p], out and drift.
EVOFORGE_HD void level_switch_family(const LevelSwitchArgs& A, int64_t p) {
  A.status[p] = kLevelSwitchOk;
  for (int32_t k = 0; k < A.n_offspring; ++k) {
    const int64_t o = p * A.n_offspring + k;
    bool done = false;
    for (int32_t att = 0; att < A.max_attempts && !done; ++att) {
      detail::Diff d;
      double exact = 0.0;
      int32_t st = level_switch_candidate(A, p, k, att, d, &exact);
      if (st == kCandidateNoMove) {
        A.status[p] = kLevelSwitchNoMove;
        return;
      }
      if (st != kCandidateOk) continue;
      uint64_t h = detail::diff_hash(d);
      bool dup = false;
      for (int32_t q = 0; q < k && !dup; ++q) dup = level_switch_same(A, p * A.n_offspring + q, d, h);
      if (dup) continue;
      level_switch_store(A, o, d, h);
      if (A.drift) A.drift[o] = exact;
      done = true;
    }
    if (!done) {
      A.status[p] = kLevelSwitchExhausted;
      return;
    }
  }
  for (int32_t k = 0; k < A.n_offspring; ++k) level_switch_write(A, p, p * A.n_offspring + k);
}

// ---- Gaussian mutation: one block of 4 genes ----------------------------------------------------

/// The 4 standard normals of genes 4b .. 4b+3 of `individual`: Box-Muller on words (0, 1) gives
/// genes 4b (r cos) and 4b+1 (r sin), words (2, 3) give genes 4b+2 and 4b+3.
EVOFORGE_HD void gaussian_normals4(uint64_t seed, uint32_t generation, uint32_t individual, uint32_t b,
                                   float z[4]) {
  philox::U32x4 w = philox::block(seed, b, individual, generation, philox::kGaussian, 0);
  philox::F32x2 z01 = philox::box_muller(w.v[0], w.v[1]);
  philox::F32x2 z23 = philox::box_muller(w.v[2], w.v[3]);
  z[0] = z01.a;
  z[1] = z01.b;
  z[2] = z23.a;
  z[3] = z23.b;
}

}  // namespace evoforge
