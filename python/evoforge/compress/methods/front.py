"""The compression front (:class:`FrontConfig`): a fraction-ladder sparsity database -> the joint
space (:class:`FrontSpace`) -> NSGA-II over every layer's (share, bit-width), seeded with every uniform
configuration -> the search's front and the uniform configurations re-scored on held-out tokens, the
points non-dominated there kept -> ``front.json`` / ``.csv`` / ``.png``.

Objectives (minimised, in the config's order): ``kl`` on the calibration tokens (KLFitness on the
combined levels, prefix reuse across candidates), ``bytes`` (the exact packed bytes of the linear
layers), ``latency`` (a per-layer table timed on this machine plus a measured fixed part). The run
resumes from its checkpoint; evaluations are cached in the run directory, so a kill loses at most
the candidates of the batch in flight.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from ... import pareto
from ...errors import ConfigError
from ...search import NSGA2, Screen
from ...search.protocol import Batch
from ..config import FrontConfig
from ..fitness import KLFitness
from ..front_result import FrontResult, write_front
from ..front_space import FrontSpace
from ..registry import register
from ..run import Run

__all__ = ["FrontObjectives", "front"]


class FrontObjectives:
    """Evaluator: the objectives of front genomes [B, G] -> float64 [B, M].

    ``kl``: a KLFitness over ``space`` (None when ``kl`` is not an objective); ``latency``: seconds
    per layer and combined level, float64 [L, n_levels], and the fixed seconds (None without
    ``latency``)."""

    def __init__(self, space: FrontSpace, objectives: list[str], kl: KLFitness | None = None,
                 latency: tuple[np.ndarray, float] | None = None) -> None:
        if "kl" in objectives and kl is None or "latency" in objectives and latency is None:
            raise ConfigError("FrontObjectives needs a KLFitness for kl and a latency table for latency")
        self.space, self.objectives, self.kl, self.latency = space, list(objectives), kl, latency
        self.seconds = 0.0  # spent in evaluate (the rest of a search is the engine's own work)

    def latency_of(self, genomes: Any) -> np.ndarray:
        table, fixed = self.latency
        return table[np.arange(self.space.n_layers)[None, :], self.space.combined(genomes)].sum(axis=1) + fixed

    def evaluate(self, genomes: Any, batch: Any = None) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self._evaluate(self.space.check(genomes))
        finally:
            self.seconds += time.perf_counter() - t0

    def _evaluate(self, g: np.ndarray) -> np.ndarray:
        cols = []
        for o in self.objectives:
            if o == "kl":
                cols.append(np.asarray(self.kl.evaluate(self.space.combined(g), None), dtype=np.float64))
            elif o == "bytes":
                cols.append(self.space.bytes(g).astype(np.float64))
            else:
                cols.append(self.latency_of(g))
        return np.stack(cols, axis=1)


def _latency_table(run: Run, space: FrontSpace, tokens: int) -> tuple[np.ndarray, float]:
    """Seconds [L, n_levels] of every layer at every combined level, from this machine's cached table (the
    missing entries timed now), and the measured fixed part of a forward at ``tokens`` tokens
    (1: a decode step after 16 cached tokens; more: a prefill without a cache)."""
    from ..latency import LatencyTable, fixed_seconds

    table = LatencyTable.load(device=space.device)
    specs = {(*space.shapes[i], repr(space.spec(i, j))): (*space.shapes[i], space.spec(i, j))
             for i in range(space.n_layers) for j in range(space.n_levels(i))}
    table.measure(list(specs.values()), tokens=tokens, progress=run.config.progress)
    fixed = fixed_seconds(run.adapter.model, table, tokens=tokens, context=16 if tokens == 1 else 0)
    table.save()
    lat = np.array([[table.seconds(*space.shapes[i], space.spec(i, j), tokens) for j in range(space.n_levels(i))]
                    for i in range(space.n_layers)], dtype=np.float64)
    return lat, float(fixed)


def _initial(space: FrontSpace, pop_size: int, seed: int) -> np.ndarray:
    """Every uniform configuration, then random genomes up to ``pop_size``."""
    uni = space.uniform()
    if len(uni) >= pop_size:
        return uni
    rng = np.random.default_rng([seed, 0x66726F6E74])
    extra = rng.integers(space.lower, space.upper.astype(np.int64) + 1, size=(pop_size - len(uni), len(space.lower)))
    return np.concatenate([uni, extra.astype(np.int32)])


def _points(space: FrontSpace, objectives: list[str], genomes: np.ndarray, F: np.ndarray, held: np.ndarray) -> list:
    out = []
    for g, f, h in zip(genomes, F, held):
        d = space.describe(g)
        out.append({"genome": [int(v) for v in g], "sparsity": d["sparsity"], "bits": d["bits"],
                    **({"dropped": d["dropped"]} if space.depth else {}),
                    "search": {o: float(v) for o, v in zip(objectives, f)},
                    "heldout": {o: float(v) for o, v in zip(objectives, h)}})
    return out


@register(FrontConfig)
def front(config: FrontConfig, run: Run) -> FrontResult:
    fractions, bits = config.ladders()
    db = run.database("sparsity", fractions=list(fractions))
    if [float(f) for f in db.params.get("fractions", [])] != list(fractions):
        raise ConfigError(f"the database {str(db.path)!r} holds the shares {db.params.get('fractions')}, not the "
                          f"front's {list(fractions)}")
    p = next(run.adapter.model.parameters())
    if config.depth:  # a sub-block is dropped by zeroing its layers, exact only without output biases
        biased = [r.name for r in run.adapter.linear_layers() if r.kind in ("o", "down")
                  and getattr(r.module, "bias", None) is not None]
        if biased:
            raise ConfigError(f"space {config.space!r}: dropping sub-blocks needs output projections without biases; "
                              f"{biased[0]} has one")
    space = FrontSpace(db, bits, group_size=config.group_size, symmetric=config.symmetric, depth=config.depth,
                       device=p.device, dtype=p.dtype)
    objectives = list(config.objectives)
    t0 = time.perf_counter()
    latency = _latency_table(run, space, int(config.latency_tokens)) if "latency" in objectives else None
    run.times["latency_table"] = time.perf_counter() - t0
    kl = None
    if "kl" in objectives:
        kl = KLFitness(run.adapter, space, run.calibration, batch_size=config.batch_size, top_k=run.top_k,
                       teacher_dir=run.teacher_dir, compute_dtype=config.compute_dtype)
    evaluator = FrontObjectives(space, objectives, kl, latency)
    rd = run.run_dir
    t0 = time.perf_counter()
    if rd is not None and (rd / "checkpoint.pkl").is_file():
        engine = NSGA2.resume(rd, progress=config.progress)
        if config.progress:
            print(f"evoforge: resuming {rd} from generation {engine.generation} (of {int(config.generations)})",
                  file=sys.stderr)
    else:
        engine = NSGA2(space.lower, space.upper, n_objectives=len(objectives), pop_size=int(config.pop_size),
                       n_offspring=int(config.offspring), initial=_initial(space, int(config.pop_size), config.seed),
                       seed=int(config.seed), run_dir=rd, task=f"front:{run.fingerprint}:{db.method}:{config.space}",
                       progress=config.progress, screen=Screen(int(config.screen)) if config.screen > 1 else None)
    uni = space.uniform()
    try:
        res = engine.run(evaluator, generations=int(config.generations))
        run.times["search"] = time.perf_counter() - t0
        run.times["search_evaluate"] = evaluator.seconds  # the engine's own work: search - search_evaluate
        # the uniform configurations were the first population: their scores come from the cache
        uni_F = np.asarray(engine.evaluate(Batch(uni, generation=engine.generation), evaluator)[0]).reshape(
            len(uni), len(objectives))
    finally:
        engine.close()
    # the final front: chosen on held-out tokens from the search's front and every uniform configuration
    # (calibration KL ranks close candidates noisily; the user picks by held-out quality)
    genomes, F = engine.best
    genomes, first = np.unique(np.concatenate([genomes, uni]), axis=0, return_index=True)
    F = np.concatenate([F, uni_F])[first]
    t0 = time.perf_counter()
    held_eval = FrontObjectives(space, objectives, None if kl is None else KLFitness(
        run.adapter, space, run.heldout, batch_size=config.batch_size, top_k=run.top_k), latency)
    held = held_eval.evaluate(genomes)
    run.times["heldout"] = time.perf_counter() - t0
    row = {g.tobytes(): i for i, g in enumerate(genomes)}
    uniform = _points(space, objectives, uni, uni_F, held[[row[g.tobytes()] for g in uni]])
    for u, (s, b) in zip(uniform, [(s, b) for s in range(space.n_s) for b in range(space.n_b)]):
        u["uniform"] = [space.fractions[s], space.bits[b]]
    keep = np.flatnonzero(pareto.nondominated_rank(held) == 0)
    keep = keep[np.lexsort(held[keep].T[::-1])]  # by the first held-out objective, ties by the next
    genomes, F, held = genomes[keep], F[keep], held[keep]
    result = FrontResult(space=config.space, objectives=objectives, layers=list(space.names),
                         points=_points(space, objectives, genomes, F, held), uniform=uniform,
                         fractions=list(space.fractions), bits=list(space.bits), group_size=space.group_size,
                         symmetric=space.symmetric, generations=int(res.generations),
                         evaluations=int(res.evaluations), history=list(res.history),
                         run_dir=None if rd is None else str(rd), db_path=str(db.path.resolve()),
                         model=run.factory.model if isinstance(run.factory.model, str) else None,
                         latency_tokens=int(config.latency_tokens),
                         fixed_seconds=None if latency is None else latency[1], times=run.times)
    result.bind(run.adapter, space)
    if rd is not None:
        write_front(result, rd)
    return result
