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
    The cost of a layer at ``b`` bits is ``b x numel``, plus with ``include_metadata`` the bits of
    its grids (a 16-bit scale per row and group, and a ``b``-bit zero point when asymmetric). With
    a consecutive ladder that cost grows by the same amount per bit step in a layer (``numel``, plus
    ``rows x groups`` for asymmetric grids with metadata); layers with an equal step form a group and
    :class:`LevelSwitch` switches within a group only, so the total is preserved exactly. With a
    non-consecutive ladder the integer costs are passed and a switch must keep the total exactly
    (tolerance 0.5 bit).

Devices: a provider gives weights on its ``device`` in its ``dtype``. The database stays in host
memory (memory-mapped files); a level is read, copied to the device in its stored (compact) form and
decoded there when a swap first needs it (:meth:`LayerDatabase.weight`), then kept in a least-
recently-used cache of at most ``cache_bytes`` bytes (``"auto"``: a quarter of a CUDA device's
memory, or of the host's on the CPU: the decoded levels of a joint space can be many times the
model), so the database never has to
fit on the card. ``loads`` counts the levels read.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..search import LevelSwitch
from .adapters import ModelAdapter
from .database import LayerDatabase

__all__ = ["QuantLevels", "SparsityLevels", "apply_levels", "levels_applied", "provider_for"]


def _cache_limit(cache_bytes: Any, device: torch.device) -> int | None:
    """The cache's bound in bytes (None: unbounded) of ``cache_bytes`` (``"auto"``, None or an int >= 0)."""
    if cache_bytes == "auto":
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory // 4
        try:  # a quarter of the machine's memory: a front's many levels would otherwise fill it
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
        except (ValueError, OSError, AttributeError):  # no sysconf (Windows): unbounded, as before
            return None
    if cache_bytes is None:
        return None
    if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, (int, np.integer)) or cache_bytes < 0:
        raise ConfigError(f"cache_bytes must be 'auto', None or an int >= 0, got {cache_bytes!r}")
    return int(cache_bytes)


