"""Whole models: apply a compression configuration as packed layers, save and load packed checkpoints.

:func:`apply` replaces the linear layers inside the decoder blocks (those of
:meth:`evoforge.compress.adapt(model).linear_layers() <evoforge.compress.adapters.ModelAdapter.linear_layers>`;
embeddings, norms and the LM head stay dense) by packed modules:

* sparsity only -> :class:`~evoforge.layers.SparseLinear` (``"unstructured"``, or ``"2:4"``);
* quantisation only -> :class:`~evoforge.layers.QuantLinear` (``from_codes`` with the database's
  codes and grid, or ``from_linear`` for a uniform spec);
* both -> ``SparseLinear`` with quantised kept values: the sparsity level's weight (zeros = the
  mask, SparseGPT's updated values kept) rounded to nearest on a grid of the quant level's
  bit-width and group size.

Configurations
--------------
* a uniform spec (no search needed), a dict with any of ``"sparsity"`` (fraction pruned per layer,
  smallest ``|w|`` of the layer), ``"pattern"`` (``"unstructured"`` or ``"2:4"``: keep the 2
  largest ``|w|`` of every 4), ``"bits"``, ``"group_size"`` (default 128; 0 = per row),
  ``"symmetric"`` (default True) and ``"values_dtype"`` (``"float32"`` / ``"float16"`` or the
  torch dtype, sparse float values); e.g. ``{"bits": 4, "group_size": 128}`` or ``{"sparsity": 0.5}``;
* a search result: :class:`evoforge.compress.pipeline.CompressionResult`, its ``to_json()`` dict,
  or the path of a run directory / its ``config.json``, with the layer database it was searched on
  (``database=``; default the result's ``db_path``, else ``<run_dir>/db``); a list of two results
  (one sparsity, one quant, each with its database: ``database=[db_s, db_q]``) gives sparse +
  quantised layers. A ``"depth+quant"`` result (one bit-width per sub-block, 0 = dropped) gives
  QuantLinear layers, and all-zero SparseLinear layers (no storage, no compute) for every linear
  layer of a dropped sub-block, which reproduces the exported model's zeroed output projections.

Quantised bit-widths 5, 6 and 7 (database ladders) are stored with 8-bit codes (same values).

Checkpoints: :func:`save` writes ``model.safetensors`` (every tensor of the state dict, packed
buffers included), ``evoforge_layers.json`` (format, version and each packed layer's class and
settings) and the Hugging Face config (and tokenizer, when given); :func:`load` rebuilds the model
from its config with transformers, swaps in the packed modules and loads the tensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .format import GROUP_SIZES
from .quant import QuantLinear
from .sparse import SparseLinear, prune_24, values_dtype_of

__all__ = ["apply", "load", "packed_layers", "save"]

FORMAT = "evoforge.packed_model"
FORMAT_VERSION = 1
LAYERS_FILE = "evoforge_layers.json"
WEIGHTS_FILE = "model.safetensors"
_SPEC_KEYS = {"sparsity", "pattern", "bits", "group_size", "symmetric", "values_dtype"}


def _store_bits(bits: int) -> int:
    """Bit-widths of the packed format: 5..7-bit codes are stored as 8-bit codes."""
    b = int(bits)
    if b not in (2, 3, 4, 5, 6, 7, 8):
        raise ConfigError(f"bits must lie in 2..8, got {bits}")
    return 8 if b > 4 and b != 8 else b


def _group_size(g: Any) -> int:
    g = 0 if g is None or int(g) in (-1, 0) else int(g)
    if g not in GROUP_SIZES:
        raise ConfigError(f"group_size must be one of {GROUP_SIZES[1:]} or 0 / -1 (per row) for the packed "
                          f"format, got {g}")
    return g


def _layer_refs(model: nn.Module) -> list:
    from ..compress.adapters import adapt

    return adapt(model).linear_layers()


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _bias(ref: Any) -> torch.Tensor | None:
    b = getattr(ref.module, "bias", None)
    return None if b is None else b.detach().float().cpu()


# ---- uniform specs --------------------------------------------------------------------------------


def _check_spec(spec: dict) -> dict:
    bad = set(spec) - _SPEC_KEYS
    if bad:
        raise ConfigError(f"unknown keys {sorted(bad)} in the spec; allowed: {sorted(_SPEC_KEYS)}")
    s = dict(spec)
    if not {"sparsity", "bits"} & set(s) and s.get("pattern") != "2:4":
        raise ConfigError("a spec needs 'sparsity' (or pattern '2:4') and/or 'bits'")
    pattern = s.setdefault("pattern", "unstructured")
    if pattern not in ("unstructured", "2:4"):
        raise ConfigError(f"pattern must be 'unstructured' or '2:4', got {pattern!r}")
    if pattern == "2:4":
        if s.setdefault("sparsity", 0.5) != 0.5:
            raise ConfigError(f"pattern '2:4' prunes exactly half; got sparsity {s['sparsity']}")
    elif "sparsity" in s and not 0.0 <= float(s["sparsity"]) < 1.0:
        raise ConfigError(f"sparsity must lie in [0, 1), got {s['sparsity']}")
    if "bits" in s:
        _store_bits(s["bits"])
    s["group_size"] = _group_size(s.get("group_size", 128))
    s["values_dtype"] = values_dtype_of(s.get("values_dtype", "float32"))
    return s


def _prune(W: torch.Tensor, sparsity: float, pattern: str) -> torch.Tensor:
    if pattern == "2:4":
        return prune_24(W)
    W = W.detach().float().cpu().clone()
    p = round(sparsity * W.numel())
    if p:
        W.view(-1)[W.abs().view(-1).argsort(stable=True)[:p]] = 0.0
    return W


def _apply_spec(model: nn.Module, s: dict) -> None:
    for ref in _layer_refs(model):
        W, b = ref.weight().float().cpu(), _bias(ref)
        if "sparsity" in s:
            Ws = _prune(W, float(s["sparsity"]), s["pattern"])
            bits = None if "bits" not in s else _store_bits(s["bits"])
            new = SparseLinear.from_dense(Ws, b, format=s["pattern"], bits=bits, group_size=s["group_size"],
                                          symmetric=bool(s.get("symmetric", True)),
                                          values_dtype=s["values_dtype"])
        else:
            lin = nn.Linear(ref.in_features, ref.out_features, bias=b is not None)
            with torch.no_grad():
                lin.weight.copy_(W)
                if b is not None:
                    lin.bias.copy_(b)
            new = QuantLinear.from_linear(lin, bits=_store_bits(s["bits"]), group_size=s["group_size"],
                                              symmetric=bool(s.get("symmetric", True)))
        _replace(model, ref.name, new)


# ---- search results -------------------------------------------------------------------------------


def _result_json(config: Any) -> dict:
    if isinstance(config, (str, os.PathLike)):
        p = Path(config)
        p = p / "config.json" if p.is_dir() else p
        if not p.is_file():
            raise FileNotFoundError(f"compression config not found: {str(p)!r}")
        try:
            out = json.loads(p.read_text())
        except ValueError as exc:  # not JSON, or not text at all (UnicodeDecodeError)
            raise ConfigError(f"config {str(p)!r} is not a JSON compression config: {exc}") from None
        if not isinstance(out, dict):
            raise ConfigError(f"config {str(p)!r} holds a JSON {type(out).__name__}, not a compression result")
        out["_config_dir"] = str(p.parent)  # finds <run_dir>/db when db_path was relative elsewhere
        return out
    if hasattr(config, "to_json"):
        return config.to_json()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a spec dict, a search result (CompressionResult or its JSON dict), a "
                        f"run directory or config.json path, or a list of results; got {type(config).__name__}")
    return dict(config)


def _open_db(result: dict, database: Any) -> Any:
    from ..compress.database import LayerDatabase

    if isinstance(database, LayerDatabase):
        return database
    if database is None:
        candidates = [Path(d) for d in (result.get("db_path"),) if d]
        candidates += [Path(d) / "db" for d in (result.get("_config_dir"), result.get("run_dir")) if d]
        if not candidates:
            raise ConfigError("a search result without db_path or run_dir needs database= (the layer database "
                              "it was searched on)")
        database = next((c for c in candidates if (c / "manifest.json").is_file()), candidates[0])
    return LayerDatabase.open(database)


def _depth_quant_levels(model: nn.Module, result: dict) -> dict[str, dict[str, int]]:
    """Per layer ``{"quant": bits}``, or ``{"dropped": 1}`` for the layers of a dropped sub-block.

    ``result["bits"]`` holds one bit-width per sub-block (attention of blocks 0..N-1, then MLP), 0 =
    dropped (:mod:`evoforge.compress.joint`).
    """
    refs = _layer_refs(model)
    units = list(result["bits"])
    n = max(r.block for r in refs) + 1
    if len(units) != 2 * n:
        raise ConfigError(f"a depth+quant result has {len(units)} sub-block bit-widths, the model {2 * n} sub-blocks")
    out = {}
    for r in refs:
        b = int(units[r.sub_block_index(n)])
        out[r.name] = {"dropped": 1} if b == 0 else {"quant": b}
    return out


def _quant_from_db(db: Any, name: str, bits: int, bias: torch.Tensor | None) -> nn.Module:
    """QuantLinear of a quant database level: its codes and grid as stored (5..7 bits as 8-bit codes)."""
    from safetensors import safe_open

    entry = next(e for e in db.manifest["layers"] if e["name"] == name)
    with safe_open(str(db.path / entry["file"]), framework="pt", device="cpu") as f:
        q, s, z = f.get_tensor(f"q.{bits}"), f.get_tensor(f"scales.{bits}"), f.get_tensor(f"zeros.{bits}")
        g_idx = f.get_tensor(f"g_idx.{bits}")
    # zeros kept even for a symmetric ladder: the stored grid is reproduced exactly whatever its zero
    return QuantLinear.from_codes(q, s, z, _store_bits(bits), int(db.params["group_size"]), bias, g_idx=g_idx)


def _apply_results(model: nn.Module, results: list[dict], dbs: list, values_dtype: torch.dtype) -> None:
    by_method: dict[str, tuple[dict, Any]] = {}
    for r, db in zip(results, dbs):
        if r.get("method") not in ("sparsity", "quant", "depth+quant"):
            raise ConfigError(f"apply handles sparsity, quant and depth+quant results, got method {r.get('method')!r}")
        kind = "quant" if r["method"] == "depth+quant" else r["method"]
        if kind in by_method:
            raise ConfigError(f"two {kind} results given; pass at most one sparsity and one quant result")
        if db.kind != kind:
            raise ConfigError(f"the database {str(db.path)!r} holds {db.kind} levels, the result is {r['method']}")
        by_method[kind] = (r, db)
    refs = {ref.name: ref for ref in _layer_refs(model)}
    levels: dict[str, dict[str, int]] = {}
    if by_method.get("quant", ({},))[0].get("method") == "depth+quant":
        levels = _depth_quant_levels(model, by_method["quant"][0])
    for method, (r, db) in by_method.items():
        if r["method"] == "depth+quant":
            continue
        if list(r["layers"]) != list(refs):
            missing = sorted(set(r["layers"]) ^ set(refs))[:3]
            raise ConfigError(f"the {method} result's layers do not match the model's (e.g. {missing})")
        for name, lv in zip(r["layers"], r["levels"]):
            levels.setdefault(name, {})[method] = int(lv)
    for name, ref in refs.items():
        lv, b = levels[name], _bias(ref)
        if "dropped" in lv:  # a dropped sub-block: all-zero layers (nothing stored, nothing computed)
            zero = torch.zeros(ref.out_features, ref.in_features)
            new: nn.Module = SparseLinear.from_dense(zero, None if b is None else torch.zeros_like(b))
        elif "sparsity" in lv:
            W = by_method["sparsity"][1].weight(name, lv["sparsity"]).float()
            kw: dict[str, Any] = {}
            if "quant" in lv:
                qdb = by_method["quant"][1]
                kw = {"bits": _store_bits(lv["quant"]), "group_size": _group_size(qdb.params["group_size"]),
                      "symmetric": bool(qdb.params.get("symmetric", False))}
            new = SparseLinear.from_dense(W, b, format="unstructured", values_dtype=values_dtype, **kw)
        else:
            new = _quant_from_db(by_method["quant"][1], name, lv["quant"], b)
        _replace(model, name, new)


def apply(model: nn.Module, config: Any, database: Any = None, *,
          values_dtype: str | torch.dtype = "float32") -> nn.Module:
    """Replace ``model``'s block linear layers by packed modules, in place; returns the model.

    Parameters
    ----------
    model : a causal LM supported by :func:`evoforge.compress.adapt`, dense float weights, on the CPU.
    config : a uniform spec dict, a search result (CompressionResult, its JSON dict, a run directory
        or its config.json), or a list of one sparsity and one quant result (see the module docstring).
    database : the layer database path (or LayerDatabase) of a search result; a list for a list.
    values_dtype : ``"float32"`` (exact) or ``"float16"`` (half the bytes), or the torch dtype, for the
        kept values of sparse layers without quantisation, when ``config`` is a search result (a spec
        has its own).
    """
    values_dtype = values_dtype_of(values_dtype)
    if isinstance(config, dict) and "method" not in config:
        _apply_spec(model, _check_spec(config))
        return model
    configs = list(config) if isinstance(config, (list, tuple)) else [config]
    dbs_in = list(database) if isinstance(database, (list, tuple)) else [database] * len(configs)
    if len(dbs_in) != len(configs):
        raise ConfigError(f"{len(configs)} results but {len(dbs_in)} databases")
    results = [_result_json(c) for c in configs]
    _apply_results(model, results, [_open_db(r, d) for r, d in zip(results, dbs_in)], values_dtype)
    return model


# ---- checkpoints ----------------------------------------------------------------------------------


def packed_layers(model: nn.Module) -> dict[str, dict]:
    """Name -> settings of every packed module in ``model`` (what :func:`save` records)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, SparseLinear):
            vd = getattr(m, "values", None)
            out[name] = {"class": "SparseLinear", "in_features": m.in_features, "out_features": m.out_features,
                         "bias": m.bias is not None, "format": m.format, "bits": m.bits,
                         "group_size": m.group_size, "symmetric": m.symmetric,
                         "values_dtype": None if vd is None else str(vd.dtype).removeprefix("torch.")}
        elif isinstance(m, QuantLinear):
            out[name] = {"class": "QuantLinear", "in_features": m.in_features, "out_features": m.out_features,
                         "bias": getattr(m, "bias", None) is not None, "bits": int(m.bits),
                         "group_size": int(m.group_size), "symmetric": bool(m.symmetric)}
    return out


