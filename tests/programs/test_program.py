"""evoforge.programs: canonical forms (dead code and register names do not matter; outputs are kept bit
for bit), the printer, pack, assemble and validate()'s errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import canonical_reference
import numpy_interpreter as ref
from evoforge import interpreter
from evoforge.errors import ConfigError
from evoforge.programs import FUNCTION, LEARNER, OPS, Program, assemble, format_instruction, op_id, pack
from evoforge.programs.program import canonical_many

RESERVED = {"s": {0, 1}, "v": {0}, "m": set()}


def _program(parts: dict, **counts) -> Program:
    return Program({k: v[0] for k, v in parts.items()}, {k: v[1] for k, v in parts.items()}, **counts)


def random_program(rng, kind: str, used: tuple[int, int, int], spare: tuple[int, int, int], dim: int) -> Program:
    """A random valid program over the first `used` registers of each type, with `spare` more that it
    never touches (room for dead code on fresh registers)."""
    ns, nv, nm = used
    lengths = {"setup": 5, "predict": 10, "learn": 12} if kind == "learner" else {"predict": 16}
    parts = {}
    for name, L in lengths.items():
        code, imm = ref.random_code(rng, 1, int(rng.integers(0, L + 1)), ns, nv, nm)
        parts[name] = (code[0], imm[0])
    return _program(parts, n_scalar=ns + spare[0], n_vector=nv + spare[1], n_matrix=nm + spare[2], dim=dim)


def _counts(p: Program) -> tuple[int, int, int]:
    return p.n_scalar, p.n_vector, p.n_matrix


def _reads(row) -> list[tuple[str, int]]:
    op = OPS[int(row[0])]
    return [(t, int(row[2 + k])) for k, t in enumerate(op.ins)]


def add_dead_code(rng, p: Program, used: tuple[int, int, int]) -> Program:
    """p with dead instructions inserted: noops, writes to registers p never uses, and writes that the
    next instruction overwrites without reading them."""
    have = dict(zip("svm", _counts(p)))
    fresh = {t: list(range(u, have[t])) for t, u in zip("svm", used)}
    parts = {}
    for name, code in p.components.items():
        rows, imms = [list(r) for r in code], list(p.imm[name])
        for _ in range(int(rng.integers(1, 6))):
            at = int(rng.integers(0, len(rows) + 1))
            kind = rng.integers(3)
            if kind == 0:
                row, imm = [0, *rng.integers(-3, 9, size=3).tolist()], float(rng.standard_normal())
            elif kind == 1:
                ts = [t for t in "svm" if fresh[t]]
                if not ts:
                    continue
                t = ts[int(rng.integers(len(ts)))]
                ops = [op.id for op in OPS if op.out == t and all(have[u] > 0 for u in op.ins)]
                row, imm = ref.random_instruction(rng, *_counts(p), ops, out=int(rng.choice(fresh[t])))
            else:
                if at == len(rows) or rows[at][0] == 0:
                    continue
                nxt = rows[at]
                t, r = OPS[nxt[0]].out, int(nxt[1])
                if (t, r) in _reads(nxt):
                    continue
                ops = [op.id for op in OPS if op.out == t and all(have[u] > 0 for u in op.ins)]
                row, imm = ref.random_instruction(rng, *_counts(p), ops, out=r)
            rows.insert(at, row)
            imms.insert(at, imm)
        parts[name] = (np.array(rows, dtype=np.int32).reshape(-1, 4), np.array(imms))
    return _program(parts, n_scalar=p.n_scalar, n_vector=p.n_vector, n_matrix=p.n_matrix, dim=p.dim)


def rename_registers(rng, p: Program) -> Program:
    """p with each register file permuted at random, s0, s1 and v0 fixed."""
    perm = {}
    for t, n in zip("svm", _counts(p)):
        free = [r for r in range(n) if r not in RESERVED[t]]
        perm[t] = np.arange(n)
        perm[t][free] = rng.permutation(free) if free else []
    parts = {}
    for name, code in p.components.items():
        c = code.copy()
        for i, row in enumerate(code):
            op = OPS[int(row[0])]
            if op.out:
                c[i, 1] = perm[op.out][row[1]]
            for k, t in enumerate(op.ins):
                c[i, 2 + k] = perm[t][row[2 + k]]
        parts[name] = (c, p.imm[name])
    return _program(parts, n_scalar=p.n_scalar, n_vector=p.n_vector, n_matrix=p.n_matrix, dim=p.dim)


@st.composite
def program_cases(draw):
    kind = draw(st.sampled_from(["function", "learner"]))
    used = (draw(st.integers(2, 5)), draw(st.integers(1, 3)), draw(st.integers(0, 2)))
    spare = (draw(st.integers(0, 2)), draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    return kind, used, spare, draw(st.integers(1, 4)), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=200, deadline=None)
@given(program_cases())
def test_dead_code_and_register_names_do_not_change_the_canonical_form(case):
    kind, used, spare, dim, seed = case
    rng = np.random.default_rng(seed)
    p = random_program(rng, kind, used, spare, dim)
    q = rename_registers(rng, add_dead_code(rng, p, used))
    c = p.canonical()
    assert q.canonical() == c
    assert c.canonical() == c  # idempotent
    assert len(c) <= len(p)
    first: dict[str, list[int]] = {t: [] for t in "svm"}  # registers in order of first use
    for code in c.components.values():
        for row in code:
            op = OPS[int(row[0])]
            for t, r in [*_reads(row), (op.out, int(row[1]))]:
                if r not in RESERVED[t] and r not in first[t]:
                    first[t].append(r)
    for t in "svm":
        assert first[t] == list(range(len(RESERVED[t]), len(RESERVED[t]) + len(first[t])))


@settings(max_examples=200, deadline=None)
@given(program_cases())
def test_native_canonical_form_equals_the_python_reference(case):
    kind, used, spare, dim, seed = case
    rng = np.random.default_rng(seed)
    programs = [rename_registers(rng, add_dead_code(rng, random_program(rng, kind, used, spare, dim), used))
                for _ in range(3)]
    want = [canonical_reference.canonical(p) for p in programs]
    assert [p.canonical() for p in programs] == want
    assert canonical_many(programs) == want  # one native call for the batch


def test_canonical_code_errors():
    code, _ = assemble([("s_add", 1, 0, 0), ("s_sin", 1, 1)])
    regs = {"n_scalar": 2, "n_vector": 0, "n_matrix": 0, "dim": 1}
    c, _, lengths = interpreter.canonical_code(code, None, [[2]], **regs)
    assert lengths.tolist() == [[2]] and c.tolist() == code.tolist()
    with pytest.raises(ValueError, match="add up to 3 instructions, code holds 2"):
        interpreter.canonical_code(code, None, [[3]], **regs)
    with pytest.raises(ValueError, match=r"shape \[B, 1\]"):
        interpreter.canonical_code(code, None, [[1, 1]], **regs)
    with pytest.raises(ValueError, match="not a scalar register"):
        interpreter.canonical_code(assemble([("s_add", 1, 0, 5)])[0], None, [[1]], **regs)
    with pytest.raises(ConfigError, match="n_vector"):  # a learner reads its features from v0
        interpreter.canonical_code(code, None, [[1, 1, 0]], **regs)


def _outputs(p: Program, rng, dtype):
    if p.kind == "function":
        x = ref.random_values(rng, (70, p.dim), dtype)
        return [interpreter.run_function(*pack([p]), x, **p.registers)]
    tx, ty, vx = (ref.random_values(rng, s, dtype, special=0.05) for s in ((2, 7, p.dim), (2, 7), (2, 4, p.dim)))
    return list(interpreter.run_learner(*(pack([p], c) for c in LEARNER), tx, ty, vx, **p.registers, epochs=2))


@settings(max_examples=150, deadline=None)
@given(program_cases(), st.sampled_from([np.float32, np.float64]))
def test_canonical_form_computes_the_same_outputs(case, dtype):
    kind, used, spare, dim, seed = case
    rng = np.random.default_rng(seed)
    p = rename_registers(rng, add_dead_code(rng, random_program(rng, kind, used, spare, dim), used))
    c = p.canonical()
    for a, b in zip(_outputs(p, np.random.default_rng(seed), dtype), _outputs(c, np.random.default_rng(seed), dtype)):
        assert ref.same_bits(a, b), ref.first_difference(a, b)


def test_canonical_removes_dead_code_and_renames():
    p = _program({"predict": assemble([("s_mul", 5, 0, 0), ("s_sin", 3, 0), ("v_const", 2, 1.5), ("s_add", 1, 5, 0),
                                       ("s_const", 4, 2.0)])}, n_scalar=6, n_vector=3, n_matrix=0, dim=2)
    c = p.canonical()
    assert c.source().splitlines()[1:] == ["def predict():", "    s2 = s0 * s0", "    s1 = s2 + s0"]
    assert c.components["predict"].tolist() == [[op_id("s_mul"), 2, 0, 0], [op_id("s_add"), 1, 2, 0]]
    # a program whose output is never written is empty
    assert len(_program({"predict": assemble([("s_cos", 2, 0)])}, n_scalar=3, n_vector=0, n_matrix=0,
                        dim=1).canonical()) == 0


def test_canonical_learner_keeps_state_that_later_examples_read():
    parts = {
        # v2 only feeds learn's dead s4: dead; v1 (the weights) is read by predict: live
        "setup": assemble([("v_const", 1, 0.0), ("v_const", 2, 3.0)]),
        # s2 counts predictions across examples (predict -> predict): live
        "predict": assemble([("s_const", 3, 1.0), ("s_add", 2, 2, 3), ("v_dot", 1, 1, 0), ("s_add", 1, 1, 2)]),
        # s4 is never read: dead; v1 += (s0 - s1) v0 is read by the next predict: live
        "learn": assemble([("v_sum", 4, 2), ("s_sub", 5, 0, 1), ("v_scale", 3, 5, 0), ("v_add", 1, 1, 3)]),
    }
    p = _program(parts, n_scalar=6, n_vector=4, n_matrix=0, dim=3)
    c = p.canonical()
    assert c.source().splitlines()[1:] == [
        "def setup():", "    v1[:] = 0.0",
        "def predict():", "    s2 = 1.0", "    s3 = s3 + s2", "    s1 = dot(v1, v0)", "    s1 = s1 + s3",
        "def learn():", "    s4 = s0 - s1", "    v2 = s4 * v0", "    v1 = v1 + v2"]
    rng = np.random.default_rng(0)
    for a, b in zip(_outputs(p, rng, np.float64), _outputs(c, np.random.default_rng(0), np.float64)):
        assert ref.same_bits(a, b)


def test_printer():
    parts = {
        "setup": assemble([("v_const", 1, 0.0), ("m_const", 0, -0.25)]),
        "predict": assemble([("s_mul", 3, 1, 2), ("m_matvec", 2, 0, 1), ("s_const", 4, 0.5), ("v_dot", 1, 1, 0),
                             ("noop",), ("s_heaviside", 2, 1), ("m_outer", 0, 1, 2), ("m_transpose", 0, 0),
                             ("v_bcast", 2, 3), ("s_min", 3, 3, 4), ("v_max", 2, 2, 1), ("m_norm", 2, 0),
                             ("s_neg", 2, 2), ("v_recip", 2, 2), ("s_arctan", 1, 1)]),
        "learn": [np.zeros((0, 4), np.int32), np.zeros(0)],
    }
    p = _program(parts, n_scalar=5, n_vector=3, n_matrix=1, dim=4)
    assert str(p) == p.source() == "\n".join([
        "# learner: 5 scalars, 3 vectors, 1 matrices, dim 4",
        "def setup():",
        "    v1[:] = 0.0",
        "    m0[:] = -0.25",
        "def predict():",
        "    s3 = s1 * s2",
        "    v2 = m0 @ v1",
        "    s4 = 0.5",
        "    s1 = dot(v1, v0)",
        "    pass",
        "    s2 = heaviside(s1)",
        "    m0 = outer(v1, v2)",
        "    m0 = m0.T",
        "    v2[:] = s3",
        "    s3 = min(s3, s4)",
        "    v2 = maximum(v2, v1)",
        "    s2 = norm(m0)",
        "    s2 = -s2",
        "    v2 = 1 / v2",
        "    s1 = arctan(s1)",
        "def learn():",
        "    pass",
    ]) + "\n"
    for op in OPS:  # every op prints
        assert format_instruction([op.id, 0, 0, 0], 1.0)


def test_v_get_prints_its_index_and_canonical_form_keeps_only_the_index():
    code, imm = assemble([("v_get", 2, 0, 2.7), ("v_get", 3, 0, -8.5), ("v_get", 4, 0, np.inf), ("s_add", 2, 2, 3),
                          ("s_add", 1, 2, 4)])
    p = _program({"predict": (code, imm)}, n_scalar=5, n_vector=1, n_matrix=0, dim=6)
    assert p.source().splitlines()[2:] == ["    s2 = v0[2]", "    s3 = v0[2]", "    s4 = v0[0]", "    s2 = s2 + s3",
                                           "    s1 = s2 + s4"]
    assert format_instruction([op_id("v_get"), 3, 1, 0], 8.5) == "s3 = v1[8]"  # no dim: before the modulo
    assert format_instruction([op_id("v_get"), 3, 1, 0], 8.5, dim=6) == "s3 = v1[2]"
    assert format_instruction([op_id("v_get"), 3, 1, 0], -np.inf, dim=6) == "s3 = v1[0]"
    with pytest.raises(ConfigError, match="dim"):
        format_instruction([op_id("v_get"), 3, 1, 0], 1.0, dim=0)
    c = p.canonical()
    assert c.imm["predict"].tolist() == [2.0, 2.0, 0.0, 0.0, 0.0]  # the index, a float; 0 for other ops
    # immediates that read the same element give the same canonical form, and the same outputs
    q = _program({"predict": (code, np.array([14.0, 2.0, -6.0, 0.0, 0.0]))}, n_scalar=5, n_vector=1, n_matrix=0,
                 dim=6)
    assert q.canonical() == c
    x = np.random.default_rng(0).standard_normal((9, 6))
    outs = [interpreter.run_function(*pack([r]), x, **r.registers) for r in (p, q, c)]
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[0][0], 2 * x[:, 2] + x[:, 0])


def test_pack_pads_with_noop():
    a = _program({"predict": assemble([("s_const", 1, 2.0), ("s_add", 1, 1, 0)])}, n_scalar=2, n_vector=0,
                 n_matrix=0, dim=1)
    b = _program({"predict": assemble([("s_const", 1, 3.0)])}, n_scalar=2, n_vector=0, n_matrix=0, dim=1)
    code, imm = pack([a, b])
    assert code.shape == (2, 2, 4) and code.dtype == np.int32 and imm.shape == (2, 2)
    assert code[1, 1].tolist() == [0, 0, 0, 0] and imm[1].tolist() == [3.0, 0.0]
    out = interpreter.run_function(code, imm, np.array([1.0, -1.0]), **a.registers)
    assert out.tolist() == [[3.0, 1.0], [3.0, 3.0]]
    assert pack([], "predict")[0].shape == (0, 0, 4)
    with pytest.raises(ValueError, match="has no component 'learn'"):
        pack([a], "learn")
    with pytest.raises(TypeError, match="sequence of Program"):
        pack(a)


def test_programs_compare_by_value_and_are_read_only():
    code, imm = assemble([("s_const", 1, 2.0)])
    a = Program({"predict": code}, {"predict": imm}, n_scalar=2, n_vector=0, n_matrix=0, dim=1)
    b = Program({"predict": code.astype(np.int64)}, {"predict": imm}, n_scalar=2, n_vector=0, n_matrix=0, dim=1)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Program({"predict": code}, {"predict": imm}, n_scalar=3, n_vector=0, n_matrix=0, dim=1)
    code[0, 0] = 0  # the program holds its own copy
    assert a.components["predict"][0, 0] == op_id("s_const")
    with pytest.raises(ValueError):
        a.components["predict"][0, 0] = 0
    assert a.kind == "function" and tuple(a.components) == FUNCTION
    assert a.imm["predict"].tolist() == [2.0]
    assert Program({"predict": code}, n_scalar=2, n_vector=0, n_matrix=0, dim=1).imm["predict"].tolist() == [0.0]


def test_validate_errors():
    def prog(ins, **kw):
        counts = dict(n_scalar=3, n_vector=1, n_matrix=0, dim=2)
        counts.update(kw)
        return Program({"predict": np.array(ins)}, **counts)

    with pytest.raises(ValueError, match=r"component 'predict', instruction 1: unknown op id 77"):
        prog([[0, 0, 0, 0], [77, 0, 0, 0]]).validate()
    with pytest.raises(ValueError, match=r"component 'predict', instruction 0 \(v_add\): type error: in2 = 2 is not a "
                                         r"vector register \(n_vector = 1; v_add is v <- v, v\)"):
        prog([[op_id("v_add"), 0, 0, 2]]).validate()
    with pytest.raises(ValueError, match=r"\(m_norm\): type error: in1 = 0 is not a matrix register \(n_matrix = 0"):
        prog([[op_id("m_norm"), 1, 0, 0]]).validate()
    with pytest.raises(ValueError, match=r"\(s_add\): type error: out = 3 is not a scalar register"):
        prog([[op_id("s_add"), 3, 0, 0]]).source()
    with pytest.raises(ConfigError, match=r"n_scalar must lie in \[2"):
        prog([], n_scalar=1).validate()
    with pytest.raises(ConfigError, match=r"dim must lie in \[1"):
        prog([], dim=0).validate()
    with pytest.raises(ValueError, match="is NaN"):
        Program({"predict": np.array([[op_id("s_const"), 1, 0, 0]])}, {"predict": [np.nan]}, n_scalar=2,
                n_vector=0, n_matrix=0, dim=1).validate()
    with pytest.raises(ValueError, match="components are"):
        Program({"predict": np.zeros((0, 4), int), "learn": np.zeros((0, 4), int)}, n_scalar=2, n_vector=1,
                n_matrix=0, dim=1).validate()
    with pytest.raises(ConfigError, match=r"n_vector must lie in \[1"):  # a learner reads features from v0
        Program({n: np.zeros((0, 4), int) for n in LEARNER}, n_scalar=2, n_vector=0, n_matrix=0, dim=1).validate()
    with pytest.raises(TypeError, match="must hold integers"):
        prog([[0.0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"shape \[L, 4\]"):
        prog([[0, 0, 0]])
    with pytest.raises(ValueError, match=r"imm must have shape \[1\]"):
        Program({"predict": np.zeros((1, 4), int)}, {"predict": [0.0, 1.0]}, n_scalar=2, n_vector=0, n_matrix=0,
                dim=1)
    with pytest.raises(ValueError, match="imm names components"):
        Program({"predict": np.zeros((1, 4), int)}, {"learn": [0.0]}, n_scalar=2, n_vector=0, n_matrix=0, dim=1)
    with pytest.raises(TypeError, match="components must be a dict"):
        Program([np.zeros((1, 4), int)], n_scalar=2, n_vector=0, n_matrix=0, dim=1)


def test_assemble_errors():
    code, imm = assemble([("s_const", 3, 0.5), ("v_dot", 1, 1, 0), ("noop",)])
    assert code.tolist() == [[op_id("s_const"), 3, 0, 0], [op_id("v_dot"), 1, 1, 0], [0, 0, 0, 0]]
    assert imm.tolist() == [0.5, 0.0, 0.0]
    assert assemble([])[0].shape == (0, 4)
    with pytest.raises(ValueError, match="unknown op 'v_fft'"):
        assemble([("v_fft", 1, 0)])
    with pytest.raises(ValueError, match=r"instruction 0 \(s_add, s <- s, s\) takes 3 operands, got 2"):
        assemble([("s_add", 1, 0)])
    with pytest.raises(TypeError, match="must be a tuple"):
        assemble(["s_add"])
