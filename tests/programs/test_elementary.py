"""evoforge.programs.elementary (AutoNumerics-Zero's task): the ULP error against a brute-force
computation, probe points, the Remez minimax polynomial (equioscillation, better than the Chebyshev
interpolant, the analytic degree-1 case, no better neighbour), Horner programs bit for bit against
numpy, op counts, and the baseline table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial import Chebyshev
from numpy.polynomial import polynomial as P

from evoforge import interpreter
from evoforge.errors import ConfigError
from evoforge.programs import (OP_IDS, TARGETS, Program, assemble, horner_program, minimax_baseline, minimax_polynomial,
                               op_count, pack, probe_points, ulp_error)
from evoforge.programs.elementary import Target

EPS = float(np.finfo(np.float64).eps)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtypes and shapes, NaN at the same places, every other value equal bit for bit."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    na, nb = np.isnan(a), np.isnan(b)
    u = f"u{a.dtype.itemsize}"
    return bool(np.array_equal(na, nb) and np.array_equal(np.where(na, 0, a).view(u), np.where(nb, 0, b).view(u)))


def _weighted_error(name: str, coeffs: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The error the target's minimax polynomial minimises, in float64."""
    t = TARGETS[name]
    f = t.reference(xs)
    e = f - P.polyval(xs, coeffs)
    return e / np.abs(f) if t.error == "relative" else e


