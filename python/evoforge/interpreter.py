"""Typed register programs (AutoML-Zero style) run by the native interpreter (cpp/interpreter.cpp).

A program is a list of instructions over three register files of the call's dtype (float32 or
float64): ``n_scalar`` scalars ``s[i]``, ``n_vector`` vectors ``v[i]`` of length ``dim`` and
``n_matrix`` matrices ``m[i]`` of ``dim x dim``. An instruction is four int32 ``(op, out, in1,
in2)`` and a float64 immediate ``imm`` (read by ``s_const``, ``v_const``, ``m_const`` as the
constant, and by ``v_get`` as an element index); a batch of P programs of L instructions is
``code`` int32 ``[P, L, 4]`` with ``imm`` float64 ``[P, L]`` (pad shorter programs with ``noop``, op
0). Operand fields an op does not use are ignored.

:data:`OP_TABLE` lists the ops in id order as ``(name, out_type, in_types, reads_imm)``, types
``'s'``, ``'v'``, ``'m'``; it is read from the native table, the one source of truth. Semantics are
IEEE in the dtype, with no exceptions (``x / 0`` is inf or nan, ``log(-1)`` nan, overflow inf):
``+ - * /``, ``abs``, ``neg``, ``recip = 1 / x``, ``sqrt`` correctly rounded; ``sin`` ... ``log``
the C library's functions of the dtype; ``min(a, b) = a if a < b or a is NaN else b`` (and
``max`` alike: NaN propagates); ``heaviside(x) = 1 if x > 0 else 0``; ``v_get`` (``s <- v``,
reading the immediate) copies one element, ``s_out = v_in[k]`` with ``k = floor(|imm|) mod dim``
for a finite immediate and ``k = 0`` for ``+-inf`` (and NaN, which the wrapper refuses anyway): so
``imm`` 2, 2.9, -2.5 and ``2 + dim`` all read element 2, computed exactly in float64 whatever the
call's dtype (:func:`element_index`); reductions (dot, norm, sum,
mean, matvec, matmul) start from +0 and add in index order (matrices row-major), so results are the
same bits on any thread count. An op's output may be one of its inputs.

Entry points (both release the GIL and run in parallel on the native thread pool):

* :func:`run_function`: every example alone (registers zeroed, the input written to ``s0`` or
  ``v0``, the program run, ``s1`` read), vectorised over blocks of examples.
* :func:`run_learner`: AutoML-Zero's setup / predict / learn protocol per (program, task).

Arguments are checked here first, with errors naming the problem (op ids, register indices by the
op's type signature, shapes, dtypes, counts); non-contiguous arrays are copied.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _checks
from ._native import core
from .errors import ConfigError

__all__ = ["OP_TABLE", "canonical_code", "run_function", "run_learner", "validate_code"]

#: The ops in id order: (name, out_type, in_types, reads_imm), types 's', 'v', 'm'.
OP_TABLE: tuple[tuple[str, str, tuple[str, ...], bool], ...] = tuple(
    (str(n), str(o), tuple(str(t) for t in i), bool(r)) for n, o, i, r in core.interpreter_ops())

#: Most registers of each type.
MAX_REGISTERS = 1024
#: Largest register length (a matrix holds dim**2 values).
MAX_DIM = 4096
#: Most values in one example's registers (n_scalar + n_vector dim + n_matrix dim**2): 32 MiB of float64.
MAX_REGISTER_ELEMENTS = 1 << 22

_KIND = {"s": "scalar", "v": "vector", "m": "matrix"}
_TYPE_CODE = {"": 0, "s": 1, "v": 2, "m": 3}
_SLOTS = ("out", "in1", "in2")
# [n_ops, 3]: the type code of (out, in1, in2) per op, 0 where the field is unused.
_SLOT_TYPES = np.array([[_TYPE_CODE[o], *[_TYPE_CODE[t] for t in (*ins, "", "")][:2]] for _, o, ins, _ in OP_TABLE],
                       dtype=np.int64)
_INT32 = np.iinfo(np.int32)


def signature(op: int) -> str:
    """``"v <- m, v"``: the op's output and input types."""
    _, out, ins, imm = OP_TABLE[op]
    return f"{out or '-'} <- {', '.join(ins) if ins else ('imm' if imm else '-')}"


