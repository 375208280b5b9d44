"""Turning a compression result into a model.

:func:`export` writes the searched configuration as a Hugging Face model (``run_dir/model``, dense
tensors with the zeros and quantised values in place) and ``run_dir/config.json`` (method, target,
per-layer levels, sparsity or bits, dropped sub-blocks, KLs).

:func:`pack` turns a result (plus the layer database it was searched on) into packed layers that
run on the compressed weights (:mod:`evoforge.layers`), in place:

* sparsity -> :class:`~evoforge.layers.SparseLinear` with the database level's weights (zeros =
  the mask, SparseGPT's updated values kept), float32 or float16 kept values (``values_dtype``);
* quantisation -> :class:`~evoforge.layers.QuantLinear` with the database's codes and grid
  (5..7-bit levels stored as 8-bit codes of the same values);
* a list of one sparsity and one quant result -> ``SparseLinear`` with quantised kept values: the
  sparsity level's weight rounded to nearest on a grid of the quant level's bit-width and group size;
* depth + quantisation (one bit-width per sub-block, 0 = dropped) -> QuantLinear layers, and
  all-zero SparseLinear layers (no storage, no compute) for every linear layer of a dropped
  sub-block, which reproduces the exported model's zeroed output projections.

A result is a :class:`~evoforge.compress.CompressionResult`, its ``to_json()`` dict, or the path of
a run directory / its ``config.json``; its database is ``database=`` (a path or LayerDatabase; a
list for a list of results), else the result's ``db_path``, else ``<run_dir>/db``.
:func:`evoforge.layers.save` / :func:`evoforge.layers.load` then write and read packed checkpoints.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..layers.format import check_group_size, storage_bits
from ..layers.quant import QuantLinear
from ..layers.sparse import SparseLinear, values_dtype_of
from .adapters import adapt
from .database import LayerDatabase
from .depth import export_depth
from .providers import apply_levels
from .result import CompressionResult

__all__ = ["export", "pack"]


def export(result: CompressionResult, out_dir: str | os.PathLike, *, tokenizer: Any = None) -> Path:
    """Apply the searched configuration to the model, save it to ``out_dir/model`` (Hugging Face
    format) and write ``out_dir/config.json`` (method, target, per-layer levels, sparsity or bits,
    dropped sub-blocks, KLs). The in-memory model is restored to dense afterwards.

    Dropped sub-blocks (depth, depth+quant): a Hugging Face config cannot remove a sub-block, so
    their output projections (o_proj / down_proj, weight and bias) are saved as zeros. A model on a
    GPU gets its levels there (streamed from the provider) and is saved from there (the files are the
    CPU run's for the same genome)."""
    adapter = result._adapter  # type: ignore[attr-defined]
    provider = result._provider  # type: ignore[attr-defined]
    out = Path(out_dir)
    mdir = out / "model"
    mdir.mkdir(parents=True, exist_ok=True)  # a file in the way, a NUL byte: refused before any work
    layers = adapter.linear_layers()
    saved = [(r.module, r.module.weight.detach().clone(),
              None if getattr(r.module, "bias", None) is None else r.module.bias.detach().clone()) for r in layers]
    genome = np.asarray(result.genome, dtype=np.int64)
    zeroed = None
    try:
        if result.method in ("sparsity", "quant"):
            apply_levels(adapter, provider, genome)
        elif result.method == "depth+quant":
            apply_levels(adapter, provider.provider, provider.layer_levels(genome))
        if result.method == "depth":
            zeroed = export_depth(adapter, genome)
        elif result.method == "depth+quant":
            zeroed = export_depth(adapter, (genome == 0).astype(np.int64))
        adapter.model.save_pretrained(str(mdir))
    finally:
        with torch.no_grad():
            for m, w, b in saved:
                m.weight.copy_(w)
                if b is not None:
                    m.bias.copy_(b)
    if tokenizer is not None:
        try:
            tokenizer.save_pretrained(str(mdir))
        except Exception as e:  # noqa: BLE001 -- a tokenizer that cannot be saved: the model still is
            warnings.warn(f"the tokenizer could not be saved with the model: {e}", stacklevel=2)
    result.model_dir = str(mdir)
    cfg = result.to_json()
    if result.method in ("sparsity", "quant"):
        costs = provider.costs(genome).tolist()
        cfg["per_layer"] = [
            {"name": n, "level": lv, "numel": int(provider.numel[i]),
             **({"sparsity": result.sparsity[i], "nonzeros": costs[i]} if result.sparsity is not None else {}),
             **({"bits": result.bits[i], "cost_bits": costs[i]} if result.bits is not None else {})}
            for i, (n, lv) in enumerate(zip(result.layers, result.levels))]
    elif result.method == "depth+quant":
        units = provider.units(genome)
        cfg["per_layer"] = [{"name": r.name, "block": r.block, "numel": r.numel, "bits": int(units[gi]),
                             "dropped": bool(units[gi] == 0)} for r, gi in zip(layers, provider.layer_gene)]
    if result.method == "depth":
        cfg["k"] = int(sum(1 for d in result.dropped or () if d[1] == "attn"))
    if zeroed is not None:
        cfg["zeroed"] = zeroed
        cfg["export_note"] = ("Hugging Face configs cannot remove a sub-block: the dropped sub-blocks' output "
                              "projections (o_proj / down_proj, weight and bias) are zeroed, so their residual "
                              "branch adds nothing; they still cost compute when run as saved.")
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    return mdir


def pack(model: nn.Module, result: Any, database: Any = None, *,
         values_dtype: str | torch.dtype = "float32") -> nn.Module:
    """Replace ``model``'s block linear layers by the packed layers of a compression result, in place;
    returns the model.

    Parameters
    ----------
    model : the dense model the result was searched on (a causal LM :func:`evoforge.compress.adapt`
        supports, float weights, on the CPU).
    result : a CompressionResult, its JSON dict, a run directory or its config.json, or a list of
        one sparsity and one quant result (see the module docstring).
    database : the layer database (path or LayerDatabase) of the result; a list for a list.
    values_dtype : ``"float32"`` (exact) or ``"float16"`` (half the bytes), or the torch dtype, for
        the kept values of sparse layers without quantisation.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    values_dtype = values_dtype_of(values_dtype)
    results_in = list(result) if isinstance(result, (list, tuple)) else [result]
    dbs_in = list(database) if isinstance(database, (list, tuple)) else [database] * len(results_in)
    if len(dbs_in) != len(results_in):
        raise ConfigError(f"{len(results_in)} results but {len(dbs_in)} databases")
    results = [_result_json(r) for r in results_in]
    packed = _packed_layers(model, results, [_open_db(r, d) for r, d in zip(results, dbs_in)], values_dtype)
    for name, new in packed.items():  # evoforge.layers.apply(model, packed) does the same (not imported:
        parent, _, child = name.rpartition(".")  # its deprecated form imports this module)
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


def _bias(ref: Any) -> torch.Tensor | None:
    b = getattr(ref.module, "bias", None)
    return None if b is None else b.detach().float().cpu()


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
        raise TypeError(f"result must be a search result (CompressionResult or its JSON dict), a run directory "
                        f"or config.json path, or a list of results; got {type(config).__name__}")
    return dict(config)


def _open_db(result: dict, database: Any) -> LayerDatabase:
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
    refs = adapt(model).linear_layers()
    units = list(result["bits"])
    n = max(r.block for r in refs) + 1
    if len(units) != 2 * n:
        raise ConfigError(f"a depth+quant result has {len(units)} sub-block bit-widths, the model {2 * n} sub-blocks")
    out = {}
    for r in refs:
        b = int(units[r.sub_block_index(n)])
        out[r.name] = {"dropped": 1} if b == 0 else {"quant": b}
    return out


def _quant_from_db(db: LayerDatabase, name: str, bits: int, bias: torch.Tensor | None) -> nn.Module:
    """QuantLinear of a quant database level: its codes and grid as stored (5..7 bits as 8-bit codes)."""
    from safetensors import safe_open

    entry = next(e for e in db.manifest["layers"] if e["name"] == name)
    with safe_open(str(db.path / entry["file"]), framework="pt", device="cpu") as f:
        q, s, z = f.get_tensor(f"q.{bits}"), f.get_tensor(f"scales.{bits}"), f.get_tensor(f"zeros.{bits}")
        g_idx = f.get_tensor(f"g_idx.{bits}")
    # zeros kept even for a symmetric ladder: the stored grid is reproduced exactly whatever its zero
    return QuantLinear.from_codes(q, s, z, storage_bits(bits), int(db.params["group_size"]), bias, g_idx=g_idx)


def _packed_layers(model: nn.Module, results: list[dict], dbs: list, values_dtype: torch.dtype) -> dict[str, nn.Module]:
    """Name -> packed module of every block linear layer, from the results and their databases."""
    by_method: dict[str, tuple[dict, Any]] = {}
    for r, db in zip(results, dbs):
        if r.get("method") not in ("sparsity", "quant", "depth+quant"):
            raise ConfigError(f"pack handles sparsity, quant and depth+quant results, got method {r.get('method')!r}")
        kind = "quant" if r["method"] == "depth+quant" else r["method"]
        if kind in by_method:
            raise ConfigError(f"two {kind} results given; pass at most one sparsity and one quant result")
        if db.kind != kind:
            raise ConfigError(f"the database {str(db.path)!r} holds {db.kind} levels, the result is {r['method']}")
        by_method[kind] = (r, db)
    refs = {ref.name: ref for ref in adapt(model).linear_layers()}
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
    out: dict[str, nn.Module] = {}
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
                kw = {"bits": storage_bits(lv["quant"]), "group_size": check_group_size(int(qdb.params["group_size"])),
                      "symmetric": bool(qdb.params.get("symmetric", False))}
            new = SparseLinear.from_dense(W, b, format="unstructured", values_dtype=values_dtype, **kw)
        else:
            new = _quant_from_db(by_method["quant"][1], name, lv["quant"], b)
        out[name] = new
    return out
