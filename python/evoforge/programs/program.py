"""Register programs (AutoML-Zero style): the representation, validation, canonical form and printer.

A :class:`Program` holds one instruction array per component, code int32 ``[L, 4]`` (op, out, in1,
in2) and imm float64 ``[L]``, with the register counts and length it runs with. Two forms:

* a function, ``{"predict"}``: every example alone, the input in ``s0`` (``[E]`` inputs) or ``v0``
  (``[E, dim]``), the output ``s1`` (:func:`evoforge.interpreter.run_function`);
* a learner, ``{"setup", "predict", "learn"}``: AutoML-Zero's protocol, features in ``v0``, the label
  in ``s0`` while ``learn`` runs, the prediction ``s1`` after ``predict``, registers carried from one
  example to the next (:func:`evoforge.interpreter.run_learner`).

``s0``, ``s1`` and ``v0`` are reserved (the canonical form never renames them). The arrays are
copied and made read-only, so a program can be hashed (:meth:`Program.key`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .. import _checks
from ..interpreter import MAX_DIM, canonical_code, check_counts, element_index, validate_code
from .ops import NOOP, OPS, op_id

__all__ = ["Program", "assemble", "format_instruction", "pack", "FUNCTION", "LEARNER"]

#: The component names of the two forms, in execution order.
FUNCTION: tuple[str, ...] = ("predict",)
LEARNER: tuple[str, ...] = ("setup", "predict", "learn")
_ORDER = {n: i for i, n in enumerate(LEARNER)}
RESERVED: dict[str, tuple[int, ...]] = {"s": (0, 1), "v": (0,), "m": ()}
_SLOTS = ("in1", "in2")
_INT32_MIN, _INT32_MAX = -2**31, 2**31 - 1
V_GET = op_id("v_get")


def _freeze(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True, order="C")
    a.setflags(write=False)
    return a


def _code(c: Any, name: str) -> np.ndarray:
    a = _checks.to_numpy(c, f"component {name!r} code")
    if a.shape == (0,):  # [] : an empty component
        a = np.zeros((0, 4), dtype=np.int32)
    if a.dtype == np.bool_ or a.dtype.kind not in "iu":
        raise TypeError(f"component {name!r} code must hold integers, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"component {name!r} code must have shape [L, 4] (op, out, in1, in2), got shape {a.shape}")
    if a.size and (int(a.min()) < -2**31 or int(a.max()) >= 2**31):
        raise ValueError(f"component {name!r} code holds values outside int32")
    return _freeze(a.astype(np.int32))


def _imm(x: Any, n: int, name: str) -> np.ndarray:
    if x is None:
        return _freeze(np.zeros(n, dtype=np.float64))
    a = _checks.to_numpy(x, f"component {name!r} imm")
    if a.dtype == np.bool_ or a.dtype.kind not in "fiu":
        raise TypeError(f"component {name!r} imm must hold real numbers, got dtype {a.dtype}")
    if a.shape != (n,):
        raise ValueError(f"component {name!r} imm must have shape [{n}] (one per instruction), got shape {a.shape}")
    return _freeze(a.astype(np.float64))


@dataclass(eq=False)
class Program:
    """A typed register program.

    Attributes
    ----------
    components : {"predict": code} (a function) or {"setup", "predict", "learn"} (a learner), each
        code int32 [L, 4] (op, out, in1, in2); kept in execution order
    imm : {name: float64 [L]}: the immediates of each component (None, or a missing name: zeros)
    n_scalar, n_vector, n_matrix, dim : the registers the program runs with

    The constructor converts (TypeError / ValueError for arrays of the wrong kind or shape);
    :meth:`validate` checks ops and register types.
    """

    components: Mapping[str, Any]
    imm: Mapping[str, Any] | None = None
    _: KW_ONLY
    n_scalar: int
    n_vector: int
    n_matrix: int
    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.components, Mapping):
            raise TypeError(f"components must be a dict of name -> code [L, 4], got {type(self.components).__name__}")
        imm = {} if self.imm is None else self.imm
        if not isinstance(imm, Mapping):
            raise TypeError(f"imm must be a dict of name -> float64 [L], got {type(imm).__name__}")
        names = sorted(self.components, key=lambda n: (_ORDER.get(n, len(_ORDER)), str(n)))
        extra = [n for n in imm if n not in self.components]
        if extra:
            raise ValueError(f"imm names components the program does not have: {extra}")
        code = {n: _code(self.components[n], n) for n in names}
        self.components = code
        self.imm = {n: _imm(imm.get(n), len(code[n]), n) for n in names}

    @classmethod
    def _trusted(cls, code: dict[str, np.ndarray], imm: dict[str, np.ndarray], *, n_scalar: int, n_vector: int,
                 n_matrix: int, dim: int) -> Program:
        """A valid program from arrays evoforge made itself (int32 [L, 4] and float64 [L] per component, in
        execution order, no longer written by the caller): frozen in place, neither converted nor
        checked. A search builds every child so; a valid parent's mutants are valid by construction."""
        for a in (*code.values(), *imm.values()):
            a.setflags(write=False)
        p = cls.__new__(cls)
        p.__dict__.update(components=code, imm=imm, n_scalar=n_scalar, n_vector=n_vector, n_matrix=n_matrix,
                          dim=dim, _valid=(n_scalar, n_vector, n_matrix, dim, id(code), id(imm)))
        return p

    # ---- checks and views ---------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"function"`` or ``"learner"`` (ValueError for another set of components)."""
        names = tuple(self.components)
        if names == FUNCTION:
            return "function"
        if names == LEARNER:
            return "learner"
        raise ValueError(f"a program's components are {set(FUNCTION)} (a function) or {set(LEARNER)} (a learner), "
                         f"got {set(names)}")

    def validate(self) -> Program:
        """This program, once its components, counts, op ids and operand types are checked.

        ValueError names the component, the instruction, the op and its signature (unknown op ids,
        operands outside the register file of their type: a "type error"), or a NaN immediate;
        ConfigError (a ValueError) a bad count; TypeError non-integer counts.
        """
        counts = (self.n_scalar, self.n_vector, self.n_matrix, self.dim, id(self.components), id(self.imm))
        if self.__dict__.get("_valid") == counts:  # checked before (the arrays are read-only): search loops ask often
            return self
        learner = self.kind == "learner"
        ns, nv, nm, _ = check_counts(self.n_scalar, self.n_vector, self.n_matrix, self.dim,
                                     min_vector=1 if learner else 0)
        try:  # all components in one check (a search validates every child); per component on a failure
            validate_code(np.concatenate(list(self.components.values())), np.concatenate(list(self.imm.values())),
                          n_scalar=ns, n_vector=nv, n_matrix=nm, name="program")
        except ValueError:
            for n, c in self.components.items():
                validate_code(c, self.imm[n], n_scalar=ns, n_vector=nv, n_matrix=nm, name=f"component {n!r}")
            raise
        self.__dict__["_valid"] = counts
        return self

    def to_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{name: (code int32 [L, 4], imm float64 [L])}, validated (read-only views)."""
        self.validate()
        return {n: (c, self.imm[n]) for n, c in self.components.items()}

    @property
    def registers(self) -> dict[str, int]:
        """The keyword arguments of the interpreter's entry points: n_scalar, n_vector, n_matrix (and
        dim for a function)."""
        r = {"n_scalar": self.n_scalar, "n_vector": self.n_vector, "n_matrix": self.n_matrix}
        return r if self.kind == "learner" else {**r, "dim": self.dim}

    def __len__(self) -> int:
        """Instructions in all components."""
        return sum(len(c) for c in self.components.values())

    def key(self) -> bytes:
        """The program's bytes (counts, component names, code, imm): equal programs, equal keys."""
        head = np.array([self.n_scalar, self.n_vector, self.n_matrix, self.dim], dtype=np.int64).tobytes()
        parts = [head]
        for n, c in self.components.items():
            parts += [n.encode(), np.int64(len(c)).tobytes(), c.tobytes(), self.imm[n].tobytes()]
        return b"|".join(parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Program):
            return NotImplemented
        return self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    # ---- canonical form -----------------------------------------------------------------------------

    def canonical(self) -> Program:
        """The program without dead code, registers renamed in order of first use.

        Dead: instructions whose output can never reach an output (``s1`` after ``predict``). For a
        learner, state carries from one example to the next, so a register is live at the end of a
        component when the next component to run can read it before writing it (setup -> predict,
        predict -> learn (``s0`` is then overwritten by the label), learn -> predict and, in
        validation, predict -> predict (``v0`` is then overwritten by the features)): liveness is
        iterated to a fixed point across components. Renaming: per type, in order of first use
        (components in execution order, inputs before the output), with ``s0``, ``s1``, ``v0`` kept.
        Unused operand fields and the immediates of ops that do not read one are set to 0, and a
        ``v_get``'s immediate to the index it reads (``floor(|imm|) mod dim``, a float).

        Two programs that differ only in dead code and register names have equal canonical forms,
        and a canonical form computes the same outputs, bit for bit.
        """
        return canonical_many([self])[0]

    # ---- printer ------------------------------------------------------------------------------------

    def source(self) -> str:
        """Readable Python-like source: a ``def NAME():`` per component, one line per instruction
        (``s3 = s1 * s2``, ``v2 = m0 @ v1``, ``s4 = 0.5``, ``v1[:] = 0.0``, ``s3 = v0[2]``)."""
        self.validate()
        lines = [f"# {self.kind}: {self.n_scalar} scalars, {self.n_vector} vectors, {self.n_matrix} matrices, "
                 f"dim {self.dim}"]
        for n, c in self.components.items():
            lines.append(f"def {n}():")
            body = [format_instruction(c[i], self.imm[n][i], dim=self.dim) for i in range(len(c))]
            lines += [f"    {b}" for b in body] or ["    pass"]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.source()


