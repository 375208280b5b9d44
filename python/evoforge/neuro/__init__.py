"""Neuroevolution on Gymnasium environments (issue 20): Deep GA over seed-list genomes and OpenAI-ES.

* :class:`MLPPolicy` (:mod:`~evoforge.neuro.policy`): an MLP's flat float32 layout and the batched
  forward of a whole population (one stacked matmul per layer), discrete and continuous actions;
  :class:`ConvPolicy` (:mod:`~evoforge.neuro.conv_policy`): a conv layer before it, for image
  observations (MinAtar).
* :func:`rollout` (:mod:`~evoforge.neuro.rollout`): the population's episodes stepped in lockstep,
  common reset seeds, a step limit; :func:`evaluate_policy` scores one policy.
* :class:`ObsNorm` (:mod:`~evoforge.neuro.obs_norm`): the observation normalisation shared by the
  population, frozen within a generation.
* Seed-list genomes (:mod:`~evoforge.neuro.genome`): :func:`encode` / :func:`decode`, the parameter
  cache :class:`ParamCache` (a child from its cached parent), :func:`payload_bytes` (seeds against
  weights).
* :class:`PolicyEvaluator` (:mod:`~evoforge.neuro.evaluator`): genomes -> parameters -> rollouts ->
  fitness, in the driver or in each worker of a backend.
* Engines (ask/tell, checkpoint and resume, cache, backends): :class:`DeepGA`, :class:`OpenAIES`.
* :func:`evolve`: the one-call API.
* A run's files: :func:`write_run` (:mod:`~evoforge.neuro.report`: ``best_policy.npz``, ``curve.png``,
  ``report.json``), :func:`save_policy` / :func:`load_policy` (:mod:`~evoforge.neuro.saved`),
  :func:`plot_curve` (:mod:`~evoforge.neuro.curve`), :func:`play` (:mod:`~evoforge.neuro.play`: returns
  and a video). The command line: ``evoforge neuro`` and ``evoforge neuro play``.

Needs ``gymnasium`` (``pip install evoforge[neuro]``); it is imported when an environment is made.
"""

from __future__ import annotations

from .api import ALGORITHMS, EvolveResult, evolve
from .conv_policy import ConvPolicy
from .curve import load_curve, plot_curve
from .deep_ga import DeepGA
from .engine import NeuroEngine
from .envs import make_env
from .evaluator import ENCODINGS, PolicyEvaluator
from .genome import ParamCache, decode, derive_seed, encode, payload_bytes
from .obs_norm import ObsNorm
from .openai_es import OpenAIES, centered_ranks
from .play import play
from .policy import SUPPORTED_ACTION_SPACES, MLPPolicy
from .report import write_run
from .rollout import RolloutResult, episode_seeds, evaluate_policy, rollout
from .saved import SavedPolicy, load_policy, save_policy

__all__ = ["MLPPolicy", "SUPPORTED_ACTION_SPACES", "make_env", "rollout", "RolloutResult", "episode_seeds",
           "evaluate_policy", "ObsNorm", "encode", "decode", "derive_seed", "ParamCache", "payload_bytes",
           "PolicyEvaluator", "ENCODINGS", "NeuroEngine", "DeepGA", "OpenAIES", "centered_ranks", "evolve",
           "EvolveResult", "ALGORITHMS", "ConvPolicy", "plot_curve", "load_curve", "play", "write_run", "SavedPolicy",
           "save_policy", "load_policy"]
