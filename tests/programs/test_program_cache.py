"""evoforge.programs.ProgramCache: structural hits (dead code, register names) without the probe,
functional hits for structurally different programs computing the same function, counters and
rates, and persistence in an on-disk EvaluationCache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evoforge import interpreter
from evoforge.cache import EvaluationCache
from evoforge.errors import ConfigError
from evoforge.programs import (LEARNER, Program, ProgramCache, ProgramKey, assemble, functional_digest, pack,
                               random_program, structural_digest)
from test_program import add_dead_code, random_program as ref_program, rename_registers

X = np.linspace(-3.0, 3.0, 20)
RNG = np.random.default_rng(0)
TX, TY, VX = RNG.normal(size=(2, 10, 3)), RNG.normal(size=(2, 10)), RNG.normal(size=(2, 10, 3))


class Probe:
    """The outputs on fixed inputs, counting calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, p: Program):
        self.calls += 1
        if p.kind == "function":
            x = X if p.dim == 1 else np.tile(X[:, None], (1, p.dim))
            return interpreter.run_function(*pack([p]), x, **p.registers)
        tx, vx = TX[:, :, :p.dim], VX[:, :, :p.dim]
        return interpreter.run_learner(*(pack([p], c) for c in LEARNER), tx, TY, vx, **p.registers)


def _fn(instructions, n_scalar=4) -> Program:
    code, imm = assemble(instructions)
    return Program({"predict": code}, {"predict": imm}, n_scalar=n_scalar, n_vector=0, n_matrix=0, dim=1)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["function", "learner"]), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_dead_code_and_renamed_registers_hit_structurally_without_the_probe(kind, dim, seed):
    rng = np.random.default_rng(seed)
    used, spare = (3, 2, 1), (2, 1, 1)
    p = ref_program(rng, kind, used, spare, dim)
    q = rename_registers(rng, add_dead_code(rng, p, used))
    probe = Probe()
    cache = ProgramCache(probe=probe)
    fitness, level, key = cache.lookup(p)
    assert (fitness, level) == (None, None) and probe.calls == 1 and isinstance(key, ProgramKey)
    cache.store(key, 1.25, p)
    assert cache.lookup(q) == (1.25, "structural", ProgramKey(structural_digest(q), None))
    assert probe.calls == 1  # no probe on a structural hit
    assert key.structural == structural_digest(p) == structural_digest(q)
    assert (cache.hits_structural, cache.hits_functional, cache.misses) == (1, 0, 1)


def test_functionally_equal_programs_hit_at_the_functional_level():
    double_add = _fn([("s_add", 1, 0, 0)])
    double_mul = _fn([("s_const", 2, 2.0), ("s_mul", 1, 2, 0)])
    # s0 * 2 + (0 * s0): equal outputs, a different structure again
    double_long = _fn([("s_const", 3, 2.0), ("s_mul", 2, 0, 3), ("s_const", 3, 0.0), ("s_mul", 3, 3, 0),
                       ("s_add", 1, 2, 3)])
    other = _fn([("s_mul", 1, 0, 0)])
    assert len({structural_digest(p) for p in (double_add, double_mul, double_long)}) == 3
    probe = Probe()
    cache = ProgramCache(probe=probe)
    f, level, key = cache.lookup(double_add)
    assert f is None and level is None and probe.calls == 1
    cache.store(key, -0.5, double_add, seconds=0.01)
    f, level, key2 = cache.lookup(double_mul)
    assert (f, level) == (-0.5, "functional") and probe.calls == 2 and key2.functional == key.functional
    assert cache.lookup(double_long)[:2] == (-0.5, "functional")
    assert cache.lookup(other)[:2] == (None, None)
    # the functional hit stored its structural digest: the same structure now hits without a probe
    calls = probe.calls
    assert cache.lookup(double_mul)[:2] == (-0.5, "structural") and probe.calls == calls
    r = cache.report()
    assert (r["lookups"], r["hits_structural"], r["hits_functional"], r["misses"]) == (5, 1, 2, 2)
    assert r["rate_structural"] == pytest.approx(0.2) and r["rate_functional"] == pytest.approx(0.4)
    assert r["hit_rate"] == pytest.approx(0.6) and r["savings"] == pytest.approx(2.5)
    assert r["probe_calls"] == 4 and r["probe_seconds"] > 0 and r["probe_seconds_mean"] > 0
    assert r["evaluations"] == 1 and r["evaluation_seconds"] == pytest.approx(0.01)
    assert r["probe_cost_ratio"] == pytest.approx(r["probe_seconds_mean"] / 0.01)
    assert cache.cache.peek(key.structural).genome["components"]["predict"] == [[1, 1, 0, 0]]


def test_evaluate_and_counters():
    probe = Probe()
    cache = ProgramCache(probe=probe)
    assert cache.report()["hit_rate"] == 0.0 and cache.report()["savings"] is None
    evals = []

    def fitness(p):
        evals.append(p)
        return float(np.mean(probe(p) ** 2))

    ps = [random_program("function", length=4, n_scalar=4, n_vector=1, n_matrix=0, dim=1, seed=s % 7)
          for s in range(30)]
    got = [cache.evaluate(p, fitness) for p in ps]
    assert len(evals) == cache.misses == cache.evaluations <= 7
    assert got == [got[s % 7] for s in range(30)]
    assert cache.lookups == 30 and cache.hits_structural + cache.hits_functional == 30 - cache.misses
    r = cache.report()
    assert r["evaluation_seconds_mean"] > 0 and r["probe_cost_ratio"] > 0
    # a probe with NaN and inf outputs: all NaNs alike, infinities kept
    nan_a = _fn([("s_const", 2, 0.0), ("s_div", 1, 2, 2)])  # 0 / 0
    nan_b = _fn([("s_const", 2, -1.0), ("s_log", 1, 2)])  # log(-1)
    inf = _fn([("s_const", 2, 0.0), ("s_recip", 1, 2)])  # 1 / 0
    assert cache.evaluate(nan_a, lambda p: 1e9) == 1e9
    assert cache.lookup(nan_b)[:2] == (1e9, "functional") and cache.lookup(inf)[:2] == (None, None)


