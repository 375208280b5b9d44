"""Elementary functions in float32 (issue 19, AutoNumerics-Zero's task): the pieces, no search yet.

The task: a program computes ``exp2`` (or ``log2``) on an interval in float32; its objectives are the
max error in float32 ULPs against a high-precision reference (:func:`ulp_error` on
:func:`probe_points`) and its op count (:func:`op_count`). The baseline is the minimax polynomial of
each degree (:func:`minimax_polynomial`, the Remez exchange algorithm) evaluated by Horner's rule
(:func:`horner_program`): 2 ops per degree; :func:`minimax_baseline` tabulates it.

The reference is numpy's float64 ``exp2`` / ``log2`` of the (float32, hence exactly representable)
inputs. Their error is under about one float64 ulp (2**-52 relative), some 2**-29 float32 ULPs: far
below anything the float32 ULP error can resolve, so no extended precision is needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Callable, NamedTuple

import numpy as np
from numpy.polynomial import chebyshev as C
from numpy.polynomial import polynomial as P

from .. import _checks
from ..errors import ConfigError
from ..interpreter import run_function
from ..random import check_uint
from .ops import NOOP, OPS
from .program import Program, assemble, pack

__all__ = ["TARGETS", "Target", "ulp_error", "probe_points", "minimax_polynomial", "horner_program", "op_count",
           "minimax_baseline", "MAX_DEGREE", "MAX_PROBE_POINTS"]

#: The largest polynomial degree :func:`minimax_polynomial` fits.
MAX_DEGREE = 20
#: The most probe points :func:`probe_points` makes (grid and random ones each).
MAX_PROBE_POINTS = 1 << 24

_F32 = np.finfo(np.float32)
_EPS64 = float(np.finfo(np.float64).eps)
#: Ops that only set a constant: free in :func:`op_count`.
_CONSTANT_OPS = frozenset(op.id for op in OPS if op.name in ("s_const", "v_const", "m_const"))


class Target(NamedTuple):
    """An elementary function to approximate.

    Attributes
    ----------
    name : its name
    reference : float64 [E] -> float64 [E], accurate to far below a float32 ULP
    interval : the default interval ``[a, b)``
    error : ``"relative"`` or ``"absolute"``: the error the minimax polynomial minimises
    domain : ``(lo, hi)``: intervals must lie within it (where the float32 result is a finite normal number)
    """

    name: str
    reference: Callable[[np.ndarray], np.ndarray]
    interval: tuple[float, float]
    error: str
    domain: tuple[float, float]


#: The targets by name. ``exp2`` on ``[0, 1)`` (relative error minimised: exp2 has no zero there and a
#: float32 ULP is a relative measure), ``log2`` on ``[1, 2)`` (absolute error minimised, as usual for
#: log2 there: it is 0 at x = 1, where a relative error is undefined). References: numpy's float64
#: ``exp2`` / ``log2`` (see the module's doc). Note that a float32 ULP of ``log2(x)`` shrinks to the
#: smallest subnormal at x = 1, so a polynomial in x whose float32 value at 1 is not exactly 0 has an
#: enormous max ULP error there, however small its absolute error.
TARGETS: Mapping[str, Target] = MappingProxyType({
    "exp2": Target("exp2", np.exp2, (0.0, 1.0), "relative", (-126.0, 128.0)),
    "log2": Target("log2", np.log2, (1.0, 2.0), "absolute", (float(_F32.tiny), float(_F32.max))),
})

_ERRORS = ("relative", "absolute")


# ---- arguments ------------------------------------------------------------------------------------


def _target(target: Any) -> Target:
    if isinstance(target, Target):
        return target
    if not isinstance(target, str):
        raise TypeError(f"target must be a target name ({', '.join(TARGETS)}) or a Target, "
                        f"got {type(target).__name__}")
    try:
        return TARGETS[target]
    except KeyError:
        raise ValueError(f"unknown target {target!r}; the targets are {', '.join(TARGETS)}") from None


def _interval(t: Target, interval: Any) -> tuple[float, float]:
    """``(a, b)`` as floats: finite, ``a < b``, within the target's domain, holding a float32 value."""
    if interval is None:
        interval = t.interval
    if isinstance(interval, (str, bytes)) or not isinstance(interval, (Sequence, np.ndarray)) \
            or (isinstance(interval, np.ndarray) and interval.ndim != 1):
        raise TypeError(f"interval must be a pair (a, b) of real numbers, got {type(interval).__name__}")
    if len(interval) != 2:
        raise ValueError(f"interval must be a pair (a, b), got {len(interval)} values")
    a, b = (_checks.check_real(v, f"interval[{i}]") for i, v in enumerate(interval))
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ConfigError(f"interval must be finite, got ({a!r}, {b!r})")
    if not a < b:
        raise ConfigError(f"interval (a, b) must have a < b, got ({a!r}, {b!r})")
    lo, hi = t.domain
    if a < lo or b > hi:
        raise ConfigError(f"interval ({a!r}, {b!r}) leaves the domain [{lo!r}, {hi!r}] of {t.name}")
    if _f32_bounds(a, b)[0] >= b:
        raise ConfigError(f"interval [{a!r}, {b!r}) holds no float32 value")
    return a, b


