"""AutoNumerics-Zero's task: a float32 program approximating an elementary function on an interval.

Objectives, minimised: ``ulp`` -- ``log2(1 + max ULP error)`` of the program's float32 outputs on
the task's points against the float64 reference (:func:`~evoforge.programs.ulp_error`; the log keeps
an error of 3 ULPs and one of 3e6 on scales NSGA-II's crowding can compare; NaN or inf outputs score
:data:`WORST`), and ``ops`` -- :func:`~evoforge.programs.op_count` of the canonical form (constants
free). The functional hash probes the outputs on ``n_probe`` of the points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _checks
from ..errors import ConfigError
from ..interpreter import run_function
from .elementary import Target, _interval, _target, minimax_baseline, op_count, probe_points, ulp_error
from .ops import check_ops, op_id
from .program import Program, assemble, pack

__all__ = ["FunctionTask", "WORST", "ARITHMETIC", "taylor_program"]

#: The ``ulp`` objective of a program whose output is NaN or infinite somewhere (log2(1 + 2**64)).
WORST = 64.0
#: The op set of AutoNumerics-Zero's arithmetic programs.
ARITHMETIC: tuple[str, ...] = ("s_add", "s_sub", "s_mul", "s_div", "s_const")
_OBJECTIVES = ("ulp", "ops")
_S_CONST = op_id("s_const")


def _linprog() -> Any:
    try:
        from scipy.optimize import linprog
    except ImportError as e:  # an optional dependency
        raise ImportError("fit_linear needs scipy: pip install scipy (or evoforge[programs])") from e
    return linprog


def _cma() -> Any:
    try:
        import cma
    except ImportError as e:  # an optional dependency
        raise ImportError("fitting constants needs the cma package: pip install cma (or evoforge[programs])") from e
    return cma


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
    fit_iterations : CMA-ES iterations fitting each child's constants before it is evaluated
        (AutoNumerics-Zero fits constants by CMA-ES; 0: constants change only by mutation), see :meth:`tune`
    fit_integers : whether the fit moves constants that hold small integers (|c| <= 16); False keeps
        them exact (log2's ``t = x - 1`` must give exactly 0 at x = 1, where a float32 ULP is tiny)
    fit_linear : whether a program whose output is affine in its fitted constants (a polynomial in
        Horner form is) first gets the constants that minimise its largest ULP-weighted error in real
        arithmetic, solved exactly as a linear program (the minimax fit Remez finds for polynomials;
        scipy's HiGHS), before CMA-ES fits them in float32
    fit_polish : rounds of a last local search of the constants on all the task's points: steps of
        +-1, +-4, +-16 float32 ULPs of one constant, the best step taken while one improves (the
        float32 rounding of a polynomial is below what CMA-ES on ``fit_points`` resolves; 0: none)
    fit_popsize : CMA-ES population per child; fit_points : how many of the points (evenly spread) the
        fit measures the error on (None: 513, or all when fewer)

    ``evaluate(programs, batch=None) -> float64 [B] or [B, M]``, ``probe(program) -> float32 [n_probe]``,
    ``initial()`` the empty program (``s1 = 0``). Picklable: send it to process or Ray workers.
    """

    kind = "function"
    n_vector = n_matrix = 0
    dim = 1

    def __init__(self, target: str | Target = "exp2", *, interval: Any = None, n_points: int = 4097,
                 n_probe: int = 16, objectives: Sequence[str] = _OBJECTIVES, n_scalar: int = 4,
                 ops: Sequence[str] | None = ARITHMETIC, fit_iterations: int = 0, fit_popsize: int = 16,
                 fit_points: int | None = None, fit_integers: bool = True, fit_linear: bool = True,
                 fit_polish: int = 32) -> None:
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
        self.ops = None if ops is None else check_ops(ops)
        self.interval = _interval(self.target, interval)
        self.fit_iterations = _checks.check_int(fit_iterations, "fit_iterations", 0, 1 << 16)
        self.fit_popsize = _checks.check_int(fit_popsize, "fit_popsize", 2, 1 << 12)
        if not isinstance(fit_integers, bool):
            raise TypeError(f"fit_integers must be a bool, got {type(fit_integers).__name__}")
        self.fit_integers = fit_integers
        if not isinstance(fit_linear, bool):
            raise TypeError(f"fit_linear must be a bool, got {type(fit_linear).__name__}")
        self.fit_linear = fit_linear
        self.fit_polish = _checks.check_int(fit_polish, "fit_polish", 0, 1 << 16)
        fit_points = min(513, len(self.x)) if fit_points is None else _checks.check_int(fit_points, "fit_points", 2,
                                                                                          len(self.x))
        self._fit_x = self.x[np.linspace(0, len(self.x) - 1, fit_points).round().astype(np.int64)]
        self._fit_exact = self.target.reference(self._fit_x.astype(np.float64))
        self._fit_ulp = np.spacing(np.abs(self._fit_exact).astype(np.float32)).astype(np.float64)
        self._ulp = np.spacing(np.abs(self.exact).astype(np.float32)).astype(np.float64)
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

    def tune(self, programs: Sequence[Program], *, seed: int) -> list[Program]:
        """The programs with the constants of their live code fitted by CMA-ES (the ``cma`` library):
        ``fit_iterations`` iterations of ``fit_popsize`` candidates per program, all programs' candidates
        run in one interpreter call per iteration, minimising ``log2(1 + max + mean / 20)`` of the
        ULP errors on ``fit_points`` of the points, started (with ``fit_linear``) from the exact
        minimax constants of a program affine in them (:meth:`linear_fit`), then ``fit_polish``
        rounds of float32 steps on all the points. A program comes back in canonical form with the best constants
        seen (its own included, so a fit never makes it worse), or unchanged when it has no constants
        or ``fit_iterations`` is 0. Deterministic in ``seed`` (an int in [0, 2**63))."""
        programs = list(programs)
        if not self.fit_iterations:
            return programs
        cma = _cma()
        seed = _checks.check_int(seed, "seed", 0, 2**63 - 1)
        jobs: list[list] = []
        starts: list[tuple[Program, np.ndarray, np.ndarray]] = []  # more starts of the polish
        for i, p in enumerate(programs):
            self._check(p)
            c = p.canonical()
            sites = np.flatnonzero(c.components["predict"][:, 0] == _S_CONST)
            if not self.fit_integers:
                v = c.imm["predict"][sites]
                sites = sites[~((v == np.round(v)) & (np.abs(v) <= 16))]
            if not sites.size:
                continue
            x0 = c.imm["predict"][sites].astype(np.float64)
            rng = np.random.RandomState((seed + 7919 * i) % 2**32)
            if sites.size == 1:  # pycma needs two dimensions: a second, ignored coordinate
                x0 = np.append(x0, 0.0)
            # A small first step: a child's constants are mostly its tuned parent's (Lamarckian), and
            # CMA-ES widens the step where it must.
            es = cma.CMAEvolutionStrategy(x0, 1.0, {"CMA_stds": 1e-3 * (np.abs(x0) + 1e-2), "popsize": self.fit_popsize,
                                                    "randn": rng.randn, "seed": int(rng.randint(1, 2**31)),
                                                    "verbose": -9, "maxiter": self.fit_iterations})
            f0 = self._fit_errors([self._with(c, sites, x0)])[0]
            xl = self.linear_fit(c, sites) if self.fit_linear else None
            if xl is not None:
                xl = np.append(xl, 0.0) if sites.size == 1 else xl
                fl = self._fit_errors([self._with(c, sites, xl)])[0]
                if fl < f0:
                    x0, f0 = xl, fl
                starts.append((c, sites, xl))  # polished too: CMA-ES on the fit points may leave it worse
            jobs.append([i, c, sites, es, x0, f0])
        for _ in range(self.fit_iterations):
            live = [j for j in jobs if not j[3].stop()]
            if not live:
                break
            asks = [j[3].ask() for j in live]
            cand = [self._with(j[1], j[2], x) for j, X in zip(live, asks) for x in X]
            f = self._fit_errors(cand)
            k = 0
            for j, X in zip(live, asks):
                fj = f[k:k + len(X)]
                k += len(X)
                j[3].tell(X, fj.tolist())
                b = int(np.argmin(fj))
                if fj[b] < j[5]:
                    j[4], j[5] = np.asarray(X[b], dtype=np.float64), float(fj[b])
        for i, c, sites, _, x, _ in jobs:
            programs[i] = self._with(c, sites, x)
        if self.fit_polish and jobs:
            starts = [(j[1], j[2], j[4]) for j in jobs] + starts
            best: dict[int, tuple[np.ndarray, float]] = {}  # id(program) -> the best polished start
            for (c, _, _), (x, f) in zip(starts, self._polish(starts)):
                if id(c) not in best or f < best[id(c)][1]:
                    best[id(c)] = (x, f)
            for i, c, sites, *_ in jobs:
                programs[i] = self._with(c, sites, best[id(c)][0])
        return programs

    def _polish(self, starts: list[tuple[Program, np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, float]]:
        """Steepest descent from each (program, sites, constants) over steps of +-1, +-4, +-16 float32
        ULPs of one constant, on the max ULP error over all the points (no mean: it steers the steps
        away from the max's minimum), until no step improves or ``fit_polish`` rounds; every start's
        steps in one interpreter call per round. Returns (constants, objective) per start."""
        steps = np.array([1.0, -1.0, 4.0, -4.0, 16.0, -16.0])
        xs = [x[:sites.size].astype(np.float32).astype(np.float64) for _, sites, x in starts]
        fs = list(self._fit_errors([self._with(c, sites, x) for (c, sites, _), x in zip(starts, xs)], True, 0.0))
        live = list(range(len(starts)))
        for _ in range(self.fit_polish):
            if not live:
                break
            cands, owner = [], []
            for n in live:
                x32 = xs[n].astype(np.float32)
                moved = (x32[:, None] + steps[None, :] * np.spacing(x32)[:, None]).astype(np.float32)  # [k, 6]
                for i, v in np.ndindex(moved.shape):
                    y = xs[n].copy()
                    y[i] = float(moved[i, v])
                    cands.append(y)
                    owner.append(n)
            F = self._fit_errors([self._with(starts[n][0], starts[n][1], y) for n, y in zip(owner, cands)], True, 0.0)
            owner_a, still = np.array(owner), []
            for n in live:
                idx = np.flatnonzero(owner_a == n)
                b = int(idx[np.argmin(F[idx])])
                if F[b] < fs[n]:
                    xs[n], fs[n] = cands[b], float(F[b])
                    still.append(n)
            live = still
        return list(zip(xs, fs))

    def linear_fit(self, program: Program, sites: np.ndarray) -> np.ndarray | None:
        """float64 [len(sites)]: the values of the constants at ``sites`` (indices of ``s_const``
        instructions of ``program``'s predict) that minimise ``max |p(x) - f(x)| / ulp(f(x))`` over the
        fit points with the program run in float64, when its output is affine in them (checked on
        ``len(sites) + 2`` runs); None when it is not, or when an output is not finite."""
        self._check(program)
        k = int(sites.size)
        if not k:
            return None
        x0 = program.imm["predict"][sites].astype(np.float64)
        X = np.vstack([x0, x0 + np.eye(k), x0 + np.linspace(0.3, 0.7, k)])
        code, imm = pack([self._with(program, sites, x) for x in X])
        with np.errstate(all="ignore"):
            out = run_function(code, imm, self._fit_x.astype(np.float64), n_scalar=program.n_scalar, n_vector=0,
                               n_matrix=0, dim=1, input_register="s0")
            if not np.isfinite(out).all():
                return None
            base, A = out[0], (out[1:k + 1] - out[0]).T  # [N], [N, k]
            if not np.allclose(base + A @ (X[-1] - x0), out[-1], rtol=1e-9, atol=1e-9 * np.abs(out).max()):
                return None
        # minimise t subject to -t <= (A d + base - f) / ulp <= t, over the offsets d and t >= 0
        w = self._fit_ulp
        Aw, r = A / w[:, None], (self._fit_exact - base) / w
        ones = np.ones((len(w), 1))
        res = _linprog()(np.r_[np.zeros(k), 1.0], A_ub=np.block([[Aw, -ones], [-Aw, -ones]]), b_ub=np.r_[r, -r],
                         bounds=[(None, None)] * k + [(0, None)], method="highs")
        return x0 + res.x[:k] if res.status == 0 else None

    @staticmethod
    def _with(c: Program, sites: np.ndarray, x: np.ndarray) -> Program:
        imm = c.imm["predict"].copy()
        imm[sites] = np.asarray(x, dtype=np.float64)[: sites.size]
        return Program(c.components, {"predict": imm}, n_scalar=c.n_scalar, n_vector=0, n_matrix=0, dim=1)

    def _fit_errors(self, programs: Sequence[Program], full: bool = False, mean_weight: float = 1 / 20) -> np.ndarray:
        """The fit's objective: ``log2(1 + max + mean_weight mean)`` of the ULP errors on the fit points
        (all the points when ``full``; the mean breaks the max's plateaus, flat to within an ULP, on
        which CMA-ES would stop; the polish weighs it 0)."""
        x, exact, ulp = (self.x, self.exact, self._ulp) if full else (self._fit_x, self._fit_exact, self._fit_ulp)
        out = self.outputs(programs, x).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.abs(out - exact) / ulp
            e = np.where(np.isfinite(e), e, np.inf)
            return np.minimum(np.log2(1.0 + e.max(axis=1) + mean_weight * e.mean(axis=1)), WORST)

    def probe(self, program: Program) -> np.ndarray:
        return self.outputs([program], self._probe_x)[0]

    def probe_many(self, programs: Sequence[Program]) -> list[np.ndarray]:
        """:meth:`probe` of every program, in one interpreter call."""
        return list(self.outputs(list(programs), self._probe_x))

    def report(self, program: Program, *, every_float: bool = False) -> dict[str, Any]:
        """``max_ulp`` on the task's points (or on every float32 of the interval), ``ops``, ``source``."""
        if not isinstance(every_float, bool):
            raise TypeError(f"every_float must be a bool, got {type(every_float).__name__}")
        x = probe_points(self.target, None, interval=self.interval) if every_float else self.x
        out = self.outputs([program], x)[0]
        return {"max_ulp": float(ulp_error(out, self.target.reference(x.astype(np.float64)))),
                "ops": op_count(program), "points": int(len(x)), "source": program.canonical().source()}

    def baseline(self, degrees: Sequence[int] = range(1, 8)) -> list[dict[str, Any]]:
        """The minimax polynomials of ``degrees`` as float32 Horner programs, measured on the task's points:
        :func:`~evoforge.programs.minimax_baseline`'s rows (``ops``, ``max_ulp``, ``program``, ...)."""
        return minimax_baseline(self.target, degrees, interval=self.interval, n=len(self.x))

    def __repr__(self) -> str:
        return f"FunctionTask({self.target.name!r}, interval={self.interval}, objectives={self.objectives})"




def taylor_program(target: str | Target, degree: int, *, n_scalar: int = 4) -> Program:
    """The textbook start of a search: the Taylor polynomial of the given degree, in float32 Horner
    form. ``exp2`` about 0: ``sum_k (ln 2)^k / k! x^k``; ``log2`` about 1, in ``t = x - 1`` so that
    log2(1) is exactly 0: ``t * sum_k (-1)^k t^k / ((k + 1) ln 2)`` (degree counts the powers of t).
    2 ops per degree (``log2``: 2 more, for t and the final product)."""
    t = _target(target)
    d = _checks.check_int(degree, "degree", 1, 20)
    ns = _checks.check_int(n_scalar, "n_scalar", 4, 1024)
    ln2 = math.log(2.0)
    if t.name == "exp2":
        c, var, pre = [ln2 ** k / math.factorial(k) for k in range(d + 1)], 0, []
    elif t.name == "log2":
        c, var = [(-1) ** k / ((k + 1) * ln2) for k in range(d)], 3
        pre = [("s_const", 2, 1.0), ("s_sub", 3, 0, 2)]
    else:
        raise ConfigError(f"taylor_program knows exp2 and log2, got {t.name!r}")
    ins = [*pre, ("s_const", 1, float(np.float32(c[-1])))]
    for k in range(len(c) - 2, -1, -1):
        ins += [("s_mul", 1, 1, var), ("s_const", 2, float(np.float32(c[k]))), ("s_add", 1, 1, 2)]
    if t.name == "log2":
        ins.append(("s_mul", 1, 1, 3))
    code, imm = assemble(ins)
    return Program({"predict": code}, {"predict": imm}, n_scalar=ns, n_vector=0, n_matrix=0, dim=1)
