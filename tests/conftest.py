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