def _error_kind(t: Target, error: Any) -> str:
    if error is None:
        return t.error
    if not isinstance(error, str):
        raise TypeError(f"error must be 'relative', 'absolute' or None, got {type(error).__name__}")
    if error not in _ERRORS:
        raise ValueError(f"error must be 'relative', 'absolute' or None, got {error!r}")
    return error


def _f32_bounds(a: float, b: float) -> tuple[np.float32, np.float32]:
    """(the smallest float32 >= a, the largest float32 < b)."""
    with np.errstate(over="ignore"):
        x, y = np.float32(a), np.float32(b)
    return (x if float(x) >= a else np.nextafter(x, np.float32(np.inf)),
            y if float(y) < b else np.nextafter(y, np.float32(-np.inf)))


def _real_array(x: Any, name: str) -> np.ndarray:
    """x as a numpy array of real numbers (floats or integers; TypeError for bools and the rest)."""
    a = _checks.to_numpy(x, name)
    if a.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype bool")
    _checks.float_dtype(a, name)
    return a


def _ordinal(x: np.ndarray) -> np.ndarray:
    """float32 -> int64, monotonic, consecutive floats consecutive integers (-0.0 and +0.0 both 0)."""
    bits = np.asarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


def _from_ordinal(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=np.int64)
    bits = np.where(k >= 0, k, (-k) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


# ---- the error measure --------------------------------------------------------------------------------


def ulp_error(pred: Any, exact: Any) -> Any:
    """Max over examples of ``|pred - exact|`` in float32 ULPs of the exact value.

    Parameters
    ----------
    pred : [..., E] real numbers (float32 outputs of a program; float64 values are measured as given,
        not rounded to float32)
    exact : float64 [E], the reference values, finite in float32

    Returns
    -------
    float64 [...] (a numpy scalar for a 1-D ``pred``): ``max_e |pred[..., e] - exact[e]| / ulp(exact[e])``
    with ``ulp(y) = np.spacing(np.float32(abs(y)))`` (the spacing of float32 at ``|y|`` rounded to
    float32; at y = 0 the smallest subnormal), computed in float64; inf where a prediction is NaN or
    infinite.
    """
    p, y = _real_array(pred, "pred"), _real_array(exact, "exact")
    if y.ndim != 1 or y.shape[0] < 1:
        raise ValueError(f"exact must have shape [E] with E >= 1, got shape {y.shape}")
    if p.ndim < 1 or p.shape[-1] != y.shape[0]:
        raise ValueError(f"pred must have shape [..., E={y.shape[0]}] (as exact), got shape {p.shape}")
    y = y.astype(np.float64)
    if not np.isfinite(y).all() or (np.abs(y) > float(_F32.max)).any():
        raise ValueError("exact must be finite in float32 (|exact| <= 3.4028235e38, no NaN or inf)")
    ulp = np.spacing(np.abs(y).astype(np.float32)).astype(np.float64)
    p = p.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(p - y) / ulp
    err = np.where(np.isfinite(p), err, np.inf)
    return np.max(err, axis=-1)


def probe_points(target: Any, n: Any = 65537, *, n_random: int = 0, seed: Any = None,
                 interval: Any = None) -> np.ndarray:
    """Float32 inputs covering the target's interval ``[a, b)``, sorted, without repeats.

    Parameters
    ----------
    target : a name of :data:`TARGETS` or a :class:`Target`
    n : int in [1, :data:`MAX_PROBE_POINTS`]: an evenly spaced grid of n points from the first float32
        ``>= a`` to the last float32 ``< b`` (both included), rounded to float32 (fewer points where
        rounding merges them); None: every float32 of the interval (ConfigError when they are more
        than :data:`MAX_PROBE_POINTS`: ``log2`` on ``[1, 2)`` holds 2**23, ``exp2`` on ``[0, 1)`` about 2**30)
    n_random : int in [0, :data:`MAX_PROBE_POINTS`]: that many more points, uniform in ``[a, b)``
    seed : int in [0, 2**64) seeding the random points; None: fresh entropy (numpy's default_rng)
    interval : ``(a, b)``; None: the target's default

    Returns
    -------
    float32 [E].
    """
    t = _target(target)
    a, b = _interval(t, interval)
    lo, hi = _f32_bounds(a, b)
    k = _checks.check_int(n_random, "n_random", 0, MAX_PROBE_POINTS)
    s = None if seed is None else check_uint(seed, "seed", 64)
    if n is None:
        count = int(_ordinal(hi) - _ordinal(lo)) + 1
        if count > MAX_PROBE_POINTS:
            raise ConfigError(f"[{a!r}, {b!r}) holds {count} float32 values, more than the {MAX_PROBE_POINTS} "
                              f"allowed: give n")
        grid = _from_ordinal(np.arange(_ordinal(lo), _ordinal(hi) + 1, dtype=np.int64))
    else:
        m = _checks.check_int(n, "n", 1, MAX_PROBE_POINTS)
        grid = np.linspace(float(lo), float(hi), m).astype(np.float32) if m > 1 else np.array([lo], np.float32)
    parts = [grid]
    if k:
        r = np.random.default_rng(s).uniform(a, b, k).astype(np.float32)
        parts.append(np.clip(r, lo, hi))
    return np.unique(np.concatenate(parts)).astype(np.float32)


# ---- the minimax polynomial -----------------------------------------------------------------------------


def _golden_max(g: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
                iters: int = 64) -> np.ndarray:
    """Per bracket [lo, hi], a point of (locally) maximal g by golden-section search, vectorised."""
    r = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - r * (hi - lo), lo + r * (hi - lo)
    g1, g2 = g(x1), g(x2)
    for _ in range(iters):
        left = g1 >= g2  # the max lies in [lo, x2] (else in [x1, hi])
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        new = np.where(left, hi - r * (hi - lo), lo + r * (hi - lo))
        gn = g(new)
        x1, x2 = np.where(left, new, x2), np.where(left, x1, new)
        g1, g2 = np.where(left, gn, g2), np.where(left, g1, gn)
    return np.where(g1 >= g2, x1, x2)


def _alternants(xs: np.ndarray, e: np.ndarray, m: int) -> np.ndarray:
    """Indices into xs of m points of alternating sign of e, each the largest |e| of its sign run,
    the global max kept (fewer when e alternates fewer times)."""
    sign = e >= 0
    starts = np.flatnonzero(np.r_[True, sign[1:] != sign[:-1]])
    ends = np.r_[starts[1:], len(e)]
    idx = [s + int(np.argmax(np.abs(e[s:t]))) for s, t in zip(starts, ends)]
    while len(idx) > m:
        mag = np.abs(e[idx])
        i = int(np.argmin(mag))
        if i == 0 or i == len(idx) - 1 or len(idx) - 2 < m:
            # drop an end (keeps the alternation): the smaller one
            del idx[0 if mag[0] <= mag[-1] else -1]
        else:
            # drop the smallest together with its smaller neighbour (two adjacent points: alternation kept)
            j = i - 1 if mag[i - 1] <= mag[i + 1] else i + 1
            del idx[max(i, j)]
            del idx[min(i, j)]
    return np.array(idx, dtype=np.int64)


def _remez(f: Callable[[np.ndarray], np.ndarray], a: float, b: float, degree: int, relative: bool, *,
           tol: float = 1e-10, max_iter: int = 60, grid: int | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """(Chebyshev coefficients on [a, b], max weighted error, the final reference points) of the
    minimax polynomial of ``degree`` for f on [a, b]: error ``(f - p) / |f|`` (relative) or ``f - p``."""
    n, m = degree, degree + 2
    G = grid or max(4096, 256 * m)
    xs = (a + b) / 2 - (b - a) / 2 * np.cos(np.pi * np.arange(G) / (G - 1))  # dense near the ends
    xs[0], xs[-1] = a, b
    fx = f(xs)
    if not np.isfinite(fx).all():
        raise ConfigError("the reference function is not finite on the whole interval")
    if relative and not (np.all(fx > 0) or np.all(fx < 0)):
        raise ConfigError("a relative error needs a function without zeros on the interval; use error='absolute'")

    def to_t(x: np.ndarray) -> np.ndarray:
        return (2 * x - (a + b)) / (b - a)

    def weight(x: np.ndarray, fv: np.ndarray) -> np.ndarray:
        return 1.0 / np.abs(fv) if relative else np.ones_like(x)

    def err(x: np.ndarray, c: np.ndarray) -> np.ndarray:
        fv = f(x)
        return (fv - C.chebval(to_t(x), c)) * weight(x, fv)

    scale = float(np.max(np.abs(fx * weight(xs, fx))))
    floor = 2 * _EPS64 * scale  # about the level of float64 rounding in the error
    ref = (a + b) / 2 - (b - a) / 2 * np.cos(np.pi * np.arange(m) / (m - 1))
    best: tuple[np.ndarray, float, np.ndarray] | None = None
    for _ in range(max_iter):
        fr = f(ref)
        A = np.hstack([C.chebvander(to_t(ref), n), ((-1.0) ** np.arange(m) / weight(ref, fr))[:, None]])
        try:
            sol = np.linalg.solve(A, fr)
        except np.linalg.LinAlgError:
            break
        c = sol[:-1]
        e = err(xs, c)
        idx = _alternants(xs, e, m)
        # refine each extremum between its grid neighbours
        lo, hi = xs[np.maximum(idx - 1, 0)], xs[np.minimum(idx + 1, G - 1)]
        sgn = np.sign(e[idx])
        x_new = _golden_max(lambda x: sgn * err(x, c), lo, hi)
        better = sgn * err(x_new, c) > sgn * e[idx]
        pts = np.where(better, x_new, xs[idx])
        levels = np.abs(err(pts, c))
        worst = float(max(np.max(levels), np.max(np.abs(e))))
        if best is None or worst < best[1]:
            best = (c, worst, pts)
        if len(pts) < m:
            break
        spread = float(np.max(levels) - np.min(levels))
        if spread <= max(tol * float(np.max(levels)), floor):
            break
        ref = np.sort(pts)
    assert best is not None  # the first solve of distinct Chebyshev nodes succeeds
    return best


def minimax_polynomial(target: Any, degree: int, *, interval: Any = None, error: str | None = None) -> np.ndarray:
    """The minimax polynomial of ``degree`` for the target on its interval, by the Remez exchange algorithm.

    The error minimised is the target's (:data:`TARGETS`: relative for ``exp2``, absolute for ``log2``)
    unless ``error`` names one. In float64: the reference starts at the degree + 2 Chebyshev extrema;
    each step solves for the polynomial (in the Chebyshev basis) whose error alternates with equal
    magnitude on the reference, then moves the reference to the alternating extrema of its error (a
    dense grid clustered at the ends, each extremum refined by golden-section search), until the
    extrema's magnitudes agree to a relative 1e-10, or to the level of float64 rounding.

    Parameters
    ----------
    target : a name of :data:`TARGETS` or a :class:`Target`
    degree : int in [0, :data:`MAX_DEGREE`]
    interval : ``(a, b)``; None: the target's default (the polynomial is fitted on the closed [a, b])
    error : ``"relative"``, ``"absolute"`` or None (the target's)

    Returns
    -------
    float64 [degree + 1]: the coefficients in x, lowest degree first (``numpy.polynomial`` order).
    """
    t = _target(target)
    d = _checks.check_int(degree, "degree", 0, MAX_DEGREE)
    a, b = _interval(t, interval)
    kind = _error_kind(t, error)
    c, _, _ = _remez(t.reference, a, b, d, kind == "relative")
    return _to_power(c, a, b)


def _to_power(c: np.ndarray, a: float, b: float) -> np.ndarray:
    """Chebyshev coefficients on [a, b] -> coefficients in x, lowest first, exactly degree + 1 of them."""
    p = np.polynomial.Chebyshev(c, domain=[a, b]).convert(kind=np.polynomial.Polynomial).coef
    return np.pad(p, (0, len(c) - len(p)))


# ---- the program --------------------------------------------------------------------------------------


def _dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, (str, type, np.dtype)) and not isinstance(dtype, bool):
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt in (np.float32, np.float64):
            return dt
    raise (ValueError if isinstance(dtype, str) else TypeError)(
        f"dtype must be 'float32' or 'float64', got {dtype!r}")


def horner_program(coeffs: Any, *, dtype: Any = "float32") -> Program:
    """The function program (input ``s0``, output ``s1``) evaluating the polynomial by Horner's rule.

    ``s1 = c[n]``; then for k = n-1 .. 0: ``s1 = s1 * s0``; ``s2 = c[k]``; ``s1 = s1 + s2`` -- the
    order of numpy's ``acc = acc * x + c[k]`` (no fused multiply-add), so on float32 inputs the
    interpreter's outputs equal numpy's float32 Horner evaluation bit for bit. 2n ops
    (:func:`op_count`) for degree n.

    Parameters
    ----------
    coeffs : [n + 1] finite real numbers, lowest degree first
    dtype : ``"float32"``: the constants are rounded to float32 (what the interpreter's float32 run
        uses anyway; ValueError when one overflows); ``"float64"``: kept

    Returns
    -------
    A :class:`Program` with 3 scalars, no vectors or matrices, dim 1.
    """
    c = _real_array(coeffs, "coeffs")
    if c.ndim != 1 or c.shape[0] < 1:
        raise ValueError(f"coeffs must have shape [degree + 1] with at least one coefficient, got shape {c.shape}")
    dt = _dtype(dtype)
    c = c.astype(np.float64)
    if not np.isfinite(c).all():
        raise ValueError("coeffs must be finite (no NaN or inf)")
    with np.errstate(over="ignore"):
        c = c.astype(dt).astype(np.float64)
    if not np.isfinite(c).all():
        raise ValueError(f"coeffs overflow {dt} (|c| <= {float(np.finfo(dt).max):.8g})")
    n = len(c) - 1
    ins: list[tuple[Any, ...]] = [("s_const", 1, float(c[n]))]
    for k in range(n - 1, -1, -1):
        ins += [("s_mul", 1, 1, 0), ("s_const", 2, float(c[k])), ("s_add", 1, 1, 2)]
    code, imm = assemble(ins)
    return Program({"predict": code}, {"predict": imm}, n_scalar=3, n_vector=0, n_matrix=0, dim=1)


def op_count(program: Program, *, live: bool = True) -> int:
    """The ops a program executes, as AutoNumerics-Zero counts them: every instruction but ``noop``
    and the constants (``s_const``, ``v_const``, ``m_const``: free) counts 1, arithmetic and the
    other ops alike; over all components.

    live : True: instructions of the canonical form only (dead code, which cannot reach the output, is
        free); False: every instruction as written.
    """
    if not isinstance(program, Program):
        raise TypeError(f"program must be a Program, got {type(program).__name__}")
    if not isinstance(live, (bool, np.bool_)):
        raise TypeError(f"live must be a bool, got {type(live).__name__}")
    p = program.canonical() if live else program.validate()
    free = _CONSTANT_OPS | {NOOP}
    return int(sum(int(np.isin(c[:, 0], list(free), invert=True).sum()) for c in p.components.values()))


# ---- the baseline -------------------------------------------------------------------------------------


def _degrees(degrees: Any) -> list[int]:
    if isinstance(degrees, (str, bytes)) or not isinstance(degrees, (Iterable, np.ndarray)) \
            or isinstance(degrees, Mapping):
        raise TypeError(f"degrees must be an iterable of ints, got {type(degrees).__name__}")
    out = []
    for i, d in enumerate(degrees):
        out.append(_checks.check_int(d, f"degrees[{i}]", 0, MAX_DEGREE))
        if len(out) > MAX_DEGREE + 1:
            raise ConfigError(f"degrees holds more than {MAX_DEGREE + 1} values")
    return out


def minimax_baseline(target: Any, degrees: Any = range(1, 8), *, interval: Any = None,
                     n: Any = 65537) -> list[dict[str, Any]]:
    """The minimax polynomials of each degree run as float32 Horner programs through the interpreter.

    Parameters
    ----------
    target : a name of :data:`TARGETS` or a :class:`Target`
    degrees : ints in [0, :data:`MAX_DEGREE`]
    interval : ``(a, b)``; None: the target's default
    n : the probe points' grid (:func:`probe_points`; None: every float32 of the interval)

    Returns
    -------
    One dict per degree, in the order given: ``degree``; ``coefficients`` (float64, lowest first);
    ``ops`` (:func:`op_count`: 2 per degree); ``max_ulp``: :func:`ulp_error` of the float32 program
    on the probe points; ``approx_ulp``: that of the polynomial evaluated in float64 (the
    approximation error alone, in float32 ULPs); ``max_abs_error``: the float32 program's max absolute
    error; ``minimax_error``: the max relative or absolute error (the target's kind) of the float64
    polynomial on the probe points; ``program``: the float32 :func:`horner_program`.

    For ``log2`` on ``[1, 2)``, ``max_ulp`` is enormous (about 1e38 and up) at every degree: at x = 1 the
    exact value is 0, whose ULP is the smallest subnormal, and the Horner program's value there is
    not exactly 0 (see :data:`TARGETS`); ``max_abs_error`` and ``minimax_error`` measure those
    polynomials.
    """
    t = _target(target)
    ds = _degrees(degrees)
    iv = _interval(t, interval)
    x = probe_points(t, n, interval=iv)
    if not ds:
        return []
    exact = t.reference(x.astype(np.float64))
    rows, programs = [], []
    for d in ds:
        c = minimax_polynomial(t, d, interval=iv)
        programs.append(horner_program(c, dtype="float32"))
        rows.append({"degree": d, "coefficients": c})
    code, imm = pack(programs)
    out = run_function(code, imm, x, **programs[0].registers, input_register="s0")
    ulp = np.atleast_1d(ulp_error(out, exact))
    for r, p, u, out32 in zip(rows, programs, ulp, out):
        approx = P.polyval(x.astype(np.float64), r["coefficients"])
        dev = np.abs(approx - exact)
        if t.error == "relative":
            dev = dev / np.abs(exact)
        r.update(ops=op_count(p), max_ulp=float(u), approx_ulp=float(ulp_error(approx, exact)),
                 max_abs_error=float(np.max(np.abs(out32.astype(np.float64) - exact))),
                 minimax_error=float(np.max(dev)), program=p)
    return rows
