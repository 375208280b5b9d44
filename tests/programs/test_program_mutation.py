"""evoforge.programs mutations: mutants always validate, are pure functions of (seed, generation,
individual), each kind does what it says, max_length holds, and mutate_until_different finds a
functionally different program when one exists."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_interpreter as ref
from evoforge import interpreter
from evoforge.errors import ConfigError
from evoforge.programs import (LEARNER, MUTATION_KINDS, OPS, Program, assemble, functional_digest, mutate,
                               mutate_until_different, pack, random_program)


def _fn(instructions, **counts) -> Program:
    code, imm = assemble(instructions)
    c = dict(n_scalar=4, n_vector=2, n_matrix=1, dim=3)
    c.update(counts)
    return Program({"predict": code}, {"predict": imm}, **c)


@st.composite
def programs(draw):
    """Random valid programs: from random_program, or from the numpy reference's generator (which also
    writes noops' and unused fields' junk), of either kind, with components possibly empty."""
    kind = draw(st.sampled_from(["function", "learner"]))
    ns, nv, nm = draw(st.integers(2, 5)), draw(st.integers(1 if kind == "learner" else 0, 3)), draw(st.integers(0, 2))
    dim, seed = draw(st.integers(1, 3)), draw(st.integers(0, 2**32 - 1))
    names = LEARNER if kind == "learner" else ("predict",)
    lengths = {n: draw(st.integers(0, 8)) for n in names}
    if draw(st.booleans()):
        return random_program(kind, length=lengths, n_scalar=ns, n_vector=nv, n_matrix=nm, dim=dim, seed=seed)
    rng = np.random.default_rng(seed)
    parts = {n: ref.random_code(rng, 1, L, ns, nv, nm) for n, L in lengths.items()}
    return Program({n: c[0] for n, (c, _) in parts.items()}, {n: m[0] for n, (_, m) in parts.items()},
                   n_scalar=ns, n_vector=nv, n_matrix=nm, dim=dim)


def _counts(p: Program):
    return p.n_scalar, p.n_vector, p.n_matrix, p.dim


def _lengths(p: Program) -> dict[str, int]:
    return {n: len(c) for n, c in p.components.items()}


@settings(max_examples=300, deadline=None)
@given(programs(), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.one_of(st.none(), st.integers(0, 10)))
def test_mutants_validate_and_are_pure(p, seed, generation, individual, max_length):
    kw = dict(seed=seed, generation=generation, individual=individual, max_length=max_length)
    before = p.key()
    try:
        c = mutate(p, **kw)
    except ValueError as e:  # only an empty program with max_length 0 has no mutation
        assert "no mutation" in str(e) and len(p) == 0 and max_length == 0
        return
    Program(c.components, c.imm, n_scalar=c.n_scalar, n_vector=c.n_vector, n_matrix=c.n_matrix,
            dim=c.dim).validate()  # checked afresh (mutants are built unchecked)
    assert all(not a.flags.writeable for a in (*c.components.values(), *c.imm.values()))
    assert p.key() == before  # the parent is unchanged
    assert tuple(c.components) == tuple(p.components) and _counts(c) == _counts(p)
    assert mutate(p, **kw) == c
    for n, L in _lengths(c).items():
        assert max_length is None or L <= max(max_length, len(p.components[n]))
        assert abs(L - len(p.components[n])) <= 1


def test_different_keys_give_different_mutants():
    p = random_program("learner", length=8, n_scalar=5, n_vector=3, n_matrix=1, dim=3, seed=7)
    base = dict(seed=1, generation=2, individual=3)
    ref_child = mutate(p, **base)
    for field in base:
        others = [mutate(p, **{**base, field: base[field] + k}) for k in range(1, 101)]
        assert sum(o != ref_child for o in others) >= 95, field
        assert len(set(others)) >= 80, field  # removals (24 sites) and op changes repeat by chance


def _diff_fields(a: Program, b: Program) -> list[tuple[str, int, int]]:
    """(component, instruction, field 0..3 code, 4 imm) of every difference, for equal lengths."""
    out = []
    for n in a.components:
        ca, cb = a.components[n], b.components[n]
        for i, k in zip(*np.nonzero(ca != cb)):
            out.append((n, int(i), int(k)))
        for i in np.flatnonzero(a.imm[n] != b.imm[n]):
            out.append((n, int(i), 4))
    return out


@settings(max_examples=150, deadline=None)
@given(programs(), st.integers(0, 2**32 - 1))
def test_each_kind_does_what_it_says(p, seed):
    kw = dict(seed=seed, generation=0, individual=0)
    la = _lengths(p)
    for kind in MUTATION_KINDS:
        try:
            c = mutate(p, kinds=[kind], **kw)
        except ValueError as e:
            assert "no mutation" in str(e)
            continue
        lc = _lengths(c)
        delta = {n: lc[n] - la[n] for n in la}
        if kind == "insert":
            assert sorted(delta.values())[-1] == 1 and sum(delta.values()) == 1
            n = next(k for k, d in delta.items() if d)
            # the rest of the component is the parent's, with one new valid instruction somewhere
            rows = [tuple(r) + (x,) for r, x in zip(c.components[n].tolist(), c.imm[n].tolist())]
            old = [tuple(r) + (x,) for r, x in zip(p.components[n].tolist(), p.imm[n].tolist())]
            assert any(rows[:i] + rows[i + 1:] == old for i in range(len(rows)))
        elif kind == "remove":
            assert sorted(delta.values())[0] == -1 and sum(delta.values()) == -1
        else:
            assert lc == la
            diff = _diff_fields(p, c)
            if kind == "randomize_component":
                assert len({n for n, _, _ in diff}) <= 1  # one component (rarely drawn equal)
            elif kind == "argument":
                assert len(diff) == 1
                n, i, k = diff[0]
                op = OPS[int(p.components[n][i, 0])]
                assert k != 0
                if k == 4:
                    assert op.reads_imm
                else:  # a register of the field's type: the output or one of the inputs
                    assert k - 1 < (1 if op.out else 0) + op.arity
            else:  # op
                assert len(diff) == 1 and diff[0][2] == 0
                n, i, _ = diff[0]
                a, b = OPS[int(p.components[n][i, 0])], OPS[int(c.components[n][i, 0])]
                assert a.id != b.id and (a.out, a.ins, a.reads_imm) == (b.out, b.ins, b.reads_imm)


def test_argument_perturbs_immediates_and_op_keeps_operands():
    p = _fn([("s_const", 2, 0.5)], n_scalar=2, n_vector=0, n_matrix=0)  # s2 does not exist: out must be < 2
    with pytest.raises(ValueError, match="type error"):
        mutate(p, seed=0, generation=0, individual=0)
    p = _fn([("s_const", 1, 0.5)], n_scalar=2, n_vector=0, n_matrix=0)
    seen_imm = seen_out = 0
    for i in range(60):
        c = mutate(p, seed=0, generation=0, individual=i, kinds=["argument"])
        (n, _, k), = _diff_fields(p, c)
        if k == 4:
            seen_imm += 1
            assert np.isfinite(c.imm["predict"][0]) and abs(c.imm["predict"][0] - 0.5) < 2
        else:
            seen_out += 1
            assert c.components["predict"][0, 1] == 0  # the only other scalar register
    assert seen_imm > 15 and seen_out > 15
    # an infinite immediate is redrawn, never left unchanged or NaN
    q = Program(p.components, {"predict": [np.inf]}, **p.registers)
    for i in range(20):
        c = mutate(q, seed=1, generation=0, individual=i, kinds=["argument"])
        assert not np.isnan(c.imm["predict"]).any() and c != q
    # op changes stay within the allowed ops
    p = _fn([("s_add", 1, 0, 0)])
    got = {OPS[int(mutate(p, seed=0, generation=0, individual=i, kinds=["op"], ops=["s_add", "s_mul", "s_sub"])
                   .components["predict"][0, 0])].name for i in range(40)}
    assert got == {"s_mul", "s_sub"}


def test_v_get_indices_are_valid_and_uniform():
    """Random v_get instructions read an index uniform over [0, dim); the argument mutation moves a
    v_get to another index of [0, dim) (never the same one), and leaves it alone when dim is 1."""
    dim = 6
    p = random_program("function", length=3000, n_scalar=4, n_vector=2, n_matrix=0, dim=dim, seed=2,
                       ops=["v_get", "s_add"])
    code, imm = p.components["predict"], p.imm["predict"]
    k = imm[code[:, 0] == OPS[-1].id]
    assert OPS[-1].name == "v_get" and len(k) > 1300
    assert np.array_equal(k, np.floor(k)) and k.min() == 0 and k.max() == dim - 1
    counts = np.bincount(k.astype(int), minlength=dim)
    assert counts.min() > 0.8 * len(k) / dim and counts.max() < 1.2 * len(k) / dim
    # insertion draws the same way
    q = _fn([("v_get", 1, 0, 2.5)], n_scalar=2, n_vector=1, n_matrix=0, dim=dim)
    inserted = [mutate(q, seed=3, generation=0, individual=i, kinds=["insert"], ops=["v_get"]) for i in range(200)]
    new = [float(x) for c in inserted for x in c.imm["predict"] if x != 2.5]
    assert len(new) > 150 and set(new) == {float(j) for j in range(dim)}
    # argument: the index (the only changeable field: one scalar output choice, one vector) moves
    seen = set()
    for i in range(300):
        c = mutate(q, seed=4, generation=0, individual=i, kinds=["argument"])
        (n, _, field), = _diff_fields(q, c)
        if field == 4:
            j = c.imm["predict"][0]
            assert j == np.floor(j) and 0 <= j < dim and j != 2.0
            seen.add(float(j))
    assert seen == {0.0, 1.0, 3.0, 4.0, 5.0}
    # dim 1: v_get's immediate is not a field that can change (the output register still is)
    one = _fn([("v_get", 1, 0, 0.0)], n_scalar=3, n_vector=1, n_matrix=0, dim=1)
    for i in range(30):
        c = mutate(one, seed=5, generation=0, individual=i, kinds=["argument"])
        assert [f for _, _, f in _diff_fields(one, c)] == [1]


def test_kinds_are_drawn_uniformly_among_the_applicable():
    p = random_program("function", length=6, n_scalar=4, n_vector=2, n_matrix=1, dim=2, seed=3)
    counts = {"insert": 0, "remove": 0, "same": 0}
    for i in range(1000):
        d = len(mutate(p, seed=5, generation=1, individual=i)) - len(p)
        counts["insert" if d > 0 else "remove" if d < 0 else "same"] += 1
    # 5 kinds apply: 1/5 insert, 1/5 remove, 3/5 in place
    assert 150 < counts["insert"] < 250 and 150 < counts["remove"] < 250 and 520 < counts["same"] < 680


def test_max_length_and_inapplicable_kinds():
    p = random_program("learner", length=3, n_scalar=3, n_vector=2, n_matrix=0, dim=2, seed=0)
    for i in range(100):
        c = mutate(p, seed=0, generation=0, individual=i, max_length=3)
        assert max(_lengths(c).values()) <= 3
    with pytest.raises(ValueError, match="no mutation"):
        mutate(p, seed=0, generation=0, individual=0, max_length=3, kinds=["insert"])
    empty = random_program("function", length=0, n_scalar=2, n_vector=0, n_matrix=0, dim=1, seed=0)
    with pytest.raises(ValueError, match="no mutation"):
        mutate(empty, seed=0, generation=0, individual=0, kinds=["remove", "argument", "op", "randomize_component"])
    assert len(mutate(empty, seed=0, generation=0, individual=0)) == 1  # only insert applies
    # only matrix ops allowed, but no matrix registers: nothing can be inserted
    with pytest.raises(ValueError, match="no mutation"):
        mutate(empty, seed=0, generation=0, individual=0, ops=["m_add"])


def test_random_program():
    kw = dict(n_scalar=4, n_vector=2, n_matrix=1, dim=3)
    a = random_program("learner", length=5, seed=11, **kw)
    assert a == random_program("learner", length=5, seed=11, **kw) != random_program("learner", length=5, seed=12,
                                                                                      **kw)
    assert a.kind == "learner" and set(_lengths(a).values()) == {5}
    b = random_program("function", length={"predict": 40}, seed=0, ops=["s_add", "s_const", "v_dot"], **kw)
    assert {OPS[int(o)].name for o in b.components["predict"][:, 0]} == {"s_add", "s_const", "v_dot"}
    assert all(OPS[int(r[0])].reads_imm or x == 0 for r, x in zip(b.components["predict"], b.imm["predict"]))
    with pytest.raises(ValueError, match="kind must be"):
        random_program("graph", length=1, seed=0, **kw)
    with pytest.raises(ValueError, match="length must give"):
        random_program("learner", length={"predict": 1}, seed=0, **kw)
    with pytest.raises(ConfigError, match="length must lie"):
        random_program("function", length=2**62, seed=0, **kw)
    with pytest.raises(ConfigError, match="n_vector must lie"):
        random_program("learner", length=1, seed=0, n_scalar=2, n_vector=0, n_matrix=0, dim=1)
    with pytest.raises(ValueError, match="no op of ops"):
        random_program("function", length=1, seed=0, ops=["m_add"], n_scalar=2, n_vector=0, n_matrix=0, dim=1)
    with pytest.raises(ValueError, match="unknown op"):
        random_program("function", length=1, seed=0, ops=["s_fft"], **kw)


def test_argument_errors():
    p = _fn([("s_add", 1, 0, 0)])
    kw = dict(seed=0, generation=0, individual=0)
    with pytest.raises(TypeError, match="program must be a Program"):
        mutate("s1 = s0", **kw)
    with pytest.raises(ValueError, match="unknown mutation kind"):
        mutate(p, kinds=["crossover"], **kw)
    with pytest.raises(TypeError, match="kinds must be a sequence"):
        mutate(p, kinds="insert", **kw)
    with pytest.raises(ValueError, match="at least one"):
        mutate(p, kinds=[], **kw)
    with pytest.raises(ConfigError, match="seed"):
        mutate(p, seed=-1, generation=0, individual=0)
    with pytest.raises(ConfigError, match="individual"):
        mutate(p, seed=0, generation=0, individual=2**32)
    with pytest.raises(TypeError, match="ops must be a sequence"):
        mutate(p, ops="s_add", **kw)
    with pytest.raises(ValueError, match="imm_sigma"):
        mutate(p, imm_sigma=0.0, **kw)
    with pytest.raises(ConfigError, match="max_length"):
        mutate(p, max_length=-1, **kw)


# ---- mutate until functionally different --------------------------------------------------------------

X = np.linspace(-2.0, 2.0, 16)


def _outputs(p: Program) -> np.ndarray:
    return interpreter.run_function(*pack([p]), X, **p.registers)


def test_mutate_until_different_finds_a_different_function():
    # most mutations of this program leave s1 = s0 * s0 alone (dead code around it)
    p = _fn([("s_mul", 1, 0, 0), ("s_sin", 2, 0), ("s_const", 3, 1.5), ("s_add", 2, 2, 3)])
    parent = functional_digest(_outputs(p))
    changed = 0
    for i in range(40):
        calls = []
        c = mutate_until_different(p, lambda q: calls.append(q) or _outputs(q), seed=3, generation=0, individual=i)
        assert functional_digest(_outputs(c)) != parent
        assert 2 <= len(calls) <= 17 and calls[0] is p
        assert calls[1] == mutate(p, seed=3, generation=0, individual=i)  # try 0 is mutate's
        changed += len(calls) > 2
    assert changed > 5  # retries happened


def test_mutate_until_different_gives_up_after_max_tries():
    p = _fn([("s_mul", 1, 0, 0)])
    calls = []
    c = mutate_until_different(p, lambda q: calls.append(q) or np.zeros(3), seed=0, generation=0, individual=0,
                               max_tries=5)
    assert len(calls) == 6 and c == calls[-1] and c.validate() is c
    # quantisation decides what counts as different: outputs within the rounding are the same function
    calls.clear()
    noise = iter(np.arange(1, 100) * 1e-12)
    c = mutate_until_different(p, lambda q: calls.append(q) or X + next(noise), seed=0, generation=0, individual=0,
                               max_tries=4)
    assert len(calls) == 5
    calls.clear()
    mutate_until_different(p, lambda q: calls.append(q) or X + next(noise), seed=0, generation=0, individual=0,
                           max_tries=4, quantise=52)
    assert len(calls) == 2
    with pytest.raises(ConfigError, match="max_tries"):
        mutate_until_different(p, _outputs, seed=0, generation=0, individual=0, max_tries=0)
    with pytest.raises(TypeError, match="evaluate_outputs"):
        mutate_until_different(p, None, seed=0, generation=0, individual=0)
    with pytest.raises(TypeError, match="quantise"):
        mutate_until_different(p, _outputs, seed=0, generation=0, individual=0, quantise="7")
