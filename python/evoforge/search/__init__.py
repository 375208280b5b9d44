"""Model-agnostic search engines: they see genomes, an evaluator and an evaluation cache.

Every engine has ask()/tell() and run(), evaluates through :class:`evoforge.cache.EvaluationCache`,
checkpoints after every generation when given a ``run_dir`` (resume with ``Engine.resume``), and
writes a history (``history.jsonl``) that :mod:`evoforge.plot` draws.
"""

from .cmaes import CMAES
from .engine import Engine, Result
from .ga import GA
from .protocol import Backend, Batch, Evaluator, open_backend, register_backend
from .nsga2 import NSGA2
from .one_plus_lambda import OnePlusLambda
from .screening import Screen
from .operators import (
    SBX,
    Crossover,
    GaussianMutation,
    LevelSwitch,
    Mutation,
    OnePointCrossover,
    PointMutation,
    PolynomialMutation,
    TwoPointCrossover,
    UniformCrossover,
)

__all__ = [
    "Batch", "Engine", "Evaluator", "Result", "OnePlusLambda", "NSGA2", "GA", "CMAES", "Screen",
    "Mutation", "PointMutation", "GaussianMutation", "PolynomialMutation", "LevelSwitch",
    "Crossover", "SBX", "UniformCrossover", "OnePointCrossover", "TwoPointCrossover",
]
