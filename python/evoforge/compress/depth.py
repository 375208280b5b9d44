"""Depth compression: dropping attention / MLP sub-blocks.

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

The baselines (the evenly spread drop, ShortGPT) are in :mod:`evoforge.compress.baselines`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from .._checks import check_int
from ..errors import ConfigError
from ..search import LevelSwitch
from .adapters import ModelAdapter
from .config import depth_count
from .fitness import KLFitness

__all__ = [
    "DepthFitness",
    "depth_count",
    "depth_drops",
    "depth_mutation",
    "export_depth",
    "sub_block_names",
]

#: The most blocks a depth genome (2 genes per block) may have: far beyond any model, and refused
#: before the genome's arrays are allocated.
_MAX_BLOCKS = 2**24


def depth_mutation(n_blocks: int, max_switches: int = 3) -> LevelSwitch:
    """Swap dropped and kept sub-blocks within the attention genes or within the MLP genes."""
    n_blocks = check_int(n_blocks, "n_blocks", 1, _MAX_BLOCKS)
    groups = np.repeat(np.arange(2, dtype=np.int64), n_blocks)
    return LevelSwitch(max_switches=max_switches, groups=groups)


def depth_drops(genome: Any, n_blocks: int) -> list[tuple[int, str]]:
    """The ``(block, "attn" | "mlp")`` pairs a depth genome drops."""
    g = np.asarray(genome).reshape(-1)
    return ([(int(i), "attn") for i in np.flatnonzero(g[:n_blocks])]
            + [(int(i), "mlp") for i in np.flatnonzero(g[n_blocks:])])


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


def sub_block_names(adapter: ModelAdapter) -> list[str]:
    """Names of the 2N sub-blocks, attention of every block then MLP: ``"<module class>:<block>:<kind>"``."""
    N = adapter.n_blocks
    return ([f"{adapter.sub_block(i, 'attn').module.__class__.__name__}:{i}:attn" for i in range(N)]
            + [f"{adapter.sub_block(i, 'mlp').module.__class__.__name__}:{i}:mlp" for i in range(N)])
