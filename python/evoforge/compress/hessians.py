"""Calibration statistics of the linear layers: :func:`collect_hessians` runs the dense model once
over the calibration tokens and accumulates, per distinct layer input, ``H = 2 X^T X / n`` (float64,
shape (C, C)) and the squared column norms ``sum_t x_tj^2`` (float64, shape (C,)). Layers that read
the same tensor (q/k/v, gate/up) share one entry. SparseGPT and GPTQ databases need H, Wanda and
the OWL baseline the column norms (:mod:`evoforge.compress.build`, :mod:`evoforge.compress.baselines`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch

from .._checks import INT_MAX, check_int
from .adapters import LayerRef, ModelAdapter
from .architectures import layer_name
from .fitness import _compute_dtype
from .tokens import check_tokens, vocab_size

__all__ = ["LayerStats", "collect_hessians"]

# Layers that read the same input inside a block, by kind (fused layers are one module already).
_SHARED_INPUT = {"q": "attn_in", "k": "attn_in", "v": "attn_in", "qkv": "attn_in",
                 "gate": "mlp_in", "up": "mlp_in", "gate_up": "mlp_in"}


@dataclasses.dataclass
class LayerStats:
    """Input statistics of the linear layers from :func:`collect_hessians`.

    Attributes
    ----------
    hessians : dict of input key -> torch.Tensor, float64, (C, C), CPU
        ``2 X^T X / n`` over the n calibration positions.
    sq_norms : dict of input key -> torch.Tensor, float64, (C,), CPU
        ``sum_t x_tj^2``, the squared L2 norm of each input column (Wanda's ``||X_j||^2``).
    input_of : dict of layer name -> input key
        Layers that share their input share a key.
    n_samples : int
        Token positions seen (n).
    """

    hessians: dict[str, torch.Tensor]
    sq_norms: dict[str, torch.Tensor]
    input_of: dict[str, str]
    n_samples: int

    def hessian(self, layer: str | LayerRef) -> torch.Tensor:
        return self.hessians[self.input_of[layer_name(layer)]]

    def sq_norm(self, layer: str | LayerRef) -> torch.Tensor:
        return self.sq_norms[self.input_of[layer_name(layer)]]


def _pos_int(x: Any, name: str, lo: int = 1) -> int:
    return check_int(x, name, lo, INT_MAX)


def collect_hessians(adapter: ModelAdapter, tokens: torch.Tensor, *, batch_size: int = 8,
                     compute_dtype: str | None = None) -> LayerStats:
    """Run the dense model once over ``tokens`` and collect each linear layer's input statistics.

    Forward pre-hooks on every module of ``adapter.linear_layers()`` accumulate ``X^T X`` and
    ``sum x^2`` (float32 per forward, summed in float64) on the model's device, once per distinct input: layers that receive the
    same tensor in a block (q/k/v, gate/up) share it; a layer whose input turns out to be another
    tensor gets its own entry. Runs under ``torch.inference_mode()``; the model is not changed.

    Parameters
    ----------
    adapter : ModelAdapter
    tokens : torch.LongTensor, shape (n, length)
    batch_size : int >= 1
        Sequences per forward.
    compute_dtype : None, ``"bfloat16"`` or ``"float16"``
        Run the forward under ``torch.autocast`` in that dtype (bfloat16: about 2.5x faster on CPUs
        with AMX or AVX-512 BF16); the layer inputs are then rounded to it, the Gram matrices stay
        float32 GEMMs summed in float64. None: the model's dtype.
    """
    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"adapter must be a ModelAdapter (evoforge.compress.adapt(model)), got {type(adapter).__name__}")
    tokens = check_tokens(tokens, "tokens", vocab=vocab_size(adapter.model))
    batch_size = _pos_int(batch_size, "batch_size")
    layers = adapter.linear_layers()
    dev = next(adapter.model.parameters()).device
    input_of: dict[str, str] = {}
    for r in layers:
        shared = _SHARED_INPUT.get(r.kind)
        input_of[r.name] = f"block{r.block}.{shared}" if shared else r.name
    xtx: dict[str, torch.Tensor] = {}
    sq: dict[str, torch.Tensor] = {}
    seen: dict[str, torch.Tensor] = {}  # input key -> the tensor accumulated in this forward
    count = [0]

    def hook_for(ref: LayerRef):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            x = args[0]
            key = input_of[ref.name]
            prev = seen.get(key)
            if prev is not None:
                if prev is x:
                    return
                # not the same tensor after all: this layer gets its own statistics
                key = input_of[ref.name] = ref.name
                if key in seen:
                    return
            x2 = x.detach().reshape(-1, x.shape[-1]).float()
            if key not in xtx:
                C = x2.shape[1]
                xtx[key] = torch.zeros((C, C), dtype=torch.float64, device=x2.device)
                sq[key] = torch.zeros(C, dtype=torch.float64, device=x2.device)
            # one float32 GEMM per forward (a float64 one costs more than the forward itself),
            # summed over forwards in float64; never in bfloat16, even under the forward's autocast
            with torch.autocast(device_type=x2.device.type, enabled=False):
                xtx[key].add_(x2.T @ x2)
            sq[key].add_((x2 * x2).sum(0))
            seen[key] = x
        return hook

    handles = [r.module.register_forward_pre_hook(hook_for(r)) for r in layers]
    # the backbone alone: the LM head's logits (B x T x vocab) are a fifth of the FLOPs and unused
    backbone = adapter.model.base_model
    cdt = _compute_dtype(compute_dtype, next(adapter.model.parameters()).dtype)
    autocast = contextlib.nullcontext() if cdt is None else torch.autocast(device_type=dev.type, dtype=cdt)
    try:
        with torch.inference_mode(), autocast:
            for b0 in range(0, tokens.shape[0], batch_size):
                ids = tokens[b0:b0 + batch_size].to(dev)
                seen.clear()
                backbone(input_ids=ids, use_cache=False)
                count[0] += ids.numel()
    finally:
        seen.clear()
        for h in handles:
            h.remove()
    n = count[0]
    missing = [r.name for r in layers if input_of[r.name] not in xtx]
    if missing:
        raise RuntimeError(f"no input reached {missing[:3]} during the forward pass")
    hessians = {k: (v * (2.0 / n)).cpu() for k, v in xtx.items()}
    return LayerStats(hessians=hessians, sq_norms={k: v.cpu() for k, v in sq.items()},
                      input_of=input_of, n_samples=n)
