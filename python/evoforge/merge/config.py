"""The merge run's configuration: one dataclass, checked before any model loads, stored in the run
directory (``merge.json``) so that a run resumes with the settings it started with."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..errors import ConfigError
from .recipe import METHODS

__all__ = ["MergeConfig", "SEARCHES", "COMBINE"]

SEARCHES = ("cmaes", "nsga2", "layers")
COMBINE = ("mean", "objectives")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(kw_only=True)
class MergeConfig:
    """method : linear | task-arithmetic | ties | dare | dare-ties | slerp (``search="layers"``
    ignores it); search : ``cmaes`` (per layer group a weight and a density per model, CMA-ES),
    ``nsga2`` (the same space, a front over the tasks' losses) or ``layers`` (a data-flow path
    through the models' blocks); evaluations : candidates the search may evaluate (after the
    baselines); groups : block groups of the parameter space (default: one per block, at most 8);
    combine : ``mean`` of the task losses or ``objectives`` (nsga2 always keeps them apart);
    n_search / n_heldout windows of ``seq_len`` tokens per text task; pop_size : the engine's
    (default: CMA-ES's 4 + 3 ln L; 16 for nsga2 and layers); sigma0 : CMA-ES's initial step as a
    share of each gene's range; weight_range / density_range : the genes' bounds; asynchronous :
    CMA-ES without a generation barrier (needs ``backend`` process or ray); grid_weights /
    grid_densities : the uniform baselines; layer_repeats : a data-flow path has repeats x blocks
    slots; layer_scales : the input scales a slot may take; tokenizer : a llama2.c ``.bin`` or a
    Hugging Face directory when the base ships none."""

    method: str = "ties"
    search: str = "cmaes"
    evaluations: int = 200
    groups: int | None = None
    combine: str = "mean"
    n_search: int = 8
    n_heldout: int = 16
    seq_len: int = 128
    pop_size: int | None = None
    sigma0: float = 0.25
    weight_range: tuple[float, float] = (0.0, 1.0)
    density_range: tuple[float, float] = (0.1, 1.0)
    asynchronous: bool = False
    backend: str = "inprocess"
    workers: int | None = None
    grid_weights: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    grid_densities: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)
    layer_repeats: int = 2
    layer_scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    tokenizer: str | None = None
    seed: int = 0
    run_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("weight_range", "density_range", "grid_weights", "grid_densities", "layer_scales"):
            v = getattr(self, name)
            if isinstance(v, list):
                setattr(self, name, tuple(v))

    def validate(self) -> MergeConfig:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.search not in SEARCHES:
            raise ConfigError(f"search must be one of {', '.join(SEARCHES)}, got {self.search!r}")
        if self.combine not in COMBINE:
            raise ConfigError(f"combine must be one of {', '.join(COMBINE)}, got {self.combine!r}")
        for name, lo in (("evaluations", 0), ("n_search", 1), ("n_heldout", 1), ("seq_len", 2), ("layer_repeats", 1),
                         ("seed", 0)):
            v = getattr(self, name)
            if not _int(v) or v < lo:
                raise ConfigError(f"{name} must be an int >= {lo}, got {v!r}")
        if self.seed >= 2**63:  # the engines' seeds are 63-bit
            raise ConfigError(f"seed must be an int in [0, 2**63), got {self.seed!r}")
        if not isinstance(self.asynchronous, bool):
            raise ConfigError(f"asynchronous must be a bool, got {self.asynchronous!r}")
        if self.pop_size is not None and _int(self.pop_size) and self.pop_size > 2**24:  # search.MAX_POPULATION
            raise ConfigError(f"pop_size must be at most 2**24, got {self.pop_size!r}")
        for name, lo in (("groups", 1), ("pop_size", 2), ("workers", 1)):
            v = getattr(self, name)
            if v is not None and (not _int(v) or v < lo):
                raise ConfigError(f"{name} must be an int >= {lo} or None, got {v!r}")
        if not (isinstance(self.sigma0, (int, float)) and 0 < self.sigma0 <= 1):
            raise ConfigError(f"sigma0 must lie in (0, 1] (a share of each gene's range), got {self.sigma0!r}")
        lo, hi = _pair(self.weight_range, "weight_range")
        if self.method == "slerp" and not 0 <= lo < hi <= 1:
            raise ConfigError(f"slerp's weight_range (its t) must lie within [0, 1], got {self.weight_range}")
        lo, hi = _pair(self.density_range, "density_range")
        if not 0 < lo < hi <= 1:
            raise ConfigError(f"density_range must lie within (0, 1], got {self.density_range}")
        if not isinstance(self.grid_weights, tuple) or not self.grid_weights or \
                not all(isinstance(w, (int, float)) for w in self.grid_weights):
            raise ConfigError(f"grid_weights must be numbers, got {self.grid_weights!r}")
        if not isinstance(self.grid_densities, tuple) or not self.grid_densities or \
                not all(isinstance(d, (int, float)) and 0 < d <= 1 for d in self.grid_densities):
            raise ConfigError(f"grid_densities must lie in (0, 1], got {self.grid_densities!r}")
        if not isinstance(self.layer_scales, tuple) or not self.layer_scales or \
                not all(isinstance(s, (int, float)) and s > 0 for s in self.layer_scales):
            raise ConfigError(f"layer_scales must be positive numbers, got {self.layer_scales!r}")
        if self.backend not in ("inprocess", "process", "ray"):
            raise ConfigError(f"backend must be inprocess, process or ray, got {self.backend!r}")
        if self.asynchronous and (self.search != "cmaes" or self.backend == "inprocess"):
            raise ConfigError("asynchronous mode is CMA-ES's on a process or ray backend (a worker takes the next "
                              "candidate when it finishes one)")
        return self

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: dict | str) -> MergeConfig:
        d = json.loads(d) if isinstance(d, str) else dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown merge settings {unknown}")
        return cls(**d)

    def identity(self) -> dict:
        """The settings a resumed run must share with the run it continues."""
        keep = ("method", "search", "groups", "combine", "n_search", "n_heldout", "seq_len", "pop_size", "sigma0",
                "weight_range", "density_range", "grid_weights", "grid_densities", "layer_repeats", "layer_scales",
                "seed")
        return {k: json.loads(json.dumps(getattr(self, k))) for k in keep}


def _pair(v: Any, name: str) -> tuple[float, float]:
    if not (isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v) and v[0] < v[1]):
        raise ConfigError(f"{name} must be (low, high) with low < high, got {v!r}")
    return float(v[0]), float(v[1])
