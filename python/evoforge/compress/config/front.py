"""The front's config: every trade-off of quality against size (and latency) in one run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

from ...errors import ConfigError
from ...search.engine import MAX_POPULATION as _MAX_POP
from .base import CompressConfig, _is_int, as_tuple

__all__ = ["FRONT_OBJECTIVES", "FRONT_SPACES", "FrontConfig", "FrontSearchConfig"]

FRONT_OBJECTIVES = ("kl", "bytes", "latency")
FRONT_SPACES = ("sparsity", "quant", "depth")  # a space joins any of them with "+"


@dataclasses.dataclass(kw_only=True)
class FrontSearchConfig(CompressConfig):
    """What every front-search method shares (a base class): NSGA-II keeping ``pop_size`` genomes,
    evaluating ``offspring`` per generation for ``generations``; ``screen`` k > 1 makes k times more
    offspring and evaluates those whose predictions (a ridge predictor, :class:`~evoforge.search.Screen`)
    add the most hypervolume to the front, drawn from ``screen_depth`` generations evolved on the
    predictions (1: the population's own offspring);
    ``latency_tokens`` per forward for a ``latency`` objective (1: batch-1 decoding); ``objectives``
    of the method's :attr:`OBJECTIVES`. ``target`` 0: a front has no single budget (a method may
    give it one: :class:`SubnetConfig`)."""

    OBJECTIVES: ClassVar[tuple[str, ...]] = ()

    target: float = 0.0
    objectives: tuple[str, ...] = ()
    pop_size: int = 32
    screen: int = 1
    screen_depth: int = 3
    latency_tokens: int = 1
    generations: int = 30
    offspring: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        self.objectives = as_tuple(self.objectives)

    def _check_target(self, say: Callable[[str], str]) -> None:
        return None

    def _check_front_search(self, say: Callable[[str], str]) -> None:
        objs = list(self.objectives)
        bad = [o for o in objs if o not in self.OBJECTIVES]
        if bad or len(set(objs)) != len(objs) or len(objs) < 2:
            raise ConfigError(f"{say('objectives')} must be two or more distinct of {', '.join(self.OBJECTIVES)}, "
                              f"got {','.join(map(str, objs)) or 'none'}")
        for name, lo, hi in (("pop_size", 2, _MAX_POP), ("screen", 1, _MAX_POP), ("screen_depth", 1, 64),
                             ("latency_tokens", 1, 2**20)):
            v = getattr(self, name)
            if not _is_int(v) or not lo <= v <= hi:
                raise ConfigError(f"{say(name)} must be an int in [{lo}, {hi}], got {v!r}")
        if self.screen_depth * self.screen * self.offspring > _MAX_POP:
            raise ConfigError(f"{say('screen_depth')} x {say('screen')} x {say('offspring')} must be at most "
                              f"{_MAX_POP} candidates per generation, got {self.screen_depth} x {self.screen} x "
                              f"{self.offspring}")
        if self.backend not in (None, "inprocess"):
            raise ConfigError(f"{say('backend')} {self.backend!r}: a front is evaluated in-process for now")

    def _search_identity(self) -> dict:
        depth = {"screen_depth": int(self.screen_depth)} if self.screen > 1 else {}  # no effect unscreened
        return {**depth, "method": self.method, "objectives": list(self.objectives), "pop_size": int(self.pop_size),
                "offspring": int(self.offspring), "screen": int(self.screen),
                "latency_tokens": int(self.latency_tokens), "n_calib": int(self.n_calib),
                "n_heldout": int(self.n_heldout), "seq_len": int(self.seq_len), "seed": int(self.seed),
                "calib_text": self.calib_text, "compute_dtype": self.compute_dtype}


@dataclasses.dataclass(kw_only=True)
class FrontConfig(FrontSearchConfig):
    """The whole front of quality against size (and latency) in one run: NSGA-II over a joint space
    (:mod:`evoforge.compress.front_space`), every objective minimised.

    ``space``: ``"sparsity"``, ``"quant"``, ``"depth"`` or any of them joined by ``+`` (default
    ``"sparsity+quant"``): a share of ``sparsities`` and a bit-width of ``bits`` per linear layer (16
    bits = float16 values; a space without sparsity keeps share 0, one without quant 16 bits), and
    with ``depth`` a drop gene per attention and MLP sub-block. ``objectives``: two or more of ``kl`` (on the
    calibration tokens during the search; the search's last front and every uniform configuration
    are then re-scored on the held-out tokens and the points non-dominated there returned),
    ``bytes`` (packed bytes of the linear layers) and ``latency`` (a per-layer table timed on this
    machine, :mod:`evoforge.compress.latency`, at ``latency_tokens`` tokens per forward: 1 is
    batch-1 decoding). ``pop_size`` genomes survive each generation; ``offspring`` are evaluated per
    generation; ``screen`` k > 1 makes k times more offspring and evaluates those a ridge predictor
    ranks best (:class:`~evoforge.search.Screen`). The sparsity database (``database`` or built with
    ``db_method``) holds the ``sparsities`` ladder; kept values are rounded to nearest on
    ``group_size`` / ``symmetric`` grids. ``target`` is unused (a front has no single budget).
    """

    method: ClassVar[str] = "front"
    OBJECTIVES: ClassVar[tuple[str, ...]] = FRONT_OBJECTIVES

    space: str = "sparsity+quant"
    objectives: tuple[str, ...] = ("kl", "bytes")
    sparsities: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)
    bits: tuple[int, ...] = (3, 4, 8, 16)
    group_size: int = 64
    symmetric: bool = False
    database: str | None = None
    db_method: str = "sparsegpt"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sparsities = as_tuple(self.sparsities)

    def ladders(self) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """(sparsity shares, bit-widths) of the space: a space without sparsity keeps share 0 only,
        one without quantisation 16 bits only."""
        parts = self.space.split("+")
        sp = tuple(sorted({float(x) for x in self.sparsities})) if "sparsity" in parts else (0.0,)
        bits = tuple(sorted({int(b) for b in self.bits})) if "quant" in parts else (16,)
        return sp, bits

    @property
    def depth(self) -> bool:
        """Whether the space drops sub-blocks."""
        return "depth" in str(self.space).split("+")

    def _check_method(self, say: Callable[[str], str]) -> None:
        parts = str(self.space).split("+") if isinstance(self.space, str) else []
        if not parts or not set(parts) <= set(FRONT_SPACES) or len(set(parts)) != len(parts):
            raise ConfigError(f"{say('space')} must join distinct parts of {', '.join(FRONT_SPACES)} with '+' (e.g. "
                              f"sparsity+quant), got {self.space!r}")
        self._check_front_search(say)
        try:
            shares = [float(x) for x in self.sparsities]
            bits = [int(b) for b in self.bits]
        except (TypeError, ValueError):
            raise ConfigError(f"{say('sparsities')} must be shares in [0, 1) and {say('bits')} ints, got "
                              f"{self.sparsities!r} and {self.bits!r}") from None
        if "sparsity" in self.space and (not shares or not all(0.0 <= x < 1.0 for x in shares)):
            raise ConfigError(f"{say('sparsities')} must be shares in [0, 1), got {shares}")
        if "quant" in self.space and (not bits or not set(bits) <= {2, 3, 4, 8, 16}):
            raise ConfigError(f"{say('bits')} of a front must be in 2, 3, 4, 8, 16 (16: float16 values), got {bits}")
        sp, bl = self.ladders()
        if len(sp) * len(bl) < 2 and not self.depth:
            raise ConfigError(f"the {self.space} space with {say('sparsities')} {list(sp)} and {say('bits')} {list(bl)} "
                              "has a single configuration: nothing to search")
        from ...layers.format import check_group_size

        check_group_size(self.group_size)
        if not isinstance(self.symmetric, bool):
            raise TypeError(f"{say('symmetric')} must be a bool, got {self.symmetric!r}")
        from ..database import SPARSITY_METHODS

        self._check_database(say, "sparsity", SPARSITY_METHODS)

    def identity(self) -> dict:
        sp, bl = self.ladders()
        return {**self._search_identity(), "space": self.space, "sparsities": list(sp), "bits": list(bl),
                "group_size": int(self.group_size), "symmetric": bool(self.symmetric), "db_method": self.db_method,
                "database": self.database}
