"""Program-search engines (regularized evolution, NSGA-II), the function and learner tasks, the run
directory and the CLI: against float64 / numpy references written here, and brute force."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from evoforge import pareto
from evoforge.errors import ConfigError
from evoforge.programs import Program, assemble, horner_program, minimax_polynomial, op_count
from evoforge.programs.function_task import WORST, FunctionTask, taylor_program
from evoforge.programs.learner_task import LearnerTask, linear_regression_program
from evoforge.programs.nsga2 import ProgramNSGA2
from evoforge.programs.regularized import RegularizedEvolution
from evoforge.programs.run import search_programs


def _fn(ins, n_scalar=4):
    code, imm = assemble(ins)
    return Program({"predict": code}, {"predict": imm}, n_scalar=n_scalar, n_vector=0, n_matrix=0, dim=1)


# ---- tasks against references ------------------------------------------------------------------------------


def test_function_task_objectives_match_a_float64_reference():
    t = FunctionTask("exp2", n_points=257)
    c = [1.0, 0.69, 0.24]
    p = horner_program(c)
    x = t.x.astype(np.float32)
    acc = np.float32(c[2]) * np.ones_like(x)
    for k in (1, 0):  # float32 Horner, the interpreter's order (no fused multiply-add)
        acc = (acc * x).astype(np.float32) + np.float32(c[k])
    exact = np.exp2(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    want = np.max(np.abs(acc.astype(np.float64) - exact) / ulp)
    F = t.evaluate([p])
    assert F.shape == (1, 2)
    assert F[0, 0] == pytest.approx(math.log2(1 + want), rel=1e-12)
    assert F[0, 1] == 4
    nan = _fn([("s_const", 2, 0.0), ("s_div", 1, 2, 2)])  # 0 / 0
    assert t.evaluate([nan])[0, 0] == WORST


def test_taylor_programs_compute_their_polynomials():
    ln2 = math.log(2)
    series = {"exp2": lambda x, d: sum(ln2 ** k / math.factorial(k) * x ** k for k in range(d + 1)),
              "log2": lambda x, d: sum((-1) ** k / ((k + 1) * ln2) * (x - 1) ** (k + 1) for k in range(d))}
    for name in ("exp2", "log2"):
        t = FunctionTask(name, n_points=129)
        errs = [t.errors([taylor_program(name, d)])[0] for d in (2, 4, 6)]
        assert errs[0] > errs[1] > errs[2]  # more terms, closer
        out = t.outputs([taylor_program(name, 6)])[0].astype(np.float64)
        np.testing.assert_allclose(out, series[name](t.x.astype(np.float64), 6), rtol=1e-6, atol=1e-7)
    assert FunctionTask("log2").outputs([taylor_program("log2", 3)], np.array([1.0], np.float32))[0, 0] == 0.0


def test_tune_fits_constants_never_worse_and_deterministic():
    t = FunctionTask("exp2", n_points=513, fit_iterations=60, fit_points=129)
    rng = np.random.default_rng(0)
    progs = [horner_program([1.0, 0.69, 0.24] * (1 + 0.05 * rng.standard_normal(3))) for _ in range(3)]
    progs.append(_fn([("s_add", 1, 0, 0)]))  # no constants: unchanged
    a, b = t.tune(progs, seed=5), t.tune(progs, seed=5)
    assert [p.key() for p in a] == [p.key() for p in b]
    assert a[3] is progs[3]
    before, after = t._fit_errors(progs[:3]), t._fit_errors(a[:3])
    assert (after <= before).all() and (after < before).any()
    assert [op_count(p) for p in a[:3]] == [op_count(p) for p in progs[:3]]


def test_tune_keeps_integer_constants_exact_when_asked():
    t = FunctionTask("log2", n_points=257, fit_iterations=40, fit_points=65, fit_integers=False)
    p = taylor_program("log2", 4)
    q = t.tune([p], seed=3)[0]
    assert 1.0 in q.imm["predict"].tolist()  # t = x - 1 kept exact
    assert t.outputs([q], np.array([1.0], np.float32))[0, 0] == 0.0
    assert t.errors([q])[0] < t.errors([p])[0] / 2


def _consts(p: Program) -> np.ndarray:
    return np.flatnonzero(p.components["predict"][:, 0] == assemble([("s_const", 2, 0.0)])[0][0, 0])


def test_linear_fit_recovers_a_polynomial_target_exactly():
    from evoforge.programs.elementary import Target

    coeffs = [1.0, 0.5, -0.25, 0.125]
    poly = Target("cubic", lambda x: ((0.125 * x - 0.25) * x + 0.5) * x + 1.0, (0.0, 1.0), "relative", (-4.0, 4.0))
    t = FunctionTask(poly, n_points=257)
    p = horner_program([2.0, -1.0, 3.0, 0.0], dtype="float64")
    got = t.linear_fit(p, _consts(p))
    np.testing.assert_allclose(got, coeffs[::-1], rtol=1e-9, atol=1e-12)  # Horner reads c3 first


@pytest.mark.parametrize("degree", [2, 3, 5])
def test_linear_fit_is_the_weighted_minimax_fit(degree):
    """The LP's optimum equioscillates: its largest ULP-weighted error is reached at degree + 2 points
    with alternating signs (Chebyshev's criterion), and it is no worse than the Remez polynomial."""
    t = FunctionTask("exp2", n_points=1025)
    p = taylor_program("exp2", degree).canonical()
    c = t.linear_fit(p, _consts(p))
    x = t._fit_x.astype(np.float64)
    e = (np.polyval(c, x) - t._fit_exact) / t._fit_ulp  # constants in Horner order: highest degree first
    peak = np.abs(e).max()
    at = np.flatnonzero(np.abs(e) >= peak * (1 - 1e-6))
    signs = np.sign(e[at])
    runs = 1 + int((signs[1:] != signs[:-1]).sum())
    assert runs >= degree + 2
    remez = minimax_polynomial("exp2", degree)
    assert peak <= np.abs((np.polynomial.polynomial.polyval(x, remez) - t._fit_exact) / t._fit_ulp).max() * (1 + 1e-9)


def test_polish_ends_in_a_local_minimum_of_the_max_ulp_error():
    t = FunctionTask("exp2", n_points=1025, fit_polish=10_000)
    p = taylor_program("exp2", 4).canonical()
    sites = _consts(p)
    x0 = t.linear_fit(p, sites)
    (x, f), = t._polish([(p, sites, x0)])
    assert t.errors([t._with(p, sites, x)])[0] < t.errors([t._with(p, sites, x0)])[0]
    assert f == pytest.approx(math.log2(1 + t.errors([t._with(p, sites, x)])[0]), rel=1e-12)
    assert np.array_equal(x, x.astype(np.float32))  # float32 constants
    for i in range(sites.size):  # brute force: no step of the neighbourhood improves
        for k in (1, -1, 4, -4, 16, -16):
            y = x.copy()
            y[i] = float(np.float32(np.float32(x[i]) + k * np.spacing(np.float32(x[i]))))
            assert t.errors([t._with(p, sites, y)])[0] >= t.errors([t._with(p, sites, x)])[0]


def test_linear_fit_refuses_programs_not_affine_in_their_constants():
    t = FunctionTask("exp2", n_points=65)
    square = _fn([("s_const", 2, 0.7), ("s_mul", 3, 2, 2), ("s_add", 1, 3, 0)])  # c^2 + x
    ratio = _fn([("s_const", 2, 0.7), ("s_add", 3, 0, 2), ("s_const", 2, 1.0), ("s_div", 1, 2, 3)])  # 1 / (x + c)
    for p in (square, ratio):
        assert t.linear_fit(p, _consts(p)) is None
    assert t.linear_fit(_fn([("s_add", 1, 0, 0)]), np.array([], np.int64)) is None


def test_tune_with_the_linear_fit_and_polish_beats_minimax_at_12_ops():
    t = FunctionTask("exp2", fit_iterations=3, fit_points=513)
    q = t.tune([taylor_program("exp2", 6)], seed=0)[0]
    minimax = {r["ops"]: r["max_ulp"] for r in t.baseline([6, 7])}
    assert op_count(q) == 12 and t.errors([q])[0] < minimax[12]
    assert t.errors([q])[0] <= minimax[14] * (1 + 1e-12)  # the float32 polish: as good as 14 ops of minimax
    unpolished = FunctionTask("exp2", fit_iterations=3, fit_points=513, fit_polish=0)
    assert unpolished.errors([unpolished.tune([taylor_program("exp2", 6)], seed=0)[0]])[0] > t.errors([q])[0]
    assert FunctionTask("exp2", fit_iterations=3, fit_linear=False).tune([taylor_program("exp2", 6)], seed=0)[0] != q
    with pytest.raises(TypeError, match="fit_linear"):
        FunctionTask("exp2", fit_linear=1)


def _numpy_sgd(train_x, train_y, valid_x, lr):
    T, N, d = train_x.shape
    preds = np.empty(valid_x.shape[:2])
    for t in range(T):
        w = np.zeros(d)
        for n in range(N):
            err = train_y[t, n] - w @ train_x[t, n]
            w = w + (err * lr) * train_x[t, n]
        preds[t] = valid_x[t] @ w
    return preds


def test_learner_task_matches_a_numpy_sgd_reference():
    t = LearnerTask("regression", n_tasks=3, n_train=40, n_valid=30, seed=3)
    p = linear_regression_program(dim=4, lr=0.1)
    _, got = t.predictions([p], t.data)
    want = _numpy_sgd(t.data[0], t.data[1], t.data[2], 0.1)
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-12)
    y = t.data[3]
    loss = ((want - y) ** 2).sum(-1) / ((y - y.mean(-1, keepdims=True)) ** 2).sum(-1)
    assert t.evaluate([p])[0] == pytest.approx(loss.mean(), rel=1e-12)
    assert t.report(linear_regression_program(lr=0.2))["heldout_r2"] > 0.99  # 40 examples of SGD