class _DatabaseLevels:
    """Common part: a LevelProvider over a LayerDatabase, weights on ``device`` (default the CPU) in
    ``dtype`` (default the layer's), the recently used ones cached (at most ``cache_bytes``)."""

    kind = ""

    def __init__(self, db: LayerDatabase, *, device: Any = None, dtype: torch.dtype | None = None,
                 cache_bytes: int | str | None = "auto") -> None:
        if not isinstance(db, LayerDatabase):
            raise TypeError(f"db must be a LayerDatabase, got {type(db).__name__}")
        if db.kind != self.kind:
            raise ConfigError(f"the database {str(db.path)!r} holds {db.kind} levels ({db.method}), "
                              f"not {self.kind}")
        self.db = db
        self.n_layers = len(db.layers)
        self.numel = np.array([db.numel(i) for i in range(self.n_layers)], dtype=np.int64)
        self._device = torch.device("cpu") if device is None else torch.device(device)
        self._dtype = dtype
        self.cache_bytes = _cache_limit(cache_bytes, self._device)
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
        self._cached = 0  # bytes held by _cache
        self.loads = 0  # levels read from the database (a level evicted and needed again counts again)

    # subclasses: db_level(i, j) -> the database level; n_levels(i)

    def db_level(self, i: int, j: int) -> int:
        raise NotImplementedError

    def n_levels(self, i: int) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def cached_bytes(self) -> int:
        """Bytes of the levels in the cache now (at most ``cache_bytes``)."""
        return self._cached

    def weight(self, layer_index: int, level: int) -> torch.Tensor:
        """Layer ``layer_index``'s weight at genome ``level``, [out, in], on the provider's device."""
        key = (int(layer_index), int(level))
        w = self._cache.get(key)
        if w is not None:
            self._cache.move_to_end(key)
            return w
        w = self._load(*key)
        if self._dtype is not None:
            w = w.to(self._dtype)
        self.loads += 1
        if self.cache_bytes is None or w.nbytes <= self.cache_bytes:
            self._cache[key] = w
            self._cached += w.nbytes
            while self.cache_bytes is not None and self._cached > self.cache_bytes:
                _, old = self._cache.popitem(last=False)  # the least recently used
                self._cached -= old.nbytes
        return w

    def _load(self, i: int, j: int) -> torch.Tensor:
        """Layer ``i``'s weight at genome level ``j``, read from the database onto the device."""
        return self.db.weight(i, self.db_level(i, j), device=self._device)

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
        if "fractions" in db.params:
            raise ConfigError(f"the database {str(db.path)!r} holds a front's ladder of fixed shares "
                              f"{db.params['fractions']}; a sparsity search needs a target +- step ladder")
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
    """Quantisation database: genome level ``j`` <-> the ``j``-th bit-width; groups of equal cost step.

    ``include_metadata``: costs (and so the budget, :meth:`uniform` and the groups) count the
    scales and zero points (:meth:`LayerDatabase.cost`).
    """

    kind = "quant"

    def __init__(self, db: LayerDatabase, *, include_metadata: bool = False, **kw: Any) -> None:
        super().__init__(db, **kw)
        self.bits = [int(b) for b in db.params["bits"]]
        for i in range(self.n_layers):
            if db.levels(i) != self.bits:
                raise ConfigError(f"layer {db.layers[i]} has bit-widths {db.levels(i)}, not {self.bits}")
        self.include_metadata = bool(include_metadata)
        # [L, n_bits] int64: the cost of every layer at every bit-width
        self.cost_table = np.array([[db.cost(i, b, include_metadata=self.include_metadata) for b in self.bits]
                                    for i in range(self.n_layers)], dtype=np.int64)
        self.consecutive = self.bits == list(range(self.bits[0], self.bits[-1] + 1))
        steps = np.diff(self.cost_table, axis=1)
        if self.consecutive and len(self.bits) > 1 and not np.all(steps == steps[:, :1]):
            raise ConfigError("the quantisation costs do not grow by a fixed step per bit")  # pragma: no cover
        key = steps[:, 0] if len(self.bits) > 1 else self.numel
        sizes = sorted(set(key.tolist()))
        self.groups = np.array([sizes.index(int(n)) for n in key], dtype=np.int64)
        self.lower = np.zeros(self.n_layers, dtype=np.int64)
        self.upper = np.full(self.n_layers, len(self.bits) - 1, dtype=np.int64)

    def n_levels(self, i: int) -> int:
        return len(self.bits)

    def db_level(self, i: int, j: int) -> int:
        if not 0 <= int(j) < len(self.bits):
            raise IndexError(f"level {j} is out of range [0, {len(self.bits) - 1}]")
        return self.bits[int(j)]

    def costs(self, genome: Any) -> np.ndarray:
        """Per-layer cost in bits of a genome, int64 [L] (with the grids when ``include_metadata``)."""
        g = np.asarray(genome, dtype=np.int64).reshape(-1)
        return self.cost_table[np.arange(self.n_layers), g]

    def uniform(self, target: float) -> np.ndarray:
        """The uniform levels for an average of ``target`` bits per weight (costs as counted).

        In each group (layers of equal cost step) every layer gets the highest bit-width whose cost
        fits ``target x numel``, and then the first layers (spread evenly) the next bit-width, as
        many as the group's allowance ``target x sum(numel)`` pays for. So the budget never exceeds
        ``target x total weights`` and equals it when each group's allowance is filled exactly
        (e.g. an integer target without metadata; 2.5 bits with an even number per group).
        """
        g = np.empty(self.n_layers, dtype=np.int64)
        allow = float(target) * self.numel
        for gid in np.unique(self.groups):
            members = np.flatnonzero(self.groups == gid)
            fits = self.cost_table[members] <= allow[members, None] + 1e-6
            if not fits[:, 0].all():
                i = members[int(np.argmin(fits[:, 0]))]
                extra = " with the scales and zero points counted" if self.include_metadata else ""
                raise ConfigError(f"target {target} bits is below the cheapest bit-width {self.bits[0]} of layer "
                                  f"{self.db.layers[i]}{extra} ({self.cost_table[i, 0] / self.numel[i]:.3f} bits "
                                  "per weight)")
            j0 = int(fits.sum(1).min()) - 1  # layers of a group have equal numel only without metadata
            g[members] = j0
            if j0 + 1 < len(self.bits):
                left = float(allow[members].sum()) - float(self.cost_table[members, j0].sum())
                up = self.cost_table[members, j0 + 1] - self.cost_table[members, j0]
                m = min(len(members) - 1, math.floor(left / float(up.max()) + 1e-9))
                if m > 0:
                    pick = members[np.floor(np.arange(m) * len(members) / m).astype(int)]
                    g[pick] = j0 + 1
        return g

    def mutation(self, max_switches: int = 3) -> LevelSwitch:
        if self.consecutive:
            return LevelSwitch(max_switches=max_switches, groups=self.groups)
        return LevelSwitch(max_switches=max_switches, groups=self.groups,
                           costs=[[int(c) for c in row] for row in self.cost_table], budget_tol=0.5)

    def bit_widths(self, genome: Any) -> list[int]:
        return self.levels(genome)


def provider_for(db: LayerDatabase, *, include_metadata: bool = False, **kw: Any) -> SparsityLevels | QuantLevels:
    """The provider for ``db``'s kind; ``include_metadata`` (quantisation only) counts the grids."""
    if db.kind == "sparsity":
        return SparsityLevels(db, **kw)
    return QuantLevels(db, include_metadata=include_metadata, **kw)


def apply_levels(adapter: ModelAdapter, provider: Any, genome: Any) -> None:
    """Write the weights of ``genome``'s levels (one per linear layer) into the model, in place."""
    layers = adapter.linear_layers()
    g = np.asarray(genome).reshape(-1)
    if len(g) != len(layers):
        raise ConfigError(f"genome has {len(g)} levels, the model {len(layers)} linear layers")
    for i, (ref, j) in enumerate(zip(layers, g)):
        p = ref.module.weight
        ref.set_weight(provider.weight(i, int(j)).to(device=p.device, dtype=p.dtype))


@contextlib.contextmanager
def levels_applied(adapter: ModelAdapter, provider: Any, genome: Any) -> Iterator[None]:
    """Inside the block the model has ``genome``'s levels; its weights are restored on exit."""
    layers = adapter.linear_layers()
    dense = [r.weight().detach().clone() for r in layers]
    try:
        apply_levels(adapter, provider, genome)
        yield
    finally:
        for r, W in zip(layers, dense):
            r.set_weight(W)
