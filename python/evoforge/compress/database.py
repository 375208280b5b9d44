"""Layer databases: for every linear layer of a model, a ladder of compressed variants (levels).

A compression search picks one level per layer; the database holds the weights of every level so
the search only reads them. Built by :func:`build_database`, opened by :meth:`LayerDatabase.open`.

Methods and their ladders
-------------------------
Sparsity (``"magnitude"``, ``"wanda"``, ``"sparsegpt"``): a target sparsity ``s`` and levels
``k = -n .. +n``. Level ``k`` of a layer with ``numel`` weights prunes exactly
``round(s * numel) + k * step`` weights, ``step`` being the same absolute number for every layer
(as in EvoPress), so moving one layer up a level and another down keeps the model's total exactly.
Levels whose pruned count falls outside ``[0, numel)`` are left out (small layers have coarse
ladders); ``LayerDatabase.levels`` lists those present. The cost of a level is its number of
non-zeros, ``numel - pruned``.

* magnitude: the smallest ``|w|`` of the whole layer;
* Wanda: per output row, the smallest ``|w_ij| * ||X_j||_2`` (row counts from
  :func:`evoforge.solvers.prune_counts`, so the layer total is exact); no weight update;
* SparseGPT: :func:`evoforge.solvers.sparsegpt_levels`, one factorisation of H for the ladder.

Quantisation (``"rtn"``, ``"gptq"``): the level is the bit-width (default 2..8), with a group
size and a symmetric flag (:func:`evoforge.solvers.rtn` / :func:`evoforge.solvers.gptq_levels`).
The cost of a level is ``bits * numel``; ``cost(..., include_metadata=True)`` adds the scales
(16 bits each) and, when asymmetric, the zero points (``bits`` each) of every group.

Storage
-------
A directory with ``manifest.json`` and one safetensors file per layer (``layers/NNNN.safetensors``).
Sparsity levels are stored sparse (format version 2): ``"mask.<k>"`` uint8 (out, ceil(in / 8)), the
non-zeros as ``numpy.packbits(W != 0, axis=1, bitorder="little")``, and ``"values.<k>"`` (nnz,), the
non-zeros in row-major order, in float16 by default (``values_dtype``; bfloat16 for bfloat16 layers;
float32 is lossless for float32 models). A float32 value too small for float16 is stored as the
smallest float16 of its sign, never as 0, so every level keeps its exact count of non-zeros; a layer
with a value beyond float16's range is stored in float32. At 50% sparsity that is 1.1 bytes per weight
and level against 4 for dense float32. Version-1 databases (dense ``"level.<k>"``) are still read.
Quantisation levels are stored as codes and grids: ``"q.<b>"`` uint8 (out, in), ``"scales.<b>"``
and ``"zeros.<b>"`` (out, G) in float32, ``"g_idx.<b>"`` int32 (in,); the weight is
``scales[:, g_idx] * (q - zeros[:, g_idx])`` (bit-identical to the solver's output) cast to the
layer's dtype. The manifest is written last, so an interrupted build leaves no manifest.

Calibration
-----------
:func:`collect_hessians` runs the dense model once over the calibration tokens and accumulates,
per distinct layer input, ``H = 2 X^T X / n`` (float64, shape (C, C)) and the squared column norms
``sum_t x_tj^2`` (float64, shape (C,)). Layers that read the same tensor (q/k/v, gate/up) share one
entry. Magnitude and RTN need no calibration (``tokens`` may be None).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from ..errors import ConfigError, EvoforgeError
from ..hashing import Hasher
from .adapters import LayerRef, ModelAdapter
from .fitness import _compute_dtype

__all__ = [
    "FORMAT_VERSION",
    "QUANT_METHODS",
    "SPARSITY_METHODS",
    "CorruptDatabaseError",
    "DatabaseMismatchError",
    "LayerDatabase",
    "LayerStats",
    "build_database",
    "collect_hessians",
    "sparsity_ladder",
]

FORMAT = "evoforge.layer_database"
FORMAT_VERSION = 2
_READS = (1, 2)  # version 1: sparsity levels stored dense
MANIFEST = "manifest.json"
SPARSITY_METHODS = ("magnitude", "wanda", "sparsegpt")
QUANT_METHODS = ("rtn", "gptq")
_NEEDS_CALIBRATION = frozenset({"wanda", "sparsegpt", "gptq"})
_SCALE_BITS = 16  # a group's scale counted as fp16 in the metadata cost
_VALUE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_F16_TINY = float(torch.finfo(torch.float16).smallest_normal) * 2.0**-10  # the smallest float16 subnormal


class CorruptDatabaseError(EvoforgeError, ValueError):
    """The database directory has no readable manifest, or its files do not match it."""


class DatabaseMismatchError(ConfigError):
    """The database was built from another model (fingerprint mismatch) or with other settings."""


# ---- calibration statistics ---------------------------------------------------------------------

# Layers that read the same input inside a block, by kind (fused layers are one module already).
_SHARED_INPUT = {"q": "attn_in", "k": "attn_in", "v": "attn_in", "qkv": "attn_in",
                 "gate": "mlp_in", "up": "mlp_in", "gate_up": "mlp_in"}


@dataclasses.dataclass
class LayerStats:
    """Input statistics of the linear layers from :func:`collect_hessians`.

    Attributes
    ----------
    hessians : dict of input key -> torch.Tensor, float64, (C, C), CPU
        ``2 X^T X / n`` over the n calibration positions.
    sq_norms : dict of input key -> torch.Tensor, float64, (C,), CPU
        ``sum_t x_tj^2``, the squared L2 norm of each input column (Wanda's ``||X_j||^2``).
    input_of : dict of layer name -> input key
        Layers that share their input share a key.
    n_samples : int
        Token positions seen (n).
    """

    hessians: dict[str, torch.Tensor]
    sq_norms: dict[str, torch.Tensor]
    input_of: dict[str, str]
    n_samples: int

    def hessian(self, layer: str | LayerRef) -> torch.Tensor:
        return self.hessians[self.input_of[_name(layer)]]

    def sq_norm(self, layer: str | LayerRef) -> torch.Tensor:
        return self.sq_norms[self.input_of[_name(layer)]]


def _name(layer: Any) -> str:
    return layer.name if isinstance(layer, LayerRef) else str(layer)


def _check_tokens(tokens: Any) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.LongTensor of shape (n, length), got {type(tokens).__name__}")
    if tokens.dtype != torch.long or tokens.ndim != 2 or tokens.numel() == 0:
        raise ConfigError(f"tokens must be a non-empty int64 tensor of shape (n, length), got {tokens.dtype} "
                          f"with shape {list(tokens.shape)}")
    return tokens


def _pos_int(x: Any, name: str, lo: int = 1) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    if int(x) < lo:
        raise ConfigError(f"{name} must be >= {lo}, got {x}")
    return int(x)


def collect_hessians(adapter: ModelAdapter, tokens: torch.Tensor, *, batch_size: int = 8,
                     compute_dtype: str | None = None) -> LayerStats:
    """Run the dense model once over ``tokens`` and collect each linear layer's input statistics.

    Forward pre-hooks on every module of ``adapter.linear_layers()`` accumulate ``X^T X`` and
    ``sum x^2`` (float32 per forward, summed in float64) on the model's device, once per distinct input: layers that receive the
    same tensor in a block (q/k/v, gate/up) share it; a layer whose input turns out to be another
    tensor gets its own entry. Runs under ``torch.inference_mode()``; the model is not changed.

    Parameters
    ----------
    adapter : ModelAdapter
    tokens : torch.LongTensor, shape (n, length)
    batch_size : int >= 1
        Sequences per forward.
    compute_dtype : None, ``"bfloat16"`` or ``"float16"``
        Run the forward under ``torch.autocast`` in that dtype (bfloat16: about 2.5x faster on CPUs
        with AMX or AVX-512 BF16); the layer inputs are then rounded to it, the Gram matrices stay
        float32 GEMMs summed in float64. None: the model's dtype.
    """
    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"adapter must be a ModelAdapter (evoforge.compress.adapt(model)), got {type(adapter).__name__}")
    tokens = _check_tokens(tokens)
    batch_size = _pos_int(batch_size, "batch_size")
    layers = adapter.linear_layers()
    dev = next(adapter.model.parameters()).device
    input_of: dict[str, str] = {}
    for r in layers:
        shared = _SHARED_INPUT.get(r.kind)
        input_of[r.name] = f"block{r.block}.{shared}" if shared else r.name
    xtx: dict[str, torch.Tensor] = {}
    sq: dict[str, torch.Tensor] = {}
    seen: dict[str, torch.Tensor] = {}  # input key -> the tensor accumulated in this forward
    count = [0]

    def hook_for(ref: LayerRef):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            x = args[0]
            key = input_of[ref.name]
            prev = seen.get(key)
            if prev is not None:
                if prev is x:
                    return
                # not the same tensor after all: this layer gets its own statistics
                key = input_of[ref.name] = ref.name
                if key in seen:
                    return
            x2 = x.detach().reshape(-1, x.shape[-1]).float()
            if key not in xtx:
                C = x2.shape[1]
                xtx[key] = torch.zeros((C, C), dtype=torch.float64, device=x2.device)
                sq[key] = torch.zeros(C, dtype=torch.float64, device=x2.device)
            # one float32 GEMM per forward (a float64 one costs more than the forward itself),
            # summed over forwards in float64; never in bfloat16, even under the forward's autocast
            with torch.autocast(device_type=x2.device.type, enabled=False):
                xtx[key].add_(x2.T @ x2)
            sq[key].add_((x2 * x2).sum(0))
            seen[key] = x
        return hook

    handles = [r.module.register_forward_pre_hook(hook_for(r)) for r in layers]
    # the backbone alone: the LM head's logits (B x T x vocab) are a fifth of the FLOPs and unused
    backbone = adapter.model.base_model
    cdt = _compute_dtype(compute_dtype, next(adapter.model.parameters()).dtype)
    autocast = contextlib.nullcontext() if cdt is None else torch.autocast(device_type=dev.type, dtype=cdt)
    try:
        with torch.inference_mode(), autocast:
            for b0 in range(0, tokens.shape[0], batch_size):
                ids = tokens[b0:b0 + batch_size].to(dev)
                seen.clear()
                backbone(input_ids=ids, use_cache=False)
                count[0] += ids.numel()
    finally:
        seen.clear()
        for h in handles:
            h.remove()
    n = count[0]
    missing = [r.name for r in layers if input_of[r.name] not in xtx]
    if missing:
        raise RuntimeError(f"no input reached {missing[:3]} during the forward pass")
    hessians = {k: (v * (2.0 / n)).cpu() for k, v in xtx.items()}
    return LayerStats(hessians=hessians, sq_norms={k: v.cpu() for k, v in sq.items()},
                      input_of=input_of, n_samples=n)


# ---- ladders ------------------------------------------------------------------------------------


def sparsity_ladder(numel: int, target: float, n_levels: int, step: int) -> list[tuple[int, int]]:
    """``[(level k, pruned count)]`` for ``k = -n_levels .. n_levels`` whose count lies in [0, numel).

    The count at level k is ``round(target * numel) + k * step`` (round half up).
    """
    base = math.floor(target * numel + 0.5)
    out = []
    for k in range(-n_levels, n_levels + 1):
        p = base + k * step
        if 0 <= p < numel:
            out.append((k, p))
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
    score = W.abs().to(torch.float64) * sq_norm.to(torch.float64).sqrt()[None, :]
    order = torch.argsort(score, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(cols).expand(rows, cols).contiguous())
    out = []
    for p in counts:
        per_row = torch.from_numpy(solvers.prune_counts(rows, cols, cols, p / (rows * cols))[:, 0].astype(np.int64))
        out.append(torch.where(rank < per_row[:, None], torch.zeros((), dtype=W.dtype), W))
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
    sparsity: float = 0.5,
    n_levels: int = 4,
    step: int | None = None,
    bits: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    group_size: int = 128,
    symmetric: bool = False,
    percdamp: float = 0.01,
    blocksize: int = 128,
    batch_size: int = 8,
    calibration: dict | None = None,
    stats: LayerStats | None = None,
    overwrite: bool = False,
    progress: bool = False,
    values_dtype: str | None = None,
    compute_dtype: str | None = None,
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
    step : int >= 1 or None
        Weights pruned per level step, the same in every layer. None: 5% of the median layer's
        numel (rounded, at least 1).
    bits : bit-widths of a quantisation ladder, each in [2, 8].
    group_size : int >= 1 or -1 (one group per row); symmetric : bool.
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
        s = float(sparsity)
        if not 0.0 <= s < 1.0:
            raise ConfigError(f"sparsity must lie in [0, 1), got {sparsity}")
        n_levels = _pos_int(n_levels, "n_levels", 0)
        if step is None:
            step = max(1, round(0.05 * float(np.median([r.numel for r in layers]))))
        step = _pos_int(step, "step")
        params = {"sparsity": s, "n_levels": n_levels, "step": step}
        if method == "sparsegpt":
            params.update(percdamp=float(percdamp), blocksize=int(blocksize))
    else:
        blist = sorted({_pos_int(b, "bits", 2) for b in bits})
        if not blist or blist[-1] > 8:
            raise ConfigError(f"bits must be a non-empty list of ints in [2, 8], got {list(bits)}")
        group_size = int(group_size)
        if group_size == 0 or group_size < -1:
            raise ConfigError(f"group_size must be -1 or >= 1, got {group_size}")
        if not isinstance(symmetric, bool):
            raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
        params = {"bits": blist, "group_size": group_size, "symmetric": symmetric, "scale_bits": _SCALE_BITS}
        if method == "gptq":
            params.update(percdamp=float(percdamp), blocksize=int(blocksize))
    calib: dict[str, Any] = dict(calibration or {})
    if method in _NEEDS_CALIBRATION:
        if tokens is None:
            raise ConfigError(f"method {method!r} needs calibration tokens")
        tokens = _check_tokens(tokens)
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
        W = ref.weight().detach().to("cpu").contiguous()
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
            ladder = sparsity_ladder(ref.numel, params["sparsity"], params["n_levels"], params["step"])
            ks, counts = [k for k, _ in ladder], [p for _, p in ladder]
            if method == "magnitude":
                Ws = _magnitude_levels(W32, counts)
            elif method == "wanda":
                Ws = _wanda_levels(W32, stats.sq_norm(ref), counts)
            else:
                Ws = list(solvers.sparsegpt_levels(W32, factor, [p / ref.numel for p in counts],
                                                   blocksize=int(blocksize)))
            vdt = _values_dtype(values_dtype, dtype, Ws)
            for k, Wl in zip(ks, Ws):
                tensors.update(_pack_level(k, Wl.to(dtype), vdt))
            entry.update(levels=ks, costs=[ref.numel - p for p in counts],
                         sparsity=[p / ref.numel for p in counts], values_dtype=str(vdt).removeprefix("torch."))
        else:
            if method == "rtn":
                qs = [solvers.rtn(W32, b, group_size=group_size, symmetric=symmetric) for b in blist]
            else:
                qs = solvers.gptq_levels(W32, factor, blist, group_size=group_size, symmetric=symmetric,
                                         blocksize=int(blocksize))
            for b, ql in zip(blist, qs):
                tensors[f"q.{b}"] = ql.q.contiguous()
                tensors[f"scales.{b}"] = ql.scales.to(torch.float32).contiguous()
                tensors[f"zeros.{b}"] = ql.zeros.to(torch.float32).contiguous()
                tensors[f"g_idx.{b}"] = ql.g_idx.contiguous()
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


# ---- reading ------------------------------------------------------------------------------------

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


class LayerDatabase:
    """A layer database opened read-only (:meth:`open`); weights are read lazily, memory-mapped.

    Layers are named as in ``ModelAdapter.linear_layers()`` (``LayerRef.name``); wherever a layer
    is asked for, its name, its index in :attr:`layers` or its ``LayerRef`` is accepted.

    Attributes
    ----------
    path : Path
    manifest : dict, the parsed ``manifest.json``
    method : str;  kind : ``"sparsity"`` or ``"quant"``;  params : dict;  calibration : dict
    model_fingerprint : str
    layers : tuple of str, in model order
    """

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = path
        self.manifest = manifest
        self.method: str = manifest["method"]
        self.kind: str = manifest["kind"]
        self.params: dict = manifest["params"]
        self.calibration: dict = manifest["calibration"]
        self.model_fingerprint: str = manifest["model_fingerprint"]
        self._entries = {e["name"]: e for e in manifest["layers"]}
        self.layers: tuple[str, ...] = tuple(e["name"] for e in manifest["layers"])
        self._handles: dict[str, Any] = {}

    @classmethod
    def open(cls, path: str | os.PathLike, *, model_fingerprint: str | None = None) -> LayerDatabase:
        """Open the database in directory ``path``.

        Parameters
        ----------
        model_fingerprint : str, optional
            ``ModelAdapter.fingerprint()`` of the model it will be applied to; a different one
            raises :class:`DatabaseMismatchError` naming both.

        Raises
        ------
        FileNotFoundError
            No such directory, or no ``manifest.json`` in it.
        CorruptDatabaseError
            The manifest is not valid JSON or not an evoforge layer database of a known version, or a
            layer file is missing or has another size than recorded.
        """
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"layer database directory not found: {str(p)!r}")
        mpath = p / MANIFEST
        if not mpath.is_file():
            raise FileNotFoundError(f"{str(p)!r} has no {MANIFEST}: not a layer database, or its build did not finish")
        try:
            manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptDatabaseError(f"{str(mpath)!r} is not valid JSON ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CorruptDatabaseError(f"{str(mpath)!r} is not an evoforge layer database manifest")
        if manifest.get("version") not in _READS:
            raise CorruptDatabaseError(
                f"{str(mpath)!r} has format version {manifest.get('version')!r}; this evoforge reads {_READS}")
        try:
            for e in manifest["layers"]:
                f = p / e["file"]
                if not f.is_file():
                    raise CorruptDatabaseError(f"layer file {str(f)!r} of {e['name']} is missing")
                if f.stat().st_size != e["file_bytes"]:
                    raise CorruptDatabaseError(
                        f"layer file {str(f)!r} has {f.stat().st_size} bytes, the manifest says {e['file_bytes']}")
            db = cls(p, manifest)
        except (KeyError, TypeError) as e:
            raise CorruptDatabaseError(f"{str(mpath)!r} lacks a field or has a wrong one ({e!r})") from None
        if model_fingerprint is not None and model_fingerprint != db.model_fingerprint:
            raise DatabaseMismatchError(
                f"layer database {str(p)!r} was built from the model with fingerprint {db.model_fingerprint}, "
                f"not from this model (fingerprint {model_fingerprint})")
        return db

    def _entry(self, layer: Any) -> dict:
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
            return self._entries[self.layers[int(layer)]]
        name = _name(layer)
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"layer {name!r} is not in the database {str(self.path)!r}") from None

    def levels(self, layer: Any) -> list[int]:
        """The levels stored for ``layer``, ascending (sparsity offsets k, or bit-widths)."""
        return list(self._entry(layer)["levels"])

    def _level_index(self, e: dict, level: int) -> int:
        try:
            return e["levels"].index(int(level))
        except ValueError:
            raise KeyError(f"level {level} is not stored for {e['name']} (levels: {e['levels']})") from None

    def cost(self, layer: Any, level: int, *, include_metadata: bool = False) -> int:
        """Non-zeros (sparsity) or weight bits (quant) of ``layer`` at ``level``.

        ``include_metadata`` adds the bits of the quantisation grids (scales, and zero points when
        asymmetric); no effect for sparsity.
        """
        e = self._entry(layer)
        i = self._level_index(e, level)
        c = int(e["costs"][i])
        if include_metadata and "metadata_bits" in e:
            c += int(e["metadata_bits"][i])
        return c

    def numel(self, layer: Any) -> int:
        return int(self._entry(layer)["numel"])

    def shape(self, layer: Any) -> tuple[int, int]:
        return tuple(self._entry(layer)["shape"])

    def _file(self, e: dict):
        h = self._handles.get(e["name"])
        if h is None:
            from safetensors import safe_open

            h = self._handles[e["name"]] = safe_open(str(self.path / e["file"]), framework="pt", device="cpu")
        return h

    def weight(self, layer: Any, level: int, *, device: Any = None) -> torch.Tensor:
        """The weight of ``layer`` at ``level``, shape (out, in), the layer's dtype; CPU unless ``device``."""
        e = self._entry(layer)
        self._level_index(e, level)
        f = self._file(e)
        dtype = _DTYPES[e["dtype"]]
        if self.kind == "sparsity" and self.manifest.get("storage") == "sparse":
            rows, cols = e["shape"]
            keep = np.unpackbits(f.get_tensor(f"mask.{int(level)}").numpy(), axis=1, count=cols, bitorder="little")
            W = torch.zeros(rows, cols, dtype=dtype)
            W[torch.from_numpy(keep.view(np.bool_))] = f.get_tensor(f"values.{int(level)}").to(dtype)
        elif self.kind == "sparsity":
            W = f.get_tensor(f"level.{int(level)}")
        else:
            b = int(level)
            q, scales, zeros = f.get_tensor(f"q.{b}"), f.get_tensor(f"scales.{b}"), f.get_tensor(f"zeros.{b}")
            g = f.get_tensor(f"g_idx.{b}").long()
            W = scales[:, g] * (q.to(torch.float32) - zeros[:, g])
        W = W.to(dtype)
        return W if device is None else W.to(device)

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self) -> LayerDatabase:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LayerDatabase({str(self.path)!r}, method={self.method!r}, layers={len(self.layers)})"