def _horner_numpy(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """acc = acc * x + c[k], in x's dtype, one rounding per operation (numpy has no fused multiply-add)."""
    c = np.asarray(coeffs).astype(x.dtype)
    acc = np.full_like(x, c[-1])
    with np.errstate(all="ignore"):  # inf * 0, overflow: IEEE results, as the interpreter's
        for k in range(len(c) - 2, -1, -1):
            acc = acc * x
            acc = acc + c[k]
    return acc


def _run(program: Program, x: np.ndarray) -> np.ndarray:
    return interpreter.run_function(*pack([program]), x, **program.registers, input_register="s0")[0]


# ---- targets and the reference ------------------------------------------------------------------------


def test_targets():
    assert set(TARGETS) == {"exp2", "log2"}
    assert TARGETS["exp2"].interval == (0.0, 1.0) and TARGETS["exp2"].error == "relative"
    assert TARGETS["log2"].interval == (1.0, 2.0) and TARGETS["log2"].error == "absolute"
    with pytest.raises(TypeError):
        TARGETS["sin"] = TARGETS["exp2"]  # read-only


@pytest.mark.parametrize("name", ["exp2", "log2"])
def test_float64_reference_is_far_below_a_float32_ulp(name):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 120
    x = np.concatenate([probe_points(name, 301, n_random=300, seed=1), probe_points(name, 50, interval=(
        TARGETS[name].interval[0], TARGETS[name].interval[0] + 1e-5))])
    fn = {"exp2": lambda v: mpmath.power(2, v), "log2": lambda v: mpmath.log(v, 2)}[name]
    exact = np.array([float(fn(mpmath.mpf(float(v)))) for v in x])  # correctly rounded to float64
    ref = TARGETS[name].reference(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(ref - exact) / ulp) < 1e-6


# ---- ulp_error ------------------------------------------------------------------------------------------


def _ulp_brute(pred: np.ndarray, exact: np.ndarray) -> np.ndarray:
    out = np.zeros(pred.shape[:-1])
    for idx in np.ndindex(*pred.shape[:-1]):
        worst = 0.0
        for e in range(exact.shape[0]):
            p, y = float(pred[idx + (e,)]), float(exact[e])
            if not math.isfinite(p):
                err = math.inf
            else:
                err = abs(p - y) / float(np.spacing(np.float32(abs(y))))
            worst = max(worst, err)
        out[idx] = worst
    return out


def test_ulp_error_against_brute_force():
    rng = np.random.default_rng(0)
    exact = np.concatenate([rng.normal(size=20) * 10.0 ** rng.integers(-30, 30, 20), [0.0, 1.0, -2.0, 1e-40]])
    pred = (exact * (1 + rng.normal(size=(3, 4, exact.size)) * 1e-6)).astype(np.float32)
    pred[0, 0, 3] = np.nan
    pred[1, 2, 0] = np.inf
    pred[2, 1, 5] = -np.inf
    got = ulp_error(pred, exact)
    assert got.shape == (3, 4) and got.dtype == np.float64
    np.testing.assert_array_equal(got, _ulp_brute(pred, exact))
    assert got[0, 0] == np.inf and got[1, 2] == np.inf and got[2, 1] == np.inf


def test_ulp_error_exact_hits_and_one_ulp():
    x = np.array([1.0, 1.5, -3.0, 2.0 ** -130, 0.0, 1e30], dtype=np.float32)
    exact = x.astype(np.float64)
    assert ulp_error(x, exact) == 0.0
    for i in range(x.size):
        for direction in (np.inf, -np.inf):
            off = x.copy()
            off[i] = np.nextafter(x[i], np.float32(direction))
            # one float32 step, except just below a power of two, where the float32 spacing halves
            below_pow2 = abs(off[i]) < abs(x[i]) and x[i] != 0 and math.frexp(float(x[i]))[0] == 0.5
            assert ulp_error(off, exact) == (0.5 if below_pow2 and abs(x[i]) > 2.0 ** -126 else 1.0), (i, direction)
    assert np.isscalar(ulp_error(x, exact))
    assert ulp_error(np.array([np.nan, 1.0], np.float32), np.array([1.0, 1.0])) == np.inf
    # float64 predictions are measured as given: half a float32 ULP
    assert ulp_error(np.array([1.0 + 2.0 ** -24]), np.array([1.0])) == 0.5
    # a non-representable exact value: the distance from its float32 rounding, below half an ULP
    y = np.array([1.0 + 2.0 ** -25])
    assert ulp_error(y.astype(np.float32), y) == 0.25


def test_ulp_error_bad_inputs():
    with pytest.raises(ValueError, match="exact must be finite"):
        ulp_error(np.ones(2, np.float32), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="shape"):
        ulp_error(np.ones((2, 3), np.float32), np.ones(2))
    with pytest.raises(ValueError, match="E >= 1"):
        ulp_error(np.ones(0, np.float32), np.ones(0))
    with pytest.raises(TypeError):
        ulp_error(np.ones(2, complex), np.ones(2))


# ---- probe_points ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exp2", "log2"])
def test_probe_points_grid(name):
    a, b = TARGETS[name].interval
    x = probe_points(name, 1001)
    assert x.dtype == np.float32 and x.size == 1001
    assert x[0] == a and x[-1] == np.nextafter(np.float32(b), np.float32(-np.inf))
    assert np.all(np.diff(x) > 0)
    np.testing.assert_allclose(np.diff(x.astype(np.float64)), (b - a) / 1000, rtol=0, atol=2.0 ** -22)
    assert probe_points(name, 1).tolist() == [a]


def test_probe_points_random_and_every_float():
    x = probe_points("exp2", 5, n_random=100, seed=7)
    assert x.size == 105 and np.all(np.diff(x) > 0) and x[0] == 0.0 and x[-1] < 1.0
    np.testing.assert_array_equal(x, probe_points("exp2", 5, n_random=100, seed=7))
    assert not np.array_equal(x, probe_points("exp2", 5, n_random=100, seed=8))
    # every float32 of [1, 1 + 2**-10): 2**13 of them, 2**-23 apart
    every = probe_points("log2", None, interval=(1.0, 1.0 + 2.0 ** -10))
    np.testing.assert_array_equal(every, (1.0 + np.arange(2 ** 13) * 2.0 ** -23).astype(np.float32))
    # across zero: subnormals, one zero
    sub = probe_points("exp2", None, interval=(-(2.0 ** -140), 2.0 ** -140))
    np.testing.assert_array_equal(sub, (np.arange(-512, 512) * 2.0 ** -149).astype(np.float32))
    with pytest.raises(ConfigError, match="give n"):
        probe_points("exp2", None)
    with pytest.raises(ConfigError, match="domain"):
        probe_points("log2", 5, interval=(-1.0, 2.0))
    with pytest.raises(ConfigError, match="a < b"):
        probe_points("exp2", 5, interval=(1.0, 0.0))


# ---- minimax_polynomial ---------------------------------------------------------------------------------


def _alternating_levels(e: np.ndarray) -> np.ndarray:
    """max |e| of each run of constant sign."""
    s = e >= 0
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], e.size]
    return np.array([np.abs(e[i:j]).max() for i, j in zip(starts, ends)])


