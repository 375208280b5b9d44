// Batched selection kernels on the CPU (see evoforge/selection.h).
#include "evoforge/selection.h"

#include <algorithm>

#include "evoforge/common.h"
#include "evoforge/philox.h"

namespace evoforge {

void tournament_cpu(const double* keys, int64_t N, int64_t M, int64_t n_select, int32_t k,
                    uint64_t seed, uint32_t generation, uint32_t individual_offset, int64_t* out,
                    int num_threads) {
  auto better = [&](int64_t i, int64_t j) {  // is i strictly better than j?
    for (int64_t c = 0; c < M; ++c) {
      double x = keys[i * M + c], y = keys[j * M + c];
      if (x < y) return true;
      if (y < x) return false;
    }
    return i < j;
  };
  parallel_for(n_select, resolve_threads(num_threads), 4096, [&](int64_t b, int64_t e, int) {
    for (int64_t s = b; s < e; ++s) {
      philox::Stream32 rng(seed, 0, individual_offset + static_cast<uint32_t>(s), generation,
                           philox::kTournament, 0);
      int64_t best = static_cast<int64_t>(rng.below(static_cast<uint64_t>(N)));
      for (int32_t t = 1; t < k; ++t) {
        int64_t c = static_cast<int64_t>(rng.below(static_cast<uint64_t>(N)));
        if (better(c, best)) best = c;
      }
      out[s] = best;
    }
  });
}

}  // namespace evoforge
