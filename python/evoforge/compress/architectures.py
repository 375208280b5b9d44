"""What the supported architectures look like: where each keeps its blocks, sub-blocks and linear
layers (:data:`SUPPORTED_ARCHITECTURES`), and the views :class:`~evoforge.compress.adapters.ModelAdapter`
hands out: :class:`LayerRef` (one linear layer, or one projection of a fused layer),
:class:`SubBlock` (a residual branch) and :class:`BlockContext` (what a block takes besides the hidden
states). ``transformers`` is never imported; models are recognised by class name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["SUPPORTED_ARCHITECTURES", "BlockContext", "LayerRef", "SubBlock"]


# ---- architecture specs -------------------------------------------------------------------------


def _head_dim(cfg: Any) -> int:
    hd = getattr(cfg, "head_dim", None)
    return int(hd) if hd else int(cfg.hidden_size) // int(cfg.num_attention_heads)


def _phi3_qkv(cfg: Any, out: int) -> tuple[tuple[str, int], ...]:
    hd = _head_dim(cfg)
    kv = int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    return (("q", int(cfg.num_attention_heads) * hd), ("k", kv * hd), ("v", kv * hd))


def _halves(names: tuple[str, str]) -> Callable[[Any, int], tuple[tuple[str, int], ...]]:
    return lambda cfg, out: ((names[0], out // 2), (names[1], out // 2))


def _thirds(cfg: Any, out: int) -> tuple[tuple[str, int], ...]:
    return (("q", out // 3), ("k", out // 3), ("v", out // 3))


@dataclasses.dataclass(frozen=True)
class _Spec:
    base: str  # the decoder stack, from the top model
    blocks: str  # the ModuleList of blocks, from the base
    embed: str  # from the base
    final_norm: str  # from the base
    attn: str  # from a block
    mlp: str
    attn_norm: str
    mlp_norm: str
    # (path from the block, kind, None or a function (config, out_features) -> ((part kind, rows), ...))
    linears: tuple[tuple[str, str, Callable[[Any, int], tuple[tuple[str, int], ...]] | None], ...]
    conv1d: bool = False


_LLAMA = _Spec(
    base="model", blocks="layers", embed="embed_tokens", final_norm="norm",
    attn="self_attn", mlp="mlp", attn_norm="input_layernorm", mlp_norm="post_attention_layernorm",
    linears=(("self_attn.q_proj", "q", None), ("self_attn.k_proj", "k", None), ("self_attn.v_proj", "v", None),
             ("self_attn.o_proj", "o", None), ("mlp.gate_proj", "gate", None), ("mlp.up_proj", "up", None),
             ("mlp.down_proj", "down", None)),
)
_PHI3 = dataclasses.replace(
    _LLAMA,
    linears=(("self_attn.qkv_proj", "qkv", _phi3_qkv), ("self_attn.o_proj", "o", None),
             ("mlp.gate_up_proj", "gate_up", _halves(("gate", "up"))), ("mlp.down_proj", "down", None)),
)
_GPT2 = _Spec(
    base="transformer", blocks="h", embed="wte", final_norm="ln_f",
    attn="attn", mlp="mlp", attn_norm="ln_1", mlp_norm="ln_2",
    linears=(("attn.c_attn", "qkv", _thirds), ("attn.c_proj", "o", None), ("mlp.c_fc", "up", None),
             ("mlp.c_proj", "down", None)),
    conv1d=True,
)

_SPECS: dict[str, _Spec] = {
    "LlamaForCausalLM": _LLAMA,
    "MistralForCausalLM": _LLAMA,
    "Qwen2ForCausalLM": _LLAMA,
    "Phi3ForCausalLM": _PHI3,
    "GPT2LMHeadModel": _GPT2,
}
SUPPORTED_ARCHITECTURES = tuple(_SPECS)


def _get(root: nn.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


# ---- layers and sub-blocks ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class LayerRef:
    """One linear layer inside a decoder block, or one logical projection of a fused layer.

    Attributes
    ----------
    name : str
        The module's qualified name in the model (``"model.layers.3.self_attn.q_proj"``); a part of
        a fused layer appends its kind in brackets (``"model.layers.3.self_attn.qkv_proj[k]"``).
    block : int
        Index of the decoder block, in [0, N).
    kind : str
        ``"q" "k" "v" "o" "gate" "up" "down"``, or ``"qkv"`` / ``"gate_up"`` for a fused layer.
    group : str or None
        For a fused layer and each of its parts: the fused module's name (one search unit); None
        for an ordinary layer.
    in_features, out_features : int
        The ``[out, in]`` shape of :meth:`weight`.
    parts : tuple of (kind, slice)
        For a fused layer, the rows of :meth:`weight` that each logical projection owns, in order;
        they tile ``[0, out_features)`` exactly. Empty otherwise.
    module : nn.Module
        The ``nn.Linear`` or ``Conv1D`` holding the weight.
    rows : slice or None
        For a part, its rows in the fused ``[out, in]`` weight; None for a whole layer.
    transposed : bool
        True when the module stores ``[in, out]`` (GPT-2's ``Conv1D``).
    """

    name: str
    block: int
    kind: str
    group: str | None
    in_features: int
    out_features: int
    parts: tuple[tuple[str, slice], ...]
    module: nn.Module = dataclasses.field(repr=False)
    rows: slice | None = None
    transposed: bool = False

    @property
    def numel(self) -> int:
        """Number of weights (``out_features * in_features``); biases are not counted."""
        return self.in_features * self.out_features

    def sub_block_index(self, n_blocks: int) -> int:
        """The sub-block holding this layer, numbered attention 0..N-1 then MLP N..2N-1."""
        return self.block + (0 if self.kind in ("q", "k", "v", "o", "qkv") else n_blocks)

    def weight(self) -> torch.Tensor:
        """The weight, shape ``(out_features, in_features)``, the module's dtype and device.

        A detached **view** of the parameter (not contiguous for ``Conv1D``): read it, copy it, but
        change the model only through :meth:`set_weight`.
        """
        W = self.module.weight.detach()
        if self.transposed:
            W = W.t()
        return W if self.rows is None else W[self.rows]

    def set_weight(self, W: torch.Tensor) -> None:
        """Copy ``W`` (shape ``(out_features, in_features)``, the module's dtype and device) into the model.

        In place, under ``torch.no_grad()``; writes only this layer's rows of a fused weight.

        Raises
        ------
        TypeError
            ``W`` is not a tensor, or its dtype differs from the parameter's (no silent cast).
        ValueError
            Wrong shape, or another device.
        """
        if not isinstance(W, torch.Tensor):
            raise TypeError(f"W must be a torch.Tensor, got {type(W).__name__}")
        p = self.module.weight
        want = (self.out_features, self.in_features)
        if tuple(W.shape) != want:
            raise ValueError(f"W for {self.name} must have shape {list(want)} ([out, in]), got {list(W.shape)}")
        if W.dtype != p.dtype:
            raise TypeError(f"W for {self.name} must have dtype {p.dtype}, got {W.dtype}")
        if W.device != p.device:
            raise ValueError(f"W for {self.name} must be on {p.device}, got {W.device}")
        rows = slice(None) if self.rows is None else self.rows
        with torch.no_grad():
            if self.transposed:
                p[:, rows].copy_(W.t())
            else:
                p[rows].copy_(W)


@dataclasses.dataclass(frozen=True, eq=False)
class SubBlock:
    """A residual branch of a pre-norm block: ``h = h + module(norm(h))``.

    ``kind`` is ``"attn"`` or ``"mlp"``; ``module`` returns a tuple ``(out, weights)`` for attention
    and a tensor for the MLP (the transformers >= 4.48 conventions).
    """

    block: int
    kind: str
    module: nn.Module = dataclasses.field(repr=False)
    norm: nn.Module = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, eq=False)
class BlockContext:
    """What the model passes its blocks besides the hidden states (mask, positions, rotary tables).

    Built by :meth:`ModelAdapter.block_context` for one input shape; reuse it for every call of
    :meth:`ModelAdapter.forward_from` on hidden states of that shape.
    """

    args: tuple
    kwargs: dict
    shape: tuple[int, int]  # (B, T)


def layer_name(layer: Any) -> str:
    """A layer's name: ``layer.name`` for a :class:`LayerRef`, else ``str(layer)``."""
    return layer.name if isinstance(layer, LayerRef) else str(layer)
