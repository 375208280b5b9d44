"""evoforge.cache.EvaluationCache: statistics against numpy, LRU against an OrderedDict model, the
policies, persistence across processes, kill -9 of a writer, concurrent writers, and errors."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evoforge import ConfigError, EvoforgeError
from evoforge.cache import CacheClosedError, CacheError, CorruptCacheError, Entry, EvaluationCache

BACKENDS = ["memory", "sqlite"]


@pytest.fixture(scope="module")
def hyp_dir(tmp_path_factory):
    """One directory for the SQLite files of the hypothesis examples (a new file per example)."""
    return tmp_path_factory.mktemp("hyp")


def open_cache(backend: str, directory: str | Path, **kw) -> EvaluationCache:
    """A fresh cache: in memory, or a new SQLite file in ``directory``."""
    if backend == "memory":
        return EvaluationCache(**kw)
    return EvaluationCache(Path(directory) / f"c{time.perf_counter_ns()}.sqlite", **kw)


@pytest.fixture(params=BACKENDS)
def make(request, tmp_path):
    opened = []

    def _make(**kw):
        c = open_cache(request.param, tmp_path, **kw)
        opened.append(c)
        return c

    yield _make
    for c in opened:
        c.close()


def run_py(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out


# ---------------------------------------------------------------------------------------------
# running statistics: Welford against numpy in float64

values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=100, deadline=None)
@given(seq=st.lists(values, min_size=1, max_size=40), m=st.integers(0, 4), data=st.data())
def test_running_mean_and_variance_match_numpy(hyp_dir, backend, seq, m, data):
    if m:  # a vector fitness: M components per evaluation
        seq = np.array(data.draw(st.lists(st.lists(values, min_size=m, max_size=m), min_size=1, max_size=30)))
    else:
        seq = np.array(seq)
    with open_cache(backend, hyp_dir) as c:
        for i, x in enumerate(seq):
            e = c.put(b"k", x if m else float(x))
            assert e.count == i + 1
        e = c.peek(b"k")
    assert isinstance(e.fitness, float) == (m == 0)
    scale = 1e-9 * (1 + np.abs(seq).max()) ** 2
    np.testing.assert_allclose(e.fitness, seq.mean(axis=0), rtol=1e-9, atol=1e-9 * (1 + np.abs(seq).max()))
    np.testing.assert_allclose(e.variance, seq.var(axis=0), rtol=1e-7, atol=scale)
    if len(seq) > 1:
        np.testing.assert_allclose(e.sample_variance, seq.var(axis=0, ddof=1), rtol=1e-7, atol=scale)
    else:
        assert np.all(np.isnan(e.sample_variance))


def test_vector_fitness_is_read_only_float64(make):
    c = make()
    e = c.put(b"v", np.array([1, 2], dtype=np.int32))
    assert e.fitness.dtype == np.float64 and not e.fitness.flags.writeable
    e = c.get(b"v")
    assert not e.fitness.flags.writeable
    np.testing.assert_array_equal(e.fitness, [1.0, 2.0])
    assert isinstance(c.put(b"s", np.float32(0.5)).fitness, float)
    assert isinstance(c.put(b"t", np.array(3)).fitness, float)  # 0-d is a scalar


# ---------------------------------------------------------------------------------------------
# LRU eviction against an OrderedDict model

ops = st.lists(st.tuples(st.sampled_from(["put", "get", "discard"]), st.integers(0, 9)), max_size=60)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(1, 6), ops=ops)
def test_lru_eviction_matches_ordered_dict(hyp_dir, backend, capacity, ops):
    model: OrderedDict[bytes, int] = OrderedDict()
    with open_cache(backend, hyp_dir, capacity=capacity) as c:
        for op, k in ops:
            key = bytes([k])
            if op == "put":
                c.put(key, float(k))
                model[key] = model.get(key, 0) + 1
                model.move_to_end(key)
                while len(model) > capacity:
                    model.popitem(last=False)
            elif op == "get":
                e = c.get(key)
                assert (e is not None) == (key in model)
                if e is not None:
                    assert e.count == model[key]
                    model.move_to_end(key)
            else:
                assert c.discard(key) == (key in model)
                model.pop(key, None)
            assert len(c) == len(model)
        assert [k for k, _ in c.items()] == list(model)
        assert list(c) == list(model)


def test_lru_hits_survive_reopen(tmp_path):
    with EvaluationCache(tmp_path, capacity=3) as c:
        for k in b"abc":
            c.put(bytes([k]), 1.0)
        c.get(b"a")  # a becomes the most recently used; the touch is batched and written at close
    with EvaluationCache(tmp_path, capacity=3) as c:
        assert c.peek(b"a").hits == 1
        c.put(b"d", 1.0)  # evicts b, the least recently used
        assert list(c) == [b"c", b"a", b"d"]


# ---------------------------------------------------------------------------------------------
# policies


def test_forget_every(make):
    c = make(forget_every=2)
    c.put(b"k", 1.0)
    assert c.get(b"k").hits == 1
    assert c.get(b"k").hits == 2
    assert c.get(b"k") is None  # after 2 hits the next lookup is a miss ...
    assert c.get(b"k") is None  # ... until the entry is evaluated again
    e = c.put(b"k", 3.0)
    assert (e.count, e.fitness) == (2, 2.0)
    assert c.get(b"k") is not None
    assert c.stats.hits == 3 and c.stats.misses == 2
    assert b"k" in c  # forgetting keeps the entry


def test_aggregate_reevaluates_until_n_evaluations(make):
    c = make(aggregate=3)
    rng = np.random.default_rng(0)
    calls = []

    def noisy():
        calls.append(1.0 + rng.normal(0, 0.1))
        return calls[-1]

    got = [c.evaluate(b"k", noisy) for _ in range(10)]
    assert len(calls) == 3
    assert got[:3] == pytest.approx([calls[0], np.mean(calls[:2]), np.mean(calls)])
    assert all(g == pytest.approx(np.mean(calls)) for g in got[3:])
    e = c.peek(b"k")
    assert e.count == 3 and e.variance == pytest.approx(np.var(calls))
    s = c.stats
    assert (s.hits, s.misses, s.evaluations, s.evaluations_saved) == (7, 3, 3, 7)
    assert s.hit_rate == pytest.approx(0.7)


def test_remove_probability_is_seeded(make):
    def removals(c):
        out = []
        for i in range(200):
            c.put(b"k", 1.0)
            c.get(b"k")
            out.append(b"k" not in c)
        return out

    a, b, other = removals(make(remove_probability=0.3, seed=7)), removals(make(remove_probability=0.3, seed=7)), \
        removals(make(remove_probability=0.3, seed=8))
    assert a == b and a != other
    assert 30 < sum(a) < 90
    assert not any(removals(make(remove_probability=0.0)))
    c = make(remove_probability=1.0)
    c.put(b"k", 2.0)
    assert c.get(b"k").fitness == 2.0  # the hit is served, then the entry is gone
    assert b"k" not in c and c.get(b"k") is None


def test_evaluate_times_fn_and_accounts_seconds_saved(make):
    c = make()
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.02)
        return [1.0, 2.0]

    for _ in range(4):
        np.testing.assert_array_equal(c.evaluate(b"k", slow, genome={"layers": (1, 2)}), [1.0, 2.0])
    assert len(calls) == 1
    e = c.peek(b"k")
    assert e.seconds >= 0.02 and e.hits == 3 and e.genome == {"layers": [1, 2]}
    s = c.stats
    assert (s.hits, s.misses, s.evaluations) == (3, 1, 1)
    assert s.seconds_saved == pytest.approx(3 * e.seconds)

    def boom():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        c.evaluate(b"x", boom)
    assert b"x" not in c


def test_first_genome_is_kept(make):
    c = make()
    c.put(b"k", 1.0)
    c.put(b"k", 1.0, genome=[np.arange(2), np.float32(0.5)])
    c.put(b"k", 1.0, genome="later")
    assert c.peek(b"k").genome == [[0, 1], 0.5]
    with pytest.raises(TypeError, match="JSON"):
        c.put(b"g", 1.0, genome=object())
    assert b"g" not in c


def test_entry_fields_and_timestamps(make):
    c = make()
    t0 = time.time()
    e = c.put(b"k", 1.0, seconds=0.5)
    assert isinstance(e, Entry) and e.key == b"k" and e.count == 1 and e.hits == 0
    assert t0 <= e.created == e.updated <= time.time()
    e2 = c.put(b"k", 2.0)
    assert e2.created == e.created and e2.updated >= e.updated and e2.seconds == 0.5
    assert c.put(b"u", 1.0).seconds is None


def test_threads_share_one_cache(make):
    c = make()

    def work(t):
        for i in range(100):
            c.put(bytes([t, i]), float(i))
            c.put(b"shared", 1.0)
            c.get(bytes([t, i]))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(c) == 401 and c.peek(b"shared").count == 400 and c.stats.hits == 400


# ---------------------------------------------------------------------------------------------
# files and processes


def test_directory_path_and_pickle(tmp_path):
    with EvaluationCache(tmp_path, capacity=10) as c:
        assert c.path == tmp_path / "evaluations.sqlite"
        c.put(b"k", [1.0, 2.0], genome={"a": 1})
        c2 = pickle.loads(pickle.dumps(c))  # reopens the same file with the same options
        try:
            assert c2.path == c.path and c2.options == c.options
            np.testing.assert_array_equal(c2.get(b"k").fitness, [1.0, 2.0])
        finally:
            c2.close()
    with EvaluationCache(str(tmp_path / "new" / "run") + "/") as c:
        assert c.path == tmp_path / "new" / "run" / "evaluations.sqlite"
    with EvaluationCache() as c, pytest.raises(TypeError, match="in-memory"):
        pickle.dumps(c)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_cache_inherited_through_fork_refuses_clearly(tmp_path):
    with EvaluationCache(tmp_path) as c:
        c.put(b"k", 1.0)
        pid = os.fork()
        if pid == 0:  # child: the parent's connection must not be used here
            code = 3
            try:
                c.get(b"k")
            except CacheError as exc:
                code = 0 if "before a fork" in str(exc) else 4
            except BaseException:
                code = 5
            finally:
                c.close()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert c.get(b"k").fitness == 1.0  # the parent's cache is unaffected


def test_persistence_across_processes(tmp_path):
    writer = """
        import sys
        from evoforge.cache import EvaluationCache
        with EvaluationCache(sys.argv[1]) as c:
            c.put(b"scalar", 1.5, genome={"w": [1, 2]}, seconds=0.25)
            c.put(b"scalar", 2.5)
            c.put(b"vector", [1.0, -2.0, 3.0])
            c.get(b"scalar")
    """
    run_py(writer, str(tmp_path))
    with EvaluationCache(tmp_path) as c:
        assert len(c) == 2
        e = c.get(b"scalar")
        assert (e.fitness, e.count, e.variance, e.hits, e.seconds, e.genome) == (2.0, 2, 0.25, 2, 0.25, {"w": [1, 2]})
        np.testing.assert_array_equal(c.get(b"vector").fitness, [1.0, -2.0, 3.0])
        c.put(b"parent", 7.0)
    reader = """
        import json, sys
        from evoforge.cache import EvaluationCache
        with EvaluationCache(sys.argv[1]) as c:
            print(json.dumps({k.decode(): [e.fitness if isinstance(e.fitness, float) else e.fitness.tolist(),
                                           e.count, e.hits] for k, e in c.items()}))
    """
    got = json.loads(run_py(reader, str(tmp_path)).stdout)
    assert got == {"vector": [[1.0, -2.0, 3.0], 1, 1], "scalar": [2.0, 2, 2], "parent": [7.0, 1, 0]}


KILL_WRITER = """
    import os, sys
    from evoforge.cache import EvaluationCache
    c = EvaluationCache(sys.argv[1], capacity=None)
    i = 0
    while True:
        key = os.urandom(16)
        c.put(key, [float(i), 1.0], genome={"i": i, "pad": "x" * (i % 2000)})
        sys.stdout.write(key.hex() + "\\n")  # printed only after put committed
        sys.stdout.flush()
        c.get(key)
        i += 1
