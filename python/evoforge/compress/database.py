"""Layer databases: for every linear layer of a model, a ladder of compressed variants (levels).

A compression search picks one level per layer; the database holds the weights of every level so
the search only reads them. Built by :func:`evoforge.compress.build.build_database` (where the
methods and their ladders are described), opened by :meth:`LayerDatabase.open`. Sparsity ladders
(``"magnitude"``, ``"wanda"``, ``"sparsegpt"``) have levels ``k = -n .. +n`` around a target, each
pruning the same number of weights more in every layer; quantisation ladders (``"rtn"``,
``"gptq"``) have one level per bit-width. ``LayerDatabase.levels`` lists the levels present for a
layer, ``cost`` its non-zeros or weight bits.

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
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CorruptDatabaseError, DatabaseMismatchError
from .architectures import layer_name

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "QUANT_METHODS",
    "SPARSITY_METHODS",
    "CorruptDatabaseError",
    "DatabaseMismatchError",
    "LayerDatabase",
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


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def unpack_mask(mask: torch.Tensor, cols: int) -> torch.Tensor:
    """Bool [rows, cols] of a mask packed as ``numpy.packbits(keep, axis=1, bitorder="little")``
    (uint8 [rows, ceil(cols / 8)]), on the mask's device: bit j of byte b is column 8 b + j."""
    shifts = torch.arange(8, dtype=torch.uint8, device=mask.device)
    bits = (mask.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(mask.shape[0], -1)[:, :cols].bool()


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
        name = layer_name(layer)
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
        """The weight of ``layer`` at ``level``, shape (out, in), the layer's dtype, on ``device``
        (default the CPU). The stored form (mask and non-zeros, or codes and grids) is read from the
        memory-mapped file, copied to the device and decoded there, so a level crosses the bus in
        its compact form; the decoding is exact, the same bits on every device."""
        e = self._entry(layer)
        self._level_index(e, level)
        f = self._file(e)
        dtype = _DTYPES[e["dtype"]]
        dev = torch.device("cpu") if device is None else torch.device(device)

        def get(name: str) -> torch.Tensor:
            return f.get_tensor(name).to(dev)

        if self.kind == "sparsity" and self.manifest.get("storage") == "sparse":
            rows, cols = e["shape"]
            keep = unpack_mask(get(f"mask.{int(level)}"), cols)
            W = torch.zeros(rows, cols, dtype=dtype, device=dev)
            W[keep] = get(f"values.{int(level)}").to(dtype)
        elif self.kind == "sparsity":
            W = get(f"level.{int(level)}")
        else:
            b = int(level)
            q, scales, zeros = get(f"q.{b}"), get(f"scales.{b}"), get(f"zeros.{b}")
            g = get(f"g_idx.{b}").long()
            W = scales[:, g] * (q.to(torch.float32) - zeros[:, g])
        return W.to(dtype)

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self) -> LayerDatabase:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LayerDatabase({str(self.path)!r}, method={self.method!r}, layers={len(self.layers)})"
