"""evoforge.evaluate without Ray: the in-process and process-pool backends give the in-process
search result, survive a worker killed (SIGKILL of its pid) or hung mid-generation without losing
an evaluation, and the engine caches each chunk as it arrives.

``Toy`` (below) is also the evaluator of tests/test_evaluate_ray.py and of the killed-driver
script there: a deterministic fitness of (genome, minibatch seed) with optional fault injection.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from evoforge.cache import EvaluationCache
from evoforge.errors import ConfigError
from evoforge.evaluate import EvaluationError, InProcess, ProcessPool, open_backend
from evoforge.search import NSGA2, Batch, LevelSwitch, OnePlusLambda
from evoforge.search.problems import zdt1

L = 12
TARGET = np.array([0, 6, 1, 5, 2, 4, 3, 3, 4, 2, 5, 1], dtype=np.float64)
WEIGHT = np.linspace(1.0, 2.0, L)


def toy_fitness(genomes: np.ndarray, seed: int | None) -> np.ndarray:
    """Reference fitness: a weighted distance to TARGET plus a minibatch term that depends only on
    (genome, seed), never on which other candidates share the call."""
    g = np.asarray(genomes, dtype=np.float64)
    f = ((g - TARGET) ** 2 * WEIGHT).sum(axis=1)
    if seed is not None:
        f += 0.05 * g @ np.random.default_rng(seed).random(L)
    return f


def _claim(marker: str) -> bool:
    """True for exactly one caller across processes (the first to create ``marker``, which then
    holds the caller's pid)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    return True


class Toy:
    """Evaluator: toy_fitness + ``offset`` (set by broadcast). ``fault`` strikes the first chunk of
    generation ``fault_gen`` on any worker, once (``marker`` then holds that worker's pid): "kill"
    (SIGKILL of its own pid), "hang" (sleeps, e.g. until a test kills it), "raise"; "kill-always"
    strikes every chunk of that generation. ``log`` gets one JSON line per finished candidate;
    ``delay`` seconds per candidate."""

    def __init__(self, log: str | None = None, fault: str | None = None, fault_gen: int = 1,
                 marker: str | None = None, delay: float = 0.0) -> None:
        self.log, self.fault, self.fault_gen, self.marker, self.delay = log, fault, fault_gen, marker, delay
        self.offset = 0.0

    def set_offset(self, value: float) -> None:
        self.offset = float(value)

    def evaluate(self, genomes: np.ndarray, batch: Batch) -> np.ndarray:
        if self.fault and batch.generation == self.fault_gen and (self.fault == "kill-always" or _claim(self.marker)):
            if self.fault in ("kill", "kill-always"):
                os.kill(os.getpid(), signal.SIGKILL)
            if self.fault == "hang":
                time.sleep(600)
            if self.fault == "raise":
                raise ValueError("toy evaluator failed on purpose")
        if self.delay:
            time.sleep(self.delay * len(genomes))
        F = toy_fitness(genomes, batch.seed) + self.offset
        if self.log:
            with open(self.log, "a") as f:  # one short append per line: atomic across processes
                f.writelines(json.dumps({"g": np.asarray(g).tolist(), "fidelity": batch.fidelity, "seed": batch.seed,
                                        "gen": batch.generation, "pid": os.getpid()}) + "\n" for g in genomes)
        return F


def read_log(path) -> list[tuple]:
    p = Path(path)
    if not p.is_file():
        return []
    return [(tuple(r["g"]), r["fidelity"], r["seed"]) for r in map(json.loads, p.read_text().splitlines())]


def make_engine(**kw) -> OnePlusLambda:
    """The toy search: budget-preserving level switches, a seeded minibatch stage, then a full one."""
    kw = {"stages": [(3, 256), (1, None)], **kw}
    return OnePlusLambda(np.full(L, 3, np.int32), LevelSwitch(3), lower=0, upper=6, n_offspring=8, seed=7,
                         progress=False, **kw)


def summary(result) -> tuple:
    return (result.best_genome.tolist(), result.best_fitness, result.evaluations, result.cache_hits,
            [h["best_fitness"] for h in result.history])


GENERATIONS = 6


@functools.cache
def reference(offset: float = 0.0) -> tuple:
    """The in-process search (no backend) and the candidates it evaluated."""
    e = make_engine()
    ev = Toy()
    ev.set_offset(offset)
    seen: list[tuple] = []

    def logged(genomes, batch):
        seen.extend((tuple(g.tolist()), batch.fidelity, batch.seed) for g in genomes)
        return ev.evaluate(genomes, batch)

    class Wrapped:
        def evaluate(self, genomes, batch):
            return logged(genomes, batch)

    return summary(e.run(Wrapped(), generations=GENERATIONS)), tuple(seen)


# ---- in-process -----------------------------------------------------------------------------------


def test_in_process_backend_is_the_engine_default():
    ref, _ = reference()
    with InProcess(Toy()) as b:
        assert summary(make_engine().run(b, generations=GENERATIONS)) == ref
    with open_backend("inprocess", Toy) as b:
        b.broadcast("set_offset", 2.5)
        assert b.evaluator.offset == 2.5
        g = np.arange(2 * L).reshape(2, L) % 7
        np.testing.assert_array_equal(b.evaluate(g, Batch(g, 64, 3)), toy_fitness(g, 3) + 2.5)


class _Chunked(InProcess):
    """In-process, but in chunks of two rows, last chunk first; optionally fails after the first."""

    def __init__(self, fn, fail_after_first: bool = False):
        super().__init__(fn)
        self.fail_after_first = fail_after_first

    def evaluate_chunks(self, genomes, batch=None):
        rows = np.arange(len(genomes))[::-1]
        for k, i in enumerate(range(0, len(rows), 2)):
            if k == 1 and self.fail_after_first:
                raise RuntimeError("driver lost")
            idx = np.sort(rows[i:i + 2])
            yield idx, self.evaluator(genomes[idx])


def test_backend_evaluate_assembles_rows_in_order():
    X = np.random.default_rng(0).random((7, 5))
    np.testing.assert_array_equal(_Chunked(zdt1).evaluate(X), zdt1(X))  # [B, M]
    np.testing.assert_array_equal(_Chunked(lambda g: g.sum(1)).evaluate(X), X.sum(1))  # [B]
    F, cv = _Chunked(lambda g: (g.sum(1), g[:, 0])).evaluate(X)  # (fitness, violation)
    np.testing.assert_array_equal(F, X.sum(1))
    np.testing.assert_array_equal(cv, X[:, 0])


def test_engine_caches_each_chunk_as_it_arrives(tmp_path):
    e = make_engine(run_dir=tmp_path)
    batch = e.ask()
    with pytest.raises(RuntimeError, match="driver lost"):
        e.evaluate(batch, _Chunked(lambda g: toy_fitness(g, batch.seed), fail_after_first=True))
    e.close()
    with EvaluationCache(tmp_path) as cache:
        cached = set(cache.keys())
    first = np.sort(np.arange(len(batch.genomes))[::-1][:2])  # the chunk that finished
    assert cached == {e.key(batch.genomes[i], batch) for i in first}


def test_engine_rejects_a_backend_that_skips_or_repeats_candidates():
    class Skips(InProcess):
        def evaluate_chunks(self, genomes, batch=None):
            yield np.arange(len(genomes) - 1), toy_fitness(genomes[:-1], None)

    class Repeats(InProcess):
        def evaluate_chunks(self, genomes, batch=None):
            yield np.arange(len(genomes)), toy_fitness(genomes, None)
            yield np.arange(1), toy_fitness(genomes[:1], None)

    for bad, msg in ((Skips(Toy()), "no fitness for candidate"), (Repeats(Toy()), "twice")):
        e = make_engine(stages=None)
        with pytest.raises(ValueError, match=msg):
            e.evaluate(e.ask(), bad)


# ---- process pool ---------------------------------------------------------------------------------


def test_process_pool_gives_the_in_process_result(tmp_path):
    ref, seen = reference(1.5)
    log = tmp_path / "log.jsonl"
    with ProcessPool(functools.partial(Toy, log=str(log)), workers=2, threads=1) as pool:
        assert len(set(pool.pids()) | {os.getpid()}) == 3
        pool.broadcast("set_offset", 1.5)
        assert summary(make_engine().run(pool, generations=GENERATIONS)) == ref
        assert pool.stats["restarts"] == 0
        # Multi-objective fitness [B, 2] through the pool (NSGA-II on ZDT1), equal to in-process.
    with ProcessPool(_zdt1_factory, workers=2, threads=1, chunk_size=3) as pool:
        runs = [NSGA2(np.zeros(6), np.ones(6), n_objectives=2, pop_size=12, seed=3, progress=False).run(
            ev, generations=3) for ev in (zdt1, pool)]
    np.testing.assert_array_equal(runs[0].best_fitness, runs[1].best_fitness)
    assert Counter(read_log(log)) == Counter(seen)  # each candidate evaluated once, by some worker


def _zdt1_factory():
    return zdt1


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_process_pool_survives_a_killed_or_hung_worker(tmp_path, fault):
    ref, seen = reference()
    log = tmp_path / "log.jsonl"
    factory = functools.partial(Toy, log=str(log), fault=fault, fault_gen=2, marker=str(tmp_path / "marker"))
    with ProcessPool(factory, workers=2, threads=1, timeout=3.0 if fault == "hang" else None) as pool:
        pids = pool.pids()
        assert summary(make_engine().run(pool, generations=GENERATIONS)) == ref
        assert (tmp_path / "marker").exists()  # the fault did strike
        # The struck worker was replaced (a hang: by the timeout; a very slow machine may time out more).
        assert pool.stats["redispatched"] >= 1
        if fault == "kill":
            assert pool.stats["restarts"] == 1 and pool.stats["timeouts"] == 0
            assert len(set(pool.pids()) - set(pids)) == 1
        else:
            assert pool.stats["restarts"] == pool.stats["timeouts"] >= 1
    # No evaluation lost: every candidate the in-process run evaluated finished on some worker.
    assert Counter(read_log(log)) == Counter(seen)


def test_process_pool_errors(tmp_path):
    # The evaluator's own exception comes back with its type; the pool stays usable.
    factory = functools.partial(Toy, fault="raise", fault_gen=0, marker=str(tmp_path / "m"))
    with ProcessPool(factory, workers=1) as pool:
        e = make_engine()
        with pytest.raises(ValueError, match="failed on purpose"):
            e.run(pool, generations=1)
        g = np.full((1, L), 3)
        np.testing.assert_array_equal(pool.evaluate(g, Batch(g)), toy_fitness(g, None))
    # A candidate that kills every worker it reaches is given up after max_attempts.
    factory = functools.partial(Toy, fault="kill-always", fault_gen=0)
    with ProcessPool(factory, workers=1, max_attempts=2) as pool, pytest.raises(EvaluationError, match="lost 2 times"):
        make_engine().run(pool, generations=1)
    # A factory that fails names the cause; bad options are ConfigErrors.
    with pytest.raises(EvaluationError, match="(?s)could not build its evaluator.*FileNotFoundError: no such model"):
        ProcessPool(functools.partial(_failing_factory, "no such model"), workers=1)
    with pytest.raises(EvaluationError, match="cannot be pickled"):
        ProcessPool(lambda: Toy(), workers=1)
    for kw in ({"workers": 0}, {"timeout": -1.0}, {"max_attempts": 0}, {"chunk_size": 0},
               {"workers": 2**62}, {"workers": 2**64}, {"max_attempts": 2**64}, {"chunk_size": 2**64}):
        with pytest.raises(ConfigError, match=next(iter(kw))):  # 2**62 workers: MemoryError before
            ProcessPool(Toy, **kw)
    for kw in ({"workers": 2.5}, {"workers": True}, {"max_attempts": float("inf")}):
        with pytest.raises(TypeError, match=next(iter(kw))):
            ProcessPool(Toy, **kw)
    with pytest.raises(ConfigError, match="backend must be one of"):
        open_backend("threads", Toy)


def _failing_factory(msg: str):
    raise FileNotFoundError(msg)


def _toy_until_fault(marker: str, **kw) -> Toy:
    """A factory that fails once the fault struck (a worker whose node is gone cannot come back)."""
    if os.path.exists(marker):
        raise RuntimeError("this worker's node is gone")
    return Toy(marker=marker, **kw)


def test_process_pool_goes_on_without_a_worker_that_cannot_restart(tmp_path):
    ref, seen = reference()
    log, marker = tmp_path / "log.jsonl", str(tmp_path / "marker")
    with ProcessPool(functools.partial(_toy_until_fault, marker, log=str(log), fault="kill", fault_gen=1),
                     workers=2, threads=1) as pool:
        assert summary(make_engine().run(pool, generations=GENERATIONS)) == ref
        assert len(pool.pids()) == 1  # the killed worker's slot was retired
    assert Counter(read_log(log)) == Counter(seen)


def _square_sum(genomes: np.ndarray) -> np.ndarray:
    return (np.asarray(genomes, dtype=np.float64) ** 2).sum(axis=1)


def _make_square_sum():
    return _square_sum


@pytest.mark.parametrize("workers", [1, 2])
def test_evaluate_stream_takes_candidates_as_workers_free_up(workers):
    """evaluate_stream: every candidate handed out is evaluated once, with its own fitness, and
    candidates are drawn only while a worker has room (never more than workers x depth ahead)."""
    rng = np.random.default_rng(0)
    todo = [rng.random((1, 3)) for _ in range(13)]
    handed = []
    with ProcessPool(_make_square_sum, workers=workers, chunk_size=1, depth=1) as pool:
        def nxt():
            if len(handed) == len(todo):
                return None
            assert len(handed) - len(back) <= workers  # drawn only for a free worker
            handed.append(todo[len(handed)])
            return handed[-1]

        back = []
        for X, f in pool.evaluate_stream(nxt):
            back.append((X.copy(), np.asarray(f)))
    assert len(back) == len(todo)
    got = {tuple(X[0]): float(f[0]) for X, f in back}
    assert got == {tuple(x[0]): float(_square_sum(x)[0]) for x in todo}
    # the default (one call at a time) for the in-process backend
    it = iter(todo)
    out = list(InProcess(_square_sum).evaluate_stream(lambda: next(it, None)))
    assert [float(f[0]) for _, f in out] == [float(_square_sum(x)[0]) for x in todo]