# ---- canonical forms of many programs ----------------------------------------------------------------


def canonical_arrays(programs: Sequence[Program]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The canonical forms of programs of one kind and one set of counts, in one native call:
    (code int32 [N, 4], imm float64 [N], lengths int64 [B, C]) as :func:`evoforge.interpreter.canonical_code`
    returns them. ValueError for an invalid program or programs of different kinds or counts."""
    p0 = programs[0]
    shape = (p0.kind, p0.n_scalar, p0.n_vector, p0.n_matrix, p0.dim)
    for p in programs:
        p.validate()
        if (p.kind, p.n_scalar, p.n_vector, p.n_matrix, p.dim) != shape:
            raise ValueError("canonical_arrays takes programs of one kind and one set of register counts")
    code = np.concatenate([c for p in programs for c in p.components.values()])
    imm = np.concatenate([m for p in programs for m in p.imm.values()])
    lengths = np.array([[len(c) for c in p.components.values()] for p in programs], dtype=np.int64)
    return canonical_code(code, imm, lengths, n_scalar=p0.n_scalar, n_vector=p0.n_vector, n_matrix=p0.n_matrix,
                          dim=p0.dim)


def canonical_many(programs: Sequence[Program]) -> list[Program]:
    """:meth:`Program.canonical` of each program (one native call per kind and set of counts)."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(programs):
        groups.setdefault((p.kind, p.n_scalar, p.n_vector, p.n_matrix, p.dim), []).append(i)
    out: list[Program | None] = [None] * len(programs)
    for idx in groups.values():
        code, imm, lengths = canonical_arrays([programs[i] for i in idx])
        at = 0
        for i, row in zip(idx, lengths.tolist()):
            p = programs[i]
            comp, vals = {}, {}
            for n, L in zip(p.components, row):
                comp[n], vals[n] = code[at:at + L], imm[at:at + L]
                at += L
            out[i] = Program._trusted(comp, vals, n_scalar=p.n_scalar, n_vector=p.n_vector, n_matrix=p.n_matrix,
                                      dim=p.dim)
    return out  # type: ignore[return-value]


# ---- printer ------------------------------------------------------------------------------------------


def _templates() -> dict[str, str]:
    t = {"noop": "pass", "s_const": "{o} = {imm}", "v_const": "{o}[:] = {imm}", "m_const": "{o}[:] = {imm}",
         "v_bcast": "{o}[:] = {a}", "v_scale": "{o} = {a} * {b}", "m_scale": "{o} = {a} * {b}",
         "v_dot": "{o} = dot({a}, {b})", "m_matvec": "{o} = {a} @ {b}", "m_matmul": "{o} = {a} @ {b}",
         "m_outer": "{o} = outer({a}, {b})", "m_transpose": "{o} = {a}.T", "s_neg": "{o} = -{a}",
         "s_min": "{o} = min({a}, {b})", "s_max": "{o} = max({a}, {b})",
         "v_min": "{o} = minimum({a}, {b})", "v_max": "{o} = maximum({a}, {b})", "v_get": "{o} = {a}[{index}]"}
    for p in "svm":
        for name, sym in (("add", "+"), ("sub", "-"), ("mul", "*"), ("div", "/")):
            t[f"{p}_{name}"] = f"{{o}} = {{a}} {sym} {{b}}"
        t[f"{p}_recip"] = "{o} = 1 / {a}"
        for fn in ("abs", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "exp", "log", "sqrt", "heaviside",
                   "norm", "mean", "sum"):
            t.setdefault(f"{p}_{fn}", f"{{o}} = {fn}({{a}})")
    missing = [op.name for op in OPS if op.name not in t]
    assert not missing, f"no source template for ops {missing}"
    return t


_TEMPLATES = _templates()


def format_instruction(ins: Sequence[int], imm: float = 0.0, dim: int | None = None) -> str:
    """One instruction (op, out, in1, in2) as a line of source, e.g. ``s3 = s1 * s2``.

    ``dim`` (the register length) resolves a ``v_get``'s index: ``s3 = v0[k]`` with ``k =
    floor(|imm|) mod dim`` (None: ``floor(|imm|)``, the index before the modulo; 0 for +-inf).

    TypeError for anything but 4 integers, ValueError for an unknown op id or a negative register
    (fields the op does not use are ignored), ConfigError for a ``dim`` outside [1, 4096]."""
    a = _checks.to_numpy(ins, "ins")
    if a.dtype == np.bool_ or a.dtype.kind not in "iu" or a.shape != (4,):
        raise TypeError(f"ins must be 4 integers (op, out, in1, in2), got dtype {a.dtype}, shape {a.shape}")
    if not 0 <= int(a[0]) < len(OPS):
        raise ValueError(f"ins: unknown op id {int(a[0])} (op ids are 0..{len(OPS) - 1})")
    op = OPS[int(a[0])]
    used = [1, *range(2, 2 + op.arity)] if op.out else []
    if any(int(a[i]) < 0 for i in used):
        raise ValueError(f"ins: negative register in {a.tolist()} ({op.name} is {op.signature})")
    d = None if dim is None else _checks.check_int(dim, "dim", 1, MAX_DIM)
    x = _immediate(imm, "imm")
    index = (element_index(x, d) if d is not None else math.floor(abs(x)) if math.isfinite(x) else 0) \
        if op.id == V_GET else 0
    regs = [f"{t}{int(a[2 + k])}" for k, t in enumerate(op.ins)] + ["", ""]
    return _TEMPLATES[op.name].format(o=f"{op.out}{int(a[1])}", a=regs[0], b=regs[1], imm=repr(x), index=index)


def _immediate(x: Any, name: str) -> float:
    """An immediate as a float (a real number or a numeric string, as float() takes them); TypeError naming
    ``name`` otherwise (ValueError for a non-numeric string)."""
    try:
        return float(x)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name} must be a real number, got {type(x).__name__}: {e}") from None


