"""``evolve``: a policy for a Gymnasium environment by Deep GA or OpenAI-ES, in one call.

Symbols: D parameters of the policy.

::

    from evoforge.neuro import evolve

    r = evolve("CartPole-v1", algo="ga", pop=64, generations=20, seed=0, target_return=475)
    r.best_return, r.curve[-1], r.evaluate(episodes=20).mean()

With ``run_dir`` the run checkpoints every generation; calling ``evolve`` again with the same
arguments and ``run_dir`` resumes it (after a crash or a kill -9) and gives the same result as an
uninterrupted run. ``backend`` picks where the rollouts run (``"inprocess"``, ``"process"``, ``"ray"``;
see :mod:`evoforge.evaluate`): each worker builds its own :class:`PolicyEvaluator` and receives
compact genomes (seed lists for Deep GA, ``(seed, sign)`` pairs for ES), never weights per
candidate. An ``env`` given as an object or a factory must then be picklable.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import check_int, check_real
from ..errors import ConfigError
from ..search.engine import CHECKPOINT
from ..search.protocol import open_backend
from .deep_ga import DeepGA
from .engine import NeuroEngine
from .evaluator import PolicyEvaluator
from .openai_es import OpenAIES
from .policy import MLPPolicy
from .rollout import evaluate_policy
from .saved import policy_action

__all__ = ["evolve", "EvolveResult", "ALGORITHMS"]

#: ``algo`` names and their engines.
ALGORITHMS = {"ga": DeepGA, "es": OpenAIES}
_DEFAULT_SIGMA = {"ga": 0.05, "es": 0.05}


@dataclass
class EvolveResult:
    """What :func:`evolve` found.

    params : float32 [D] -- the best policy's parameters (None if no generation ran)
    policy : MLPPolicy; obs_norm : (mean, std, clip) the policy runs with, or None
    best_return : its mean return when it was chosen (Deep GA: the elite's re-evaluation; ES: the mean's)
    curve : one dict per generation (``generation``, ``best_return``, ``mean_return``, ``max_return``,
        ``env_steps`` (cumulative), ``seconds``, ...), the history of the run
    env_steps : environment steps of the whole run; seconds : wall time of this call
    stopped : why the run ended (``"generations"``, ``"target"``)
    genome : Deep GA: the best policy's encoded seed list, uint64 [1 + n] (what a worker is sent
        instead of its 4 D bytes of weights); None for OpenAI-ES
    """

    params: np.ndarray | None
    policy: MLPPolicy
    obs_norm: tuple | None
    best_return: float | None
    curve: list = field(default_factory=list)
    generations: int = 0
    env_steps: int = 0
    seconds: float = 0.0
    algo: str = "ga"
    env: Any = None
    run_dir: Path | None = None
    stopped: str | None = None
    env_kwargs: dict | None = None
    genome: np.ndarray | None = None

    def act(self, obs: Any) -> Any:
        """The best policy's action for one observation (as the environment takes it)."""
        if self.params is None:
            raise ConfigError("no policy yet: the run evaluated no generation")
        return policy_action(self.policy, self.params, self.obs_norm, obs)

    def evaluate(self, env: Any = None, *, episodes: int = 20, seed: int = 2**32 + 7,
                 max_steps: int | None = None) -> np.ndarray:
        """float64 [episodes]: the best policy's returns on fresh episodes (default: the run's env,
        with reset seeds unlike the ones of the search)."""
        if self.params is None:
            raise ConfigError("no policy yet: the run evaluated no generation")
        return evaluate_policy(self.env if env is None else env, self.policy, self.params, episodes=episodes,
                               seed=seed, max_steps=max_steps, obs_norm=self.obs_norm,
                               env_kwargs=self.env_kwargs if env is None else None)


