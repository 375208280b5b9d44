"""Data-flow merging (the second space of evolutionary model merging): a path through the blocks of
the source models (the base and the experts), which block of which model comes next and a scale on
its input, found by a genetic algorithm and exported as an ordinary model of the base architecture
with more or fewer blocks.

Genome int32 [2 R N] for R repeats of N blocks: slot s = r N + i holds block i of source
``genome[s] - 1`` (0: skipped), with input scale ``scales[genome[R N + s]]``. The embeddings, final
norm and head are the base's.

Export: an input scale s_j on the j-th block of the path equals, up to the norms' epsilon (every
block and the head start with an RMSNorm or LayerNorm, which ignore their input's scale), dividing
the residual updates of block j by P_{j+1} = s_0 ... s_j, so the scales are folded into the output
projections (attention and MLP) and the exported model is an ordinary one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .result import MergeResult, save
from .tasks import TaskData, task_losses

__all__ = ["decode_path", "PathModel", "export_path", "search_layers"]


class _Stop(Exception):
    pass


def _blocks_of(model: nn.Module) -> Any:
    from ..compress.adapters import adapt

    return adapt(model)


def decode_path(genome: Any, n_blocks: int, repeats: int, n_sources: int, scales: tuple) -> list[tuple[int, int, float]]:
    """[(source, block, input scale)] of a genome, in order."""
    g = np.asarray(genome).reshape(-1)
    slots = repeats * n_blocks
    if g.size != 2 * slots:
        raise ConfigError(f"a path genome has {2 * slots} genes here, got {g.size}")
    return [(int(g[s]) - 1, s % n_blocks, float(scales[int(g[slots + s])])) for s in range(slots)
            if 0 < int(g[s]) <= n_sources]


class PathModel(nn.Module):
    """The base's embeddings and head around a path of blocks taken from ``sources`` (shared, not
    copied); ``forward(input_ids, use_cache=False)`` -> an object with ``.logits`` [B, T, V]."""

    def __init__(self, sources: list[nn.Module], path: list[tuple[int, int, float]]) -> None:
        super().__init__()
        self.adapters = [_blocks_of(m) for m in sources]
        self.path = list(path)

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False, **_: Any) -> Any:
        base = self.adapters[0]
        box: dict = {}

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            box["args"], box["kwargs"] = args, dict(kwargs)
            raise _Stop

        handle = base.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            base.model(input_ids=input_ids, use_cache=False)
        except _Stop:
            pass
        finally:
            handle.remove()
        args, kwargs = box["args"], box["kwargs"]
        h = args[0] if args else kwargs.pop("hidden_states")
        rest = args[1:]
        for src, i, scale in self.path:
            out = self.adapters[src].blocks[i](h * scale if scale != 1.0 else h, *rest, **kwargs)
            h = out[0] if isinstance(out, tuple) else out
        return _Out(base.lm_head(base.final_norm(h)))


class _Out:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


def export_path(sources: list[nn.Module], path: list[tuple[int, int, float]]) -> nn.Module:
    """An ordinary model of the base's class with ``len(path)`` blocks equal to ``PathModel`` (up to
    the norms' epsilon): copies of the path's blocks, input scales folded into the output
    projections, ``num_hidden_layers`` (and per-layer settings) rewritten."""
    if not path:
        raise ConfigError("the path has no blocks")
    base = _blocks_of(sources[0])
    out = copy.deepcopy(base.model)
    adapters = [_blocks_of(m) for m in sources]
    blocks = [copy.deepcopy(adapters[src].blocks[i]) for src, i, _ in path]
    holder = _blocks_of(out)
    container = None
    for name, mod in out.named_modules():  # the ModuleList that holds the blocks
        if isinstance(mod, nn.ModuleList) and len(mod) == holder.n_blocks and mod[0] is holder.blocks[0]:
            container = (name, mod)
            break
    parent = out.get_submodule(container[0].rpartition(".")[0]) if "." in container[0] else out
    setattr(parent, container[0].rpartition(".")[2], nn.ModuleList(blocks))
    cfg = out.config
    types = getattr(cfg, "layer_types", None)
    if isinstance(types, list):
        cfg.layer_types = [types[i] for _, i, _ in path]
    for attr in ("num_hidden_layers", "n_layer"):
        if hasattr(cfg, attr):
            setattr(cfg, attr, len(path))
    new = _blocks_of(out)
    with torch.no_grad():
        for j, blk in enumerate(new.blocks):
            for m in blk.modules():
                if hasattr(m, "layer_idx"):
                    m.layer_idx = j  # the KV cache's slot of the block
        P = 1.0
        refs = new.linear_layers()
        for j in range(len(path)):
            P *= path[j][2]
            for r in refs:
                if r.block == j and r.kind in ("o", "down") and r.rows is None:
                    r.module.weight.mul_(1.0 / P)
                    if getattr(r.module, "bias", None) is not None:
                        r.module.bias.mul_(1.0 / P)
    return out


class _PathEvaluator:
    def __init__(self, sources: list[nn.Module], data: list[TaskData], config: Any, n_blocks: int) -> None:
        self.sources, self.data, self.config, self.n_blocks = sources, data, config, n_blocks
        self.apply_s = self.eval_s = 0.0

    def path(self, genome: Any) -> list[tuple[int, int, float]]:
        return decode_path(genome, self.n_blocks, self.config.layer_repeats, len(self.sources),
                           self.config.layer_scales)

    def losses(self, genome: Any, split: str = "search") -> np.ndarray:
        import time

        t0 = time.perf_counter()
        p = self.path(genome)
        if not p:
            return np.full(len(self.data), 1e3)  # no block at all: a large finite penalty
        m = PathModel(self.sources, p)
        t1 = time.perf_counter()
        out = task_losses(m, self.data, split)
        self.apply_s += t1 - t0
        self.eval_s += time.perf_counter() - t1
        return out

    def evaluate(self, genomes: np.ndarray, batch: Any = None) -> np.ndarray:
        return np.array([self.losses(g).mean() for g in np.asarray(genomes)])


def search_layers(base: nn.Module, experts: list[nn.Module], names: list[str], data: list[TaskData], config: Any,
                  run_dir: Path | None, resume: bool) -> MergeResult:
    """The data-flow search: GA over paths, started from each source's own path (its blocks in
    order, scale 1) and mutants of them; the best path exported."""
    from ..search.ga import GA

    if config.backend != "inprocess":
        raise ConfigError("the layers search runs in-process for now")
    sources = [base] + list(experts)
    n_blocks = _blocks_of(base).n_blocks
    R, S = config.layer_repeats, len(sources)
    slots = R * n_blocks
    one = config.layer_scales.index(1.0) if 1.0 in config.layer_scales else 0
    ev = _PathEvaluator(sources, data, config, n_blocks)
    baselines = {"base": task_losses(base, data, "heldout").tolist(),
                 "experts": {n: task_losses(e, data, "heldout").tolist() for n, e in zip(names, experts)}, "grid": []}
    pop = config.pop_size or 16
    rng = np.random.default_rng(config.seed)
    own = []
    for s in range(S):
        g = np.zeros(2 * slots, dtype=np.int32)
        g[:n_blocks] = s + 1
        g[slots:] = one
        own.append(g)
    initial = list(own)
    while len(initial) < pop:
        g = own[len(initial) % S].copy()
        flip = rng.random(slots) < 2.0 / n_blocks
        g[:slots][flip] = rng.integers(0, S + 1, size=int(flip.sum()))
        initial.append(g)
    lower = np.zeros(2 * slots, dtype=np.int32)
    upper = np.array([S] * slots + [len(config.layer_scales) - 1] * slots, dtype=np.int32)
    if resume and run_dir is not None and (run_dir / "checkpoint.pkl").is_file():
        engine = GA.resume(run_dir, progress=config.progress)
    else:
        engine = GA(lower, upper, pop_size=pop, initial=np.array(initial), seed=config.seed, run_dir=run_dir,
                    progress=config.progress, task="merge-layers")
    per = engine.n_offspring  # the generations the budget takes, for the progress bar
    res = engine.run(ev, generations=1 + -(-max(0, config.evaluations - pop) // per),
                     max_evaluations=config.evaluations, stall_generations=None)
    path = ev.path(res.best_genome)
    heldout = ev.losses(res.best_genome, "heldout").tolist()
    model = export_path(sources, path).eval()
    readable = [[names[s - 1] if s > 0 else "base", i, sc] for s, i, sc in path]
    out = MergeResult(None, model, [d.task.name for d in data], heldout, res.best_fitness, baselines,
                      int(res.evaluations), list(res.history), [], readable, ev.apply_s, ev.eval_s, run_dir)
    if run_dir is not None:
        save(out, run_dir, names)
    return out
