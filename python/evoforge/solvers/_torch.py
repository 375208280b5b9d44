"""SparseGPT, GPTQ and round-to-nearest in torch, on the weight's device (a CUDA GPU, or the CPU).

The layer database build runs these when the model is on a GPU (:mod:`evoforge.compress.build`);
the C++ kernels (:mod:`._sparsegpt`, :mod:`._gptq`, :mod:`._rtn`) stay the CPU path. Same
algorithms and conventions as those (see :mod:`evoforge.solvers`): the factor of H is the one
:func:`factor_hessian` computes (on the host, float64, then cast to W's dtype), dead inputs' columns
are zeroed, columns are taken left to right in blocks of ``blocksize`` with the error of each fed
back into the later columns (within the block column by column, beyond it once per block);
SparseGPT prunes in each block and row the :func:`prune_counts` weights of smallest
``w^2 / U[j, j]^2`` (ties: the lower column), chosen at the block's start; GPTQ finds a group's grid
when its first column is reached. Only the order of the floating-point additions differs from the
kernels, so results equal theirs up to rounding (a near-tie may pick another weight to prune or
another code); round-to-nearest has no error feedback and gives the kernels' bits.

W is a float32 or float64 torch.Tensor [R, C] on any device; every output is on W's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._hessian import HessianFactor
from ._rtn import QuantizedLayer, ngroups, quant_args
from ._sparsegpt import prune_counts

__all__ = ["gptq_levels_torch", "rtn_torch", "sparsegpt_levels_torch"]


def _check_weight(W: Any) -> None:
    """W is a finite float32/float64 torch.Tensor [R, C] with C >= 1 (as the kernels require)."""
    import torch

    if not isinstance(W, torch.Tensor) or W.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"W must be a float32 or float64 torch.Tensor, got {type(W).__name__} {getattr(W, 'dtype', '')}")
    if W.dim() != 2 or W.shape[1] < 1:
        raise ValueError(f"W must be 2-D [R, C] with C >= 1, got shape {tuple(W.shape)}")
    if not bool(torch.isfinite(W).all()):
        raise ValueError("W holds NaN or inf")


def _setup(W: Any, factor: HessianFactor) -> tuple[Any, Any]:
    """(W's copy with the dead inputs' columns zeroed, U) on W's device, in W's dtype."""
    import torch

    _check_weight(W)
    if not isinstance(factor, HessianFactor) or factor.cols != W.shape[1] or factor.perm is not None:
        raise ValueError("factor must be a HessianFactor (without act-order) for W's columns")
    Wc = W.detach().clone()
    Wc[:, torch.from_numpy(np.asarray(factor.dead)).to(W.device)] = 0
    U = torch.from_numpy(np.ascontiguousarray(factor.U)).to(device=W.device, dtype=W.dtype)
    return Wc, U


def sparsegpt_levels_torch(W: Any, factor: HessianFactor, sparsities: Sequence[float], *,
                           blocksize: int = 128) -> Any:
    """The ladder of unstructured SparseGPT solutions, [L, R, C] (as :func:`sparsegpt_levels`): all
    levels' rows solved together, one row block of the stacked [L * R, C] weight."""
    import torch

    Wc, U = _setup(W, factor)
    R, C = Wc.shape
    L = len(sparsities)
    Wall = Wc.repeat(L, 1)  # [L * R, C]
    counts = torch.from_numpy(np.concatenate([prune_counts(R, C, blocksize, float(s)) for s in sparsities])
                              .astype(np.int64)).to(W.device)  # [L * R, n_blocks]
    cols = torch.arange(C, device=W.device)
    d = U.diagonal()
    for b, i1 in enumerate(range(0, C, blocksize)):
        i2 = min(i1 + blocksize, C)
        blk = Wall[:, i1:i2]
        score = blk * blk / (d[i1:i2] * d[i1:i2])[None, :]
        order = torch.sort(score, dim=1, stable=True).indices  # ascending, ties by column
        rank = torch.empty_like(order)
        rank.scatter_(1, order, cols[:i2 - i1].expand_as(order).contiguous())
        prune = rank < counts[:, b:b + 1]
        E = torch.zeros_like(blk)
        for j in range(i2 - i1):
            i = i1 + j
            err = torch.where(prune[:, j], Wall[:, i] / U[i, i], torch.zeros((), dtype=Wall.dtype, device=W.device))
            E[:, j] = err
            Wall[:, i + 1:i2] -= err[:, None] * U[i, i + 1:i2][None, :]
            Wall[:, i] = torch.where(prune[:, j], torch.zeros((), dtype=Wall.dtype, device=W.device), Wall[:, i])
        if i2 < C:
            Wall[:, i2:] -= E @ U[i1:i2, i2:]
    return Wall.reshape(L, R, C)


