"""Sparse (and sparse + quantised) linear layers: packed formats, Y = X W^T kernels, SparseLinear.

Formats (cpp/include/evoforge/sparse.h; the v1 packed-format contract)
-----------------------------------------------------------------------
``"unstructured"`` (CPU only): a bitmask and the kept values. Chosen over CSR because at 50-70%
sparsity it costs 1 bit per weight where CSR's 16-bit column indices cost 8-16 bits per kept
value, and batch-1 matmul is bound by the bytes read.

* ``mask`` uint8 [N, ceil(K/8)]: ``numpy.packbits(W != 0, axis=1, bitorder="little")``;
* ``row_ptr`` int64 [N + 1]: kept values before each row;
* ``values`` float32 or float16 [nnz], the kept values in row-major order; or quantised:
  ``packed`` uint8 [ceil(nnz/32) * 4 * bits] (the kept values' codes as one stream in the v1 block
  layout), ``scales`` / ``zeros`` float16 [N, ceil(K/g)] over *original* columns (a kept value at
  column k uses group k // g), so ``W[n, k] = scales[n, k//g] * (q - zeros[n, k//g])``.

``"2:4"`` (the contract): K padded to Kp = ceil(K/32)*32; ``meta`` uint8 [N, Kp/8]; ``values``
float32 / float16 [N, Kp/2], or quantised V: ``packed`` uint8 [N, ceil(Kp/64) * 4 * bits],
``scales`` / ``zeros`` float16 [N, ceil((Kp/2)/g)] (a group of g codes covers 2g columns).

Zeros define the mask: a weight that is exactly 0 is pruned. Quantised values: bits in {2, 3, 4, 8},
group_size in {32, 64, 128, 256} or 0 (per row); symmetric means no zeros tensor (the implied zero
is 2^(bits-1)). Kernels: cpp/sparse.cpp (AVX-512 expand-loads or AVX2 permutes picked at run time,
scalar fallback), any batch size, multithreaded over output rows, results independent of the
thread count.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import _checks
from .._native import core
from ..errors import ConfigError
from .format import BITS, GROUP_SIZES, check_features
from .quant import pack_codes

__all__ = [
    "FORMATS",
    "SparseLinear",
    "pack_sparse",
    "prune_24",
    "quantize_groups",
    "sparse_matmul",
    "unpack_sparse",
]

FORMATS = ("unstructured", "2:4")
DENSE_ROWS = 16  # forward: above this many rows, unpack to dense and use torch's matmul
_SCRATCH = threading.local()
_CPU_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_BUFFERS = ("mask", "row_ptr", "meta", "values", "packed", "scales", "zeros")
VALUES_DTYPES = {"float32": torch.float32, "float16": torch.float16}  # what the kernels read


def values_dtype_of(values_dtype: Any) -> torch.dtype:
    """The torch dtype of float kept values, given as a torch dtype or its name ("float16",
    "torch.float16"). A config string naming another dtype is a ConfigError; any other object,
    or another torch dtype, a TypeError."""
    if isinstance(values_dtype, str):
        dt = VALUES_DTYPES.get(values_dtype.removeprefix("torch."))
        if dt is None:
            raise ConfigError(f"values_dtype must be one of {sorted(VALUES_DTYPES)}, got {values_dtype!r}")
        return dt
    if values_dtype not in VALUES_DTYPES.values():
        raise TypeError(f"values_dtype must be torch.float32 or torch.float16 (or its name), got {values_dtype!r}")
    return values_dtype


# ---- quantised values ------------------------------------------------------------------------------


def quantize_groups(values: np.ndarray, keep: np.ndarray, bits: int, group_size: int,
                    symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Round-to-nearest codes of ``values`` [R, L] in groups of ``group_size`` columns (0: per row).

    The grid is :func:`evoforge.layers.quant.quantize_rtn`'s, but only entries where ``keep`` is True
    set a group's range; the others get the zero point's code (they decode to 0). Returns codes uint8 [R, L], scales
    float16 [R, G] and zeros float16 [R, G] (None when symmetric); scales and zeros are rounded to
    float16 before the codes are computed, so the codes are the nearest for the stored grid.
    """
    v = np.asarray(values, dtype=np.float64)
    R, L = v.shape
    g = L if group_size == 0 else group_size
    G = max(1, -(-L // g))
    pad = np.zeros((R, G * g))
    pad[:, :L] = v
    kp = np.zeros((R, G * g), bool)
    kp[:, :L] = keep
    pv, kv = pad.reshape(R, G, g), kp.reshape(R, G, g)
    qmax = 2**bits - 1
    if symmetric:
        half = 2 ** (bits - 1)
        amax = np.where(kv, np.abs(pv), 0).max(axis=-1)
        # the grid of solvers.rtn / quant.quantize_rtn (GPTQ's), so packed layers match the database
        scale = np.where(amax > 0, 2 * amax / qmax, 1.0).astype(np.float16)
        scale = np.where(scale == 0, np.float16(2**-24), scale)  # tiny ranges underflow float16
        zero = np.full((R, G), half, np.float64)
        zeros = None
    else:
        lo = np.where(kv, pv, np.inf).min(axis=-1)
        hi = np.where(kv, pv, -np.inf).max(axis=-1)
        lo, hi = np.where(np.isfinite(lo), np.minimum(lo, 0), 0), np.where(np.isfinite(hi), np.maximum(hi, 0), 0)
        scale = np.where(hi > lo, (hi - lo) / qmax, 1.0).astype(np.float16)
        scale = np.where(scale == 0, np.float16(2**-24), scale)
        zeros = np.clip(np.round(-lo / scale.astype(np.float64)), 0, qmax).astype(np.float16)
        zero = zeros.astype(np.float64)
    s = scale.astype(np.float64)
    q = np.clip(np.round(pv / s[..., None] + zero[..., None]), 0, qmax)
    # entries not kept get the zero point's code, so they decode to exactly 0 (2:4 fill-ins, padding)
    q = np.where(kv, q, np.clip(np.round(zero), 0, qmax)[..., None]).reshape(R, G * g)[:, :L].astype(np.uint8)
    return q, scale, zeros


# ---- packing -------------------------------------------------------------------------------------


def _check_format(format: str, bits: int | None, group_size: int) -> None:
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if bits is not None and bits not in BITS:
        raise ValueError(f"bits must be one of {BITS} or None (float values), got {bits!r}")
    if group_size not in GROUP_SIZES:
        raise ValueError(f"group_size must be one of {GROUP_SIZES} (0 = one group per row), got {group_size!r}")


def _weight_array(weight: Any) -> np.ndarray:
    if isinstance(weight, torch.Tensor):
        w = _checks.check_tensor(weight, "weight", dtype="float").detach().cpu().float().numpy()
    else:
        w = np.asarray(weight)
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"weight must be 2-D [out_features, in_features] with both >= 1, got shape {w.shape}")
    if w.dtype.kind != "f":
        raise TypeError(f"weight must be floating point, got dtype {w.dtype}")
    if not np.isfinite(w).all():
        r = int(np.argmax(~np.isfinite(w).all(axis=1)))
        raise ValueError(f"weight has NaN or inf (row {r})")
    return w.astype(np.float32)


def prune_24(weight: torch.Tensor) -> torch.Tensor:
    """A float32 CPU copy of ``weight`` [N, K] with the 2 smallest ``|w|`` of every 4 consecutive
    weights along K zeroed (ties: the first); a weight that is 2:4 sparse already is unchanged."""
    W = weight.detach().float().cpu().clone()  # never write into the caller's weight
    N, K = W.shape
    Kp = -(-K // 4) * 4
    g = torch.nn.functional.pad(W, (0, Kp - K)).reshape(N, Kp // 4, 4)
    drop = g.abs().argsort(dim=-1, stable=True)[..., :2]
    g.scatter_(-1, drop, 0.0)
    return g.reshape(N, Kp)[:, :K].contiguous()


def _select_24(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(meta uint8 [N, Kp/8], kept positions int [N, Kp/4, 2]) for a 2:4 weight; ValueError otherwise."""
    N, K = w.shape
    Kp = -(-K // 32) * 32
    wp = np.zeros((N, Kp), np.float32)
    wp[:, :K] = w
    g = wp.reshape(N, Kp // 4, 4)
    nz = g != 0
    cnt = nz.sum(-1)
    if (cnt > 2).any():
        n, s = np.argwhere(cnt > 2)[0]
        raise ValueError(f"weight is not 2:4 sparse: row {n}, columns {4 * s}..{4 * s + 3} keep {cnt[n, s]} "
                         f"non-zeros (at most 2 of every 4 consecutive weights may be non-zero)")
    # kept = the non-zeros, then the first zero positions to make two (stable sort: non-zeros first)
    order = np.argsort(~nz, axis=-1, kind="stable")[..., :2]
    pos = np.sort(order, axis=-1)
    nib = (pos[..., 0] | (pos[..., 1] << 2)).astype(np.uint8)
    meta = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(meta), pos


def pack_sparse(weight: Any, format: str = "unstructured", *, values_dtype: torch.dtype | str = torch.float32,
                bits: int | None = None, group_size: int = 128, symmetric: bool = True) -> dict[str, torch.Tensor]:
    """Pack a dense weight [N, K] (zeros = pruned) into ``format``; returns the buffers as CPU tensors.

    Parameters
    ----------
    weight : float tensor or array [N, K]
    format : ``"unstructured"`` or ``"2:4"`` (every 4 consecutive weights along K keep at most 2
        non-zeros, else ValueError naming the first bad group)
    values_dtype : torch.float32 or torch.float16 (or "float32" / "float16"), for float values (bits=None)
    bits, group_size, symmetric : quantise the kept values (round to nearest) instead

    Returns dict with ``mask``, ``row_ptr`` (unstructured) or ``meta`` (2:4), and ``values`` or
    ``packed``, ``scales`` (and ``zeros`` unless symmetric), as described in the module docstring.
    """
    _check_format(format, bits, group_size)
    values_dtype = values_dtype_of(values_dtype)
    w = _weight_array(weight)
    N, K = w.shape
    out: dict[str, np.ndarray | None] = {}
    if format == "unstructured":
        keep = w != 0
        out["mask"] = np.packbits(keep, axis=1, bitorder="little")
        out["row_ptr"] = np.concatenate([[0], np.cumsum(keep.sum(1))]).astype(np.int64)
        if bits is None:
            out["values"] = w[keep]
        else:
            q, s, z = quantize_groups(w, keep, bits, group_size, symmetric)
            kept = q[keep]
            out["packed"] = pack_codes(kept[None, :], bits)[0] if kept.size else np.zeros(0, np.uint8)
            out["scales"], out["zeros"] = s, z
    else:
        meta, pos = _select_24(w)
        Kp = meta.shape[1] * 8
        wp = np.zeros((N, Kp), np.float32)
        wp[:, :K] = w
        V = np.take_along_axis(wp.reshape(N, Kp // 4, 4), pos, axis=-1).reshape(N, Kp // 2)
        out["meta"] = meta
        if bits is None:
            out["values"] = V
        else:
            # padding columns (k >= K) are zero weights: they do not set a group's range
            keep = np.zeros((N, Kp // 2), bool)
            keep.reshape(N, Kp // 4, 2)[:] = (pos + np.arange(0, Kp, 4)[None, :, None]) < K
            q, s, z = quantize_groups(V, keep & (V != 0), bits, group_size, symmetric)
            out["packed"], out["scales"], out["zeros"] = pack_codes(q, bits), s, z
    res = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items() if v is not None}
    if "values" in res:
        res["values"] = res["values"].to(values_dtype)
    return res


def _np(t: torch.Tensor, name: str = "buffer") -> np.ndarray:
    """A numpy view of a CPU / CUDA tensor (copied to the CPU) or a numpy array."""
    if isinstance(t, np.ndarray):
        return t
    return _checks.check_tensor(t, name).detach().cpu().numpy()


def _buffer_arrays(buffers: Any) -> dict[str, np.ndarray | None]:
    """The C-contiguous numpy arrays of packed ``buffers`` (pack_sparse's dict; the native code checks
    their shapes and dtypes), None for the buffers it does not hold."""
    if not isinstance(buffers, Mapping):
        raise TypeError(f"buffers must be a dict of tensors (as pack_sparse returns), got {type(buffers).__name__}")
    return {k: (None if buffers.get(k) is None else np.ascontiguousarray(_np(buffers[k], f"buffers[{k!r}]")))
            for k in _BUFFERS}


def _sizes(in_features: Any, threads: Any) -> tuple[int, int]:
    return (_checks.check_int(in_features, "in_features", 1, _checks.INT_MAX),
            _checks.check_int(threads, "threads", -_checks.INT_MAX, _checks.INT_MAX))


def unpack_sparse(buffers: dict[str, torch.Tensor], in_features: int, format: str = "unstructured", *,
                  bits: int | None = None, group_size: int = 128, threads: int = 0,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """The dense float32 weight [N, K] of packed ``buffers`` (the inverse of :func:`pack_sparse`), native.

    ``out``: a float32 [N, K] contiguous CPU tensor to write into (returned), else a new one.
    """
    _check_format(format, bits, group_size)
    in_features, threads = _sizes(in_features, threads)
    arrs = _buffer_arrays(buffers)
    kw = {"out": None if out is None else out.numpy(), "values": arrs["values"], "packed": arrs["packed"],
          "scales": arrs["scales"], "zeros": arrs["zeros"], "bits": 4 if bits is None else int(bits),
          "group_size": int(group_size), "threads": threads}
    if format == "unstructured":
        return torch.from_numpy(core.sparse_unstructured_dense(arrs["mask"], arrs["row_ptr"], in_features, **kw))
    return torch.from_numpy(core.sparse24_dense(arrs["meta"], in_features, **kw))


# ---- the matmul ----------------------------------------------------------------------------------


def sparse_matmul(x: Any, buffers: dict[str, torch.Tensor], in_features: int, format: str = "unstructured", *,
                  bits: int | None = None, group_size: int = 128, bias: torch.Tensor | None = None,
                  threads: int = 0, max_isa: int = 2) -> np.ndarray:
    """Y = X W^T (+ bias) on the packed weight: x float32 [B, K] (array or CPU tensor) -> float32 [B, N].

    ``buffers`` as returned by :func:`pack_sparse`; the native code checks every shape again.
    ``threads`` <= 0: evoforge's default; ``max_isa`` caps the kernel: 2 AVX-512, 1 AVX2, 0 scalar.
    """
    _check_format(format, bits, group_size)
    in_features, threads = _sizes(in_features, threads)
    max_isa = _checks.check_int(max_isa, "max_isa", 0, 2)
    xa = (_checks.check_tensor(x, "x").detach().cpu().float().numpy() if isinstance(x, torch.Tensor)
          else np.asarray(x))
    if xa.ndim != 2 or xa.shape[1] != in_features or xa.shape[0] < 1:
        raise ValueError(f"x must be [B, {in_features}] with B >= 1, got shape {xa.shape}")
    xa = np.ascontiguousarray(xa, dtype=np.float32)
    if not np.isfinite(xa).all():
        raise ValueError("x has NaN or inf")
    arrs = _buffer_arrays(buffers)
    b = None if bias is None else np.ascontiguousarray(_np(bias, "bias"), dtype=np.float32)
    kw = {"values": arrs["values"], "packed": arrs["packed"], "scales": arrs["scales"], "zeros": arrs["zeros"],
          "bits": 4 if bits is None else int(bits), "group_size": int(group_size), "bias": b,
          "threads": threads, "max_isa": max_isa}
    if format == "unstructured":
        return core.sparse_unstructured_matmul(xa, arrs["mask"], arrs["row_ptr"], in_features, **kw)
    return core.sparse24_matmul(xa, arrs["meta"], in_features, **kw)


# ---- the module ----------------------------------------------------------------------------------


class SparseLinear(nn.Module):
    """Drop-in ``nn.Linear`` replacement holding a sparse (optionally quantised) packed weight.

    Build with :meth:`from_linear` / :meth:`from_dense`. ``forward(x [..., in_features])`` ->
    ``[..., out_features]`` in x's dtype: float32 / bfloat16 / float16 CPU tensors with at most
    ``DENSE_ROWS`` rows run the native kernel (computed in float32); 2:4 + quantised values with
    float16 / bfloat16 CUDA inputs run ``evoforge.layers._cuda.sparse24_quant_matmul``; more rows,
    or other devices and formats, unpack the weight to dense (on the CPU) and use torch's matmul.
    Inference only (no autograd).
    Buffers (see the module docstring): ``mask`` + ``row_ptr`` or ``meta``; ``values`` or
    ``packed`` + ``scales`` (+ ``zeros``); ``bias`` float32 [N] or None. The state dict round-trips
    (buffer sizes depend on the weight and are taken from the loaded state).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, format: str = "unstructured",
                 bits: int | None = None, group_size: int = 128, symmetric: bool = True,
                 values_dtype: torch.dtype | str = torch.float32) -> None:
        super().__init__()
        _check_format(format, bits, group_size)
        self.in_features, self.out_features = check_features(in_features, out_features)
        self.format, self.bits, self.group_size, self.symmetric = format, bits, int(group_size), bool(symmetric)
        zero = torch.zeros((self.out_features, self.in_features))
        for k, v in pack_sparse(zero, format, values_dtype=values_dtype, bits=bits, group_size=group_size,
                                symmetric=symmetric).items():
            self.register_buffer(k, v)
        self.register_buffer("bias", torch.zeros(self.out_features) if bias else None)

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None = None, *, format: str = "unstructured",
                   bits: int | None = None, group_size: int = 128, symmetric: bool = True,
                   values_dtype: torch.dtype | str = torch.float32) -> SparseLinear:
        """From a dense weight [out, in] whose zeros are the pruned weights (2:4 is validated).
        ``values_dtype``: a torch dtype or its name ("float32", "float16")."""
        w = _weight_array(weight)
        N, K = w.shape
        if bias is not None:
            _checks.check_tensor(bias, "bias", dtype="float")
            if tuple(bias.shape) != (N,):
                raise ValueError(f"bias must have shape [{N}], got {list(bias.shape)}")
        m = cls(K, N, bias is not None, format=format, bits=bits, group_size=group_size, symmetric=symmetric,
                values_dtype=values_dtype)
        for k, v in pack_sparse(w, format, values_dtype=values_dtype, bits=bits, group_size=group_size,
                                symmetric=symmetric).items():
            setattr(m, k, v)
        if bias is not None:
            m.bias = bias.detach().cpu().float().clone()
        return m

    @classmethod
    def from_linear(cls, linear: nn.Linear, format: str = "unstructured", **kw: Any) -> SparseLinear:
        """From an ``nn.Linear``: its zero weights are the pruned ones; with ``format="2:4"`` the
        weight is first pruned to 2:4 by magnitude (:func:`prune_24`; a 2:4 weight is kept as it is),
        so a dense layer converts. kw as in :meth:`from_dense`."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        _checks.check_tensor(linear.weight, "linear.weight", dtype="float")
        weight = prune_24(linear.weight) if format == "2:4" else linear.weight
        return cls.from_dense(weight, linear.bias, format=format, **kw)

    def _apply(self, fn: Any, recurse: bool = True) -> SparseLinear:
        # a dtype cast of the module (model.half()) moves but never re-types the packed format
        keep = {k: getattr(self, k) for k in (*_BUFFERS, "bias") if getattr(self, k, None) is not None}
        self.__dict__["_native"] = None
        super()._apply(fn, recurse)
        for k, t in keep.items():
            moved = getattr(self, k)
            if moved.dtype != t.dtype:
                setattr(self, k, t.to(moved.device))
        return self

    def buffers_dict(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in _BUFFERS if getattr(self, k, None) is not None}

    def to_dense(self) -> torch.Tensor:
        """The dense float32 weight [out, in] (zeros where pruned)."""
        return unpack_sparse(self.buffers_dict(), self.in_features, self.format, bits=self.bits,
                             group_size=self.group_size)

    @property
    def weight_bytes(self) -> int:
        return int(sum(t.numel() * t.element_size() for t in self.buffers_dict().values()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Hot path (CPU decode): a plain CPU float tensor of at most DENSE_ROWS rows goes straight to
        # the kernel with the cached views; everything else is checked and dispatched below.
        K = self.in_features
        if (type(x) is torch.Tensor and x.is_cpu and x.dtype in _CPU_DTYPES and not x.requires_grad and x.is_contiguous()
                and x.dim() > 0 and x.shape[-1] == K and 0 < x.numel() <= DENSE_ROWS * K):
            xa = (x if x.dtype is torch.float32 else x.float()).numpy()
            fn, args = self._native_call()
            y = fn(xa.reshape(-1, K), *args)
            y = torch.from_numpy(y.reshape(xa.shape[:-1] + (self.out_features,)))
            return y if x.dtype is torch.float32 else y.to(x.dtype)
        _checks.check_tensor(x, "x", dtype="float")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have last dimension {self.in_features}, got shape {tuple(x.shape)}")
        if (x.device.type == "cuda" and self.format == "2:4" and self.bits is not None
                and x.dtype in (torch.float16, torch.bfloat16)):
            from . import _cuda  # the contract's GPU kernel (evoforge.layers._cuda)

            y = _cuda.sparse24_quant_matmul(x.reshape(-1, self.in_features), self.packed, self.meta, self.scales,
                                            getattr(self, "zeros", None), self.bits, self.group_size,
                                            self.out_features).reshape(*x.shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias.to(y.dtype)
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            W = self.to_dense().to(device=x.device, dtype=x.dtype)
            return nn.functional.linear(x, W, None if self.bias is None else self.bias.to(x.device, x.dtype))
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if x2.shape[0] == 0:
            return x.new_zeros((*lead, self.out_features))
        if x2.shape[0] > DENSE_ROWS:  # many rows: a dense matmul beats expanding the weight per tile
            W = self._dense_scratch()
            W = W if x.dtype == torch.float32 else W.to(x.dtype)
            return nn.functional.linear(x, W, None if self.bias is None else self.bias.to(x.dtype))
        xa = x2.detach().float().contiguous().numpy()
        fn, args = self._native_call()
        y = fn(xa, *args)
        return torch.from_numpy(y).to(x.dtype).reshape(*lead, self.out_features)

    def _dense_scratch(self) -> torch.Tensor:
        # The dense weight in a per-thread buffer shared by the layers of one shape: a fresh
        # [N, K] allocation per call costs more in page faults than the unpacking itself.
        key = (self.out_features, self.in_features)
        bufs = _SCRATCH.__dict__.setdefault("by_shape", {})
        buf = bufs.get(key)
        if buf is None:
            buf = bufs[key] = torch.empty(key, dtype=torch.float32)
        return unpack_sparse(self.buffers_dict(), self.in_features, self.format, bits=self.bits,
                             group_size=self.group_size, out=buf)

    def _native_call(self) -> tuple[Any, tuple]:
        # The kernel and its positional arguments after x (numpy views of the buffers), made once:
        # at batch 1 the per-call cost of building them (or of keyword arguments) is a kernel's worth.
        call = self.__dict__.get("_native")
        if call is None:
            arrs = {k: _np(v) for k, v in self.buffers_dict().items()}
            tail = (arrs.get("values"), arrs.get("packed"), arrs.get("scales"), arrs.get("zeros"),
                    4 if self.bits is None else self.bits, self.group_size,
                    None if self.bias is None else _np(self.bias), 0, 2)
            if self.format == "unstructured":
                call = (core.sparse_unstructured_matmul, (arrs["mask"], arrs["row_ptr"], self.in_features, *tail))
            else:
                call = (core.sparse24_matmul, (arrs["meta"], self.in_features, *tail))
            self.__dict__["_native"] = call
        return call

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _BUFFERS or name == "bias":
            self.__dict__["_native"] = None
        super().__setattr__(name, value)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # buffer sizes depend on the weight (nnz): take them from the state being loaded
        for k in (*_BUFFERS, "bias"):
            t = state_dict.get(prefix + k)
            if t is not None and getattr(self, k, None) is not None and t.shape != getattr(self, k).shape:
                setattr(self, k, torch.empty_like(t))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        q = "" if self.bits is None else f", bits={self.bits}, group_size={self.group_size}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, format={self.format!r}{q}, "
                f"bias={self.bias is not None}")