def evolve(env: Any, algo: str = "ga", *, pop: int = 256, generations: int = 100, seed: int = 0,
           run_dir: Any = None, hidden: Any = (64,), episodes: int = 1, sigma: float | None = None,
           max_steps: int | None = None, target_return: float | None = None, backend: str = "inprocess",
           backend_options: dict | None = None, env_kwargs: dict | None = None, progress: bool = False,
           policy: MLPPolicy | None = None, **algo_kwargs: Any) -> EvolveResult:
    """Evolve a policy for ``env`` (a Gymnasium id, a factory or an Env object).

    algo : ``"ga"`` (:class:`DeepGA`) or ``"es"`` (:class:`OpenAIES`); pop : population size;
    generations : generations in total (a resumed run counts those done); seed : the run's seed;
    run_dir : checkpoint directory (resumed when it holds a checkpoint); hidden : the MLP's widths;
    episodes : per candidate; sigma : mutation / perturbation power (default 0.05); max_steps :
    per episode (default: the environment's limit); target_return : stop once the best return
    reaches it; backend, backend_options : where rollouts run (``open_backend(backend, factory,
    **backend_options)``); algo_kwargs : the engine's other parameters (``truncation``,
    ``elite_episodes``, ``lr``, ``obs_norm``, ``task``, ...); policy : the architecture to evolve
    instead of an MLP of widths ``hidden`` (e.g. :meth:`ConvPolicy.from_spaces
    <evoforge.neuro.conv_policy.ConvPolicy.from_spaces>` for image observations); it must fit the
    environment's spaces.
    """
    t0 = time.perf_counter()
    if not isinstance(algo, str) or algo not in ALGORITHMS:
        raise ConfigError(f"algo must be one of {sorted(ALGORITHMS)}, got {algo!r}")
    generations = check_int(generations, "generations", 0, 1 << 31)
    seed = check_int(seed, "seed", 0, 2**63 - 1)
    sigma = _DEFAULT_SIGMA[algo] if sigma is None else check_real(sigma, "sigma")
    if target_return is not None:
        target_return = check_real(target_return, "target_return")
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a backend name (str), got {type(backend).__name__}")
    if backend_options is not None and not isinstance(backend_options, dict):
        raise TypeError(f"backend_options must be a dict, got {type(backend_options).__name__}")
    if backend == "inprocess" and backend_options:
        raise ConfigError(f"the in-process backend takes no options, got {sorted(backend_options)}")
    cls = ALGORITHMS[algo]
    if policy is not None and not isinstance(policy, MLPPolicy):
        raise TypeError(f"policy must be an MLPPolicy, a ConvPolicy or None, got {type(policy).__name__}")
    evaluator = PolicyEvaluator(env, policy, hidden=hidden, encoding=cls.encoding, sigma=sigma, episodes=episodes,
                                max_steps=max_steps, seed=seed, env_kwargs=env_kwargs)
    policy = evaluator.policy
    try:
        engine = _open(cls, policy, run_dir, dict(pop_size=pop, sigma=sigma, episodes=episodes, seed=seed,
                                                  progress=progress, **algo_kwargs))
    except BaseException:
        evaluator.close()
        raise
    runner: Any = evaluator
    try:
        if backend != "inprocess":
            evaluator.close()
            factory = functools.partial(PolicyEvaluator, env, policy, encoding=cls.encoding, sigma=sigma,
                                        episodes=episodes, max_steps=max_steps, seed=seed, env_kwargs=env_kwargs)
            runner = open_backend(backend, factory, **(backend_options or {}))
        res = engine.run(runner, generations=generations,
                         target=None if target_return is None else -target_return, stall_generations=None)
    finally:
        if runner is not evaluator:
            runner.close()
        evaluator.close()
        engine.close()
    genome, best = engine.best
    return EvolveResult(engine.best_params(), policy, engine.obs_norm_state(), None if best is None else -best,
                        list(res.history), res.generations, engine.env_steps, time.perf_counter() - t0, algo, env,
                        engine.run_dir, res.stopped, env_kwargs, genome if cls.encoding == "seeds" else None)


def _open(cls: type, policy: MLPPolicy, run_dir: Any, kw: dict) -> NeuroEngine:
    """A new engine (in ``run_dir`` if given), or the run checkpointed in ``run_dir``, which must have
    been started with the same settings."""
    if run_dir is None:
        return cls(policy, **kw)
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run_dir {str(path)!r} exists and is not a directory")
    if not (path / CHECKPOINT).is_file():
        return cls(policy, run_dir=path, **kw)
    probe = cls(policy, **kw)
    probe.close()
    engine = cls.resume(path, progress=kw.get("progress", False))
    if not (engine.policy == probe.policy and engine.hyper == probe.hyper and engine.seed == probe.seed
            and engine.task == probe.task):
        engine.close()
        raise ConfigError(f"run_dir {str(path)!r} holds a {cls.__name__} run with other settings "
                          f"({engine.hyper}, seed {engine.seed}); use a new run_dir")
    return engine
