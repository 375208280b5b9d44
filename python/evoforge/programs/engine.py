"""What the program-search engines share: the task they search for, mutation of programs, and
evaluation through the two-level :class:`~evoforge.programs.ProgramCache`.

A *task* (:class:`ProgramTask`) says what programs look like (form and registers), where a search
starts (``initial()``), how a program is scored (``evaluate(programs, batch)``: fitness [B] or
[B, M], minimised, finite) and what it computes on a few probe inputs (``probe(program)``: the
functional hash's outputs). The engines (:class:`~evoforge.programs.RegularizedEvolution`,
:class:`~evoforge.programs.ProgramNSGA2`) are :class:`evoforge.search.Engine` subclasses whose
genomes are programs: ``Batch.genomes`` is a numpy object array [B] of :class:`Program`, which every
backend of :mod:`evoforge.evaluate` ships as it is (programs pickle).

Caching: a candidate is looked up by the structural digest of its canonical form, then (a miss)
by the functional digest of ``task.probe(candidate)``; only candidates missing at both levels reach
the evaluator, each distinct function once per batch. ``functional_cache=False`` turns the second
level off and ``cache=False`` both (every candidate evaluated: the reference trajectory for the
cache's savings). The history records the hits per level and the probe's time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._checks import check_int
from ..cache import EvaluationCache
from ..errors import ConfigError
from ..search.engine import Engine, Result
from ..search.protocol import Batch, EvaluatorLike
from .cache import ProgramCache, check_quantise
from .mutation import _check_kinds, _check_sigma, _mutate
from .program import Program

__all__ = ["ProgramTask", "ProgramEngine", "program_array"]


@runtime_checkable
class ProgramTask(Protocol):
    """What a program search needs to know of its task.

    Attributes: ``objectives`` (names, one per fitness column), ``kind`` (``"function"`` or
    ``"learner"``), ``n_scalar``, ``n_vector``, ``n_matrix``, ``dim`` (the registers), ``ops`` (op
    names new instructions may use; None: all), ``namespace`` (what the cache keys fold in: the task's
    identity, so caches of different tasks never mix)."""

    objectives: tuple[str, ...]
    kind: str

    def initial(self) -> Program: ...

    def evaluate(self, programs: np.ndarray, batch: Any = None) -> Any: ...

    def probe(self, program: Program) -> Any: ...


def program_array(programs: Sequence[Program]) -> np.ndarray:
    """A numpy object array [B] of programs (what ``Batch.genomes`` holds for program engines)."""
    out = np.empty(len(programs), dtype=object)
    for i, p in enumerate(programs):
        if not isinstance(p, Program):
            raise TypeError(f"programs[{i}] must be a Program, got {type(p).__name__}")
        out[i] = p
    return out


class ProgramEngine(Engine):
    """Base of the program engines: the task, the mutation options and the cached evaluation.

    Parameters
    ----------
    task : a :class:`ProgramTask` (also the default evaluator of :meth:`run`)
    initial : programs to start from (a Program or a sequence, repeated to fill the population);
        None: ``task.initial()``
    max_length : most instructions per component an insertion may reach
    kinds : the mutation kinds (:data:`~evoforge.programs.MUTATION_KINDS`)
    imm_sigma : relative scale of an immediate's perturbation (:func:`~evoforge.programs.mutate`)
    cache : True (both levels), False (none), or an :class:`~evoforge.cache.EvaluationCache` to keep
        the digests in (default: the run directory's, or one in memory)
    functional_cache : the second level (probe outputs) on or off
    quantise : mantissa bits (int) or grid step (float) of the functional hash
    """

    def __init__(self, task: ProgramTask, *, initial: Program | Sequence[Program] | None, max_length: int,
                 kinds: Sequence[str], imm_sigma: float, cache: bool | EvaluationCache, functional_cache: bool,
                 quantise: float | int, seed: int, run_dir: str | os.PathLike | None, progress: bool) -> None:
        for name in ("initial", "evaluate", "probe"):
            if not callable(getattr(task, name, None)):
                raise TypeError(f"task must have a callable {name}() (a ProgramTask), got {type(task).__name__}")
        objectives = tuple(getattr(task, "objectives", ()))
        if not objectives or not all(isinstance(o, str) for o in objectives):
            raise ConfigError(f"task.objectives must name at least one objective, got {objectives!r}")
        if not isinstance(cache, (bool, EvaluationCache)):
            raise TypeError(f"cache must be a bool or an EvaluationCache, got {type(cache).__name__}")
        if not isinstance(functional_cache, bool):
            raise TypeError(f"functional_cache must be a bool, got {type(functional_cache).__name__}")
        check_quantise(quantise)
        super().__init__(seed=seed, run_dir=run_dir, cache=cache if isinstance(cache, EvaluationCache) else None,
                         task=repr(getattr(task, "namespace", type(task).__name__)), progress=progress)
        self.program_task = task
        self.objectives = objectives
        self.n_objectives = len(objectives)
        self.max_length = check_int(max_length, "max_length", 1, 1 << 16)
        self.kinds = tuple(sorted(_check_kinds(kinds)))
        self.imm_sigma = _check_sigma(imm_sigma)
        self.use_cache = cache is not False
        self.functional_cache = bool(functional_cache) and self.use_cache
        self.quantise = quantise
        self.initial = self._initial_programs(initial)
        self.hits_structural = self.hits_functional = 0
        self.probe_seconds = self.evaluation_seconds = 0.0
        self._program_cache: ProgramCache | None = None

    def _initial_programs(self, initial: Any) -> list[Program]:
        if initial is None:
            initial = self.program_task.initial()
        programs = [initial] if isinstance(initial, Program) else list(initial)
        if not programs:
            raise ConfigError("initial must hold at least one program")
        for i, p in enumerate(programs):
            if not isinstance(p, Program):
                raise TypeError(f"initial[{i}] must be a Program, got {type(p).__name__}")
            p.validate()
        return programs

    # ---- variation --------------------------------------------------------------------------------

    def _tuned(self, programs: list[Program], generation: int) -> list[Program]:
        """``task.tune(programs, seed=...)`` when the task has one (e.g. fitting constants), else as given."""
        tune = getattr(self.program_task, "tune", None)
        return list(tune(programs, seed=self.stream_seed(generation, 3))) if callable(tune) else programs

    def _start(self, size: int) -> np.ndarray:
        """The first generation: the initial programs (tuned as every child is), repeated to ``size``."""
        programs = self._tuned(list(self.initial), 0)
        return program_array((programs * -(-size // len(programs)))[:size])

    def _children(self, parents: Sequence[Program]) -> np.ndarray:
        """Mutants of ``parents`` (individual j of this generation from parents[j]), tuned."""
        # mutate(parent, seed=, generation=, individual=j, ...) without re-checking the options per child
        ops, kinds, g = getattr(self.program_task, "ops", None), set(self.kinds), self.generation
        return program_array(self._tuned([_mutate(p, (self.seed, g, j, 0), self.max_length, ops, kinds, self.imm_sigma)
                                          for j, p in enumerate(parents)], g))

    # ---- evaluation --------------------------------------------------------------------------------

    def _programs_cache(self) -> ProgramCache:
        if self._program_cache is None:
            probe = self.program_task.probe if self.functional_cache else None
            self._program_cache = ProgramCache(self._cache, probe=probe, quantise=self.quantise,
                                               namespace=("programs", self.task))
        return self._program_cache

    def evaluate(self, batch: Batch, evaluator: EvaluatorLike) -> tuple[np.ndarray, np.ndarray | None]:
        """Fitness of a batch of programs: structural hits, then functional hits, then the evaluator
        for the rest (each distinct function of the batch once). Returns ([B] or [B, M], None)."""
        programs = batch.genomes
        B, M = len(programs), self.n_objectives
        values = np.empty((B, M))
        self.requested += B
        if not self.use_cache:
            todo, keys, alias = list(range(B)), [None] * B, {}
        else:
            todo, keys, alias = self._look_up(programs, values)
        if todo:
            pc = self._programs_cache() if self.use_cache else None

            def store(i: int, row: np.ndarray, seconds: float) -> None:
                values[i] = row
                self.evaluation_seconds += seconds
                if pc is not None:
                    pc.store(keys[i], row if M > 1 else float(row[0]), programs[i], seconds=seconds)

            self._evaluate_rows(batch, todo, evaluator, store)
        for i, j in alias.items():
            values[i] = values[j]
        return (values[:, 0] if M == 1 else values), None

    def _look_up(self, programs: np.ndarray, values: np.ndarray) -> tuple[list[int], list, dict[int, int]]:
        """Fill ``values`` for the cache's hits; return the rows to evaluate, their keys, and
        {row: the row of the same batch whose fitness it shares}."""
        pc = self._programs_cache()
        probe0 = pc.probe_seconds
        todo: list[int] = []
        keys: list = [None] * len(programs)
        alias: dict[int, int] = {}
        first: dict[bytes, int] = {}
        probe_many = getattr(self.program_task, "probe_many", None) if self.functional_cache else None
        found = pc.lookup_many(list(programs), probe_many=probe_many if callable(probe_many) else None)
        for i, (fitness, level, key) in enumerate(found):
            if fitness is not None:
                values[i] = fitness
                if level == "structural":
                    self.hits_structural += 1
                else:
                    self.hits_functional += 1
                continue
            # Not cached, but maybe the same function (or structure) as an earlier miss of this batch.
            same = first.get(key.functional) if key.functional is not None else first.get(key.structural)
            if same is not None:
                alias[i] = same
                self.hits_functional += 1
                continue
            first[key.functional if key.functional is not None else key.structural] = i
            keys[i] = key
            todo.append(i)
        self.probe_seconds += pc.probe_seconds - probe0
        self.cache_hits += len(programs) - len(todo)
        return todo, keys, alias

    def _cache_record(self) -> dict[str, Any]:
        n = max(1, self.requested)
        return {"hits_structural": self.hits_structural, "hits_functional": self.hits_functional,
                "rate_structural": self.hits_structural / n, "rate_functional": self.hits_functional / n,
                "probe_seconds": round(self.probe_seconds, 6), "evaluation_seconds": round(self.evaluation_seconds, 6)}

    # ---- driver and persistence -------------------------------------------------------------------

    def run(self, evaluator: EvaluatorLike | None = None, **limits: Any) -> Result:
        """:meth:`evoforge.search.Engine.run` with the task as the default evaluator (give a backend of
        :mod:`evoforge.evaluate` built from a factory of the task to evaluate elsewhere)."""
        return super().run(self.program_task if evaluator is None else evaluator, **limits)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_program_cache"] = None
        return state

