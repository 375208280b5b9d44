import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import evoforge  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
STORIES = SHARED_DATA / "stories260k" / "hf"


def load_stories():
    """The real tiny Llama (stories260k) in eval mode, or a skip saying where it was looked for."""
    if not (STORIES / "config.json").exists():
        pytest.skip(f"stories260k not found at {STORIES} (shared data absent)")
    import transformers

    return transformers.LlamaForCausalLM.from_pretrained(STORIES).eval()


@pytest.fixture(scope="module")
def stories():
    """stories260k for one test module (tests may change its weights), torch on one thread (the
    compression tests compare runs, and two cores are shared with evoforge's own threads)."""
    import torch

    torch.set_num_threads(1)
    return load_stories()


def pytest_collection_modifyitems(config, items):
    if evoforge.has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and evoforge built with CUDA (evoforge.has_cuda() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def start_and_kill9(cmd: list[str], run_dir: Path, history_lines: int, env: dict, timeout: float = 120) -> None:
    """Run ``cmd`` (a CLI run writing ``run_dir/history.jsonl``) and kill -9 it once the history has
    ``history_lines`` lines; fails if it finished before that."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    hist = run_dir / "history.jsonl"
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if hist.is_file() and len(hist.read_text().splitlines()) >= history_lines:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
