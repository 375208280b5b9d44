"""Joint depth + quantisation search (``method="depth+quant"``) with an exact bit budget.

Design
------
Genome
    One gene per sub-block, 2N genes: the attention sub-blocks of blocks ``0 .. N-1``, then the
    MLP sub-blocks (the order of :mod:`evoforge.compress.depth`). Gene level 0: the sub-block is
    dropped; level ``j >= 1``: every linear layer of the sub-block is quantised at ``bits[j - 1]``
    (a consecutive ladder ``b_min .. b_max`` from a quantisation database).
Cost
    ``bits x W_i`` for a kept sub-block with ``W_i`` linear weights, 0 when dropped; the budget is
    the sum and the reported average is ``budget / sum(W_i)`` bits per weight (dropped weights
    count as 0 bits). Scales and zero points are not counted here.
Groups and units
    Sub-blocks with equal ``W`` form a group (all attention sub-blocks, all MLP sub-blocks in the
    Llama family). Within a group a gene holds ``u`` units of ``W`` bits (``u = 0`` or ``b_min ..
    b_max``); every move below keeps each group's unit sum, so the budget is exact.
Mutation (:class:`JointSwitch`)
    ``n = min(U{1..K}, U{1..K})`` moves (EvoPress's count). Each is, with probability ``p_depth``,
    a depth move drawn uniformly from all valid ones, otherwise EvoPress's level switch:

    * switch: one kept sub-block +1 bit, another of its group -1 bit;
    * move: a dropped sub-block takes the bits of a kept one of its group, which is dropped
      instead (EvoPress's depth swap);
    * drop: a kept sub-block at ``b`` bits is dropped and its ``b`` units go, one at a time, to
      kept sub-blocks of its group with room (each unit to a uniformly drawn one);
    * restore: a dropped sub-block comes back at ``b_min`` bits, the ``b_min`` units taken one at
      a time from kept sub-blocks of its group above ``b_min``.

    At least one sub-block of each group stays kept. Offspring equal to the parent or to an earlier
    offspring are redrawn; draws depend only on (seed, generation, offspring, attempt).
Start and baselines
    The search starts from uniform: no sub-block dropped, every one at the target bits (a
    fractional target puts the first ``floor(frac x m)`` of each group of ``m``, spread evenly, at
    the next bit-width). Baseline "shortgpt": as many sub-blocks of each kind dropped as the search
    result drops, chosen by ShortGPT-style importance, and the freed bits spread evenly over the
    kept ones of the group (reported only when the result drops any).
Fitness (:class:`JointFitness`)
    KL(dense || candidate) on calibration minibatches, the machinery of :class:`KLFitness`: a
    candidate starts at the first block where it differs from the dense model, the parent (see
    ``set_base``) or the previous candidate (candidates sorted so that neighbours share prefixes).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..search.operators import Mutation
from .adapters import ModelAdapter
from .fitness import _DENSE, KLFitness
from .providers import QuantLevels

__all__ = ["JointFitness", "JointLevels", "JointSwitch"]



class JointLevels:
    """The sub-block genome of a joint search over ``adapter``'s model and a quant provider.

    Attributes
    ----------
    n_blocks : N;  n_genes : 2N
    bits : the consecutive bit ladder (gene level j >= 1 is ``bits[j - 1]``)
    weights : int64 [2N], linear weights per sub-block (W_i)
    groups : int64 [2N], sub-blocks of equal W share a group
    layer_gene : int64 [L], the gene of each linear layer
    """

    def __init__(self, adapter: ModelAdapter, provider: QuantLevels) -> None:
        if not isinstance(provider, QuantLevels):
            raise ConfigError("depth+quant needs a quantisation database (rtn or gptq)")
        if not provider.consecutive:
            raise ConfigError(f"depth+quant needs a consecutive bit ladder, got {provider.bits}")
        if provider.include_metadata:
            raise ConfigError("depth+quant does not count scales and zero points (--count-metadata is for quant)")
        self.provider = provider
        self.bits = list(provider.bits)
        N = self.n_blocks = adapter.n_blocks
        self.n_genes = 2 * N
        layers = adapter.linear_layers()
        self.layer_gene = np.array([r.sub_block_index(N) for r in layers], dtype=np.int64)
        self.weights = np.zeros(2 * N, dtype=np.int64)
        np.add.at(self.weights, self.layer_gene, provider.numel)
        if np.any(self.weights == 0):
            raise ConfigError("every sub-block needs linear layers for depth+quant")
        sizes = sorted(set(self.weights.tolist()))
        self.groups = np.array([sizes.index(int(w)) for w in self.weights], dtype=np.int64)
        self.lower = np.zeros(2 * N, dtype=np.int64)
        self.upper = np.full(2 * N, len(self.bits), dtype=np.int64)

    @property
    def total_weights(self) -> int:
        return int(self.weights.sum())

    def units(self, genome: Any) -> np.ndarray:
        """Bits per sub-block (0 when dropped), int64 [2N]."""
        g = np.asarray(genome, dtype=np.int64).reshape(-1)
        lut = np.array([0, *self.bits], dtype=np.int64)
        return lut[g]

    def budget(self, genome: Any) -> int:
        return int((self.units(genome) * self.weights).sum())

    def layer_levels(self, genome: Any) -> np.ndarray:
        """Per linear layer, the provider level (0 for a dropped sub-block's layers), int64 [L]."""
        g = np.asarray(genome, dtype=np.int64).reshape(-1)
        return np.maximum(g[self.layer_gene] - 1, 0)

    def dropped(self, genome: Any) -> list[tuple[int, str]]:
        g = np.asarray(genome).reshape(-1)
        N = self.n_blocks
        return [(int(i), "attn") for i in np.flatnonzero(g[:N] == 0)] + [(int(i), "mlp")
                                                                        for i in np.flatnonzero(g[N:] == 0)]

    def uniform(self, target: float) -> np.ndarray:
        """No sub-block dropped; ``floor(target)`` bits, and ``ceil`` for ``floor(frac x m)`` of each group."""
        t = float(target)
        if not self.bits[0] <= t <= self.bits[-1]:
            raise ConfigError(f"depth+quant target {t} bits is outside the database's bit-widths {self.bits}")
        lo = math.floor(t)
        g = np.full(self.n_genes, self.bits.index(lo) + 1, dtype=np.int64)
        frac = t - lo
        if frac > 0:
            for gid in np.unique(self.groups):
                members = np.flatnonzero(self.groups == gid)
                m = math.floor(frac * len(members) + 1e-9)
                if m:
                    g[members[np.floor(np.arange(m) * len(members) / m).astype(int)]] += 1
        return g

    def spread(self, drop: np.ndarray, units_per_group: dict[int, int]) -> np.ndarray | None:
        """Genome with the ``drop`` mask [2N] and each group's units spread evenly over its kept
        sub-blocks (the extra units on the first ones, spread evenly); None when they do not fit."""
        u = np.zeros(self.n_genes, dtype=np.int64)
        for gid, total in units_per_group.items():
            kept = np.flatnonzero((self.groups == gid) & ~drop)
            if kept.size == 0:
                return None
            base, extra = divmod(int(total), kept.size)
            u[kept] = base
            if extra:
                u[kept[np.floor(np.arange(extra) * kept.size / extra).astype(int)]] += 1
            if u[kept].min() < self.bits[0] or u[kept].max() > self.bits[-1]:
                return None
        g = np.zeros(self.n_genes, dtype=np.int64)
        keep = u > 0
        g[keep] = u[keep] - self.bits[0] + 1
        return g

    def group_units(self, genome: Any) -> dict[int, int]:
        u = self.units(genome)
        return {int(gid): int(u[self.groups == gid].sum()) for gid in np.unique(self.groups)}

    def mutation(self, max_switches: int = 3, p_depth: float = 1 / 3) -> JointSwitch:
        return JointSwitch(self.groups, self.bits[0], self.bits[-1], max_switches=max_switches, p_depth=p_depth)


class JointSwitch(Mutation):
    """Budget-preserving mutation of joint depth + bits genomes (see the module docstring).

    Genes hold 0 (dropped) or ``1 + bits - b_min``; ``groups``: int [n_genes], the group of each gene.
    """

    def __init__(self, groups: Any, b_min: int, b_max: int, *, max_switches: int = 3, p_depth: float = 1 / 3,
                 max_attempts: int = 1000) -> None:
        if not 1 <= int(max_switches) <= 16:
            raise ConfigError(f"max_switches must lie in [1, 16], got {max_switches}")
        if not 0.0 <= float(p_depth) <= 1.0:
            raise ConfigError(f"p_depth must lie in [0, 1], got {p_depth}")
        self.groups = np.asarray(groups, dtype=np.int64)
        self.b_min, self.b_max = int(b_min), int(b_max)
        self.max_switches, self.p_depth, self.max_attempts = int(max_switches), float(p_depth), int(max_attempts)

    def _depth_move(self, u: np.ndarray, rng: np.random.Generator) -> bool:
        """A depth move drawn uniformly from all valid ones (in place); False when there is none."""
        moves: list[tuple[str, int, int]] = []
        for gid in np.unique(self.groups):
            same = np.flatnonzero(self.groups == gid)
            kept, dropped = same[u[same] > 0], same[u[same] == 0]
            can_restore = int((u[kept] - self.b_min).sum()) >= self.b_min
            for i in dropped:
                moves += [("move", int(i), int(j)) for j in kept]
                if can_restore:
                    moves.append(("restore", int(i), -1))
            for i in kept if kept.size > 1 else ():
                if int((self.b_max - u[kept]).sum()) - (self.b_max - u[i]) >= u[i]:
                    moves.append(("drop", int(i), -1))
        if not moves:
            return False
        kind, i, j = moves[int(rng.integers(len(moves)))]
        same = np.flatnonzero(self.groups == self.groups[i])
        others = same[(u[same] > 0) & (same != i)]
        if kind == "move":
            u[i], u[j] = u[j], 0
        elif kind == "restore":
            for _ in range(self.b_min):
                donors = others[u[others] > self.b_min]
                u[donors[rng.integers(donors.size)]] -= 1
            u[i] = self.b_min
        else:
            for _ in range(int(u[i])):
                room = others[u[others] < self.b_max]
                u[room[rng.integers(room.size)]] += 1
            u[i] = 0
        return True

    def _move(self, u: np.ndarray, rng: np.random.Generator) -> bool:
        """One move on units ``u`` (in place); False when the drawn move is impossible."""
        if rng.random() < self.p_depth:
            return self._depth_move(u, rng)
        i = int(rng.integers(u.size))  # switch: i up one bit, another kept one of its group down one bit
        same = np.flatnonzero(self.groups == self.groups[i])
        down = same[(same != i) & (u[same] > self.b_min)]
        if u[i] == 0 or u[i] >= self.b_max or down.size == 0:
            return False
        u[i] += 1
        u[down[rng.integers(down.size)]] -= 1
        return True

    def _one(self, parent_units: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        K = self.max_switches
        n = 1 + min(int(rng.integers(K)), int(rng.integers(K)))
        u = parent_units.copy()
        for _ in range(n):
            for _try in range(64):
                if self._move(u, rng):
                    break
            else:
                return None
        return u

    def _to_units(self, g: np.ndarray) -> np.ndarray:
        return np.where(g > 0, g + self.b_min - 1, 0)

    def _to_genes(self, u: np.ndarray) -> np.ndarray:
        return np.where(u > 0, u - self.b_min + 1, 0)

    def offspring(self, parent, n, lower, upper, *, seed, generation):
        p = np.asarray(parent, dtype=np.int64).reshape(-1)
        pu = self._to_units(p)
        seen = {pu.tobytes()}
        out = np.empty((int(n), p.size), dtype=np.int64)
        for k in range(int(n)):
            for att in range(self.max_attempts):
                rng = np.random.default_rng([int(seed) & (2**63 - 1), int(generation), k, att])
                u = self._one(pu, rng)
                if u is not None and u.tobytes() not in seen:
                    break
            else:
                raise ConfigError(f"no new distinct joint depth+quant offspring after {self.max_attempts} attempts")
            seen.add(u.tobytes())
            out[k] = self._to_genes(u)
        return out

    def __call__(self, X, lower, upper, *, seed, generation, offset=0):
        X = np.asarray(X, dtype=np.int64)
        return np.stack([self.offspring(x, 1, lower, upper, seed=int(seed) + 7919 * (offset + r),
                                        generation=generation)[0] for r, x in enumerate(X)])


class JointFitness(KLFitness):
    """Evaluator: KL(dense || model with the genome's sub-blocks dropped and the rest quantised).

    Genomes are [B, 2N] joint genes (:class:`JointLevels`); minibatches, teacher targets and the
    meaning of ``batch`` are those of :class:`KLFitness`. Returns float64 [B].
    """

    def __init__(self, adapter: ModelAdapter, joint: JointLevels, calib_tokens: torch.Tensor, *,
                 top_k: int | None = None, batch_size: int = 8, seq_len: int | None = None,
                 compute_dtype: Any = None) -> None:
        super().__init__(adapter, joint.provider, calib_tokens, top_k=top_k, batch_size=batch_size,
                         seq_len=seq_len, prefix_reuse=True, compute_dtype=compute_dtype)
        self.joint = joint
        N = adapter.n_blocks
        # key columns in block order: block b's attention gene, MLP gene, then its layers
        cols, blocks = [], []
        for b in range(N):
            cols += [b, N + b] + [2 * N + i for i in np.flatnonzero(self._layer_block == b)]
            blocks += [b] * (2 + int((self._layer_block == b).sum()))
        self._cols = np.array(cols, dtype=np.int64)
        self._col_block = np.array(blocks, dtype=np.int64)
        self._jbase: np.ndarray | None = None
        self._jbase_key: np.ndarray | None = None

    def check_genomes(self, genomes: Any) -> np.ndarray:
        g = np.asarray(genomes)
        if g.ndim == 1:
            g = g[None, :]
        J = self.joint.n_genes
        if g.ndim != 2 or g.shape[1] != J or g.dtype.kind not in "iu":
            raise ConfigError(f"depth+quant genomes must be integers of shape [B, {J}], got {g.dtype} "
                              f"{list(g.shape)}")
        g = g.astype(np.int64)
        if np.any(g < 0) or np.any(g > len(self.joint.bits)):
            raise ConfigError(f"depth+quant genes must lie in [0, {len(self.joint.bits)}]")
        return g

    def _keys(self, g: np.ndarray) -> np.ndarray:
        """[B, 2N + L] configuration keys in block order: drop flags, then effective layer levels."""
        lv = np.stack([self.joint.layer_levels(x) for x in g])
        eff = self._effective(lv)
        eff[(g == 0)[:, self.joint.layer_gene]] = _DENSE  # a dropped sub-block's layers stay dense
        return np.concatenate([(g == 0).astype(np.int64), eff], axis=1)[:, self._cols]

    def _first(self, a: np.ndarray, b: np.ndarray) -> int:
        d = np.flatnonzero(a != b)
        return self.adapter.n_blocks if d.size == 0 else int(self._col_block[d[0]])

    def _run_key(self, key: np.ndarray, src: list[torch.Tensor], start: int) -> list[torch.Tensor]:
        full = np.empty_like(key)
        full[self._cols] = key
        J = self.joint.n_genes
        self._apply(full[J:])
        drops = self.joint.dropped(np.where(full[:J] == 1, 0, 1))
        with self.adapter.dropped(drops):
            return self._run_blocks(src, start)

    def set_base(self, genome: Any | None) -> None:
        self._jbase = None if genome is None else self.check_genomes(genome)
        self._jbase_key = None
        self._base_stack = None

    def evaluate(self, genomes: Any, batch: Any = None) -> np.ndarray:
        t0, g, rows, out = self._start(genomes, batch)
        N = self.adapter.n_blocks
        try:
            with torch.inference_mode():
                if tuple(int(r) for r in rows) != self._mb_rows:
                    self._jbase_key = None
                self._set_minibatch(rows)
                keys = self._keys(g)
                dense_key = np.where(self._cols >= 2 * N, _DENSE, 0)  # nothing dropped, dense weights
                if self._jbase is not None and self._jbase_key is None:
                    self._jbase_key = self._keys(self._jbase)[0]
                    j0 = self._first(self._jbase_key, dense_key)
                    self._dense_upto(j0)  # the dense stack grows lazily, up to where it is needed
                    self._base_stack = self._run_key(self._jbase_key, self._dense_stack, j0)
                uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
                inverse = inverse.reshape(-1)
                for u, key in enumerate(uniq):
                    src, start = self._dense_stack, self._first(key, dense_key)
                    if self._work_cfg is not None:
                        j_w = self._first(key, self._work_cfg)
                        if j_w == N and self._work_kl is not None:
                            out[inverse == u] = self._work_kl
                            continue
                        if j_w > start:
                            src, start = self._work_stack, j_w
                    if self._jbase_key is not None:
                        j_b = self._first(key, self._jbase_key)
                        if j_b > start:
                            src, start = self._base_stack, j_b
                    if src is self._dense_stack:
                        self._dense_upto(start)
                        src = self._dense_stack
                    stack = self._run_key(key, src, start)
                    kl = self._kl(stack[N])
                    self.stats["evaluated"] += 1
                    self.stats["tokens"] += len(rows) * self.seq_len
                    self._work_stack, self._work_cfg, self._work_kl = stack, key.copy(), kl
                    out[inverse == u] = kl
        finally:
            self._restore()
            self.stats["seconds"] += time.perf_counter() - t0
        return out
