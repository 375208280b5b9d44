"""What a compression run found (:class:`CompressionResult`), and the model compressed as one of
its genomes (:func:`variant`)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from .depth import depth_drops
from .providers import levels_applied

__all__ = ["CompressionResult", "variant"]


@dataclasses.dataclass
class CompressionResult:
    """What :func:`compress` found.

    ``levels``: per layer, the sparsity offset k or the bit-width; ``sparsity`` / ``bits``: the
    resulting per-layer sparsity or bit-width; ``budget``: total non-zeros (sparsity) or weight
    bits (quant) of the searched configuration, ``uniform_budget`` the same for uniform (equal
    for sparsity; for quant equal whenever the target fills every group exactly).
    ``kl_uniform`` / ``kl_search``: KL(dense || compressed) on the held-out tokens.

    Depth (``method="depth"``): ``layers`` names the 2N sub-blocks (attention of every block, then
    MLP), ``genome`` / ``levels`` the drop mask (1 = dropped), ``budget`` the number of dropped
    sub-blocks (2K), ``total_weights`` 2N, ``dropped`` the (block, kind) pairs; "uniform" drops K of
    each kind evenly spaced over depth.

    Depth + quantisation (``method="depth+quant"``): ``layers`` names the 2N sub-blocks, ``genome``
    / ``levels`` their joint genes (0 dropped, j >= 1 the j-th bit-width), ``bits`` the bits per
    sub-block (0 when dropped), ``budget`` the total weight bits, ``total_weights`` all linear
    weights, ``dropped`` the dropped (block, kind) pairs; uniform drops nothing.

    ``count_metadata``: quantisation budgets include the scales and zero points. ``db_path``: the
    layer database used.
    ``baselines``: extra rows, name -> {"kl": held-out KL, "genome": ..., ...}: ``"shortgpt"``
    (depth, depth+quant) or ``"owl"`` (sparsity). ``times``: seconds per phase in this process
    (calibration, database, search, heldout, export). ``notes``: remarks for the report.
    """

    method: str
    target: float
    db_method: str
    layers: list[str]
    genome: list[int]
    levels: list[int]
    sparsity: list[float] | None
    bits: list[int] | None
    budget: int
    uniform_budget: int
    total_weights: int
    kl_uniform: float
    kl_search: float
    kl_calib_search: float | None
    generations: int
    evaluations: int
    history: list = dataclasses.field(default_factory=list, repr=False)
    run_dir: str | None = None
    model_dir: str | None = None
    ppl: dict | None = None
    baselines: dict = dataclasses.field(default_factory=dict)
    dropped: list | None = None
    count_metadata: bool = False
    db_path: str | None = None
    times: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def average(self) -> float:
        """Average sparsity (sparsity), bits per weight (quant, depth+quant; with the grids when
        ``count_metadata``) or share of sub-blocks dropped (depth) of the searched configuration."""
        if self.method == "sparsity":
            return 1.0 - self.budget / self.total_weights
        return self.budget / self.total_weights  # bits per weight; depth: share of sub-blocks dropped

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("history")
        d["average"] = self.average
        return d

    def bind(self, adapter: Any, provider: Any, initial: Any) -> CompressionResult:
        """Keep what :func:`variant`, export and perplexity need (the model's adapter, the genome's
        provider, the uniform genome) on the result; returns it."""
        self._adapter, self._provider, self._initial = adapter, provider, initial
        return self


@contextlib.contextmanager
def variant(result: CompressionResult, genome: Any) -> Iterator[None]:
    """The model compressed as ``genome`` of ``result``'s method (dropped sub-blocks bypassed, levels'
    weights written), restored on exit (for perplexity)."""
    adapter = result._adapter  # type: ignore[attr-defined]
    provider = result._provider  # type: ignore[attr-defined]
    if result.method == "depth":
        with adapter.dropped(depth_drops(genome, adapter.n_blocks)):
            yield
    elif result.method == "depth+quant":
        with levels_applied(adapter, provider.provider, provider.layer_levels(genome)), \
                adapter.dropped(provider.dropped(genome)):
            yield
    else:
        with levels_applied(adapter, provider, genome):
            yield
