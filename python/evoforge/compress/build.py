"""Building a layer database (:func:`build_database`): every level of every linear layer of a model,
computed once and stored for the search to read (the format: :mod:`evoforge.compress.database`).

Sparsity (``"magnitude"``, ``"wanda"``, ``"sparsegpt"``): a target sparsity ``s`` and levels
``k = -n .. +n``. Level ``k`` of a layer with ``numel`` weights prunes exactly
``round(s * numel) + k * step`` weights, ``step`` being the same absolute number for every layer
(as in EvoPress), so moving one layer up a level and another down keeps the model's total exactly.
Levels whose pruned count falls outside ``[0, numel)`` are left out (small layers have coarse
ladders). The cost of a level is its number of non-zeros, ``numel - pruned``.

* magnitude: the smallest ``|w|`` of the whole layer;
* Wanda: per output row, the smallest ``|w_ij| * ||X_j||_2`` (row counts from
  :func:`evoforge.solvers.prune_counts`, so the layer total is exact); no weight update;
* SparseGPT: :func:`evoforge.solvers.sparsegpt_levels`, one factorisation of H for the ladder.

Quantisation (``"rtn"``, ``"gptq"``): the level is the bit-width (default 2..8), with a group
size and a symmetric flag (:func:`evoforge.solvers.rtn` / :func:`evoforge.solvers.gptq_levels`).
The cost of a level is ``bits * numel``; the metadata cost adds the scales (16 bits each) and,
when asymmetric, the zero points (``bits`` each) of every group.

Devices: the build runs where the model is. The calibration forward and its statistics run on the
model's device; each layer's weight stays there, and its levels are computed there: magnitude and
Wanda in torch, SparseGPT, GPTQ and RTN by the C++ kernels on the CPU and by their torch twins
(:mod:`evoforge.solvers._torch`, equal up to rounding; RTN bit for bit) on a GPU. H is factorised on
the host (float64, :func:`evoforge.solvers.factor_hessian`), the same factor for both. Levels are
copied to the host only to be written.

The ladder defaults are the compression configs' (:mod:`evoforge.compress.config`): one default
per knob. Magnitude and RTN need no calibration (``tokens`` may be None); the others collect the
layer statistics (:func:`evoforge.compress.hessians.collect_hessians`) unless ``stats`` are given.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import solvers
from ..solvers import _torch as device_solvers
from .._checks import INT_MAX, check_int
from ..errors import ConfigError
from ..hashing import Hasher
from ..random import check_prob
from .adapters import ModelAdapter
from .config import CompressConfig, QuantConfig, SparsityConfig
from .database import (
    _F16_TINY,
    _NEEDS_CALIBRATION,
    _SCALE_BITS,
    _VALUE_DTYPES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    QUANT_METHODS,
    SPARSITY_METHODS,
    LayerDatabase,
)
from .hessians import LayerStats, _pos_int, collect_hessians
from .tokens import check_tokens, vocab_size

__all__ = ["build_database", "fraction_ladder", "sparsity_ladder"]


def sparsity_ladder(numel: int, target: float, n_levels: int, step: int) -> list[tuple[int, int]]:
    """``[(level k, pruned count)]`` for ``k = -n_levels .. n_levels`` whose count lies in [0, numel).

    The count at level k is ``round(target * numel) + k * step`` (round half up).
    """
    numel, n_levels, step = check_int(numel, "numel", 0), check_int(n_levels, "n_levels", 0), check_int(step, "step")
    base = math.floor(check_prob(target, "target") * numel + 0.5)
    lo, hi = max(-n_levels, -(base // step)), min(n_levels, (numel - 1 - base) // step)  # only the levels present
    return [(k, base + k * step) for k in range(lo, hi + 1)]


def fraction_ladder(numel: int, fractions: Sequence[float], name: str = "layer") -> list[tuple[int, int]]:
    """``[(level k, pruned count)]`` for ``k = 0 .. len(fractions) - 1``: level k prunes
    ``round(fractions[k] * numel)`` weights (round half up), the same shares in every layer (a
    front's ladder, where budgets need not be preserved by level moves). ConfigError when a share
    would prune every weight of the layer ``name``."""
    numel = check_int(numel, "numel", 1)
    out = [(k, math.floor(check_prob(f, "fraction") * numel + 0.5)) for k, f in enumerate(fractions)]
    full = [f for f, (_, p) in zip(fractions, out) if p >= numel]
    if full:
        raise ConfigError(f"sparsity {full[0]} prunes every weight of {name} ({numel} weights); use smaller shares")
    return out


def _magnitude_levels(W: torch.Tensor, counts: Sequence[int]) -> list[torch.Tensor]:
    flat = W.reshape(-1)
    order = torch.argsort(flat.abs(), stable=True)
    out = []
    for p in counts:
        Wl = flat.clone()
        Wl[order[:p]] = 0
        out.append(Wl.reshape(W.shape))
    return out


def _wanda_levels(W: torch.Tensor, sq_norm: torch.Tensor, counts: Sequence[int]) -> list[torch.Tensor]:
    rows, cols = W.shape
    score = W.abs().to(torch.float64) * sq_norm.to(device=W.device, dtype=torch.float64).sqrt()[None, :]
    order = torch.argsort(score, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(cols, device=W.device).expand(rows, cols).contiguous())
    out = []
    for p in counts:
        per_row = torch.from_numpy(solvers.prune_counts(rows, cols, cols, p / (rows * cols))[:, 0].astype(np.int64))
        out.append(torch.where(rank < per_row.to(W.device)[:, None], torch.zeros((), dtype=W.dtype), W))
    return out


def _quant_metadata_bits(rows: int, cols: int, bits: int, group_size: int, symmetric: bool) -> int:
    groups = -(-cols // group_size) if 0 < group_size < cols else 1
    return rows * groups * (_SCALE_BITS + (0 if symmetric else bits))



# ---- building -----------------------------------------------------------------------------------


def _tokens_digest(tokens: torch.Tensor) -> str:
    return Hasher().update(tokens.detach().cpu()).hexdigest()


def build_database(
    adapter: ModelAdapter,
    tokens: torch.Tensor | None,
    out_dir: str | os.PathLike,
    *,
    method: str,
    sparsity: float = SparsityConfig.target,
    n_levels: int = SparsityConfig.db_levels,
    step: int | None = SparsityConfig.db_step,
    bits: Sequence[int] = QuantConfig.bits,
    group_size: int = QuantConfig.group_size,
    symmetric: bool = QuantConfig.symmetric,
    percdamp: float = 0.01,
    blocksize: int = 128,
    batch_size: int = CompressConfig.batch_size,
    calibration: dict | None = None,
    stats: LayerStats | None = None,
    overwrite: bool = False,
    progress: bool = False,
    values_dtype: str | None = None,
    compute_dtype: str | None = None,
    fractions: Sequence[float] | None = None,
) -> LayerDatabase:
    """Compute every level of every linear layer of ``adapter`` and store them in ``out_dir``.

    Parameters
    ----------
    adapter : ModelAdapter of the dense model (unchanged by the build).
    tokens : torch.LongTensor (n, length), or None for ``"magnitude"`` and ``"rtn"``
        Calibration tokens (see :mod:`evoforge.compress.calibration`).
    out_dir : directory to create (must not hold a database unless ``overwrite``).
    method : ``"magnitude" | "wanda" | "sparsegpt"`` (sparsity) or ``"rtn" | "gptq"`` (quantisation).
    sparsity : float in [0, 1), the target (level 0) of a sparsity ladder.
    n_levels : int >= 0, levels on each side of the target.
    fractions : shares in [0, 1), optional
        Instead of ``sparsity`` / ``n_levels`` / ``step``: level k prunes ``fractions[k]`` of every
        layer (sorted ascending; :func:`fraction_ladder`), the ladder of a front
        (:class:`~evoforge.compress.config.FrontConfig`).
    step : int >= 1 or None
        Weights pruned per level step, the same in every layer. None: 5% of the median layer's
        numel (rounded, at least 1).
    bits : bit-widths of a quantisation ladder, each in [2, 8].
    group_size : int >= 1 or -1 (one group per row), default 64; symmetric : bool, default False.
    percdamp, blocksize : SparseGPT / GPTQ settings (see :mod:`evoforge.solvers`).
    batch_size : sequences per forward when collecting the Hessians.
    calibration : dict, optional
        How ``tokens`` were made (e.g. ``{"source": "samples", "seed": 0}``), stored in the
        manifest with n, length and a digest of the tokens.
    stats : LayerStats, optional
        Statistics already collected from these tokens (skips :func:`collect_hessians`).
    overwrite : bool
        Replace an existing database in ``out_dir``.
    progress : bool
        A progress bar over the layers (tqdm).
    values_dtype : ``"float16" | "bfloat16" | "float32"`` or None
        How sparsity levels store their non-zeros (see Storage above). None: bfloat16 for bfloat16
        layers, else float16.
    compute_dtype : None or ``"bfloat16"``: the calibration forward of :func:`collect_hessians`
        under bfloat16 autocast (recorded in the manifest's calibration); no effect with ``stats``.

    Returns
    -------
    LayerDatabase, opened on ``out_dir``.
    """
    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"adapter must be a ModelAdapter (evoforge.compress.adapt(model)), got {type(adapter).__name__}")
    if method not in SPARSITY_METHODS + QUANT_METHODS:
        raise ConfigError(f"method must be one of {SPARSITY_METHODS + QUANT_METHODS}, got {method!r}")
    is_sparse = method in SPARSITY_METHODS
    if values_dtype is not None and values_dtype not in _VALUE_DTYPES:
        raise ConfigError(f"values_dtype must be one of {tuple(_VALUE_DTYPES)} or None, got {values_dtype!r}")
    layers = adapter.linear_layers()
    params: dict[str, Any]
    if is_sparse:
        if fractions is not None:
            fr = sorted({float(check_prob(f, "fractions")) for f in fractions})
            if not fr or fr[-1] >= 1.0:
                raise ConfigError(f"fractions must be a non-empty list of shares in [0, 1), got {list(fractions)}")
            for r in layers:  # before any statistics are collected
                fraction_ladder(r.numel, fr, r.name)
            params = {"fractions": fr}
        else:
            s = float(sparsity)
            if not 0.0 <= s < 1.0:
                raise ConfigError(f"sparsity must lie in [0, 1), got {sparsity}")
            n_levels = _pos_int(n_levels, "n_levels", 0)
            if step is None:
                step = max(1, round(0.05 * float(np.median([r.numel for r in layers]))))
            step = _pos_int(step, "step")
            params = {"sparsity": s, "n_levels": n_levels, "step": step}
        if method == "sparsegpt":
            blocksize = _pos_int(blocksize, "blocksize")
            params.update(percdamp=float(percdamp), blocksize=blocksize)
    else:
        blist = sorted({_pos_int(b, "bits", 2) for b in bits})
        if not blist or blist[-1] > 8:
            raise ConfigError(f"bits must be a non-empty list of ints in [2, 8], got {list(bits)}")
        group_size = check_int(group_size, "group_size", -1, INT_MAX)
        if group_size == 0:
            raise ConfigError(f"group_size must be -1 or >= 1, got {group_size}")
        if not isinstance(symmetric, bool):
            raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
        params = {"bits": blist, "group_size": group_size, "symmetric": symmetric, "scale_bits": _SCALE_BITS}
        if method == "gptq":
            blocksize = _pos_int(blocksize, "blocksize")
            params.update(percdamp=float(percdamp), blocksize=blocksize)
    calib: dict[str, Any] = dict(calibration or {})
    if method in _NEEDS_CALIBRATION:
        if tokens is None:
            raise ConfigError(f"method {method!r} needs calibration tokens")
        tokens = check_tokens(tokens, "tokens", vocab=vocab_size(adapter.model))
        if stats is None:
            stats = collect_hessians(adapter, tokens, batch_size=batch_size, compute_dtype=compute_dtype)
            if compute_dtype is not None:
                calib["compute_dtype"] = str(compute_dtype).removeprefix("torch.")
        calib.update(n=int(tokens.shape[0]), length=int(tokens.shape[1]), tokens_digest=_tokens_digest(tokens))
    else:
        calib = {"source": "none"}

    out = Path(out_dir)
    if (out / MANIFEST).exists():
        if not overwrite:
            raise FileExistsError(f"{str(out)!r} already holds a layer database; pass overwrite=True to replace it")
        (out / MANIFEST).unlink()
        shutil.rmtree(out / "layers", ignore_errors=True)
    (out / "layers").mkdir(parents=True, exist_ok=True)

    from safetensors.torch import save_file

    entries = []
    factors: dict[str, solvers.HessianFactor] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(layers), desc=f"build-db {method}", unit="layer", leave=False)
    for idx, ref in enumerate(layers):
        if bar is not None:
            bar.update(1)
        W = ref.weight().detach().contiguous()  # on the model's device; the levels are computed there
        host = W.device.type == "cpu"  # the C++ solvers; their torch twins elsewhere
        dtype = W.dtype
        W32 = W.to(torch.float32)
        rows, cols = W.shape
        tensors: dict[str, torch.Tensor] = {}
        entry: dict[str, Any] = {"name": ref.name, "block": ref.block, "kind": ref.kind,
                                 "shape": [rows, cols], "numel": ref.numel, "dtype": str(dtype).removeprefix("torch.")}
        if method in ("sparsegpt", "gptq"):
            key = stats.input_of[ref.name]
            if key not in factors:
                factors.clear()  # layers sharing an input are consecutive
                factors[key] = solvers.factor_hessian(stats.hessians[key].numpy(), percdamp=float(percdamp))
            factor = factors[key]
        if is_sparse:
            ladder = (fraction_ladder(ref.numel, params["fractions"], ref.name) if "fractions" in params else
                      sparsity_ladder(ref.numel, params["sparsity"], params["n_levels"], params["step"]))
            ks, counts = [k for k, _ in ladder], [p for _, p in ladder]
            if method == "magnitude":
                Ws = _magnitude_levels(W32, counts)
            elif method == "wanda":
                Ws = _wanda_levels(W32, stats.sq_norm(ref), counts)
            else:
                solve = solvers.sparsegpt_levels if host else device_solvers.sparsegpt_levels_torch
                Ws = list(solve(W32, factor, [p / ref.numel for p in counts], blocksize=int(blocksize)))
            vdt = _values_dtype(values_dtype, dtype, Ws)
            for k, Wl in zip(ks, Ws):
                tensors.update(_pack_level(k, Wl.to(dtype).cpu(), vdt))
            entry.update(levels=ks, costs=[ref.numel - p for p in counts],
                         sparsity=[p / ref.numel for p in counts], values_dtype=str(vdt).removeprefix("torch."))
        else:
            if method == "rtn":
                rtn = solvers.rtn if host else device_solvers.rtn_torch
                qs = [rtn(W32, b, group_size=group_size, symmetric=symmetric) for b in blist]
            else:
                solve = solvers.gptq_levels if host else device_solvers.gptq_levels_torch
                qs = solve(W32, factor, blist, group_size=group_size, symmetric=symmetric, blocksize=int(blocksize))
            for b, ql in zip(blist, qs):
                tensors[f"q.{b}"] = ql.q.cpu().contiguous()
                tensors[f"scales.{b}"] = ql.scales.to(torch.float32).cpu().contiguous()
                tensors[f"zeros.{b}"] = ql.zeros.to(torch.float32).cpu().contiguous()
                tensors[f"g_idx.{b}"] = ql.g_idx.cpu().contiguous()
            entry.update(levels=list(blist), costs=[b * ref.numel for b in blist],
                         metadata_bits=[_quant_metadata_bits(rows, cols, b, group_size, symmetric) for b in blist])
        fname = f"layers/{idx:04d}.safetensors"
        save_file(tensors, str(out / fname), metadata={"layer": ref.name})
        entry.update(file=fname, file_bytes=(out / fname).stat().st_size)
        entries.append(entry)

    if bar is not None:
        bar.close()
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_fingerprint": adapter.fingerprint(),
        "architecture": adapter.architecture,
        "method": method,
        "kind": "sparsity" if is_sparse else "quant",
        "params": params,
        "calibration": calib,
        "storage": "sparse" if is_sparse else "codes+grids",
        "total_bytes": sum(e["file_bytes"] for e in entries),
        "layers": entries,
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / MANIFEST)
    return LayerDatabase.open(out)


def _values_dtype(requested: str | None, layer_dtype: torch.dtype, levels: Sequence[torch.Tensor]) -> torch.dtype:
    if requested is None:
        requested = "bfloat16" if layer_dtype == torch.bfloat16 else "float16"
    vdt = _VALUE_DTYPES[requested]
    if vdt == torch.float16 and any(float(W.abs().max()) > float(torch.finfo(torch.float16).max) for W in levels):
        return torch.float32  # out of float16's range: this layer stays exact
    return vdt


def _pack_level(k: int, W: torch.Tensor, vdt: torch.dtype) -> dict[str, torch.Tensor]:
    """``mask.<k>`` and ``values.<k>`` of one level (see Storage in the module docstring)."""
    keep = W != 0
    mask = torch.from_numpy(np.packbits(keep.numpy(), axis=1, bitorder="little"))
    v = W[keep]
    if vdt != v.dtype and vdt in (torch.float16, torch.bfloat16):
        tiny = _F16_TINY if vdt == torch.float16 else float(torch.finfo(torch.bfloat16).smallest_normal)
        v = v.float()
        v = torch.where(v.abs() < tiny, torch.copysign(torch.full_like(v, tiny), v), v)  # never rounds to 0
    return {f"mask.{k}": mask.contiguous(), f"values.{k}": v.to(vdt).contiguous()}
