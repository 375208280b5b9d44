"""A program search by task name, into a resumable run directory: what ``evoforge programs NAME``
runs.

Tasks (:data:`TASKS`): ``exp2`` and ``log2`` (:class:`FunctionTask`, NSGA-II over ULP error and op
count, constants fitted by CMA-ES, started from the Taylor polynomials of degrees 1-7 or, with
``initial="empty"``, from the empty program), ``linear`` and ``logistic`` (:class:`LearnerTask`,
regularized evolution from the empty learner), ``optimizer`` (:class:`UpdateRuleTask`, regularized
evolution from AdamW).

The run directory holds the engine's checkpoint, history and evaluation cache (a killed run
resumes where it stopped: run the same search with the same directory), and at the end
``best.py`` (the best program's source; for NSGA-II every front program), ``report.json`` (the
task's report of the best program, the cache's hits per level, timings), ``curve.png`` and, for
NSGA-II, ``front.csv`` and ``front.png``.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from ..search.engine import CHECKPOINT
from ..search.protocol import Backend, open_backend
from .engine import ProgramEngine
from .function_task import WORST, FunctionTask, taylor_program
from .learner_task import LEARNER_OPS, LearnerTask
from .nsga2 import ProgramNSGA2
from .program import Program
from .regularized import RegularizedEvolution
from .update_rules import UpdateRuleTask

__all__ = ["TASKS", "ENGINES", "make_task", "task_factory", "search_programs", "ProgramRun"]

#: The op set of the linear-regression rediscovery (AutoML-Zero restricts its ops alike there).
LINEAR_OPS: tuple[str, ...] = ("s_sub", "s_mul", "s_const", "v_scale", "v_add", "v_dot")


def _function(name: str) -> Callable[..., Any]:
    def make(**kw: Any) -> FunctionTask:
        return FunctionTask(name, **{"fit_iterations": 200, "fit_integers": name != "log2", **kw})
    return make


#: name -> (task factory (keyword options), default engine, engine defaults).
TASKS: dict[str, tuple[Callable[..., Any], str, dict[str, Any]]] = {
    "exp2": (_function("exp2"), "nsga2", {"population_size": 50, "max_length": 20, "resolution": (0.02, 0.0),
                                          "ref_point": (WORST, 21.0)}),
    "log2": (_function("log2"), "nsga2", {"population_size": 50, "max_length": 20, "resolution": (0.02, 0.0),
                                          "ref_point": (WORST, 21.0)}),
    "linear": (lambda **kw: LearnerTask("regression", **{"ops": LINEAR_OPS, "n_scalar": 4, "n_vector": 3, **kw}),
               "regularized", {"population_size": 1000, "tournament_size": 10, "batch_size": 50, "max_length": 4,
                               "restart_stall": 10_000}),
    "logistic": (lambda **kw: LearnerTask("classification", **{"ops": LEARNER_OPS, **kw}), "regularized",
                 {"population_size": 1000, "tournament_size": 10, "batch_size": 50, "max_length": 8}),
    "optimizer": (lambda **kw: UpdateRuleTask(**kw), "regularized",
                  {"population_size": 50, "tournament_size": 5, "batch_size": 10, "max_length": 12}),
}
ENGINES: dict[str, type[ProgramEngine]] = {"regularized": RegularizedEvolution, "nsga2": ProgramNSGA2}


def make_task(name: str, **options: Any) -> Any:
    """The task called ``name`` (:data:`TASKS`), built with its defaults updated by ``options``."""
    if not isinstance(name, str) or name not in TASKS:
        raise ConfigError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name][0](**options)


def _initial(name: str, task: Any, initial: Any) -> Any:
    if initial is None and name in ("exp2", "log2"):
        return [taylor_program(name, d, n_scalar=task.n_scalar) for d in range(1, 8)]
    if initial == "empty":
        return task.initial()
    if initial is not None and not isinstance(initial, (Program, list, tuple)):
        raise ConfigError(f"initial must be None, 'empty', a Program or a list of them, got {initial!r}")
    return initial


@dataclass
class ProgramRun:
    """A finished (or resumed and finished) program search."""

    engine: ProgramEngine
    best: Any  # a Program (one objective) or the front's programs
    fitness: Any  # a float, or the front's objectives [K, M]
    report: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None


def search_programs(name: str, *, engine: str | None = None, generations: int = 100, seed: int = 0,
                    run_dir: str | os.PathLike | None = None, initial: Any = None, backend: str = "inprocess",
                    workers: int | None = None, task_options: dict[str, Any] | None = None,
                    progress: bool = True, **engine_options: Any) -> ProgramRun:
    """Search programs for the task ``name`` for ``generations`` generations (in total: a run
    directory with a checkpoint resumes and continues to that count).

    ``engine``: ``"regularized"`` or ``"nsga2"`` (default: the task's); ``engine_options`` update the
    task's engine defaults (population_size, tournament_size, batch_size, max_length, cache, ...);
    ``task_options`` its task defaults; ``initial``: None (the task's start), ``"empty"``, or programs;
    ``backend``: ``"inprocess"``, ``"process"`` or ``"ray"`` (workers build the task from its name with
    ``task_options``: :func:`task_factory`), or an open :class:`~evoforge.search.protocol.Backend` (e.g. a
    ``RayBackend`` on a cluster's address, built from ``task_factory(name, task_options)``).
    """
    if not isinstance(name, str) or name not in TASKS:
        raise ConfigError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    factory, default_engine, defaults = TASKS[name]
    engine = default_engine if engine is None else engine
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {sorted(ENGINES)}, got {engine!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be an int >= 1 or None, got {workers!r}")
    if not isinstance(backend, Backend) and backend not in ("inprocess", "process", "ray"):
        raise ConfigError(f"backend must be 'inprocess', 'process', 'ray' or a Backend, got {backend!r}")
    only = {"nsga2": ("resolution", "ref_point", "n_offspring"),
            "regularized": ("tournament_size", "batch_size", "restart_stall")}
    wrong = [k for k in engine_options if k in only["regularized" if engine == "nsga2" else "nsga2"]]
    if wrong:
        raise ConfigError(f"{', '.join(wrong)}: not an option of the {engine} engine")
    options = {k: v for k, v in defaults.items() if k not in only["regularized" if engine == "nsga2" else "nsga2"]}
    options.update(engine_options)
    task = make_task(name, **(task_options or {}))
    rd = Path(run_dir) if run_dir is not None else None
    if rd is not None and (rd / CHECKPOINT).is_file():
        eng = ENGINES[engine].resume(rd, progress=progress)
    else:
        eng = ENGINES[engine](task, initial=_initial(name, task, initial), seed=seed, run_dir=rd, progress=progress,
                              **options)
    t0 = time.perf_counter()
    if isinstance(backend, Backend):
        eng.run(backend, generations=generations, stall_generations=None)
    elif backend == "inprocess":
        eng.run(generations=generations, stall_generations=None)
    else:
        with open_backend(backend, _TaskFactory(name, task_options or {}), workers=workers) as b:
            eng.run(b, generations=generations, stall_generations=None)
    seconds = time.perf_counter() - t0
    best, fitness = eng.best
    report = _report(eng, best, fitness, seconds)
    if rd is not None:
        _write(rd, eng, best, fitness, report)
    eng.close()
    return ProgramRun(eng, best, fitness, report, rd)


def task_factory(name: str, options: dict[str, Any] | None = None) -> Callable[[], Any]:
    """A picklable factory of the task ``name`` (what a backend's workers call to build their evaluator)."""
    make_task(name, **(options or {}))  # the same errors as here, before a worker sees them
    return _TaskFactory(name, options or {})


class _TaskFactory:
    """Picklable: a worker builds its own task from the name and options."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name, self.options = name, dict(options)

    def __call__(self) -> Any:
        return make_task(self.name, **self.options)


def _report(eng: ProgramEngine, best: Any, fitness: Any, seconds: float) -> dict[str, Any]:
    task = eng.program_task
    out: dict[str, Any] = {"task": repr(task), "engine": type(eng).__name__, "generations": eng.generation,
                           "requested": eng.requested, "evaluations": eng.evaluations,
                           "cache": eng._cache_record(), "savings": eng.requested / max(1, eng.evaluations),
                           "seconds_this_call": round(seconds, 3)}
    if isinstance(best, Program):
        out["best_fitness"] = float(fitness)
        out["best"] = task.report(best) if hasattr(task, "report") else {"source": best.canonical().source()}
    else:
        out["front"] = [{"objectives": dict(zip(eng.objectives, map(float, f))),
                         **(task.report(p) if hasattr(task, "report") else {})} for p, f in zip(best, fitness)]
    return out


def _write(rd: Path, eng: ProgramEngine, best: Any, fitness: Any, report: dict[str, Any]) -> None:
    rows = [(best, fitness)] if isinstance(best, Program) else list(zip(best, fitness))
    with open(rd / "best.py", "w") as f:
        for i, (p, fit) in enumerate(rows):
            f.write(f"# program {i}: {dict(zip(eng.objectives, np.atleast_1d(fit).tolist()))}\n")
            f.write(p.canonical().source() + "\n")
    (rd / "report.json").write_text(json.dumps(report, indent=2, default=float))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plot

    fig, ax = plt.subplots(figsize=(6, 4))
    # A front's progress is its hypervolume (the best of each objective alone says little).
    key = "hypervolume" if eng.history and "hypervolume" in eng.history[-1] else "best_fitness"
    plot.convergence(rd, key=key, x="requested", ax=ax)
    ax.set_xlabel("children (requested)")
    ax.set_title(f"{type(eng).__name__}: {eng.program_task!r}"[:90], fontsize=8)
    fig.tight_layout()
    fig.savefig(rd / "curve.png", dpi=110)
    plt.close(fig)
    if isinstance(best, Program):
        return
    F = np.asarray(fitness)
    with open(rd / "front.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(eng.objectives))
        w.writerows(F.tolist())
    fig, ax = plt.subplots(figsize=(6, 4))
    task = eng.program_task
    if F.shape[1] >= 2:
        ulp = eng.objectives[0] == "ulp"
        y = 2.0 ** F[:, 0] - 1.0 if ulp else F[:, 0]
        ax.step(F[:, 1], y, where="post", marker="o", label="evolved front")
        if hasattr(task, "baseline"):
            base = task.baseline()
            ax.plot([b["ops"] for b in base], [b["max_ulp"] for b in base], "s--", label="minimax polynomials")
        if ulp:
            ax.set_yscale("log")
        ax.set_xlabel(eng.objectives[1])
        ax.set_ylabel("max ULP error" if ulp else eng.objectives[0])
        ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(f"first front: {task!r}"[:90], fontsize=8)
    fig.tight_layout()
    fig.savefig(rd / "front.png", dpi=110)
    plt.close(fig)
