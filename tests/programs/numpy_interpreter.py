"""An independent numpy reference of evoforge.interpreter, written from the semantics of issue 19 (not
from the C++): the op table, run_function and run_learner, plus random program generators.

Registers are arrays with the examples (or, for a learner, the tasks) as a lane axis: scalars
[n_scalar, E], vectors [n_vector, E, dim], matrices [n_matrix, E, dim, dim]. Every operation is done
in the call's dtype; reductions start from +0 and add in index order (matrices row-major), as the
semantics fix them, so the native interpreter must agree bit for bit. The transcendental functions
are taken from the C library (``math="libm"``: sinf / sin ... through ctypes, the functions the
semantics name) or from numpy (``math="numpy"``, an independent implementation to compare within
a few ulps).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math as _math

import numpy as np

# The op table of issue 19, in id order: name -> (out type, input types, reads imm).
OPS: list[tuple[str, str, tuple[str, ...], bool]] = [("noop", "", (), False)]
OPS += [(f"s_{n}", "s", ("s", "s"), False) for n in ("add", "sub", "mul", "div", "min", "max")]
OPS += [(f"s_{n}", "s", ("s",), False) for n in ("abs", "neg", "recip", "sin", "cos", "tan", "arcsin", "arccos",
                                                 "arctan", "exp", "log", "sqrt", "heaviside")]
OPS += [("s_const", "s", (), True)]
OPS += [(f"v_{n}", "v", ("v", "v"), False) for n in ("add", "sub", "mul", "div", "min", "max")]
OPS += [(f"v_{n}", "v", ("v",), False) for n in ("abs", "recip", "exp", "log", "heaviside")]
OPS += [("v_scale", "v", ("s", "v"), False), ("v_bcast", "v", ("s",), False), ("v_const", "v", (), True),
        ("v_dot", "s", ("v", "v"), False), ("v_norm", "s", ("v",), False), ("v_mean", "s", ("v",), False),
        ("v_sum", "s", ("v",), False)]
OPS += [(f"m_{n}", "m", ("m", "m"), False) for n in ("add", "sub", "mul")]
OPS += [("m_scale", "m", ("s", "m"), False), ("m_matvec", "v", ("m", "v"), False), ("m_outer", "m", ("v", "v"), False),
        ("m_matmul", "m", ("m", "m"), False), ("m_transpose", "m", ("m",), False), ("m_abs", "m", ("m",), False),
        ("m_norm", "s", ("m",), False), ("m_mean", "s", ("m",), False), ("m_const", "m", (), True)]
OPS += [("v_get", "s", ("v",), True)]  # appended later: s_out = v_in[k], k from the immediate
IDS = {name: i for i, (name, _, _, _) in enumerate(OPS)}
TRANSCENDENTAL = ("sin", "cos", "tan", "arcsin", "arccos", "arctan", "exp", "log")
_LIBM_NAMES = {"sin": "sin", "cos": "cos", "tan": "tan", "arcsin": "asin", "arccos": "acos", "arctan": "atan",
               "exp": "exp", "log": "log"}
_NUMPY = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "arcsin": np.arcsin, "arccos": np.arccos,
          "arctan": np.arctan, "exp": np.exp, "log": np.log}


def _load_libm():
    path = ctypes.util.find_library("m")
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    fns = {}
    for fn, c in _LIBM_NAMES.items():
        for dt, suffix, ct in ((np.float64, "", ctypes.c_double), (np.float32, "f", ctypes.c_float)):
            f = getattr(lib, c + suffix)
            f.restype, f.argtypes = ct, [ct]
            fns[(fn, np.dtype(dt))] = f
    return fns


LIBM = _load_libm()


def transcendental(fn: str, x: np.ndarray, math: str) -> np.ndarray:
    if math == "numpy":
        return _NUMPY[fn](x).astype(x.dtype)
    f = LIBM[(fn, x.dtype)]
    return np.array([f(float(v)) for v in x.ravel()], dtype=x.dtype).reshape(x.shape)


def _seq_sum(terms: np.ndarray, dtype) -> np.ndarray:
    """sum over the last axis, from +0, in index order, in dtype."""
    acc = np.zeros(terms.shape[:-1], dtype=dtype)
    for j in range(terms.shape[-1]):
        acc = acc + terms[..., j]
    return acc


def element_index(imm: float, dim: int) -> int:
    """v_get's index: floor(|imm|) mod dim for a finite immediate, 0 for +-inf and NaN (Python
    integers: exact for any double)."""
    if not _math.isfinite(imm):
        return 0
    return int(_math.floor(abs(imm))) % dim


class Registers:
    def __init__(self, n_scalar, n_vector, n_matrix, dim, lanes, dtype):
        self.dt = np.dtype(dtype)
        self.s = np.zeros((n_scalar, lanes), self.dt)
        self.v = np.zeros((n_vector, lanes, dim), self.dt)
        self.m = np.zeros((n_matrix, lanes, dim, dim), self.dt)
        self.dim = dim

    def file(self, t):
        return {"s": self.s, "v": self.v, "m": self.m}[t]

    def execute(self, code: np.ndarray, imm: np.ndarray, math: str = "libm") -> None:
        """Run instructions code [L, 4] with imm [L] on every lane."""
        for ins, k in zip(code, imm):
            self.step(*(int(x) for x in ins), float(k), math)

    def step(self, op, out, a, b, imm, math):
        name, otype, itypes, _ = OPS[op]
        if name == "noop":
            return
        T = self.dt
        x = self.file(itypes[0])[a].copy() if itypes else None
        y = self.file(itypes[1])[b].copy() if len(itypes) > 1 else None
        kind, fn = name[0], name[2:]
        one = T.type(1)
        with np.errstate(all="ignore"):
            k = np.array(imm, dtype=np.float64).astype(T)
            shape = self.file(otype)[out].shape
            if fn == "add":
                r = x + y
            elif fn == "sub":
                r = x - y
            elif fn in ("mul",):
                r = x * y
            elif fn == "div":
                r = x / y
            elif fn == "min":
                r = np.where((x < y) | np.isnan(x), x, y)
            elif fn == "max":
                r = np.where((x > y) | np.isnan(x), x, y)
            elif fn == "abs":
                r = np.abs(x)
            elif fn == "neg":
                r = -x
            elif fn == "recip":
                r = one / x
            elif fn == "sqrt":
                r = np.sqrt(x)
            elif fn == "heaviside":
                r = np.where(x > 0, one, T.type(0))
            elif fn in TRANSCENDENTAL:
                r = transcendental(fn, x, math)
            elif fn == "const":
                r = np.full(shape, k, dtype=T)
            elif name == "v_bcast":
                r = np.repeat(x[:, None], self.dim, axis=1)
            elif fn == "scale":
                r = x.reshape(x.shape + (1,) * (y.ndim - 1)) * y
            elif name == "v_dot":
                r = _seq_sum(x * y, T)
            elif fn == "sum":
                r = _seq_sum(x, T)
            elif fn in ("norm", "mean"):
                flat = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
                if fn == "norm":
                    r = np.sqrt(_seq_sum(flat * flat, T))
                else:
                    r = _seq_sum(flat, T) / T.type(flat.shape[1])
            elif name == "m_matvec":  # y_i = sum_j m_ij v_j
                r = _seq_sum(x * y[:, None, :], T)
            elif name == "m_outer":
                r = x[:, :, None] * y[:, None, :]
            elif name == "m_matmul":  # c_ik = sum_j a_ij b_jk
                r = _seq_sum(np.moveaxis(x[:, :, :, None] * y[:, None, :, :], 2, 3), T)
            elif name == "m_transpose":
                r = np.swapaxes(x, 1, 2)
            elif name == "v_get":
                r = x[:, element_index(imm, self.dim)].copy()
            else:  # pragma: no cover
                raise AssertionError(f"no reference for {name}")
        assert r.shape == shape and r.dtype == T, (name, r.shape, shape, r.dtype)
        self.file(otype)[out] = r


def run_function(code, imm, inputs, *, n_scalar, n_vector, n_matrix, dim, input_register=None, math="libm"):
    x = np.asarray(inputs)
    reg = input_register or ("s0" if x.ndim == 1 else "v0")
    out = np.zeros((code.shape[0], x.shape[0]), dtype=x.dtype)
    for p in range(code.shape[0]):
        r = Registers(n_scalar, n_vector, n_matrix, dim, x.shape[0], x.dtype)
        if reg == "s0":
            r.s[0] = x
        else:
            r.v[0] = x
        r.execute(code[p], imm[p], math)
        out[p] = r.s[1]
    return out


def run_learner(setup, predict, learn, train_x, train_y, valid_x, *, n_scalar, n_vector, n_matrix, epochs=1,
                math="libm"):
    """The tasks are the lanes: every task runs the same program, each on its own registers."""
    T, N, dim = train_x.shape
    M = valid_x.shape[1]
    P = predict[0].shape[0]
    tp = np.zeros((P, T, N), dtype=train_x.dtype)
    vp = np.zeros((P, T, M), dtype=train_x.dtype)
    for p in range(P):
        r = Registers(n_scalar, n_vector, n_matrix, dim, T, train_x.dtype)
        r.execute(setup[0][p], setup[1][p], math)
        for _ in range(epochs):
            for n in range(N):
                r.v[0] = train_x[:, n]
                r.execute(predict[0][p], predict[1][p], math)
                tp[p, :, n] = r.s[1]
                r.s[0] = train_y[:, n]
                r.execute(learn[0][p], learn[1][p], math)
        for m in range(M):
            r.v[0] = valid_x[:, m]
            r.execute(predict[0][p], predict[1][p], math)
            vp[p, :, m] = r.s[1]
    return tp, vp


# ---- random programs and inputs ----------------------------------------------------------------------

IMM_VALUES = [0.0, -0.0, 0.5, -1.5, 3.0, 1e-3, 2.0, -7.25, 1e30, -1e30, 1e300]
# v_get's immediates: indices in and out of range, fractions, negatives, huge values, infinities
INDEX_VALUES = [0.0, -0.0, 1.0, 2.0, 3.0, 4.0, 2.5, 0.999, -1.0, -3.7, 5.0, 7.0, 11.5, 2.0**53 + 2, 1e300,
                -1e30, np.inf, -np.inf]


def usable_ops(n_scalar, n_vector, n_matrix, ops=None):
    have = {"s": n_scalar, "v": n_vector, "m": n_matrix}
    names = ops if ops is not None else [o[0] for o in OPS]
    return [IDS[n] for n in names if all(have[t] > 0 for t in (OPS[IDS[n]][1], *OPS[IDS[n]][2]) if t)]


def random_instruction(rng, n_scalar, n_vector, n_matrix, ops, out=None, written=None):
    """One valid instruction: inputs mostly read registers in ``written`` (type -> indices) when given."""
    have = {"s": n_scalar, "v": n_vector, "m": n_matrix}
    op = int(rng.choice(ops))
    name, otype, itypes, reads_imm = OPS[op]
    row = [op, 0, 0, 0]
    if otype:
        row[1] = int(rng.integers(have[otype])) if out is None else out
    for k, t in enumerate(itypes):
        pool = sorted(written[t]) if written is not None and written[t] and rng.random() < 0.8 else None
        row[2 + k] = int(rng.choice(pool)) if pool else int(rng.integers(have[t]))
    if otype and written is not None:
        written[otype].add(row[1])
    imm = 0.0
    if name == "v_get":
        imm = float(rng.choice(INDEX_VALUES)) if rng.random() < 0.7 else float(rng.uniform(-10, 10))
    elif reads_imm:
        imm = float(rng.choice(IMM_VALUES)) if rng.random() < 0.6 else float(rng.standard_normal() * 4)
    elif rng.random() < 0.2:
        imm = float(rng.standard_normal())  # ignored by the op
    if rng.random() < 0.2:  # unused operand fields hold anything
        for k in range(len(itypes) + (1 if otype else 0), 3):
            row[1 + k] = int(rng.integers(-5, 100))
    return row, imm


def random_code(rng, P, L, n_scalar, n_vector, n_matrix, ops=None):
    """code [P, L, 4], imm [P, L]: random valid programs whose inputs mostly read registers written
    before (or the inputs s0, v0); the last instruction writes s1 more often."""
    ids = usable_ops(n_scalar, n_vector, n_matrix, ops)
    to_s = [i for i in ids if OPS[i][1] == "s"]
    code = np.zeros((P, L, 4), dtype=np.int32)
    imm = np.zeros((P, L), dtype=np.float64)
    for p in range(P):
        written = {"s": {0}, "v": {0} if n_vector else set(), "m": set()}
        for i in range(L):
            if i == L - 1 and to_s and rng.random() < 0.7:
                code[p, i], imm[p, i] = random_instruction(rng, n_scalar, n_vector, n_matrix, to_s, 1, written)
            else:
                code[p, i], imm[p, i] = random_instruction(rng, n_scalar, n_vector, n_matrix, ids, None, written)
    return code, imm


def random_values(rng, shape, dtype, special=0.15):
    """Mostly moderate values, some large, with zeros, -0, +-inf and NaN sprinkled in."""
    x = rng.standard_normal(shape) * rng.choice([0.5, 3.0, 1e3], size=shape)
    pick = rng.random(shape)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e38, -1e38, 1e300, 1.0, -1.0])
    x = np.where(pick < special, rng.choice(specials, size=shape), x)
    with np.errstate(all="ignore"):
        return x.astype(dtype)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes and dtypes, NaN at the same places, every other value equal bit for bit (the sign of
    zero included)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    na, nb = np.isnan(a), np.isnan(b)
    if not np.array_equal(na, nb):
        return False
    return np.array_equal(np.where(na, 0, a).view(f"u{a.dtype.itemsize}"),
                          np.where(nb, 0, b).view(f"u{b.dtype.itemsize}"))


def first_difference(a: np.ndarray, b: np.ndarray) -> str:
    na, nb = np.isnan(a), np.isnan(b)
    bad = (na != nb) | (~na & (np.where(na, 0, a).view(f"u{a.dtype.itemsize}")
                               != np.where(nb, 0, b).view(f"u{b.dtype.itemsize}")))
    idx = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.any() else None
    return f"{int(bad.sum())} differences, first at {idx}: {a[idx]!r} vs {b[idx]!r}" if idx else "no difference"
