"""Functional hashing: fast 128-bit digests of quantised arrays, streaming keys, and the hash of
what a network computes on fixed probe inputs.

The digest (16 bytes) is that of a native, non-cryptographic 128-bit hash (``evoforge._core``,
cpp/hashing.cpp; construction documented in cpp/include/evoforge/hashing.h) over a canonical
stream, so it is the same for any thread count, for numpy and torch, for contiguous and strided
views, and on the CPU and a CUDA device (``evoforge._cuda``, cuda/hashing.cu):

* the elements in C order, after quantisation (floats only, see below);
* float16 and bfloat16 are widened to float32 (exactly) and hashed as float32; float64 is
  hashed as float64; integers and bools are hashed as int64 values (uint64 by its bits);
* -0.0 equals 0.0, and all NaNs (any sign or payload) are equal; +-inf are kept;
* the shape, the dtype (unless ``ignore_dtype=True``) and the quantisation settings are part of
  the digest.

Quantisation of floats
----------------------
``mantissa_bits=b``
    Round to the nearest value with ``b`` explicit mantissa bits and the same exponent range
    (subnormals round on the same absolute grid), **ties away from zero**. +-inf stays +-inf; a
    finite value at the top of the range may round up to +-inf. ``b`` lies in [0, 23] for the
    float32 class (float16, bfloat16, float32) and in [0, 52] for float64; 23 (52) is exact.
``grid=g``
    Hash the integer nearest to ``x / g``, **ties to even**, computed in float64 (so float32 and
    float64 inputs of the same value give the same integer). Values too large for an integer keep
    their float64 value; +-inf and NaN are kept.
neither
    The exact bits (after the -0.0 / NaN rules).

A quantised digest is only as stable as the rounding: values within floating-point noise of a
bucket edge (a tie of the rounding) can still land on either side.

Layout: ``digest`` (:func:`hash_array`, :class:`Hasher`, :func:`genotype_hash`) and ``functional``
(:class:`FunctionalHasher`).
"""

from __future__ import annotations

from .digest import DIGEST_SIZE, Hasher, genotype_hash, hash_array
from .functional import FunctionalHasher

__all__ = ["hash_array", "Hasher", "FunctionalHasher", "genotype_hash", "DIGEST_SIZE"]
