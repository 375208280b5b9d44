"""The installed package: version, build facts, threads, the CLI and the benchmark entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import evoforge

REPO = Path(__file__).resolve().parents[1]


def test_version_matches_cmake_project():
    cmake = (REPO / "CMakeLists.txt").read_text()
    expected = re.search(r"project\([^)]*VERSION\s+([0-9.]+)", cmake).group(1)
    assert evoforge.__version__ == expected


def test_info_reports_build_and_runtime():
    info = evoforge.info()
    for key in ("version", "compiler", "cxx_flags", "num_threads", "cuda_compiled", "gpu_visible"):
        assert key in info
    assert "-O3" in info["cxx_flags"]
    assert info["num_threads"] >= 1
    assert evoforge.has_cuda() == (info["cuda_compiled"] and info["gpu_visible"])


def test_set_num_threads_roundtrip():
    try:
        evoforge.set_num_threads(3)
        assert evoforge.get_num_threads() == 3
    finally:
        evoforge.set_num_threads(0)
    assert evoforge.get_num_threads() >= 1


def test_cuda_tensor_without_cuda_raises_clearly(monkeypatch):
    from evoforge import _native
    from evoforge.errors import CudaUnavailableError

    monkeypatch.setattr(_native, "cuda", None)
    monkeypatch.setattr(_native, "cuda_import_error", "ImportError: test")
    try:
        _native.require_cuda()
    except CudaUnavailableError as exc:
        assert "without CUDA" in str(exc) and "EVOFORGE_CUDA=ON" in str(exc)
    else:
        raise AssertionError("require_cuda() did not raise")


def test_cli_info():
    out = subprocess.run([sys.executable, "-m", "evoforge.cli", "info"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["version"] == evoforge.__version__


def test_cli_bench_pareto_writes_json(tmp_path):
    out = tmp_path / "pareto.json"
    proc = subprocess.run(
        [sys.executable, "-m", "evoforge.cli", "bench", "pareto", "--sizes", "300", "--objectives", "2", "3",
         "--repeats", "1", "--out", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert "ratio" in proc.stdout
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 2 * 3  # objectives x point sets
    assert data["machine"]["cores"] >= 1
    assert all(r["evoforge_1t_ms"] > 0 for r in data["rows"])