def _grid(x: Any, maxq: int, sym: bool) -> tuple[Any, Any]:
    """GPTQ's min/max grid (scale, zero) [R] of each row of ``x`` [R, n]; the range contains 0."""
    import torch

    zero_t = torch.zeros((), dtype=x.dtype, device=x.device)
    xmin = torch.minimum(x.amin(dim=1), zero_t)
    xmax = torch.maximum(x.amax(dim=1), zero_t)
    if sym:
        xmax = torch.maximum(-xmin, xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    flat = (xmin == 0) & (xmax == 0)
    xmin = torch.where(flat, torch.full_like(xmin, -1), xmin)
    xmax = torch.where(flat, torch.full_like(xmax, 1), xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) // 2) if sym else torch.round(-xmin / scale)
    return scale, zero


def _quantize(x: Any, scale: Any, zero: Any, maxq: int) -> tuple[Any, Any]:
    """(dequantised value, code) of ``x`` on the grid (round half to even, as std::nearbyint; clamped)."""
    import torch

    v = (torch.round(x / scale) + zero).clamp(0, maxq)
    return scale * (v - zero), v


def _result(Wq: Any, scales: Any, zeros: Any, q: Any, g: int, C: int) -> QuantizedLayer:
    import torch

    g_idx = (torch.arange(C, device=Wq.device) // g if g > 0 else torch.zeros(C, dtype=torch.int64,
                                                                             device=Wq.device)).to(torch.int32)
    return QuantizedLayer(Wq, scales, zeros, q.to(torch.uint8), g_idx)


def rtn_torch(W: Any, bits: int, *, group_size: int = 128, symmetric: bool = False) -> QuantizedLayer:
    """Round-to-nearest on GPTQ's grid (as :func:`rtn`), on W's device."""
    import torch

    _check_weight(W)
    R, C = W.shape
    b, g, sym = quant_args(bits, group_size, symmetric, C)
    maxq = 2**b - 1
    G = ngroups(C, g)
    width = C if g <= 0 else g
    scales = torch.empty((R, G), dtype=W.dtype, device=W.device)
    zeros = torch.empty_like(scales)
    Wq = torch.empty_like(W)
    q = torch.empty_like(W)
    for k in range(G):
        c0, c1 = k * width, min(C, (k + 1) * width)
        s, z = _grid(W[:, c0:c1], maxq, sym)
        scales[:, k], zeros[:, k] = s, z
        Wq[:, c0:c1], q[:, c0:c1] = _quantize(W[:, c0:c1], s[:, None], z[:, None], maxq)
    return _result(Wq, scales, zeros, q, g, C)


def gptq_levels_torch(W: Any, factor: HessianFactor, bits: Sequence[int], *, group_size: int = 128,
                      symmetric: bool = False, blocksize: int = 128) -> list[QuantizedLayer]:
    """``[gptq(W, H, b, ...) for b in bits]`` (as :func:`gptq_levels`, without act-order), on W's device."""
    import torch

    base, U = _setup(W, factor)
    R, C = base.shape
    out = []
    for bb in bits:
        b, g, sym = quant_args(bb, group_size, symmetric, C)
        maxq = 2**b - 1
        bs = blocksize if g <= 0 else (g if blocksize < g else blocksize - blocksize % g)
        Wc = base.clone()
        G = ngroups(C, g)
        scales = torch.empty((R, G), dtype=W.dtype, device=W.device)
        zeros = torch.empty_like(scales)
        q = torch.empty_like(Wc)
        if g <= 0:
            scale, zero = _grid(Wc, maxq, sym)
            scales[:, 0], zeros[:, 0] = scale, zero
        for i1 in range(0, C, bs):
            i2 = min(i1 + bs, C)
            E = torch.zeros((R, i2 - i1), dtype=Wc.dtype, device=W.device)
            for j in range(i2 - i1):
                i = i1 + j
                if g > 0 and i % g == 0:
                    scale, zero = _grid(Wc[:, i:min(C, i + g)], maxq, sym)
                    scales[:, i // g], zeros[:, i // g] = scale, zero
                x = Wc[:, i].clone()
                wq, code = _quantize(x, scale, zero, maxq)
                q[:, i] = code
                err = (x - wq) / U[i, i]
                E[:, j] = err
                Wc[:, i + 1:i2] -= err[:, None] * U[i, i + 1:i2][None, :]
                Wc[:, i] = wq
            if i2 < C:
                Wc[:, i2:] -= E @ U[i1:i2, i2:]
        out.append(_result(Wc, scales, zeros, q, g, C))
    return out
