"""OpenAI-ES (Salimans et al. 2017): antithetic Gaussian perturbations, centered-rank fitness shaping,
Adam on the mean.

Symbols: P population (P / 2 antithetic pairs), D parameters, theta the mean.

One generation, two batches:

1. *Perturbations* (stage 0): pair j uses the noise ``eps_j = noise(s_j)`` (Philox, float32 [D],
   :func:`evoforge.variation.deepga.noise`) with ``s_j = derive_seed(seed, "es-noise", generation,
   j)``; its members are ``theta + sigma eps_j`` and ``theta - sigma eps_j``, evaluated over E
   episodes. They travel as ``(s_j, sign)`` rows (uint64 [P, 2]); the evaluators get theta once per
   generation with the context and rebuild the members themselves.
2. *Mean* (stage 1): theta itself over ``eval_episodes`` episodes: the learning curve, and the best
   mean so far is the run's best policy.

Update: returns -> centered ranks ``u = rank / (P - 1) - 1/2`` (ties by position), gradient estimate
``g = sum_j (u_j+ - u_j-) eps_j / (P sigma) - weight_decay * theta`` (float64), then one Adam ascent
step of size ``lr``. theta is kept in float64; members are built from its float32 rounding, which is
also what the evaluators receive. Deterministic: a pure function of the seed (and resumable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import check_int, check_real, float_dtype, to_numpy
from ..errors import ConfigError
from ..search.protocol import Batch
from ..variation.deepga import seeds_to_params
from .engine import NeuroEngine
from .genome import derive_seed
from .policy import MLPPolicy

__all__ = ["OpenAIES"]

_NOISE_CHUNK = 1 << 26  # noise values built at once by the update (256 MiB of float32)


def _positive(x: Any, name: str, *, zero: bool = False, below_one: bool = False) -> float:
    v = check_real(x, name)
    ok = (v >= 0 if zero else v > 0) and np.isfinite(v) and (v < 1 or not below_one)
    if not ok:
        rng = "[0, 1)" if below_one else ("[0, inf)" if zero else "(0, inf)")
        raise ConfigError(f"{name} must lie in {rng}, got {x!r}")
    return v


def centered_ranks(returns: np.ndarray) -> np.ndarray:
    """float64 [P]: ``rank / (P - 1) - 0.5`` of ``returns`` (higher return, higher rank; ties by position)."""
    r = to_numpy(returns, "returns")
    r = r.astype(float_dtype(r, "returns")).astype(np.float64)
    if r.ndim != 1:
        raise ValueError(f"returns must be 1-D, got shape {r.shape}")
    ranks = np.empty(len(r))
    ranks[np.argsort(r, kind="stable")] = np.arange(len(r))
    return ranks / max(len(r) - 1, 1) - 0.5


class OpenAIES(NeuroEngine):
    """OpenAI-ES on the mean of a policy's parameters, maximising the mean return.

    Parameters
    ----------
    policy : MLPPolicy
    pop_size : even int >= 2 -- P (P / 2 antithetic pairs)
    sigma : float > 0 -- perturbation scale (the evaluators must use the same)
    lr : float > 0 -- Adam's step size; beta1, beta2 in [0, 1); adam_eps > 0
    weight_decay : float >= 0 -- L2 coefficient subtracted from the gradient estimate
    episodes : int -- per perturbation; eval_episodes : int -- for the mean (stage 1)
    obs_norm : bool -- shared observation normalisation (default on, as in the paper)
    init : float32 [D] or None -- the initial mean (default ``policy.init_params`` of a seed)

    ``run`` takes a :class:`~evoforge.neuro.evaluator.PolicyEvaluator` with ``encoding="es"`` and the
    same ``sigma``, or a backend built from one.
    """

    encoding = "es"

    def __init__(self, policy: MLPPolicy, *, pop_size: int = 64, sigma: float = 0.05, lr: float = 0.03,
                 beta1: float = 0.9, beta2: float = 0.999, adam_eps: float = 1e-8, weight_decay: float = 0.0,
                 episodes: int = 1, eval_episodes: int = 5, obs_norm: bool = True, obs_clip: float = 5.0,
                 init: Any = None, seed: int = 0, run_dir: Any = None, cache: Any = None, task: str = "",
                 progress: bool = True) -> None:
        sigma = _positive(sigma, "sigma")
        eval_episodes = check_int(eval_episodes, "eval_episodes", 1, 1 << 16, integral_float=True)
        hyper = {"sigma": sigma, "lr": _positive(lr, "lr"),
                 "beta1": _positive(beta1, "beta1", zero=True, below_one=True),
                 "beta2": _positive(beta2, "beta2", zero=True, below_one=True),
                 "adam_eps": _positive(adam_eps, "adam_eps"),
                 "weight_decay": _positive(weight_decay, "weight_decay", zero=True), "eval_episodes": eval_episodes}
        super().__init__(policy, pop_size=pop_size, episodes=episodes, obs_norm=obs_norm, obs_clip=obs_clip,
                         hyper=hyper, seed=seed, run_dir=run_dir, cache=cache, task=task, progress=progress)
        if self.pop_size % 2:
            raise ConfigError(f"pop_size must be even (antithetic pairs), got {self.pop_size}")
        self.eval_episodes = eval_episodes
        self.sigma, self.lr = sigma, hyper["lr"]
        self.beta1, self.beta2, self.adam_eps = hyper["beta1"], hyper["beta2"], hyper["adam_eps"]
        self.weight_decay = hyper["weight_decay"]
        D = policy.n_params
        if init is None:
            theta = policy.init_params(derive_seed(self.seed, "es-init"))
        else:
            theta = to_numpy(init, "init")
            if theta.dtype.kind != "f" or theta.shape != (D,) or not np.isfinite(theta.astype(np.float32)).all():
                raise ValueError(f"init must be a float array of shape ({D},) whose values are finite in float32, "
                                 f"got {theta.dtype} {theta.shape}")
        self.theta = theta.astype(np.float64)
        self.center = self.theta.astype(np.float32)
        self.m, self.v, self.t = np.zeros(D), np.zeros(D), 0
        self._noise_seeds: list[int] = []
        self._returns: np.ndarray | None = None
        self._best: tuple[np.ndarray | None, float | None] = (None, None)

    def context(self) -> dict:
        return {**super().context(), "center": self.center}

    # ---- ask / tell -------------------------------------------------------------------------------

    def _ask(self) -> Batch:
        if self.stage == 1:
            return self._batch(np.array([[0, 2]], np.uint64), self.eval_episodes, 1)
        pairs = self.pop_size // 2
        self._noise_seeds = [derive_seed(self.seed, "es-noise", self.generation, j) for j in range(pairs)]
        g = np.zeros((self.pop_size, 2), np.uint64)
        g[0::2, 0] = g[1::2, 0] = np.array(self._noise_seeds, np.uint64)
        g[1::2, 1] = 1
        return self._batch(g, self.episodes, 0)

    def _tell_population(self, batch: Batch, f: np.ndarray) -> None:
        self._returns = -f

    def _tell_second(self, batch: Batch, f: np.ndarray) -> dict:
        center_f = float(f[0])
        if self._best[1] is None or center_f < self._best[1]:
            self._best = (self.center.copy(), center_f)
            self._best_norm = self.obs_norm.state() if self.obs_norm is not None else None
        r = self._returns
        record = {"best_fitness": self._best[1], "center_fitness": center_f, "best_return": -self._best[1],
                  "center_return": -center_f, "mean_return": float(r.mean()), "max_return": float(r.max())}
        self._update(r)
        record["step_norm"] = float(np.linalg.norm(self.theta - self.center.astype(np.float64)))
        self.center = self.theta.astype(np.float32)
        return record

    def _update(self, returns: np.ndarray) -> None:
        u = centered_ranks(returns)
        w = u[0::2] - u[1::2]  # [pairs]
        D = self.policy.n_params
        grad = np.zeros(D)
        chunk = max(1, _NOISE_CHUNK // max(D, 1))
        zero = np.zeros(D, np.float32)
        for a in range(0, len(w), chunk):
            eps = seeds_to_params(zero, [[s] for s in self._noise_seeds[a:a + chunk]], 1.0)
            grad += w[a:a + chunk] @ eps.astype(np.float64)
        grad /= self.pop_size * self.sigma
        if self.weight_decay:
            grad -= self.weight_decay * self.theta
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        mhat = self.m / (1 - self.beta1 ** self.t)
        vhat = self.v / (1 - self.beta2 ** self.t)
        self.theta = self.theta + self.lr * mhat / (np.sqrt(vhat) + self.adam_eps)

    # ---- results ----------------------------------------------------------------------------------

    @property
    def best(self) -> tuple[np.ndarray | None, float | None]:
        """(the best mean's parameters, float32 [D], its fitness), or (None, None)."""
        params, f = self._best
        return (None, None) if params is None else (params.copy(), f)

    def best_params(self) -> np.ndarray | None:
        return None if self._best[0] is None else self._best[0].copy()

    @property
    def mean(self) -> np.ndarray:
        """float32 [D]: the current mean (what the next generation perturbs)."""
        return self.center.copy()
