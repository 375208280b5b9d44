"""The joint search space of a compression front: per linear layer a sparsity share and a bit-width.

Genome (what :class:`~evoforge.search.NSGA2` sees): ``2 L`` integer genes, the sparsity level
``s_i`` of every layer (an index into the database's ``fractions``), then the bit-width index
``b_i`` (into ``bits``; 16 means float16 kept values, not quantised). :class:`KLFitness` sees one
combined level per layer, ``j = s * n_bits + b`` (:meth:`FrontSpace.combined`).

A layer at ``(s, b)`` is the packed module :meth:`FrontSpace.module` builds from the database's
level ``s`` (SparseGPT's mask and updated weights, stored as float16 values):

* nothing pruned, 16 bits: the dense layer, float16 weights;
* nothing pruned, ``b`` bits: :class:`~evoforge.layers.QuantLinear` (round to nearest, ``group_size``,
  ``symmetric``);
* pruned, 16 bits: :class:`~evoforge.layers.SparseLinear` with float16 kept values;
* pruned, ``b`` bits: ``SparseLinear`` with the kept values rounded to nearest on a ``b``-bit grid.

The weight a candidate is scored with is that module's own dense form (``to_dense`` /
``dequantize``), so an exported front point computes exactly what the search scored, and its
packed bytes (:func:`evoforge.layers.packed_bytes`, mask, row pointers, codes, scales and zeros
included) are what :meth:`FrontSpace.layer_bytes` counts. Kept values are rounded to nearest
(RTN), not re-solved by GPTQ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..layers import QuantLinear, SparseLinear, packed_bytes
from ..layers.format import check_group_size
from .database import LayerDatabase
from .providers import _DatabaseLevels

__all__ = ["FLOAT_BITS", "FrontSpace"]

FLOAT_BITS = 16  # a "bit-width" of the ladder meaning float16 values, not quantised
_QUANT_BITS = (2, 3, 4, 8)  # what the packed kernels store natively (5..7 would cost 8-bit codes)


class FrontSpace(_DatabaseLevels):
    """Sparsity share x bit-width per layer over a fraction-ladder sparsity database.

    Parameters
    ----------
    db : LayerDatabase built with ``fractions`` (:func:`~evoforge.compress.build.build_database`)
    bits : bit-widths, each in {2, 3, 4, 8, 16} (16: float16 values)
    group_size : quantisation group (32, 64, 128, 256, or 0 / -1: one group per row)
    symmetric : grids without zero points
    device, dtype, cache_bytes : as :class:`~evoforge.compress.providers.SparsityLevels`
    """

    kind = "sparsity"

    def __init__(self, db: LayerDatabase, bits: Any, *, group_size: int = 64, symmetric: bool = False,
                 device: Any = None, dtype: torch.dtype | None = None, cache_bytes: int | str | None = "auto") -> None:
        super().__init__(db, device=device, dtype=dtype, cache_bytes=cache_bytes)
        if "fractions" not in db.params:
            raise ConfigError(f"the database {str(db.path)!r} has a target +- step ladder; a front needs one built "
                              "with fractions= (fixed shares in every layer)")
        bl = sorted({int(b) for b in bits})
        bad = [b for b in bl if b not in _QUANT_BITS + (FLOAT_BITS,)]
        if not bl or bad:
            raise ConfigError(f"front bits must be in {_QUANT_BITS + (FLOAT_BITS,)} (16: float16 values), got "
                              f"{list(bits)}")
        self.fractions = [float(f) for f in db.params["fractions"]]
        self.bits = bl
        self.group_size = check_group_size(group_size)
        self.symmetric = bool(symmetric)
        self.n_s, self.n_b = len(self.fractions), len(self.bits)
        L = self.n_layers
        self.names = list(db.layers)
        self.shapes = [tuple(int(v) for v in db.shape(i)) for i in range(L)]
        for i in range(L):
            if db.levels(i) != list(range(self.n_s)):
                raise ConfigError(f"layer {self.names[i]} has sparsity levels {db.levels(i)}, expected 0..{self.n_s - 1}")
        self.nnz = np.array([[db.cost(i, s) for s in range(self.n_s)] for i in range(L)], dtype=np.int64)
        self.lower = np.zeros(2 * L, dtype=np.int32)
        self.upper = np.array([self.n_s - 1] * L + [self.n_b - 1] * L, dtype=np.int32)
        self._bytes = np.array([[[self.layer_bytes(i, s, b) for b in range(self.n_b)] for s in range(self.n_s)]
                                for i in range(L)], dtype=np.int64)

    # ---- genomes --------------------------------------------------------------------------------

    def n_levels(self, i: int) -> int:
        return self.n_s * self.n_b

    def db_level(self, i: int, j: int) -> int:
        return int(j) // self.n_b

    def check(self, genomes: Any) -> np.ndarray:
        """``genomes`` as int64 [B, 2L] within the bounds, or ConfigError."""
        g = np.asarray(genomes)
        g = g[None, :] if g.ndim == 1 else g
        if g.ndim != 2 or g.shape[1] != 2 * self.n_layers or g.dtype.kind not in "iu":
            raise ConfigError(f"front genomes must be integer [B, {2 * self.n_layers}] (sparsity levels, then bit "
                              f"indices, of {self.n_layers} layers), got {g.dtype} {list(g.shape)}")
        if ((g < self.lower) | (g > self.upper)).any():
            raise ConfigError("front genome genes outside [lower, upper]")
        return g.astype(np.int64)

    def combined(self, genomes: Any) -> np.ndarray:
        """The per-layer levels KLFitness sees, int64 [B, L]: ``s * n_bits + b``."""
        g = self.check(genomes)
        L = self.n_layers
        return g[:, :L] * self.n_b + g[:, L:]

    def uniform(self) -> np.ndarray:
        """Every uniform configuration (one share and one bit-width in every layer), int32
        [n_s * n_b, 2L], row ``s * n_bits + b``."""
        L = self.n_layers
        return np.array([[s] * L + [b] * L for s in range(self.n_s) for b in range(self.n_b)], dtype=np.int32)

    def describe(self, genome: Any) -> dict[str, list]:
        """Per layer: ``layers`` names, ``sparsity`` (share pruned) and ``bits`` (16: float16)."""
        g = self.check(genome)[0]
        L = self.n_layers
        return {"layers": list(self.names),
                "sparsity": [1.0 - int(self.nnz[i, s]) / (self.shapes[i][0] * self.shapes[i][1])
                             for i, s in enumerate(g[:L])],
                "bits": [self.bits[b] for b in g[L:]]}

    # ---- objectives -----------------------------------------------------------------------------

    def layer_bytes(self, i: int, s: int, b: int) -> int:
        """Packed bytes of layer ``i`` at (sparsity level ``s``, bit index ``b``), bias excluded."""
        N, K = self.shapes[i]
        nnz = int(self.nnz[i, s])
        bits = self.bits[b]
        return int(packed_bytes(N, K, nnz=None if nnz == N * K else nnz, bits=None if bits == FLOAT_BITS else bits,
                                group_size=self.group_size, symmetric=self.symmetric, values_dtype="float16"))

    def bytes(self, genomes: Any) -> np.ndarray:
        """Packed bytes of the linear layers of each genome, int64 [B]."""
        g = self.check(genomes)
        L = self.n_layers
        return self._bytes[np.arange(L)[None, :], g[:, :L], g[:, L:]].sum(axis=1)

    def spec(self, i: int, s: int, b: int) -> dict:
        """The layer's packing as an :func:`evoforge.layers.apply` spec (for latency tables)."""
        N, K = self.shapes[i]
        out: dict[str, Any] = {}
        pruned = N * K - int(self.nnz[i, s])
        if pruned:
            out.update(sparsity=round(pruned / (N * K), 3), values_dtype="float16")
        if self.bits[b] != FLOAT_BITS:
            out.update(bits=self.bits[b], group_size=self.group_size, symmetric=self.symmetric)
        return out

    # ---- weights and modules --------------------------------------------------------------------

    def module(self, i: int, s: int, b: int, bias: torch.Tensor | None = None) -> nn.Module:
        """The CPU module layer ``i`` is at (``s``, ``b``) (see the module docstring)."""
        W = self.db.weight(i, s).float()
        N, K = self.shapes[i]
        bits = self.bits[b]
        bias = None if bias is None else bias.detach().float().cpu()
        if int(self.nnz[i, s]) == N * K:
            if bits == FLOAT_BITS:
                lin = nn.Linear(K, N, bias=bias is not None)
                with torch.no_grad():
                    lin.weight.copy_(W.half().float())
                    if bias is not None:
                        lin.bias.copy_(bias)
                return lin
            lin = nn.Linear(K, N, bias=bias is not None)
            with torch.no_grad():
                lin.weight.copy_(W)
                if bias is not None:
                    lin.bias.copy_(bias)
            return QuantLinear.from_linear(lin, bits=bits, group_size=self.group_size, symmetric=self.symmetric)
        kw: dict[str, Any] = {"values_dtype": "float16"}
        if bits != FLOAT_BITS:
            kw = {"bits": bits, "group_size": self.group_size, "symmetric": self.symmetric}
        return SparseLinear.from_dense(W, bias, format="unstructured", **kw)

    def _load(self, i: int, j: int) -> torch.Tensor:
        s, b = divmod(int(j), self.n_b)
        m = self.module(i, s, b)
        if isinstance(m, QuantLinear):
            W = m.dequantize()
        elif isinstance(m, SparseLinear):
            W = m.to_dense()
        else:
            W = m.weight.detach()
        return W.to(self._device)
