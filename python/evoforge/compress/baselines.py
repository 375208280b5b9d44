"""The baselines a compression search is compared with, at the same exact budget.

Uniform
    Sparsity and quantisation: every layer at the target (``provider.uniform``); depth
    (:func:`spread_genome`): K sub-blocks of each kind dropped, evenly spaced over depth;
    depth + quantisation: nothing dropped, every sub-block at the target bits (``joint.uniform``).
ShortGPT (depth, depth + quantisation)
    :func:`shortgpt_scores` / :func:`shortgpt_genome`: per sub-block importance = 1 - mean cosine
    similarity between its residual input and output on calibration tokens; drop the K least
    important of each kind. :func:`shortgpt_joint`: as many drops of each kind as a joint result,
    chosen by those scores, the freed bits spread evenly over the kept sub-blocks.
OWL (sparsity)
    :func:`owl_genome`: OWL's outlier-weighted per-block sparsity (lambda :data:`OWL_LAMBDA`, M
    :data:`OWL_M`), rounded to a sparsity database's levels with the exact budget.

Scores and outlier ratios are computed on the model's device (float64 there); only their [2N] / [N]
summaries come back to the host.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._checks import check_int, check_real
from .adapters import ModelAdapter
from .tokens import check_tokens, vocab_size

__all__ = [
    "OWL_LAMBDA",
    "OWL_M",
    "owl_genome",
    "owl_sparsities",
    "shortgpt_genome",
    "shortgpt_joint",
    "shortgpt_scores",
    "spread_genome",
]

OWL_LAMBDA = 0.08
OWL_M = 5.0


def spread_genome(n_blocks: int, k: int) -> np.ndarray:
    """The "uniform" depth baseline: K sub-blocks of each kind dropped evenly spaced over depth."""
    idx = np.unique(np.floor((np.arange(k) + 0.5) * n_blocks / k).astype(np.int64))
    g = np.zeros(2 * n_blocks, dtype=np.int64)
    g[idx] = 1
    g[n_blocks + idx] = 1
    return g


# ---- ShortGPT-style block scoring -----------------------------------------------------------------


def _one_minus_cos_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1.0 - torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)).sum()


def shortgpt_scores(adapter: ModelAdapter, tokens: torch.Tensor, *, batch_size: int = 8) -> np.ndarray:
    """Importance per sub-block, float64 [2N] (attention, then MLP): 1 - mean over calibration tokens
    of cos(residual entering the sub-block, residual leaving it), measured in the dense model."""
    tok = check_tokens(tokens, "tokens", vocab=vocab_size(adapter.model))
    batch_size = check_int(batch_size, "batch_size", 1)
    N = adapter.n_blocks
    dev = next(adapter.model.parameters()).device
    sums = torch.zeros(2 * N, dtype=torch.float64, device=dev)  # on the device: no sync per hook
    cur: dict[str, Any] = {}
    handles = []

    def pre(i: int):
        def hook(module: Any, args: tuple, kwargs: dict) -> None:
            cur["h"] = args[0] if args else kwargs["hidden_states"]
        return hook

    def attn_post(i: int):
        def hook(module: Any, args: tuple, output: Any) -> None:
            a = output[0] if isinstance(output, tuple) else output
            cur["mid"] = cur["h"] + a
        return hook

    def blk_post(i: int):
        def hook(module: Any, args: tuple, output: Any) -> None:
            o = output[0] if isinstance(output, tuple) else output
            sums[i] += _one_minus_cos_sum(cur["h"], cur["mid"])
            sums[N + i] += _one_minus_cos_sum(cur["mid"], o)
        return hook

    for i, blk in enumerate(adapter.blocks):
        handles.append(blk.register_forward_pre_hook(pre(i), with_kwargs=True))
        handles.append(adapter.sub_block(i, "attn").module.register_forward_hook(attn_post(i)))
        handles.append(blk.register_forward_hook(blk_post(i)))
    try:
        with torch.inference_mode():
            for c0 in range(0, tok.shape[0], batch_size):
                adapter.model(input_ids=tok[c0:c0 + batch_size].to(dev), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return (sums / max(1, tok.numel())).cpu().numpy()


def shortgpt_genome(scores: Any, k: int) -> np.ndarray:
    """Drop the K least important sub-blocks of each kind (ties: the later block)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    N = s.size // 2
    g = np.zeros(2 * N, dtype=np.int64)
    for off in (0, N):
        part = s[off:off + N]
        order = np.lexsort((-np.arange(N), part))  # ascending importance, later block first on ties
        g[off + order[:k]] = 1
    return g


