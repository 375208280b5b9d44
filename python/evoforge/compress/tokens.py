"""Token ids given by the user (calibration, held-out and evaluation tokens): one check before they
reach a model, so that a bad id is refused by evoforge instead of failing deep in the embedding."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import DEVICES
from ..errors import ConfigError

__all__ = ["check_tokens", "vocab_size"]


def vocab_size(model: Any) -> int | None:
    """The number of token ids ``model`` embeds (its input embedding's rows, else its config's
    ``vocab_size``), or None when it does not say."""
    get = getattr(model, "get_input_embeddings", None)
    try:
        n = getattr(get(), "num_embeddings", None) if callable(get) else None
    except NotImplementedError:  # a transformers model without a named embedding
        n = None
    if not isinstance(n, int):
        n = getattr(getattr(model, "config", None), "vocab_size", None)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def check_tokens(tokens: Any, name: str = "tokens", *, vocab: int | None = None, ndim: int = 2) -> torch.Tensor:
    """``tokens`` as an int64 tensor, once it is a non-empty torch tensor of integer ids with ``ndim``
    dimensions ([N, S] sequences, or 1-D ids), on the CPU or a GPU, every id in [0, vocab).

    TypeError for another type, ConfigError (a ValueError) for another dtype, shape, device or an
    id out of range; the message names the argument.
    """
    shape = "[N, S]" if ndim == 2 else "[n]" if ndim == 1 else f"of {ndim} dimensions"
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a torch.LongTensor {shape} of token ids, got {type(tokens).__name__}")
    dt = tokens.dtype
    integer = not (dt.is_floating_point or dt.is_complex or dt == torch.bool)
    if not integer or tokens.ndim != ndim or tokens.numel() == 0 or tokens.device.type not in DEVICES:
        raise ConfigError(f"{name} must be a non-empty integer tensor {shape} with data (on "
                          f"{' or '.join(DEVICES)}), got {dt} {list(tokens.shape)} on {tokens.device}")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or (vocab is not None and hi >= vocab):
        raise ConfigError(f"{name} must lie in [0, {vocab if vocab is not None else 'vocab_size'}), got ids in "
                          f"[{lo}, {hi}]")
    return tokens if tokens.dtype == torch.long else tokens.long()
