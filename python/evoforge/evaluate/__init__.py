"""Where fitness is computed: in the driver, in a local process pool, or on a Ray cluster.

Every backend is an evaluator for the engines of :mod:`evoforge.search` (``engine.run(backend)``)
and gives the same search result as in-process evaluation for the same seed::

    from evoforge.evaluate import open_backend

    def make_fitness():                      # picklable; runs once per worker
        return KLFitness(adapt(load(...)), provider, calib)

    with open_backend("ray", make_fitness, address="auto", timeout=600) as backend:
        result = OnePlusLambda(...).run(backend, generations=50)

``"inprocess"`` (the default of the engines), ``"process"`` (:class:`ProcessPool`) and ``"ray"``
(:class:`RayBackend`, needs ``pip install evoforge[ray]``). Workers that die or hang are
restarted and their candidates re-dispatched; with a run directory, the engine stores each
result in its cache as it arrives, so a killed driver resumes without re-evaluating them.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, EvaluationError
from ..search.protocol import Backend, EvaluatorFactory, open_backend, register_backend
from .dispatch import WorkerPool
from .in_process import InProcess
from .process_pool import ProcessPool
from .protocol import Replica, Task
from .ray_actors import RayBackend  # ray itself is imported on use (optional)

__all__ = ["BACKENDS", "Backend", "EvaluationError", "EvaluatorFactory", "InProcess", "ProcessPool",
           "RayBackend", "Replica", "Task", "WorkerPool", "open_backend"]

BACKENDS = ("inprocess", "process", "ray")


def _in_process(factory: EvaluatorFactory, **options: Any) -> Backend:
    """``factory()`` called once here; no options."""
    if options:
        raise ConfigError(f"the in-process backend takes no options, got {sorted(options)}")
    return InProcess(factory())


# open_backend (evoforge.search.protocol) finds these by name; `import evoforge` runs this module.
register_backend("inprocess", _in_process)
register_backend("process", ProcessPool)
register_backend("ray", RayBackend)