def test_classification_task_error_rate():
    t = LearnerTask("classification", source="synthetic", n_tasks=2, n_train=20, n_valid=20)
    const = Program({"setup": np.zeros((0, 4), np.int32), "predict": assemble([("s_const", 1, 1.0)])[0],
                     "learn": np.zeros((0, 4), np.int32)},
                    {"predict": np.array([1.0])}, n_scalar=5, n_vector=4, n_matrix=0, dim=4)
    # Always class 1: the error rate is the share of class-0 labels.
    assert t.evaluate([const])[0] == pytest.approx((t.data[3] < 0.5).mean())


# ---- engines ------------------------------------------------------------------------------------------------


def test_regularized_evolution_is_seed_deterministic_and_counts_hits():
    t = LearnerTask("regression", n_tasks=2, n_train=20, n_valid=20)
    runs = []
    for _ in range(2):
        e = RegularizedEvolution(t, population_size=20, tournament_size=4, batch_size=5, max_length=4, seed=3,
                                 progress=False)
        r = e.run(generations=15)
        runs.append((r.best_fitness, r.best_genome.key(), [h["best_fitness"] for h in r.history]))
        assert r.evaluations + r.cache_hits == r.requested == 20 + 14 * 5
        assert e.hits_structural + e.hits_functional == r.cache_hits
        assert len(e.population) == 20
    assert runs[0] == runs[1]
    # The best is the minimum over every evaluated fitness (aging does not lose it).
    hist = [h["population_best"] for h in r.history]
    assert runs[0][0] == pytest.approx(min(hist))


