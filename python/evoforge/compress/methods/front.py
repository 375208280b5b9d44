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

import time
from typing import Any

import numpy as np

from ...errors import ConfigError
from ..config import FrontConfig
from ..fitness import KLFitness
from ..front_result import FrontResult, write_front
from ..front_search import Objectives, front_search
from ..front_space import FrontSpace
from ..registry import register
from ..run import Run

__all__ = ["FrontObjectives", "front", "latency_tables"]


class FrontObjectives(Objectives):
    """Evaluator: the objectives of front genomes [B, G] -> float64 [B, M].

    ``kl``: a KLFitness over ``space`` (None when ``kl`` is not an objective); ``latency``: seconds
    per layer and combined level, float64 [L, n_levels], and the fixed seconds (None without
    ``latency``)."""

    def __init__(self, space: FrontSpace, objectives: list[str], kl: KLFitness | None = None,
                 latency: tuple[np.ndarray, float] | None = None) -> None:
        if "kl" in objectives and kl is None or "latency" in objectives and latency is None:
            raise ConfigError("FrontObjectives needs a KLFitness for kl and a latency table for latency")
        self.space, self.kl, self.latency = space, kl, latency
        super().__init__(objectives, space.check, {
            "kl": lambda g: self.kl.evaluate(space.combined(g), None),
            "bytes": space.bytes,
            "latency": self.latency_of})

    def latency_of(self, genomes: Any) -> np.ndarray:
        table, fixed = self.latency[:2]
        return table[np.arange(self.space.n_layers)[None, :], self.space.combined(genomes)].sum(axis=1) + fixed


def latency_tables(space: FrontSpace, model: Any, tokens: tuple[int, ...], *, progress: bool = False,
                   ) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Per token count of ``tokens`` (1: a decode step after 16 cached tokens; more: a prefill):
    seconds [L, n_levels] of every layer at every combined level inside ``model`` (this machine's
    cached table, the missing entries timed now, times the level's in-model factor), the fixed part
    of a forward, and the factors [n_levels] (:mod:`evoforge.compress.latency_calibration`; the drop
    level: 1). Each level's model is packed once for all token counts."""
    from ..latency import LatencyTable
    from ..latency_calibration import calibrate_levels

    table = LatencyTable.load(device=space.device)
    J = space.n_levels(0)
    kept = [j for j in range(J) if j != space.drop_level]
    levels = [{space.names[i]: (*space.shapes[i], space.spec(i, j)) for i in range(space.n_layers)} for j in kept]
    table.measure([s for lv in levels for s in lv.values()], tokens=list(tokens), progress=progress)
    factors, fixed = calibrate_levels(model, levels, table, tokens=list(tokens))
    table.save()
    out = []
    for k, t in enumerate(tokens):
        f = np.ones(J)
        f[kept] = factors[k]
        lat = np.array([[table.seconds(*space.shapes[i], space.spec(i, j), t) * f[j] for j in range(J)]
                        for i in range(space.n_layers)], dtype=np.float64)
        out.append((lat, float(fixed[k]), f))
    return out


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
    latency = None
    if "latency" in objectives:
        (latency,) = latency_tables(space, run.adapter.model, (int(config.latency_tokens),),
                                    progress=config.progress)
    run.times["latency_table"] = time.perf_counter() - t0
    kl = None
    if "kl" in objectives:
        kl = KLFitness(run.adapter, space, run.calibration, batch_size=config.batch_size, top_k=run.top_k,
                       teacher_dir=run.teacher_dir, compute_dtype=config.compute_dtype)
    evaluator = FrontObjectives(space, objectives, kl, latency)
    held_eval = FrontObjectives(space, objectives, None if kl is None else KLFitness(
        run.adapter, space, run.heldout, batch_size=config.batch_size, top_k=run.top_k), latency)
    uni = space.uniform()
    fs = front_search(run, lower=space.lower, upper=space.upper, uniform=uni, evaluator=evaluator,
                      heldout=held_eval, task=f"front:{run.fingerprint}:{db.method}:{config.space}")
    res = fs.result
    uniform = _points(space, objectives, uni, fs.uniform_F, fs.uniform_held)
    for u, (s, b) in zip(uniform, [(s, b) for s in range(space.n_s) for b in range(space.n_b)]):
        u["uniform"] = [space.fractions[s], space.bits[b]]
        u["label"] = f"{space.fractions[s]:g} / {space.bits[b]} bits"
    rd = run.run_dir
    result = FrontResult(space=config.space, objectives=objectives, layers=list(space.names),
                         points=_points(space, objectives, fs.genomes, fs.F, fs.held), uniform=uniform,
                         fractions=list(space.fractions), bits=list(space.bits), group_size=space.group_size,
                         symmetric=space.symmetric, generations=int(res.generations),
                         evaluations=int(res.evaluations), history=list(res.history),
                         run_dir=None if rd is None else str(rd), db_path=str(db.path.resolve()),
                         model=run.factory.model if isinstance(run.factory.model, str) else None,
                         latency_tokens=int(config.latency_tokens),
                         fixed_seconds=None if latency is None else latency[1], times=run.times,
                         latency_factors=None if latency is None else latency[2].tolist())
    result.bind(run.adapter, space)
    if rd is not None:
        write_front(result, rd)
    return result
