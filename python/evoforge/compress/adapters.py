"""Model adapters: one view of a Hugging Face causal LM's decoder blocks, sub-blocks and linear layers.

A compression search needs, for every supported architecture, the same handful of things: the
decoder blocks in order, each block's attention and MLP sub-blocks (to drop them), the linear
layers inside the blocks with their weights in one convention (to prune or quantise them), and a
way to rerun the model from block ``i`` on cached hidden states (to recompute only what a change
affects). :func:`adapt` returns a :class:`ModelAdapter` that gives these.

Symbols: B = batch, T = sequence length, H = hidden size, V = vocabulary size,
N = number of decoder blocks.

Supported (by class, or a subclass of one):

* Llama architecture: ``LlamaForCausalLM`` (also SmolLM2, TinyLlama, stories260k),
  ``MistralForCausalLM``, ``Qwen2ForCausalLM``: separate ``q/k/v/o`` and ``gate/up/down`` projections,
  7 ``nn.Linear`` per block.
* ``Phi3ForCausalLM``: fused ``qkv_proj`` and ``gate_up_proj``; each is one :class:`LayerRef` of kind
  ``"qkv"`` / ``"gate_up"`` whose ``parts`` give the row slices of the logical projections
  (``linear_layers(split_groups=True)`` returns the parts themselves, sharing a ``group``). 4 per block.
* ``GPT2LMHeadModel``: ``Conv1D`` layers store ``[in, out]``; the adapter shows and takes weights in
  the ``nn.Linear`` convention ``[out, in]`` (``y = x W^T + b``). ``c_attn`` is a fused ``"qkv"`` group;
  ``c_fc`` is ``"up"``, the MLP's ``c_proj`` ``"down"``. 4 per block.

Every supported block is sequential and pre-norm: ``h = h + attn(attn_norm(h))``, then
``h = h + mlp(mlp_norm(h))`` (:class:`SubBlock`). Dropping a sub-block makes its branch return zeros,
so the block computes ``h + 0``; the sub-block's own computation is skipped (its norm still runs).

The lm_head and the embeddings are not in :meth:`ModelAdapter.linear_layers` (a compression search
leaves them dense). ``transformers`` is never imported by this module; models are recognised by
class name.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from ..errors import UnsupportedModelError
from ..hashing import Hasher
from .architectures import _SPECS, SUPPORTED_ARCHITECTURES, BlockContext, LayerRef, SubBlock, _get, _Spec

__all__ = [
    "SUB_BLOCK_KINDS",
    "SUPPORTED_ARCHITECTURES",
    "BlockContext",
    "LayerRef",
    "ModelAdapter",
    "SubBlock",
    "UnsupportedModelError",
    "adapt",
]

SUB_BLOCK_KINDS = ("attn", "mlp")

# Config keys that do not change what the model computes, or that change between a model built in
# memory and the same model saved and reloaded; left out of the fingerprint.
_CONFIG_IGNORED = frozenset({
    "transformers_version", "architectures", "torch_dtype", "dtype", "use_cache", "attn_implementation",
    "output_attentions", "output_hidden_states", "return_dict", "torchscript", "name_or_path",
})
_FINGERPRINT_VERSION = "evoforge.compress.adapters.fingerprint/1"


class _Captured(Exception):
    def __init__(self, args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.args_, self.kwargs_ = args, kwargs


_MISSING = object()


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _skip_attn(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    return torch.zeros_like(_hidden_arg(args, kwargs)), None


def _skip_mlp(*args: Any, **kwargs: Any) -> torch.Tensor:
    return torch.zeros_like(_hidden_arg(args, kwargs))


# ---- the adapter --------------------------------------------------------------------------------


class ModelAdapter:
    """A supported causal LM seen as embeddings, N pre-norm blocks, a final norm and an lm_head.

    Make one with :func:`adapt`. It holds the model (not a copy): changes through it
    (:meth:`LayerRef.set_weight`, :meth:`dropped`) change the model.

    Attributes
    ----------
    model : nn.Module
        The model given to :func:`adapt`.
    architecture : str
        The supported class it was recognised as (e.g. ``"LlamaForCausalLM"``).
    blocks : tuple of nn.Module
        The decoder blocks, in order; ``n_blocks`` = N.
    embed, final_norm, lm_head : nn.Module
        Token embedding, the norm after the last block, the output projection.
    """

    def __init__(self, model: nn.Module, architecture: str, spec: _Spec) -> None:
        self.model = model
        self.architecture = architecture
        self.config = model.config
        self._spec = spec
        self._base = _get(model, spec.base)
        self.blocks: tuple[nn.Module, ...] = tuple(_get(self._base, spec.blocks))
        self.embed: nn.Module = _get(self._base, spec.embed)
        self.final_norm: nn.Module = _get(self._base, spec.final_norm)
        self.lm_head: nn.Module = model.lm_head
        self._layers = self._find_layers()

    # -- structure --

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def _check_block(self, i: Any, *, allow_end: bool = False) -> int:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"block index must be an int, got {type(i).__name__}")
        hi = self.n_blocks if allow_end else self.n_blocks - 1
        if not 0 <= i <= hi:
            raise ValueError(f"block index must lie in [0, {hi}], got {i}")
        return i

    def sub_block(self, i: int, kind: str) -> SubBlock:
        """Block ``i``'s ``"attn"`` or ``"mlp"`` branch with its pre-norm."""
        i = self._check_block(i)
        if kind not in SUB_BLOCK_KINDS:
            raise ValueError(f"sub-block kind must be one of {SUB_BLOCK_KINDS}, got {kind!r}")
        blk = self.blocks[i]
        s = self._spec
        if kind == "attn":
            return SubBlock(i, kind, _get(blk, s.attn), _get(blk, s.attn_norm))
        return SubBlock(i, kind, _get(blk, s.mlp), _get(blk, s.mlp_norm))

    def attention(self, i: int) -> nn.Module:
        """Block ``i``'s attention module."""
        return self.sub_block(i, "attn").module

    def mlp(self, i: int) -> nn.Module:
        """Block ``i``'s MLP module."""
        return self.sub_block(i, "mlp").module

    def _find_layers(self) -> list[LayerRef]:
        names = {id(m): n for n, m in self.model.named_modules()}
        refs: list[LayerRef] = []
        for b, blk in enumerate(self.blocks):
            for path, kind, split in self._spec.linears:
                mod = _get(blk, path)
                tname = type(mod).__name__
                if self._spec.conv1d:
                    if tname != "Conv1D" or getattr(mod, "weight", None) is None or mod.weight.ndim != 2:
                        raise UnsupportedModelError(
                            f"{self.architecture}: {names[id(mod)]} is a {tname}, expected transformers' Conv1D")
                    in_f, out_f = mod.weight.shape
                elif isinstance(mod, nn.Linear) and mod.weight.ndim == 2:
                    out_f, in_f = mod.weight.shape
                else:
                    raise UnsupportedModelError(
                        f"{self.architecture}: {names[id(mod)]} is a {tname}, expected torch.nn.Linear "
                        "(quantised or otherwise replaced layers are not supported)")
                parts: tuple[tuple[str, slice], ...] = ()
                if split is not None:
                    sizes = split(self.config, int(out_f))
                    if sum(n for _, n in sizes) != out_f:
                        raise UnsupportedModelError(
                            f"{self.architecture}: fused {names[id(mod)]} has {out_f} output rows, but the "
                            f"config implies {[(k, n) for k, n in sizes]}")
                    start = 0
                    for pk, n in sizes:
                        parts += ((pk, slice(start, start + n)),)
                        start += n
                name = names[id(mod)]
                refs.append(LayerRef(name=name, block=b, kind=kind, group=name if parts else None,
                                     in_features=int(in_f), out_features=int(out_f), parts=parts, module=mod,
                                     transposed=self._spec.conv1d))
        return refs

    def linear_layers(self, split_groups: bool = False) -> list[LayerRef]:
        """The linear layers inside the blocks, in block order and forward order within a block.

        Parameters
        ----------
        split_groups : bool
            False (default): one :class:`LayerRef` per module, a fused one of kind ``"qkv"`` or
            ``"gate_up"`` (its ``parts`` give the row slices). True: a fused layer is replaced by
            its logical projections (kinds ``q k v`` / ``gate up``), each a row slice of the shared
            weight with ``group`` set to the fused module's name.
        """
        if not split_groups:
            return list(self._layers)
        out: list[LayerRef] = []
        for ref in self._layers:
            if not ref.parts:
                out.append(ref)
                continue
            for pk, rows in ref.parts:
                out.append(dataclasses.replace(ref, name=f"{ref.name}[{pk}]", kind=pk, parts=(),
                                               out_features=rows.stop - rows.start, rows=rows))
        return out

    # -- dropping sub-blocks --

    @contextlib.contextmanager
    def dropped(self, drops: Iterable[tuple[int, str]]) -> Iterator[ModelAdapter]:
        """Context in which the given sub-blocks are bypassed (their residual branch adds zero).

        ``drops`` holds ``(block, "attn" | "mlp")`` pairs (repeats are allowed). The modules'
        ``forward`` is replaced by a stub returning zeros of the input's shape, so the dropped
        sub-block costs nothing; everything is restored on exit, also after an exception.
        Applies to every forward of the model inside the context (``model(...)``,
        :meth:`forward_from`, :meth:`block_inputs`). Not thread-safe.
        """
        pairs = []
        for item in drops:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError(f"each drop must be a (block, kind) pair, got {item!r}")
            pairs.append(self.sub_block(*item))
        saved: list[tuple[nn.Module, Any]] = []
        try:
            for sb in pairs:
                m = sb.module
                if any(m is s for s, _ in saved):
                    continue
                saved.append((m, m.__dict__.get("forward", _MISSING)))
                m.forward = _skip_attn if sb.kind == "attn" else _skip_mlp
            yield self
        finally:
            for m, prev in reversed(saved):
                if prev is _MISSING:
                    del m.forward
                else:
                    m.forward = prev

    def drop(self, i: int, kind: str) -> contextlib.AbstractContextManager[ModelAdapter]:
        """``dropped([(i, kind)])``: bypass one sub-block inside a ``with``."""
        return self.dropped([(i, kind)])

    # -- running the model in pieces --

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The model's logits, shape (B, T, V), float as the model; no cache."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def block_context(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> BlockContext:
        """The non-hidden inputs the model gives its blocks, for hidden states shaped like ``hidden`` (B, T, H).

        Obtained by starting the model's own forward on ``inputs_embeds=hidden`` and stopping it at
        the first block, so masks, positions and rotary tables are exactly the model's (for this
        transformers version). ``attention_mask`` (B, T) as for the model, or None.
        """
        if not isinstance(hidden, torch.Tensor) or hidden.ndim != 3:
            raise ValueError(f"hidden must be a tensor of shape (B, T, H), got {getattr(hidden, 'shape', hidden)!r}")

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            raise _Captured(args, kwargs)

        handle = self.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self._base(inputs_embeds=hidden, attention_mask=attention_mask, use_cache=False)
        except _Captured as c:
            args, kwargs = c.args_, dict(c.kwargs_)
        else:  # pragma: no cover - the hook always fires
            raise RuntimeError("the first block was not called")
        finally:
            handle.remove()
        if args:
            args = args[1:]
        else:
            kwargs.pop("hidden_states")
        return BlockContext(args=tuple(args), kwargs=kwargs, shape=(int(hidden.shape[0]), int(hidden.shape[1])))

    def block_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                     ) -> list[torch.Tensor]:
        """Hidden states entering each block: N + 1 tensors of shape (B, T, H).

        Entry ``i < N`` is the input of block ``i``; entry N is the last block's output (before
        the final norm). ``forward_from(i, block_inputs(x)[i])`` gives the model's logits.
        """
        seen: list[torch.Tensor] = []

        def pre(module: nn.Module, args: tuple, kwargs: dict) -> None:
            seen.append(_hidden_arg(args, kwargs))

        def post(module: nn.Module, args: tuple, output: Any) -> None:
            seen.append(output[0] if isinstance(output, tuple) else output)

        handles = [b.register_forward_pre_hook(pre, with_kwargs=True) for b in self.blocks]
        handles.append(self.blocks[-1].register_forward_hook(post))
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        return seen

    def forward_from(self, i: int, hidden: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                     context: BlockContext | None = None) -> torch.Tensor:
        """Logits (B, T, V) from running blocks ``i .. N-1`` on ``hidden`` (the input of block ``i``).

        ``i`` lies in [0, N]; ``i = N`` applies only the final norm and the lm_head. ``context``
        (from :meth:`block_context`) is reused when given, else built from ``hidden`` and
        ``attention_mask``. Gradients follow the caller's mode (wrap in ``torch.inference_mode()``
        for evaluation). Dropped sub-blocks (:meth:`dropped`) stay dropped.
        """
        i = self._check_block(i, allow_end=True)
        if not isinstance(hidden, torch.Tensor) or hidden.ndim != 3:
            raise ValueError(f"hidden must be a tensor of shape (B, T, H), got {getattr(hidden, 'shape', hidden)!r}")
        if context is None:
            context = self.block_context(hidden, attention_mask) if i < self.n_blocks else None
        elif context.shape != (hidden.shape[0], hidden.shape[1]):
            raise ValueError(f"context was built for (B, T) = {context.shape}, hidden has {tuple(hidden.shape[:2])}")
        h = hidden
        for blk in self.blocks[i:]:
            out = blk(h, *context.args, **context.kwargs)
            h = out[0] if isinstance(out, tuple) else out
        return self.lm_head(self.final_norm(h))

    # -- identity --

    def fingerprint(self) -> str:
        """A 32-hex-digit digest of the architecture, the config and every weight (exact bits).

        The same for the model saved and reloaded (config keys that only record the transformers
        version, the dtype, the source path or runtime switches are left out; the dtype still counts
        through the tensors); changes when any parameter or persistent buffer changes. Uses
        :class:`evoforge.hashing.Hasher`.
        """
        h = Hasher().update(_FINGERPRINT_VERSION).update(self.architecture)
        h.update(_plain(_config_dict(self.config)))
        state = self.model.state_dict()
        for name in sorted(state):
            h.update(name).update(state[name].detach())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (f"ModelAdapter({self.architecture}, n_blocks={self.n_blocks}, "
                f"linear_layers={len(self._layers)})")