class _Flat(LearnerTask):
    """Every program scores 1 except the first ``good`` evaluated ones, each better than the last:
    the restart schedule can then be computed by hand."""

    def __init__(self, good: int):
        super().__init__("regression", n_tasks=1, n_train=10, n_valid=10)
        self.good, self.seen = good, 0

    def evaluate(self, programs, batch=None):
        out = []
        for _ in programs:
            self.seen += 1
            out.append(1.0 - 0.1 * self.seen if self.seen <= self.good else 1.0)
        return np.array(out)


def test_restarts_after_a_stall_from_the_initial_programs():
    t = _Flat(good=0)
    e = RegularizedEvolution(t, population_size=6, tournament_size=2, batch_size=3, max_length=3, seed=1,
                             restart_stall=3, cache=False, progress=False)
    starts = []
    for g in range(20):
        e.run(generations=g + 1)
        if all(p.key() == t.initial().key() for p in e.population):
            starts.append(g)
    # progress only at generation 0: a restart when 3 generations passed since the last (re)start
    assert starts == [0, 3, 6, 9, 12, 15, 18] and e.restarts == 6
    assert [h["restarts"] for h in e.history][:7] == [0, 0, 0, 1, 1, 1, 2]
    # progress (a new best by more than 1e-3 relative) postpones the restart; the best ever is kept
    t = _Flat(good=6 + 3 * 4)  # the first generation and 4 batches improve
    e = RegularizedEvolution(t, population_size=6, tournament_size=2, batch_size=3, max_length=3, seed=1,
                             restart_stall=3, cache=False, progress=False)
    r = e.run(generations=9)
    assert e.restarts == 1 and [h["restarts"] for h in r.history].index(1) == 7
    assert r.best_fitness == pytest.approx(1.0 - 0.1 * 18)
    with pytest.raises(ConfigError, match="restart_stall"):
        RegularizedEvolution(t, restart_stall=0)


