"""What the neuroevolution engines share: the policy, the shared observation normalisation, the
per-generation context sent to the evaluators, cache keys and the environment-step count.

Symbols: B candidates, O observation size, D parameters.

A neuro engine is an :class:`evoforge.search.engine.Engine` (ask/tell, ``run``, checkpoint and
resume, the evaluation cache, history), with two stages per generation: stage 0 evaluates the
population, stage 1 re-evaluates a few candidates over more episodes (Deep GA: the elite
candidates; OpenAI-ES: the mean). Its evaluator is a
:class:`~evoforge.neuro.evaluator.PolicyEvaluator` (or a backend of them): before each batch the
engine sends it the context of the generation (``set_context``: the frozen observation
normalisation, the ES mean, and ``report``), through ``backend.broadcast`` when it is a backend, and
only when it changed. Rows come back as ``[-mean return, steps, obs sums [O], obs squares [O]]``,
which is why ``n_objectives`` is ``2 (+ 2 O)``: one objective, the rest bookkeeping kept by the cache.

Each generation's history record holds ``env_steps`` (cumulative), ``genome_bytes`` (the bytes of the
genome arrays sent to the evaluators this generation) and ``weight_bytes`` (what their float32
parameters would have been); OpenAI-ES also sends the mean (4 D bytes) to each worker once per
generation with the context.

Cache key of a candidate: its genome (a seed list without its padding), the episodes, the episode
seed, the task (policy, hyperparameters) and the digest of the context, so a cached fitness is only
reused for the very same evaluation.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from .._checks import check_int, check_real
from ..errors import ConfigError
from ..hashing import Hasher, genotype_hash
from ..search.engine import MAX_POPULATION, Engine
from ..search.protocol import Batch
from .obs_norm import ObsNorm
from .policy import MLPPolicy

__all__ = ["NeuroEngine"]


class NeuroEngine(Engine):
    """Base of :class:`~evoforge.neuro.deep_ga.DeepGA` and :class:`~evoforge.neuro.openai_es.OpenAIES`.

    policy : MLPPolicy; pop_size : int; episodes : episodes per candidate in stage 0; obs_norm :
    share a running observation normalisation (see :mod:`evoforge.neuro.obs_norm`); obs_clip : its
    clip; the rest as for :class:`~evoforge.search.engine.Engine`."""

    encoding: str = ""
    min_pop: int = 2

    def __init__(self, policy: MLPPolicy, *, pop_size: int, episodes: int, obs_norm: bool, obs_clip: float,
                 hyper: dict, seed: int, run_dir: Any, cache: Any, task: str, progress: bool) -> None:
        if not isinstance(policy, MLPPolicy):
            raise TypeError(f"policy must be an MLPPolicy (MLPPolicy.from_spaces(env.observation_space, "
                            f"env.action_space)), got {type(policy).__name__}")
        self.pop_size = check_int(pop_size, "pop_size", self.min_pop, MAX_POPULATION, integral_float=True)
        self.episodes = check_int(episodes, "episodes", 1, 1 << 16, integral_float=True)
        if not isinstance(obs_norm, (bool, np.bool_)):
            raise TypeError(f"obs_norm must be a bool, got {type(obs_norm).__name__}")
        obs_clip = check_real(obs_clip, "obs_clip")
        if not obs_clip > 0:
            raise ConfigError(f"obs_clip must be > 0 (inf: no clipping), got {obs_clip}")
        self.policy = policy
        self.obs_norm = ObsNorm(policy.obs_dim, clip=obs_clip) if obs_norm else None
        self.n_objectives = 2 + (2 * policy.obs_dim if obs_norm else 0)
        self.hyper = dict(hyper, pop_size=self.pop_size, episodes=self.episodes, obs_norm=bool(obs_norm),
                          obs_clip=float(obs_clip))
        if not isinstance(task, str):
            raise TypeError(f"task must be a str, got {type(task).__name__}")
        ident = Hasher().update((type(self).__name__, policy.describe(), self.hyper)).hexdigest()[:16]
        super().__init__(seed=seed, run_dir=run_dir, cache=cache, task=f"{task}|neuro:{ident}", progress=progress)
        self.env_steps = 0
        self.stage = 0
        self._ctx_digest = b""
        self._pushed: Any = None
        self._pending_stats: list = []
        self._sent = [0, 0]
        self._best_norm: tuple | None = None

    # ---- the per-generation context ---------------------------------------------------------------

    def context(self) -> dict:
        """What the evaluators need this generation (see :meth:`PolicyEvaluator.set_context`)."""
        return {"obs_norm": self.obs_norm.state() if self.obs_norm is not None else None, "report": True}

    def _digest(self, ctx: dict) -> bytes:
        norm = ctx.get("obs_norm")
        return Hasher().update((norm, ctx.get("center"), self.encoding)).digest()

    def push_context(self, evaluator: Any) -> None:
        """Send :meth:`context` to ``evaluator``: ``set_context`` on an evaluator (every time: it is
        cheap), ``broadcast("set_context", ...)`` on a backend unless this engine already broadcast the
        same context to it (each broadcast travels to every worker). ``run`` does this before every
        batch; call it yourself before evaluating a batch of :meth:`ask` by hand."""
        ctx = self.context()
        if not callable(getattr(evaluator, "broadcast", None)):
            if not callable(getattr(evaluator, "set_context", None)):
                raise ConfigError(f"{type(self).__name__} evaluates with a PolicyEvaluator (or a backend whose "
                                  f"factory builds one), got {type(evaluator).__name__} without set_context")
            evaluator.set_context(ctx)
            return
        d = self._digest(ctx)
        ref = self._pushed[0]() if self._pushed is not None else None
        if ref is evaluator and self._pushed[1] == d:
            return
        evaluator.broadcast("set_context", ctx)
        try:
            self._pushed = (weakref.ref(evaluator), d)
        except TypeError:  # not weakly referable: broadcast every time
            self._pushed = None

    def evaluate(self, batch: Batch, evaluator: Any) -> tuple[np.ndarray, np.ndarray | None]:
        enc = getattr(evaluator, "encoding", self.encoding)
        if enc != self.encoding:
            raise ConfigError(f"{type(self).__name__} sends {self.encoding!r} genomes; the evaluator decodes {enc!r} "
                              f"(build it with encoding={self.encoding!r})")
        sigma = getattr(evaluator, "sigma", None)
        if sigma is not None and self.hyper.get("sigma") is not None and float(sigma) != self.hyper["sigma"]:
            raise ConfigError(f"the evaluator's sigma {sigma} is not the engine's {self.hyper['sigma']}")
        pol = getattr(evaluator, "policy", None)
        if pol is not None and pol != self.policy:
            shown = pol.describe() if isinstance(pol, MLPPolicy) else repr(pol)
            raise ConfigError(f"the evaluator's policy {shown} is not the engine's {self.policy.describe()}")
        self.push_context(evaluator)
        return super().evaluate(batch, evaluator)

    def _batch(self, genomes: np.ndarray, episodes: int, stage: int) -> Batch:
        self._ctx_digest = self._digest(self.context())
        return Batch(genomes, fidelity=episodes, seed=self.stream_seed(self.generation, stage),
                     generation=self.generation, stage=stage)

    def key(self, genome: np.ndarray, batch: Batch) -> bytes:
        return (Hasher().update(self._genome_key(genome)).update((batch.fidelity, batch.seed, self.task))
                .update(self._ctx_digest).digest())

    def _genome_key(self, genome: np.ndarray) -> Any:
        return genotype_hash(genome)

    # ---- rows -> fitness and bookkeeping ----------------------------------------------------------

    def _rows(self, F: np.ndarray) -> np.ndarray:
        """Fitness [B] of told rows; counts their steps and keeps their observation statistics."""
        F = np.asarray(F, np.float64).reshape(len(F), self.n_objectives)
        self.env_steps += int(F[:, 1].sum())
        if self.obs_norm is not None:
            O = self.policy.obs_dim
            self._pending_stats.append((F[:, 1].copy(), F[:, 2:2 + O].copy(), F[:, 2 + O:].copy()))
        return F[:, 0].copy()

    def _start_rows(self) -> None:
        self._pending_stats = []
        self._sent = [0, 0]  # this generation: bytes of the genomes sent, bytes of their float32 weights

    def _merge_stats(self) -> None:
        """At the end of a generation: merge the generation's observation statistics, then freeze."""
        if self.obs_norm is not None and self._pending_stats:
            counts = np.concatenate([c for c, _, _ in self._pending_stats])
            sums = np.concatenate([s for _, s, _ in self._pending_stats])
            sq = np.concatenate([q for _, _, q in self._pending_stats])
            self.obs_norm.update(counts, sums, sq)
            self.obs_norm.freeze()
        self._pending_stats = []

    def _tell(self, batch: Batch, F: np.ndarray, cv: np.ndarray | None) -> None:
        if batch.stage != self.stage:
            raise ValueError(f"a stage-{batch.stage} batch told while stage {self.stage} is pending")
        if self.stage == 0:
            self._start_rows()
        f = self._rows(F)
        self._sent[0] += int(batch.genomes.nbytes)
        self._sent[1] += len(batch.genomes) * self.policy.n_params * 4
        if self.stage == 0:
            self._tell_population(batch, f)
            self.stage = 1
        else:
            self.stage = 0
            record = self._tell_second(batch, f)
            self._merge_stats()
            self._end_generation(env_steps=self.env_steps, genome_bytes=self._sent[0], weight_bytes=self._sent[1],
                                 **record)

    def _tell_population(self, batch: Batch, f: np.ndarray) -> None:
        raise NotImplementedError

    def _tell_second(self, batch: Batch, f: np.ndarray) -> dict:
        raise NotImplementedError

    def best_params(self) -> np.ndarray | None:
        """float32 [D]: the parameters of the best policy so far (None before the first generation)."""
        raise NotImplementedError

    def obs_norm_state(self) -> tuple | None:
        """``(mean, std, clip)`` the best policy was evaluated with (and is to be run with), or None
        (no normalisation)."""
        return self._best_norm

    # ---- persistence -------------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_pushed"] = None
        return state
