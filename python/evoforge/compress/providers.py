"""Genome <-> layer-database mapping for the compression search, with the budget kept exact.

A genome gives one integer level per linear layer, ``0 .. n_levels(i) - 1`` (what
:class:`evoforge.compress.fitness.KLFitness` and :class:`evoforge.search.LevelSwitch` see). The
providers here map those to the levels of a :class:`~evoforge.compress.database.LayerDatabase`:

Sparsity (:class:`SparsityLevels`)
    One common index for every layer: genome level ``j`` is the offset ``k = j - n`` (``n`` the
    database's ``n_levels``), so ``j = n`` is the uniform target. Every level step prunes the same
    absolute number of weights in every layer, so the level sum fixes the total number of
    non-zeros: :class:`LevelSwitch` without groups keeps it exact. Small layers whose ladder lacks
    some offsets get per-layer bounds ``lower`` / ``upper``.

Quantisation (:class:`QuantLevels`)
    Genome level ``j`` is the ``j``-th bit-width of the ladder (the same ladder in every layer).
    Layers of equal ``numel`` form a group; :class:`LevelSwitch` switches within a group only, so
    ``sum(bits x numel)`` is preserved (with a consecutive ladder; otherwise the costs are passed
    and the switch keeps the budget within rounding).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..search import LevelSwitch
from .database import LayerDatabase

__all__ = ["QuantLevels", "SparsityLevels", "provider_for"]


class _DatabaseLevels:
    """Common part: a LevelProvider over a LayerDatabase, weights cached on first use."""

    kind = ""

    def __init__(self, db: LayerDatabase, *, device: Any = None, dtype: torch.dtype | None = None) -> None:
        if not isinstance(db, LayerDatabase):
            raise TypeError(f"db must be a LayerDatabase, got {type(db).__name__}")
        if db.kind != self.kind:
            raise ConfigError(f"the database {str(db.path)!r} holds {db.kind} levels ({db.method}), "
                              f"not {self.kind}")
        self.db = db
        self.n_layers = len(db.layers)
        self.numel = np.array([db.numel(i) for i in range(self.n_layers)], dtype=np.int64)
        self._device, self._dtype = device, dtype
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    # subclasses: db_level(i, j) -> the database level; n_levels(i)

    def db_level(self, i: int, j: int) -> int:
        raise NotImplementedError

    def n_levels(self, i: int) -> int:
        raise NotImplementedError

    def weight(self, layer_index: int, level: int) -> torch.Tensor:
        key = (int(layer_index), int(level))
        w = self._cache.get(key)
        if w is None:
            w = self.db.weight(key[0], self.db_level(*key))
            if self._dtype is not None or self._device is not None:
                w = w.to(device=self._device, dtype=self._dtype)
            self._cache[key] = w
        return w

    def set_base(self, genome: Any) -> None:  # the provider keeps no per-parent state
        return None

    def levels(self, genome: Any) -> list[int]:
        """The database levels (offsets or bit-widths) of a genome."""
        g = np.asarray(genome).reshape(-1)
        return [self.db_level(i, int(j)) for i, j in enumerate(g)]

    def costs(self, genome: Any) -> np.ndarray:
        """Per-layer cost (non-zeros or weight bits) of a genome, int64 [L]."""
        g = np.asarray(genome).reshape(-1)
        return np.array([self.db.cost(i, self.db_level(i, int(j))) for i, j in enumerate(g)], dtype=np.int64)

    def budget(self, genome: Any) -> int:
        return int(self.costs(genome).sum())


class SparsityLevels(_DatabaseLevels):
    """Sparsity database: genome level ``j`` <-> offset ``k = j - n`` in every layer."""

    kind = "sparsity"

    def __init__(self, db: LayerDatabase, **kw: Any) -> None:
        super().__init__(db, **kw)
        self.n = int(db.params["n_levels"])
        self.step = int(db.params["step"])
        self.target = float(db.params["sparsity"])
        lo, hi = [], []
        for i in range(self.n_layers):
            ks = db.levels(i)
            if ks != list(range(ks[0], ks[-1] + 1)) or not ks[0] <= 0 <= ks[-1]:
                raise ConfigError(f"layer {db.layers[i]} has a non-contiguous sparsity ladder {ks}")
            lo.append(ks[0] + self.n)
            hi.append(ks[-1] + self.n)
        self.lower = np.array(lo, dtype=np.int64)
        self.upper = np.array(hi, dtype=np.int64)

    def n_levels(self, i: int) -> int:
        return 2 * self.n + 1

    def db_level(self, i: int, j: int) -> int:
        k = int(j) - self.n
        if not self.lower[i] <= j <= self.upper[i]:
            raise IndexError(f"offset {k} is not in the ladder of layer {self.db.layers[i]} "
                             f"(offsets {self.lower[i] - self.n}..{self.upper[i] - self.n})")
        return k

    def uniform(self) -> np.ndarray:
        return np.full(self.n_layers, self.n, dtype=np.int64)

    def mutation(self, max_switches: int = 3) -> LevelSwitch:
        return LevelSwitch(max_switches=max_switches)

    def sparsities(self, genome: Any) -> list[float]:
        return [1.0 - c / n for c, n in zip(self.costs(genome).tolist(), self.numel.tolist())]


class QuantLevels(_DatabaseLevels):
    """Quantisation database: genome level ``j`` <-> the ``j``-th bit-width; groups of equal numel."""

    kind = "quant"

    def __init__(self, db: LayerDatabase, **kw: Any) -> None:
        super().__init__(db, **kw)
        self.bits = [int(b) for b in db.params["bits"]]
        for i in range(self.n_layers):
            if db.levels(i) != self.bits:
                raise ConfigError(f"layer {db.layers[i]} has bit-widths {db.levels(i)}, not {self.bits}")
        sizes = sorted(set(self.numel.tolist()))
        self.groups = np.array([sizes.index(int(n)) for n in self.numel], dtype=np.int64)
        self.lower = np.zeros(self.n_layers, dtype=np.int64)
        self.upper = np.full(self.n_layers, len(self.bits) - 1, dtype=np.int64)
        self.consecutive = self.bits == list(range(self.bits[0], self.bits[-1] + 1))

    def n_levels(self, i: int) -> int:
        return len(self.bits)

    def db_level(self, i: int, j: int) -> int:
        if not 0 <= int(j) < len(self.bits):
            raise IndexError(f"level {j} is out of range [0, {len(self.bits) - 1}]")
        return self.bits[int(j)]

    def uniform(self, target: float) -> np.ndarray:
        """Levels with average bits <= target, exactly ``target`` in every group where ``target x
        group size`` is a whole number: ``floor(target)`` everywhere, and in each group of equal
        numel the first ``floor(frac x size)`` layers (spread evenly) at ``ceil(target)``."""
        lo_b = math.floor(target)
        frac = float(target) - lo_b
        if lo_b not in self.bits or (frac > 0 and lo_b + 1 not in self.bits):
            raise ConfigError(f"target {target} bits needs bit-widths {lo_b}"
                              f"{'' if frac == 0 else f' and {lo_b + 1}'} in the database (it has {self.bits})")
        g = np.full(self.n_layers, self.bits.index(lo_b), dtype=np.int64)
        if frac > 0:
            for gid in np.unique(self.groups):
                members = np.flatnonzero(self.groups == gid)
                m = math.floor(frac * len(members) + 1e-9)
                if m:
                    pick = members[np.floor(np.arange(m) * len(members) / m).astype(int)]
                    g[pick] = self.bits.index(lo_b + 1)
        return g

    def mutation(self, max_switches: int = 3) -> LevelSwitch:
        if self.consecutive:
            return LevelSwitch(max_switches=max_switches, groups=self.groups)
        costs = [[b * int(n) for b in self.bits] for n in self.numel]
        return LevelSwitch(max_switches=max_switches, groups=self.groups, costs=costs, budget_tol=0.5)

    def bit_widths(self, genome: Any) -> list[int]:
        return self.levels(genome)


def provider_for(db: LayerDatabase, **kw: Any) -> SparsityLevels | QuantLevels:
    return SparsityLevels(db, **kw) if db.kind == "sparsity" else QuantLevels(db, **kw)
