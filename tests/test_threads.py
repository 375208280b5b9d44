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
