"""CMA-ES through evoforge's engine interface: the ``cma`` library (Hansen's pycma, a well-kept
peer) does the strategy; this engine gives it ask/tell with :class:`Batch`, the evaluation cache,
checkpoint and resume, backends, and an asynchronous mode without a generation barrier.

Symbols: L genes (continuous), lambda the population size.

Determinism: pycma samples from the engine's own NumPy generator, seeded from ``(seed,
generation, draw)`` before every draw (NumPy's global generator, which pycma seeds at start, is
restored afterwards), so a run, and a run resumed from its checkpoint, is a pure function of its
seed in the synchronous mode.

Asynchronous mode (:meth:`CMAES.run_async`): each worker of a backend takes the next candidate
the moment it finishes one. The strategy is updated every time lambda results have arrived, with
those results, in arrival order; a candidate still running when the update happens was drawn from
the previous distribution and is told with the next update (a stale sample, the usual price of
asynchronous evolution strategies). The run is then reproducible only up to the workers' timing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .engine import MAX_POPULATION, Engine, Result
from .protocol import Batch

__all__ = ["CMAES"]


def _cma() -> Any:
    try:
        import cma
    except ImportError as e:  # an optional dependency
        raise ImportError("CMAES needs the cma package: pip install cma (or evoforge[merge])") from e
    return cma


class CMAES(Engine):
    """CMA-ES over continuous genomes [L] within ``lower`` / ``upper`` (scalars or [L]).

    x0 : float [L] -- the initial mean; sigma0 : initial step size (in the units of the genes)
    pop_size : lambda (default pycma's 4 + 3 ln L); options : more pycma options (``CMAOptions``)
    Genomes asked are float64 [lambda, L] inside the bounds; fitness [lambda], minimised."""

    def __init__(self, x0: Any, sigma0: float, *, lower: Any = None, upper: Any = None, pop_size: int | None = None,
                 options: dict | None = None, seed: int = 0, run_dir: Any = None, cache: Any = None, task: str = "",
                 progress: bool = True) -> None:
        super().__init__(seed=seed, run_dir=run_dir, cache=cache, task=task, progress=progress)
        x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        if x0.size < 1 or not np.isfinite(x0).all():
            raise ConfigError(f"x0 must be a non-empty finite vector, got {x0!r}")
        if not (isinstance(sigma0, (int, float)) and np.isfinite(sigma0) and sigma0 > 0):
            raise ConfigError(f"sigma0 must be a positive number, got {sigma0!r}")
        lo = None if lower is None else np.broadcast_to(np.asarray(lower, np.float64), x0.shape).copy()
        hi = None if upper is None else np.broadcast_to(np.asarray(upper, np.float64), x0.shape).copy()
        if lo is not None and hi is not None and not (lo < hi).all():
            raise ConfigError("lower must be below upper in every gene")
        if (lo is not None and (x0 < lo).any()) or (hi is not None and (x0 > hi).any()):
            raise ConfigError("x0 must lie within the bounds")
        opts = {"verbose": -9, "seed": int(self.seed % (2**31 - 2)) + 1, "bounds": [
            None if lo is None else lo.tolist(), None if hi is None else hi.tolist()]}
        if pop_size is not None:
            if isinstance(pop_size, bool) or not isinstance(pop_size, (int, np.integer)) \
                    or not 2 <= pop_size <= MAX_POPULATION:
                raise ConfigError(f"pop_size must be an int in [2, {MAX_POPULATION}], got {pop_size!r}")
            opts["popsize"] = int(pop_size)
        opts.update(options or {})
        # pycma draws from opts["randn"]; its default, NumPy's global generator, is pickled as a copy
        # (a bound method), so a resumed run would draw from a generator no longer seeded here. An
        # own generator, pickled once with the engine, keeps the draws seeded after a resume.
        self._rng = np.random.RandomState(0)
        opts["randn"] = self._rng.randn
        self.lower, self.upper = lo, hi
        self.n_genes = int(x0.size)
        self.es = self._seeded(lambda: _cma().CMAEvolutionStrategy(x0, float(sigma0), opts), 0, 0)
        self.pop_size = int(self.es.popsize)
        self._best: tuple[np.ndarray | None, float | None] = (None, None)
        self._draws = 0  # draws from the current distribution (the asynchronous mode draws again)
        self._told: list[tuple[np.ndarray, float]] = []  # asynchronous results waiting for an update

    # ---- the strategy, with NumPy's global generator seeded around it ---------------------------

    def _seeded(self, fn: Any, *parts: int) -> Any:
        state = np.random.get_state()
        seed = self.stream_seed(*parts) % 2**32
        np.random.seed(seed)  # anything of pycma's that still uses the global generator
        self._rng.seed(seed)
        try:
            return fn()
        finally:
            np.random.set_state(state)

    def _draw(self, n: int | None = None) -> np.ndarray:
        self._draws += 1
        X = self._seeded(lambda: self.es.ask() if n is None else self.es.ask(n), self.generation, self._draws)
        X = np.asarray(X, dtype=np.float64).reshape(-1, self.n_genes)
        if self.lower is not None:
            X = np.maximum(X, self.lower)
        if self.upper is not None:
            X = np.minimum(X, self.upper)
        return X

    def _update(self, X: np.ndarray, F: np.ndarray, **record: Any) -> None:
        self.es.tell(list(X), [float(f) for f in F])
        i = int(np.argmin(F))
        if self._best[1] is None or F[i] < self._best[1]:
            self._best = (X[i].copy(), float(F[i]))
        self._draws = 0
        self._end_generation(best_fitness=self._best[1], mean_fitness=float(np.mean(F)),
                             sigma=float(self.es.sigma), **record)

    # ---- synchronous ask / tell -----------------------------------------------------------------

    def _ask(self) -> Batch:
        return Batch(self._draw(), generation=self.generation)

    def _tell(self, batch: Batch, F: np.ndarray, cv: np.ndarray | None) -> None:
        self._update(batch.genomes, F)

    @property
    def best(self) -> tuple[np.ndarray | None, Any]:
        return self._best

    @property
    def mean(self) -> np.ndarray:
        """The distribution's current mean [L] (the usual answer of CMA-ES besides the best seen)."""
        return np.asarray(self.es.mean, dtype=np.float64).copy()

    # ---- asynchronous mode ----------------------------------------------------------------------

    def run_async(self, backend: Any, *, max_evaluations: int) -> Result:
        """Evaluate until ``max_evaluations`` evaluator calls in all (a resumed run counts earlier
        ones), each worker of ``backend`` taking the next candidate as soon as it is free (its
        ``evaluate_stream``; see :class:`~evoforge.search.protocol.Backend`). Every lambda results
        update the strategy (a generation: checkpoint and history as in the synchronous mode).
        Cached candidates are answered from the cache without a worker."""
        if isinstance(max_evaluations, bool) or not isinstance(max_evaluations, (int, np.integer)) \
                or max_evaluations < 0:
            raise ConfigError(f"max_evaluations must be an int >= 0, got {max_evaluations!r}")
        stream = getattr(backend, "evaluate_stream", None)
        if not callable(stream):
            raise ConfigError(f"run_async needs a backend with evaluate_stream (evoforge.evaluate), got "
                              f"{type(backend).__name__}")
        queue: list[np.ndarray] = []
        started = 0  # candidates handed to a worker and not yet back

        def next_candidates() -> np.ndarray | None:
            nonlocal started, queue
            while True:
                if self.evaluations + started >= max_evaluations:
                    return None
                if not queue:
                    queue = list(self._draw())
                x = queue.pop(0)
                hit = self._cache.get(self.key(x, Batch(x[None], generation=0)))
                if hit is not None:  # resumed: found without a worker
                    self.requested += 1
                    self.cache_hits += 1
                    arrived(x, float(hit.mean))
                    continue
                started += 1
                return x[None]

        def arrived(x: np.ndarray, f: float) -> None:
            nonlocal queue
            self._told.append((x, f))
            if len(self._told) >= self.pop_size:
                X = np.array([t[0] for t in self._told[: self.pop_size]])
                F = np.array([t[1] for t in self._told[: self.pop_size]])
                self._told = self._told[self.pop_size:]
                self._update(X, F, mode="async")
                queue = []  # not yet started: drawn again from the updated distribution

        pbar = None
        if self.progress:
            from tqdm.auto import tqdm

            pbar = tqdm(total=max_evaluations, initial=min(self.evaluations, max_evaluations), desc="CMAES async",
                        leave=False)
        try:
            for X, out in stream(next_candidates, Batch(np.zeros((0, self.n_genes)), generation=0)):
                if pbar is not None:
                    pbar.update(len(X))
                F, _ = self._check_fitness(Batch(X), *(out if isinstance(out, tuple) else (out, None)))
                for x, f in zip(X, np.asarray(F, dtype=np.float64).reshape(-1)):
                    started -= 1
                    self.evaluations += 1
                    self.requested += 1
                    self._cache.put(self.key(x, Batch(x[None], generation=0)), float(f), genome=x)
                    arrived(x, float(f))
        finally:
            if pbar is not None:
                pbar.close()
            self._cache.flush()
        genome, fitness = self.best
        return Result(genome, fitness, self.generation, self.evaluations, self.requested, self.cache_hits,
                      list(self.history), self.run_dir, "max_evaluations")