# ---- building and packing -----------------------------------------------------------------------------


def assemble(instructions: Iterable[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(code int32 [L, 4], imm float64 [L]) from ``(op_name, out, *inputs)`` tuples, register indices
    as ints, the immediate in place of the inputs for ops that read one: ``[("v_const", 1, 0.0),
    ("v_dot", 1, 1, 0), ("s_sub", 2, 0, 1)]``. ValueError for an unknown op or a wrong operand count."""
    rows, vals = [], []
    for k, ins in enumerate(instructions):
        if isinstance(ins, (str, bytes)) or not isinstance(ins, Sequence) or not ins:
            raise TypeError(f"instruction {k} must be a tuple (op_name, out, *inputs), got {ins!r}")
        op = OPS[op_id(ins[0])]
        args = list(ins[1:])
        want = (0 if op.id == NOOP else 1) + op.arity + int(op.reads_imm)
        if len(args) != want:
            raise ValueError(f"instruction {k} ({op.name}, {op.signature}) takes {want} operands, got {len(args)}")
        imm = _immediate(args.pop(), f"instruction {k} ({op.name}) immediate") if op.reads_imm else 0.0
        regs = [_checks.check_int(a, f"instruction {k} ({op.name}) operand {j + 1}", _INT32_MIN, _INT32_MAX)
                for j, a in enumerate(args)] + [0] * (3 - len(args))
        rows.append([op.id, *regs])
        vals.append(imm)
    return np.array(rows, dtype=np.int32).reshape(-1, 4), np.array(vals, dtype=np.float64)


def pack(programs: Sequence[Program], component: str = "predict") -> tuple[np.ndarray, np.ndarray]:
    """(code int32 [P, L, 4], imm float64 [P, L]) of one component of every program, shorter ones padded
    with ``noop`` to the longest L, for :mod:`evoforge.interpreter`."""
    if isinstance(programs, Program) or not isinstance(programs, Sequence):
        raise TypeError(f"programs must be a sequence of Program, got {type(programs).__name__}")
    if not isinstance(component, str):
        raise TypeError(f"component must be a component name (str), got {type(component).__name__}")
    for i, p in enumerate(programs):
        if not isinstance(p, Program):
            raise TypeError(f"programs[{i}] must be a Program, got {type(p).__name__}")
        if component not in p.components:
            raise ValueError(f"programs[{i}] has no component {component!r} (it has {list(p.components)})")
    L = max((len(p.components[component]) for p in programs), default=0)
    code = np.zeros((len(programs), L, 4), dtype=np.int32)
    imm = np.zeros((len(programs), L), dtype=np.float64)
    for i, p in enumerate(programs):
        n = len(p.components[component])
        code[i, :n] = p.components[component]
        imm[i, :n] = p.imm[component]
    return code, imm