@pytest.mark.parametrize("name", ["exp2", "log2"])
@pytest.mark.parametrize("degree", range(0, 8))
def test_remez_equioscillates_and_beats_chebyshev(name, degree):
    t = TARGETS[name]
    a, b = t.interval
    c = minimax_polynomial(name, degree)
    assert c.shape == (degree + 1,) and c.dtype == np.float64
    xs = np.linspace(a, b, 200001)
    e = _weighted_error(name, c, xs)
    levels = _alternating_levels(e)
    # degree + 2 alternating extrema of equal magnitude (to the grid's and float64's resolution)
    assert levels.size == degree + 2
    E = levels.max()
    assert levels.max() - levels.min() <= 1e-6 * E + 16 * EPS, levels
    # the Chebyshev interpolant of the same degree is worse
    cheb = Chebyshev.interpolate(t.reference, degree, domain=[a, b])
    f = t.reference(xs)
    ec = (f - cheb(xs)) / (np.abs(f) if t.error == "relative" else 1.0)
    if degree >= 1:
        assert E < np.abs(ec).max() * (1 - 1e-3)


def test_remez_degree_one_exp2_analytic():
    """The degree-1 minimax relative-error approximation of 2**x on [0, 1]: p(x) = c (1 + x) with
    c = 2 / (1 + K), K = 2 / (e ln 2); its error E = (K - 1) / (K + 1), at 0, 1 / ln 2 - 1 and 1."""
    K = 2.0 / (math.e * math.log(2.0))
    c = minimax_polynomial("exp2", 1)
    np.testing.assert_allclose(c, [2.0 / (1.0 + K)] * 2, rtol=1e-12)
    xs = np.linspace(0.0, 1.0, 100001)
    np.testing.assert_allclose(np.abs(_weighted_error("exp2", c, xs)).max(), (K - 1.0) / (K + 1.0), rtol=1e-9)


@pytest.mark.parametrize("name,degree", [("exp2", 2), ("exp2", 3), ("log2", 2), ("log2", 3)])
def test_remez_no_nearby_polynomial_is_better(name, degree):
    a, b = TARGETS[name].interval
    xs = np.linspace(a, b, 20001)
    c = minimax_polynomial(name, degree)
    E = np.abs(_weighted_error(name, c, xs)).max()
    rng = np.random.default_rng(degree)
    for scale in (1e-2, 1e-4):
        for _ in range(200):
            d = rng.normal(size=c.size)
            d *= scale * E / np.abs(P.polyval(xs, d)).max()  # a perturbation of size scale * E on [a, b]
            assert np.abs(_weighted_error(name, c + d, xs)).max() >= E * (1 - 1e-9)


def test_minimax_polynomial_options():
    # a custom interval and error kind; the polynomial of degree 0 (the mid-range constant for absolute)
    c0 = minimax_polynomial("exp2", 0, error="absolute")
    np.testing.assert_allclose(c0, [1.5], rtol=1e-12)
    c = minimax_polynomial("log2", 4, interval=(1.5, 3.0), error="relative")
    xs = np.linspace(1.5, 3.0, 20001)
    rel = np.abs((np.log2(xs) - P.polyval(xs, c)) / np.log2(xs))
    assert _alternating_levels((np.log2(xs) - P.polyval(xs, c)) / np.log2(xs)).size == 6 and rel.max() < 1e-4
    with pytest.raises(ConfigError, match="without zeros"):
        minimax_polynomial("log2", 3, error="relative")  # log2(1) = 0
    # a Target of one's own
    custom = Target("exp", np.exp, (-1.0, 1.0), "relative", (-80.0, 80.0))
    ce = minimax_polynomial(custom, 5)
    xe = np.linspace(-1.0, 1.0, 20001)
    re = (np.exp(xe) - P.polyval(xe, ce)) / np.exp(xe)
    assert _alternating_levels(re).size == 7 and np.abs(re).max() < 1e-4
    with pytest.raises(ConfigError):
        minimax_polynomial("exp2", 21)
    with pytest.raises(ValueError, match="unknown target"):
        minimax_polynomial("sin", 3)


# ---- horner_program and op_count ------------------------------------------------------------------------


def test_horner_program_matches_numpy_float32_bit_for_bit():
    rng = np.random.default_rng(3)
    x = np.concatenate([probe_points("exp2", 4097), rng.normal(size=2000).astype(np.float32) * 50,
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3e38, -1e-45], np.float32)])
    coeff_sets = [minimax_polynomial("exp2", d) for d in range(0, 8)]
    coeff_sets += [minimax_polynomial("log2", d) for d in (3, 7)]
    coeff_sets += [rng.normal(size=n) * 10.0 ** rng.integers(-3, 3, n) for n in (1, 2, 5, 9)]
    for c in coeff_sets:
        p = horner_program(c)
        assert _same_bits(_run(p, x), _horner_numpy(c.astype(np.float32), x))
        # float64: constants kept, float64 inputs, equal to numpy's float64 Horner
        p64 = horner_program(c, dtype="float64")
        x64 = x.astype(np.float64) * (1 + 1e-9)
        assert _same_bits(_run(p64, x64), _horner_numpy(c, x64))
        # a float32 program's constants are float32 values
        consts = p.imm["predict"][p.components["predict"][:, 0] == OP_IDS["s_const"]]
        np.testing.assert_array_equal(consts, consts.astype(np.float32).astype(np.float64))


