"""``merge(base, models, tasks, config)``: load, measure the baselines (the base, each expert, a
uniform grid of the method), search, re-score the result on held-out windows, write the run
directory. Resumable: a run directory with a checkpoint continues where it stopped.

Symbols: K models to merge, T tasks, G layer groups.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import ConfigError
from .config import MergeConfig
from .merger import Merger, as_float32
from .recipe import METHODS, Recipe
from .result import MergeResult, write_run
from .space import MergeEvaluator, ParamSpace
from .tasks import Task, TaskData, prepare_tasks, task_losses

__all__ = ["merge", "load_models", "CONFIG_FILE", "BASELINES_FILE"]

CONFIG_FILE = "merge.json"
BASELINES_FILE = "baselines.json"


def _load_one(x: Any) -> tuple[nn.Module, Any]:
    if isinstance(x, nn.Module):
        return as_float32(x).eval(), None
    if not isinstance(x, (str, os.PathLike)):
        raise ConfigError(f"a model is an nn.Module or a path, got {type(x).__name__}")
    from ..compress.models import load_model

    p = str(x)
    if os.sep in p and not Path(p).exists():  # a path, not a model's name such as smollm2-135m
        raise FileNotFoundError(f"model not found: {p!r}")
    return load_model(p)


def load_models(base: Any, models: list[Any]) -> tuple[nn.Module, list[nn.Module], Any]:
    """(base, experts, the base's tokenizer or None); paths load in float32 (eval mode)."""
    if not isinstance(models, (list, tuple)) or not models:
        raise ConfigError("give at least one model to merge")
    b, tok = _load_one(base)
    return b, [_load_one(m)[0] for m in models], tok


def _tokenizer(config: MergeConfig, given: Any, loaded: Any) -> Any:
    if given is not None:
        return given
    if config.tokenizer:
        from ..compress.llama2c import load_tokenizer

        return load_tokenizer(config.tokenizer)
    return loaded


def _names(xs: list[Any], prefix: str) -> list[str]:
    return [str(x) if isinstance(x, (str, os.PathLike)) else f"{prefix}{i}" for i, x in enumerate(xs)]


def _build(base: Any, models: list[Any], tasks: list[Task], config: MergeConfig, tokenizer: Any
           ) -> tuple[nn.Module, list[nn.Module], list[TaskData]]:
    b, experts, tok = load_models(base, models)
    data = prepare_tasks(tasks, _tokenizer(config, tokenizer, tok), n_search=config.n_search,
                         n_heldout=config.n_heldout, seq_len=config.seq_len, seed=config.seed,
                         load=lambda p: _load_one(p)[0])
    return b, experts, data


def _space(config: MergeConfig, merger: Merger) -> ParamSpace:
    return ParamSpace(config.method, merger.n_groups, merger.n_models, config.weight_range, config.density_range,
                      config.seed, merger.group_names)


def _default_groups(config: MergeConfig, model: nn.Module) -> int | None:
    if config.groups is not None:
        return config.groups
    from .merger import block_of

    blocks = [b for b in (block_of(n) for n, _ in model.named_parameters()) if b is not None]
    return min(8, max(blocks) + 1) if blocks else None


def worker_evaluator(base: Any, models: list[Any], tasks: list[Task], config_json: dict, tokenizer: Any = None
                     ) -> MergeEvaluator:
    """A process or Ray worker's evaluator: its own resident model (a module-level function, so
    that ``functools.partial`` of it pickles)."""
    config = MergeConfig.from_json(config_json)
    b, experts, data = _build(base, models, tasks, config, tokenizer)
    merger = Merger(b, experts, groups=_default_groups(config, b))
    return MergeEvaluator(merger, _space(config, merger), data,
                          objectives=config.search == "nsga2" or config.combine == "objectives")


def _baselines(evaluator: MergeEvaluator, experts: list[nn.Module], names: list[str], config: MergeConfig
               ) -> dict:
    """Held-out losses of the base and each expert; the uniform grid's search and held-out losses."""
    merger, space = evaluator.merger, evaluator.space
    merger.restore()
    out: dict[str, Any] = {"base": task_losses(merger.model, evaluator.data, "heldout").tolist(),
                           "experts": {n: task_losses(e, evaluator.data, "heldout").tolist()
                                       for n, e in zip(names, experts)}}
    grid = []
    dens = config.grid_densities if space.densities else (1.0,)
    weights = [w for w in config.grid_weights if config.method != "slerp" or 0 <= w <= 1]
    if METHODS[config.method][1].get("normalize"):
        weights = weights[-1:]  # one weight for every model: normalised away, every weight the same merge
    for w in weights:
        for d in dens:
            r = merger.recipe(config.method, w, d, config.seed)
            grid.append({"weight": float(w), "density": float(d), "search": evaluator.losses(r).tolist(),
                         "heldout": task_losses(merger.model, evaluator.data, "heldout").tolist()})
    out["grid"] = grid
    merger.restore()
    return out


def _open_backend(config: MergeConfig, base: Any, models: list[Any], tasks: list[Task], tokenizer: Any) -> Any:
    if config.backend == "inprocess":
        return None
    if not all(isinstance(x, (str, os.PathLike)) for x in [base, *models]):
        raise ConfigError(f"the {config.backend} backend loads the models in its workers: give them as paths")
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)) and config.tokenizer is None:
        raise ConfigError(f"the {config.backend} backend needs the tokenizer as config.tokenizer (a path)")
    from ..search.protocol import open_backend

    factory = functools.partial(worker_evaluator, str(base), [str(m) for m in models], tasks, config.to_json())
    opts: dict[str, Any] = {"workers": config.workers} if config.workers else {}
    if config.asynchronous:
        opts["depth"] = 1  # a worker takes its next candidate when it is free: drawn as late as possible
    return open_backend(config.backend, factory, **opts)


