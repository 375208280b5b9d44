"""Whole models: packed layers in place of a model's linear layers, packed checkpoints.

:func:`apply` replaces linear layers by packed modules (embeddings, norms and the output head stay
dense), from an explicit specification:

* a uniform spec, a dict with any of ``"sparsity"`` (fraction pruned per layer, smallest ``|w|``
  of the layer), ``"pattern"`` (``"unstructured"`` or ``"2:4"``: keep the 2 largest ``|w|`` of
  every 4), ``"bits"``, ``"group_size"`` (default 128; 0 = per row), ``"symmetric"`` (default
  True) and ``"values_dtype"`` (``"float32"`` / ``"float16"`` or the torch dtype, sparse float
  values); e.g. ``{"bits": 4, "group_size": 128}`` or ``{"sparsity": 0.5}``. It applies to every
  layer of ``layers=`` (default :func:`linear_layers`: every ``nn.Linear`` and transformers-style
  ``Conv1D`` except the output embeddings);
* per-layer specs, a dict layer name -> uniform spec, or -> a packed module to put there as it is.

Sparsity only -> :class:`~evoforge.layers.SparseLinear` (``"unstructured"``, or ``"2:4"``);
quantisation only -> :class:`~evoforge.layers.QuantLinear` (``from_linear``); both ->
``SparseLinear`` with quantised kept values. Bit-widths 5, 6 and 7 are stored as 8-bit codes.
A compression result becomes packed layers with :func:`evoforge.compress.pack` (the old
``apply(model, run_dir)`` still works, with a DeprecationWarning, until 0.3).

Checkpoints: :func:`save` writes ``model.safetensors`` (every tensor of the state dict, packed
buffers included), ``evoforge_layers.json`` (format, version, the model's class and each packed
layer's class and settings) and the model's config (``model.config.save_pretrained``, as Hugging
Face models have it; and the tokenizer, when given); :func:`load` rebuilds the model: the class
recorded at save time built from the saved config (``config_class.from_pretrained``; a checkpoint
of an earlier version names it in its ``config.json``), or the skeleton ``model=`` you give, then
swaps in the packed modules and loads the tensors. This package imports neither transformers nor
:mod:`evoforge.compress`.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .format import GROUP_SIZES, storage_bits
from .quant import QuantLinear
from .sparse import SparseLinear, prune_24, values_dtype_of

__all__ = ["apply", "linear_layers", "load", "packed_layers", "save"]

FORMAT = "evoforge.packed_model"
FORMAT_VERSION = 1
LAYERS_FILE = "evoforge_layers.json"
WEIGHTS_FILE = "model.safetensors"
_SPEC_KEYS = {"sparsity", "pattern", "bits", "group_size", "symmetric", "values_dtype"}
_CONFIG_TYPES = "a spec dict, per-layer specs, a search result (CompressionResult or its JSON dict), a run " \
                "directory or config.json path, or a list of results"


def _group_size(g: Any) -> int:
    g = 0 if g is None or int(g) in (-1, 0) else int(g)
    if g not in GROUP_SIZES:
        raise ConfigError(f"group_size must be one of {GROUP_SIZES[1:]} or 0 / -1 (per row) for the packed "
                          f"format, got {g}")
    return g


def _is_conv1d(m: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2): a linear layer storing its weight as [in, out]; by class name."""
    return type(m).__name__ == "Conv1D" and getattr(getattr(m, "weight", None), "ndim", 0) == 2


def linear_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> module of the layers :func:`apply` packs by default, in model order: every
    ``nn.Linear`` and transformers-style ``Conv1D`` except the output embeddings
    (``model.get_output_embeddings()``, else a module named ``lm_head``). For the causal LMs of
    :mod:`evoforge.compress` these are the linear layers inside the decoder blocks."""
    _check_model(model)
    head = None
    get = getattr(model, "get_output_embeddings", None)
    if callable(get):
        try:
            head = get()
        except (AttributeError, NotImplementedError):
            head = None
    out = {}
    for name, m in model.named_modules():
        if m is head or name.rpartition(".")[2] == "lm_head":
            continue
        if isinstance(m, nn.Linear) or _is_conv1d(m):
            out[name] = m
    return out


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"the model has no layer {name!r}") from None


def _dense(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight [out, in], bias or None) of a linear layer, float32 on the CPU."""
    W = m.weight.detach()
    W = W.t() if _is_conv1d(m) else W
    b = getattr(m, "bias", None)
    return W.float().cpu(), None if b is None else b.detach().float().cpu()


# ---- specs ----------------------------------------------------------------------------------------


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
        storage_bits(s["bits"])
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


def _pack(m: nn.Module, s: dict) -> nn.Module:
    """The packed module of linear layer ``m`` under the checked spec ``s``."""
    W, b = _dense(m)
    if "sparsity" in s:
        Ws = _prune(W, float(s["sparsity"]), s["pattern"])
        bits = None if "bits" not in s else storage_bits(s["bits"])
        return SparseLinear.from_dense(Ws, b, format=s["pattern"], bits=bits, group_size=s["group_size"],
                                       symmetric=bool(s.get("symmetric", True)), values_dtype=s["values_dtype"])
    lin = nn.Linear(W.shape[1], W.shape[0], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(W)
        if b is not None:
            lin.bias.copy_(b)
    return QuantLinear.from_linear(lin, bits=storage_bits(s["bits"]), group_size=s["group_size"],
                                   symmetric=bool(s.get("symmetric", True)))


def _is_result(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike)) or hasattr(x, "to_json") or (isinstance(x, Mapping) and "method" in x)


