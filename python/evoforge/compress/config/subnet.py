"""The sub-network search's config: a front of quality against parameters (and latency) over the
heads and MLP widths of every block of a pretrained model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from ...errors import ConfigError
from .base import as_tuple
from .front import FrontSearchConfig

__all__ = ["SUBNET_OBJECTIVES", "SubnetConfig"]

SUBNET_OBJECTIVES = ("kl", "cosine", "params", "latency")
POOLINGS = ("auto", "mean", "cls", "max")


@dataclasses.dataclass(kw_only=True)
class SubnetConfig(FrontSearchConfig):
    """Structured sub-networks of a pretrained transformer (:mod:`evoforge.compress.subnet_space`):
    per block the kept key-value groups of attention heads (0: attention dropped; ``attention=False``
    keeps every head) and the kept share of MLP neurons from ``widths`` (ascending, ending with 1; 0
    lets the search drop an MLP), heads and neurons ordered by importance on the calibration tokens.

    ``objectives``: two or more of ``kl`` (causal LMs: on the calibration tokens during the search;
    the last front and every uniform sub-network re-scored on the held-out tokens, the points
    non-dominated there returned), ``cosine`` (encoders, in place of ``kl``: the mean cosine distance
    of the sentence embeddings to the full model's, pooled by ``pooling``: ``auto`` reads the
    sentence-transformers directory's Pooling module, else ``mean``, ``cls`` or ``max``), ``params`` (the sub-network's exact parameter count) and ``latency`` (a table of
    the dense linear layers at every width, timed on this machine, plus a measured fixed part).
    ``target`` 0 (default) searches the front; a share in (0, 1) one sub-network with at most that
    share of the blocks' parameters (plus the embeddings, head and norms), by (1 + lambda) search with
    ``offspring`` and ``max_switches``, from the best uniform sub-network within the budget; its
    FrontResult has that one point and the uniform sub-networks within the budget.
    The rest as :class:`FrontSearchConfig`.
    """

    method: ClassVar[str] = "subnet"
    OBJECTIVES: ClassVar[tuple[str, ...]] = SUBNET_OBJECTIVES

    objectives: tuple[str, ...] = ("kl", "params")
    widths: tuple[float, ...] = (0.0, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
    attention: bool = True
    pooling: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.widths = as_tuple(self.widths)

    def _check_target(self, say: Callable[[str], str]) -> None:
        t = self.target
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= float(t) < 1.0:
            raise ConfigError(f"{say('target')} of a sub-network search must be 0 (the front) or a share of the "
                              f"blocks' parameters in (0, 1), got {t!r}")

    def _check_method(self, say: Callable[[str], str]) -> None:
        self._check_front_search(say)
        try:
            w = [float(x) for x in self.widths]
        except (TypeError, ValueError):
            raise ConfigError(f"{say('widths')} must be shares in [0, 1], got {self.widths!r}") from None
        if not w or w != sorted(set(w)) or w[0] < 0.0 or w[-1] != 1.0:
            raise ConfigError(f"{say('widths')} must be distinct shares in [0, 1], ascending and ending with 1, "
                              f"got {w}")
        if not isinstance(self.attention, bool):
            raise TypeError(f"{say('attention')} must be a bool, got {self.attention!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"{say('pooling')} must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if len(w) < 2 and not self.attention:
            raise ConfigError(f"{say('widths')} {w} with attention=False leaves one sub-network: nothing to search")

    def check_model(self, adapter: Any) -> None:
        self.check_architecture(adapter.architecture)

    def check_architecture(self, architecture: str) -> None:
        """The quality objective fits the model: ``cosine`` for an encoder, ``kl`` for a causal LM."""
        encoder = architecture == "BertModel"
        quality, other = ("cosine", "kl") if encoder else ("kl", "cosine")
        if other in self.objectives:
            raise ConfigError(f"objective {other!r} is for {'causal LMs' if encoder else 'encoders'}; "
                              f"{architecture} takes {quality!r}")

    def identity(self) -> dict:
        return {**self._search_identity(), "widths": [float(x) for x in self.widths],
                "attention": bool(self.attention), "pooling": self.pooling, "target": float(self.target),
                "max_switches": int(self.max_switches)}
