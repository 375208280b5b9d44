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
                 depth: bool = False, device: Any = None, dtype: torch.dtype | None = None,
                 cache_bytes: int | str | None = "auto") -> None:
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
        self.depth = bool(depth)
        self.n_s, self.n_b = len(self.fractions), len(self.bits)
        self.drop_level = self.n_s * self.n_b  # the combined level of a layer of a dropped sub-block
        L = self.n_layers
        self.names = list(db.layers)
        self.shapes = [tuple(int(v) for v in db.shape(i)) for i in range(L)]
        for i in range(L):
            if db.levels(i) != list(range(self.n_s)):
                raise ConfigError(f"layer {self.names[i]} has sparsity levels {db.levels(i)}, expected 0..{self.n_s - 1}")
        entries = db.manifest["layers"]
        n_blocks = max(int(e["block"]) for e in entries) + 1
        self.n_sub = 2 * n_blocks if self.depth else 0
        #: sub-block of each layer: attention 0..N-1, then MLP N..2N-1 (the depth genes' order)
        self.sub_block = np.array([int(e["block"]) + (0 if e["kind"] in ("q", "k", "v", "o", "qkv") else n_blocks)
                                   for e in entries], dtype=np.int64)
        self.nnz = np.array([[db.cost(i, s) for s in range(self.n_s)] for i in range(L)], dtype=np.int64)
        self.lower = np.zeros(2 * L + self.n_sub, dtype=np.int32)
        self.upper = np.array([self.n_s - 1] * L + [self.n_b - 1] * L + [1] * self.n_sub, dtype=np.int32)
        self._bytes = np.array([[self.layer_bytes(i, j) for j in range(self.n_levels(i))] for i in range(L)],
                               dtype=np.int64)

    # ---- genomes --------------------------------------------------------------------------------

    def n_levels(self, i: int) -> int:
        return self.n_s * self.n_b + (1 if self.depth else 0)

    def db_level(self, i: int, j: int) -> int:
        return min(int(j), self.drop_level - 1) // self.n_b

    def check(self, genomes: Any) -> np.ndarray:
        """``genomes`` as int64 [B, G] within the bounds, or ConfigError (G = 2L, + 2N with depth)."""
        g = np.asarray(genomes)
        g = g[None, :] if g.ndim == 1 else g
        G = len(self.lower)
        if g.ndim != 2 or g.shape[1] != G or g.dtype.kind not in "iu":
            raise ConfigError(f"front genomes must be integer [B, {G}] (sparsity levels, then bit indices, of "
                              f"{self.n_layers} layers{', then 2N sub-block drops' if self.depth else ''}), got "
                              f"{g.dtype} {list(g.shape)}")
        if ((g < self.lower) | (g > self.upper)).any():
            raise ConfigError("front genome genes outside [lower, upper]")
        return g.astype(np.int64)

    def combined(self, genomes: Any) -> np.ndarray:
        """The per-layer levels KLFitness sees, int64 [B, L]: ``s * n_bits + b``, or
        :attr:`drop_level` for a layer whose sub-block the genome drops."""
        g = self.check(genomes)
        L = self.n_layers
        j = g[:, :L] * self.n_b + g[:, L:2 * L]
        if self.depth:
            j = np.where(g[:, 2 * L:][:, self.sub_block] == 1, self.drop_level, j)
        return j

    def uniform(self) -> np.ndarray:
        """Every uniform configuration (one share and one bit-width in every layer, nothing dropped),
        int32 [n_s * n_b, G], row ``s * n_bits + b``."""
        L = self.n_layers
        return np.array([[s] * L + [b] * L + [0] * self.n_sub for s in range(self.n_s) for b in range(self.n_b)],
                        dtype=np.int32)

    def describe(self, genome: Any) -> dict[str, list]:
        """Per layer: ``layers`` names, ``sparsity`` (share pruned; 1 in a dropped sub-block) and
        ``bits`` (16: float16; 0 when dropped); ``dropped``: the dropped sub-blocks' indices."""
        g = self.check(genome)[0]
        j = self.combined(g[None, :])[0]
        out: dict[str, list] = {"layers": list(self.names), "sparsity": [], "bits": []}
        for i, lv in enumerate(j):
            if lv == self.drop_level:
                out["sparsity"].append(1.0)
                out["bits"].append(0)
                continue
            s, b = divmod(int(lv), self.n_b)
            out["sparsity"].append(1.0 - int(self.nnz[i, s]) / (self.shapes[i][0] * self.shapes[i][1]))
            out["bits"].append(self.bits[b])
        out["dropped"] = [int(k) for k in np.flatnonzero(g[2 * self.n_layers:])]
        return out

    # ---- objectives -----------------------------------------------------------------------------

    def layer_bytes(self, i: int, j: int) -> int:
        """Packed bytes of layer ``i`` at combined level ``j``, bias excluded (a dropped layer: an
        all-zero SparseLinear, its mask and row pointers)."""
        N, K = self.shapes[i]
        if j == self.drop_level:
            return int(packed_bytes(N, K, nnz=0, values_dtype="float16"))
        s, b = divmod(int(j), self.n_b)
        nnz = int(self.nnz[i, s])
        bits = self.bits[b]
        return int(packed_bytes(N, K, nnz=None if nnz == N * K else nnz, bits=None if bits == FLOAT_BITS else bits,
                                group_size=self.group_size, symmetric=self.symmetric, values_dtype="float16"))

    def bytes(self, genomes: Any) -> np.ndarray:
        """Packed bytes of the linear layers of each genome, int64 [B]."""
        j = self.combined(genomes)
        return self._bytes[np.arange(self.n_layers)[None, :], j].sum(axis=1)

    def spec(self, i: int, j: int) -> dict:
        """Layer ``i`` at combined level ``j`` as an :func:`evoforge.layers.apply` spec (for latency
        tables; a dropped layer as 99.9% sparse)."""
        N, K = self.shapes[i]
        if j == self.drop_level:
            return {"sparsity": 0.999, "values_dtype": "float16"}
        s, b = divmod(int(j), self.n_b)
        out: dict[str, Any] = {}
        pruned = N * K - int(self.nnz[i, s])
        if pruned:
            out.update(sparsity=round(pruned / (N * K), 3), values_dtype="float16")
        if self.bits[b] != FLOAT_BITS:
            out.update(bits=self.bits[b], group_size=self.group_size, symmetric=self.symmetric)
        return out

    # ---- weights and modules --------------------------------------------------------------------

    def module(self, i: int, j: int, bias: torch.Tensor | None = None) -> nn.Module:
        """The CPU module of layer ``i`` at combined level ``j`` (see the module docstring; a dropped
        layer: an all-zero SparseLinear with a zero bias, which computes nothing)."""
        N, K = self.shapes[i]
        bias = None if bias is None else bias.detach().float().cpu()
        if j == self.drop_level:
            return SparseLinear.from_dense(torch.zeros(N, K), None if bias is None else torch.zeros_like(bias),
                                           values_dtype="float16")
        s, b = divmod(int(j), self.n_b)
        W = self.db.weight(i, s).float()
        bits = self.bits[b]
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
        m = self.module(i, int(j))
        if isinstance(m, QuantLinear):
            W = m.dequantize()
        elif isinstance(m, SparseLinear):
            W = m.to_dense()
        else:
            W = m.weight.detach()
        return W.to(self._device)
