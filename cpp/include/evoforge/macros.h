// Portability macros shared by the CPU kernels and their CUDA twins (no includes, no code).
#pragma once

#include <cstddef>  // defines __GLIBC__ where it applies (target_clones needs glibc's ifunc)

// Functions compiled for both host and device: the one definition that keeps CPU and GPU
// results bit-identical (Philox, the hash).
#if defined(__CUDACC__)
#define EVOFORGE_HD __host__ __device__ __forceinline__
#else
#define EVOFORGE_HD inline
#endif

// Multiversioned hot loops, picked at load time by the CPU (no -march in the build). Every clone
// does the same IEEE operations (no contraction), so results do not depend on the clone picked.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(EVOFORGE_NO_TARGET_CLONES)
#define EVOFORGE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define EVOFORGE_CLONES_AVX2 __attribute__((target_clones("avx2", "default")))
#else
#define EVOFORGE_CLONES
#define EVOFORGE_CLONES_AVX2
#endif
