"""What the evaluation cache stores: :class:`Entry` snapshots, :class:`CacheStats`, the mutable
:class:`Record` of one key inside a store, and the checks and folding of fitness values."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .. import _checks

__all__ = ["Fitness", "CacheStats", "Entry", "Record", "check_key", "as_fitness", "genome_json"]

Fitness = Union[float, np.ndarray]


@dataclass(frozen=True, eq=False, slots=True)
class CacheStats:
    """Counts of one :class:`EvaluationCache` object since it was opened (not shared by processes).

    ``evaluations`` counts puts (an ``evaluate`` miss is one); ``evaluations_saved`` counts hits, each
    of which saved one evaluation; ``seconds_saved`` adds, per hit, the entry's mean evaluation time
    (0 when it was never timed).
    """

    hits: int
    misses: int
    evaluations: int
    evaluations_saved: int
    seconds_saved: float

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0.0 before the first lookup."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


@dataclass(frozen=True, eq=False, slots=True)
class Entry:
    """A snapshot of one cached key.

    Attributes
    ----------
    key : bytes
    fitness : float, or numpy.ndarray of float64, shape (M,), read-only
        Running mean of every evaluation folded into the key (the value served on a hit).
    count : int
        Evaluations folded in (>= 1).
    m2 : float or numpy.ndarray
        Welford's sum of squared deviations from the mean; see :attr:`variance`.
    hits : int
        Lookups served from this entry, over its lifetime and all processes (those of other
        processes once written; see the module docstring).
    created, updated : float
        Unix time of the first and the latest evaluation.
    seconds : float or None
        Mean wall time of one evaluation, over the evaluations that were timed; None if none was.
    genome : Any
        The first genome given for the key (decoded from JSON on access), or None.
    """

    key: bytes
    fitness: Fitness
    count: int
    m2: Fitness
    hits: int
    created: float
    updated: float
    seconds: float | None
    genome_json: str | None = field(default=None, repr=False)

    @property
    def mean(self) -> Fitness:
        """Same as :attr:`fitness`."""
        return self.fitness

    @property
    def variance(self) -> Fitness:
        """Population variance of the evaluations, ``m2 / count`` (numpy's ``var`` with ddof=0)."""
        return self.m2 / self.count

    @property
    def sample_variance(self) -> Fitness:
        """Unbiased variance, ``m2 / (count - 1)`` (ddof=1); NaN for a single evaluation."""
        if self.count < 2:
            return math.nan if isinstance(self.m2, float) else np.full_like(self.m2, np.nan)
        return self.m2 / (self.count - 1)

    @property
    def genome(self) -> Any:
        return None if self.genome_json is None else json.loads(self.genome_json)



# ---------------------------------------------------------------------------------------------
# values


def check_key(key: Any) -> None:
    if type(key) is not bytes:
        raise TypeError(f"cache keys must be bytes (a digest), got {type(key).__name__}")


def as_fitness(x: Any) -> Fitness:
    """A finite Python float, or a read-only float64 vector of shape (M,), M >= 1."""
    if type(x) is float or type(x) is int:
        f = float(x)
        if not math.isfinite(f):
            raise ValueError(f"fitness must be finite, got {f} (record a failure as a large finite penalty)")
        return f
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"fitness must be a real number or a vector of them, got {type(x).__name__}")
    a = _checks.to_numpy(x, "fitness")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"fitness must be a real number or a vector of them, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 0:
        return as_fitness(float(a))
    if a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"a fitness vector must have shape (M,) with M >= 1, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"fitness must be finite, got {a[i]} in component {i} "
                         "(record a failure as a large finite penalty)")
    a.flags.writeable = False
    return a


def _dims(x: Fitness) -> int:
    """0 for a scalar, M for a vector."""
    return 0 if isinstance(x, float) else x.shape[0]


def _describe(d: int) -> str:
    return "a scalar" if d == 0 else f"a vector of {d} component{'s' if d > 1 else ''}"


def _fold(key: bytes, count: int, mean: Fitness, m2: Fitness, x: Fitness) -> tuple[Fitness, Fitness]:
    """Welford's update of (mean, m2) over ``count`` values with one more value ``x``."""
    if _dims(mean) != _dims(x):
        raise ValueError(f"fitness for key {key.hex()} is {_describe(_dims(x))}, "
                         f"but the cache holds {_describe(_dims(mean))} for it")
    n = count + 1
    delta = x - mean
    mean = mean + delta / n
    m2 = m2 + delta * (x - mean)
    if not isinstance(mean, float):
        mean.flags.writeable = False
        m2.flags.writeable = False
    return mean, m2


def _zero_like(x: Fitness) -> Fitness:
    if isinstance(x, float):
        return 0.0
    z = np.zeros_like(x)
    z.flags.writeable = False
    return z


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if _checks.is_torch(o):
        return o.detach().cpu().tolist()
    raise TypeError(f"a genome must be JSON-serialisable (dicts, lists, str, numbers, numpy arrays); "
                    f"got {type(o).__name__}")


def genome_json(genome: Any) -> str | None:
    if genome is None:
        return None
    return json.dumps(genome, default=_json_default, separators=(",", ":"))


class Record:
    """The mutable state of one entry inside a store."""

    __slots__ = ("mean", "m2", "count", "hits", "since_eval", "sec_total", "sec_n", "genome", "created",
                 "updated")

    def __init__(self, mean, m2, count, hits, since_eval, sec_total, sec_n, genome, created, updated):
        self.mean, self.m2, self.count = mean, m2, count
        self.hits, self.since_eval = hits, since_eval
        self.sec_total, self.sec_n = sec_total, sec_n
        self.genome, self.created, self.updated = genome, created, updated

    def entry(self, key: bytes) -> Entry:
        return Entry(key, self.mean, self.count, self.m2, self.hits, self.created, self.updated,
                     self.sec_total / self.sec_n if self.sec_n else None, self.genome)

    def seconds(self) -> float:
        return self.sec_total / self.sec_n if self.sec_n else 0.0

    def fold(self, key: bytes, x: Fitness, seconds: float | None, genome: str | None, now: float) -> None:
        self.mean, self.m2 = _fold(key, self.count, self.mean, self.m2, x)
        self.count += 1
        self.since_eval = 0
        if seconds is not None:
            self.sec_total += seconds
            self.sec_n += 1
        if self.genome is None:
            self.genome = genome
        self.updated = now

    @classmethod
    def new(cls, x: Fitness, seconds: float | None, genome: str | None, now: float) -> "Record":
        return cls(x, _zero_like(x), 1, 0, 0, seconds or 0.0, 0 if seconds is None else 1, genome, now, now)

