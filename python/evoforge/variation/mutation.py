"""Batched mutation: EvoPress's level switch, integer point mutation, Gaussian and polynomial mutation.

Symbols: P individuals (parents), L genes, N offspring per parent. A population is a C-contiguous
array of shape (P, L); a 1-D genome of shape (L,) is treated as P = 1 and the leading axis is
dropped from the output. Inputs are numpy arrays (or array-likes) or torch tensors; the output has
the input's kind (a torch tensor on the input's device for tensors). Inputs are never modified.

Randomness is a pure function of ``(seed, generation, individual, gene)`` (see
:mod:`evoforge.random`): row r is individual ``individual_offset + r``, so the output is the same
for any thread count and any split of the rows, and the CUDA kernels give the same bits as the CPU.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import _checks
from .._native import core, require_cuda
from ..errors import ConfigError
from ..random import check_positive_int, check_prob, check_seed_args
from .validation import (bounds, check_eta, check_finite, check_finite_bounds, check_within, float_population,
                         int_population, is_cuda, like, per_gene)

__all__ = ["level_switch", "point", "gaussian", "polynomial"]


# ---- level switch -----------------------------------------------------------------------------


def _groups_csr(groups: Any, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group_of [L], members [L], group_start [G + 1]) as int32; None means one group."""
    if groups is None:
        gid = np.zeros(L, dtype=np.int64)
    else:
        g = _checks.to_numpy(groups, "groups")
        if g.dtype.kind not in "iu" or g.dtype == np.bool_:
            raise TypeError(f"groups must hold integer group ids, got dtype {g.dtype}")
        if g.shape != (L,):
            raise ConfigError(f"groups must have shape ({L},), got {g.shape}")
        _, gid = np.unique(g, return_inverse=True)
    members = np.argsort(gid, kind="stable").astype(np.int32)
    counts = np.bincount(gid, minlength=int(gid.max()) + 1 if L else 1)
    start = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=start[1:])
    return np.ascontiguousarray(gid, dtype=np.int32), members, start


