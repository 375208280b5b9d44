"""The two-level cache of program fitness (AutoML-Zero's functional equivalence cache, Unified Functional
Hashing): :class:`ProgramCache` over an :class:`evoforge.cache.EvaluationCache`.

Level 1, *structural*: the digest of the program's canonical form (:meth:`Program.canonical`: dead
code removed, registers renamed; its code and immediates exactly, and its register counts), so a
program and its copies that differ only in dead code or register names hit without running anything.
Level 2, *functional*: the digest of the program's outputs on probe inputs (``probe(program)``),
quantised (:func:`functional_digest`), so structurally different programs that compute the same
function (``s1 = s0 + s0`` and ``s1 = 2 * s0``) hit too. Both digests of an evaluated program go into
the one EvaluationCache (SQLite or in memory), so a later program hits at either level, in this
process or another.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ..cache import EvaluationCache
from ..errors import ConfigError
from ..hashing import Hasher
from .program import Program, canonical_arrays

__all__ = ["ProgramCache", "ProgramKey", "structural_digest", "functional_digest", "DEFAULT_QUANTISE"]

#: The default quantisation of probe outputs: 20 significant bits of mantissa (about 6 decimal
#: digits), valid for float32 (at most 23) and float64 (at most 52) outputs.
DEFAULT_QUANTISE = 20
_S_TAG = "evoforge.programs.structural/2"
_F_TAG = "evoforge.programs.functional/1"


def check_quantise(quantise: Any) -> dict[str, Any]:
    """``quantise`` as hash_array's keyword: an int is the number of mantissa bits kept (significant
    binary digits, [0, 52]; at most 23 for float32 outputs), a float the step of an absolute grid
    (positive, finite). TypeError for anything else (bools included), ConfigError out of range."""
    if isinstance(quantise, (bool, np.bool_)) or not isinstance(quantise, numbers.Real):
        raise TypeError(f"quantise must be an int (mantissa bits) or a float (grid step), got "
                        f"{type(quantise).__name__}")
    if isinstance(quantise, numbers.Integral):
        b = int(quantise)
        if not 0 <= b <= 52:
            raise ConfigError(f"quantise (mantissa bits) must lie in [0, 52] (float32 outputs: [0, 23]), got {b}")
        return {"mantissa_bits": b}
    g = float(quantise)
    if not (g > 0 and math.isfinite(g)):  # NaN fails too
        raise ConfigError(f"quantise (a grid step) must be a positive finite number, got {quantise!r}")
    return {"grid": g}


def _prefix(tag: str, namespace: Any) -> Hasher:
    return Hasher().update(tag).update(namespace)


def _structural(prefix: Hasher, program: Any) -> bytes:
    return _structural_many(prefix, [program])[0]


def _structural_many(prefix: Hasher, programs: Sequence[Any]) -> list[bytes]:
    """The structural digests of programs, their canonical forms made in one native call per kind and
    set of counts (a search hashes every child)."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(programs):
        if not isinstance(p, Program):
            raise TypeError(f"program must be a Program, got {type(p).__name__}")
        groups.setdefault((p.kind, p.n_scalar, p.n_vector, p.n_matrix, p.dim), []).append(i)
    out: list[bytes] = [b""] * len(programs)
    for (_, *counts), idx in groups.items():
        code, imm, lengths = canonical_arrays([programs[i] for i in idx])  # validates
        imm = imm + 0.0  # -0.0 -> 0.0
        names = [(n.encode(), n) for n in programs[idx[0]].components]
        head = np.array(counts, dtype=np.int64).tobytes()
        at = 0
        # One byte string per program (counts, then per component its name, length, code and immediates):
        # folding a nested structure into the hasher costs more than the rest of a lookup.
        for i, row in zip(idx, lengths.tolist()):
            parts = [head]
            for (name, _), L in zip(names, row):
                parts += [name, L.to_bytes(4, "little"), code[at:at + L].tobytes(), imm[at:at + L].tobytes()]
                at += L
            out[i] = prefix.copy().update(b"".join(parts)).digest()
    return out


def _functional(prefix: Hasher, outputs: Any, quant: dict[str, Any]) -> bytes:
    h = prefix.copy()
    try:
        h.update(outputs, **quant)
    except ConfigError as e:  # mantissa bits beyond the outputs' dtype
        raise ConfigError(f"quantise does not fit the outputs: {e}") from None
    return h.digest()


def structural_digest(program: Program, *, namespace: Any = None) -> bytes:
    """The 16-byte digest of ``program.canonical()`` (its code, immediates and register counts, exactly):
    equal for programs that differ only in dead code and register names. ``namespace`` (anything
    :class:`evoforge.hashing.Hasher` takes: a task name, a budget) is folded in. ValueError for an
    invalid program (as :meth:`Program.validate`)."""
    return _structural(_prefix(_S_TAG, namespace), program)