def element_index(imm: float, dim: int) -> int:
    """The element ``v_get`` reads for immediate ``imm`` in registers of length ``dim``:
    ``floor(|imm|) mod dim`` for a finite ``imm`` (exact integer arithmetic), 0 for ``+-inf``, NaN or
    ``dim <= 1``."""
    x, d = float(imm), int(dim)
    if not math.isfinite(x) or d <= 1:
        return 0
    return math.floor(abs(x)) % d


def check_counts(n_scalar: Any, n_vector: Any, n_matrix: Any, dim: Any, *,
                 min_vector: int = 0) -> tuple[int, int, int, int]:
    """The register counts and length as ints: ``n_scalar`` in [2, 1024] (``s1`` is the output),
    ``n_vector`` in [min_vector, 1024], ``n_matrix`` in [0, 1024], ``dim`` in [1, 4096], and at most
    :data:`MAX_REGISTER_ELEMENTS` values per example (TypeError for non-ints, ConfigError otherwise)."""
    ns = _checks.check_int(n_scalar, "n_scalar", 2, MAX_REGISTERS)
    nv = _checks.check_int(n_vector, "n_vector", min_vector, MAX_REGISTERS)
    nm = _checks.check_int(n_matrix, "n_matrix", 0, MAX_REGISTERS)
    d = _checks.check_int(dim, "dim", 1, MAX_DIM)
    total = ns + nv * d + nm * d * d
    if total > MAX_REGISTER_ELEMENTS:
        raise ConfigError(f"the registers hold {total} values per example (n_scalar + n_vector * dim + "
                          f"n_matrix * dim**2), more than the {MAX_REGISTER_ELEMENTS} allowed")
    return ns, nv, nm, d


def _code_array(code: Any, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    a = _checks.to_numpy(code, name)
    if a.dtype == np.bool_ or a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers (op, out, in1, in2), got dtype {a.dtype}")
    if a.ndim not in ndims or a.shape[-1] != 4:
        want = " or ".join("[P, L, 4]" if n == 3 else "[L, 4]" for n in ndims)
        raise ValueError(f"{name} must have shape {want} (op, out, in1, in2 per instruction), got shape {a.shape}")
    if a.size and (int(a.min()) < _INT32.min or int(a.max()) > _INT32.max):
        raise ValueError(f"{name} holds values outside int32")
    return np.ascontiguousarray(a, dtype=np.int32)


def _imm_array(imm: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    if imm is None:
        return np.zeros(shape, dtype=np.float64)
    a = _checks.to_numpy(imm, name)
    if a.dtype == np.bool_ or a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float64), got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)} (one immediate per instruction), got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if np.isnan(a).any():
        idx = [int(i) for i in np.unravel_index(int(np.argmax(np.isnan(a))), shape)]
        raise ValueError(f"{name}{idx} is NaN (immediates must be numbers; +-inf is allowed)")
    return a


def _where(name: str, idx: tuple[int, ...]) -> str:
    return f"{name}: program {idx[0]}, instruction {idx[1]}" if len(idx) == 2 else f"{name}, instruction {idx[0]}"


def _check_instructions(code: np.ndarray, counts: tuple[int, int, int], name: str) -> None:
    """ValueError for the first instruction (in program, then instruction order) with an unknown op
    id or an operand outside the register file of its type."""
    if code.size == 0:
        return
    ops = code[..., 0].astype(np.int64)
    unknown = (ops < 0) | (ops >= len(OP_TABLE))
    types = _SLOT_TYPES[np.where(unknown, 0, ops)]  # [..., 3]
    limits = np.array([0, *counts], dtype=np.int64)[types]
    regs = code[..., 1:].astype(np.int64)
    bad_reg = (types > 0) & ((regs < 0) | (regs >= limits))
    bad = unknown | bad_reg.any(axis=-1)
    if not bad.any():
        return
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad.ravel())), bad.shape))
    where = _where(name, idx)
    op = int(ops[idx])
    if unknown[idx]:
        raise ValueError(f"{where}: unknown op id {op} (op ids are 0..{len(OP_TABLE) - 1})")
    k = int(np.argmax(bad_reg[idx]))
    kind = _KIND["_svm"[types[idx][k]]]
    opname = OP_TABLE[op][0]
    raise ValueError(f"{where} ({opname}): type error: {_SLOTS[k]} = {int(regs[idx][k])} is not a {kind} register "
                     f"(n_{kind} = {limits[idx][k]}; {opname} is {signature(op)})")


