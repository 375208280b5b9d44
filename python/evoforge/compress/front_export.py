"""A front point as a model: packed layers (:func:`evoforge.layers.save`) or a Hugging Face model with
the compressed weights in place (:meth:`FrontResult.export` calls :func:`export_point`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..layers import apply as apply_layers
from ..layers import save as save_packed
from .adapters import adapt
from .database import LayerDatabase
from .front_space import FrontSpace
from .models import load_model

__all__ = ["export_point", "point_modules"]


def point_modules(model: nn.Module, space: FrontSpace, genome: Any) -> dict[str, nn.Module]:
    """Layer name -> the CPU module (packed, or a float16-valued ``nn.Linear``) of every linear layer
    of ``model`` at the front genome ``genome`` [G]."""
    refs = {r.name: r for r in adapt(model).linear_layers()}
    if list(refs) != space.names:
        raise ConfigError(f"the model's linear layers do not match the front's database (e.g. "
                          f"{sorted(set(refs) ^ set(space.names))[:3]})")
    j = space.combined(genome)[0]
    return {name: space.module(i, int(j[i]), getattr(refs[name].module, "bias", None))
            for i, name in enumerate(space.names)}


def export_point(result: Any, i: int, out_dir: Path, *, packed: bool = True, model: Any = None,
                 tokenizer: Any = None) -> Path:
    bound = result._bound
    if model is None and bound is not None:
        model = copy.deepcopy(bound[0].model).cpu()
    elif model is None:
        if not result.model:
            raise ConfigError("this front was computed on a model given as a module: pass model= (the dense model)")
        model, tok = load_model(result.model)
        tokenizer = tokenizer if tokenizer is not None else tok
    else:
        model = copy.deepcopy(model).cpu()
    if bound is not None:
        space = bound[1]
    else:
        if not result.db_path:
            raise ConfigError("the front result names no database (db_path)")
        space = FrontSpace(LayerDatabase.open(result.db_path), result.bits, group_size=result.group_size,
                           symmetric=result.symmetric, depth="depth" in result.space.split("+"))
    modules = point_modules(model, space, result.points[i]["genome"])
    out_dir.mkdir(parents=True, exist_ok=True)
    is_packed = {n: not isinstance(m, nn.Linear) for n, m in modules.items()}
    if packed and any(is_packed.values()):
        apply_layers(model, modules)
        save_packed(model, out_dir, tokenizer=tokenizer, dtype=torch.float16)
        return out_dir
    for name, m in modules.items():  # the compressed weights in place, dense float32
        dense = m.weight.detach() if isinstance(m, nn.Linear) else (
            m.dequantize() if hasattr(m, "dequantize") else m.to_dense())
        with torch.no_grad():
            model.get_submodule(name).weight.copy_(dense)
    model.save_pretrained(str(out_dir))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    return out_dir
