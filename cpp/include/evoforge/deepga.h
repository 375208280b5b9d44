// Deep GA (Such et al. 2017) parameter reconstruction without a noise table. The noise of a seed
// is a standard normal vector drawn by Philox4x32-10 with key = the 64-bit seed and counter
// (c0, c1) = the 64-bit block index d / 4, c2 = 0, c3 = kDeepGA << 24; Box-Muller on words (0, 1)
// gives parameters 4b, 4b+1 and on words (2, 3) gives 4b+2, 4b+3 (evoforge/philox.h). The sum
// is accumulated in float32 with one rounded multiply and one rounded add per seed, in seed
// order, so a rebuild and an incremental update from the cached parent give the same bits on
// the CPU and on the GPU.
#pragma once

#include <cstdint>

#include "evoforge/philox.h"

namespace evoforge {

/// The 4 noise values of parameters 4 blk .. 4 blk + 3 for `seed`.
EVOFORGE_HD void deepga_noise4(uint64_t seed, uint64_t blk, float z[4]) {
  philox::U32x4 w = philox::philox4x32_10(static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32), 0,
                                          philox::c3_of(philox::kDeepGA, 0), philox::key_lo(seed),
                                          philox::key_hi(seed));
  philox::F32x2 a = philox::box_muller(w.v[0], w.v[1]);
  philox::F32x2 b = philox::box_muller(w.v[2], w.v[3]);
  z[0] = a.a;
  z[1] = a.b;
  z[2] = b.a;
  z[3] = b.b;
}

/// out[p] = base[p] + sigma * noise(seeds[offsets[p]]) + ... + sigma * noise(seeds[offsets[p+1]-1]),
/// accumulated left to right in float32. base is [D] (base_stride 0: theta0 shared by all rows) or
/// [P, D] (base_stride D: e.g. cached parents, with one new seed each).
///   seeds : [offsets[P]] uint64;  offsets : [P + 1] int64;  out : [P, D] float32
void seeds_to_params_cpu(const float* base, int64_t base_stride, int64_t P, int64_t D,
                         const uint64_t* seeds, const int64_t* offsets, float sigma, float* out,
                         int num_threads);

}  // namespace evoforge
