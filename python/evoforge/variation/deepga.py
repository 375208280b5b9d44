"""Deep GA genomes as seed lists (Such et al. 2017), rebuilt without a noise table.

Symbols: P genomes, D parameters. A genome is a list of 64-bit seeds; its parameters are
``theta0 + sigma * noise(s_1) + ... + sigma * noise(s_n)``, accumulated left to right in float32
(one rounded multiply and one rounded add per seed). ``noise(s)`` is a standard normal vector of
length D drawn by Philox4x32-10 keyed by ``s`` and counted by the parameter index (see
cpp/include/evoforge/deepga.h), so nothing is stored and the CPU and the GPU give the same bits.
Rebuilding a child from its full seed list equals extending its cached parent by the last seed
(:func:`extend_params`), bit for bit.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from .. import _checks
from .._native import core, require_cuda
from ..errors import ConfigError

__all__ = ["seeds_to_params", "extend_params", "noise"]


def _sigma(sigma: Any) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"sigma must be a real number, got {type(sigma).__name__}")
    s = float(sigma)
    if not np.isfinite(s):
        raise ConfigError(f"sigma must be finite, got {sigma}")
    return s


def _seed_array(seeds: Any, name: str) -> np.ndarray:
    a = np.asarray(seeds, dtype=object if isinstance(seeds, (list, tuple)) else None)
    if a.dtype == object:
        items = list(a.ravel())
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items):
            raise TypeError(f"{name} must hold integer seeds")
        vals = [int(v) for v in items]
        if any(not 0 <= v < 2**64 for v in vals):
            raise ValueError(f"{name} seeds must lie in [0, 2**64)")
        return np.array(vals, dtype=np.uint64)
    if a.dtype.kind not in "iu" or a.dtype == np.bool_:
        raise TypeError(f"{name} must hold integer seeds, got dtype {a.dtype}")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise ValueError(f"{name} seeds must lie in [0, 2**64)")
    return np.ascontiguousarray(a.ravel(), dtype=np.uint64)


def _flatten(seed_lists: Any) -> tuple[np.ndarray, np.ndarray]:
    """(seeds [S] uint64, offsets [P + 1] int64) from a list of lists or a 2-D int array."""
    if _checks.is_torch(seed_lists):
        seed_lists = seed_lists.detach().cpu().numpy()
    if isinstance(seed_lists, np.ndarray):
        if seed_lists.ndim != 2:
            raise ValueError(f"seed_lists as an array must be 2-D (P, n_seeds), got shape {seed_lists.shape}")
        P, n = seed_lists.shape
        return _seed_array(seed_lists, "seed_lists"), np.arange(P + 1, dtype=np.int64) * n
    if not isinstance(seed_lists, Sequence) or isinstance(seed_lists, (str, bytes)):
        raise TypeError(f"seed_lists must be a sequence of seed sequences, got {type(seed_lists).__name__}")
    lengths, flat = [], []
    for i, lst in enumerate(seed_lists):
        if isinstance(lst, (numbers.Integral, str, bytes)) or not hasattr(lst, "__len__"):
            raise TypeError(f"seed_lists[{i}] must be a sequence of seeds, got {type(lst).__name__}")
        items = _seed_array(lst, f"seed_lists[{i}]").tolist() if isinstance(lst, np.ndarray) else list(lst)
        lengths.append(len(items))
        flat.extend(items)
    odd = [v for v in flat if type(v) is not int]  # fast path: plain Python ints
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in odd):
        raise TypeError("seed_lists must hold integer seeds")
    if odd:
        flat = [int(v) for v in flat]
    if flat and (min(flat) < 0 or max(flat) >= 2**64):
        raise ValueError("seed_lists seeds must lie in [0, 2**64)")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.array(flat, dtype=np.uint64), offsets


def _run(base: Any, base_stride_rows: bool, P: int, D: int, seeds: np.ndarray, offsets: np.ndarray, sigma: float):
    """Dispatch on base's kind and device; base is [D] (shared) or [P, D] (per row)."""
    stride = D if base_stride_rows else 0
    if _checks.is_torch(base):
        import torch

        if base.dtype != torch.float32:
            raise TypeError(f"parameters must be float32, got {base.dtype}")
        b = base.detach().contiguous()
        out = torch.empty((P, D), dtype=torch.float32, device=b.device)
        if b.device.type == "cuda":
            cu = require_cuda()
            s_d = torch.from_numpy(seeds.view(np.int64)).to(b.device)
            o_d = torch.from_numpy(offsets).to(b.device)
            with torch.cuda.device(b.device):
                cu.seeds_to_params(b.data_ptr(), stride, P, D, s_d.data_ptr(), o_d.data_ptr(), sigma,
                                   out.data_ptr(), torch.cuda.current_stream().cuda_stream)
            return out
        if b.device.type != "cpu":
            raise ValueError(f"parameters on {b.device} are not supported (CPU or CUDA)")
        core.seeds_to_params_ptr(b.data_ptr(), stride, P, D, seeds.ctypes.data, offsets.ctypes.data, sigma,
                                 out.data_ptr())
        return out
    a = _checks.to_numpy(base, "parameters")
    if a.dtype != np.float32:
        raise TypeError(f"parameters must be float32, got dtype {a.dtype}")
    a = np.ascontiguousarray(a)
    out = np.empty((P, D), dtype=np.float32)
    core.seeds_to_params_ptr(a.ctypes.data, stride, P, D, seeds.ctypes.data, offsets.ctypes.data, sigma,
                             out.ctypes.data)
    return out


