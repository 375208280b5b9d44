"""AutoML-Zero's mutations of register programs, and random programs.

:func:`mutate` applies one mutation, chosen uniformly among the kinds that apply to the program:

* ``"insert"``: a random valid instruction at a random position of a random component (one shorter
  than ``max_length``);
* ``"remove"``: a random instruction (uniform over all the program's instructions);
* ``"randomize_component"``: a random non-empty component replaced by random valid instructions of
  the same length;
* ``"argument"``: one field of one instruction: an operand (output or input) register, replaced by
  another register of the same type, or the immediate of an op that reads one, perturbed by a
  Gaussian (``imm + imm_sigma * (1 + |imm|) * z``), except ``v_get``'s, an element index, replaced by
  another index of ``[0, dim)`` drawn uniformly (from the same Gaussian ``z``, through its CDF; with
  ``dim = 1`` a ``v_get``'s immediate cannot change);
* ``"op"``: one instruction's op replaced by another of the same type signature (output, inputs and
  immediate), its operands kept.

A random instruction draws its op uniformly from ``ops`` (default: every op but ``noop``) less those
whose types have no register, its operand registers uniformly from their register files (any
register, ``s0``, ``s1`` and ``v0`` included) and its immediate, for an op that reads one, from a
standard normal ``z`` (for ``v_get``: the index ``floor(Phi(z) dim)``, uniform over ``[0, dim)``,
``Phi`` the normal CDF); fields the op does not use are 0.

Every draw comes from ``numpy.random.Generator(numpy.random.Philox(key=K))`` with ``K`` the 128-bit
digest (:class:`evoforge.hashing.Hasher`) of (seed, generation, individual, attempt): a mutant is a
pure function of the program and those numbers, on any machine and thread count.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .. import _checks
from ..hashing import Hasher
from ..interpreter import check_counts, element_index
from ..random import check_uint
from .cache import DEFAULT_QUANTISE, _F_TAG, _functional, _prefix, check_quantise
from .ops import NOOP, OPS, op_id
from .program import FUNCTION, LEARNER, V_GET, Program

__all__ = ["mutate", "mutate_until_different", "random_program", "MUTATION_KINDS"]

#: The mutation kinds, in the order in which the applicable ones are numbered for the uniform draw.
MUTATION_KINDS: tuple[str, ...] = ("insert", "remove", "randomize_component", "argument", "op")
#: Most instructions per component that :func:`random_program` makes.
MAX_LENGTH = 1 << 16
_TYPE = {"": 0, "s": 1, "v": 2, "m": 3}
# [n_ops, 3]: the type code of (out, in1, in2) per op, 0 where unused; and whether the op reads imm
_FIELDS = np.array([[_TYPE[op.out], *[_TYPE[t] for t in (*op.ins, "", "")][:2]] for op in OPS], dtype=np.int64)
_READS_IMM = np.array([op.reads_imm for op in OPS], dtype=bool)
_SIGNATURE = [(op.out, op.ins, op.reads_imm) for op in OPS]


_LOCAL = threading.local()


def _generator(*words: Any) -> np.random.Generator:
    """The Philox stream keyed by the digest of ``words``: one Generator per thread, re-keyed (setting a
    state costs a fifth of making a Generator, and a search draws one stream per child); valid until
    the thread's next call."""
    key = int.from_bytes(Hasher().update(words).digest(), "little")
    g = getattr(_LOCAL, "generator", None)
    if g is None:
        g = _LOCAL.generator = np.random.Generator(np.random.Philox(key=key))
        return g
    g.bit_generator.state = {"bit_generator": "Philox",
                             "state": {"counter": np.zeros(4, np.uint64),
                                       "key": np.array([key & 0xFFFFFFFFFFFFFFFF, key >> 64], np.uint64)},
                             "buffer": np.zeros(4, np.uint64), "buffer_pos": 4, "has_uint32": 0, "uinteger": 0}
    return g


def _op_pool(ops: Any, have: dict[str, int]) -> tuple[int, ...]:
    """Ids of the allowed ops whose output and input types all have registers, in id order."""
    if ops is None:
        names = None
    else:
        if isinstance(ops, (str, bytes)) or not isinstance(ops, Iterable):
            raise TypeError(f"ops must be a sequence of op names, got {type(ops).__name__}")
        names = tuple(ops)
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"ops must hold op names (str), got {type(name).__name__}")
    return _usable(names, have["s"] > 0, have["v"] > 0, have["m"] > 0)