def _check_run_dir(run_dir: Path, config: MergeConfig) -> bool:
    """True when ``run_dir`` holds a run to resume (its settings must match)."""
    p = run_dir / CONFIG_FILE
    if not p.is_file():
        return False
    old = MergeConfig.from_json(json.loads(p.read_text()))
    if old.identity() != config.identity():
        diff = sorted(k for k in config.identity() if config.identity()[k] != old.identity()[k])
        raise ConfigError(f"{run_dir} holds a merge run with other settings ({', '.join(diff)}); use another "
                          "run directory")
    return True


def merge(base: Any, models: list[Any], tasks: list[Task], config: MergeConfig | None = None, *,
          tokenizer: Any = None) -> MergeResult:
    """Search a merge of ``models`` (fine-tunes of ``base``: paths or modules) that is good on
    ``tasks``, as ``config`` says; returns a :class:`MergeResult` whose ``model`` holds the result.

    The search never writes a candidate to disk: each is merged into the resident base in place
    (:class:`Merger`). With ``config.run_dir`` the run directory holds the checkpoint, the
    evaluation cache, the merged model (Hugging Face format), the recipe (JSON and mergekit YAML),
    ``report.md`` and plots; calling again with the same directory resumes."""
    if config is not None and not isinstance(config, MergeConfig):
        raise TypeError(f"config must be an evoforge.merge.MergeConfig or None, got {type(config).__name__}")
    config = (config or MergeConfig()).validate()
    if not isinstance(models, (list, tuple)) or not models:
        raise ConfigError(f"give at least one model to merge (models: a list of paths or modules), got {models!r:.80}")
    if not isinstance(tasks, (list, tuple)) or not tasks or not all(isinstance(t, Task) for t in tasks):
        raise ConfigError("tasks must be a non-empty list of evoforge.merge.Task")
    run_dir = Path(config.run_dir) if config.run_dir else None
    resume = run_dir is not None and _check_run_dir(run_dir, config)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=1))
    b, experts, data = _build(base, list(models), list(tasks), config, tokenizer)
    names = _names(list(models), "model")
    if config.search == "layers":
        from .dataflow import search_layers

        return search_layers(b, experts, names, data, config, run_dir, resume)
    merger = Merger(b, experts, groups=_default_groups(config, b))
    space = _space(config, merger)
    objectives = config.search == "nsga2" or config.combine == "objectives"
    evaluator = MergeEvaluator(merger, space, data, objectives=objectives)
    bl_path = run_dir / BASELINES_FILE if run_dir else None
    if bl_path is not None and bl_path.is_file():
        baselines = json.loads(bl_path.read_text())
    else:
        baselines = _baselines(evaluator, experts, names, config)
        if bl_path is not None:
            bl_path.write_text(json.dumps(baselines, indent=1))
    del experts  # their task vectors live in the merger
    best_grid = min(baselines["grid"], key=lambda g: float(np.mean(g["search"])))
    x0 = space.encode(merger.recipe(config.method, best_grid["weight"], best_grid["density"], config.seed))
    backend = _open_backend(config, base, list(models), list(tasks), tokenizer)
    try:
        engine = _engine(config, space, x0, len(data), run_dir, resume, baselines)
        target = backend if backend is not None else evaluator
        if config.asynchronous:
            res = engine.run_async(backend, max_evaluations=config.evaluations)
        else:
            res = engine.run(target, generations=_generations(engine, config.evaluations),
                             max_evaluations=config.evaluations, stall_generations=None)
    finally:
        if backend is not None:
            backend.close()
    grid_fitness = float(np.mean(best_grid["search"]))
    if config.search == "cmaes" and not objectives and (res.best_fitness is None or grid_fitness <= res.best_fitness):
        res.best_genome, res.best_fitness = x0, grid_fitness  # CMA-ES started there without evaluating it
    return write_run(config, evaluator, engine, res, baselines, names, run_dir)


def _engine(config: MergeConfig, space: ParamSpace, x0: np.ndarray, n_tasks: int, run_dir: Path | None,
            resume: bool, baselines: dict) -> Any:
    from ..search.cmaes import CMAES
    from ..search.nsga2 import NSGA2

    cls = CMAES if config.search == "cmaes" else NSGA2
    if resume and (run_dir / "checkpoint.pkl").is_file():
        return cls.resume(run_dir, progress=config.progress)
    L = space.n_genes
    if config.search == "cmaes":
        return CMAES(x0, config.sigma0, lower=0.0, upper=1.0, pop_size=config.pop_size, seed=config.seed,
                     run_dir=run_dir, progress=config.progress, task="merge")
    pop = config.pop_size or 16
    grid = [space.encode(Recipe.uniform(space.method, space.shape[0], space.shape[1], g["weight"], g["density"],
                                        space.seed)) for g in baselines["grid"]]
    rng = np.random.default_rng(config.seed)
    initial = np.array((grid + [rng.random(L) for _ in range(pop)])[:pop])
    return NSGA2(np.zeros(L), np.ones(L), n_objectives=n_tasks, pop_size=pop, n_offspring=max(2, pop // 2),
                 initial=initial, seed=config.seed, run_dir=run_dir, progress=config.progress, task="merge")


def _generations(engine: Any, evaluations: int) -> int:
    """Generations that ``evaluations`` take (for the progress bar; the budget stops the run)."""
    first = getattr(engine, "pop_size", 1)
    per = getattr(engine, "n_offspring", None) or first
    return max(1, 1 + -(-max(0, evaluations - first) // per))
