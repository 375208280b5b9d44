"""The Ray backend against a real local Ray instance (2 CPUs): the in-process search result on the
toy search and on a tiny compression search (stories260k), an actor killed mid-generation (SIGKILL
of its pid from outside) or hung, a driver killed with SIGKILL that resumes without re-evaluating
what finished, and an unreachable address."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import test_evaluate as toy
from conftest import STORIES
from evoforge.cache import EvaluationCache
from evoforge.cli import main as cli_main
from evoforge.evaluate import RayBackend
from evoforge.search import Batch, OnePlusLambda


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance on the loopback address, in its own short temp dir (Ray's socket paths
    must stay short, and another instance on this machine must not be joined); shut down after."""
    tmp = tempfile.mkdtemp(prefix="evoray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=tmp,
             log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(toy)  # the workers cannot import tests/
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.cloudpickle.unregister_pickle_by_value(toy)
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def test_unreachable_address_fails_fast(capsys):
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"no Ray cluster answers at '127.0.0.1:{port}'.*ray start --head"):
        RayBackend(toy.Toy, address=f"127.0.0.1:{port}", connect_timeout=2.0)
    # The command line says so before it loads the model.
    argv = ["compress", "--model", "no-such-model", "--target", "0.5", "--backend", "ray", "--address",
            f"127.0.0.1:{port}", "--quiet"]
    assert cli_main(argv) == 2
    assert f"no Ray cluster answers at '127.0.0.1:{port}'" in capsys.readouterr().err
    argv[argv.index("ray")] = "process"
    assert cli_main(argv) == 2
    assert "--address needs --backend ray" in capsys.readouterr().err


def _kill_when_claimed(marker: Path, done: threading.Event) -> None:
    """Wait (bounded) for a worker to claim ``marker``, then SIGKILL the pid written there."""
    for _ in range(1200):
        text = marker.read_text() if marker.exists() else ""
        if text.endswith("\n"):
            os.kill(int(text), signal.SIGKILL)
            break
        if done.wait(0.05):
            break


def test_same_result_as_in_process_and_survives_a_killed_actor(cluster, tmp_path):
    ref, seen = toy.reference()
    log, marker = tmp_path / "log.jsonl", tmp_path / "marker"
    factory = functools.partial(toy.Toy, log=str(log), fault="hang", fault_gen=2, marker=str(marker))
    done = threading.Event()
    killer = threading.Thread(target=_kill_when_claimed, args=(marker, done))
    with RayBackend(factory, workers=2) as b:
        pids = b.pids()
        assert len(set(pids) | {os.getpid()}) == 3  # two actors, neither is the driver
        killer.start()
        try:
            result = toy.make_engine().run(b, generations=toy.GENERATIONS)
        finally:
            done.set()
            killer.join()
        assert toy.summary(result) == ref
        assert int(marker.read_text()) in pids  # an actor was killed in generation 2 ...
        assert b.stats["restarts"] == 1 and b.stats["redispatched"] >= 1  # ... replaced, its chunks redone
        assert len(set(b.pids()) - set(pids)) == 1
    # No evaluation lost or repeated: the candidates evaluated in-process, each once.
    assert Counter(toy.read_log(log)) == Counter(seen)


def test_hung_actor_times_out_and_is_replaced(cluster, tmp_path):
    ref, seen = toy.reference(0.5)
    log, marker = tmp_path / "log.jsonl", tmp_path / "marker"
    factory = functools.partial(toy.Toy, log=str(log), fault="hang", fault_gen=1, marker=str(marker))
    with RayBackend(factory, workers=2, timeout=3.0) as b:
        b.broadcast("set_offset", 0.5)  # replayed to the replacement actor
        assert toy.summary(toy.make_engine().run(b, generations=toy.GENERATIONS)) == ref
        assert marker.exists() and b.stats["restarts"] == b.stats["timeouts"] >= 1  # replaced after the timeout
    assert Counter(toy.read_log(log)) == Counter(seen)