def _config_dict(cfg: Any) -> dict:
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    return {k: v for k, v in d.items() if k not in _CONFIG_IGNORED and not str(k).startswith("_")}


def _plain(obj: Any) -> Any:
    """Config values as what Hasher takes: dicts, lists, str, int, float, bool, None (others as str)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def adapt(model: nn.Module) -> ModelAdapter:
    """A :class:`ModelAdapter` for a supported causal LM, chosen by its class (or a base class).

    Parameters
    ----------
    model : nn.Module
        A ``LlamaForCausalLM``, ``MistralForCausalLM``, ``Qwen2ForCausalLM``, ``Phi3ForCausalLM`` or
        ``GPT2LMHeadModel`` (any dtype and device), with its original linear layers.

    Raises
    ------
    UnsupportedModelError
        Another class (the message names it and lists the supported ones), or a block whose layers
        are not the expected ``nn.Linear`` / ``Conv1D`` (e.g. already quantised). A subclass of
        :class:`evoforge.errors.ConfigError` (a ``ValueError``).
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(
            f"adapt() needs a torch.nn.Module causal LM, got {type(model).__module__}.{type(model).__name__}; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    for cls in type(model).__mro__:
        spec = _SPECS.get(cls.__name__)
        if spec is not None:
            return ModelAdapter(model, cls.__name__, spec)
    raise UnsupportedModelError(
        f"unsupported model {type(model).__name__} (model_type "
        f"{getattr(getattr(model, 'config', None), 'model_type', None)!r}); "
        f"supported architectures: {', '.join(SUPPORTED_ARCHITECTURES)}")
