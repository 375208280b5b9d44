"""A policy saved to one ``.npz`` file: its parameters, its architecture and the observation
normalisation it runs with, so that it can be rebuilt and run without the run that found it.

Symbols: D parameters, O observation size.

Arrays of the file (``numpy.savez``, no pickles: ``numpy.load(allow_pickle=False)`` reads it):

* ``params`` float32 [D];
* ``policy`` the JSON of :meth:`MLPPolicy.describe` (``"kind": "conv"`` for a
  :class:`~evoforge.neuro.conv_policy.ConvPolicy`), as a 0-d string array;
* ``obs_mean``, ``obs_std`` float32 [O] and ``obs_clip`` float64 [] when the policy runs with an
  observation normalisation;
* ``meta`` JSON of what the caller adds (the environment id and its kwargs, the algorithm, ...).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import check_int
from ..errors import ConfigError
from .conv_policy import ConvPolicy
from .policy import MLPPolicy
from .rollout import evaluate_policy

__all__ = ["SavedPolicy", "save_policy", "load_policy", "policy_from_description"]


def policy_from_description(d: dict) -> MLPPolicy:
    """The policy (MLP or conv) of a :meth:`MLPPolicy.describe` dict."""
    if not isinstance(d, dict):
        raise TypeError(f"a policy description must be a dict, got {type(d).__name__}")
    kind = d.get("kind", "mlp")
    if kind == "conv":
        return ConvPolicy.from_description(d)
    if kind == "mlp":
        return MLPPolicy.from_description(d)
    raise ConfigError(f"unknown policy kind {kind!r} (mlp or conv)")


def policy_action(policy: Any, params: np.ndarray, obs_norm: tuple | None, obs: Any) -> Any:
    """The action of one policy (parameters [D], observation normalisation ``(mean, std, clip)`` or
    None) for one observation, as the environment takes it (an int for a discrete action space)."""
    x = policy.flatten_obs(obs, (1, 1))
    if obs_norm is not None:
        mean, std, clip = obs_norm
        x = np.clip((x - mean) / std, -clip, clip)
    a = policy.act(params[None], x)[0, 0]
    return int(a) if policy.discrete else a


@dataclass
class SavedPolicy:
    """A policy, its parameters (float32 [D]), its observation normalisation ``(mean, std, clip)`` or
    None, and the file's ``meta`` dict."""

    policy: MLPPolicy
    params: np.ndarray
    obs_norm: tuple | None = None
    meta: dict = field(default_factory=dict)

    def act(self, obs: Any) -> Any:
        """The action for one observation, as the environment takes it."""
        return policy_action(self.policy, self.params, self.obs_norm, obs)

    def evaluate(self, env: Any = None, *, episodes: int = 20, seed: int = 2**32 + 7,
                 max_steps: int | None = None) -> np.ndarray:
        """float64 [episodes]: returns on fresh episodes (default env: ``meta["env"]`` with
        ``meta["env_kwargs"]``)."""
        kwargs = None
        if env is None:
            env, kwargs = self.meta.get("env"), self.meta.get("env_kwargs") or None
            if not isinstance(env, str):
                raise ConfigError("the saved policy names no environment id: pass env")
        return evaluate_policy(env, self.policy, self.params, episodes=episodes, seed=seed, max_steps=max_steps,
                               obs_norm=self.obs_norm, env_kwargs=kwargs)


def save_policy(path: str | os.PathLike, policy: MLPPolicy, params: Any, obs_norm: tuple | None = None,
                meta: dict | None = None) -> Path:
    """Write ``policy`` with ``params`` (float32 [D]) and ``obs_norm`` to ``path`` (see the module doc);
    ``meta`` must be JSON-serialisable. Returns the path."""
    if not isinstance(policy, MLPPolicy):
        raise TypeError(f"policy must be an MLPPolicy or a ConvPolicy, got {type(policy).__name__}")
    p = np.asarray(params)
    if p.dtype != np.float32 or p.shape != (policy.n_params,):
        raise ValueError(f"params must be float32 of shape ({policy.n_params},), got {p.dtype} {p.shape}")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    arrays = {"params": p, "policy": np.array(json.dumps(policy.describe())),
              "meta": np.array(json.dumps(meta or {}))}
    if obs_norm is not None:
        mean, std, clip = obs_norm
        arrays.update(obs_mean=np.asarray(mean, np.float32), obs_std=np.asarray(std, np.float32),
                      obs_clip=np.asarray(float(clip)))
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, out)
    return out


def load_policy(path: str | os.PathLike) -> SavedPolicy:
    """The :class:`SavedPolicy` of a file written by :func:`save_policy`."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{str(p)!r} is a directory, not a saved policy (.npz)")
    if not p.is_file():
        raise FileNotFoundError(f"saved policy not found: {str(p)!r}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        desc, meta = json.loads(str(arrays["policy"])), json.loads(str(arrays.get("meta", "{}")))
    except (KeyError, ValueError, OSError, EOFError) as e:
        raise ConfigError(f"{str(p)!r} is not a saved policy ({type(e).__name__}: {e})") from None
    policy = policy_from_description(desc)
    params = np.ascontiguousarray(arrays["params"], dtype=np.float32).reshape(-1)
    if params.size != policy.n_params:
        raise ConfigError(f"{str(p)!r} holds {params.size} parameters; its policy has {policy.n_params}")
    norm = None
    if "obs_mean" in arrays:
        O = check_int(policy.obs_dim, "obs_dim", 1)
        mean, std = arrays["obs_mean"].astype(np.float32), arrays["obs_std"].astype(np.float32)
        if mean.shape != (O,) or std.shape != (O,):
            raise ConfigError(f"{str(p)!r}: the observation normalisation does not hold {O} values")
        norm = (mean, std, float(arrays["obs_clip"]))
    return SavedPolicy(policy, params, norm, meta if isinstance(meta, dict) else {})
