"""``compress(model, config)``: validate the config, load the model, prepare the run
(:func:`evoforge.compress.run.start_run`) and hand it to the recipe registered for the config's
type (:mod:`evoforge.compress.methods`). The keyword form ``compress(model, method=..., **knobs)``
builds the config (:func:`evoforge.compress.settings.config_for`) and gives the same result.

The config's ``device`` (checked by ``validate()`` before the model loads) is where the whole job
runs: the model is moved there once loaded (a module given is moved in place, and stays there), and
everything after follows the model's device."""

from __future__ import annotations

import os
from typing import Any

import torch

from . import methods  # noqa: F401  (registers the recipes)
from ..errors import ConfigError, UnsupportedModelError
from .adapters import adapt
from .encoders import adapt_encoder, is_encoder
from .config import CompressConfig
from .models import load_model
from .registry import recipe_for
from .result import CompressionResult
from .run import start_run
from .settings import config_for

__all__ = ["compress"]


def compress(model_or_path: Any, config: CompressConfig | None = None, *, calibration: torch.Tensor | None = None,
             heldout: torch.Tensor | None = None, tokenizer: Any = None, backend: Any = None,
             method: str | None = None, **knobs: Any) -> CompressionResult:
    """Search per-layer compression levels under an exact global budget (EvoPress-style).

    Parameters
    ----------
    model_or_path : a supported causal LM (nn.Module), a model directory, a .gguf file, or
        ``"smollm2-135m"`` (loaded in float32 with its tokenizer).
    config : :class:`SparsityConfig`, :class:`QuantConfig`, :class:`DepthConfig` or
        :class:`DepthQuantConfig` (:mod:`evoforge.compress.config`: every knob and its default;
        ``device``: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``, where the job runs).
    calibration, heldout : LongTensor [N, S], optional
        Tokens for the search and for the final comparison. Default: ``n_calib + n_heldout``
        distinct windows of ``seq_len`` from ``calib_text`` (needs a tokenizer; the first
        ``n_calib`` calibrate), else sequences sampled from the dense model (seeds ``seed`` and
        ``seed + 1``); kept in the run directory.
    tokenizer : for ``calib_text`` when the model is given as a module.
    backend : an evaluation backend factory (a callable taking the :class:`FitnessFactory`, e.g.
        ``functools.partial(RayBackend, address="auto", timeout=600)``) instead of the config's
        ``backend`` name. Workers load the model from ``model_or_path`` when it is a path (else
        receive the module) and open the database from its directory: both must be on storage
        every worker sees.
    method, **knobs : the keyword form, instead of ``config``: ``method`` (``"sparsity"``,
        ``"quant"``, ``"depth"``, ``"depth+quant"``; default sparsity) and the config's fields
        (``export_model`` is ``export``; a backend name goes to the config's ``backend``).

    Returns the :class:`CompressionResult`; with a run directory the compressed model is exported
    there (``model/``, ``config.json``) with a report. A run directory holding a run with other
    settings raises ConfigError; one with the same settings resumes.
    """
    if config is None:
        if "export_model" in knobs:
            knobs["export"] = knobs.pop("export_model")
        if backend is None or isinstance(backend, str):
            if backend is not None:
                knobs["backend"] = backend
            backend = None
        config = config_for(method, knobs)
    elif method is not None or knobs:
        raise TypeError(f"compress() takes a config or keyword settings (method=..., target=...), not both; got "
                        f"{sorted(knobs) + (['method'] if method is not None else [])} with a config")
    elif not isinstance(config, CompressConfig):
        raise TypeError(f"config must be a SparsityConfig, QuantConfig, DepthConfig or DepthQuantConfig, got "
                        f"{type(config).__name__}")
    elif isinstance(backend, str):
        raise TypeError("a backend name belongs in the config (config.backend); backend= takes a backend factory")
    config.validate()
    recipe = recipe_for(config)
    if isinstance(model_or_path, torch.nn.Module):
        model = model_or_path
    else:
        model, tok = load_model(model_or_path)
        tokenizer = tokenizer if tokenizer is not None else tok
    model.to(torch.device(config.device)).eval()  # the whole job runs where the model is
    if is_encoder(model):  # BERT-family encoders: sub-network search only
        if config.method != "subnet":
            raise UnsupportedModelError(f"{type(model).__name__} is an encoder: method {config.method!r} needs a "
                                        f"causal LM; encoders take method 'subnet'")
        if config.calib_text is None and calibration is None:
            raise ConfigError("an encoder cannot sample its own calibration text: give calib_text (a text file) "
                              "or calibration tokens")
        adapter = adapt_encoder(model)
    else:
        adapter = adapt(model)
    config.check_model(adapter)
    source = model_or_path if isinstance(model_or_path, (str, os.PathLike)) else model
    run = start_run(source, model, adapter, config, tokenizer=tokenizer, calibration=calibration,
                    heldout=heldout, backend=backend)
    return recipe(config, run)