def test_cache_saves_evaluations_without_changing_the_trajectory():
    # The probe is every point, so a functional hit's fitness is exactly the fitness: the cached
    # and uncached runs must take identical paths.
    t = FunctionTask("exp2", n_points=65, n_probe=65, objectives=("ulp",))
    out = {}
    for cache in (True, False):
        e = RegularizedEvolution(t, population_size=16, tournament_size=4, batch_size=8, max_length=6,
                                 initial=taylor_program("exp2", 2), cache=cache, seed=1, progress=False)
        r = e.run(generations=25)
        out[cache] = (r, [h["best_fitness"] for h in r.history], [p.key() for p in e.population])
    (rc, hc, pc), (rn, hn, pn) = out[True], out[False]
    assert hc == hn and pc == pn
    assert rn.evaluations == rn.requested
    assert rc.evaluations * 2 < rn.evaluations


def test_nsga2_front_is_nondominated_and_distinct():
    t = FunctionTask("exp2", n_points=65, fit_iterations=10, fit_points=33)
    e = ProgramNSGA2(t, population_size=12, max_length=10, initial=[taylor_program("exp2", d) for d in (1, 2, 3)],
                     seed=0, progress=False, ref_point=(WORST, 20))
    r = e.run(generations=4)
    programs, F = r.best_genome, r.best_fitness
    assert len(programs) == len(F) >= 2
    np.testing.assert_array_equal(pareto.nondominated_rank(F), 0)
    assert len(np.unique(F, axis=0)) == len(F)
    np.testing.assert_allclose(t.evaluate(programs), F)  # the front's objectives are its programs'
    assert len(np.unique(e.F, axis=0)) == len(e.F) <= 12  # the population holds distinct programs
    assert r.history[-1]["hypervolume"] == pytest.approx(pareto.hypervolume(F, np.array([WORST, 20.0])))


def test_nsga2_keeps_the_best_of_each_resolution_cell_and_ranks_the_distinct():
    # A dominated candidate that shares a cell of the resolution grid with a front point comes first: the
    # front point must survive, and no front point may be lost while its cell holds a worse copy.
    t = FunctionTask("exp2", n_points=17)
    e = ProgramNSGA2(t, population_size=4, max_length=10, initial=[taylor_program("exp2", d) for d in (1, 2, 3)],
                     resolution=(0.02, 0.0), seed=0, progress=False)
    batch = e.ask()
    n = len(batch.genomes)
    F = np.tile([30.0, 9.0], (n, 1))  # dominated filler
    F[:3] = [[9.815, 6.0], [9.810, 6.0], [20.0, 4.0]]  # cells: (490, 6) twice, (1000, 4)
    e.tell(batch, F)
    programs, front = e.best
    np.testing.assert_array_equal(front, [[9.810, 6.0], [20.0, 4.0]])
    assert programs[0] is batch.genomes[1]
    brute = [f for f in e.F if not any(np.all(g <= f) and np.any(g < f) for g in e.F)]  # brute-force front
    np.testing.assert_array_equal(np.array(sorted(map(tuple, brute))), front)
    assert len(e.population) == 3  # the two cells and the filler's one: copies do not survive


def test_bad_engine_arguments():
    t = FunctionTask("exp2", n_points=17)
    with pytest.raises(ConfigError, match="one objective"):
        RegularizedEvolution(t)
    with pytest.raises(ConfigError, match="tournament_size"):
        RegularizedEvolution(FunctionTask("exp2", objectives=("ulp",)), population_size=4, tournament_size=5)
    with pytest.raises(ConfigError, match="resolution"):
        ProgramNSGA2(t, resolution=-1.0)
    with pytest.raises(TypeError, match="ProgramTask"):
        ProgramNSGA2(object())
    with pytest.raises(TypeError, match="initial"):
        ProgramNSGA2(t, initial=["s1 = s0"])
    with pytest.raises(ConfigError, match="objectives"):
        FunctionTask("exp2", objectives=("ulp", "speed"))
    with pytest.raises(ValueError, match="function programs"):
        t.evaluate([linear_regression_program()])
    with pytest.raises(ConfigError, match="kind"):
        LearnerTask("ranking")
    with pytest.raises(ConfigError, match="task must be one of"):
        search_programs("sqrt")