def _per_layer(config: Any) -> bool:
    return (isinstance(config, Mapping) and "method" not in config and len(config) > 0
            and all(isinstance(v, (Mapping, nn.Module)) for v in config.values()))


def apply(model: nn.Module, config: Any, database: Any = None, *, values_dtype: str | torch.dtype = "float32",
          layers: Iterable[str] | None = None) -> nn.Module:
    """Replace ``model``'s linear layers by packed modules, in place; returns the model.

    Parameters
    ----------
    model : a model with float linear layers, on the CPU.
    config : a uniform spec dict, or per-layer specs (layer name -> spec dict or packed module); see
        the module docstring.
    layers : the names of the layers a uniform spec packs (default :func:`linear_layers`).
    values_dtype : checked (``"float32"`` / ``"float16"`` or the torch dtype); a spec has its own.
    database : only for the deprecated form ``apply(model, result, database)``, which is
        :func:`evoforge.compress.pack` (use that).
    """
    _check_model(model)
    values_dtype = values_dtype_of(values_dtype)
    if _per_layer(config):
        for name, s in config.items():
            old = _module(model, name)
            _replace(model, name, s if isinstance(s, nn.Module) else _pack(old, _check_spec(s)))
        return model
    if isinstance(config, Mapping) and "method" not in config:
        s = _check_spec(config)
        names = list(linear_layers(model)) if layers is None else list(layers)
        for name in names:
            _replace(model, name, _pack(_module(model, name), s))
        return model
    items = list(config) if isinstance(config, (list, tuple)) else [config]
    bad = [x for x in items if not _is_result(x)] if items else [config]
    if bad:
        raise TypeError(f"config must be {_CONFIG_TYPES}; got {type(bad[0]).__name__}")
    warnings.warn("evoforge.layers.apply(model, result) is deprecated since 0.2 and goes in 0.3: use "
                  "evoforge.compress.pack(model, result, database) for a compression result",
                  DeprecationWarning, stacklevel=2)
    from ..compress.export import pack  # the deprecated form only (the one allowed upward import)

    return pack(model, config, database, values_dtype=values_dtype)


# ---- checkpoints ----------------------------------------------------------------------------------


def packed_layers(model: nn.Module) -> dict[str, dict]:
    """Name -> settings of every packed module in ``model`` (what :func:`save` records)."""
    _check_model(model)
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

    _check_model(model)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be None or a floating torch.dtype (e.g. torch.float16), got {dtype!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = packed_layers(model)
    if not layers:
        raise ConfigError("the model has no packed layers; call evoforge.layers.apply(model, spec) or "
                          "evoforge.compress.pack(model, result) first")
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
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "save_pretrained"):
        config.save_pretrained(str(out))
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(str(out))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "layers": layers, "tied": tied,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "model_class": f"{type(model).__module__}:{type(model).__qualname__}"}
    (out / LAYERS_FILE).write_text(json.dumps(meta, indent=1))
    return out


def load(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a model saved by :func:`save`: the model (``model``, a skeleton of the saved model's
    architecture, e.g. built from its config; or, by default, the class recorded at save time built
    from the saved config), the packed modules swapped in, the tensors loaded. Returns it in eval mode."""
    from safetensors.torch import load_file

    p = Path(path)
    lf = p / LAYERS_FILE
    if not lf.is_file():
        raise FileNotFoundError(f"{str(p)!r} has no {LAYERS_FILE}: not an evoforge packed checkpoint")
    meta = json.loads(lf.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{str(lf)!r} is not an evoforge packed model of version {FORMAT_VERSION}")
    dtype = getattr(torch, meta.get("dtype", "float32"))
    if model is not None:
        _check_model(model)
    model = _skeleton(p, meta, dtype) if model is None else model.to(dtype).eval()
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


def _skeleton(p: Path, meta: dict, dtype: torch.dtype) -> nn.Module:
    """The saved model's class (``module:qualname`` in the checkpoint; a checkpoint of an earlier
    version: the ``architectures`` of its ``config.json``, Hugging Face classes) built from the saved
    config with ``config_class.from_pretrained``, in ``dtype``."""
    where = meta.get("model_class")
    if not where:
        try:
            arch = (json.loads((p / "config.json").read_text()).get("architectures") or [None])[0]
        except (OSError, ValueError):
            arch = None
        if not arch:
            raise ConfigError(f"{str(p)!r} does not record the model's class; pass load(path, model=...) (the "
                              "model built from its config)")
        where = f"transformers:{arch}"
    module, _, qualname = where.partition(":")
    try:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as e:
        raise ImportError(f"{str(p)!r} holds a {where} model, which cannot be imported here ({e}); install it "
                          "or pass load(path, model=...)") from e
    config_class = getattr(cls, "config_class", None)
    if config_class is None or not hasattr(config_class, "from_pretrained"):
        raise ConfigError(f"cannot rebuild a {where} from {str(p)!r} (no config_class.from_pretrained); pass "
                          "load(path, model=...)")
    config = config_class.from_pretrained(str(p))
    build = getattr(cls, "_from_config", None)  # Hugging Face: built in dtype, as from_config does
    model = build(config, dtype=dtype) if callable(build) else cls(config).to(dtype)
    return model.eval()