@functools.lru_cache(maxsize=256)
def _usable(names: tuple[str, ...] | None, s: bool, v: bool, m: bool) -> tuple[int, ...]:
    have = {"s": s, "v": v, "m": m}
    ids = [op.id for op in OPS if op.id != NOOP] if names is None else [op_id(n) for n in names]
    return tuple(sorted({i for i in ids if all(have[t] for t in (OPS[i].out, *OPS[i].ins) if t)}))


def _uniform_index(z: float, n: int) -> int:
    """``floor(Phi(z) n)`` in ``[0, n)``: an index uniform over ``n`` values for a standard normal z."""
    return min(int(0.5 * math.erfc(-z / math.sqrt(2.0)) * n), n - 1)


def _random_rows(rng: np.random.Generator, n: int, pool: Sequence[int], limits: np.ndarray, dim: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random valid instructions: (code int32 [n, 4], imm float64 [n])."""
    ops = np.asarray(pool, dtype=np.int64)[rng.integers(len(pool), size=n)]
    u = rng.random((n, 3))
    z = rng.standard_normal(n)
    code = np.zeros((n, 4), dtype=np.int32)
    code[:, 0] = ops
    code[:, 1:] = np.minimum(np.floor(u * limits[_FIELDS[ops]]), np.maximum(limits[_FIELDS[ops]] - 1, 0))
    imm = np.where(_READS_IMM[ops], z, 0.0)
    for i in np.flatnonzero(ops == V_GET):  # an element index, uniform over [0, dim)
        imm[i] = float(_uniform_index(float(z[i]), dim))
    return code, imm


def _check_kinds(kinds: Any) -> set[str]:
    if isinstance(kinds, (str, bytes)) or not isinstance(kinds, Iterable):
        raise TypeError(f"kinds must be a sequence of mutation kinds, got {type(kinds).__name__}")
    out = set()
    for k in kinds:
        if not isinstance(k, str):
            raise TypeError(f"kinds must hold mutation kinds (str), got {type(k).__name__}")
        if k not in MUTATION_KINDS:
            raise ValueError(f"unknown mutation kind {k!r}; the kinds are {', '.join(MUTATION_KINDS)}")
        out.add(k)
    if not out:
        raise ValueError(f"kinds must name at least one of {', '.join(MUTATION_KINDS)}")
    return out


def _check_sigma(imm_sigma: Any) -> float:
    s = _checks.check_real(imm_sigma, "imm_sigma")
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"imm_sigma must be a positive finite number, got {imm_sigma!r}")
    return s


class _Plan:
    """What a mutation may change in one program: its arrays (copies), registers and op choices."""

    def __init__(self, program: Any, max_length: Any, ops: Any) -> None:
        if not isinstance(program, Program):
            raise TypeError(f"program must be a Program, got {type(program).__name__}")
        program.validate()
        self.program = program
        self.have = {"": 0, "s": program.n_scalar, "v": program.n_vector, "m": program.n_matrix}
        self.limits = np.array([0, self.have["s"], self.have["v"], self.have["m"]], dtype=np.int64)
        self.max_length = None if max_length is None else _checks.check_int(max_length, "max_length", 0)
        self.pool = _op_pool(ops, self.have)
        self.names = list(program.components)
        # the parent's read-only arrays; _apply replaces the one it changes with a new array
        self.code = dict(program.components)
        self.imm = dict(program.imm)
        self._fields: dict[int, list[int]] = {}
        self._alts: dict[int, list[int]] = {}

    def sites(self, fn: Callable[[int], int]) -> list[tuple[str, int, int]]:
        """(component, index, weight) of every instruction where ``fn(op)`` (the count of choices) > 0."""
        return [(n, i, w) for n in self.names for i, op in enumerate(self.code[n][:, 0].tolist()) if (w := fn(op))]

    def fields(self, op: int) -> list[int]:
        """The fields (1 out, 2 in1, 3 in2, 4 imm) of ``op`` that can change."""
        if op not in self._fields:
            f = [k + 1 for k in range(3) if self.limits[_FIELDS[op, k]] > 1]
            self._fields[op] = f + [4] if _READS_IMM[op] and (op != V_GET or self.program.dim > 1) else f
        return self._fields[op]

    def alternatives(self, op: int) -> list[int]:
        """The ops of the pool, other than ``op``, with its type signature."""
        if op not in self._alts:
            self._alts[op] = [o for o in self.pool if o != op and _SIGNATURE[o] == _SIGNATURE[op]]
        return self._alts[op]

    def applicable(self, kinds: set[str]) -> list[str]:
        lengths = {n: len(c) for n, c in self.code.items()}
        room = self.max_length is None or any(L < self.max_length for L in lengths.values())
        test = {
            "insert": lambda: bool(self.pool) and room,
            "remove": lambda: any(lengths.values()),
            "randomize_component": lambda: bool(self.pool) and any(lengths.values()),
            "argument": lambda: any(self.fields(op) for n in self.names for op in set(self.code[n][:, 0].tolist())),
            "op": lambda: any(self.alternatives(op) for n in self.names for op in set(self.code[n][:, 0].tolist())),
        }
        return [k for k in MUTATION_KINDS if k in kinds and test[k]()]

    def result(self) -> Program:
        p = self.program
        return Program._trusted(self.code, self.imm, n_scalar=p.n_scalar, n_vector=p.n_vector, n_matrix=p.n_matrix,
                                dim=p.dim)


def _pick(rng: np.random.Generator, sites: list[tuple[str, int, int]]) -> tuple[str, int]:
    """One site, uniformly."""
    n, i, _ = sites[int(rng.integers(len(sites)))]
    return n, i


def _perturb(rng: np.random.Generator, old: float, sigma: float) -> float:
    z = float(rng.standard_normal())
    new = old + sigma * (1.0 + abs(old)) * z if math.isfinite(old) else z
    if not math.isfinite(new):
        new = z
    if new == old:
        new = float(np.nextafter(old, math.inf))
    return new


def _apply(plan: _Plan, rng: np.random.Generator, kind: str, sigma: float) -> None:
    code, imm = plan.code, plan.imm
    if kind == "insert":
        room = [n for n in plan.names if plan.max_length is None or len(code[n]) < plan.max_length]
        n = room[int(rng.integers(len(room)))]
        at = int(rng.integers(len(code[n]) + 1))
        row, val = _random_rows(rng, 1, plan.pool, plan.limits, plan.program.dim)
        code[n] = np.insert(code[n], at, row[0], axis=0)
        imm[n] = np.insert(imm[n], at, val[0])
    elif kind == "remove":
        n, i = _pick(rng, plan.sites(lambda op: 1))
        code[n] = np.delete(code[n], i, axis=0)
        imm[n] = np.delete(imm[n], i)
    elif kind == "randomize_component":
        full = [n for n in plan.names if len(code[n])]
        n = full[int(rng.integers(len(full)))]
        code[n], imm[n] = _random_rows(rng, len(code[n]), plan.pool, plan.limits, plan.program.dim)
    elif kind == "argument":
        n, i = _pick(rng, plan.sites(lambda op: len(plan.fields(op))))
        code[n], imm[n] = code[n].copy(), imm[n].copy()
        op = int(code[n][i, 0])
        fields = plan.fields(op)
        f = fields[int(rng.integers(len(fields)))]
        if f == 4 and op == V_GET:  # another element index, uniformly (dim > 1 here)
            old = element_index(float(imm[n][i]), plan.program.dim)
            new = _uniform_index(float(rng.standard_normal()), plan.program.dim - 1)
            imm[n][i] = float(new + (new >= old))
        elif f == 4:
            imm[n][i] = _perturb(rng, float(imm[n][i]), sigma)
        else:
            size = int(plan.limits[_FIELDS[op, f - 1]])
            old = int(code[n][i, f])
            new = int(rng.integers(size - 1))
            code[n][i, f] = new + (new >= old)
    else:  # "op"
        n, i = _pick(rng, plan.sites(lambda op: len(plan.alternatives(op))))
        alts = plan.alternatives(int(code[n][i, 0]))
        code[n] = code[n].copy()
        code[n][i, 0] = alts[int(rng.integers(len(alts)))]


def _mutate(program: Any, words: tuple[int, int, int, int], max_length: Any, ops: Any, kinds: set[str],
            sigma: float) -> Program:
    plan = _Plan(program, max_length, ops)
    can = plan.applicable(kinds)
    if not can:
        raise ValueError(f"no mutation of the kinds {sorted(kinds)} applies to this program (empty components, "
                         f"max_length {plan.max_length}, or no usable op among ops)")
    rng = _generator("evoforge.programs.mutate/1", *words)
    _apply(plan, rng, can[int(rng.integers(len(can)))], sigma)
    return plan.result()


def _seed_words(seed: Any, generation: Any, individual: Any) -> tuple[int, int, int]:
    return (check_uint(seed, "seed", 64), check_uint(generation, "generation", 32),
            check_uint(individual, "individual", 32))


def mutate(program: Program, *, seed: int, generation: int, individual: int, max_length: int | None = None,
           ops: Sequence[str] | None = None, kinds: Sequence[str] = MUTATION_KINDS, imm_sigma: float = 0.1) -> Program:
    """One AutoML-Zero mutation of ``program`` (see the module docstring), a pure function of
    (program, seed, generation, individual) and the options; the parent is unchanged.

    Parameters
    ----------
    seed : int in [0, 2**64); generation, individual : ints in [0, 2**32)
    max_length : most instructions per component that ``insert`` may reach (None: no limit)
    ops : op names a new instruction or a changed op may use (default: all but ``noop``)
    kinds : the mutation kinds to choose from (uniformly among those that apply)
    imm_sigma : the scale of an immediate's perturbation, relative to ``1 + |imm|``

    Returns a valid Program with the same components and registers. TypeError / ValueError for bad
    arguments or an invalid program; ValueError when no kind applies (e.g. only ``remove`` of an
    empty program).
    """
    words = _seed_words(seed, generation, individual)
    return _mutate(program, (*words, 0), max_length, ops, _check_kinds(kinds), _check_sigma(imm_sigma))


def mutate_until_different(program: Program, evaluate_outputs: Callable[[Program], Any], *, seed: int,
                           generation: int, individual: int, max_tries: int = 16, max_length: int | None = None,
                           ops: Sequence[str] | None = None, kinds: Sequence[str] = MUTATION_KINDS,
                           imm_sigma: float = 0.1, quantise: float | int = DEFAULT_QUANTISE) -> Program:
    """AutoML-Zero's "mutate until functionally different": mutants of ``program`` (try ``t`` keyed by
    (seed, generation, individual, t); try 0 is :func:`mutate`'s) until the functional digest
    (:func:`evoforge.programs.functional_digest` with ``quantise``) of ``evaluate_outputs(mutant)``
    differs from the parent's. Returns that mutant, or the last one after ``max_tries`` tries.
    ``evaluate_outputs`` runs once on the parent and once per try."""
    words = _seed_words(seed, generation, individual)
    if not callable(evaluate_outputs):
        raise TypeError(f"evaluate_outputs must be a callable program -> outputs, got "
                        f"{type(evaluate_outputs).__name__}")
    tries = _checks.check_int(max_tries, "max_tries", 1, 1 << 20)
    ks, sigma, quant = _check_kinds(kinds), _check_sigma(imm_sigma), check_quantise(quantise)
    prefix = _prefix(_F_TAG, None)
    child = _mutate(program, (*words, 0), max_length, ops, ks, sigma)  # checks the program and options
    parent = _functional(prefix, evaluate_outputs(program), quant)
    for t in range(tries):
        if t:
            child = _mutate(program, (*words, t), max_length, ops, ks, sigma)
        if _functional(prefix, evaluate_outputs(child), quant) != parent:
            return child
    return child


def random_program(kind: str, *, length: int | Mapping[str, int], n_scalar: int, n_vector: int, n_matrix: int,
                   dim: int, seed: int, ops: Sequence[str] | None = None) -> Program:
    """A random valid program: ``kind`` ``"function"`` (``{"predict"}``) or ``"learner"`` (setup,
    predict, learn), ``length`` instructions per component (an int for all, or {name: int}), each a
    random instruction as :func:`mutate` inserts them, drawn from a Philox stream keyed by ``seed``.

    TypeError / ValueError (ConfigError) for bad arguments; ValueError when instructions are asked for
    and no op of ``ops`` has registers of its types."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be 'function' or 'learner', got {type(kind).__name__}")
    if kind not in ("function", "learner"):
        raise ValueError(f"kind must be 'function' or 'learner', got {kind!r}")
    names = FUNCTION if kind == "function" else LEARNER
    ns, nv, nm, d = check_counts(n_scalar, n_vector, n_matrix, dim, min_vector=1 if kind == "learner" else 0)
    if isinstance(length, Mapping):
        if set(length) != set(names):
            raise ValueError(f"length must give the components {list(names)}, got {list(length)}")
        lengths = {n: _checks.check_int(length[n], f"length[{n!r}]", 0, MAX_LENGTH) for n in names}
    else:
        L = _checks.check_int(length, "length", 0, MAX_LENGTH)
        lengths = {n: L for n in names}
    s = check_uint(seed, "seed", 64)
    have = {"": 0, "s": ns, "v": nv, "m": nm}
    pool = _op_pool(ops, have)
    if any(lengths.values()) and not pool:
        raise ValueError("no op of ops can run with these registers (a vector or matrix op needs n_vector or "
                         "n_matrix >= 1)")
    limits = np.array([0, ns, nv, nm], dtype=np.int64)
    rng = _generator("evoforge.programs.random_program/1", kind, s)
    code, imm = {}, {}
    for n in names:
        code[n], imm[n] = (_random_rows(rng, lengths[n], pool, limits, d) if lengths[n]
                           else (np.zeros((0, 4), np.int32), np.zeros(0)))
    return Program(code, imm, n_scalar=ns, n_vector=nv, n_matrix=nm, dim=d).validate()
