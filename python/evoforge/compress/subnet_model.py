"""A sub-network cut out as a real smaller model, saved, and loaded back.

:func:`slice_model` copies the model and replaces, in every block, the attention's and the MLP's
linear layers by smaller ones holding only the kept heads' and neurons' rows and columns (a block
without heads keeps empty q/k/v/o layers: its attention adds the output bias, or nothing, and its
KV cache holds no heads; a dropped MLP likewise). transformers' Llama and GPT-2 attention infer the
number of heads from the projections' widths, so the cut model runs with transformers' own code,
KV cache and ``generate`` included.

A saved sub-network (:func:`save_subnet`) is a directory with ``model.safetensors``, the model's
``config.json`` and ``evoforge_subnet.json`` (the kept heads, key-value groups and neurons per
block); :func:`load_subnet` rebuilds it. When every block keeps the same numbers (and the
architecture can say so in its config: GPT-2 cannot shrink its heads), ``config.json`` says them
and ``transformers.AutoModelForCausalLM.from_pretrained`` loads the directory as well.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .adapters import adapt
from .encoders import adapt_encoder, is_encoder
from .subnet_space import Importance, SubnetSpace, _block_layers, _heads

__all__ = ["IMPORTANCE_FILE", "SUBNET_FILE", "export_subnet_point", "load_subnet", "save_subnet", "slice_model",
           "subnet_shapes"]

SUBNET_FILE = "evoforge_subnet.json"
IMPORTANCE_FILE = "importance.json"  # in a subnet run's directory
FORMAT = "evoforge.subnet/1"


def _conv1d() -> Any:
    from transformers.pytorch_utils import Conv1D

    return Conv1D


def _cut(mod: nn.Module, rows: Any = None, cols: Any = None) -> nn.Module:
    """A copy of a Linear / Conv1D layer keeping output ``rows`` or input ``cols`` (int64 index
    arrays, in the [out, in] convention); the bias follows the rows."""
    W = mod.weight.detach()
    conv = type(mod).__name__ == "Conv1D"
    Wl = W.t() if conv else W  # [out, in]
    b = None if getattr(mod, "bias", None) is None else mod.bias.detach()
    if rows is not None:
        idx = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=W.device)
        Wl, b = Wl[idx], None if b is None else b[idx]
    if cols is not None:
        Wl = Wl[:, torch.as_tensor(np.asarray(cols, dtype=np.int64), device=W.device)]
    out_f, in_f = Wl.shape
    with torch.device("meta"), warnings.catch_warnings():  # its parameters are replaced below
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        new = _conv1d()(int(out_f), int(in_f)) if conv else nn.Linear(int(in_f), int(out_f), bias=b is not None)
    if conv:
        new.weight = nn.Parameter(Wl.t().contiguous())
    else:
        new.weight = nn.Parameter(Wl.contiguous())
    if b is not None:
        new.bias = nn.Parameter(b.clone())
    return new


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, module)


def _adapt(model: nn.Module) -> Any:
    return adapt_encoder(model) if is_encoder(model) else adapt(model)


def _cut_block(model: nn.Module, L: dict, groups: np.ndarray, neurons: np.ndarray, heads: tuple[int, int, int],
               gpt2: bool) -> None:
    n_heads, G, hd = heads
    span = n_heads // G * hd
    q_rows = (groups[:, None] * span + np.arange(span)[None]).ravel()
    kv_rows = (groups[:, None] * hd + np.arange(hd)[None]).ravel()
    if gpt2:
        H = L["o"].out_features
        _set(model, L["qkv"].name, _cut(L["qkv"].module, rows=np.concatenate([q_rows, H + q_rows, 2 * H + q_rows])))
        attn = model.get_submodule(L["o"].name.rpartition(".")[0])
        attn.split_size = len(q_rows)
        attn.num_heads = len(q_rows) // hd
    else:
        for k, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows)):
            _set(model, L[k].name, _cut(L[k].module, rows=rows))
    _set(model, L["o"].name, _cut(L["o"].module, cols=q_rows))
    for k in ("gate", "up"):
        if k in L:
            _set(model, L[k].name, _cut(L[k].module, rows=neurons))
    _set(model, L["down"].name, _cut(L["down"].module, cols=neurons))


def slice_model(model: nn.Module, space: SubnetSpace, genome: Any) -> nn.Module:
    """A copy of ``model`` cut to the sub-network ``genome`` names in ``space`` (the model stays whole).
    It computes what the full model computes with the removed heads' and neurons' output columns
    zeroed (float rounding aside)."""
    groups, neurons = space.kept(genome)
    out = copy.deepcopy(model)
    a = _adapt(out)
    gpt2 = a.architecture == "GPT2LMHeadModel"
    for b, L in enumerate(_block_layers(a)):
        _cut_block(out, L, groups[b], neurons[b], _heads(a), gpt2)
    return out


def subnet_shapes(model: nn.Module) -> dict:
    """The kept heads, key-value groups and neurons per block of a cut (or whole) model, read from
    its layers' shapes."""
    a = _adapt(model)
    n_heads, G, hd = _heads(a)
    heads, groups, mlp = [], [], []
    for L in _block_layers(a):
        h = L["o"].in_features // hd
        heads.append(h)
        groups.append(h // (n_heads // G))
        mlp.append(L["down"].in_features)
    return {"format": FORMAT, "heads": heads, "kv_groups": groups, "mlp": mlp}


def _uniform_config(model: nn.Module, shapes: dict) -> dict | None:
    """The config.json that lets transformers build this sub-network itself, or None."""
    if len(set(shapes["heads"])) != 1 or len(set(shapes["mlp"])) != 1 or 0 in shapes["heads"] + shapes["mlp"]:
        return None
    cfg = model.config.to_dict()
    a = _adapt(model)
    if a.architecture in ("GPT2LMHeadModel", "BertModel"):
        heads, inner = ("n_head", "n_inner") if a.architecture == "GPT2LMHeadModel" else (
            "num_attention_heads", "intermediate_size")
        if shapes["heads"][0] != int(cfg[heads]):
            return None  # the head size is the hidden size / heads: fewer heads cannot be said
        cfg[inner] = shapes["mlp"][0]
        return cfg
    _, _, hd = _heads(a)
    cfg.update(num_attention_heads=shapes["heads"][0], num_key_value_heads=shapes["kv_groups"][0], head_dim=hd,
               intermediate_size=shapes["mlp"][0])
    return cfg


def save_subnet(model: nn.Module, out_dir: str | Path, *, tokenizer: Any = None, extra: dict | None = None) -> Path:
    """Save a cut model (:func:`slice_model`) to ``out_dir``; returns it. ``extra`` joins
    ``evoforge_subnet.json`` (e.g. the genome and objectives)."""
    from safetensors.torch import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shapes = subnet_shapes(model)
    cfg = _uniform_config(model, shapes)
    save_model(model, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg if cfg is not None else model.config.to_dict(), indent=1))
    pooler = {"pooler": getattr(model, "pooler", None) is not None} if is_encoder(model) else {}
    (out / SUBNET_FILE).write_text(json.dumps({**shapes, "transformers_loadable": cfg is not None, **pooler,
                                               **(extra or {})}, indent=1))
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def load_subnet(path: str | Path, *, dtype: torch.dtype | None = None) -> nn.Module:
    """The sub-network saved at ``path`` (:func:`save_subnet`), in eval mode."""
    import transformers
    from safetensors.torch import load_model

    p = Path(path)
    meta_file = p / SUBNET_FILE
    if not meta_file.is_file():
        raise ConfigError(f"{str(p)!r} holds no {SUBNET_FILE}: not a sub-network saved by evoforge")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{str(meta_file)!r} is not of format {FORMAT}")
    cfg = transformers.AutoConfig.from_pretrained(p)
    encoder = "pooler" in meta  # BERT: with or without its pooler, as saved
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        model = (transformers.AutoModel.from_config(cfg, add_pooling_layer=meta["pooler"]) if encoder
                 else transformers.AutoModelForCausalLM.from_config(cfg))
    a = _adapt(model)
    n_heads, G, hd = _heads(a)
    full = subnet_shapes(model)
    gpt2 = a.architecture == "GPT2LMHeadModel"
    per = n_heads // G
    for b, L in enumerate(_block_layers(a)):
        groups = np.arange(int(meta["kv_groups"][b]))
        if (meta["kv_groups"][b] > full["kv_groups"][b] or len(groups) * per != meta["heads"][b]
                or meta["mlp"][b] > full["mlp"][b]):
            raise ConfigError(f"{str(meta_file)!r}: block {b} keeps {meta['heads'][b]} heads in "
                              f"{meta['kv_groups'][b]} groups and {meta['mlp'][b]} neurons; the config has "
                              f"{full['heads'][b]} heads in {full['kv_groups'][b]} groups, {full['mlp'][b]} neurons")
        _cut_block(model, L, groups, np.arange(int(meta["mlp"][b])), (n_heads, G, hd), gpt2)
    from safetensors import safe_open

    with safe_open(str(p / "model.safetensors"), "pt") as f:  # the dtype it was saved in
        model.to(f.get_tensor(next(iter(f.keys()))).dtype)
    load_model(model, str(p / "model.safetensors"))
    return (model.to(dtype) if dtype is not None else model).eval()


