"""The native thread count: bounds, bad values, and thread creation failing under a resource limit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import evoforge
from evoforge import pareto


@pytest.fixture
def restore_threads():
    yield
    evoforge.set_num_threads(0)


@pytest.mark.parametrize("n", [1_000_000, 2**40])
def test_set_num_threads_rejects_absurd_counts(n, restore_threads):
    with pytest.raises(ValueError, match="at most 1024"):
        evoforge.set_num_threads(n)


@pytest.mark.parametrize("n", [2.5, "4", None, True])
def test_set_num_threads_rejects_non_integers(n, restore_threads):
    with pytest.raises(TypeError, match="set_num_threads"):
        evoforge.set_num_threads(n)


def test_set_num_threads_bounds(restore_threads):
    evoforge.set_num_threads(1024)
    assert evoforge.get_num_threads() == 1024
    evoforge.set_num_threads(-3)  # <= 0: back to the default
    assert 1 <= evoforge.get_num_threads() <= 1024


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("value", ["100000", "0", "-2", "abc", "4x"])
def test_bad_env_thread_count_is_a_python_error(value):
    p = _run("""
        import numpy as np, evoforge
        try:
            evoforge.pareto.nondominated_rank(np.random.rand(10, 3))
        except ValueError as e:
            print("ValueError:", e)
        """, {"EVOFORGE_NUM_THREADS": value})
    assert p.returncode == 0, p.stderr
    assert "EVOFORGE_NUM_THREADS must be an integer in [1, 1024]" in p.stdout


def test_thread_creation_failure_falls_back_to_fewer_threads():
    # Under an address-space limit that leaves no room for 1024 thread stacks, thread creation
    # fails; the kernels used to abort the process ("terminate called without an active exception").
    p = _run("""
        import re, resource, numpy as np, evoforge
        from evoforge import pareto
        rng = np.random.default_rng(0)
        F = rng.random((40000, 3))
        ranks = np.repeat(np.arange(2000), 20).astype(np.int32)
        evoforge.set_num_threads(1)
        ref_cd, ref_rank = pareto.crowding_distance(F, ranks), pareto.nondominated_rank(F)
        vm = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (64 << 20), resource.getrlimit(resource.RLIMIT_AS)[1]))
        evoforge.set_num_threads(1024)
        same = (np.array_equal(pareto.crowding_distance(F, ranks), ref_cd)
                and np.array_equal(pareto.nondominated_rank(F), ref_rank))
        print("same" if same else "different")
        """)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "same"


def test_native_messages_name_the_function_not_a_source_path():
    from evoforge._native import core

    with pytest.raises(ValueError) as e:  # the kernel itself, below the wrapper's own check
        core.crowding_distance_f64(np.random.rand(3, 2), np.array([0, -1, 0], dtype=np.int32))
    assert str(e.value).endswith("[crowding_distance_cpu]") and ".cpp" not in str(e.value)


# ---- the persistent pool behind parallel_for (cpp/thread_pool.cpp) --------------------------------


def _split(n: int, threads: int, min_chunk: int) -> list[tuple[int, int, int]]:
    """The documented split of parallel_for: at most `threads` chunks of at least min_chunk items."""
    workers = max(1, min(max(1, min(threads, 1024)), max(1, n // max(1, min_chunk))))
    return [(n * w // workers, n * (w + 1) // workers, w) for w in range(workers)] if n > 0 else []


@pytest.mark.parametrize("n,threads,min_chunk", [(0, 4, 1), (1, 8, 1), (10, 3, 1), (1000, 2, 1), (1000, 7, 100),
                                                  (5, 1024, 1), (100, 2, 60), (3000, 64, 1)])
def test_pool_runs_the_documented_split(n, threads, min_chunk):
    from evoforge._native import core

    chunks, nested, _ = core.thread_pool_probe(n, threads, min_chunk)
    assert [tuple(c) for c in chunks] == _split(n, threads, min_chunk)
    assert all(not x for x in nested)


def test_pool_nested_calls_run_serially_with_the_same_split():
    from evoforge._native import core

    chunks, nested, _ = core.thread_pool_probe(400, 4, 1, nested_threads=3, sleep_us=200)
    assert [tuple(c) for c in chunks] == _split(400, 4, 1)
    for (b, e, _), inner in zip(chunks, nested):
        assert [tuple(c) for c in inner] == [(b + x, b + y, w) for x, y, w in _split(e - b, 3, 1)]


@pytest.mark.parametrize("fail", [0, 1, 3])
def test_pool_propagates_a_chunks_exception_and_stays_usable(fail):
    from evoforge._native import core

    with pytest.raises(ValueError, match=f"probe chunk {fail} failed"):
        core.thread_pool_probe(100, 4, 1, fail=fail, sleep_us=100)
    chunks, _, _ = core.thread_pool_probe(100, 4, 1)
    assert [tuple(c) for c in chunks] == _split(100, 4, 1)


def test_pool_serves_concurrent_python_threads():
    from concurrent.futures import ThreadPoolExecutor

    from evoforge._native import core

    cases = [(97 + 13 * i, 1 + i % 5, 1 + i % 3) for i in range(48)]
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda c: core.thread_pool_probe(*c, nested_threads=2, sleep_us=50), cases))
    for (n, t, mc), (chunks, nested, _) in zip(cases, got):
        assert [tuple(c) for c in chunks] == _split(n, t, mc)
        assert all(len(x) == len(_split(e - b, 2, 1)) for (b, e, _), x in zip(chunks, nested))


def _layer_outputs(rng: np.random.Generator) -> list[np.ndarray]:
    """Outputs of the layer kernels (quantised, sparse float16, sparse + int4) and a pareto kernel."""
    import torch

    from evoforge.layers import pack_codes, pack_sparse, quant_matmul, sparse_matmul

    N, K = 1500, 320
    x = rng.standard_normal((3, K)).astype(np.float32)
    codes = rng.integers(0, 16, (N, K), dtype=np.uint8)
    scales = (rng.random((N, K // 64)) * 0.1 + 0.01).astype(np.float16)
    W = rng.standard_normal((N, K)).astype(np.float32) * (rng.random((N, K)) > 0.6)
    sp16 = pack_sparse(torch.from_numpy(W), values_dtype="float16")
    spq = pack_sparse(torch.from_numpy(W), bits=4, group_size=64)
    return [quant_matmul(x, pack_codes(codes, 4), scales, None, 4, 64),
            sparse_matmul(x[:1], sp16, K), sparse_matmul(x, spq, K, bits=4, group_size=64),
            pareto.nondominated_rank(rng.random((3000, 3)))]


@pytest.mark.parametrize("threads", [2, 3, 8, 64])
def test_kernels_do_not_depend_on_the_thread_count(threads, restore_threads):
    evoforge.set_num_threads(1)
    ref = _layer_outputs(np.random.default_rng(5))
    evoforge.set_num_threads(threads)
    for _ in range(3):  # back-to-back calls reuse the spinning workers
        for a, b in zip(ref, _layer_outputs(np.random.default_rng(5))):
            assert np.array_equal(a, b)


def test_kernels_from_concurrent_python_threads(restore_threads):
    from concurrent.futures import ThreadPoolExecutor

    evoforge.set_num_threads(1)
    refs = [_layer_outputs(np.random.default_rng(s)) for s in range(6)]
    evoforge.set_num_threads(2)
    with ThreadPoolExecutor(6) as ex:
        got = list(ex.map(lambda s: _layer_outputs(np.random.default_rng(s % 6)), range(18)))
    for s, outs in enumerate(got):
        for a, b in zip(refs[s % 6], outs):
            assert np.array_equal(a, b)


def _child_probe(q) -> None:
    from evoforge._native import core

    q.put([tuple(c) for c in core.thread_pool_probe(1000, 4, 1, sleep_us=100)[0]])


def test_pool_works_in_a_forked_child():
    import multiprocessing as mp

    from evoforge._native import core

    core.thread_pool_probe(1000, 4, 1, sleep_us=100)  # the parent's workers exist now
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_probe, args=(q,))
    p.start()
    got = q.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0 and got == _split(1000, 4, 1)