def shortgpt_joint(joint: Any, scores: Any, genome: Any, initial: Any) -> np.ndarray | None:
    """The ShortGPT baseline of a depth + quantisation ``genome`` of ``joint``
    (:class:`~evoforge.compress.joint.JointLevels`): as many sub-blocks of each kind dropped as
    ``genome`` drops, the least important by ``scores`` (as :func:`shortgpt_genome`), and each
    group's bits of ``initial`` (the uniform genome) spread evenly over its kept sub-blocks; None
    when they do not fit the kept sub-blocks' ladder."""
    g = np.asarray(genome).reshape(-1)
    N = joint.n_blocks
    drop = g == 0
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    sg_drop = np.zeros(2 * N, dtype=bool)
    for off in (0, N):
        order = np.lexsort((-np.arange(N), s[off:off + N]))  # as shortgpt_genome, k per kind
        sg_drop[off + order[:int(drop[off:off + N].sum())]] = True
    return joint.spread(sg_drop, joint.group_units(initial))


# ---- OWL ------------------------------------------------------------------------------------------


def owl_sparsities(adapter: ModelAdapter, stats: Any, target: float, *, lam: float = OWL_LAMBDA,
                   m: float = OWL_M) -> np.ndarray:
    """OWL per-block sparsity, float64 [N].

    Outlier ratio of block b: the share of its Wanda scores ``|W_ij| * ||X_j||`` (over all its
    linear layers) above ``m`` times their mean. Mapped linearly (more outliers -> less sparse) with
    the mean kept at ``target`` and the largest deviation equal to ``lam``.
    """
    target, lam, m = (check_real(v, name) for v, name in ((target, "target"), (lam, "lam"), (m, "m")))
    N = adapter.n_blocks
    above = np.zeros(N)
    count = np.zeros(N)
    scores_by_block: dict[int, list[torch.Tensor]] = {b: [] for b in range(N)}
    for r in adapter.linear_layers():
        W = r.weight().detach().double()  # on the model's device
        xn = stats.sq_norm(r).to(device=W.device, dtype=torch.float64).sqrt()
        scores_by_block[r.block].append((W.abs() * xn[None, :]).reshape(-1))
    for b in range(N):
        s = torch.cat(scores_by_block[b])
        above[b] = float((s > m * s.mean()).sum())
        count[b] = s.numel()
    ratio = above / count
    dev = ratio - ratio.mean()
    span = np.abs(dev).max()
    if span == 0:
        return np.full(N, float(target))
    return float(target) - lam * dev / span


def owl_genome(adapter: ModelAdapter, provider: Any, stats: Any, *, lam: float = OWL_LAMBDA,
               m: float = OWL_M) -> tuple[np.ndarray, np.ndarray]:
    """(genome of a :class:`SparsityLevels` provider, per-block OWL sparsity [N]).

    Each layer gets the database level nearest to its block's OWL sparsity among the levels within
    ``target +- lam``; then levels are moved one step at a time (the layer whose rounding left it
    furthest in the needed direction first) until the level sum equals uniform's, so the number of
    non-zeros is exactly uniform's.
    """
    target = float(provider.target)
    s_block = owl_sparsities(adapter, stats, target, lam=lam, m=m)
    layers = adapter.linear_layers()
    n, step = provider.n, provider.step
    want = np.empty(len(layers))
    lo = np.empty(len(layers), dtype=np.int64)
    hi = np.empty(len(layers), dtype=np.int64)
    for i, r in enumerate(layers):
        numel = r.numel
        base = math.floor(target * numel + 0.5)
        want[i] = (s_block[r.block] * numel - base) / step
        # offsets whose sparsity stays within target +- lam (offset 0 always does)
        k_lo = math.ceil(((target - lam) * numel - base) / step - 1e-9)
        k_hi = math.floor(((target + lam) * numel - base) / step + 1e-9)
        lo[i] = max(int(provider.lower[i]) - n, min(0, k_lo))
        hi[i] = min(int(provider.upper[i]) - n, max(0, k_hi))
    k = np.clip(np.rint(want), lo, hi).astype(np.int64)
    while k.sum() != 0:
        resid = k - want
        if k.sum() > 0:
            cand = np.flatnonzero(k > lo)
            i = cand[np.argmax(resid[cand])]
            k[i] -= 1
        else:
            cand = np.flatnonzero(k < hi)
            i = cand[np.argmin(resid[cand])]
            k[i] += 1
    return k + n, s_block