def seeds_to_params(theta0: Any, seed_lists: Any, sigma: float) -> Any:
    """Parameters of P genomes from their seed lists, in one fused pass (no noise table).

    Parameters
    ----------
    theta0 : numpy array or torch.Tensor, float32, shape (D,)
        The initial parameters (Deb GA: ``init(seed_0)``); a CUDA tensor runs on its device.
    seed_lists : sequence of P sequences of int in [0, 2**64), or an int array of shape (P, n)
        Row p lists the mutation seeds of genome p, oldest first (lists may differ in length).
    sigma : float, mutation power

    Returns
    -------
    float32, shape (P, D): numpy, or a torch tensor on theta0's device.
    """
    s = _sigma(sigma)
    seeds, offsets = _flatten(seed_lists)
    shape = tuple(theta0.shape) if hasattr(theta0, "shape") else np.shape(theta0)
    if len(shape) != 1:
        raise ValueError(f"theta0 must have shape (D,), got {shape}")
    return _run(theta0, False, len(offsets) - 1, int(shape[0]), seeds, offsets, s)


def extend_params(parent_params: Any, seeds: Any, sigma: float) -> Any:
    """Children from cached parents: ``parent_params[p] + sigma * noise(seeds[p])``.

    Bit-identical to :func:`seeds_to_params` on the parent's seed list plus ``seeds[p]``.

    Parameters
    ----------
    parent_params : numpy array or torch.Tensor, float32, shape (P, D) (or (D,) for one parent)
    seeds : int or sequence of P ints in [0, 2**64)
    sigma : float

    Returns
    -------
    float32 of parent_params' shape and kind (device included).
    """
    s = _sigma(sigma)
    shape = tuple(parent_params.shape) if hasattr(parent_params, "shape") else np.shape(parent_params)
    if len(shape) not in (1, 2):
        raise ValueError(f"parent_params must have shape (P, D) or (D,), got {shape}")
    one = len(shape) == 1
    P, D = (1, shape[0]) if one else shape
    sd = _seed_array([seeds] if isinstance(seeds, numbers.Integral) else seeds, "seeds")
    if sd.size != P:
        raise ValueError(f"seeds must hold one seed per parent ({P}), got {sd.size}")
    out = _run(parent_params, True, P, D, sd, np.arange(P + 1, dtype=np.int64), s)
    return out[0] if one else out


def noise(seed: int, D: int) -> np.ndarray:
    """The noise vector of one seed: float32, shape (D,) (``seeds_to_params(0, [[seed]], 1.0)``)."""
    if isinstance(D, bool) or not isinstance(D, numbers.Integral) or D < 0:
        raise ConfigError(f"D must be an int >= 0, got {D!r}")
    return seeds_to_params(np.zeros(int(D), dtype=np.float32), [[seed]], 1.0)[0]