def _costs_table(costs: Any, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """costs as float64 [L, S] with row i holding the costs of levels lower[i] .. upper[i]."""
    L = len(lo)
    width = (hi.astype(np.int64) - lo + 1)
    if isinstance(costs, (list, tuple)):
        if len(costs) != L:
            raise ValueError(f"costs must hold one ladder per gene ({L}), got {len(costs)}")
        rows = [np.asarray(_checks.to_numpy(c, f"costs[{i}]"), dtype=np.float64).ravel() for i, c in enumerate(costs)]
        S = max([len(r) for r in rows] + [1])
        table = np.full((L, S), np.nan)
        for i, r in enumerate(rows):
            table[i, : len(r)] = r
    else:
        a = _checks.to_numpy(costs, "costs")
        if a.dtype.kind not in "iuf" or a.dtype == np.bool_:
            raise TypeError(f"costs must hold real numbers, got dtype {a.dtype}")
        if a.ndim != 2 or a.shape[0] != L:
            raise ValueError(f"costs must have shape ({L}, n_levels) or be a list of {L} ladders, got {a.shape}")
        table = np.ascontiguousarray(a, dtype=np.float64)
    S = table.shape[1]
    short = width > S
    if short.any():
        i = int(np.argmax(short))
        raise ValueError(f"costs of gene {i} cover {S} levels but [lower, upper] = [{lo[i]}, {hi[i]}] has {width[i]}")
    used = np.arange(S)[None, :] < width[:, None]
    bad = used & ~np.isfinite(table)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise ValueError(f"costs of gene {i} at level {lo[i] + k} is {table[i, k]} (must be finite)")
    return np.ascontiguousarray(table)


def level_switch(
    parents: Any,
    lower: Any,
    upper: Any,
    *,
    n_offspring: int,
    max_switches: int = 3,
    groups: Any = None,
    costs: Any = None,
    budget_tol: float | None = None,
    seed: int,
    generation: int = 0,
    individual_offset: int = 0,
    max_attempts: int = 1000,
    return_drift: bool = False,
) -> Any:
    """EvoPress's level-switch mutation: budget-preserving offspring of integer level genomes.

    For each offspring, ``n = min(U{1..K}, U{1..K})`` switches are drawn (K = ``max_switches``; for
    K = 3, P(n = 1, 2, 3) = 5/9, 3/9, 1/9). A switch raises one gene by one level and lowers another
    gene of the same group by one; the pair is uniform over the valid ordered pairs (both genes
    stay within [lower, upper], and with ``costs`` the budget stays within ``budget_tol``).
    Without costs the sum of levels of every group is exactly preserved. An offspring equal to
    its parent or to an earlier offspring of the same parent is rejected and redrawn from the next
    attempt of its sub-stream (deterministic).

    Parameters
    ----------
    parents : array-like or torch.Tensor of integers, shape (P, L) or (L,)
        Levels, each within [lower, upper]. A CUDA tensor runs on its device.
    lower, upper : int or array-like of int, shape (L,)
        Inclusive bounds per gene; ``lower <= upper``.
    n_offspring : int >= 1
        Offspring per parent, all distinct from each other and from their parent.
    max_switches : int in [1, 16]
        K above.
    groups : array-like of int, shape (L,), optional
        Group id per gene; switches pair genes of one group only (e.g. layers of equal size in
        quantisation). None: one group.
    costs : array-like of float, shape (L, n_levels), or a list of L 1-D ladders, optional
        ``costs[i][k]`` is the cost (e.g. bits or non-zeros) of gene i at level ``lower[i] + k``.
        The budget is ``sum_i costs[i][level_i - lower[i]]``. A switch is valid only when the
        budget of the offspring stays within ``budget_tol`` of its parent's; with equal steps
        (e.g. every level step removes the same number of weights) the budget is exact.
    budget_tol : float >= 0, optional
        Absolute tolerance on ``|budget(child) - budget(parent)|``; None: ``1e-9 * max(1, sum_i
        max_k |costs[i][k]|)`` (rounding only). Ignored without costs.
    seed, generation, individual_offset : int
        Random stream: parent r is individual ``individual_offset + r``; offspring k of a parent
        uses sub-stream k (see :mod:`evoforge.random`).
    max_attempts : int >= 1
        Draws per offspring before giving up (ValueError) when no new distinct offspring is found.
    return_drift : bool
        Also return the budget drift ``budget(child) - budget(parent)`` (float64, summed over the
        changed genes in gene order; zeros without costs).

    Returns
    -------
    offspring : int32, shape (P, N, L) ((N, L) for 1-D parents); row ``[p, k]`` is offspring k of
        parent p (reshape to (P * N, L) for a flat population). numpy, or a torch tensor on the
        parents' device.
    drift : float64, shape (P, N) ((N,) for 1-D parents); only with ``return_drift``.

    Raises
    ------
    TypeError for non-integer levels or bounds; ValueError for wrong shapes, lower > upper, parents
    outside their bounds, NaN/inf costs, a parent that admits no switch (all genes fixed, no pair
    within one group, or no pair within the budget tolerance), or too few distinct offspring.
    """
    cuda = is_cuda(parents)
    host = parents.detach().cpu() if cuda else parents
    pop, one = int_population(host, "parents")
    P, L = pop.shape
    N = check_positive_int(n_offspring, "n_offspring", 1, 2**24 - 1)
    K = check_positive_int(max_switches, "max_switches", 1, int(core.level_switch_max_switches))
    A = check_positive_int(max_attempts, "max_attempts", 1, 4096)
    s, g, o = check_seed_args(seed, generation, individual_offset, P)
    lo, hi = bounds(lower, upper, L, np.int32, integer=True)
    if cuda:  # the CPU kernel checks the parents' bounds itself (in parallel)
        check_within(pop, lo, hi, "parents")
    group_of, members, start = _groups_csr(groups, L)
    table, tol = None, 0.0
    if costs is not None:
        table = _costs_table(costs, lo, hi)
        if budget_tol is None:
            width = hi.astype(np.int64) - lo + 1
            used = np.arange(table.shape[1])[None, :] < width[:, None]
            tol = 1e-9 * max(1.0, float(np.where(used, np.abs(table), 0.0).max(axis=1).sum()))
        else:
            if isinstance(budget_tol, bool) or not isinstance(budget_tol, numbers.Real):
                raise TypeError(f"budget_tol must be a real number, got {type(budget_tol).__name__}")
            tol = float(budget_tol)
            if not tol >= 0.0:
                raise ConfigError(f"budget_tol must be >= 0, got {budget_tol}")
    if L == 0 or P == 0:
        out = np.zeros((P, N, L), dtype=np.int32)
        drift = np.zeros((P, N))
    elif cuda:
        return _level_switch_cuda(parents, lo, hi, group_of, members, start, table, tol, N, K, A, s, g, o,
                                  one, return_drift)
    else:
        out, drift = core.level_switch(pop, lo, hi, group_of, members, start, table, tol, N, K, A, s, g, o)
        if drift is None:
            drift = np.zeros((P, N))
    res, dr = like(out, host, one), like(drift, host, one)
    if cuda:  # empty on a CUDA tensor
        res, dr = res.to(parents.device), dr.to(parents.device)
    return (res, dr) if return_drift else res


def _level_switch_cuda(parents, lo, hi, group_of, members, start, table, tol, N, K, A, s, g, o, one, return_drift):
    import torch

    cu = require_cuda()
    dev = parents.device
    pop = parents.to(torch.int32).reshape(1, -1) if one else parents.to(torch.int32)
    pop = pop.contiguous()
    P, L = pop.shape
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev)  # noqa: E731
    lo_d, hi_d, go_d, mem_d, st_d = t(lo), t(hi), t(group_of), t(members), t(start)
    cost_d = t(table) if table is not None else None
    out = torch.empty((P, N, L), dtype=torch.int32, device=dev)
    drift = torch.zeros((P, N), dtype=torch.float64, device=dev)
    no = P * N
    ws_i = torch.empty((no * int(cu.level_switch_ws_ints_per_offspring),), dtype=torch.int32, device=dev)
    ws_h = torch.empty((no,), dtype=torch.int64, device=dev)
    slots = torch.empty((P * int(cu.level_switch_slot_capacity(N)),), dtype=torch.int64, device=dev)
    status = torch.empty((P,), dtype=torch.int32, device=dev)
    max_group = int(np.diff(start).max()) if len(start) > 1 else 1
    with torch.cuda.device(dev):
        stream = torch.cuda.current_stream().cuda_stream
        cu.level_switch(
            pop.data_ptr(), P, L, lo_d.data_ptr(), hi_d.data_ptr(), go_d.data_ptr(), mem_d.data_ptr(),
            st_d.data_ptr(), max_group, cost_d.data_ptr() if cost_d is not None else 0,
            table.shape[1] if table is not None else 0, tol, N, K, A, s, g, o, out.data_ptr(),
            drift.data_ptr(), ws_i.data_ptr(), ws_h.data_ptr(), slots.data_ptr(), status.data_ptr(), stream,
        )
    st = status.cpu().numpy()
    bad = np.nonzero(st)[0]
    if bad.size:
        p = int(bad[0])
        if st[p] == 1:
            raise ValueError(f"level_switch: parent {p} admits no switch within [lower, upper], its groups"
                             + (" and the budget tolerance" if table is not None else ""))
        raise ValueError(f"level_switch: could not draw {N} distinct offspring of parent {p} in {A} attempts each")
    if one:
        out, drift = out[0], drift[0]
    return (out, drift) if return_drift else out


