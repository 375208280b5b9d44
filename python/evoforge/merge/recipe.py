"""A merge recipe: the method and, per layer group and source model, a weight and a density; what
the search evolves, what a run saves (JSON and mergekit-style YAML) and what :class:`Merger` applies.

Symbols: G layer groups (the last one holds every tensor outside the blocks: embeddings, final
norm, head), K source models (the experts; the base is separate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import check_int
from ..errors import ConfigError

__all__ = ["METHODS", "Recipe"]

#: method -> (uses densities, merge_deltas options). "dare" combines the dropped deltas linearly,
#: "dare-ties" by TIES's sign election; "linear" is the weighted mean of the models.
METHODS: dict[str, tuple[bool, dict]] = {
    "linear": (False, {"normalize": True}),
    "task-arithmetic": (False, {}),
    "ties": (True, {"trim": True, "sign_election": True, "normalize": True}),
    "dare": (True, {"dare": True}),
    "dare-ties": (True, {"dare": True, "sign_election": True, "normalize": True}),
    "slerp": (False, {}),
}


def check_method(method: Any) -> str:
    if method not in METHODS:
        raise ConfigError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return str(method)


@dataclass
class Recipe:
    """weights : float [G, K] (for slerp: [G, 1], the interpolation t from model 0 to model 1);
    densities : float [G, K] in (0, 1] (ones for methods without densities); seed : the DARE masks'."""

    method: str
    weights: np.ndarray
    densities: np.ndarray
    seed: int = 0
    group_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.method = check_method(self.method)
        self.seed = check_int(self.seed, "seed", 0, 2**64 - 1)  # the DARE masks' (merging.merge_deltas)
        self.weights = np.atleast_2d(np.asarray(self.weights, dtype=np.float64))
        self.densities = np.atleast_2d(np.asarray(self.densities, dtype=np.float64))
        if self.weights.shape != self.densities.shape:
            raise ConfigError(f"weights {self.weights.shape} and densities {self.densities.shape} differ in shape")
        if not np.isfinite(self.weights).all():
            raise ConfigError("weights must be finite")
        if not ((self.densities > 0) & (self.densities <= 1)).all():
            raise ConfigError(f"densities must lie in (0, 1], got {self.densities.min():g} .. {self.densities.max():g}")
        if self.method == "slerp" and not ((self.weights >= 0) & (self.weights <= 1)).all():
            raise ConfigError("slerp's t must lie in [0, 1]")

    @classmethod
    def uniform(cls, method: str, n_groups: int, n_models: int, weight: float, density: float = 1.0,
                seed: int = 0) -> Recipe:
        """The same weight and density for every group and model."""
        k = 1 if method == "slerp" else n_models
        return cls(method, np.full((n_groups, k), weight), np.full((n_groups, k), density), seed)

    def to_dict(self) -> dict:
        return {"method": self.method, "weights": self.weights.tolist(), "densities": self.densities.tolist(),
                "seed": self.seed, "group_names": list(self.group_names)}

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(d["method"], d["weights"], d["densities"], int(d.get("seed", 0)), list(d.get("group_names", [])))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_mergekit_yaml(self, base: str, models: list[str], layer_ranges: list[tuple[int, int]]) -> str:
        """A mergekit configuration of this recipe: one slice per block group with per-model
        ``weight`` / ``density``, the last group's values as the defaults for the other tensors.
        (mergekit draws DARE masks with its own generator, so a dare merge there differs in its
        dropped entries, not in distribution.)"""
        mk = {"linear": "linear", "task-arithmetic": "task_arithmetic", "ties": "ties", "dare": "dare_linear",
              "dare-ties": "dare_ties", "slerp": "slerp"}[self.method]
        lines = [f"merge_method: {mk}", f"base_model: {base}", "dtype: float32"]
        if self.method == "slerp":
            lines.append("parameters:")
            lines.append(f"  t: {_yaml_list([float(w[0]) for w in self.weights[:-1]])}")
            lines += ["slices:", "  - sources:"]
            lines += [f"      - model: {m}\n        layer_range: [0, {layer_ranges[-1][1]}]" for m in models[:2]]
            return "\n".join(lines) + "\n"
        lines.append("slices:")
        for g, (lo, hi) in enumerate(layer_ranges):
            lines.append("  - sources:")
            lines.append(f"      - model: {base}\n        layer_range: [{lo}, {hi}]")
            for k, m in enumerate(models):
                p = [f"weight: {float(self.weights[g, k]):.6g}"]
                if METHODS[self.method][0]:
                    p.append(f"density: {float(self.densities[g, k]):.6g}")
                lines.append(f"      - model: {m}\n        layer_range: [{lo}, {hi}]\n        parameters: "
                             "{" + ", ".join(p) + "}")
        opts = METHODS[self.method][1]
        if "normalize" in opts or self.method == "dare":
            lines += ["parameters:", f"  normalize: {str(bool(opts.get('normalize', False))).lower()}"]
        return "\n".join(lines) + "\n"


def _yaml_list(xs: list[float]) -> str:
    return "[" + ", ".join(f"{x:.6g}" for x in xs) + "]"
