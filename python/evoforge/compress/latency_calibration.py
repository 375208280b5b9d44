"""In-model calibration of a latency table: what a level's layers cost inside the model.

A layer timed alone (:class:`~evoforge.compress.latency.LatencyTable`, cycling through copies over
twice the last-level cache) is not a layer inside a model: measured on SmolLM2-135M decode steps, the
table's 3-bit layers summed to 8.3 ms where they took 6.0 ms in the model, its dense float32 layers to
27.5 ms against 28.6 ms. So the model's latency is predicted as

    fixed + sum_i table[layer i at level j_i] * factor[j_i]

``fixed``: the model with every linear layer replaced by a module that costs nothing (a zeros
tensor of the right shape) -- embeddings, norms, attention on the cache, the head, Python -- timed
directly rather than left over from a subtraction; ``factor[j]``: for every level j, the model with
every layer at level j (packed from its own weights), timed, minus ``fixed``, over the table's sum
of those layers (at least :data:`MIN_FACTOR`). A uniform model is then predicted exactly (up to
timing noise); a mixed one by the table's per-layer split of each level's in-model cost.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..layers import apply, linear_layers
from .latency import LatencyTable, model_seconds

__all__ = ["calibrate_levels", "zero_linear_seconds"]

#: The smallest factor a level gets. A level's layers cost something inside the model; on a tiny
#: model under load a level can time no slower than the fixed part, and a factor of 0 would make
#: the latency objective blind to that level. Measured factors on SmolLM2-135M are 0.7-1.1.
MIN_FACTOR = 0.1


class _Zeros(nn.Module):
    """A linear layer's stand-in that computes nothing: zeros of its output width."""

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = int(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], self.out_features)


def _timed(model: nn.Module, tokens: int, repeats: int) -> float:
    return model_seconds(model, tokens=tokens, context=16 if tokens == 1 else 0, repeats=repeats)


def zero_linear_seconds(model: nn.Module, *, tokens: int = 1, repeats: int = 5) -> float:
    """Seconds of one forward of ``model`` with every linear layer of :func:`evoforge.layers.linear_layers`
    replaced by a zero-cost module (a decode step after 16 cached tokens for ``tokens=1``, else a
    prefill of ``tokens``): the part of a forward no layer table covers. ``model`` is not changed."""
    z = copy.deepcopy(model)
    for name, m in linear_layers(z).items():
        out = getattr(m, "out_features", None) or getattr(m, "nf", None)  # nn.Linear / packed, or Conv1D
        parent, _, attr = name.rpartition(".")
        setattr(z.get_submodule(parent), attr, _Zeros(out))
    with torch.inference_mode():
        return _timed(z, tokens, repeats)


def calibrate_levels(model: nn.Module, levels: Sequence[Mapping[str, Any]], table: LatencyTable, *,
                     tokens: int | Sequence[int] = 1, repeats: int = 5) -> tuple[np.ndarray, Any]:
    """(factors float64 [J], fixed seconds) for ``levels``: J configurations, each a dict layer name
    -> (out_features, in_features, spec) covering the layers packed at that level (spec None or {}:
    left dense). The table's missing entries are timed first. ``tokens`` a sequence of T token
    counts: factors [T, J] and fixed [T], each level packed once for all. See the module docstring."""
    if not levels:
        raise ConfigError("calibrate_levels needs at least one level")
    toks = [int(tokens)] if isinstance(tokens, (int, np.integer)) else [int(t) for t in tokens]
    fixed = np.array([zero_linear_seconds(model, tokens=t, repeats=repeats) for t in toks])
    factors = np.ones((len(toks), len(levels)))
    for j, layers in enumerate(levels):
        layers = dict(layers)
        table.measure(list(layers.values()), tokens=toks)
        specs = {n: s for n, (_, _, s) in layers.items() if s}
        m = apply(copy.deepcopy(model), specs) if specs else model  # packed once, timed at every token count
        for k, t in enumerate(toks):
            total = table.total(list(layers.values()), t)
            with torch.inference_mode():
                took = _timed(m, t, repeats)
            if total > 0:
                factors[k, j] = max((took - fixed[k]) / total, MIN_FACTOR)
        del m
    if isinstance(tokens, (int, np.integer)):
        return factors[0], float(fixed[0])
    return factors, fixed
