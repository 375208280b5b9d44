"""Counter-based random numbers: Philox4x32-10 (Salmon et al. 2011) in evoforge's key layout.

Every variation operator of evoforge (:mod:`evoforge.variation`: mutation, crossover,
selection, deepga) draws its numbers as a pure function of
``(seed, generation, individual, gene)``, never from a hidden state, so a population generated at
once equals the same population generated in pieces (pass ``individual_offset``), on any thread
count, on the CPU and on the GPU (bit-identical).

Layout (cpp/include/evoforge/philox.h)::

    key     = (seed & 0xffffffff, seed >> 32)                   # seed: 64-bit unsigned
    counter = (block, individual, generation, stream << 24 | sub)

``block`` counts 4-word blocks within one sequence (per-gene draws derive it from the gene index),
``individual`` is the row index plus ``individual_offset``, ``stream`` is one of :data:`STREAMS`
(one per operator) and ``sub`` a 24-bit sub-stream. Conversions are exact: a float32 uniform is
``(w >> 8) * 2**-24``, a float64 uniform ``((w0 >> 5) * 2**26 + (w1 >> 6)) * 2**-53``, an integer
below ``n`` is ``floor(((w0 << 32) | w1) * n / 2**64)``. Normals come from Box-Muller in float32
with explicitly rounded arithmetic and polynomial log/sin/cos (no libm), see :func:`box_muller`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _checks
from ._native import core, require_cuda
from .errors import ConfigError

__all__ = ["STREAMS", "philox4x32_10", "box_muller", "normal"]

#: The operator streams (top 8 bits of counter word 3).
STREAMS = {
    "raw": 0,
    "level_switch": 1,
    "point_mutation": 2,
    "gaussian": 3,
    "gaussian_mask": 4,
    "polynomial": 5,
    "crossover": 6,
    "sbx": 7,
    "tournament": 8,
    "deepga": 9,
}

_U64 = 2**64
_U32 = 2**32


def check_uint(value: Any, name: str, bits: int) -> int:
    """An int in [0, 2**bits); TypeError for non-integers (bools included), ConfigError out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    v = int(value)
    if not 0 <= v < 2**bits:
        raise ConfigError(f"{name} must lie in [0, 2**{bits}), got {v}")
    return v


def check_seed_args(seed: Any, generation: Any, individual_offset: Any, n_individuals: int) -> tuple[int, int, int]:
    """Validated (seed, generation, individual_offset); the individuals used must fit in 32 bits."""
    s = check_uint(seed, "seed", 64)
    g = check_uint(generation, "generation", 32)
    o = check_uint(individual_offset, "individual_offset", 32)
    if o + n_individuals > _U32:
        raise ConfigError(f"individual_offset + number of individuals must be <= 2**32, got {o} + {n_individuals}")
    return s, g, o


def check_prob(value: Any, name: str) -> float:
    """A probability in [0, 1]; TypeError for non-numbers, ConfigError for NaN or out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    p = float(value)
    if not 0.0 <= p <= 1.0:  # NaN fails too
        raise ConfigError(f"{name} must lie in [0, 1], got {value}")
    return p


#: The shared integer check (see :func:`evoforge._checks.check_int`), under its historical name.
check_positive_int = _checks.check_int


def philox4x32_10(counter: Any, key: Any) -> np.ndarray:
    """The raw Philox4x32-10 bijection.

    Parameters
    ----------
    counter : array-like of uint32, shape (N, 4) or (4,)
    key : array-like of uint32, shape (N, 2) or (2,)

    Returns
    -------
    numpy.ndarray of uint32, shape (N, 4) (or (4,) for 1-D inputs)
    """
    c = _checks.to_numpy(counter, "counter")
    k = _checks.to_numpy(key, "key")
    for a, name, w in ((c, "counter", 4), (k, "key", 2)):
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
        if a.shape[-1:] != (w,) or a.ndim not in (1, 2):
            raise ValueError(f"{name} must have shape (N, {w}) or ({w},), got {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= _U32):
            raise ValueError(f"{name} words must lie in [0, 2**32)")
    one = c.ndim == 1
    c2 = np.ascontiguousarray(c.reshape(-1, 4), dtype=np.uint32)
    k2 = np.ascontiguousarray(k.reshape(-1, 2), dtype=np.uint32)
    if k2.shape[0] == 1 and c2.shape[0] > 1:
        k2 = np.ascontiguousarray(np.broadcast_to(k2, (c2.shape[0], 2)))
    if k2.shape[0] != c2.shape[0]:
        raise ValueError(f"counter and key must have the same number of rows, got {c2.shape[0]} and {k2.shape[0]}")
    out = core.philox4x32_10(c2, k2)
    return out[0] if one else out


def box_muller(w1: Any, w2: Any) -> np.ndarray:
    """Two standard normals per pair of 32-bit words, as every evoforge operator makes them.

    ``r = sqrt(2 * (0 - log(u1)))`` with ``u1 = ((w1 >> 8) + 1) * 2**-24`` in (0, 1] and
    ``theta = 2 pi (w2 >> 8) / 2**24``; returns ``(r cos theta, r sin theta)``. All in float32, each
    operation rounded to nearest; log, sin and cos are explicit polynomials (a few ulp from the true
    values) so the CPU and the GPU agree bit for bit.

    Returns
    -------
    numpy.ndarray of float32, shape (N, 2)
    """
    a = np.ascontiguousarray(_checks.to_numpy(w1, "w1").ravel(), dtype=np.uint32)
    b = np.ascontiguousarray(_checks.to_numpy(w2, "w2").ravel(), dtype=np.uint32)
    if a.shape != b.shape:
        raise ValueError(f"w1 and w2 must have the same size, got {a.size} and {b.size}")
    return core.box_muller(a, b)


def normal(shape: tuple[int, int] | int, *, seed: int, generation: int = 0, individual_offset: int = 0,
           device: Any = None) -> Any:
    """Standard normals of shape (P, L): exactly the ``z`` that :func:`evoforge.mutation.gaussian`
    adds (times sigma) to individual ``individual_offset + r``, gene ``g``.

    Parameters
    ----------
    device : None, or a torch device (e.g. "cuda"): then a torch tensor made on that device
        (bit-identical to the CPU's numbers).

    Returns
    -------
    float32, shape (P, L) (or (L,) for an int shape): numpy, or a torch tensor on ``device``.
    """
    one = not _checks.is_sequence_shape(shape)
    dims = _checks.check_shape(shape, "shape", lo=0)
    if len(dims) != (1 if one else 2):
        raise ConfigError(f"shape must be an int L or a pair (P, L), got {shape!r}")
    P, L = (1, dims[0]) if one else dims
    s, g, o = check_seed_args(seed, generation, individual_offset, P)
    if device is not None:
        import torch

        dev = torch.device(device)
        if dev.type == "cuda":
            cu = require_cuda()
            out_t = torch.empty((P, L), dtype=torch.float32, device=dev)
            with torch.cuda.device(dev):
                cu.gaussian_normals(P, L, s, g, o, out_t.data_ptr(), torch.cuda.current_stream().cuda_stream)
        else:
            out_t = torch.from_numpy(core.gaussian_normals(P, L, s, g, o)).to(dev)
        return out_t[0] if one else out_t
    out = core.gaussian_normals(P, L, s, g, o)
    return out[0] if one else out
