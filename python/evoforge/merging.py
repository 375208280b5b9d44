"""Native model merging of flattened parameter vectors: task arithmetic, TIES, DARE and SLERP.

Symbols: K models, N parameters. A model enters as its task vector (delta) against a shared base,
``delta_k = model_k - base``; :func:`merge_deltas` writes ``base + scale * merge(deltas)`` into a
caller's float32 buffer (which may be a view of a model's parameter memory).

- Task arithmetic / linear merge: ``sign_election=False`` (``normalize=True``: a weighted mean).
- TIES (Yadav et al. 2023, "TIES-Merging"): ``trim=True, sign_election=True`` (and usually
  ``normalize=True``, the disjoint mean): keep each delta's top-``density`` magnitudes, elect a sign
  per parameter, add only the deltas agreeing with it.
- DARE (Yu et al. 2023, "Language Models are Super Mario"): ``dare=True``: drop each element with
  probability ``1 - density`` and rescale the kept ones by ``1 / density``; with
  ``sign_election=True`` it is DARE-TIES.
- SLERP (:func:`slerp`): spherical interpolation of two flattened vectors, as mergekit does.

Exact definitions (cpp/include/evoforge/merging.h): per element, everything is float64 in the
order k = 0 .. K-1, rounded once to float32, so results are bit-identical on any thread count.
DARE's uniforms are Philox4x32-10 numbers, a pure function of ``(seed, stream, k, i)``
(:func:`dare_mask` is model k's keep mask), so a merge is reproducible anywhere; the CUDA twin of
the mask (``dare_mask(..., device="cuda")``) gives the same bits.

Arrays are numpy arrays, or CPU torch tensors (used through a numpy view, without copying).
Errors: TypeError for a wrong type or dtype; ValueError for a shape, a non-contiguous or read-only
buffer, or an ``out`` that overlaps an input; :class:`~evoforge.errors.ConfigError` (a ValueError)
for a bad hyperparameter (density outside (0, 1], NaN or infinite weights, trim and dare together,
t outside [0, 1], ...). Deltas holding NaN or inf raise ValueError naming the model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _checks
from ._native import core, require_cuda
from .errors import ConfigError

__all__ = ["dare_mask", "merge_deltas", "n_keep", "slerp", "trim_thresholds"]

_U32 = 2**32
_U64 = 2**64


def _f32(x: Any, name: str, ndim: int, *, out: bool = False) -> np.ndarray:
    """x as a float32 C-contiguous array of ``ndim`` dimensions (a view, never a copy)."""
    if _checks.is_torch(x):
        if str(x.dtype) != "torch.float32":
            raise TypeError(f"{name} must be float32, got {x.dtype}")
        x = _checks.to_numpy(x, name)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a float32 numpy array (or CPU torch tensor), got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got dtype {x.dtype}")
    if x.ndim != ndim:
        want = "[N]" if ndim == 1 else "[K, N]"
        raise ValueError(f"{name} must have shape {want}, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if out and not x.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return x


def _per_model(x: Any, K: int, name: str) -> np.ndarray:
    """x as float64 [K] of finite values (ConfigError names the first bad entry)."""
    a = _checks.to_numpy(x, name)
    if a.dtype.kind not in "biuf" or a.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] != K:
        raise ValueError(f"{name} must have shape [K={K}] (one per delta), got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(f"{name}[{i}] must be finite, got {a[i]}")
    return a


def _densities(x: Any, K: int) -> np.ndarray:
    d = _per_model(x, K, "densities")
    bad = ~((d > 0) & (d <= 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(f"densities[{i}] must lie in (0, 1], got {d[i]}")
    return d


def _density(x: Any) -> float:
    d = _checks.check_real(x, "density")
    if not 0 < d <= 1:
        raise ConfigError(f"density must lie in (0, 1], got {d}")
    return d


def _flag(x: Any, name: str) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(x).__name__}")
    return bool(x)


def _finite(x: Any, name: str) -> float:
    v = _checks.check_real(x, name)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {v}")
    return v


def _no_alias(out: np.ndarray, others: dict[str, np.ndarray]) -> None:
    for name, a in others.items():
        if np.shares_memory(out, a):
            raise ValueError(f"out must not share memory with {name} (write the merge into a separate buffer)")


def merge_deltas(out: Any, base: Any, deltas: Any, weights: Any, densities: Any = None, *,
                 trim: bool = False, dare: bool = False, sign_election: bool = False,
                 normalize: bool = False, scale: float = 1.0, seed: int = 0, stream: int = 0,
                 thresholds: Any = None) -> Any:
    """Merge K task vectors into ``out = base + scale * r`` (written in place and returned).

    Parameters
    ----------
    out : float32 [N], C-contiguous and writeable (e.g. a view of a model's flat parameters);
        must not share memory with ``base`` or ``deltas``.
    base : float32 [N], C-contiguous: the shared base model.
    deltas : float32 [K, N], C-contiguous, K >= 1: task vectors ``model_k - base`` (finite).
    weights : float64 [K] (any real array-like), finite (negative allowed).
    densities : float64 [K] in (0, 1], or None (all 1). Required with ``trim`` or ``dare``.
    trim : TIES trim: keep the ``n_keep = clamp(floor(density_k N + 0.5), 1, N)`` largest
        ``|delta_k|``: every element with ``|delta_k[i]| >= thr_k``, thr_k the n_keep-th largest
        magnitude (ties at the threshold all kept); zero the others.
    dare : DARE: keep element i of model k iff ``u(seed, stream, k, i) < density_k`` (the mask of
        :func:`dare_mask`) and multiply kept elements by ``1 / density_k``. Excludes ``trim``.
    sign_election : TIES combination. False: ``r_i = sum_k w_k d~_k[i]``. True: with
        ``g_i = sign(sum_k w_k d~_k[i])``, add only the k with ``d~_k[i] != 0`` and
        ``sign(d~_k[i]) == g_i`` (``r_i = 0`` when ``g_i = 0``).
    normalize : divide r_i by the sum of the weights added: all K (sign_election False; that sum
        must not be 0), or the agreeing ones (sign_election True; ``r_i = 0`` when it is 0).
    scale : finite float: ``out = base + scale * r``.
    seed : int in [0, 2**64), stream : int in [0, 2**32): DARE's random numbers (ignored otherwise).
    thresholds : float32 [K] or None; with ``trim``: each model's thr_k, as :func:`trim_thresholds`
        gives it, for a caller merging the same deltas many times (the selection is skipped, and
        with it the finiteness check of the deltas: check them once yourself).

    Returns
    -------
    out (the object passed), float32 [N].

    Raises
    ------
    TypeError for a wrong type or dtype; ValueError for shapes, contiguity, read-only or aliased
    ``out``, deltas holding NaN or inf (out is then unspecified unless ``trim``); ConfigError for
    weights, densities, scale, seed or stream out of range, or ``trim`` and ``dare`` together.
    """
    trim, dare = _flag(trim, "trim"), _flag(dare, "dare")
    sign_election, normalize = _flag(sign_election, "sign_election"), _flag(normalize, "normalize")
    if trim and dare:
        raise ConfigError("trim (TIES) and dare (DARE) exclude each other: pick one")
    o = _f32(out, "out", 1, out=True)
    b = _f32(base, "base", 1)
    d = _f32(deltas, "deltas", 2)
    K, N = d.shape
    if K == 0:
        raise ValueError("deltas must hold at least one task vector (K >= 1), got shape (0, N)")
    if b.shape[0] != N:
        raise ValueError(f"base has {b.shape[0]} elements but deltas have N = {N}")
    if o.shape[0] != N:
        raise ValueError(f"out has {o.shape[0]} elements but deltas have N = {N}")
    _no_alias(o, {"base": b, "deltas": d})
    w = _per_model(weights, K, "weights")
    if densities is None:
        if trim or dare:
            raise ConfigError(f"densities are required with {'trim' if trim else 'dare'}")
        rho = np.ones(K, dtype=np.float64)
    else:
        rho = _densities(densities, K)
    sc = _finite(scale, "scale")
    s = _checks.check_int(seed, "seed", 0, _U64 - 1)
    st = _checks.check_int(stream, "stream", 0, _U32 - 1)
    if normalize and not sign_election:
        total = 0.0
        for v in w.tolist():  # the kernel's order
            total += v
        if total == 0.0:
            raise ConfigError("normalize divides by the sum of the weights, which is 0")
    mode = 1 if trim else 2 if dare else 0
    if thresholds is None:
        core.merge_deltas(o, b, d, w, rho, mode, sign_election, normalize, sc, s, st)
        return out
    if not trim:
        raise ConfigError("thresholds are the trim's (TIES): give them with trim=True only")
    thr = np.ascontiguousarray(_checks.to_numpy(thresholds, "thresholds"))
    if thr.dtype != np.float32 or thr.shape != (K,):
        raise ValueError(f"thresholds must be float32 [{K}], got {thr.dtype} {thr.shape}")
    if not (np.isfinite(thr).all() and (thr >= 0).all()):
        raise ValueError("thresholds must be finite magnitudes (>= 0)")
    core.merge_deltas(o, b, d, w, rho, mode, sign_election, normalize, sc, s, st, thresholds=thr)
    return out


def n_keep(density: float, n: int) -> int:
    """The trim's kept count: ``clamp(floor(density n + 0.5), 1, n)`` (n >= 1)."""
    n = _checks.check_int(n, "n", 1, 2**62)
    return int(min(max(np.floor(_density(density) * n + 0.5), 1), n))


def trim_thresholds(sorted_magnitudes: Any, densities: Any) -> np.ndarray:
    """float32 [K]: thr_k = the n_keep-th largest magnitude of model k, read from
    ``sorted_magnitudes`` float32 [K, N] (each row's ``|delta_k|`` in ascending order, as
    ``np.sort(np.abs(deltas), axis=1)`` gives it once for many merges)."""
    m = _checks.to_numpy(sorted_magnitudes, "sorted_magnitudes")
    if m.ndim != 2 or m.shape[1] < 1:
        raise ValueError(f"sorted_magnitudes must be [K, N] with N >= 1, got shape {m.shape}")
    K, N = m.shape
    rho = _densities(densities, K)
    return np.array([m[k, N - n_keep(rho[k], N)] for k in range(K)], dtype=np.float32)


def slerp(out: Any, a: Any, b: Any, t: float, *, eps: float = 1e-8) -> Any:
    """Spherical interpolation of two flattened vectors (mergekit's slerp), written into ``out``.

    With ``cos = clip(a.b / (|a| |b|), -1, 1)`` and ``omega = arccos(cos)`` (norms and dot in
    float64, in a fixed order): ``out = sin((1-t) omega) / sin(omega) a + sin(t omega) / sin(omega) b``;
    when |a| = 0, |b| = 0 or ``|cos| > 1 - eps`` (nearly colinear or opposite), the linear
    ``out = (1 - t) a + t b``. The raw vectors are interpolated, not the normalised ones; t = 0
    gives a and t = 1 gives b exactly.

    Parameters
    ----------
    out : float32 [N], C-contiguous, writeable, sharing no memory with a or b.
    a, b : float32 [N], C-contiguous, finite.
    t : float in [0, 1].
    eps : float >= 0 (finite): the colinearity tolerance.

    Returns
    -------
    out (the object passed), float32 [N].
    """
    tt = _checks.check_real(t, "t")
    if not 0.0 <= tt <= 1.0:
        raise ConfigError(f"t must lie in [0, 1], got {tt}")
    e = _finite(eps, "eps")
    if e < 0:
        raise ConfigError(f"eps must be >= 0, got {e}")
    o = _f32(out, "out", 1, out=True)
    av = _f32(a, "a", 1)
    bv = _f32(b, "b", 1)
    if av.shape != bv.shape or o.shape != av.shape:
        raise ValueError(f"out, a and b must have one shape [N], got {o.shape}, {av.shape}, {bv.shape}")
    _no_alias(o, {"a": av, "b": bv})
    core.slerp(o, av, bv, tt, e)
    return out


def dare_mask(n: int, density: float, *, seed: int = 0, stream: int = 0, k: int = 0, device: Any = None) -> Any:
    """The DARE keep mask of model ``k``: exactly the elements ``merge_deltas(dare=True)`` keeps.

    Element i is kept iff ``u < density``, where ``u = (w >> 8) * 2**-24`` and w is word ``i % 4``
    of the Philox4x32-10 block with key ``seed`` and counter ``(blk & 0xffffffff, k, stream,
    (10 << 24) | (blk >> 32))``, ``blk = i // 4`` (10 is DARE's operator stream).

    Parameters
    ----------
    n : int >= 0, the number of parameters.
    density : float in (0, 1], the keep probability.
    seed : int in [0, 2**64); stream : int in [0, 2**32); k : int in [0, 2**32), the model's row.
    device : None (numpy), or a torch device: a CUDA device runs the CUDA twin (the same bits).

    Returns
    -------
    bool [n]: numpy, or a torch tensor on ``device``.
    """
    nn = _checks.check_int(n, "n", 0, 2**40)  # a tensor of 2**40 elements already needs 4 TiB
    rho = _density(density)
    s = _checks.check_int(seed, "seed", 0, _U64 - 1)
    st = _checks.check_int(stream, "stream", 0, _U32 - 1)
    kk = _checks.check_int(k, "k", 0, _U32 - 1)
    dev = _checks.check_device(device)
    if dev is not None and dev.type == "cuda":
        import torch

        cu = require_cuda()
        m = torch.empty(nn, dtype=torch.bool, device=dev)
        with torch.cuda.device(dev):
            cu.dare_mask(m.data_ptr(), nn, rho, s, st, kk, torch.cuda.current_stream().cuda_stream)
        return m
    mask = np.empty(nn, dtype=np.bool_)
    core.dare_mask(mask, rho, s, st, kk)
    if dev is not None:
        import torch

        return torch.from_numpy(mask).to(dev)
    return mask