def validate_code(code: Any, imm: Any = None, *, n_scalar: int, n_vector: int, n_matrix: int,
                  name: str = "code") -> tuple[np.ndarray, np.ndarray]:
    """``(code, imm)`` checked and converted: code C-contiguous int32 ``[L, 4]`` or ``[P, L, 4]``, imm
    float64 of ``code.shape[:-1]`` (None: zeros).

    Raises TypeError for non-integer code or non-real imm, ValueError for a wrong shape, a NaN
    immediate, an unknown op id, or an operand outside the register file of the op's type (the
    message names ``name``, the program, the instruction, the op and its signature), ConfigError for
    bad counts.
    """
    ns = _checks.check_int(n_scalar, "n_scalar", 2, MAX_REGISTERS)
    nv = _checks.check_int(n_vector, "n_vector", 0, MAX_REGISTERS)
    nm = _checks.check_int(n_matrix, "n_matrix", 0, MAX_REGISTERS)
    c = _code_array(code, name, (2, 3))
    im = _imm_array(imm, c.shape[:-1], f"{name} imm")
    _check_instructions(c, (ns, nv, nm), name)
    return c, im


def canonical_code(code: Any, imm: Any, lengths: Any, *, n_scalar: int, n_vector: int, n_matrix: int,
                   dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The canonical forms of B programs at once (:meth:`evoforge.programs.Program.canonical` defines
    them: dead code removed, registers renamed in order of first use, unused fields zeroed).

    Parameters
    ----------
    code : int32 [N, 4] and imm : float64 [N]: the components of every program one after the other
    lengths : int [B, C]: the instructions of each component, C = 1 (a function: predict) or 3 (a
        learner: setup, predict, learn)

    Returns (code int32 [N', 4], imm float64 [N'], lengths int64 [B, C]) in the same layout. Raises as
    :func:`validate_code` for bad instructions, ValueError for lengths that do not add up to N or a
    C other than 1 or 3, ConfigError for bad counts (a learner needs ``n_vector >= 1``).
    """
    L = _checks.to_numpy(lengths, "lengths")
    if L.dtype == np.bool_ or L.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {L.dtype}")
    if L.ndim != 2 or L.shape[1] not in (1, 3):
        raise ValueError(f"lengths must have shape [B, 1] (functions) or [B, 3] (learners), got shape {L.shape}")
    if L.size and int(L.min()) < 0:
        raise ValueError("lengths must be >= 0")
    ns, nv, nm, d = check_counts(n_scalar, n_vector, n_matrix, dim, min_vector=1 if L.shape[1] == 3 else 0)
    c, im = validate_code(code, imm, n_scalar=ns, n_vector=nv, n_matrix=nm)
    if c.ndim != 2:
        raise ValueError(f"code must have shape [N, 4], got shape {c.shape}")
    if int(L.sum()) != len(c):
        raise ValueError(f"lengths add up to {int(L.sum())} instructions, code holds {len(c)}")
    return core.interp_canonical(c, im, np.ascontiguousarray(L, dtype=np.int64), ns, nv, nm, d)


def _values(x: Any, name: str, dtype: np.dtype | None) -> np.ndarray:
    a = _checks.to_numpy(x, name)
    if dtype is None:
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64, got dtype {a.dtype}")
        return np.ascontiguousarray(a).reshape(a.shape)  # reshape: ascontiguousarray makes a 0-d array 1-d
    if a.dtype == np.bool_ or a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype).reshape(a.shape)


def run_function(code: Any, imm: Any, inputs: Any, *, n_scalar: int, n_vector: int, n_matrix: int, dim: int,
                 input_register: str | None = None) -> np.ndarray:
    """``s1`` of every program on every example, each example run alone.

    Parameters
    ----------
    code : int [P, L, 4]; imm : float64 [P, L] or None (zeros)
    inputs : float32 or float64, [E] (written to ``s0``) or [E, dim] (written to ``v0``)
    n_scalar, n_vector, n_matrix, dim : the register files (``n_scalar >= 2``; ``n_vector >= 1`` for
        vector inputs)
    input_register : ``'s0'`` or ``'v0'``; None takes it from ``inputs.ndim`` (1: s0, 2: v0)

    Returns
    -------
    outputs [P, E] of the dtype of ``inputs``.
    """
    ns, nv, nm, d = check_counts(n_scalar, n_vector, n_matrix, dim)
    x = _values(inputs, "inputs", None)
    if input_register is None:
        if x.ndim not in (1, 2):
            raise ValueError(f"inputs must have shape [E] (s0) or [E, dim] (v0), got shape {x.shape}")
        input_register = "s0" if x.ndim == 1 else "v0"
    if not isinstance(input_register, str) or input_register not in ("s0", "v0"):
        raise ValueError(f"input_register must be 's0' or 'v0', got {input_register!r}")
    if input_register == "s0" and x.ndim != 1:
        raise ValueError(f"inputs for input_register 's0' must have shape [E], got shape {x.shape}")
    if input_register == "v0":
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"inputs for input_register 'v0' must have shape [E, dim={d}], got shape {x.shape}")
        if nv < 1:
            raise ConfigError("input_register 'v0' needs n_vector >= 1")
    c = _code_array(code, "code", (3,))
    im = _imm_array(imm, c.shape[:-1], "imm")
    _check_instructions(c, (ns, nv, nm), "code")
    fn = core.interp_run_function_f32 if x.dtype == np.float32 else core.interp_run_function_f64
    return fn(c, im, x, ns, nv, nm, d, input_register == "v0")


def _component(pair: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{name} must be a (code [P, L, 4], imm [P, L]) pair, got {type(pair).__name__}")
    c = _code_array(pair[0], f"{name} code", (3,))
    return c, _imm_array(pair[1], c.shape[:-1], f"{name} imm")


def run_learner(setup: Any, predict: Any, learn: Any, train_x: Any, train_y: Any, valid_x: Any, *, n_scalar: int,
                n_vector: int, n_matrix: int, epochs: int = 1, dtype: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """AutoML-Zero's evaluation of P learners on T tasks, in parallel over (program, task).

    Per (p, t): registers zeroed; ``setup`` runs once; ``epochs`` times, for each training example n
    in order: ``v0 = train_x[t, n]``, ``predict`` runs, ``train_pred[p, t, n] = s1`` (the last
    epoch's), ``s0 = train_y[t, n]``, ``learn`` runs; then for each validation example m:
    ``v0 = valid_x[t, m]``, ``predict`` runs, ``valid_pred[p, t, m] = s1``. Registers carry over from
    one example to the next (that is how a program learns).

    Parameters
    ----------
    setup, predict, learn : (code int [P, L_c, 4], imm float64 [P, L_c] or None) each, the same P
    train_x : [T, N, dim]; train_y : [T, N]; valid_x : [T, M, dim]
    n_scalar (>= 2), n_vector (>= 1), n_matrix : the register files; dim is ``train_x.shape[2]``
    epochs : int >= 1
    dtype : float32 or float64; None: ``train_x``'s (which must then be one of them)

    Returns
    -------
    (train_pred [P, T, N], valid_pred [P, T, M]) of the dtype.
    """
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    x = _values(train_x, "train_x", dtype)
    dt = x.dtype
    if x.ndim != 3 or x.shape[2] < 1:
        raise ValueError(f"train_x must have shape [T, N, dim] with dim >= 1, got shape {x.shape}")
    n_tasks, N, dim = x.shape
    ns, nv, nm, d = check_counts(n_scalar, n_vector, n_matrix, dim, min_vector=1)
    y = _values(train_y, "train_y", dt)
    if y.shape != (n_tasks, N):
        raise ValueError(f"train_y must have shape [T={n_tasks}, N={N}], got shape {y.shape}")
    vx = _values(valid_x, "valid_x", dt)
    if vx.ndim != 3 or vx.shape[0] != n_tasks or vx.shape[2] != d:
        raise ValueError(f"valid_x must have shape [T={n_tasks}, M, dim={d}], got shape {vx.shape}")
    ep = _checks.check_int(epochs, "epochs", 1, _checks.INT_MAX)
    comps = [_component(c, n) for c, n in ((setup, "setup"), (predict, "predict"), (learn, "learn"))]
    sizes = {n: c.shape[0] for (c, _), n in zip(comps, ("setup", "predict", "learn"))}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"setup, predict and learn must hold the same number of programs, got {sizes}")
    for (c, _), n in zip(comps, ("setup", "predict", "learn")):
        _check_instructions(c, (ns, nv, nm), n)
    fn = core.interp_run_learner_f32 if dt == np.float32 else core.interp_run_learner_f64
    (cs, is_), (cp, ip), (cl, il) = comps
    tp, vp = fn(cs, is_, cp, ip, cl, il, x, y, vx, ns, nv, nm, ep)
    return tp, vp