def test_killed_driver_resumes_without_reevaluating(cluster, tmp_path):
    run_dir, log1, log2 = tmp_path / "run", tmp_path / "log1.jsonl", tmp_path / "log2.jsonl"
    script = textwrap.dedent(f"""
        import functools, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import ray
        import test_evaluate as toy
        from evoforge.evaluate import RayBackend
        ray.init(address={cluster!r}, log_to_driver=False)
        ray.cloudpickle.register_pickle_by_value(toy)
        with RayBackend(functools.partial(toy.Toy, log={str(log1)!r}, delay=0.1), workers=2) as b:
            toy.make_engine(run_dir={str(run_dir)!r}).run(b, generations=toy.GENERATIONS)
        print("finished")
    """)
    # The driver's output goes to a file, not a pipe: a full pipe would block it.
    with open(tmp_path / "driver.log", "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=out, stderr=subprocess.STDOUT)
        try:
            for _ in range(2400):  # until about a third of the evaluations finished (bounded wait)
                if len(toy.read_log(log1)) >= 24 or proc.poll() is not None:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    with EvaluationCache(run_dir) as cache:
        finished = set(cache.keys())
    assert finished and (run_dir / "checkpoint.pkl").is_file()

    engine = OnePlusLambda.resume(run_dir, progress=False)
    with RayBackend(functools.partial(toy.Toy, log=str(log2)), workers=2) as b:
        result = engine.run(b, generations=toy.GENERATIONS)
    ref, seen = toy.reference()
    assert toy.summary(result)[:2] == ref[:2] and toy.summary(result)[4] == ref[4]  # best, fitness, history
    redone = {engine.key(np.asarray(g, dtype=engine.parent.dtype), Batch(np.empty(0), f, s))
              for g, f, s in toy.read_log(log2)}
    assert redone and not redone & finished  # nothing cached before the kill was evaluated again
    assert set(toy.read_log(log1)) | set(toy.read_log(log2)) == set(seen)


@pytest.mark.skipif(not (STORIES / "config.json").exists(), reason=f"stories260k not found at {STORIES}")
@pytest.mark.parametrize("method", ["quant", "depth+quant"])
def test_compression_search_equals_in_process(cluster, tmp_path, method):
    import torch
    from conftest import load_stories
    from evoforge.compress import compress

    model = load_stories()
    g = torch.Generator().manual_seed(0)
    V = model.config.vocab_size
    kw = {"method": method, "target": 3, "db_method": "rtn", "bits": (2, 3, 4), "generations": 3, "offspring": 4,
          "seed": 0, "calibration": torch.randint(0, V, (4, 32), generator=g),
          "heldout": torch.randint(0, V, (2, 32), generator=g), "export_model": False}
    ref = compress(model, run_dir=tmp_path / "inproc", **kw)
    ray_res = compress(str(STORIES), run_dir=tmp_path / "ray", backend=functools.partial(RayBackend, workers=2),
                       **kw)
    assert ray_res.genome == ref.genome
    assert ray_res.kl_calib_search == ref.kl_calib_search and ray_res.evaluations == ref.evaluations
    assert [h["best_fitness"] for h in ray_res.history] == [h["best_fitness"] for h in ref.history]


def test_program_search_on_ray_matches_in_process(cluster):
    from evoforge.programs.run import search_programs, task_factory

    opts = {"n_tasks": 2, "n_train": 20, "n_valid": 20}
    kw = dict(generations=4, seed=5, population_size=30, batch_size=10, progress=False, task_options=opts)
    ref = search_programs("linear", **kw)
    with RayBackend(task_factory("linear", opts), address=cluster, workers=2) as backend:
        got = search_programs("linear", backend=backend, **kw)
    assert got.fitness == ref.fitness and got.best.key() == ref.best.key()
    assert got.report["evaluations"] == ref.report["evaluations"]
