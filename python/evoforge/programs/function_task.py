"""AutoNumerics-Zero's task: a float32 program approximating an elementary function on an interval.

Objectives, minimised: ``ulp`` -- ``log2(1 + max ULP error)`` of the program's float32 outputs on
the task's points against the float64 reference (:func:`~evoforge.programs.ulp_error`; the log keeps
an error of 3 ULPs and one of 3e6 on scales NSGA-II's crowding can compare; NaN or inf outputs score
:data:`WORST`), and ``ops`` -- :func:`~evoforge.programs.op_count` of the canonical form (constants
free). The functional hash probes the outputs on ``n_probe`` of the points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _checks
from ..errors import ConfigError
from ..interpreter import run_function
from .elementary import Target, _target, op_count, probe_points, ulp_error
from .program import Program, pack

__all__ = ["FunctionTask", "WORST", "ARITHMETIC"]

#: The ``ulp`` objective of a program whose output is NaN or infinite somewhere (log2(1 + 2**64)).
WORST = 64.0
#: The op set of AutoNumerics-Zero's arithmetic programs.
ARITHMETIC: tuple[str, ...] = ("s_add", "s_sub", "s_mul", "s_div", "s_const")
_OBJECTIVES = ("ulp", "ops")


class FunctionTask:
    """Approximate ``target`` on ``interval`` in float32 with a function program (input ``s0``,
    output ``s1``).

    Parameters
    ----------
    target : a name of :data:`~evoforge.programs.TARGETS` (``"exp2"``, ``"log2"``) or a Target
    interval : ``(a, b)``; None: the target's default
    n_points : the evenly spaced float32 points the error is measured on (the final report may use
        every float32 of the interval: :meth:`report`)
    n_probe : how many of them (evenly spread) the functional hash probes
    objectives : a subset of ``("ulp", "ops")``, in that order (``("ulp",)`` for a one-objective engine)
    n_scalar : scalar registers (>= 2: ``s0`` input, ``s1`` output)
    ops : op names mutations may use (default :data:`ARITHMETIC`)

    ``evaluate(programs, batch=None) -> float64 [B] or [B, M]``, ``probe(program) -> float32 [n_probe]``,
    ``initial()`` the empty program (``s1 = 0``). Picklable: send it to process or Ray workers.
    """

    kind = "function"
    n_vector = n_matrix = 0
    dim = 1

    def __init__(self, target: str | Target = "exp2", *, interval: Any = None, n_points: int = 4097,
                 n_probe: int = 16, objectives: Sequence[str] = _OBJECTIVES, n_scalar: int = 4,
                 ops: Sequence[str] | None = ARITHMETIC) -> None:
        self.target = _target(target)
        n_points = _checks.check_int(n_points, "n_points", 2, 1 << 22)
        self.x = probe_points(self.target, n_points, interval=interval)
        self.exact = self.target.reference(self.x.astype(np.float64))
        self.n_probe = _checks.check_int(n_probe, "n_probe", 1, len(self.x))
        self._probe_x = self.x[np.linspace(0, len(self.x) - 1, self.n_probe).round().astype(np.int64)]
        if isinstance(objectives, str) or not all(isinstance(o, str) for o in objectives):
            raise TypeError(f"objectives must be a sequence of names, got {objectives!r}")
        objectives = tuple(objectives)
        if not objectives or any(o not in _OBJECTIVES for o in objectives) or len(set(objectives)) != len(objectives):
            raise ConfigError(f"objectives must be distinct names of {_OBJECTIVES}, got {objectives!r}")
        self.objectives = tuple(o for o in _OBJECTIVES if o in objectives)
        self.n_scalar = _checks.check_int(n_scalar, "n_scalar", 2, 1024)
        self.ops = None if ops is None else tuple(ops)
        self.interval = (float(self.x[0]), float(self.x[-1]))
        self.namespace = ("function", self.target.name, self.interval, len(self.x), self.n_probe, self.objectives)

    def initial(self) -> Program:
        return Program({"predict": np.zeros((0, 4), np.int32)}, n_scalar=self.n_scalar, n_vector=0, n_matrix=0, dim=1)

    def _check(self, p: Program) -> None:
        if not isinstance(p, Program):
            raise TypeError(f"programs must hold Programs, got {type(p).__name__}")
        if p.kind != "function" or p.n_vector or p.n_matrix:
            raise ValueError("FunctionTask programs are scalar function programs (predict only, no vectors or "
                             "matrices)")

    def outputs(self, programs: Sequence[Program], x: np.ndarray | None = None) -> np.ndarray:
        """float32 [B, E]: the programs' outputs on ``x`` (default: the task's points)."""
        for p in programs:
            self._check(p)
        x = self.x if x is None else x
        if not len(programs):
            return np.empty((0, len(x)), np.float32)
        ns = max(p.n_scalar for p in programs)
        same = [p if p.n_scalar == ns else Program(p.components, p.imm, n_scalar=ns, n_vector=0, n_matrix=0, dim=1)
                for p in programs]
        code, imm = pack(same)
        return run_function(code, imm, x, n_scalar=ns, n_vector=0, n_matrix=0, dim=1, input_register="s0")

    def errors(self, programs: Sequence[Program]) -> np.ndarray:
        """float64 [B]: the max ULP error of each program on the task's points (inf for NaN / inf)."""
        return np.atleast_1d(ulp_error(self.outputs(programs), self.exact)).astype(np.float64)

    def evaluate(self, programs: Any, batch: Any = None) -> np.ndarray:
        programs = list(programs)
        cols = []
        if "ulp" in self.objectives:
            with np.errstate(over="ignore"):
                cols.append(np.minimum(np.log2(1.0 + self.errors(programs)), WORST))
        if "ops" in self.objectives:
            cols.append(np.array([op_count(p) for p in programs], dtype=np.float64))
        F = np.column_stack(cols) if cols else np.empty((len(programs), 0))
        return F[:, 0] if F.shape[1] == 1 else F

    def probe(self, program: Program) -> np.ndarray:
        return self.outputs([program], self._probe_x)[0]

    def report(self, program: Program, *, every_float: bool = False) -> dict[str, Any]:
        """``max_ulp`` on the task's points (or on every float32 of the interval), ``ops``, ``source``."""
        x = probe_points(self.target, None, interval=self.interval) if every_float else self.x
        out = self.outputs([program], x)[0]
        return {"max_ulp": float(ulp_error(out, self.target.reference(x.astype(np.float64)))),
                "ops": op_count(program), "points": int(len(x)), "source": program.canonical().source()}

    def __repr__(self) -> str:
        return f"FunctionTask({self.target.name!r}, interval={self.interval}, objectives={self.objectives})"


