// Batched selection kernels (CPU).
#pragma once

#include <cstdint>

namespace evoforge {

/// Tournament selection (minimisation): selection s draws `k` contestants uniformly from [0, N) with
/// replacement (stream kTournament, individual = individual_offset + s, words consumed in pairs as
/// 64-bit integers from block 0 on) and keeps the best: keys[i] is row i of a row-major [N, M]
/// array compared lexicographically (column 0 first), ties going to the smaller index.
///   keys : [N, M] float64 (no NaN; checked by the caller);  out : [n_select] int64
void tournament_cpu(const double* keys, int64_t N, int64_t M, int64_t n_select, int32_t k,
                    uint64_t seed, uint32_t generation, uint32_t individual_offset, int64_t* out,
                    int num_threads);

}  // namespace evoforge