def test_quantisation_and_namespace():
    a = np.array([1.0, 2.0, 3.0])
    near = a * (1 + 1e-9)
    far = a * (1 + 1e-3)
    assert functional_digest(a) == functional_digest(near) != functional_digest(far)
    assert functional_digest(a, quantise=52) != functional_digest(near, quantise=52)
    assert functional_digest(a, quantise=0.01) == functional_digest(a + 1e-4, quantise=0.01)
    assert functional_digest(a, namespace="task-1") != functional_digest(a, namespace="task-2")
    assert functional_digest(np.array([np.nan, -0.0])) == functional_digest(np.array([-np.nan, 0.0]))
    p = _fn([("s_add", 1, 0, 0)])
    assert structural_digest(p, namespace=1) != structural_digest(p)
    store = EvaluationCache()
    c1 = ProgramCache(store, probe=Probe(), namespace="task-1")
    c1.store(c1.lookup(p)[2], 3.0, p)
    c2 = ProgramCache(store, probe=Probe(), namespace="task-2")
    assert c2.lookup(p)[:2] == (None, None)
    with pytest.raises(ConfigError, match="quantise"):
        ProgramCache(probe=Probe(), quantise=53)
    with pytest.raises(ConfigError, match="quantise"):
        ProgramCache(probe=Probe(), quantise=-0.5)
    with pytest.raises(TypeError, match="quantise"):
        ProgramCache(probe=Probe(), quantise=True)
    with pytest.raises(ConfigError, match="quantise does not fit"):
        functional_digest(np.ones(3, np.float32), quantise=30)


def test_persisted_across_instances(tmp_path):
    p = _fn([("s_add", 1, 0, 0)])
    renamed = _fn([("s_add", 3, 0, 0), ("s_mul", 2, 0, 0), ("s_add", 1, 3, 3), ("s_sub", 1, 3, 0)])
    equal = _fn([("s_const", 2, 2.0), ("s_mul", 1, 0, 2)])
    probe = Probe()
    with EvaluationCache(tmp_path) as store:
        cache = ProgramCache(store, probe=probe)
        cache.store(cache.lookup(p)[2], 0.75, p, seconds=0.5)
    probe2 = Probe()
    with EvaluationCache(tmp_path) as store:
        cache = ProgramCache(store, probe=probe2)
        assert cache.lookup(p)[:2] == (0.75, "structural")
        assert cache.lookup(renamed)[:2] == (None, None)  # s1 = s0 + s0 - s0: another function
        assert cache.lookup(equal)[:2] == (0.75, "functional")
        assert probe2.calls == 2
        assert len(store) == 3  # p's two digests, and equal's structural one


def test_errors():
    cache = ProgramCache(probe=Probe())
    with pytest.raises(TypeError, match="probe must be a callable"):
        ProgramCache(probe=3)
    with pytest.raises(TypeError, match="cache must be an EvaluationCache"):
        ProgramCache({}, probe=Probe())
    with pytest.raises(TypeError, match="program must be a Program"):
        cache.lookup("s1 = s0")
    with pytest.raises(ValueError, match="type error"):
        cache.lookup(_fn([("s_add", 5, 0, 0)]))
    with pytest.raises(TypeError, match="ProgramKey"):
        cache.store(b"x" * 16, 1.0)
    with pytest.raises(ValueError, match="finite"):
        cache.store(ProgramKey(b"x" * 16, b"y" * 16), float("nan"))
    assert len(cache.cache) == 0
    with pytest.raises(TypeError, match="Hasher cannot hash"):
        ProgramCache(probe=Probe(), namespace=object())


def test_lookup_many_equals_one_by_one_and_probes_once_per_structural_miss():
    progs = [_fn([("s_add", 1, 0, 0)]), _fn([("s_add", 1, 0, 0), ("s_mul", 2, 0, 0)]),  # the same structure
             _fn([("s_const", 2, 2.0), ("s_mul", 1, 0, 2)]),  # the same function as the first
             _fn([("s_mul", 1, 0, 0)])]
    one, many = ProgramCache(probe=Probe()), ProgramCache(probe=Probe())
    one.store(one.lookup(progs[0])[2], 1.5)
    many.store(many.lookup(progs[0])[2], 1.5)
    calls = []

    def probe_many(batch):
        calls.append(len(batch))
        return [many.probe(p) for p in batch]

    got = many.lookup_many(progs, probe_many=probe_many)
    want = [one.lookup(p) for p in progs]
    assert [g[:2] for g in got] == [w[:2] for w in want] == [(1.5, "structural"), (1.5, "structural"),
                                                             (1.5, "functional"), (None, None)]
    assert [g[2] for g in got] == [w[2] for w in want]
    assert calls == [2]  # one call for the two structural misses
    assert (many.hits_structural, many.hits_functional, many.misses) == (one.hits_structural, one.hits_functional,
                                                                         one.misses)
    with pytest.raises(ValueError, match="probe_many returned 1 outputs for 2 programs"):
        ProgramCache(probe=Probe()).lookup_many(progs[2:], probe_many=lambda b: [0.0])