# ---- point, Gaussian and polynomial mutation --------------------------------------------------


def point(x: Any, lower: Any, upper: Any, *, prob: float, seed: int, generation: int = 0,
          individual_offset: int = 0) -> Any:
    """Random-resetting integer mutation.

    Each gene mutates with probability ``prob`` to a value drawn uniformly from
    ``[lower, upper]`` without its current value (genes with lower == upper never change).

    Parameters
    ----------
    x : array-like or CPU torch.Tensor of integers, shape (P, L) or (L,), within [lower, upper]
    lower, upper : int or array-like of int, shape (L,)
    prob : float in [0, 1], per gene
    seed, generation, individual_offset : int (see :mod:`evoforge.random`)

    Returns
    -------
    int32, same shape as x (numpy, or a torch tensor for a tensor input).
    """
    pop, one = int_population(x, "x")
    P, L = pop.shape
    p = check_prob(prob, "prob")
    s, g, o = check_seed_args(seed, generation, individual_offset, P)
    lo, hi = bounds(lower, upper, L, np.int32, integer=True)
    check_within(pop, lo, hi, "x")
    return like(core.point_mutation(pop, lo, hi, p, s, g, o), x, one)


def gaussian(x: Any, sigma: Any, *, prob: float = 1.0, lower: Any = None, upper: Any = None, seed: int,
             generation: int = 0, individual_offset: int = 0) -> Any:
    """Gaussian mutation: ``x + sigma * z`` with z standard normal, optionally clipped to bounds.

    Each gene mutates with probability ``prob`` (1: all genes, and no mask is drawn). ``z`` is
    exactly :func:`evoforge.random.normal` of the same seed, generation and offset. In float32 the
    result is one rounded multiply and one rounded add (bit-identical on CPU and GPU); in float64,
    z is widened first.

    Parameters
    ----------
    x : array-like or torch.Tensor, float32 or float64, shape (P, L) or (L,), finite (NaN or inf
        raise ValueError, as in :func:`polynomial`). A CUDA tensor (float32) runs on its device.
    sigma : float >= 0 or array-like of shape (L,)
    prob : float in [0, 1]
    lower, upper : float or array-like of shape (L,), optional (both or neither); ``lower <= upper``
    seed, generation, individual_offset : int (see :mod:`evoforge.random`)

    Returns
    -------
    Same dtype and shape as x; numpy, or a torch tensor on x's device.
    """
    if (lower is None) != (upper is None):
        raise ConfigError("give both lower and upper, or neither")
    p = check_prob(prob, "prob")
    if is_cuda(x):
        return _gaussian_cuda(x, sigma, p, lower, upper, seed, generation, individual_offset)
    pop, one = float_population(x, "x")
    check_finite(pop, "x")
    P, L = pop.shape
    s, g, o = check_seed_args(seed, generation, individual_offset, P)
    sig = per_gene(sigma, L, "sigma", pop.dtype)
    if (sig < 0).any() or not np.isfinite(sig).all():
        raise ConfigError("sigma must be finite and >= 0")
    lo = hi = None
    if lower is not None:
        lo, hi = bounds(lower, upper, L, pop.dtype)
    fn = core.gaussian_mutation_f32 if pop.dtype == np.float32 else core.gaussian_mutation_f64
    return like(fn(pop, sig, p, lo, hi, s, g, o), x, one)


