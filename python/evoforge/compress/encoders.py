"""Encoders (the BERT family) for sub-network search: an adapter with the same view of blocks and
linear layers as :class:`~evoforge.compress.adapters.ModelAdapter`, the pooling that turns token
states into a sentence embedding, and a fitness on those embeddings.

A BERT block is post-norm: ``h = LN(h + o(attn(q, k, v)))``, then ``h = LN(h + down(act(up(h))))``;
its linear layers get the kinds ``q k v o up down`` (``attention.self.query/key/value``,
``attention.output.dense``, ``intermediate.dense``, ``output.dense``).

Pooling (how the sentence-transformers models this family ships with embed a sentence): ``mean``
over the tokens, ``cls`` (the first token's state) or ``max`` over the tokens; ``find_pooling``
reads it from the model directory's ``modules.json`` and its Pooling module's ``config.json``.

:class:`EmbeddingFitness` scores per-layer levels (a :class:`~evoforge.compress.fitness.LevelProvider`
as the KL fitness takes) by the mean cosine distance, ``1 - cos``, between the candidate's and the
full model's pooled embeddings of the calibration sequences.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, UnsupportedModelError
from ..hashing import Hasher
from .adapters import _config_dict, _plain
from .architectures import LayerRef

__all__ = ["ENCODER_ARCHITECTURES", "POOLINGS", "EmbeddingFitness", "EncoderAdapter", "adapt_encoder",
           "find_pooling", "is_encoder", "pool"]

ENCODER_ARCHITECTURES = ("BertModel",)
POOLINGS = ("mean", "cls", "max")
_LINEARS = (("attention.self.query", "q"), ("attention.self.key", "k"), ("attention.self.value", "v"),
            ("attention.output.dense", "o"), ("intermediate.dense", "up"), ("output.dense", "down"))


def _architecture(model: Any) -> str | None:
    for cls in type(model).__mro__:
        if cls.__name__ in ENCODER_ARCHITECTURES:
            return cls.__name__
    return None


def is_encoder(model: Any) -> bool:
    """Whether ``model`` is a supported encoder (a ``BertModel`` or a subclass)."""
    return isinstance(model, nn.Module) and _architecture(model) is not None


class EncoderAdapter:
    """A BERT-family encoder seen as N blocks of linear layers (the :class:`ModelAdapter` view that
    sub-network search uses: ``model``, ``architecture``, ``config``, ``n_blocks``,
    :meth:`linear_layers`, :meth:`fingerprint`)."""

    def __init__(self, model: nn.Module, architecture: str) -> None:
        self.model, self.architecture, self.config = model, architecture, model.config
        names = {id(m): n for n, m in model.named_modules()}
        self.blocks = tuple(model.encoder.layer)
        self._layers: list[LayerRef] = []
        for b, blk in enumerate(self.blocks):
            for path, kind in _LINEARS:
                mod = blk.get_submodule(path)
                if not isinstance(mod, nn.Linear):
                    raise UnsupportedModelError(f"{architecture}: {names[id(mod)]} is a {type(mod).__name__}, "
                                                "expected torch.nn.Linear")
                out_f, in_f = mod.weight.shape
                self._layers.append(LayerRef(name=names[id(mod)], block=b, kind=kind, group=None, in_features=int(in_f),
                                             out_features=int(out_f), parts=(), module=mod))

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def linear_layers(self, split_groups: bool = False) -> list[LayerRef]:
        """The blocks' linear layers, in block order and forward order within a block."""
        return list(self._layers)

    def fingerprint(self) -> str:
        """A 32-hex-digit digest of the architecture, the config and every weight (exact bits)."""
        h = Hasher().update("evoforge.compress.encoders.fingerprint/1").update(self.architecture)
        h.update(_plain(_config_dict(self.config)))
        state = self.model.state_dict()
        for name in sorted(state):
            h.update(name).update(state[name].detach())
        return h.hexdigest()