"""


@pytest.mark.parametrize("kill_after", [50, 400])
def test_committed_entries_survive_kill_9(tmp_path, kill_after):
    EvaluationCache(tmp_path).close()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILL_WRITER), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    printed = []
    try:
        for line in proc.stdout:
            printed.append(line.strip())
            if len(printed) >= kill_after:
                break
        os.kill(proc.pid, signal.SIGKILL)  # the writer is in the middle of its next puts
        proc.wait(timeout=10)
        printed += [ln.strip() for ln in proc.stdout.read().splitlines() if len(ln.strip()) == 32]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL and len(printed) >= kill_after, proc.stderr
    con = sqlite3.connect(tmp_path / "evaluations.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()
    with EvaluationCache(tmp_path) as c:
        assert c.integrity_check() == ["ok"]
        stored = set(c)
        assert len(c) == len(stored) >= len(printed)
        missing = [k for k in printed if bytes.fromhex(k) not in stored]
        assert not missing
        e = c.peek(bytes.fromhex(printed[-1]))
        assert e.fitness[0] == e.genome["i"]


CONCURRENT_WRITER = """
    import sys, time
    from pathlib import Path
    from evoforge.cache import EvaluationCache
    directory, w = sys.argv[1], int(sys.argv[2])
    go = Path(directory) / "go"
    while not go.exists():
        time.sleep(0.002)
    c = EvaluationCache(directory)  # the writers race to create the file, then to write it
    for i in range(200):
        c.put(bytes([w]) + i.to_bytes(2, "little"), float(i), genome=[w, i])
        if i % 4 == 0:
            c.put(b"shared", float(w))
            c.get(bytes([w]) + (i // 2).to_bytes(2, "little"))
    c.close()
"""


def test_concurrent_writer_processes(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(CONCURRENT_WRITER), str(tmp_path), str(w)],
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    (tmp_path / "go").touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with EvaluationCache(tmp_path) as c:
        assert len(c) == 4 * 200 + 1 and c.integrity_check() == ["ok"]
        for w in range(4):
            for i in range(200):
                e = c.peek(bytes([w]) + i.to_bytes(2, "little"))
                assert e.fitness == float(i) and e.genome == [w, i]
        shared = c.peek(b"shared")
        assert shared.count == 200  # 4 writers x 50 folds, none lost to a race
        assert shared.fitness == pytest.approx(1.5) and shared.variance == pytest.approx(1.25)
        assert sum(e.hits for _, e in c.items()) == 200


CONCURRENT_OPENER = """
import os, sys, time
from evoforge.cache import EvaluationCache
path, go = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.0005)
with EvaluationCache(path, timeout=30) as c:
    c.put(sys.argv[3].encode(), 1.0)
"""


def test_processes_creating_one_new_cache_at_once(tmp_path):
    # Switching a new file to WAL does not wait for the lock: processes that all created the same
    # cache at once used to fail at once with "database is locked" although timeout=30.
    for trial in range(4):
        path, go = tmp_path / f"c{trial}.sqlite", tmp_path / f"go{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_OPENER, str(path), str(go), str(w)],
                                  stderr=subprocess.PIPE, text=True) for w in range(6)]
        time.sleep(1.0)  # every process imported evoforge and waits for the start signal
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        with EvaluationCache(path) as c:
            assert len(c) == 6 and c.integrity_check() == ["ok"]


# ---------------------------------------------------------------------------------------------
# errors


def test_closed_cache_raises(make):
    c = make()
    c.put(b"k", 1.0)
    c.close()
    c.close()  # idempotent
    assert c.closed and "closed" in repr(c)
    calls = [lambda: c.get(b"k"), lambda: c.put(b"k", 1.0), lambda: c.evaluate(b"k", lambda: 1.0),
             lambda: b"k" in c, lambda: len(c), lambda: list(c.items()), lambda: c.flush(),
             lambda: c.peek(b"k"), lambda: c.discard(b"k"), lambda: c.clear()]
    for call in calls:
        with pytest.raises(CacheClosedError, match="closed"):
            call()
    assert issubclass(CacheClosedError, EvoforgeError)
    with make() as c2:
        pass
    assert c2.closed


def test_corrupt_or_foreign_file_raises_naming_it(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 500)
    with pytest.raises(CorruptCacheError, match="garbage.sqlite"):
        EvaluationCache(garbage)

    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(CorruptCacheError, match="foreign.sqlite.*not an evoforge"):
        EvaluationCache(foreign)

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    with EvaluationCache(damaged) as c:
        for i in range(2000):
            c.put(i.to_bytes(4, "little"), float(i), genome={"pad": "x" * 100})
    f = damaged / "evaluations.sqlite"
    with open(f, "r+b") as fh:
        fh.seek(4096 * 3)
        fh.write(np.random.default_rng(0).bytes(4096 * 20))
    with pytest.raises(CorruptCacheError, match="evaluations.sqlite"):
        with EvaluationCache(damaged) as c:
            list(c.items())
            assert c.integrity_check() == ["ok"]
            raise CorruptCacheError("evaluations.sqlite: damage went unnoticed")  # pragma: no cover


@pytest.mark.parametrize("key", ["abc", bytearray(b"abc"), 3, None, memoryview(b"abc")])
def test_key_must_be_bytes(make, key):
    c = make()
    for call in (lambda: c.get(key), lambda: c.put(key, 1.0), lambda: key in c, lambda: c.peek(key),
                 lambda: c.evaluate(key, lambda: 1.0)):
        with pytest.raises(TypeError, match="bytes"):
            call()


def test_bad_fitness(make):
    c = make()
    for bad in (math.nan, math.inf, -math.inf, [1.0, math.nan]):
        with pytest.raises(ValueError, match="finite"):
            c.put(b"k", bad)
    for bad in ("1.0", None, b"x", ["a", "b"]):
        with pytest.raises(TypeError, match="fitness"):
            c.put(b"k", bad)
    for bad in ([], [[1.0, 2.0]]):
        with pytest.raises(ValueError, match="shape"):
            c.put(b"k", bad)
    assert len(c) == 0 and c.stats.evaluations == 0
    c.put(b"v", [1.0, 2.0])
    with pytest.raises(ValueError, match="vector of 2 components"):
        c.put(b"v", [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="scalar"):
        c.put(b"v", 1.0)
    c.put(b"s", 1.0)
    with pytest.raises(ValueError, match="holds a scalar"):
        c.put(b"s", [1.0])
    assert c.peek(b"v").count == 1 and c.peek(b"s").count == 1  # a rejected put changes nothing
    with pytest.raises(ValueError, match="seconds"):
        c.put(b"k", 1.0, seconds=-1.0)


@pytest.mark.parametrize("kw, err, match", [
    ({"capacity": 0}, ConfigError, "capacity must be >= 1"),
    ({"capacity": 2.5}, TypeError, "capacity must be an int"),
    ({"capacity": True}, TypeError, "capacity"),
    ({"forget_every": -1}, ConfigError, "forget_every"),
    ({"aggregate": 0}, ConfigError, "aggregate"),
    ({"aggregate": "3"}, TypeError, "aggregate"),
    ({"remove_probability": 1.5}, ConfigError, r"remove_probability must lie in \[0, 1\]"),
    ({"remove_probability": math.nan}, ConfigError, "remove_probability"),
    ({"remove_probability": "0.1"}, TypeError, "remove_probability"),
    ({"seed": 1.0}, TypeError, "seed"),
    ({"timeout": -1}, ConfigError, "timeout"),
    ({"timeout": 1e308}, ConfigError, r"timeout must be a number of seconds in \[0, 2147483.647\]"),  # overflowed
    ({"timeout": math.inf}, ConfigError, "timeout"),
    ({"timeout": math.nan}, ConfigError, "timeout"),
    ({"synchronous": "OFF"}, ConfigError, "synchronous"),
    ({"path": ":memory:"}, ConfigError, "path=None"),
    ({"path": ""}, ConfigError, "empty"),
    ({"path": 3}, TypeError, "path"),
])
def test_bad_parameters(kw, err, match):
    with pytest.raises(err, match=match):
        EvaluationCache(**kw)
    assert issubclass(ConfigError, ValueError)


def test_lock_timeout_is_a_clear_error(tmp_path):
    EvaluationCache(tmp_path).close()
    blocker = sqlite3.connect(tmp_path / "evaluations.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with EvaluationCache(tmp_path, timeout=0.05) as c:
            assert c.get(b"k") is None  # readers are never blocked in WAL mode
            with pytest.raises(CacheError, match="locked by another process for more than the timeout of 0.05 s"):
                c.put(b"k", 1.0)
            blocker.execute("ROLLBACK")
            c.put(b"k", 1.0)
            blocker.execute("BEGIN IMMEDIATE")
            for _ in range(2500):  # hits whose batched writes find the lock taken are kept, not raised
                assert c.get(b"k") is not None
            with pytest.raises(CacheError, match="locked"):
                c.flush()
            blocker.execute("ROLLBACK")
            c.flush()
            assert c.peek(b"k").hits == 2500
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
    with EvaluationCache(tmp_path) as c:
        assert c.peek(b"k").hits == 2500