def _gaussian_cuda(x, sigma, p, lower, upper, seed, generation, individual_offset):
    import torch

    cu = require_cuda()
    if x.dtype != torch.float32:
        raise TypeError(f"x on CUDA must be float32, got {x.dtype}")
    if x.dim() not in (1, 2):
        raise ValueError(f"x must have shape (P, L) or (L,), got {tuple(x.shape)}")
    one = x.dim() == 1
    xx = (x.reshape(1, -1) if one else x).contiguous()
    if not bool(torch.isfinite(xx).all()):  # one reduction on the device; the copy only to name the gene
        check_finite(xx.cpu().numpy(), "x")
    P, L = xx.shape
    s, g, o = check_seed_args(seed, generation, individual_offset, P)
    sig = per_gene(sigma.detach().cpu() if _checks.is_torch(sigma) else sigma, L, "sigma", np.float32)
    if (sig < 0).any() or not np.isfinite(sig).all():
        raise ConfigError("sigma must be finite and >= 0")
    dev = x.device
    sig_d = torch.from_numpy(sig).to(dev)
    lo_d = hi_d = None
    if lower is not None:
        lo, hi = bounds(lower.cpu() if _checks.is_torch(lower) else lower,
                         upper.cpu() if _checks.is_torch(upper) else upper, L, np.float32)
        lo_d, hi_d = torch.from_numpy(lo).to(dev), torch.from_numpy(hi).to(dev)
    out = torch.empty_like(xx)
    with torch.cuda.device(dev):
        cu.gaussian_mutation_f32(
            xx.data_ptr(), P, L, sig_d.data_ptr(), p, lo_d.data_ptr() if lo_d is not None else 0,
            hi_d.data_ptr() if hi_d is not None else 0, s, g, o, out.data_ptr(),
            torch.cuda.current_stream().cuda_stream,
        )
    return out[0] if one else out


def polynomial(x: Any, lower: Any, upper: Any, *, eta: float = 20.0, prob: float | None = None, seed: int,
               generation: int = 0, individual_offset: int = 0) -> Any:
    """Polynomial mutation (Deb and Goyal 1996), bounded form of Deb's NSGA-II code and pymoo.

    Each gene mutates with probability ``prob`` (default 1 / L); with u uniform in [0, 1),
    ``d1 = (x - xl) / (xu - xl)``, ``d2 = (xu - x) / (xu - xl)`` and ``m = 1 / (eta + 1)``::

        u <= 0.5:  dq = (2u + (1 - 2u) (1 - d1)^(eta + 1))^m - 1
        u >  0.5:  dq = 1 - (2 (1 - u) + 2 (u - 0.5) (1 - d2)^(eta + 1))^m

    and ``y = clip(x + dq (xu - xl), xl, xu)``, computed in float64 (cpp/mutation.cpp). Gene g of
    individual i uses block g of the "polynomial" stream: word 0 decides, words 1-2 give u.

    Parameters
    ----------
    x : array-like or CPU torch.Tensor, float32 or float64, shape (P, L) or (L,), within bounds
    lower, upper : float or array-like of shape (L,); ``lower <= upper``, finite (rounded to
        float32 first for float32 genes, so that clipped values are exactly representable)
    eta : float >= 0, distribution index (larger: smaller steps)
    prob : float in [0, 1], optional

    Returns
    -------
    Same dtype and shape as x.
    """
    pop, one = float_population(x, "x")
    P, L = pop.shape
    p = check_prob(1.0 / max(L, 1) if prob is None else prob, "prob")
    eta = check_eta(eta)
    s, g, o = check_seed_args(seed, generation, individual_offset, P)
    lo, hi = bounds(lower, upper, L, pop.dtype)  # float32 genes: float32 bounds, exactly representable
    check_finite_bounds(lo, hi)
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    if np.isnan(pop).any():
        raise ValueError(f"x holds NaN in row {_checks.first_nan_row(pop)}")
    check_within(pop, lo, hi, "x")
    fn = core.polynomial_mutation_f32 if pop.dtype == np.float32 else core.polynomial_mutation_f64
    return like(fn(pop, lo, hi, float(eta), p, s, g, o), x, one)