def save(model: nn.Module, out_dir: str | os.PathLike, *, tokenizer: Any = None,
         dtype: torch.dtype | None = None) -> Path:
    """Write a packed checkpoint of ``model`` (after :func:`apply`) to ``out_dir``; returns the path.

    ``dtype`` (e.g. torch.float16) stores the dense floating tensors (embeddings, norms, head) in
    that dtype; :func:`load` restores the model's dtype. Packed buffers are stored as they are.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = packed_layers(model)
    if not layers:
        raise ConfigError("the model has no packed layers; call evoforge.layers.apply(model, config) first")
    packed_prefixes = tuple(n + "." for n in layers)
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[tuple, str] = {}
    tied: dict[str, str] = {}
    for k, v in model.state_dict().items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.dtype)
        if v.numel() and key in seen:  # shared storage (tied embeddings): stored once
            tied[k] = seen[key]
            continue
        seen[key] = k
        if dtype is not None and v.is_floating_point() and not k.startswith(packed_prefixes):
            v = v.to(dtype)
        tensors[k] = v.detach().cpu().contiguous()
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT})
    model.config.save_pretrained(str(out))
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(str(out))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "layers": layers, "tied": tied,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
    (out / LAYERS_FILE).write_text(json.dumps(meta, indent=1))
    return out


def load(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model saved by :func:`save`: transformers from the config, packed modules, tensors."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    p = Path(path)
    lf = p / LAYERS_FILE
    if not lf.is_file():
        raise FileNotFoundError(f"{str(p)!r} has no {LAYERS_FILE}: not an evoforge packed checkpoint")
    meta = json.loads(lf.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{str(lf)!r} is not an evoforge packed model of version {FORMAT_VERSION}")
    dtype = getattr(torch, meta.get("dtype", "float32"))
    config = AutoConfig.from_pretrained(str(p))
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    for name, s in meta["layers"].items():
        if s["class"] == "SparseLinear":
            m: nn.Module = SparseLinear(s["in_features"], s["out_features"], s["bias"], format=s["format"],
                                        bits=s["bits"], group_size=s["group_size"], symmetric=s["symmetric"],
                                        values_dtype=s["values_dtype"] or "float32")
        else:
            m = QuantLinear(s["in_features"], s["out_features"], s["bias"], bits=s["bits"],
                            group_size=s["group_size"], symmetric=s["symmetric"])
        _replace(model, name, m)
    sd = load_file(str(p / WEIGHTS_FILE))
    for k, src in meta.get("tied", {}).items():
        sd[k] = sd[src]
    own = model.state_dict()
    for k, v in sd.items():
        if k in own and v.is_floating_point() and own[k].is_floating_point() and v.dtype != own[k].dtype:
            sd[k] = v.to(own[k].dtype)
    model.load_state_dict(sd, strict=True)
    return model
