"""The per-layer level methods' configs: sparsity, quantisation, depth, depth + quantisation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from ...errors import ConfigError
from .base import _BITS, _DB_LEVELS, _GROUP_SIZE, _SYMMETRIC, CompressConfig, _is_int, depth_count

__all__ = ["DepthConfig", "DepthQuantConfig", "QuantConfig", "SparsityConfig"]


@dataclasses.dataclass(kw_only=True)
class SparsityConfig(CompressConfig):
    """Unstructured sparsity: ``target`` the average share of weights pruned, in (0, 1).

    ``database``: a layer database of this model (a path; :func:`evoforge.compress.build_database`),
    or None to build one (in ``run_dir/db``) with ``db_method`` (magnitude, wanda, sparsegpt),
    ``db_levels`` levels on each side of the target and ``db_step`` weights pruned per level step in
    every layer (None: 5% of the median layer). The OWL baseline is reported too.
    """

    method: ClassVar[str] = "sparsity"

    target: float = 0.5
    database: str | None = None
    db_method: str = "sparsegpt"
    db_levels: int = _DB_LEVELS
    db_step: int | None = None

    def _check_target(self, say: Callable[[str], str]) -> None:
        super()._check_target(say)
        if not 0.0 < float(self.target) < 1.0:
            raise ConfigError(f"sparsity target must lie in (0, 1) (a fraction of weights pruned), got "
                              f"{float(self.target)}")

    def _check_method(self, say: Callable[[str], str]) -> None:
        if not _is_int(self.db_levels) or not 0 <= self.db_levels < 2**31:
            raise ConfigError(f"{say('db_levels')} must be an int in [0, 2**31), got {self.db_levels!r}")
        if self.db_step is not None and (not _is_int(self.db_step) or self.db_step < 1):
            raise ConfigError(f"{say('db_step')} must be None or a positive int, got {self.db_step!r}")
        from ..database import SPARSITY_METHODS

        self._check_database(say, "sparsity", SPARSITY_METHODS)


@dataclasses.dataclass(kw_only=True)
class _QuantDatabaseConfig(CompressConfig):
    """The quantisation database's knobs (shared by quant and depth+quant): ``database`` (a path)
    or None to build one with ``db_method`` (gptq, rtn), ``bits`` (the ladder, each in [2, 8]),
    ``group_size`` (-1: one group per row) and ``symmetric`` grids."""

    target: float
    database: str | None = None
    db_method: str = "gptq"
    bits: tuple[int, ...] = _BITS
    group_size: int = _GROUP_SIZE
    symmetric: bool = _SYMMETRIC

    def _check_target(self, say: Callable[[str], str]) -> None:
        super()._check_target(say)
        if not 2.0 <= float(self.target) <= 8.0:
            raise ConfigError(f"{self.method} target must lie in [2, 8] bits per weight, got "
                              f"{float(self.target)}")

    def _check_method(self, say: Callable[[str], str]) -> None:
        try:
            bits = [int(b) for b in self.bits]
        except (TypeError, ValueError):
            raise ConfigError(f"{say('bits')}: bits must be ints in [2, 8], got {self.bits!r}") from None
        if not bits or not 2 <= min(bits) <= max(bits) <= 8:
            raise ConfigError(f"{say('bits')}: bits must be in [2, 8], got {bits}")
        if not _is_int(self.group_size) or self.group_size == 0 or self.group_size < -1:
            raise ConfigError(f"{say('group_size')} must be -1 (one group per row) or an int >= 1, got "
                              f"{self.group_size!r}")
        if not isinstance(self.symmetric, bool):
            raise TypeError(f"{say('symmetric')} must be a bool, got {self.symmetric!r}")
        from ..database import QUANT_METHODS

        self._check_database(say, "quant", QUANT_METHODS)


@dataclasses.dataclass(kw_only=True)
class QuantConfig(_QuantDatabaseConfig):
    """Per-layer bit-widths: ``target`` the average bits per weight in [2, 8] (a fractional target
    mixes floor / ceil bit-widths within groups of equal size). ``count_metadata``: the budget, the
    uniform baseline and the reported average count the 16-bit scales and (asymmetric) zero points."""

    method: ClassVar[str] = "quant"

    count_metadata: bool = False

    def _check_method(self, say: Callable[[str], str]) -> None:
        if not isinstance(self.count_metadata, bool):
            raise TypeError(f"{say('count_metadata')} must be a bool, got {self.count_metadata!r}")
        super()._check_method(say)


@dataclasses.dataclass(kw_only=True)
class DepthConfig(CompressConfig):
    """Dropped sub-blocks: ``target`` is K, the number of attention AND of MLP sub-blocks to drop (an
    integer in [1, N - 1]), or a fraction in (0, 1) of the N blocks (K = round(target * N)). No
    database; the search starts from the ShortGPT choice (reported as a baseline)."""

    method: ClassVar[str] = "depth"

    target: float

    def blocks_to_drop(self, n_blocks: int) -> int:
        """K for a model of ``n_blocks`` blocks (:func:`depth_count`)."""
        return depth_count(self.target, n_blocks)

    def check_model(self, adapter: Any) -> None:
        self.blocks_to_drop(adapter.n_blocks)

    def _check_target(self, say: Callable[[str], str]) -> None:
        super()._check_target(say)
        if not float(self.target) > 0:
            raise ConfigError(f"depth target must be a fraction in (0, 1) or a count >= 1 of sub-blocks "
                              f"dropped per kind, got {float(self.target)}")
        t = float(self.target)
        if t >= 1 and t != round(t):
            raise ConfigError(f"depth target >= 1 is a count of sub-blocks per kind and must be an integer, got {t}")


@dataclasses.dataclass(kw_only=True)
class DepthQuantConfig(_QuantDatabaseConfig):
    """Dropped sub-blocks and bit-widths searched together: ``target`` the average bits per weight in
    [2, 8], dropped sub-blocks counting 0 bits; a quantisation database with a consecutive ladder
    (:mod:`evoforge.compress.joint`)."""

    method: ClassVar[str] = "depth+quant"
