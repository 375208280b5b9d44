"""The sub-network space of a pretrained causal LM: per block, how many key-value groups of attention
heads and how many MLP neurons it keeps (0: the sub-block is dropped), the most important first.

A pretrained transformer is a super-network once its heads and neurons are ordered by importance
on calibration data (Minitron's width pruning, searched per block): a genome names one concrete
sub-network, a slice of the model, evaluated without retraining.

Genome (int32 [2N], N blocks): ``a[0..N-1]`` kept key-value groups per block (0 .. G; for
grouped-query attention a group is one key/value head and the ``H/G`` query heads that share it),
then ``m[0..N-1]`` the index of the MLP width in ``widths`` (shares of the I neurons; share 0:
dropped).

Importance (:func:`importance`), from one pass of the dense model over calibration tokens:
a head's is ``||X_h W_o[:, h]^T||_F``, the size of its contribution to the attention output summed
over tokens (X_h: its slice of the output projection's input); a group's the sum of its heads';
a neuron's ``||x_n|| * ||W_down[:, n]||``, the same for the MLP (exact: a neuron's contribution is
rank one).

Evaluation by masking: a genome's sub-network computes exactly what the full model computes with
the columns of the output projections (attention ``o``, MLP ``down``) that belong to removed heads
and neurons set to zero, so :class:`SubnetSpace` is a :class:`~evoforge.compress.fitness.LevelProvider`
over the model's linear layers (levels of ``o``: kept groups 0 .. G; of ``down``: width index; the
other layers one level, dense) and the KL fitness of compression runs it unchanged, prefix reuse
included. :mod:`evoforge.compress.subnet_model` cuts the real smaller model.

Supported: the Llama family (separate q/k/v/o and gate/up/down), BERT encoders
(:mod:`evoforge.compress.encoders`) and GPT-2 (fused ``c_attn``, no grouped heads; every block keeps at least one head and the first non-zero MLP width, since
transformers' GPT-2 cannot run a block without them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, UnsupportedModelError
from .adapters import LayerRef, ModelAdapter
from .tokens import check_tokens, vocab_size

__all__ = ["SUBNET_ARCHITECTURES", "Importance", "SubnetSpace", "importance"]

SUBNET_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel", "BertModel")


def _heads(adapter: ModelAdapter) -> tuple[int, int, int]:
    """(query heads, key-value groups, head dim) of the model's attention."""
    cfg = adapter.config
    if adapter.architecture == "GPT2LMHeadModel":
        n = int(cfg.n_head)
        return n, n, int(cfg.n_embd) // n
    if adapter.architecture == "BertModel":
        n = int(cfg.num_attention_heads)
        return n, n, int(cfg.hidden_size) // n
    n = int(cfg.num_attention_heads)
    g = int(getattr(cfg, "num_key_value_heads", None) or n)
    hd = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // n)
    return n, g, hd