def test_horner_program_shape_and_source():
    p = horner_program([1.0, 0.5, 0.25])
    assert p.kind == "function" and p.registers == {"n_scalar": 3, "n_vector": 0, "n_matrix": 0, "dim": 1}
    assert p.source().splitlines()[2:] == ["    s1 = 0.25", "    s1 = s1 * s0", "    s2 = 0.5", "    s1 = s1 + s2",
                                           "    s1 = s1 * s0", "    s2 = 1.0", "    s1 = s1 + s2"]
    assert len(horner_program([2.0])) == 1 and op_count(horner_program([2.0])) == 0
    with pytest.raises(ValueError, match="overflow"):
        horner_program([1e300])
    assert len(horner_program([1e300], dtype="float64")) == 1
    with pytest.raises(ValueError, match="finite"):
        horner_program([1.0, np.nan])
    with pytest.raises(ValueError, match="dtype"):
        horner_program([1.0], dtype="float16")


@pytest.mark.parametrize("degree", range(0, 8))
def test_op_count_of_horner(degree):
    p = horner_program(np.arange(1.0, degree + 2))
    assert op_count(p) == op_count(p, live=False) == 2 * degree


def test_op_count_rules():
    code, imm = assemble([("s_const", 2, 3.0), ("noop",), ("s_mul", 3, 0, 0),  # s3 is dead
                          ("s_mul", 1, 0, 2), ("v_const", 0, 1.0), ("s_sin", 1, 1)])
    p = Program({"predict": code}, {"predict": imm}, n_scalar=4, n_vector=1, n_matrix=0, dim=2)
    assert op_count(p) == 2  # s_mul, s_sin; constants and noop free, dead code dropped
    assert op_count(p, live=False) == 3  # the dead s_mul counts too
    with pytest.raises(TypeError):
        op_count(code)


# ---- the baseline ---------------------------------------------------------------------------------------


def test_baseline_exp2_falls_with_degree_to_float32_rounding():
    rows = minimax_baseline("exp2")
    assert [r["degree"] for r in rows] == list(range(1, 8))
    assert [r["ops"] for r in rows] == [2 * d for d in range(1, 8)]
    ulp = [r["max_ulp"] for r in rows]
    assert all(u1 > u2 for u1, u2 in zip(ulp, ulp[1:])), ulp
    # the approximation error alone falls geometrically; the float32 program ends at float32 rounding
    approx = [r["approx_ulp"] for r in rows]
    assert all(a1 > 10 * a2 for a1, a2 in zip(approx, approx[1:])), approx
    assert ulp[0] > 1e5 and ulp[3] > 10
    assert 0.5 <= ulp[5] < 3 and 0.5 <= ulp[6] < 3
    assert approx[6] < 0.01
    # the table's numbers are those of numpy's float32 Horner on the same probe points
    x = probe_points("exp2")
    exact = np.exp2(x.astype(np.float64))
    for r in rows:
        y = _horner_numpy(r["coefficients"].astype(np.float32), x)
        assert ulp_error(y, exact) == r["max_ulp"]
        assert r["minimax_error"] == pytest.approx(np.abs(_weighted_error("exp2", r["coefficients"], x.astype(
            np.float64))).max(), rel=1e-6)
        assert op_count(r["program"]) == r["ops"]


def test_baseline_log2():
    rows = minimax_baseline("log2", degrees=[1, 3, 5, 7])
    err = [r["minimax_error"] for r in rows]
    assert all(e1 > 5 * e2 for e1, e2 in zip(err, err[1:])), err
    # the float32 programs: their absolute error follows the minimax error until float32 rounding of the
    # alternating power-basis coefficients dominates
    assert rows[0]["max_abs_error"] == pytest.approx(err[0], rel=1e-3)
    assert rows[-1]["max_abs_error"] < 1e-5
    # log2(1) = 0 and its ULP is the smallest subnormal: any nonzero value there is ~1e38+ ULPs off
    assert all(r["max_ulp"] > 1e30 for r in rows)
    assert minimax_baseline("log2", degrees=[]) == []
