"""Merging into the resident model in place: the base weights and the experts' task vectors are
held once, flat, in float32; applying a recipe writes every parameter of the model through the
native kernels (:mod:`evoforge.merging`), with no copy of the model and no disk, and
:meth:`Merger.restore` gives the base back bit for bit.

Symbols: K experts, G layer groups (blocks split into G - 1 consecutive ranges; group G - 1 holds
the embeddings, the final norm and the head).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import merging
from .._checks import check_int
from ..errors import ConfigError
from .recipe import METHODS, Recipe

__all__ = ["Merger", "as_float32", "block_of", "check_compatible"]

_BLOCK = re.compile(r"\.(?:layers|h|layer|blocks)\.(\d+)\.")


def as_float32(model: nn.Module) -> nn.Module:
    """``model`` with float32 parameters (converted in place; ``Module.float()`` is refused by
    transformers for models loaded from GGUF, whose weights are plain tensors by then)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.dtype != torch.float32:
                p.data = p.data.float()
    return model


def block_of(name: str) -> int | None:
    """The block index in a parameter's name (``model.layers.3.mlp...`` -> 3), None outside blocks."""
    m = _BLOCK.search("." + name)
    return int(m.group(1)) if m else None


def check_compatible(base: nn.Module, experts: list[nn.Module], names: list[str] | None = None) -> None:
    """Raise ConfigError unless every expert has the base's architecture and parameter shapes."""
    names = names or [f"model {k}" for k in range(len(experts))]
    arch = type(base).__name__
    shapes = {n: tuple(p.shape) for n, p in base.named_parameters()}
    for name, e in zip(names, experts):
        if type(e).__name__ != arch:
            raise ConfigError(f"{name} is a {type(e).__name__}, the base a {arch}: models to merge must share "
                              "one architecture")
        other = {n: tuple(p.shape) for n, p in e.named_parameters()}
        if set(other) != set(shapes):
            diff = sorted(set(other) ^ set(shapes))[:3]
            raise ConfigError(f"{name} has other parameters than the base (e.g. {diff})")
        bad = [n for n in shapes if other[n] != shapes[n]]
        if bad:
            raise ConfigError(f"{name}'s {bad[0]} has shape {other[bad[0]]}, the base's {shapes[bad[0]]}")


class Merger:
    """Holds ``model`` (the base, float32 on the CPU; merged into in place) and the task vectors of
    ``experts`` (same architecture and shapes; they may be freed afterwards).

    groups : G - 1, the number of block groups (default: one per block)."""

    def __init__(self, model: nn.Module, experts: list[nn.Module], *, groups: int | None = None) -> None:
        if not isinstance(experts, (list, tuple)) or not experts:
            raise ConfigError(f"give at least one model to merge (experts: a list of modules), got {experts!r:.80}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_compatible(model, experts)
        params = list(model.named_parameters())  # tied weights once
        for n, p in params:
            if p.dtype != torch.float32 or p.device.type != "cpu":
                raise ConfigError(f"merging needs float32 parameters on the CPU; {n} is {p.dtype} on {p.device}")
        blocks = [b for b in (block_of(n) for n, _ in params) if b is not None]
        self.n_blocks = max(blocks) + 1 if blocks else 0
        n_groups = self.n_blocks if groups is None else check_int(groups, "groups", 1)
        if not 1 <= n_groups <= max(1, self.n_blocks):
            raise ConfigError(f"groups must lie in [1, {max(1, self.n_blocks)}] (the model has {self.n_blocks} "
                              f"blocks), got {groups!r}")
        self.n_groups = n_groups + 1
        self.layer_ranges = [(g * self.n_blocks // n_groups, (g + 1) * self.n_blocks // n_groups)
                             for g in range(n_groups)]
        self.group_names = [f"blocks {lo}-{hi - 1}" for lo, hi in self.layer_ranges] + ["embeddings, norm, head"]
        self.model = model
        self.n_models = len(experts)
        self.names: list[str] = []
        self._out: list[np.ndarray] = []
        self._base: list[np.ndarray] = []
        self._deltas: list[np.ndarray] = []
        self._group: list[int] = []
        states = [dict(e.named_parameters()) for e in experts]
        with torch.no_grad():
            for n, p in params:
                if not p.is_contiguous():
                    raise ConfigError(f"{n} is not contiguous")
                out = p.data.view(-1).numpy()  # the model's own memory
                base = out.copy()
                d = np.stack([s[n].detach().to(torch.float32).reshape(-1).numpy() for s in states]) - base
                if not np.isfinite(d).all():
                    raise ConfigError(f"{n}: an expert's weights minus the base's are not finite")
                b = block_of(n)
                self.names.append(n)
                self._out.append(out)
                self._base.append(base)
                self._deltas.append(np.ascontiguousarray(d, dtype=np.float32))
                self._group.append(n_groups if b is None else min(n_groups - 1, b * n_groups // self.n_blocks))
        self._sorted: list[np.ndarray] | None = None  # |deltas| sorted per model, for TIES (made on first use)
        self.nbytes = sum(a.nbytes for a in self._base) + sum(a.nbytes for a in self._deltas)

    def recipe(self, method: str, weights: Any, densities: Any = None, seed: int = 0) -> Recipe:
        """A recipe for this merger's groups and models ([G, K] or broadcastable)."""
        k = 1 if method == "slerp" else self.n_models
        w = np.broadcast_to(np.asarray(weights, np.float64), (self.n_groups, k))
        d = np.broadcast_to(np.asarray(1.0 if densities is None else densities, np.float64), (self.n_groups, k))
        return Recipe(method, w.copy(), d.copy(), seed, list(self.group_names))

    def apply(self, recipe: Recipe) -> nn.Module:
        """Write the merge of ``recipe`` into the model, tensor by tensor (native, in place)."""
        if not isinstance(recipe, Recipe):
            raise TypeError(f"recipe must be an evoforge.merge.Recipe, got {type(recipe).__name__}")
        k = 1 if recipe.method == "slerp" else self.n_models
        if recipe.weights.shape != (self.n_groups, k):
            raise ConfigError(f"the recipe has weights {recipe.weights.shape}, this merger needs ({self.n_groups}, {k})")
        if recipe.method == "slerp" and self.n_models != 2:
            raise ConfigError(f"slerp merges exactly two models, got {self.n_models}")
        uses_density, opts = METHODS[recipe.method]
        if opts.get("trim") and self._sorted is None:
            # once: every later TIES merge reads its thresholds instead of selecting them (K N floats more)
            self._sorted = [np.sort(np.abs(d), axis=1) for d in self._deltas]
        for t, (out, base, d, g) in enumerate(zip(self._out, self._base, self._deltas, self._group)):
            w = recipe.weights[g]
            if recipe.method == "slerp":
                # between the two experts: a = base + d0, b = base + d1, through out as scratch
                a = base + d[0]
                merging.slerp(out, a, base + d[1], float(w[0]))
                continue
            if opts.get("normalize") and not opts.get("sign_election") and not w.sum():
                w = np.ones_like(w)  # the mean of nothing: every model alike
            rho = recipe.densities[g] if uses_density else None
            thr = merging.trim_thresholds(self._sorted[t], rho) if opts.get("trim") else None
            merging.merge_deltas(out, base, d, w, rho, seed=recipe.seed, stream=t, thresholds=thr, **opts)
        return self.model

    def restore(self) -> nn.Module:
        """The base weights back in the model, bit for bit."""
        for out, base in zip(self._out, self._base):
            np.copyto(out, base)
        return self.model