def functional_digest(outputs: Any, *, quantise: float | int = DEFAULT_QUANTISE, namespace: Any = None) -> bytes:
    """The 16-byte digest of a program's outputs on probe inputs (an array, or a tuple / list of arrays),
    quantised by ``quantise`` (see :func:`check_quantise`): NaNs (any sign or payload) all hash alike,
    +-inf are kept, -0.0 equals 0.0; the shapes and dtypes count. ``namespace`` is folded in."""
    return _functional(_prefix(_F_TAG, namespace), outputs, check_quantise(quantise))


class ProgramKey(NamedTuple):
    """What :meth:`ProgramCache.lookup` returns for :meth:`ProgramCache.store`: the structural digest,
    and the functional one (None after a structural hit: the probe did not run)."""

    structural: bytes
    functional: bytes | None


def _genome(p: Program) -> dict[str, Any]:
    return {"n_scalar": p.n_scalar, "n_vector": p.n_vector, "n_matrix": p.n_matrix, "dim": p.dim,
            "components": {n: c.tolist() for n, c in p.components.items()},
            "imm": {n: [float(x) for x in m] for n, m in p.imm.items()}}


class ProgramCache:
    """Program -> fitness, looked up by structure, then by function.

    Parameters
    ----------
    cache : EvaluationCache, optional
        Where the digests and fitnesses live (an SQLite file shares them between processes and runs);
        None: a new in-memory cache. Its policies (capacity, aggregate, ...) apply to both levels.
    probe : callable or None
        ``probe(program) -> outputs`` (an array, or a tuple / list of arrays): the program's outputs on
        fixed probe inputs, e.g. a few training and validation examples run by
        :mod:`evoforge.interpreter`. It must be deterministic (the same program, the same outputs).
        None: the structural level alone (a miss there is a miss).
    quantise : int or float
        The quantisation of the outputs (an int: mantissa bits kept; a float: an absolute grid step),
        see :func:`functional_digest`.
    namespace : optional
        Folded into both digests (anything :class:`evoforge.hashing.Hasher` takes): the task, the
        probe set's version, the evaluation budget, so that caches of different tasks never mix.

    Counters: ``hits_structural``, ``hits_functional``, ``misses`` (lookups), ``probe_calls`` and
    ``probe_seconds`` (the level-2 cost), ``evaluations`` and ``evaluation_seconds`` (fitnesses given
    to :meth:`store` with their time, or computed by :meth:`evaluate`); :meth:`report` sums them up.
    """

    def __init__(self, cache: EvaluationCache | None = None, *, probe: Callable[[Program], Any],
                 quantise: float | int = DEFAULT_QUANTISE, namespace: Any = None) -> None:
        if cache is not None and not isinstance(cache, EvaluationCache):
            raise TypeError(f"cache must be an EvaluationCache or None, got {type(cache).__name__}")
        if probe is not None and not callable(probe):
            raise TypeError(f"probe must be a callable program -> outputs or None, got {type(probe).__name__}")
        self._quant = check_quantise(quantise)
        self.quantise = quantise
        self.namespace = namespace
        self._s_prefix = _prefix(_S_TAG, namespace)  # TypeError here for a namespace Hasher cannot take
        self._f_prefix = _prefix(_F_TAG, namespace)
        self.cache = EvaluationCache() if cache is None else cache
        self.probe = probe
        self.hits_structural = self.hits_functional = self.misses = 0
        self.probe_calls = self.evaluations = 0
        self.probe_seconds = self.evaluation_seconds = 0.0
        self._timed_evaluations = 0

    @property
    def lookups(self) -> int:
        return self.hits_structural + self.hits_functional + self.misses

    def lookup(self, program: Program) -> tuple[Any, str | None, ProgramKey]:
        """``(fitness, level, key)``: the cached fitness and ``"structural"`` or ``"functional"`` on a
        hit, ``(None, None, key)`` on a miss (evaluate the program, then :meth:`store` with ``key``).

        The structural digest is looked up first; only on its miss does the probe run. A functional hit
        also stores its fitness under the structural digest (if absent), so the same structure hits
        next time without a probe. TypeError for a non-Program, ValueError for an invalid one.
        """
        return self.lookup_many([program])[0]

    def lookup_many(self, programs: Sequence[Program], *,
                    probe_many: Callable[[list[Program]], Sequence[Any]] | None = None
                    ) -> list[tuple[Any, str | None, ProgramKey]]:
        """:meth:`lookup` of every program, the probes of the structural misses run together:
        ``probe_many(misses) -> outputs per program`` when given (one interpreter call for a batch),
        else ``probe`` one program at a time."""
        out: list = [None] * len(programs)
        misses = []
        skeys = _structural_many(self._s_prefix, programs)
        for i, skey in enumerate(skeys):
            e = self.cache.get(skey)
            if e is not None:
                self.hits_structural += 1
                out[i] = (e.fitness, "structural", ProgramKey(skey, None))
            elif self.probe is None:
                self.misses += 1
                out[i] = (None, None, ProgramKey(skey, None))
            else:
                misses.append(i)
        if not misses:
            return out
        t0 = time.perf_counter()
        batch = [programs[i] for i in misses]
        outputs = list(probe_many(batch)) if probe_many is not None else [self.probe(p) for p in batch]
        self.probe_seconds += time.perf_counter() - t0
        self.probe_calls += len(misses)
        if len(outputs) != len(misses):
            raise ValueError(f"probe_many returned {len(outputs)} outputs for {len(misses)} programs")
        for i, o in zip(misses, outputs):
            skey, fkey = skeys[i], _functional(self._f_prefix, o, self._quant)
            e = self.cache.get(fkey)
            if e is not None:
                self.hits_functional += 1
                if self.cache.peek(skey) is None:
                    self.cache.put(skey, e.fitness, genome=_genome(programs[i]))
                out[i] = (e.fitness, "functional", ProgramKey(skey, fkey))
            else:
                self.misses += 1
                out[i] = (None, None, ProgramKey(skey, fkey))
        return out

    def store(self, key: ProgramKey, fitness: Any, program: Program | None = None, *,
              seconds: float | None = None) -> None:
        """Record ``fitness`` (a finite float, or a float vector) under both digests of ``key`` (from
        :meth:`lookup`); ``program`` is kept as the entry's genome (JSON: counts, code, immediates),
        ``seconds`` (the evaluation's wall time) feeds the report's evaluation cost."""
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError(f"key must be the ProgramKey that lookup returned, got {type(key).__name__}")
        skey, fkey = key
        if type(skey) is not bytes or (fkey is not None and type(fkey) is not bytes):
            raise TypeError("key must be the ProgramKey that lookup returned: (structural bytes, functional "
                            "bytes or None)")
        if program is not None and not isinstance(program, Program):
            raise TypeError(f"program must be a Program or None, got {type(program).__name__}")
        genome = None if program is None else _genome(program)
        self.cache.put(skey, fitness, genome=genome, seconds=seconds)  # checks fitness and seconds first
        if fkey is not None:
            self.cache.put(fkey, fitness, genome=genome, seconds=seconds)
        self.evaluations += 1
        if seconds is not None:
            self.evaluation_seconds += float(seconds)
            self._timed_evaluations += 1

    def evaluate(self, program: Program, fn: Callable[[Program], Any]) -> Any:
        """Get-or-compute: the cached fitness on a hit at either level, else ``fn(program)``, timed and
        stored. Returns the fitness the cache holds after the store."""
        if not callable(fn):
            raise TypeError(f"fn must be a callable program -> fitness, got {type(fn).__name__}")
        fitness, _, key = self.lookup(program)
        if fitness is not None:
            return fitness
        t0 = time.perf_counter()
        value = fn(program)
        self.store(key, value, program, seconds=time.perf_counter() - t0)
        return self.cache.peek(key.structural).fitness

    def report(self) -> dict[str, Any]:
        """Lookups and hits per level with their rates (of all lookups), the probe's cost (calls, total
        and mean seconds), the evaluations' cost (those with a time), ``probe_cost_ratio`` (mean probe
        time / mean evaluation time; None until both are known) and ``savings`` (lookups per miss:
        the factor of evaluations saved; None before the first miss)."""
        n = self.lookups
        hits = self.hits_structural + self.hits_functional
        probe_mean = self.probe_seconds / self.probe_calls if self.probe_calls else None
        eval_mean = self.evaluation_seconds / self._timed_evaluations if self._timed_evaluations else None
        return {
            "lookups": n, "hits_structural": self.hits_structural, "hits_functional": self.hits_functional,
            "misses": self.misses,
            "rate_structural": self.hits_structural / n if n else 0.0,
            "rate_functional": self.hits_functional / n if n else 0.0,
            "hit_rate": hits / n if n else 0.0,
            "probe_calls": self.probe_calls, "probe_seconds": self.probe_seconds, "probe_seconds_mean": probe_mean,
            "evaluations": self.evaluations, "evaluation_seconds": self.evaluation_seconds,
            "evaluation_seconds_mean": eval_mean,
            "probe_cost_ratio": probe_mean / eval_mean if probe_mean is not None and eval_mean else None,
            "savings": n / self.misses if self.misses else None,
        }

    def __repr__(self) -> str:
        return (f"ProgramCache(structural={self.hits_structural}, functional={self.hits_functional}, "
                f"misses={self.misses}, cache={self.cache!r})")