def export_subnet_point(result: Any, i: int, out_dir: Path, *, model: Any = None, tokenizer: Any = None,
                        heal_steps: int = 0, heal_lr: float = 1e-4, seed: int = 0) -> Path:
    """Point ``i`` of a sub-network front (a FrontResult of ``--method subnet``) cut from ``model``
    (default: the model the result was computed on, or its run's ``model`` path) and saved to
    ``out_dir`` (:func:`save_subnet`, with the point's genome and objectives). ``heal_steps`` > 0
    first distils it against the full model (:func:`evoforge.compress.heal.heal`) on the run's
    calibration tokens and records the held-out KL before and after (``heal`` in the JSON)."""
    bound = result._bound
    if model is None and bound is not None:
        model = bound[0].model
    elif model is None:
        if not result.model:
            raise ConfigError("this front was computed on a model given as a module: pass model= (the full model)")
        from .models import load_model

        model, tok = load_model(result.model)
        tokenizer = tokenizer if tokenizer is not None else tok
    if bound is not None:
        space = bound[1]
    else:
        imp = Path(result.run_dir or "") / IMPORTANCE_FILE
        if not result.run_dir or not imp.is_file():
            raise ConfigError(f"the sub-network front keeps no {IMPORTANCE_FILE} (a run without a run directory): "
                              "export from the FrontResult the run returned")
        space = SubnetSpace(_adapt(model), Importance.from_json(json.loads(imp.read_text())), result.widths,
                            attention="heads" in result.space.split("+"))
    p = result.points[i]
    sub = slice_model(model, space, np.array(p["genome"]))
    extra = {"genome": p["genome"], "search": p["search"], "heldout": p["heldout"]}
    if heal_steps:
        from .heal import heal, kl_on

        tp = Path(result.run_dir or "") / "tokens.pt"
        if not result.run_dir or not tp.is_file():
            raise ConfigError("healing uses the run's calibration tokens (tokens.pt in its run directory): this "
                              "front has none")
        tokens = torch.load(tp)
        before = kl_on(sub, model, tokens["heldout"])
        h = heal(sub, model, tokens["calibration"], steps=int(heal_steps), lr=heal_lr, seed=seed)
        extra["heal"] = {**h, "heldout_kl_before": before, "heldout_kl_after": kl_on(sub, model, tokens["heldout"])}
    return save_subnet(sub, out_dir, tokenizer=tokenizer, extra=extra)
