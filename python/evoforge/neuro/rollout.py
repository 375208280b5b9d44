"""A whole population's episodes, stepped in lockstep: one batched forward per step for all members.

Symbols: P members, E episodes per member, S = P * E environment copies, O observation size.

:func:`rollout` runs, for each member p and episode e, one episode in copy ``p * E + e``: all S
copies are reset (episode e with seed ``seeds[e]``, the same for every member: common random
numbers, so members are compared on the same starts), then each step takes the observations of the
copies still running, runs the population forward once (:meth:`MLPPolicy.act`, a stacked matmul per
layer), and steps those copies only; a copy whose episode ended (terminated, truncated by the
environment, or at ``max_steps``) is not stepped again. A member's fitness is the sum (and mean) of
its E returns.

The copies are plain Gymnasium environments stepped from one loop (a vector environment would keep
stepping, and auto-resetting, copies whose episode is over). Determinism: an episode is a pure
function of the member's parameters, its reset seed and the frozen observation normalisation,
provided the environment's ``reset(seed=...)`` fixes its randomness (Gymnasium's do).

:func:`episode_seeds` derives the reset seeds from a context seed; :func:`evaluate_policy` runs
one parameter vector over fresh episodes (the score of a result).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_int, to_numpy
from ..errors import ConfigError
from ..hashing import Hasher
from .envs import make_env
from .policy import MLPPolicy

__all__ = ["RolloutResult", "rollout", "episode_seeds", "evaluate_policy", "EnvPool", "DEFAULT_MAX_STEPS"]

#: The step limit of an environment without one (``spec.max_episode_steps`` is None).
DEFAULT_MAX_STEPS = 1000


def episode_seeds(context_seed: int, episodes: int) -> list[int]:
    """Reset seeds (ints in [0, 2**32): environments seeding NumPy's legacy RandomState, such as
    MinAtar's, take no more) of episodes ``0..episodes-1`` of a context (a run seed, a generation and a
    stage folded into one int by the engine)."""
    E = check_int(episodes, "episodes", 1, 1 << 20)
    h = Hasher(check_int(context_seed, "context_seed", 0, 2**64 - 1))
    return [int.from_bytes(h.copy().update(("episode", e)).digest()[:4], "little") for e in range(E)]


@dataclass
class RolloutResult:
    """returns : float64 [P, E]; steps : int64 [P] (environment steps per member);
    obs_count : float64 [P]; obs_sum, obs_sumsq : float64 [P, O] of ``obs - ref`` over the
    observations the policy acted on (None unless asked for)."""

    returns: np.ndarray
    steps: np.ndarray
    obs_count: np.ndarray | None = None
    obs_sum: np.ndarray | None = None
    obs_sumsq: np.ndarray | None = None

    @property
    def mean_return(self) -> np.ndarray:
        return self.returns.mean(axis=1)


class EnvPool:
    """Environment copies made from one ``env`` (id, factory or object), grown on demand and reused."""

    def __init__(self, env: Any, env_kwargs: dict | None = None) -> None:
        first = make_env(env, env_kwargs)
        self.env, self.env_kwargs = env, env_kwargs
        self.envs = [first]
        self.observation_space, self.action_space = first.observation_space, first.action_space
        spec = getattr(first, "spec", None)
        self.max_episode_steps = getattr(spec, "max_episode_steps", None)

    def take(self, n: int) -> list:
        while len(self.envs) < n:
            self.envs.append(make_env(self.env, self.env_kwargs))
        return self.envs[:n]

    def close(self) -> None:
        for e in self.envs:
            try:
                e.close()
            except Exception:  # closing is best effort
                pass
        self.envs = []


def _normalise(x: np.ndarray, obs_norm: tuple | None) -> np.ndarray:
    if obs_norm is None:
        return x
    mean, std, clip = obs_norm
    y = (x - mean) / std
    if np.isfinite(clip):
        np.clip(y, -clip, clip, out=y)
    return y


def rollout(policy: MLPPolicy, envs: list, params: np.ndarray, seeds: list[int], *, max_steps: int,
            obs_norm: tuple | None = None, stats: bool = False) -> RolloutResult:
    """One episode per (member, seed) in lockstep (see the module doc).

    policy : MLPPolicy; envs : at least P * E environments (copy ``p * E + e`` runs member p's
    episode e); params : float32 [P, D]; seeds : E reset seeds; max_steps : the step limit of an
    episode; obs_norm : ``(mean [O], std [O], clip)`` or None; stats : also count the observations
    (``obs - mean`` sums, for :class:`~evoforge.neuro.obs_norm.ObsNorm`)."""
    if not isinstance(policy, MLPPolicy):
        raise TypeError(f"policy must be an MLPPolicy, got {type(policy).__name__}")
    params = to_numpy(params, "params")
    if params.dtype != np.float32 or params.ndim != 2 or params.shape[1] != policy.n_params:
        raise ValueError(f"params must be float32 of shape (P, {policy.n_params}), got {params.dtype} {params.shape}")
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple, np.ndarray)):
        raise TypeError(f"seeds must be a list of reset seeds, got {type(seeds).__name__}")
    seeds = [check_int(s, f"seeds[{i}]", 0, 2**64 - 1) for i, s in enumerate(list(seeds))]
    if not seeds:
        raise ValueError("seeds must hold at least one reset seed (one per episode)")
    if not isinstance(envs, (list, tuple)):
        raise TypeError(f"envs must be a list of environments, got {type(envs).__name__}")
    P, E = params.shape[0], len(seeds)
    S, O = P * E, policy.obs_dim
    if len(envs) < S:
        raise ValueError(f"rollout needs {S} environments ({P} members x {E} episodes), got {len(envs)}")
    T = check_int(max_steps, "max_steps", 1, 1 << 40)
    raw: list[Any] = [None] * S
    for i in range(S):
        raw[i] = envs[i].reset(seed=int(seeds[i % E]))[0]
    x = policy.flatten_obs(np.stack([np.asarray(o) for o in raw]) if S else np.zeros((0, O)), (S,))
    returns = np.zeros(S)
    steps = np.zeros(S, np.int64)
    live = np.ones(S, bool)
    ref = obs_norm[0].astype(np.float64) if obs_norm is not None else np.zeros(O)
    if stats:
        o_sum, o_sq = np.zeros((S, O)), np.zeros((S, O))
    for _ in range(T):
        idx = np.flatnonzero(live)
        if idx.size == 0:
            break
        if stats:
            d = x[idx].astype(np.float64) - ref
            o_sum[idx] += d
            o_sq[idx] += d * d
        members = np.unique(idx // E)
        xn = _normalise(x.reshape(P, E, O), obs_norm)
        if members.size < P // 2:  # few members still running: the forward of those rows only
            acts = np.empty((P, E) + (() if policy.discrete else policy.action_shape),
                            np.int64 if policy.discrete else np.float32)
            acts[members] = policy.act(params[members], xn[members])
        else:
            acts = policy.act(params, xn)
        acts = acts.reshape((S,) + acts.shape[2:])[idx]
        if policy.discrete:
            acts = acts.tolist()
        n = idx.size
        obs, rew, done = [None] * n, [0.0] * n, [False] * n
        for k, i in enumerate(idx.tolist()):
            o, r, terminated, truncated, _ = envs[i].step(acts[k])
            obs[k], rew[k], done[k] = o, r, terminated or truncated
        x[idx] = policy.flatten_obs(np.stack([np.asarray(o) for o in obs]), (n,))
        returns[idx] += np.asarray(rew, dtype=np.float64)
        live[idx[np.asarray(done, dtype=bool)]] = False
        steps[idx] += 1
    res = RolloutResult(returns.reshape(P, E), steps.reshape(P, E).sum(axis=1))
    if stats:
        res.obs_count = res.steps.astype(np.float64)
        res.obs_sum = o_sum.reshape(P, E, O).sum(axis=1)
        res.obs_sumsq = o_sq.reshape(P, E, O).sum(axis=1)
    return res


def evaluate_policy(env: Any, policy: MLPPolicy, params: Any, *, episodes: int = 20, seed: int = 0,
                    max_steps: int | None = None, obs_norm: tuple | None = None,
                    env_kwargs: dict | None = None) -> np.ndarray:
    """float64 [episodes]: the returns of one parameter vector ``params`` (float32 [D]) on
    ``episodes`` episodes whose reset seeds derive from ``seed`` (all stepped in lockstep)."""
    if not isinstance(policy, MLPPolicy):
        raise TypeError(f"policy must be an MLPPolicy, got {type(policy).__name__}")
    p = np.asarray(params)
    if p.dtype != np.float32 or p.shape != (policy.n_params,):
        raise ValueError(f"params must be float32 of shape ({policy.n_params},), got {p.dtype} {p.shape}")
    E = check_int(episodes, "episodes", 1, 1 << 16)
    pool = EnvPool(env, env_kwargs)
    try:
        check_compatible(policy, pool)
        T = resolve_max_steps(max_steps, pool)
        return rollout(policy, pool.take(E), p[None], episode_seeds(seed, E), max_steps=T,
                       obs_norm=obs_norm).returns[0]
    finally:
        pool.close()


def resolve_max_steps(max_steps: int | None, pool: EnvPool) -> int:
    """``max_steps`` checked, or the environment's own limit, or :data:`DEFAULT_MAX_STEPS`."""
    if max_steps is not None:
        return check_int(max_steps, "max_steps", 1, 1 << 40)
    return int(pool.max_episode_steps or DEFAULT_MAX_STEPS)


def check_compatible(policy: MLPPolicy, pool: EnvPool) -> None:
    """ConfigError unless ``policy`` is the one its class makes for the pool's spaces with its own
    architecture (:meth:`MLPPolicy.like`)."""
    want = policy.like(pool.observation_space, pool.action_space)
    if want != policy:
        raise ConfigError(f"the policy {policy.describe()} does not fit the environment's spaces "
                          f"({pool.observation_space}, {pool.action_space}); expected {want.describe()}")
