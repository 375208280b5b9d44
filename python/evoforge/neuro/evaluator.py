"""The evaluator of policy genomes: decode a batch into parameters, roll it out, return fitness.

Symbols: B candidates, L genome columns, D parameters, O observation size, E episodes.

A :class:`PolicyEvaluator` is what the engines of :mod:`evoforge.neuro` evaluate with, in the driver
or in every worker of a backend (build it in the backend's factory: ``functools.partial(
PolicyEvaluator, "CartPole-v1", policy, ...)``). Genome encodings (``encoding``):

``"seeds"``
    Deep GA seed lists, uint64 [B, L] (:func:`evoforge.neuro.genome.encode`), rebuilt through the
    worker's :class:`~evoforge.neuro.genome.ParamCache` (a child from its cached parent).
``"es"``
    OpenAI-ES perturbations, uint64 [B, 2]: ``(noise seed, sign)``, sign 0 is ``center + sigma *
    noise(seed)``, 1 is ``center - sigma * noise(seed)``, 2 the center itself; the center comes with
    the context (:meth:`set_context`), once per generation.
``"params"``
    The parameters themselves, float [B, D] (cast to float32): for engines such as CMAES or a user's
    loop (no compact encoding).

Fitness (minimised) is minus the mean of the E episode returns (their sum over E). The number of
episodes is ``batch.fidelity`` (or ``episodes``); their reset seeds derive from ``batch.seed`` (or
``seed`` when the batch has none). With ``report`` set by the engine's context, each row is
``[-mean return, environment steps, obs sums [O], obs sums of squares [O]]`` (the last two only
with observation normalisation), so that the engine counts steps and merges the normalisation
statistics from rows that the evaluation cache keeps; otherwise fitness is [B].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import check_int
from ..errors import ConfigError
from ..variation.deepga import seeds_to_params
from .genome import ParamCache
from .policy import MLPPolicy
from .rollout import EnvPool, check_compatible, episode_seeds, resolve_max_steps, rollout

__all__ = ["PolicyEvaluator", "ENCODINGS"]

ENCODINGS = ("seeds", "es", "params")


class PolicyEvaluator:
    """Fitness of policy genomes on an environment.

    env : Gymnasium id, factory or Env (see :mod:`evoforge.neuro.envs`); policy : MLPPolicy or None
    (built from the environment's spaces with ``hidden``); encoding : one of :data:`ENCODINGS`;
    sigma : mutation / perturbation power (``"seeds"``, ``"es"``); episodes : default episodes per
    candidate; max_steps : step limit per episode (default: the environment's, else 1000); seed :
    episode seed when a batch carries none; cache_bytes : the parameter cache's bound
    (``"seeds"``); env_kwargs : passed to ``gymnasium.make`` for an id.
    """

    def __init__(self, env: Any, policy: MLPPolicy | None = None, *, hidden: Any = (64,), encoding: str = "seeds",
                 sigma: float = 0.05, episodes: int = 1, max_steps: int | None = None, seed: int = 0,
                 cache_bytes: int = 1 << 28, env_kwargs: dict | None = None) -> None:
        if encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if policy is not None and not isinstance(policy, MLPPolicy):
            raise TypeError(f"policy must be an MLPPolicy or None, got {type(policy).__name__}")
        self.episodes = check_int(episodes, "episodes", 1, 1 << 16)
        self.seed = check_int(seed, "seed", 0, 2**64 - 1)
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating, np.integer)) \
                or not np.isfinite(sigma) or sigma <= 0:
            raise ConfigError(f"sigma must be a finite number > 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.encoding = encoding
        self.pool = EnvPool(env, env_kwargs)
        self.policy = policy if policy is not None else MLPPolicy.from_spaces(
            self.pool.observation_space, self.pool.action_space, hidden)
        check_compatible(self.policy, self.pool)
        self.max_steps = resolve_max_steps(max_steps, self.pool)
        self.cache = ParamCache(self.policy, self.sigma, max_bytes=cache_bytes) if encoding == "seeds" else None
        self.obs_norm: tuple | None = None
        self.center: np.ndarray | None = None
        self.report = False
        self.env_steps = 0

    # ---- per-generation context (the engine's broadcast) ---------------------------------------

    def set_context(self, context: dict) -> None:
        """The engine's per-generation state: ``obs_norm`` ((mean, std, clip) or None), ``center``
        (float32 [D], ``"es"``), ``report`` (rows with steps and observation statistics)."""
        if not isinstance(context, dict):
            raise TypeError(f"context must be a dict, got {type(context).__name__}")
        unknown = set(context) - {"obs_norm", "center", "report"}
        if unknown:
            raise ConfigError(f"unknown context keys {sorted(unknown)}")
        if "obs_norm" in context:
            norm = context["obs_norm"]
            if norm is not None:
                mean, std, clip = norm
                O = self.policy.obs_dim
                mean, std = np.asarray(mean, np.float32).reshape(-1), np.asarray(std, np.float32).reshape(-1)
                if mean.shape != (O,) or std.shape != (O,) or not (std > 0).all():
                    raise ValueError(f"obs_norm must be (mean [{O}], std [{O}] > 0, clip)")
                norm = (mean, std, float(clip))
            self.obs_norm = norm
        if "center" in context:
            c = context["center"]
            if c is not None:
                c = np.ascontiguousarray(c, dtype=np.float32).reshape(-1)
                if c.shape != (self.policy.n_params,):
                    raise ValueError(f"center must hold {self.policy.n_params} parameters, got {c.size}")
            self.center = c
        if "report" in context:
            self.report = bool(context["report"])

    # ---- genomes -> parameters -------------------------------------------------------------------

    def params(self, genomes: Any) -> np.ndarray:
        """float32 [B, D]: the parameters of a batch of genomes in this evaluator's encoding."""
        if self.encoding == "seeds":
            return self.cache.params(genomes)
        g = np.asarray(genomes)
        if self.encoding == "params":
            if g.dtype.kind not in "fiu" or g.ndim != 2 or g.shape[1] != self.policy.n_params:
                raise ValueError(f"parameter genomes must be a real array (B, {self.policy.n_params}), got "
                                 f"{g.dtype} {g.shape}")
            return np.ascontiguousarray(g, dtype=np.float32)
        if self.center is None:
            raise ConfigError("ES genomes need the center: the engine sets it with set_context({'center': ...})")
        if g.dtype.kind not in "iu" or g.ndim != 2 or g.shape[1] != 2:
            raise ValueError(f"ES genomes must be an integer array (B, 2) of (seed, sign), got {g.dtype} {g.shape}")
        g = g.astype(np.uint64)
        if (g[:, 1] > 2).any():
            raise ValueError("ES genome signs must be 0 (+), 1 (-) or 2 (the center)")
        out = np.empty((len(g), self.policy.n_params), np.float32)
        for code, sigma in ((0, self.sigma), (1, -self.sigma)):
            rows = np.flatnonzero(g[:, 1] == code)
            if rows.size:
                out[rows] = seeds_to_params(self.center, g[rows, :1], sigma)
        out[g[:, 1] == 2] = self.center
        return out

    # ---- evaluation ------------------------------------------------------------------------------

    def evaluate(self, genomes: Any, batch: Any = None) -> np.ndarray:
        """Fitness of ``genomes`` (see the module doc for the rows)."""
        params = self.params(genomes)
        fidelity = getattr(batch, "fidelity", None)
        E = self.episodes if fidelity is None else check_int(fidelity, "episodes (batch.fidelity)", 1, 1 << 16)
        ctx = getattr(batch, "seed", None)
        seeds = episode_seeds(self.seed if ctx is None else ctx, E)
        stats = self.report and self.obs_norm is not None
        res = rollout(self.policy, self.pool.take(len(params) * E), params, seeds, max_steps=self.max_steps,
                      obs_norm=self.obs_norm, stats=stats)
        self.env_steps += int(res.steps.sum())
        fitness = -res.mean_return
        if not self.report:
            return fitness
        cols = [fitness[:, None], res.steps[:, None].astype(np.float64)]
        if stats:
            cols += [res.obs_sum, res.obs_sumsq]
        return np.concatenate(cols, axis=1)

    def close(self) -> None:
        self.pool.close()