def test_process_backend_gives_the_same_run(tmp_path):
    a = search_programs("linear", generations=4, seed=2, population_size=30, batch_size=10, progress=False,
                        task_options={"n_tasks": 2})
    b = search_programs("linear", generations=4, seed=2, population_size=30, batch_size=10, progress=False,
                        task_options={"n_tasks": 2}, backend="process", workers=2)
    assert a.fitness == b.fitness and a.best.key() == b.best.key()
    assert a.report["evaluations"] == b.report["evaluations"]


def test_run_directory_and_cli(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "evoforge.cli", "programs", "exp2", "--generations", "2",
                           "--population", "8", "--fit-iterations", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for f in ("best.py", "report.json", "front.csv", "front.png", "curve.png", "history.jsonl", "checkpoint.pkl"):
        assert (out / f).is_file(), f
    rep = json.loads((out / "report.json").read_text())
    front = np.loadtxt(out / "front.csv", delimiter=",", skiprows=1, ndmin=2)
    assert len(rep["front"]) == len(front) >= 1
    assert [r["ops"] for r in rep["front"]] == front[:, 1].astype(int).tolist()


SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from evoforge.programs.learner_task import LearnerTask
    from evoforge.programs.regularized import RegularizedEvolution
    run_dir, log, mode, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    task = LearnerTask("regression", n_tasks=2, n_train=20, n_valid=20)

    def evaluate(programs, batch=None):
        with open(log, "a") as f:
            for p in programs:
                f.write(p.key().hex() + "\\n")
        time.sleep(delay)
        return task.evaluate(programs)

    if mode == "start":
        e = RegularizedEvolution(task, population_size=20, tournament_size=4, batch_size=5, max_length=4, seed=7,
                                 run_dir=run_dir, progress=False)
    else:
        e = RegularizedEvolution.resume(run_dir, progress=False)
    r = e.run(evaluate, generations=30)
    print(json.dumps({"best": r.best_fitness, "key": r.best_genome.key().hex(), "gen": r.generations,
                      "pop": [p.key().hex() for p in e.population]}))
    """
)


def test_resume_after_kill_9_gives_the_same_result(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    ref = subprocess.run([sys.executable, str(script), str(tmp_path / "ref"), str(tmp_path / "ref.log"), "start", "0"],
                         capture_output=True, text=True, check=True)
    expected = json.loads(ref.stdout)
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir), str(log), "start", "0.05"])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            hist = run_dir / "history.jsonl"
            if hist.exists() and len(hist.read_text().splitlines()) >= 5:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = log.read_text().splitlines()
    resumed = subprocess.run([sys.executable, str(script), str(run_dir), str(log), "resume", "0"],
                             capture_output=True, text=True, check=True)
    assert json.loads(resumed.stdout) == expected
    after = log.read_text().splitlines()[len(before):]
    # What was evaluated and cached before the kill is not evaluated again (at most the batch in flight).
    assert len(set(before) & set(after)) <= 5


def test_more_bad_arguments_are_refused_by_name():
    with pytest.raises(ConfigError, match="the tasks would hold"):
        LearnerTask(n_tasks=1 << 16, n_train=1 << 20, dim=4096)
    with pytest.raises(TypeError, match="lr must be a real number"):
        linear_regression_program(lr="1")
    with pytest.raises(ConfigError, match="ref_point must be 2 real numbers"):
        ProgramNSGA2(FunctionTask("exp2", n_points=17), ref_point=np.ones((1, 2)))
    with pytest.raises(TypeError, match="every_float must be a bool"):
        FunctionTask("exp2", n_points=17).report(taylor_program("exp2", 2), every_float="yes")
    with pytest.raises(ConfigError, match="workers must be an int"):
        search_programs("linear", workers=-1)
    with pytest.raises(ConfigError, match="not an option of the nsga2 engine"):
        search_programs("exp2", tournament_size=3)
