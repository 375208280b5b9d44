"""Sub-network search (:class:`SubnetConfig`): heads and neurons ordered by importance on the
calibration tokens -> the space of per-block kept key-value groups and MLP widths
(:class:`SubnetSpace`) -> NSGA-II seeded with every uniform sub-network -> the last front and the
uniform sub-networks re-scored on held-out tokens, the points non-dominated there kept ->
``front.json`` / ``.csv`` / ``.png`` (:func:`~evoforge.compress.front_result.write_front`).

Objectives (minimised, in the config's order): ``kl`` on the calibration tokens (KLFitness with
the space as its level provider: removed heads' and neurons' output columns zeroed, which is exactly
the cut model) or, for an encoder, ``cosine`` (EmbeddingFitness: the pooled sentence embeddings), ``params`` (exact), ``latency`` (a table of the dense linear layers at every width,
timed on this machine, plus the measured rest of a forward). Resumable, as every front.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from ...errors import ConfigError
from ..config import SubnetConfig
from ..encoders import EmbeddingFitness, find_pooling
from ..fitness import KLFitness
from ..front_result import FrontResult, write_front
from ..front_search import Objectives, front_search
from ..registry import register
from ..run import Run
from ..subnet_model import IMPORTANCE_FILE
from ..subnet_space import Importance, SubnetSpace, importance

__all__ = ["subnet", "subnet_latency"]


def subnet_latency(space: SubnetSpace, model: object, *, tokens: int = 1, progress: bool = False,
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """Seconds of one block's attention at 0 .. G kept groups (float64 [G + 1]), of its MLP at each
    width (float64 [W]), from this machine's cached table of dense linear layers (missing entries
    timed now), and the fixed part: the dense model's measured forward minus the table's sum over
    its layers. ``tokens``: 1 is a decode step after 16 cached tokens, more a prefill."""
    from ..latency import LatencyTable, model_seconds

    p = next(model.parameters())
    table = LatencyTable.load(device=p.device)
    attn = [space.shapes(a, 0)[0] for a in range(space.G + 1)]
    mlp = [space.shapes(0, int(n))[1] for n in space.neurons]
    table.measure([(o, i, None) for shapes in attn + mlp for o, i in shapes], tokens=tokens, progress=progress)
    table.save()
    attn_s = np.array([sum(table.seconds(o, i, None, tokens) for o, i in s) for s in attn])
    mlp_s = np.array([sum(table.seconds(o, i, None, tokens) for o, i in s) for s in mlp])
    whole = model_seconds(model, tokens=tokens, context=16 if tokens == 1 else 0)
    return attn_s, mlp_s, max(0.0, whole - space.N * (attn_s[-1] + mlp_s[-1]))


def _importance(run: Run) -> Importance:
    """From the run directory (a resumed run cuts the same heads), else measured and kept there."""
    path = None if run.run_dir is None else run.run_dir / IMPORTANCE_FILE
    if path is not None and path.is_file():
        return Importance.from_json(json.loads(path.read_text()))
    imp = importance(run.adapter, run.calibration, batch_size=run.config.batch_size)
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(imp.to_json()))
        os.replace(tmp, path)
    return imp


def _pooling(config: SubnetConfig, run: Run) -> str:
    if config.pooling != "auto":
        return config.pooling
    found = find_pooling(run.adapter.model)
    if found is None:
        raise ConfigError("the encoder names no pooling (no sentence-transformers modules.json with a Pooling "
                          "module where it was loaded from): give pooling='mean', 'cls' or 'max' (--pooling)")
    return found


def _points(space: SubnetSpace, objectives: list[str], genomes: np.ndarray, F: np.ndarray, held: np.ndarray, *,
            uniform: bool = False) -> list[dict]:
    """FrontResult points; ``uniform``: uniform sub-networks, labelled by their heads and neurons."""
    out = []
    for g, f, h in zip(genomes, F, held):
        p = {"genome": [int(v) for v in g], **space.describe(g), "search": {o: float(v) for o, v in zip(objectives, f)},
             "heldout": {o: float(v) for o, v in zip(objectives, h)}}
        if uniform:
            p["uniform"] = [int(g[0]) * space.per_group, int(space.neurons[g[space.N]])]
            p["label"] = f"{p['uniform'][0]} heads / {p['uniform'][1]} neurons"
        out.append(p)
    return out


class _WithinBudget:
    """Evaluator of the single-budget search: the quality objective of genomes [B, 2N] -> float64
    [B], +inf (not evaluated) for a sub-network over ``budget`` parameters."""

    def __init__(self, space: SubnetSpace, quality: Objectives, budget: float) -> None:
        self.space, self.quality, self.budget = space, quality, budget

    def evaluate(self, genomes: object, batch: object = None) -> np.ndarray:
        g = self.space.check(genomes)
        out = np.full(len(g), np.inf)
        ok = self.space.params(g) <= self.budget
        if ok.any():
            out[ok] = self.quality.evaluate(g[ok], batch)[:, 0]
        return out


def _single_budget(config: SubnetConfig, run: Run, space: SubnetSpace, objectives_on: object) -> FrontResult:
    """One sub-network with at most ``target`` of the blocks' parameters (plus the rest of the
    model): (1 + lambda) search from the best uniform sub-network within the budget, by level
    switches that keep the parameter count within 2% of the blocks' of its parent's (a child over
    the budget scores +inf, unevaluated)."""
    from ...search import LevelSwitch, OnePlusLambda, Screen
    from ...search.protocol import Batch

    quality_name = "kl" if "kl" in config.objectives else "cosine"
    names = [quality_name, "params"]
    budget = space.params_rest + float(config.target) * space.block_params()
    uni = space.uniform()
    feasible = uni[space.params(uni) <= budget]
    if not len(feasible):
        raise ConfigError(f"target {config.target}: no uniform sub-network has so few parameters; the smallest keeps "
                          f"{(space.params(uni).min() - space.params_rest) / space.block_params():.3f} of the blocks'")
    lo, hi, N = space.lower, space.upper, space.N
    costs = ([[float(k * space.params_per_group) for k in range(lo[i], hi[i] + 1)] for i in range(N)]
             + [[float(space.neurons[k] * space.params_per_neuron) for k in range(lo[i], hi[i] + 1)]
                for i in range(N, 2 * N)])
    calib = objectives_on(run.calibration, run.teacher_dir)
    calib.objectives = [quality_name]
    evaluator = _WithinBudget(space, calib, budget)
    rd = run.run_dir
    t0 = time.perf_counter()
    if rd is not None and (rd / "checkpoint.pkl").is_file():
        engine = OnePlusLambda.resume(rd, progress=config.progress)
    else:
        engine = OnePlusLambda(feasible, LevelSwitch(config.max_switches, costs=costs,
                                                     budget_tol=0.02 * space.block_params()),
                               lower=lo, upper=hi, n_offspring=int(config.offspring), seed=int(config.seed),
                               run_dir=rd, task=f"subnet-budget:{run.fingerprint}:{config.target}",
                               progress=config.progress,
                               screen=Screen(int(config.screen)) if config.screen > 1 else None)
    try:
        res = engine.run(evaluator, generations=int(config.generations))
        best = np.asarray(res.best_genome, dtype=np.int32)[None]
        both = np.concatenate([best, feasible])
        # the starting points and the best were evaluated: their scores come from the cache
        q = np.asarray(engine.evaluate(Batch(both, generation=engine.generation), evaluator)[0], dtype=np.float64)
    finally:
        engine.close()
    run.times["search"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    held = objectives_on(run.heldout, None)
    held.objectives = names
    H = held.evaluate(both)
    run.times["heldout"] = time.perf_counter() - t0
    F = np.stack([q.reshape(-1), space.params(both)], axis=1)
    uniform = _points(space, names, feasible, F[1:], H[1:], uniform=True)
    return _finish(run, space, names, _points(space, names, best, F[:1], H[:1]), uniform, res,
                   note=f"single budget: at most {budget / 1e6:.3f}M parameters ({float(config.target):g} of the "
                        f"blocks' {space.block_params() / 1e6:.2f}M, plus the rest of the model)")


def _finish(run: Run, space: SubnetSpace, objectives: list[str], points: list[dict], uniform: list[dict],
            res: object, *, note: str, latency: tuple | None = None) -> FrontResult:
    """The FrontResult of a sub-network search, bound to its space, written to the run directory."""
    rd = run.run_dir
    result = FrontResult(space="heads+mlp" if space.attention else "mlp", objectives=objectives,
                         layers=[f"block {b}" for b in range(space.N)], points=points, uniform=uniform,
                         generations=int(res.generations), evaluations=int(res.evaluations),
                         history=list(res.history), run_dir=None if rd is None else str(rd),
                         model=run.factory.model if isinstance(run.factory.model, str) else None,
                         latency_tokens=int(run.config.latency_tokens),
                         fixed_seconds=None if latency is None else latency[2], times=run.times, method="subnet",
                         columns=["heads", "mlp"], widths=list(space.widths), notes=[note])
    result.bind(run.adapter, space)
    if rd is not None:
        write_front(result, rd)
    return result


@register(SubnetConfig)
def subnet(config: SubnetConfig, run: Run) -> FrontResult:
    t0 = time.perf_counter()
    space = SubnetSpace(run.adapter, _importance(run), config.widths, attention=config.attention)
    run.times["importance"] = time.perf_counter() - t0
    objectives = list(config.objectives)
    t0 = time.perf_counter()
    latency = None
    if "latency" in objectives:
        latency = subnet_latency(space, run.adapter.model, tokens=int(config.latency_tokens),
                                 progress=bool(config.progress))
    run.times["latency_table"] = time.perf_counter() - t0

    def latency_of(g: np.ndarray) -> np.ndarray:
        attn_s, mlp_s, fixed = latency
        return attn_s[g[:, :space.N]].sum(axis=1) + mlp_s[g[:, space.N:]].sum(axis=1) + fixed

    pooling = _pooling(config, run) if "cosine" in objectives else None

    def objectives_on(tokens: object, teacher_dir: object) -> Objectives:
        quality = None
        if "kl" in objectives:
            quality = KLFitness(run.adapter, space, tokens, batch_size=config.batch_size, top_k=run.top_k,
                                teacher_dir=teacher_dir,
                                compute_dtype=config.compute_dtype if teacher_dir is not None else None)
        elif "cosine" in objectives:
            quality = EmbeddingFitness(run.adapter, space, tokens, pooling=pooling, batch_size=config.batch_size)
        score = (lambda g: quality.evaluate(space.combined(g), None))
        return Objectives(objectives, space.check, {"kl": score, "cosine": score, "params": space.params,
                                                    "latency": latency_of})

    if float(config.target) > 0:
        return _single_budget(config, run, space, objectives_on)
    uni = space.uniform()
    fs = front_search(run, lower=space.lower, upper=space.upper, uniform=uni,
                      evaluator=objectives_on(run.calibration, run.teacher_dir),
                      heldout=objectives_on(run.heldout, None),
                      task=f"subnet:{run.fingerprint}:{list(space.widths)}:{space.attention}")
    uniform = _points(space, objectives, uni, fs.uniform_F, fs.uniform_held, uniform=True)
    return _finish(run, space, objectives, _points(space, objectives, fs.genomes, fs.F, fs.held), uniform,
                   fs.result, latency=latency,
                   note=f"{space.params_full / 1e6:.2f}M parameters in the full model, "
                        f"{space.block_params() / 1e6:.2f}M of them in the blocks' attention and MLPs")
