"""evoforge.interpreter against the numpy reference (numpy_interpreter.py): random valid programs and
inputs rich in zeros, infinities and NaN, float32 and float64, bit for bit; transcendental ops and
reductions against numpy's own functions within a few ulps; a hand-written learner against a float64
loop; thread counts; bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evoforge
import numpy_interpreter as ref
from evoforge import interpreter
from evoforge.errors import ConfigError
from evoforge.programs import OPS, Program, assemble, pack

DTYPES = [np.float32, np.float64]
needs_libm = pytest.mark.skipif(ref.LIBM is None, reason="the C library's math functions are not loadable by ctypes")


def _check(native, expected, what=""):
    assert ref.same_bits(native, expected), f"{what}: {ref.first_difference(native, expected)}"


@pytest.fixture
def restore_threads():
    yield
    evoforge.set_num_threads(0)


def test_op_table_is_the_issue_table():
    native = [(n, o, ins, imm) for n, o, ins, imm in interpreter.OP_TABLE]
    assert native == ref.OPS
    assert [(op.name, op.out, op.ins, op.reads_imm) for op in OPS] == ref.OPS
    assert [op.id for op in OPS] == list(range(len(OPS))) and len(OPS) == 52
    assert OPS[-1].name == "v_get"  # appended: the ids of older programs did not move


@st.composite
def function_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    vector_input = draw(st.booleans())
    ns = draw(st.integers(2, 6))
    nv = draw(st.integers(1 if vector_input else 0, 3))
    nm = draw(st.integers(0, 2))
    dim = draw(st.integers(1, 5))
    E = draw(st.sampled_from([0, 1, 3, 17, 64, 65, 130]))
    P = draw(st.integers(1, 3))
    L = draw(st.integers(0, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    return dtype, vector_input, (ns, nv, nm, dim), E, P, L, seed


@needs_libm
@settings(max_examples=120, deadline=None)
@given(function_cases())
def test_run_function_matches_reference(case):
    dtype, vector_input, (ns, nv, nm, dim), E, P, L, seed = case
    rng = np.random.default_rng(seed)
    code, imm = ref.random_code(rng, P, L, ns, nv, nm)
    x = ref.random_values(rng, (E, dim) if vector_input else (E,), dtype)
    counts = dict(n_scalar=ns, n_vector=nv, n_matrix=nm, dim=dim)
    out = interpreter.run_function(code, imm, x, **counts)
    assert out.shape == (P, E) and out.dtype == dtype
    _check(out, ref.run_function(code, imm, x, **counts), f"seed {seed}")


@needs_libm
@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(DTYPES), ns=st.integers(2, 5), nv=st.integers(1, 3), nm=st.integers(0, 2),
       dim=st.integers(1, 4), T=st.integers(1, 3), N=st.integers(0, 6), M=st.integers(0, 4),
       epochs=st.integers(1, 3), P=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_run_learner_matches_reference(dtype, ns, nv, nm, dim, T, N, M, epochs, P, seed):
    rng = np.random.default_rng(seed)
    comps = [ref.random_code(rng, P, int(rng.integers(0, L + 1)), ns, nv, nm) for L in (4, 8, 10)]
    x = ref.random_values(rng, (T, N, dim), dtype, special=0.05)
    y = ref.random_values(rng, (T, N), dtype, special=0.05)
    vx = ref.random_values(rng, (T, M, dim), dtype, special=0.05)
    counts = dict(n_scalar=ns, n_vector=nv, n_matrix=nm, epochs=epochs)
    tp, vp = interpreter.run_learner(*comps, x, y, vx, **counts)
    rtp, rvp = ref.run_learner(*comps, x, y, vx, **counts)
    assert tp.shape == (P, T, N) and vp.shape == (P, T, M) and tp.dtype == vp.dtype == dtype
    _check(tp, rtp, f"train, seed {seed}")
    _check(vp, rvp, f"valid, seed {seed}")


# v_get (s <- v, the element index in the immediate) among the ops that feed it and read its output
V_GET_OPS = ["v_get", "v_get", "v_get", "v_add", "v_mul", "v_const", "v_bcast", "v_scale", "v_abs", "s_add",
             "s_mul", "s_div", "s_const", "s_heaviside", "s_sqrt"]


@needs_libm
@settings(max_examples=80, deadline=None)
@given(dtype=st.sampled_from(DTYPES), learner=st.booleans(), ns=st.integers(2, 5), nv=st.integers(1, 3),
       dim=st.integers(1, 7), E=st.sampled_from([1, 5, 64, 65]), seed=st.integers(0, 2**32 - 1))
def test_v_get_matches_reference(dtype, learner, ns, nv, dim, E, seed):
    rng = np.random.default_rng(seed)
    if not learner:
        code, imm = ref.random_code(rng, 2, 12, ns, nv, 0, ops=V_GET_OPS)
        x = ref.random_values(rng, (E, dim), dtype)
        counts = dict(n_scalar=ns, n_vector=nv, n_matrix=0, dim=dim)
        _check(interpreter.run_function(code, imm, x, **counts), ref.run_function(code, imm, x, **counts),
               f"seed {seed}")
        return
    comps = [ref.random_code(rng, 2, L, ns, nv, 0, ops=V_GET_OPS) for L in (3, 6, 6)]
    x = ref.random_values(rng, (2, 5, dim), dtype, special=0.05)
    y = ref.random_values(rng, (2, 5), dtype, special=0.05)
    vx = ref.random_values(rng, (2, 3, dim), dtype, special=0.05)
    counts = dict(n_scalar=ns, n_vector=nv, n_matrix=0, epochs=2)
    got, want = interpreter.run_learner(*comps, x, y, vx, **counts), ref.run_learner(*comps, x, y, vx, **counts)
    _check(got[0], want[0], f"train, seed {seed}")
    _check(got[1], want[1], f"valid, seed {seed}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_v_get_reads_the_element_of_its_immediate(dtype):
    dim = 5
    x = (np.arange(3 * dim).reshape(3, dim) + 1).astype(dtype)
    # immediate -> element: floor(|imm|) mod dim; +-inf read element 0
    cases = {0.0: 0, -0.0: 0, 1.0: 1, 2.9: 2, -2.5: 2, 4.999: 4, 5.0: 0, 7.0: 2, -13.2: 3, 1e300: int(1e300) % 5,
             2.0**60 + 256: (2**60 + 256) % 5, np.inf: 0, -np.inf: 0}  # 2**60 + 256: exact in float64
    for k, want in cases.items():
        code, imm = assemble([("v_get", 1, 0, k)])
        out = interpreter.run_function(code[None], imm[None], x, n_scalar=2, n_vector=1, n_matrix=0, dim=dim)[0]
        np.testing.assert_array_equal(out, x[:, int(want)], err_msg=f"imm {k}")
        assert interpreter.element_index(k, dim) == ref.element_index(k, dim) == int(want)
    # the output is a scalar register, the input any vector register; dim 1 always reads element 0
    code, imm = assemble([("v_const", 1, 2.5), ("v_get", 3, 1, 3.0), ("v_get", 2, 0, 1.0), ("s_add", 1, 2, 3)])
    out = interpreter.run_function(code[None], imm[None], x, n_scalar=4, n_vector=2, n_matrix=0, dim=dim)[0]
    np.testing.assert_array_equal(out, x[:, 1] + dtype(2.5))
    code, imm = assemble([("v_get", 1, 0, 3.0)])
    out = interpreter.run_function(code[None], imm[None], x[:, :1], n_scalar=2, n_vector=1, n_matrix=0, dim=1)[0]
    np.testing.assert_array_equal(out, x[:, 0])
    with pytest.raises(ValueError, match=r"\(v_get\): type error: out = 2 is not a scalar register"):
        interpreter.run_function([[[ref.IDS["v_get"], 2, 0, 0]]], [[1.0]], x, n_scalar=2, n_vector=1, n_matrix=0,
                                 dim=dim)
    with pytest.raises(ValueError, match=r"\(v_get\): type error: in1 = 1 is not a vector register"):
        interpreter.run_function([[[ref.IDS["v_get"], 1, 1, 0]]], [[1.0]], x, n_scalar=2, n_vector=1, n_matrix=0,
                                 dim=dim)


# ---- each op alone, against numpy's own functions ----------------------------------------------------------

TRANSCENDENTAL = [f"{k}_{fn}" for k in "sv" for fn in ref.TRANSCENDENTAL if f"{k}_{fn}" in ref.IDS]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TRANSCENDENTAL)
def test_transcendental_ops_within_ulps_of_numpy(name, dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(600) * rng.choice([0.01, 1.0, 30.0], size=600)).astype(dtype)
    x[:8] = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5], dtype=dtype)
    if name[0] == "s":  # s1 = f(s0)
        code, imm = assemble([(name, 1, 0)])
        inputs = x
    else:  # v1 = f(v0) with dim 1; s1 = sum(v1) = +0 + f(x)
        code, imm = assemble([(name, 1, 0), ("v_sum", 1, 1)])
        inputs = x[:, None]
    out = interpreter.run_function(code[None], imm[None], inputs, n_scalar=2, n_vector=2, n_matrix=0, dim=1)[0]
    with np.errstate(all="ignore"):
        want = ref.transcendental(name[2:], x, "numpy")
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_allclose(out, want, rtol=rtol, atol=np.finfo(dtype).tiny, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_within_ulps_of_numpy(dtype):
    rng = np.random.default_rng(5)
    E, dim = 50, 6
    x = rng.standard_normal((E, dim)).astype(dtype)
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    counts = dict(n_scalar=3, n_vector=3, n_matrix=3, dim=dim)

    def run(*ins):
        code, imm = assemble(ins)
        return interpreter.run_function(code[None], imm[None], x, **counts)[0]

    # m0 = outer(v0, v0) + outer(v1, v0) with v1 = 2 v0 + 0.5; matrix results read back through norm / matvec
    v1 = (x * dtype(2) + dtype(0.5)).astype(dtype)
    build = [("s_const", 2, 2.0), ("v_scale", 1, 2, 0), ("s_const", 2, 0.5), ("v_bcast", 2, 2), ("v_add", 1, 1, 2),
             ("m_outer", 0, 0, 1), ("m_outer", 1, 1, 0), ("m_add", 0, 0, 1)]
    m0 = np.einsum("ei,ej->eij", x, v1) + np.einsum("ei,ej->eij", v1, x)
    cases = {
        "v_dot": ([("v_dot", 1, 0, 0)], np.einsum("ej,ej->e", x, x)),
        "v_norm": ([("v_norm", 1, 0)], np.linalg.norm(x, axis=1)),
        "v_mean": ([("v_mean", 1, 0)], x.mean(axis=1)),
        "v_sum": ([("v_sum", 1, 0)], x.sum(axis=1)),
        "m_norm": (build + [("m_norm", 1, 0)], np.linalg.norm(m0, axis=(1, 2))),
        "m_mean": (build + [("m_mean", 1, 0)], m0.mean(axis=(1, 2))),
        "m_matvec": (build + [("m_matvec", 2, 0, 1), ("v_sum", 1, 2)], np.einsum("eij,ej->e", m0, v1)),
        "m_matmul": (build + [("m_transpose", 1, 0), ("m_matmul", 2, 0, 1), ("m_norm", 1, 2)],
                     np.linalg.norm(m0 @ np.swapaxes(m0, 1, 2), axis=(1, 2))),
    }
    for name, (ins, want) in cases.items():
        np.testing.assert_allclose(run(*ins), want.astype(dtype), rtol=rtol, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ieee_edge_values(dtype):
    x = np.array([0.0, -0.0, -1.0, 2.0, np.inf, -np.inf, np.nan], dtype=dtype)
    counts = dict(n_scalar=4, n_vector=0, n_matrix=0, dim=1)

    def run(*ins):
        code, imm = assemble(ins)
        with np.errstate(all="ignore"):
            return interpreter.run_function(code[None], imm[None], x, **counts)[0]

    with np.errstate(all="ignore"):
        _check(run(("s_recip", 1, 0)), (dtype(1) / x).astype(dtype), "recip")
        _check(run(("s_log", 1, 0)), np.log(x), "log")
        _check(run(("s_sqrt", 1, 0)), np.sqrt(x), "sqrt")
        _check(run(("s_heaviside", 1, 0)), np.array([0, 0, 0, 1, 1, 0, 0], dtype=dtype), "heaviside")
        _check(run(("s_neg", 1, 0)), -x, "neg")
        # min(a, b) = a if a < b or a is NaN else b: NaN propagates from either side
        _check(run(("s_const", 2, 1.0), ("s_min", 1, 0, 2)),
               np.array([0, -0.0, -1, 1, 1, -np.inf, np.nan], dtype=dtype), "min")
        _check(run(("s_const", 2, 1.0), ("s_max", 1, 2, 0)),
               np.array([1, 1, 1, 2, np.inf, 1, np.nan], dtype=dtype), "max")
        _check(run(("s_const", 1, 1e300)), np.full(7, 1e300, dtype=dtype), "const")


@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_may_alias_inputs(dtype):
    rng = np.random.default_rng(9)
    dim, E = 3, 5
    x = rng.standard_normal((E, dim)).astype(dtype)
    counts = dict(n_scalar=3, n_vector=2, n_matrix=2, dim=dim)
    ins = [("m_outer", 0, 0, 0), ("s_const", 2, 0.5), ("v_bcast", 1, 2), ("m_outer", 1, 1, 0), ("m_add", 0, 0, 1),
           ("m_transpose", 0, 0), ("m_matmul", 0, 0, 0), ("m_matvec", 0, 0, 0), ("v_dot", 1, 0, 1)]
    code, imm = assemble(ins)
    out = interpreter.run_function(code[None], imm[None], x, **counts)
    if ref.LIBM is not None:
        _check(out, ref.run_function(code[None], imm[None], x, **counts))
    m = np.einsum("ei,ej->eij", x, x) + np.einsum("ei,ej->eij", np.full_like(x, 0.5), x)
    m = np.swapaxes(m, 1, 2)
    m = m @ m
    v = np.einsum("eij,ej->ei", m, x)
    np.testing.assert_allclose(out[0], v.sum(axis=1) * 0.5, rtol=1e-4 if dtype == np.float32 else 1e-12)


# ---- a learner that learns ------------------------------------------------------------------------------


def linear_regression(lr: float, dim: int) -> Program:
    setup = assemble([("v_const", 1, 0.0)])  # w = 0
    predict = assemble([("v_dot", 1, 1, 0)])  # s1 = dot(w, x)
    learn = assemble([("s_sub", 2, 0, 1), ("s_const", 3, lr), ("s_mul", 2, 3, 2), ("v_scale", 2, 2, 0),
                      ("v_add", 1, 1, 2)])  # w += lr (y - s1) x
    parts = {"setup": setup, "predict": predict, "learn": learn}
    return Program({k: v[0] for k, v in parts.items()}, {k: v[1] for k, v in parts.items()}, n_scalar=4,
                   n_vector=3, n_matrix=0, dim=dim)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_regression_learner_against_a_float64_loop(dtype):
    rng = np.random.default_rng(0)
    T, N, M, dim, lr, epochs = 3, 40, 10, 4, 0.05, 3
    w_true = rng.standard_normal((T, dim))
    x = rng.standard_normal((T, N, dim))
    y = np.einsum("tnd,td->tn", x, w_true)
    vx = rng.standard_normal((T, M, dim))
    p = linear_regression(lr, dim)
    tp, vp = interpreter.run_learner(*(pack([p, p], c) for c in ("setup", "predict", "learn")), x.astype(dtype),
                                     y.astype(dtype), vx.astype(dtype), n_scalar=4, n_vector=3, n_matrix=0,
                                     epochs=epochs)
    want_t, want_v = np.zeros((T, N)), np.zeros((T, M))
    for t in range(T):
        w = np.zeros(dim)
        for _ in range(epochs):
            for n in range(N):
                want_t[t, n] = w @ x[t, n]
                w = w + lr * (y[t, n] - want_t[t, n]) * x[t, n]
        want_v[t] = vx[t] @ w
    tol = dict(rtol=1e-3, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for q in range(2):
        np.testing.assert_allclose(tp[q], want_t, **tol)
        np.testing.assert_allclose(vp[q], want_v, **tol)
    # it learned: validation error far below the variance of the targets
    assert np.mean((vp[0] - np.einsum("tmd,td->tm", vx, w_true)) ** 2) < 1e-2 * np.mean(y**2)


# ---- threads -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_outputs_on_1_2_4_threads(dtype, restore_threads):
    rng = np.random.default_rng(1)
    ns, nv, nm, dim = 5, 3, 2, 4
    code, imm = ref.random_code(rng, 24, 30, ns, nv, nm)
    x = ref.random_values(rng, (700, dim), dtype)
    comps = [ref.random_code(rng, 24, 10, ns, nv, nm) for _ in range(3)]
    tx, ty, vx = (ref.random_values(rng, s, dtype, special=0.02) for s in ((5, 60, dim), (5, 60), (5, 20, dim)))
    results = []
    for n in (1, 2, 4):
        evoforge.set_num_threads(n)
        f = interpreter.run_function(code, imm, x, n_scalar=ns, n_vector=nv, n_matrix=nm, dim=dim)
        tp, vp = interpreter.run_learner(*comps, tx, ty, vx, n_scalar=ns, n_vector=nv, n_matrix=nm, epochs=2)
        results.append((f, tp, vp))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            _check(a, b, "thread counts")


def test_non_contiguous_arguments_are_copied():
    rng = np.random.default_rng(2)
    code, imm = ref.random_code(rng, 3, 12, 4, 2, 1)
    x = rng.standard_normal((40, 6))
    counts = dict(n_scalar=4, n_vector=2, n_matrix=1, dim=3)
    a = interpreter.run_function(code, imm, np.ascontiguousarray(x[:, ::2]), **counts)
    wide = np.zeros((3, 12, 8), dtype=np.int64)
    wide[:, :, ::2] = code
    b = interpreter.run_function(wide[:, :, ::2], np.asfortranarray(imm), x[:, ::2], **counts)
    _check(a, b)


# ---- bad input ---------------------------------------------------------------------------------------------


def _fn(code=None, imm=None, x=None, **kw):
    counts = dict(n_scalar=3, n_vector=2, n_matrix=1, dim=2)
    counts.update(kw)
    code = np.array([[[1, 1, 0, 2]]]) if code is None else code
    x = np.zeros(4) if x is None else x
    return interpreter.run_function(code, imm, x, **counts)


@pytest.mark.parametrize("code,match", [
    ([[[len(ref.OPS), 1, 0, 0]]],
     rf"program 0, instruction 0: unknown op id {len(ref.OPS)} \(op ids are 0..{len(ref.OPS) - 1}\)"),
    ([[[0, 0, 0, 0], [-1, 0, 0, 0]]], r"instruction 1: unknown op id -1"),
    ([[[ref.IDS["v_add"], 2, 0, 1]]], r"\(v_add\): type error: out = 2 is not a vector register \(n_vector = 2"),
    ([[[ref.IDS["v_norm"], 1, 2, 0]]], r"\(v_norm\): type error: in1 = 2 is not a vector register"),
    ([[[ref.IDS["s_add"], 3, 0, 1]]], r"\(s_add\): type error: out = 3 is not a scalar register \(n_scalar = 3"),
    ([[[ref.IDS["s_add"], 1, 0, -1]]], r"in2 = -1 is not a scalar register"),
    ([[[ref.IDS["m_matvec"], 0, 1, 0]]], r"\(m_matvec\): type error: in1 = 1 is not a matrix register.*v <- m, v"),
    ([[[ref.IDS["v_dot"], 1, 0, 0]], [[ref.IDS["m_norm"], 1, 0, 0]], [[ref.IDS["m_add"], 0, 5, 0]]],
     r"program 2, instruction 0 \(m_add\)"),
])
def test_bad_instructions_are_named(code, match):
    with pytest.raises(ValueError, match=match):
        _fn(np.array(code))


def test_bad_arguments():
    with pytest.raises(TypeError, match="code must hold integers"):
        _fn(np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match=r"code must have shape \[P, L, 4\]"):
        _fn(np.zeros((1, 4), dtype=np.int32))
    with pytest.raises(ValueError, match="outside int32"):
        _fn(np.array([[[0, 2**40, 0, 0]]]))
    with pytest.raises(ValueError, match=r"imm must have shape \[1, 1\]"):
        _fn(imm=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="is NaN"):
        _fn(imm=np.array([[np.nan]]))
    with pytest.raises(TypeError, match="inputs must be float32 or float64"):
        _fn(x=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"shape \[E, dim=2\]"):
        _fn(x=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"shape \[E\]"):
        _fn(x=np.zeros((4, 2)), input_register="s0")
    with pytest.raises(ValueError, match="input_register must be"):
        _fn(input_register="v1")
    with pytest.raises(ConfigError, match="n_vector >= 1"):
        _fn(x=np.zeros((4, 2)), n_vector=0)
    with pytest.raises(ConfigError, match=r"dim must lie in \[1"):
        _fn(dim=0)
    with pytest.raises(ConfigError, match=r"n_scalar must lie in \[2"):
        _fn(n_scalar=1)
    with pytest.raises(ConfigError, match=r"n_matrix must lie in \[0, 1024\]"):
        _fn(n_matrix=5000)
    with pytest.raises(ConfigError, match="values per example"):
        _fn(n_matrix=1024, dim=4096)
    with pytest.raises(TypeError, match="n_vector must be an int"):
        _fn(n_vector=2.5)


def test_bad_learner_arguments():
    p = linear_regression(0.1, 2)
    comps = [pack([p], c) for c in ("setup", "predict", "learn")]
    x, y, vx = np.zeros((2, 3, 2)), np.zeros((2, 3)), np.zeros((2, 1, 2))
    kw = dict(n_scalar=4, n_vector=3, n_matrix=0)
    tp, vp = interpreter.run_learner(*comps, x, y, vx, **kw)
    assert tp.shape == (1, 2, 3) and vp.shape == (1, 2, 1) and tp.dtype == np.float64
    assert interpreter.run_learner(*comps, x, y, vx, **kw, dtype=np.float32)[0].dtype == np.float32
    with pytest.raises(ValueError, match="same number of programs"):
        interpreter.run_learner(comps[0], pack([p, p], "predict"), comps[2], x, y, vx, **kw)
    with pytest.raises(TypeError, match=r"learn must be a \(code"):
        interpreter.run_learner(comps[0], comps[1], comps[2][0], x, y, vx, **kw)
    with pytest.raises(ValueError, match=r"train_y must have shape \[T=2, N=3\]"):
        interpreter.run_learner(*comps, x, y[:, :2], vx, **kw)
    with pytest.raises(ValueError, match=r"valid_x must have shape"):
        interpreter.run_learner(*comps, x, y, vx[..., :1], **kw)
    with pytest.raises(ValueError, match=r"train_x must have shape \[T, N, dim\]"):
        interpreter.run_learner(*comps, x[0], y, vx, **kw)
    with pytest.raises(ConfigError, match=r"n_vector must lie in \[1"):
        interpreter.run_learner(*comps, x, y, vx, n_scalar=4, n_vector=0, n_matrix=0)
    with pytest.raises(ValueError, match=r"setup: program 0, instruction 0 \(v_const\): type error: out = 1"):
        interpreter.run_learner(*comps, x, y, vx, n_scalar=4, n_vector=1, n_matrix=0)
    with pytest.raises(ConfigError, match=r"epochs must lie in \[1"):
        interpreter.run_learner(*comps, x, y, vx, **kw, epochs=0)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        interpreter.run_learner(*comps, x, y, vx, **kw, dtype=np.int32)
    with pytest.raises(TypeError, match="train_x must be float32 or float64"):
        interpreter.run_learner(*comps, x.astype(np.int16), y, vx, **kw)


def test_native_checks_without_the_wrapper():
    from evoforge._native import core

    code = np.array([[[ref.IDS["v_add"], 2, 0, 1]]], dtype=np.int32)
    with pytest.raises(ValueError, match=r"instruction 0 \(v_add\): out = 2 is not a vector register"):
        core.interp_run_function_f64(code, np.zeros((1, 1)), np.zeros(3), 3, 2, 0, 2, False)
    with pytest.raises(ValueError, match="unknown op id 99"):
        core.interp_run_function_f32(np.array([[[99, 0, 0, 0]]], dtype=np.int32), np.zeros((1, 1)),
                                     np.zeros(3, np.float32), 3, 2, 0, 2, False)