class Importance:
    """Per block: ``groups`` float64 [N, G] (key-value groups' importance) and ``neurons`` float64
    [N, I]; ``group_order`` / ``neuron_order`` int64, most important first (ties by index)."""

    def __init__(self, groups: Any, neurons: Any) -> None:
        try:
            self.groups = np.asarray(groups, dtype=np.float64)
            self.neurons = np.asarray(neurons, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"groups and neurons must be float arrays [N, G] and [N, I]: {exc}") from None
        if (self.groups.ndim != 2 or self.neurons.ndim != 2 or len(self.groups) != len(self.neurons)
                or 0 in self.groups.shape or 0 in self.neurons.shape):
            raise ConfigError(f"groups and neurons must be non-empty [N, G] and [N, I] with one N, got "
                              f"{self.groups.shape} and {self.neurons.shape}")
        if not (np.isfinite(self.groups).all() and np.isfinite(self.neurons).all()):
            raise ConfigError("importance must be finite")
        self.group_order = np.stack([np.lexsort((np.arange(r.size), -r)) for r in self.groups])
        self.neuron_order = np.stack([np.lexsort((np.arange(r.size), -r)) for r in self.neurons])

    def to_json(self) -> dict:
        return {"groups": self.groups.tolist(), "neurons": self.neurons.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> Importance:
        return cls(np.array(d["groups"]), np.array(d["neurons"]))


def _block_layers(adapter: ModelAdapter) -> list[dict[str, LayerRef]]:
    out: list[dict[str, LayerRef]] = [{} for _ in range(adapter.n_blocks)]
    for r in adapter.linear_layers():
        out[r.block][r.kind] = r
    return out


@torch.no_grad()
def importance(adapter: ModelAdapter, tokens: torch.Tensor, *, batch_size: int = 8) -> Importance:
    """Heads' and neurons' importance on ``tokens`` (int64 [S, T]) by the dense model (see the
    module docstring): hooks on the inputs of every block's ``o`` and ``down`` projections."""
    if adapter.architecture not in SUBNET_ARCHITECTURES:
        raise UnsupportedModelError(f"sub-network search supports {', '.join(SUBNET_ARCHITECTURES)}, not "
                                    f"{adapter.architecture}")
    tokens = check_tokens(tokens, "tokens", vocab=vocab_size(adapter.model)).contiguous()
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
    n_heads, G, hd = _heads(adapter)
    layers = _block_layers(adapter)
    N = adapter.n_blocks
    I = layers[0]["down"].in_features
    head_sq = np.zeros((N, n_heads))
    x_sq = np.zeros((N, I))
    Wo = [L["o"].weight().double() for L in layers]  # [H, n_heads * hd]
    hooks = []

    def on_o(b: int):
        def hook(module: Any, args: tuple) -> None:
            X = args[0].detach().double().reshape(-1, n_heads, hd)  # [tokens, heads, hd]
            W = Wo[b].to(X.device).reshape(-1, n_heads, hd)  # [H, heads, hd]
            contrib = torch.einsum("thd,ohd->hto", X, W)  # each head's output, [heads, tokens, H]
            head_sq[b] += contrib.pow(2).sum(dim=(1, 2)).cpu().numpy()
        return hook

    def on_down(b: int):
        def hook(module: Any, args: tuple) -> None:
            X = args[0].detach().double().reshape(-1, I)
            x_sq[b] += X.pow(2).sum(dim=0).cpu().numpy()
        return hook

    for b, L in enumerate(layers):
        hooks.append(L["o"].module.register_forward_pre_hook(on_o(b)))
        hooks.append(L["down"].module.register_forward_pre_hook(on_down(b)))
    model = adapter.model
    dev = next(model.parameters()).device
    kw = {} if adapter.architecture == "BertModel" else {"use_cache": False}
    try:
        for s in range(0, len(tokens), batch_size):
            model(input_ids=tokens[s:s + batch_size].to(dev), **kw)
    finally:
        for h in hooks:
            h.remove()
    col = np.stack([L["down"].weight().double().pow(2).sum(dim=0).cpu().numpy() for L in layers])  # [N, I]
    groups = np.sqrt(head_sq).reshape(N, G, n_heads // G).sum(axis=2)
    return Importance(groups, np.sqrt(x_sq * col))


class SubnetSpace:
    """The sub-networks of ``adapter``'s model (see the module docstring).

    ``widths``: MLP shares, sorted, distinct, in [0, 1], ending with 1 (0 lets the search drop an
    MLP); a share keeps ``round(share * I)`` neurons. ``attention``: whether the number of
    key-value groups is searched (False: every block keeps its attention whole).
    """

    def __init__(self, adapter: ModelAdapter | Any, imp: Importance, widths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                 *, attention: bool = True) -> None:
        if adapter.architecture not in SUBNET_ARCHITECTURES:
            raise UnsupportedModelError(f"sub-network search supports {', '.join(SUBNET_ARCHITECTURES)}, not "
                                        f"{adapter.architecture}")
        w = [float(x) for x in widths]
        if not w or w != sorted(set(w)) or w[-1] != 1.0 or w[0] < 0.0:
            raise ConfigError(f"widths must be distinct shares in [0, 1], ascending and ending with 1, got {list(widths)}")
        self.adapter = adapter
        self.imp = imp
        self.n_heads, self.G, self.head_dim = _heads(adapter)
        self.per_group = self.n_heads // self.G
        self.layers = adapter.linear_layers()
        self.n_layers = len(self.layers)
        self.blocks = _block_layers(adapter)
        self.N = adapter.n_blocks
        self.I = self.blocks[0]["down"].in_features
        self.hidden = self.blocks[0]["o"].out_features
        if imp.groups.shape != (self.N, self.G) or imp.neurons.shape != (self.N, self.I):
            raise ConfigError(f"importance of shape {imp.groups.shape} / {imp.neurons.shape} does not fit the model "
                              f"({self.N} blocks, {self.G} key-value groups, {self.I} MLP neurons)")
        self.widths = tuple(w)
        self.neurons = np.array([int(round(x * self.I)) for x in w], dtype=np.int64)
        if len(set(self.neurons.tolist())) != len(w):
            raise ConfigError(f"widths {w} keep {self.neurons.tolist()} of {self.I} neurons: two are equal")
        self.attention = bool(attention)
        # transformers' GPT-2 runs no block without heads, nor a Conv1D without inputs: keep one of each
        gpt2 = adapter.architecture == "GPT2LMHeadModel"
        self.min_groups = 1 if gpt2 else 0
        min_width = int(gpt2 and self.neurons[0] == 0)
        self.lower = np.array([self.min_groups if attention else self.G] * self.N + [min_width] * self.N,
                              dtype=np.int32)
        self.upper = np.array([self.G] * self.N + [len(w) - 1] * self.N, dtype=np.int32)
        self._level_of = {r.name: i for i, r in enumerate(self.layers)}
        # the masked layers' dense weights: the fitness swaps masked ones into the model in place
        self._dense = {i: r.weight().detach().clone() for i, r in enumerate(self.layers) if r.kind in ("o", "down")}
        self._params()

    # ---- genomes ------------------------------------------------------------------------------------

    def check(self, genomes: Any) -> np.ndarray:
        """genomes int [B, 2N] (or [2N]) within bounds -> int64 [B, 2N]; ConfigError naming the gene."""
        g = np.asarray(genomes)
        g = g[None] if g.ndim == 1 else g
        if g.ndim != 2 or g.shape[1] != 2 * self.N or not np.issubdtype(g.dtype, np.integer):
            raise ConfigError(f"genomes must be ints of shape [B, {2 * self.N}], got {g.dtype} {g.shape}")
        bad = (g < self.lower) | (g > self.upper)
        if bad.any():
            b, j = (int(v) for v in np.argwhere(bad)[0])
            what = f"attention groups of block {j}" if j < self.N else f"MLP width index of block {j - self.N}"
            raise ConfigError(f"genome {b}: {what} is {g[b, j]}, outside [{self.lower[j]}, {self.upper[j]}]")
        return g.astype(np.int64)

    def combined(self, genomes: Any) -> np.ndarray:
        """Per-linear-layer levels int64 [B, L] for the KL fitness: ``o`` the kept groups, ``down``
        the width index, every other layer 0 (dense)."""
        g = self.check(genomes)
        out = np.zeros((len(g), self.n_layers), dtype=np.int64)
        for b in range(self.N):
            out[:, self._level_of[self.blocks[b]["o"].name]] = g[:, b]
            out[:, self._level_of[self.blocks[b]["down"].name]] = g[:, self.N + b]
        return out

    def full(self) -> np.ndarray:
        """The whole model's genome int32 [2N]."""
        return self.upper.copy()

    def uniform(self) -> np.ndarray:
        """Every uniform sub-network (the same groups and width in every block) int32 [U, 2N], the
        dropped ones (no attention or no MLP anywhere) left out."""
        rows = [[a] * self.N + [m] * self.N for a in range(max(1, self.lower[0]), self.G + 1)
                for m in range(len(self.widths)) if self.neurons[m] > 0]
        return np.array(rows, dtype=np.int32)

    def genome(self, heads: Sequence[int], mlp: Sequence[int]) -> np.ndarray:
        """The genome int32 [2N] of the sub-network keeping ``heads[b]`` query heads (a multiple of
        the heads per key-value group) and ``mlp[b]`` neurons (one of :attr:`neurons`) in block b;
        ConfigError naming the block otherwise."""
        if len(heads) != self.N or len(mlp) != self.N:
            raise ConfigError(f"heads and mlp must give one number per block ({self.N}), got {len(heads)} and "
                              f"{len(mlp)}")
        g = np.empty(2 * self.N, dtype=np.int32)
        for b, (h, n) in enumerate(zip(heads, mlp)):
            if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or not 0 <= h <= self.n_heads:
                raise ConfigError(f"block {b}: {h!r} heads; the model has {self.n_heads} per block")
            if h % self.per_group or h // self.per_group < self.lower[b]:
                raise ConfigError(f"block {b}: {h} heads; keep a multiple of {self.per_group} (the query heads of one "
                                  f"key-value group), at least {self.lower[b] * self.per_group}")
            where = np.flatnonzero(self.neurons == n)
            if not where.size or where[0] < self.lower[self.N + b]:
                allowed = self.neurons[self.lower[self.N + b]:].tolist()
                raise ConfigError(f"block {b}: an MLP of {n!r} neurons; this space keeps one of {allowed}"
                                  + (" (0 drops the MLP: add width 0 to widths)" if n == 0 else ""))
            g[b], g[self.N + b] = h // self.per_group, where[0]
        return g

    def kept(self, genome: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(kept key-value groups per block, kept neurons per block), each int64 sorted ascending."""
        g = self.check(genome)[0]
        groups = [np.sort(self.imp.group_order[b][:g[b]]) for b in range(self.N)]
        neurons = [np.sort(self.imp.neuron_order[b][:self.neurons[g[self.N + b]]]) for b in range(self.N)]
        return groups, neurons

    def describe(self, genome: Any) -> dict:
        """``heads`` (query heads kept per block) and ``mlp`` (neurons kept per block)."""
        g = self.check(genome)[0]
        return {"heads": [int(a) * self.per_group for a in g[:self.N]],
                "mlp": [int(self.neurons[m]) for m in g[self.N:]]}

    # ---- the LevelProvider of the KL fitness --------------------------------------------------------

    def n_levels(self, i: int) -> int:
        kind = self.layers[i].kind
        return self.G + 1 if kind == "o" else len(self.widths) if kind == "down" else 1

    def weight(self, layer_index: int, level: int) -> torch.Tensor:
        """Layer ``layer_index``'s weight [out, in] with the columns of removed heads / neurons zeroed."""
        r = self.layers[layer_index]
        if not 0 <= level < self.n_levels(layer_index):
            raise IndexError(f"level {level} of layer {r.name} is outside [0, {self.n_levels(layer_index) - 1}]")
        W = self._dense[layer_index].clone() if layer_index in self._dense else r.weight().clone()
        if r.kind == "o":
            cols = self.imp.group_order[r.block][level:]
            span = self.per_group * self.head_dim
            idx = (cols[:, None] * span + np.arange(span)[None]).ravel()
        elif r.kind == "down":
            idx = self.imp.neuron_order[r.block][self.neurons[level]:]
        else:
            return W
        W[:, torch.as_tensor(idx, dtype=torch.long, device=W.device)] = 0
        return W

    # ---- parameters and shapes ----------------------------------------------------------------------

    def _params(self) -> None:
        """Parameters per kept group and per kept neuron of each block, and the rest of the model."""
        def size(r: LayerRef, rows: int | None = None, cols: int | None = None) -> int:
            bias = getattr(r.module, "bias", None)
            o = r.out_features if rows is None else rows
            i = r.in_features if cols is None else cols
            return o * i + (o if bias is not None and rows is not None else 0)

        span = self.per_group * self.head_dim
        L = self.blocks[0]  # every block of a supported model has the same shapes
        if "qkv" in L:  # GPT-2: q, k and v rows of one group each `span` (no grouped heads)
            attn = size(L["qkv"], rows=3 * span)
        else:
            attn = size(L["q"], rows=span) + size(L["k"], rows=self.head_dim) + size(L["v"], rows=self.head_dim)
        attn += L["o"].out_features * span
        mlp = sum(size(L[k], rows=1) for k in ("gate", "up") if k in L) + L["down"].out_features
        self.params_per_group, self.params_per_neuron = int(attn), int(mlp)
        total = sum(p.numel() for p in self.adapter.model.parameters())
        self.params_rest = int(total - self.N * (self.G * attn + self.I * mlp))
        self.params_full = int(total)

    def params(self, genomes: Any) -> np.ndarray:
        """Exact parameter counts int64 [B] of the sub-networks (embeddings, head and norms included;
        tied weights once)."""
        g = self.check(genomes)
        return (self.params_rest + self.params_per_group * g[:, :self.N].sum(axis=1)
                + self.params_per_neuron * self.neurons[g[:, self.N:]].sum(axis=1))

    def block_params(self) -> int:
        """The parameters the space can remove: every block's attention and MLP."""
        return self.params_full - self.params_rest

    def shapes(self, groups: int, neurons: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """([out, in] of the attention's linear layers at ``groups`` kept groups, of the MLP's at
        ``neurons`` kept neurons); an empty layer left out."""
        H, span = self.hidden, groups * self.per_group * self.head_dim
        kv = groups * self.head_dim
        L = self.blocks[0]
        attn = [(3 * span, H)] if "qkv" in L else [(span, H), (kv, H), (kv, H)]
        attn.append((H, span))
        mlp = [(neurons, H)] * sum(1 for k in ("gate", "up") if k in L) + [(H, neurons)]
        return ([s for s in attn if 0 not in s] if groups else []), ([s for s in mlp if 0 not in s] if neurons else [])
