"""Depth compression (dropping attention / MLP sub-blocks) and the per-layer baselines.

Depth genome
    ``2 * N`` binary genes for a model of N blocks: ``g[i]`` = 1 drops block i's attention
    sub-block, ``g[N + i]`` = 1 its MLP sub-block. Exactly K of each kind are dropped;
    :func:`depth_mutation` (a :class:`LevelSwitch` with lower 0, upper 1 and two groups, attention
    genes and MLP genes) swaps a dropped and a kept sub-block of one kind, so both counts stay exact.

:class:`DepthFitness`
    KL(dense || model with those sub-blocks dropped), on the minibatches of :class:`KLFitness`
    (the same teacher targets, minibatch draw and dense block-input stack; it *is* a KLFitness
    over a provider whose only level is the dense weight). A candidate starts at its first dropped
    block from the dense stack, or from the stack of the previous candidate where they agree longer
    (candidates are sorted so that neighbours share prefixes).

Baselines
    :func:`shortgpt_scores` / :func:`shortgpt_genome`: per sub-block importance = 1 - mean cosine
    similarity between its residual input and output on calibration tokens; drop the K least
    important of each kind. :func:`owl_genome`: OWL's outlier-weighted per-block sparsity, rounded
    to a sparsity database's levels with the exact budget.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..search import LevelSwitch
from .adapters import ModelAdapter
from .fitness import KLFitness

__all__ = [
    "DepthFitness",
    "depth_count",
    "depth_drops",
    "depth_mutation",
    "export_depth",
    "owl_genome",
    "owl_sparsities",
    "shortgpt_genome",
    "shortgpt_scores",
    "spread_genome",
]


def depth_count(target: Any, n_blocks: int) -> int:
    """K, the number of attention (and of MLP) sub-blocks to drop, from ``target``.

    ``target`` in (0, 1): a fraction of the N blocks, K = round(target * N); an integer >= 1: K
    itself. K must lie in [1, N - 1] (at least one sub-block of each kind is kept).
    """
    try:
        t = float(target)
    except (TypeError, ValueError):
        raise ConfigError(f"depth target must be a number, got {target!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise ConfigError(f"depth target must be a fraction in (0, 1) or a count in [1, {n_blocks - 1}] of "
                          f"sub-blocks dropped per kind, got {target!r}")
    if t < 1:
        k = math.floor(t * n_blocks + 0.5)
        if not 1 <= k <= n_blocks - 1:
            raise ConfigError(f"depth target {t} of {n_blocks} blocks gives K={k} sub-blocks per kind; K must lie "
                              f"in [1, {n_blocks - 1}]")
        return k
    if t != round(t):
        raise ConfigError(f"depth target >= 1 is a count of sub-blocks per kind and must be an integer, got {t}")
    k = int(t)
    if not 1 <= k <= n_blocks - 1:
        raise ConfigError(f"depth target K={k} is out of range: drop between 1 and {n_blocks - 1} sub-blocks of "
                          f"each kind (the model has {n_blocks} blocks)")
    return k


def depth_mutation(n_blocks: int, max_switches: int = 3) -> LevelSwitch:
    """Swap dropped and kept sub-blocks within the attention genes or within the MLP genes."""
    groups = np.repeat(np.arange(2, dtype=np.int64), n_blocks)
    return LevelSwitch(max_switches=max_switches, groups=groups)


def depth_drops(genome: Any, n_blocks: int) -> list[tuple[int, str]]:
    """The ``(block, "attn" | "mlp")`` pairs a depth genome drops."""
    g = np.asarray(genome).reshape(-1)
    return ([(int(i), "attn") for i in np.flatnonzero(g[:n_blocks])]
            + [(int(i), "mlp") for i in np.flatnonzero(g[n_blocks:])])


def spread_genome(n_blocks: int, k: int) -> np.ndarray:
    """The "uniform" depth baseline: K sub-blocks of each kind dropped evenly spaced over depth."""
    idx = np.unique(np.floor((np.arange(k) + 0.5) * n_blocks / k).astype(np.int64))
    g = np.zeros(2 * n_blocks, dtype=np.int64)
    g[idx] = 1
    g[n_blocks + idx] = 1
    return g


class _DenseOnly:
    """A LevelProvider whose only level is the dense weight (KLFitness's machinery for depth)."""

    def __init__(self, adapter: ModelAdapter) -> None:
        self._w = [r.weight().detach() for r in adapter.linear_layers()]
        self.n_layers = len(self._w)

    def n_levels(self, i: int) -> int:
        return 1

    def weight(self, layer_index: int, level: int) -> torch.Tensor:
        return self._w[layer_index]


class DepthFitness(KLFitness):
    """Evaluator: KL(dense || model with the genome's sub-blocks dropped), float64 [B].

    Genomes are [B, 2N] binary (attention mask, then MLP mask; 1 = dropped). ``k`` (optional)
    additionally requires exactly k dropped of each kind. Minibatches, teacher targets and the
    meaning of ``batch`` are those of :class:`KLFitness`.
    """

    def __init__(self, adapter: ModelAdapter, calib_tokens: torch.Tensor, *, k: int | None = None,
                 top_k: int | None = None, batch_size: int = 8, seq_len: int | None = None,
                 compute_dtype: Any = None) -> None:
        super().__init__(adapter, _DenseOnly(adapter), calib_tokens, top_k=top_k, batch_size=batch_size,
                         seq_len=seq_len, prefix_reuse=True, compute_dtype=compute_dtype)
        self.n_blocks = adapter.n_blocks
        self.k = k
        self._dwork_cfg: np.ndarray | None = None

    def check_genomes(self, genomes: Any) -> np.ndarray:
        g = np.asarray(genomes)
        if g.ndim == 1:
            g = g[None, :]
        N = self.n_blocks
        if g.ndim != 2 or g.shape[1] != 2 * N:
            raise ConfigError(f"depth genomes must have shape [B, {2 * N}] (attention mask, MLP mask), "
                              f"got {list(g.shape)}")
        if not np.all((g == 0) | (g == 1)):
            raise ConfigError("depth genome genes must be 0 (kept) or 1 (dropped)")
        g = g.astype(np.int64)
        if self.k is not None:
            na, nm = g[:, :N].sum(1), g[:, N:].sum(1)
            if np.any(na != self.k) or np.any(nm != self.k):
                raise ConfigError(f"depth genomes must drop exactly {self.k} attention and {self.k} MLP "
                                  f"sub-blocks, got {na.tolist()} / {nm.tolist()}")
        return g

    def set_base(self, genome: Any | None) -> None:  # prefix reuse comes from the sorted candidates
        return None

    def _blockwise(self, g: np.ndarray) -> np.ndarray:
        """[B, 2N] genome -> [B, 2N] in block order (attn_0, mlp_0, attn_1, ...)."""
        N = self.n_blocks
        return np.stack([g[:, :N], g[:, N:]], axis=2).reshape(g.shape[0], 2 * N)

    def evaluate(self, genomes: Any, batch: Any = None) -> np.ndarray:
        t0, g, rows, out = self._start(genomes, batch)
        N = self.n_blocks
        try:
            with torch.inference_mode():
                mb = tuple(int(r) for r in rows)
                if mb != self._mb_rows:
                    self._dwork_cfg = None
                self._set_minibatch(rows)
                bw = self._blockwise(g)
                uniq, inverse = np.unique(bw, axis=0, return_inverse=True)  # neighbours share prefixes
                inverse = inverse.reshape(-1)
                for u, cfg in enumerate(uniq):
                    nz = np.flatnonzero(cfg)
                    j_d = N if nz.size == 0 else int(nz[0]) // 2
                    src, start = self._dense_stack, j_d
                    if self._dwork_cfg is not None:
                        d = np.flatnonzero(cfg != self._dwork_cfg)
                        if d.size == 0 and self._work_kl is not None:
                            out[inverse == u] = self._work_kl
                            continue
                        j_w = int(d[0]) // 2
                        if j_w > start:
                            src, start = self._work_stack, j_w
                    if src is self._dense_stack:  # grown lazily: only up to the first dropped block
                        self._dense_upto(start)
                        src = self._dense_stack
                    drops = depth_drops(np.concatenate([cfg[0::2], cfg[1::2]]), N)
                    with self.adapter.dropped(drops):
                        stack = self._run_blocks(src, start)
                    kl = self._kl(stack[N])
                    self.stats["evaluated"] += 1
                    self.stats["tokens"] += len(rows) * self.seq_len
                    self._work_stack, self._dwork_cfg, self._work_kl = stack, cfg.copy(), kl
                    out[inverse == u] = kl
        finally:
            self.stats["seconds"] += time.perf_counter() - t0
        return out


# ---- ShortGPT-style block scoring -----------------------------------------------------------------


def _one_minus_cos_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1.0 - torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)).sum().cpu()


