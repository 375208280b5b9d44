"""The base of every search engine: ask/tell, evaluation through the EvaluationCache, a
checkpoint after every generation, resume, a history file and a progress bar.

Symbols: B candidates in a batch, L genes per genome, M objectives.

An engine is driven either by :meth:`Engine.run` (it calls an evaluator) or by hand::

    while not done:
        batch = engine.ask()                     # Batch: genomes [B, L] (+ fidelity, seed)
        engine.tell(batch, my_fitness(batch))     # [B] or [B, M] float, minimised

Evaluators: an object with ``evaluate(genomes, batch)`` (it sees the batch's fidelity and
minibatch seed), or a plain callable ``f(genomes)``. Either returns fitness of shape [B] (one
objective) or [B, M], or a pair ``(fitness, constraint_violation [B])``; smaller is better and
values must be finite. A backend of :mod:`evoforge.evaluate` (process pool, Ray) also has
``evaluate_chunks``, whose chunks are cached as they arrive.

Determinism: every random draw is a pure function of (seed, generation, ...) (see
:mod:`evoforge.random`), so the same seed gives the same run, and a run resumed from its last
checkpoint gives the same result as an uninterrupted one. Candidates evaluated before a kill are
found in the run directory's cache and not evaluated again.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._checks import check_int
from ..cache import EvaluationCache
from ..hashing import Hasher, genotype_hash
from ..errors import ConfigError, CorruptCheckpointError
from .protocol import Batch, Evaluator, EvaluatorLike, evaluate_in_chunks

__all__ = ["Batch", "Result", "Evaluator", "Engine", "CHECKPOINT", "HISTORY", "MAX_POPULATION"]

CHECKPOINT = "checkpoint.pkl"
HISTORY = "history.jsonl"

#: The largest ``pop_size`` / ``n_offspring`` an engine takes (2**24; about what
#: :func:`evoforge.mutation.level_switch` makes at once). It keeps the individual indices of all
#: the retries of a generation within the 32 bits of the random streams; a larger value is a
#: mistake, refused before any loop or allocation is sized by it.
MAX_POPULATION = 2**24


@dataclass
class Result:
    """What a run found. ``evaluations`` counts candidates passed to the evaluator (cache misses).

    Before any generation completed (e.g. ``generations=0``) nothing has a fitness: ``best_fitness``
    is None (NSGA2: an empty front, shape (0, M)) and ``best_genome`` is None for GA, an empty
    (0, L) array for NSGA2, and the initial parent for OnePlusLambda.

    ``stopped`` says why :meth:`Engine.run` returned: ``"generations"``, ``"max_evaluations"``,
    ``"target"``, or ``"stalled"`` (converged: ``stall_generations`` generations in a row found every
    candidate in the cache and evaluated nothing, see :meth:`Engine.run`)."""

    best_genome: np.ndarray | None
    best_fitness: Any
    generations: int
    evaluations: int
    requested: int
    cache_hits: int
    history: list = field(default_factory=list)
    run_dir: Path | None = None
    stopped: str | None = None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Engine:
    """Base class. Subclasses implement ``_ask() -> Batch``, ``_tell(batch, F, cv)`` (calling
    ``self._end_generation(...)`` when a generation is complete) and ``best``."""

    def __init__(self, *, seed: int = 0, run_dir: str | os.PathLike | None = None,
                 cache: EvaluationCache | None = None, task: str = "", progress: bool = True) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise ConfigError(f"seed must be an int in [0, 2**63), got {seed!r}")
        self.seed = int(seed)
        self.task = str(task)
        self.progress = bool(progress)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.generation = 0
        self.history: list[dict] = []
        self.evaluations = 0  # candidates passed to an evaluator
        self.requested = 0  # candidates asked for (hits + misses)
        self.cache_hits = 0
        self._pending: Batch | None = None
        self._started = time.perf_counter()
        self._pbar = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if cache is None:
            cache = EvaluationCache(self.run_dir) if self.run_dir is not None else EvaluationCache()
        self._cache = cache

    # ---- ask / tell ----------------------------------------------------------------------------

    def ask(self) -> Batch:
        """The next candidates to evaluate (the same batch again until it is told)."""
        if self._pending is None:
            self._pending = self._ask()
        return self._pending

    def tell(self, batch: Batch, fitness: Any, constraint_violation: Any = None) -> None:
        """Fitness (and constraint violation) of ``batch``, the batch last returned by ask()."""
        if batch is not self._pending:
            raise ValueError("tell() must receive the batch returned by the last ask()")
        F, cv = self._check_fitness(batch, fitness, constraint_violation)
        self._pending = None
        self._tell(batch, F, cv)

    # ---- subclass API --------------------------------------------------------------------------

    n_objectives: int = 1
    constrained: bool = False
    #: Consecutive completed generations that evaluated nothing (every candidate a cache hit), and
    #: ``evaluations`` at the end of the latest generation. Class defaults: checkpoints written
    #: before these existed resume with them.
    stalled_generations: int = 0
    _evaluations_at_generation: int = 0

    def _ask(self) -> Batch:
        raise NotImplementedError

    def _tell(self, batch: Batch, F: np.ndarray, cv: np.ndarray | None) -> None:
        raise NotImplementedError

    @property
    def best(self) -> tuple[np.ndarray | None, Any]:
        """(genome, fitness) of the best candidate so far (for NSGA-II: the first front); before the
        first generation completes, fitness is None (NSGA-II: an empty front), see :class:`Result`."""
        raise NotImplementedError

    def _end_generation(self, **record: Any) -> None:
        """Called by subclasses when a generation is complete: history, checkpoint, progress."""
        self.generation += 1
        evaluated = self.evaluations - self._evaluations_at_generation
        self.stalled_generations = 0 if evaluated else self.stalled_generations + 1
        self._evaluations_at_generation = self.evaluations
        record = {"generation": self.generation, "evaluations": self.evaluations,
                  "requested": self.requested, "cache_hits": self.cache_hits,
                  "seconds": round(time.perf_counter() - self._started, 6), **record}
        self.history.append(record)
        if self.run_dir is not None:
            self.save()  # the checkpoint first: a history line never runs ahead of it
            with open(self.run_dir / HISTORY, "a") as f:
                f.write(json.dumps(record, default=_json_default) + "\n")
        if self._pbar is not None:
            self._pbar.update(1)
            best = record.get("best_fitness")
            hit = self.cache_hits / max(1, self.requested)
            self._pbar.set_postfix_str(f"best={_short(best)} hit={hit:.0%}")

    # ---- evaluation through the cache -----------------------------------------------------------

    def key(self, genome: np.ndarray, batch: Batch) -> bytes:
        """Cache key of one candidate: its genome (exact: values, dtype, shape), the fidelity and
        minibatch seed of the batch, and the task."""
        return Hasher().update(genotype_hash(genome)).update((batch.fidelity, batch.seed, self.task)).digest()

    def evaluate(self, batch: Batch, evaluator: EvaluatorLike) -> tuple[np.ndarray, np.ndarray | None]:
        """Fitness of a batch: cached candidates are looked up, the rest evaluated in one call."""
        B = len(batch.genomes)
        width = self.n_objectives + (1 if self.constrained else 0)
        keys = [self.key(g, batch) for g in batch.genomes]
        values = np.empty((B, width))
        missing = []
        for i, k in enumerate(keys):
            entry = self._cache.get(k)
            if entry is None:
                missing.append(i)
            else:
                values[i] = entry.mean
        # Duplicates inside a batch are evaluated once (and count as hits).
        first: dict[bytes, int] = {}
        todo = [i for i in missing if first.setdefault(keys[i], i) == i]
        self.requested += B
        self.cache_hits += B - len(todo)
        if todo:
            def store(i: int, row: np.ndarray, seconds: float) -> None:
                self._cache.put(keys[i], row if width > 1 else float(row[0]), genome=batch.genomes[i],
                                seconds=seconds)
                values[i] = row

            self._evaluate_rows(batch, todo, evaluator, store)
        for i in missing:
            values[i] = values[first[keys[i]]]
        F = values[:, : self.n_objectives]
        cv = values[:, -1] if self.constrained else None
        return (F[:, 0] if self.n_objectives == 1 else F), cv

    def _evaluate_rows(self, batch: Batch, todo: list[int], evaluator: EvaluatorLike,
                       store: Callable[[int, np.ndarray, float], None]) -> None:
        """Evaluate the rows ``todo`` of ``batch``: ``store(i, row, seconds)`` for each, with ``row`` its
        fitness (and constraint violation) as float64 [M (+1)] and ``seconds`` its share of the wall
        time, chunk by chunk as the evaluator yields them. ``evaluations`` counts them."""
        sub = batch.subset(todo)
        t0 = time.perf_counter()
        stored = np.zeros(len(todo), dtype=bool)
        # A backend (evoforge.evaluate) yields chunks as its workers finish them: each is stored at
        # once, so a driver killed mid-batch keeps what finished.
        parts = evaluate_in_chunks(evaluator, sub)
        try:
            for idx, out in parts:
                idx = np.asarray(idx, dtype=np.int64).reshape(-1)
                if idx.size == 0:
                    continue
                if stored[idx].any() or np.unique(idx).size != idx.size:
                    raise ValueError("the evaluator returned fitness for a candidate twice")
                rows = [todo[j] for j in idx]
                F, cv = self._check_fitness(sub.subset(idx), *(out if isinstance(out, tuple) else (out, None)),
                                            rows=rows)
                row = np.column_stack([F.reshape(len(idx), -1)] + ([cv] if self.constrained else []))
                t1 = time.perf_counter()
                seconds, t0 = (t1 - t0) / len(idx), t1
                self.evaluations += len(idx)
                for j, i in enumerate(rows):
                    store(i, row[j], seconds)
                stored[idx] = True
        finally:
            if hasattr(parts, "close"):
                parts.close()  # a backend abandons the chunks still running at once
        if not stored.all():
            raise ValueError(f"the evaluator returned no fitness for candidate {todo[int(np.argmin(stored))]}")

    def _check_fitness(self, batch: Batch, fitness: Any, cv: Any,
                       rows: list[int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validated fitness [B] or [B, M] and cv [B]; errors name the candidate's row in the batch
        that was asked (``rows`` maps an evaluated sub-batch back to it)."""
        B = len(batch.genomes)
        row = (lambda i: rows[i]) if rows is not None else (lambda i: i)
        F = np.asarray(fitness, dtype=np.float64)
        want = (B,) if self.n_objectives == 1 else (B, self.n_objectives)
        if F.shape != want and not (self.n_objectives == 1 and F.shape == (B, 1)):
            raise ValueError(f"fitness must have shape {want}, got {F.shape}")
        F = F.reshape(want)
        bad = ~np.isfinite(F.reshape(B, -1)).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"fitness of candidate {row(i)} is not finite ({F[i]}); return a large finite "
                             "penalty instead")
        if cv is None:
            if self.constrained:
                raise ValueError("this engine has constraints: return (fitness, constraint_violation)")
            return F, None
        cv = np.asarray(cv, dtype=np.float64).reshape(-1)
        if cv.shape != (B,):
            raise ValueError(f"constraint_violation must have shape ({B},), got {cv.shape}")
        if not np.isfinite(cv).all():
            raise ValueError(f"constraint_violation of candidate {row(int(np.argmax(~np.isfinite(cv))))} is not finite")
        return F, cv

    # ---- driver ---------------------------------------------------------------------------------

    def run(self, evaluator: EvaluatorLike, *, generations: int | None = None, max_evaluations: int | None = None,
            target: float | None = None, stall_generations: int | None = 100) -> Result:
        """Run until ``generations`` generations in total (a resumed run counts those done before),
        ``max_evaluations`` evaluator calls, or a best fitness <= ``target``. A limit already reached
        (e.g. ``generations=0``) returns at once, with no best yet (see :class:`Result`).

        Cache hits are not evaluations, so a converged search, whose every candidate is found in
        the cache, would never reach ``max_evaluations`` (nor, maybe, ``target``): the run also stops
        once ``stall_generations`` consecutive generations evaluated nothing (counted across
        resumes, as part of the checkpoint; None: never stop for this). ``Result.stopped`` says
        which condition ended the run (``"stalled"`` for this one)."""
        if generations is None and max_evaluations is None and target is None:
            raise ConfigError("give at least one of generations, max_evaluations, target")
        for name, v in (("generations", generations), ("max_evaluations", max_evaluations)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
                raise ConfigError(f"{name} must be an int >= 0 or None, got {v!r}")
        if stall_generations is not None:
            stall_generations = check_int(stall_generations, "stall_generations", 1)
        stopped = None
        if self.progress and self._pbar is None and generations is not None:
            from tqdm.auto import tqdm

            self._pbar = tqdm(total=generations, initial=self.generation, desc=type(self).__name__, leave=False)
        try:
            while True:
                if generations is not None and self.generation >= generations:
                    stopped = "generations"
                elif max_evaluations is not None and self.evaluations >= max_evaluations:
                    stopped = "max_evaluations"
                elif target is not None and self.generation > 0 and _scalar(self.best[1]) <= target:
                    stopped = "target"
                elif stall_generations is not None and self.stalled_generations >= stall_generations:
                    stopped = "stalled"
                    if self._pbar is not None:
                        self._pbar.set_postfix_str(f"stopped: {self.stalled_generations} generations evaluated "
                                                   "nothing (all cached)")
                if stopped is not None:
                    break
                batch = self.ask()
                F, cv = self.evaluate(batch, evaluator)
                self._pending = None
                self._tell(batch, F, cv)
        finally:
            if self._pbar is not None:
                self._pbar.close()
                self._pbar = None
            self._cache.flush()
        genome, fitness = self.best
        return Result(genome, fitness, self.generation, self.evaluations, self.requested, self.cache_hits,
                      list(self.history), self.run_dir, stopped)

    # ---- persistence ----------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = None
        state["_pbar"] = None
        return state

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the checkpoint atomically (run_dir/checkpoint.pkl by default)."""
        p = Path(path) if path is not None else (self.run_dir / CHECKPOINT if self.run_dir else None)
        if p is None:
            raise ConfigError("no run_dir: give a path")
        _atomic_write(p, pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))
        return p

    @classmethod
    def resume(cls, run_dir: str | os.PathLike, *, cache: EvaluationCache | None = None,
               progress: bool | None = None) -> "Engine":
        """The engine of ``run_dir`` as of its last completed generation (its cache reopened)."""
        run_dir = Path(run_dir)
        path = run_dir / CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint in {run_dir} ({path} is missing)")
        try:
            with open(path, "rb") as f:
                engine = pickle.load(f)
        except OSError:
            raise
        except Exception as exc:  # garbage, truncated, or pickled by an incompatible version
            raise CorruptCheckpointError(f"{path} is not a readable evoforge checkpoint "
                                         f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(engine, cls):
            raise TypeError(f"{path} holds a {type(engine).__name__}, not a {cls.__name__}")
        engine.run_dir = run_dir
        engine._cache = cache if cache is not None else EvaluationCache(run_dir)
        engine._pending = None
        if progress is not None:
            engine.progress = progress
        # Drop history lines of a generation whose checkpoint was not written.
        lines = [json.dumps(r, default=_json_default) + "\n" for r in engine.history]
        _atomic_write(run_dir / HISTORY, "".join(lines).encode())
        return engine

    def close(self) -> None:
        self._cache.close()

    # ---- helpers for subclasses -----------------------------------------------------------------

    def stream_seed(self, *parts: int) -> int:
        """A 63-bit seed derived from the run seed and ``parts`` (e.g. generation, stage)."""
        return int.from_bytes(Hasher(self.seed).update(tuple(int(p) for p in parts)).digest()[:8], "little") >> 1


def _scalar(x: Any) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(a.min()) if a.size else float("inf")


def _short(x: Any) -> str:
    if x is None:
        return "-"
    a = np.asarray(x, dtype=np.float64)
    return f"{float(a):.4g}" if a.ndim == 0 else "[" + ", ".join(f"{v:.3g}" for v in a.ravel()[:3]) + "]"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