def adapt_encoder(model: nn.Module) -> EncoderAdapter:
    """The :class:`EncoderAdapter` of a supported encoder; UnsupportedModelError otherwise."""
    arch = _architecture(model) if isinstance(model, nn.Module) else None
    if arch is None:
        raise UnsupportedModelError(f"not a supported encoder: {type(model).__name__} (supported: "
                                    f"{', '.join(ENCODER_ARCHITECTURES)})")
    return EncoderAdapter(model, arch)


def find_pooling(model_or_dir: Any) -> str | None:
    """The pooling a sentence-transformers directory declares (``modules.json`` -> its Pooling
    module's ``config.json``), for a directory or a model loaded from one; None when none is found."""
    d = model_or_dir
    if isinstance(d, nn.Module):
        d = getattr(getattr(d, "config", None), "_name_or_path", None) or getattr(d, "name_or_path", None)
    if not d or not (Path(d) / "modules.json").is_file():
        return None
    try:
        modules = json.loads((Path(d) / "modules.json").read_text())
        for m in modules:
            if str(m.get("type", "")).endswith("Pooling"):
                cfg = json.loads((Path(d) / m.get("path", "") / "config.json").read_text())
                for key, name in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                                  ("pooling_mode_max_tokens", "max")):
                    if cfg.get(key):
                        return name
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return None


def pool(states: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence embeddings float32 [B, H] of token states [B, T, H] (every token real: no padding)."""
    s = states.float()
    if pooling == "mean":
        return s.mean(dim=1)
    if pooling == "cls":
        return s[:, 0]
    if pooling == "max":
        return s.amax(dim=1)
    raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")


class EmbeddingFitness:
    """Evaluator: mean cosine distance ``1 - cos(e_full, e_candidate)`` over the sentences of
    ``tokens`` (int64 [S, T]) per genome of per-layer levels [B, L] -> float64 [B].

    Levels are weights of ``provider`` (``weight(i, level)`` as the KL fitness takes them), swapped
    into the model in place for the layers whose level changes and restored after each call."""

    def __init__(self, adapter: EncoderAdapter, provider: Any, tokens: torch.Tensor, *, pooling: str,
                 batch_size: int = 8) -> None:
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.adapter, self.provider, self.pooling = adapter, provider, pooling
        self.layers = adapter.linear_layers()
        self.tokens = tokens
        self.batch_size = int(batch_size)
        self._dense = [r.weight().detach().clone() for r in self.layers]
        self._applied = np.zeros(len(self.layers), dtype=np.int64) - 1  # -1: dense
        self.teacher = self._embed()
        self.seconds = 0.0

    @torch.no_grad()
    def _embed(self) -> torch.Tensor:
        dev = next(self.adapter.model.parameters()).device
        out = []
        for s in range(0, len(self.tokens), self.batch_size):
            ids = self.tokens[s:s + self.batch_size].to(dev)
            states = self.adapter.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            out.append(pool(states, self.pooling))
        return torch.cat(out)

    def _apply(self, levels: np.ndarray) -> None:
        for i in np.flatnonzero(levels != self._applied):
            lvl = int(levels[i])
            W = self._dense[i] if lvl < 0 else self.provider.weight(int(i), lvl)
            self.layers[i].set_weight(W.to(self._dense[i].dtype))
            self._applied[i] = lvl

    def evaluate(self, genomes: Any, batch: Any = None) -> np.ndarray:
        t0 = time.perf_counter()
        g = np.asarray(genomes, dtype=np.int64)
        g = g[None] if g.ndim == 1 else g
        out = np.empty(len(g))
        try:
            for b, levels in enumerate(g):
                self._apply(levels)
                e = self._embed()
                out[b] = float((1.0 - torch.nn.functional.cosine_similarity(e, self.teacher, dim=1)).mean())
        finally:
            self._apply(np.full(len(self.layers), -1))
            self.seconds += time.perf_counter() - t0
        return out