def shortgpt_scores(adapter: ModelAdapter, tokens: torch.Tensor, *, batch_size: int = 8) -> np.ndarray:
    """Importance per sub-block, float64 [2N] (attention, then MLP): 1 - mean over calibration tokens
    of cos(residual entering the sub-block, residual leaving it), measured in the dense model."""
    N = adapter.n_blocks
    sums = torch.zeros(2 * N, dtype=torch.float64)
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
    dev = next(adapter.model.parameters()).device
    tok = torch.as_tensor(tokens, dtype=torch.long)
    try:
        with torch.inference_mode():
            for c0 in range(0, tok.shape[0], batch_size):
                adapter.model(input_ids=tok[c0:c0 + batch_size].to(dev), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return (sums / max(1, tok.numel())).numpy()


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


def export_depth(adapter: ModelAdapter, genome: Any) -> list[str]:
    """Zero the output projections (o_proj / down_proj weight, and bias if any) of the dropped
    sub-blocks in place, so the residual branch adds nothing; returns the zeroed module names.

    (A Hugging Face config cannot remove a sub-block; the projections stay, with zero weights.)
    Exact for pre-norm blocks whose branch ends in that projection (Llama family, Phi-3, GPT-2).
    """
    drops = set(depth_drops(genome, adapter.n_blocks))
    names = []
    for r in adapter.linear_layers():
        kind = "attn" if r.kind == "o" else "mlp" if r.kind == "down" else None
        if kind is None or (r.block, kind) not in drops:
            continue
        with torch.no_grad():
            r.module.weight.zero_()
            if getattr(r.module, "bias", None) is not None:
                r.module.bias.zero_()
        names.append(r.name)
    return names


# ---- OWL ------------------------------------------------------------------------------------------


def owl_sparsities(adapter: ModelAdapter, stats: Any, target: float, *, lam: float = 0.08,
                   m: float = 5.0) -> np.ndarray:
    """OWL per-block sparsity, float64 [N].

    Outlier ratio of block b: the share of its Wanda scores ``|W_ij| * ||X_j||`` (over all its
    linear layers) above ``m`` times their mean. Mapped linearly (more outliers -> less sparse) with
    the mean kept at ``target`` and the largest deviation equal to ``lam``.
    """
    N = adapter.n_blocks
    above = np.zeros(N)
    count = np.zeros(N)
    scores_by_block: dict[int, list[torch.Tensor]] = {b: [] for b in range(N)}
    for r in adapter.linear_layers():
        W = r.weight().detach().double().cpu()
        xn = stats.sq_norm(r).double().sqrt().cpu()
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


def owl_genome(adapter: ModelAdapter, provider: Any, stats: Any, *, lam: float = 0.08,
               m: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
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
