"""Weight-only quantised linear layers: the packed format v1, its CPU kernels and ``QuantLinear``.

Symbols: N = out_features, K = in_features, B = rows of x, b = bits in {2, 3, 4, 8},
g = group_size in {32, 64, 128, 256} or 0 (one group per row; -1 is accepted as an alias),
G = ceil(K / g) groups per row (1 when g = 0).

Format (the contract shared with the CUDA kernels; cpp/include/evoforge/quant.h has the byte
layout): codes q in [0, 2^b - 1], ``w[n, k] = scales[n, k // g] * (q[n, k] - zeros[n, k // g])``;
scales float16 [N, G]; zeros float16 [N, G], or None = symmetric with the implied zero 2^(b-1);
packed uint8 [N, ceil(K / 32) * 4 * b], every row packed on its own in blocks of 32 codes.

:func:`quant_matmul` computes ``x W^T (+ bias)`` on the packed bytes (no dequantised matrix):
each block of 32 codes is unpacked in registers, converted to float and multiply-added against x
in float32 vector lanes; the scale multiplies the codes (several rows of x) or the group's partial
sum (one row of x), and the zero point is applied once per group, ``- (s * z) * sum_k x``, with
the per-group sums of x computed once per call. Each output is computed by one thread in a fixed
order, so results do not depend on the thread count (``evoforge.set_num_threads``). The kernel is
picked at run time (AVX-512, AVX2 + FMA + F16C, or portable). Float32 error bound, per output,
against the exact product with the same packed weights (first order in u = 2^-24):
``|err| <= 2u (K + G + 4) * sum_k |s| (q + |z| + 2^b) |x_k|`` (+ 2u |bias|), checked by the tests
(the 2^b term: the AVX-512 kernel carries codes as 1 + q 2^-b, exact, to skip a conversion).

The thin ops take numpy arrays or CPU torch tensors and return the same kind. Non-contiguous
inputs are copied. ``import evoforge`` does not import this package; it needs torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import _checks, solvers
from .._native import core
from .format import (
    BITS,
    GROUP_SIZES,
    check_bits,
    check_features,
    check_group_size,
    num_groups,
    row_bytes,
)

__all__ = [
    "BITS",
    "GROUP_SIZES",
    "QuantLinear",
    "dequantize",
    "num_groups",
    "pack_codes",
    "quant_matmul",
    "quantize_rtn",
    "row_bytes",
    "unpack_codes",
]

_FP16_MAX = 65504.0
_CPU_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_NATIVE_INPUTS = ("packed", "scales", "zeros", "bias")
_bits, _group = check_bits, check_group_size


def _array(a: Any, name: str, dtype: Any, ndim: int) -> np.ndarray:
    """A C-contiguous numpy view (or copy) of a CPU array/tensor with exactly this dtype and ndim."""
    if _checks.is_torch(a):
        if a.device.type != "cpu":
            raise ValueError(f"{name} is on {a.device}; these ops run on the CPU (QuantLinear dispatches CUDA)")
        if a.dtype == torch.bfloat16:
            raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got torch.bfloat16")
        a = a.detach().numpy()
    elif not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a CPU torch.Tensor, got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _like(out: np.ndarray, ref: Any) -> Any:
    return torch.from_numpy(out) if _checks.is_torch(ref) else out


def _grid(packed: Any, scales: Any, zeros: Any, bits: int, group_size: int, in_features: int):
    in_features = _checks.check_int(in_features, "in_features", 1, _checks.INT_MAX)
    p = _array(packed, "packed", np.uint8, 2)
    n, rb, G = p.shape[0], row_bytes(in_features, bits), num_groups(in_features, group_size)
    if p.shape[1] != rb:
        raise ValueError(f"packed must have shape [N, {rb}] for in_features={in_features}, bits={bits}; got {p.shape}")
    s = _array(scales, "scales", np.float16, 2)
    if s.shape != (n, G):
        raise ValueError(f"scales must have shape [{n}, {G}] (N, groups), got {s.shape}")
    z = None
    if zeros is not None:
        z = _array(zeros, "zeros", np.float16, 2)
        if z.shape != (n, G):
            raise ValueError(f"zeros must have shape [{n}, {G}] (N, groups), got {z.shape}")
        z = z.view(np.uint16)
    return p, s.view(np.uint16), z


def pack_codes(codes: Any, bits: int) -> Any:
    """Pack codes into the v1 layout.

    Parameters
    ----------
    codes : uint8 array or CPU tensor, shape (N, K), values in [0, 2^bits - 1]
    bits : 2, 3, 4 or 8

    Returns
    -------
    packed : uint8, shape (N, ceil(K / 32) * 4 * bits), numpy or torch like ``codes``.

    Raises
    ------
    TypeError (dtype), ValueError (shape, a code out of range), ConfigError (bits).
    """
    b = _bits(bits)
    c = _array(codes, "codes", np.uint8, 2)
    return _like(core.quant_pack(c, b), codes)


def unpack_codes(packed: Any, bits: int, in_features: int) -> Any:
    """Inverse of :func:`pack_codes`: uint8 (N, row_bytes) -> uint8 (N, K), numpy or torch like ``packed``."""
    b = _bits(bits)
    in_features = _checks.check_int(in_features, "in_features", 1, _checks.INT_MAX)
    p = _array(packed, "packed", np.uint8, 2)
    rb = row_bytes(in_features, b)
    if p.shape[1] != rb:
        raise ValueError(f"packed must have shape [N, {rb}] for in_features={in_features}, bits={b}; got {p.shape}")
    return _like(core.quant_unpack(p, b, int(in_features)), packed)


def dequantize(packed: Any, scales: Any, zeros: Any, bits: int, group_size: int, in_features: int) -> Any:
    """The weight as float32 (N, K): ``scales * (q - zeros)``, each element rounded once.

    packed uint8 (N, row_bytes); scales float16 (N, G); zeros float16 (N, G) or None (symmetric).
    Returns numpy or torch like ``packed``.
    """
    b, g = _bits(bits), _group(group_size)
    p, s, z = _grid(packed, scales, zeros, b, g, in_features)
    return _like(core.quant_dequantize(p, s, z, b, g, int(in_features)), packed)


def _activations(x: Any) -> tuple[np.ndarray, Any]:
    """x as C-contiguous float32 numpy [M, K] and its torch dtype (or None for numpy input)."""
    if _checks.is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(f"x is on {x.device}; quant_matmul runs on the CPU (QuantLinear dispatches CUDA)")
        if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise TypeError(f"x must be float32, bfloat16 or float16, got {x.dtype}")
        dt = x.dtype
        a = x.detach().to(torch.float32).numpy()
    elif isinstance(x, np.ndarray):
        if x.dtype not in (np.float32, np.float16):
            raise TypeError(f"x must be float32 (or float16), got {x.dtype}")
        dt, a = None, x.astype(np.float32, copy=False)
    else:
        raise TypeError(f"x must be a numpy array or a CPU torch.Tensor, got {type(x).__name__}")
    if a.ndim < 1:
        raise ValueError("x must have at least one dimension [..., K]")
    return np.ascontiguousarray(a.reshape(-1, a.shape[-1]) if a.ndim != 2 else a), dt


def quant_matmul(
    x: Any,
    packed: Any,
    scales: Any,
    zeros: Any,
    bits: int,
    group_size: int,
    bias: Any = None,
    *,
    isa: str = "auto",
) -> Any:
    """y = x W^T (+ bias) with W given packed; W is never dequantised as a whole.

    Parameters
    ----------
    x : float32 (numpy or CPU torch; torch bfloat16/float16 are converted), shape (..., K)
    packed : uint8, shape (N, ceil(K / 32) * 4 * bits)
    scales : float16, shape (N, G);  zeros : float16 (N, G) or None (symmetric)
    bits, group_size : the format (see the module docstring)
    bias : float32, shape (N,), or None
    isa : "auto" (the best this CPU runs), "avx512", "avx2" or "scalar" (for tests)

    Returns
    -------
    y : shape (..., N); numpy float32 for numpy x, a torch tensor of x's dtype for torch x.
    Deterministic and independent of the thread count; the GIL is released.
    """
    b, g = _bits(bits), _group(group_size)
    a, dt = _activations(x)
    K = a.shape[1]
    p, s, z = _grid(packed, scales, zeros, b, g, K)
    bi = None
    if bias is not None:
        bi = _array(bias, "bias", np.float32, 1)
        if bi.shape[0] != p.shape[0]:
            raise ValueError(f"bias must have shape [{p.shape[0]}], got {bi.shape}")
    y = core.quant_matmul(a, p, s, z, bi, b, g, 0, isa)
    y = y.reshape(*np.shape(x)[:-1], p.shape[0])
    if dt is None:
        return y
    out = torch.from_numpy(y)
    return out if dt == torch.float32 else out.to(dt)


def quantize_rtn(weight: Any, bits: int = 4, group_size: int = 128, symmetric: bool = True):
    """Round-to-nearest codes on GPTQ's min/max grid (:func:`evoforge.solvers.rtn`), float16 scales.

    The grid is ``solvers.rtn``'s (symmetric: scale 2 max|w| / (2^b - 1), zero 2^(b-1);
    asymmetric: scale (max - min) / (2^b - 1), integer zero); the scales are rounded to float16
    (at least 2^-24) and the codes recomputed against the rounded scales, so that the stored
    format reproduces the rounding exactly.

    Parameters
    ----------
    weight : float32/float64 array or CPU tensor, shape (N, K), finite

    Returns
    -------
    (codes uint8 (N, K), scales float16 (N, G), zeros float16 (N, G) or None when symmetric),
    numpy arrays. Raises ValueError when a scale exceeds float16's range.
    """
    b, g = _bits(bits), _group(group_size)
    w = _checks.to_numpy(weight, "weight")
    if w.dtype not in (np.float32, np.float64):
        raise TypeError(f"weight must be float32 or float64, got {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D [N, K], got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("weight contains NaN or inf")
    K = w.shape[1]
    ql = solvers.rtn(w, b, group_size=g if g else -1, symmetric=bool(symmetric))
    if np.abs(ql.scales).max(initial=0.0) > _FP16_MAX:
        raise ValueError(f"a group's scale exceeds float16's range ({_FP16_MAX}); the weights are too large")
    s16 = np.maximum(np.asarray(ql.scales, np.float64), 2.0**-24).astype(np.float16)
    G = num_groups(K, g)
    gi = np.minimum(np.arange(K) // g, G - 1) if g else np.zeros(K, dtype=np.int64)
    zeros = np.asarray(ql.zeros, np.float64)
    q = np.rint(w.astype(np.float64) / s16.astype(np.float64)[:, gi]) + zeros[:, gi]
    codes = np.clip(q, 0, (1 << b) - 1).astype(np.uint8)
    return codes, s16, None if symmetric else zeros.astype(np.float16)


def _cpu_tensor(a: Any, name: str) -> torch.Tensor:
    """A CPU tensor of an array or a CPU / CUDA tensor (a numpy array with negative strides is copied)."""
    if _checks.is_torch(a):
        return _checks.check_tensor(a, name).detach().cpu()
    return torch.from_numpy(np.ascontiguousarray(_checks.to_numpy(a, name)))


def _half(a: Any, name: str, shape: tuple[int, int]) -> torch.Tensor:
    t = _cpu_tensor(a, name)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)} (N, groups), got {list(t.shape)}")
    if not torch.isfinite(t).all() or t.abs().max() > _FP16_MAX:
        raise ValueError(f"{name} must be finite and within float16's range (|v| <= {_FP16_MAX})")
    return t.to(torch.float16).contiguous()


class QuantLinear(torch.nn.Module):
    """Drop-in inference replacement for ``nn.Linear`` with weight-only quantised, packed weights.

    Buffers: ``packed`` uint8 (N, row_bytes), ``scales`` float16 (N, G), ``zeros`` float16 (N, G)
    (asymmetric only, else None), ``bias`` float32 (N,) or None. ``state_dict`` round-trips through
    a module built with the same constructor arguments. Casting the module (``.half()``,
    ``.to(torch.bfloat16)``) moves but never re-types the packed format.

    forward(x (..., K)) -> (..., N) in x's dtype: the CPU kernel for float32/bfloat16/float16 CPU
    tensors (:func:`quant_matmul`; more than 64 rows: dequantise once and ``torch.matmul``), and
    ``evoforge.layers._cuda.quant_matmul`` for CUDA tensors. No autograd.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        bits: int = 4,
        group_size: int = 128,
        symmetric: bool = True,
        device: Any = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = check_features(in_features, out_features)
        self.bits, self.group_size, self.symmetric = _bits(bits), _group(group_size), bool(symmetric)
        device = _checks.check_device(device)
        N, G = self.out_features, num_groups(self.in_features, self.group_size)
        self.register_buffer("packed", torch.zeros(N, row_bytes(self.in_features, self.bits), dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.zeros(N, G, dtype=torch.float16, device=device))
        self.register_buffer("zeros", None if symmetric else torch.zeros(N, G, dtype=torch.float16, device=device))
        self.register_buffer("bias", torch.zeros(N, dtype=torch.float32, device=device) if bias else None)

    @classmethod
    def from_codes(
        cls,
        codes: Any,
        scales: Any,
        zeros: Any,
        bits: int,
        group_size: int,
        bias: Any = None,
        *,
        g_idx: Any = None,
    ) -> QuantLinear:
        """A layer from unpacked codes and their grid (e.g. a database level ``q.<b>``, ``scales.<b>``,
        ``zeros.<b>``, ``g_idx.<b>``).

        Parameters
        ----------
        codes : uint8 (N, K), values in [0, 2^bits - 1]
        scales : float (N, G), converted to float16 (must be finite, |s| <= 65504)
        zeros : float (N, G) converted to float16 (asymmetric), or None (symmetric, zero 2^(bits-1));
            pass None for a symmetric grid stored with explicit zeros 2^(bits-1) to save memory
        bits : 2, 3, 4 or 8;  group_size : 32..256 or 0/-1 (per row). A group size >= K (one group,
            as ``solvers.rtn`` stores it) becomes per-row: the layer's ``group_size`` is then 0.
        bias : float (N,) or None
        g_idx : int (K,) or None. Must be the trivial map k // group_size (0 for per-row). An
            act-order GPTQ g_idx is rejected: permute first, ``perm = argsort(g_idx, stable)``,
            build from ``codes[:, perm]`` and feed ``x[..., perm]``.
        """
        c = _array(codes, "codes", np.uint8, 2)
        N, K = c.shape
        b = _bits(bits)
        if isinstance(group_size, (int, np.integer)) and not isinstance(group_size, bool) and group_size >= K:
            group_size = 0  # one group covers the row: the per-row format, the same maths
        g = _group(group_size)
        G = num_groups(K, g)
        if g_idx is not None:
            gi = np.asarray(_checks.to_numpy(g_idx, "g_idx")).reshape(-1)
            want = np.arange(K) // g if g else np.zeros(K, dtype=np.int64)
            if gi.shape != (K,) or not np.array_equal(gi, want):
                raise ValueError(
                    "g_idx is not the trivial map k // group_size (an act-order GPTQ ordering); "
                    "permute the columns first: perm = argsort(g_idx, stable), codes[:, perm], x[..., perm]"
                )
        m = cls(K, N, bias is not None, bits=b, group_size=g, symmetric=zeros is None)
        m.packed.copy_(torch.from_numpy(core.quant_pack(c, b)))
        m.scales.copy_(_half(scales, "scales", (N, G)))
        if zeros is not None:
            m.zeros.copy_(_half(zeros, "zeros", (N, G)))
        if bias is not None:
            bt = _cpu_tensor(bias, "bias").reshape(-1)
            if bt.shape != (N,):
                raise ValueError(f"bias must have shape [{N}], got {list(bt.shape)}")
            m.bias.copy_(bt.to(torch.float32))
        return m

    @classmethod
    def from_linear(
        cls, linear: torch.nn.Linear, bits: int = 4, group_size: int = 128, symmetric: bool = True
    ) -> QuantLinear:
        """Round-to-nearest quantisation of an ``nn.Linear`` (:func:`quantize_rtn`), on its device."""
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        w = _checks.check_tensor(linear.weight, "linear.weight", dtype="float").detach().to("cpu", torch.float32)
        codes, s, z = quantize_rtn(w, bits, group_size, symmetric)
        bias = None if linear.bias is None else linear.bias.detach().to("cpu", torch.float32)
        return cls.from_codes(codes, s, z, bits, group_size, bias).to(linear.weight.device)

    def _apply(self, fn, recurse=True):
        self.__dict__["_native"] = None
        keep = {n: getattr(self, n) for n in ("packed", "scales", "zeros") if getattr(self, n) is not None}
        super()._apply(fn, recurse)
        for n, t in keep.items():
            moved = getattr(self, n)
            if moved.dtype != t.dtype:  # a dtype cast of the module must not re-type the format
                setattr(self, n, t.to(moved.device))
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _NATIVE_INPUTS:  # a replaced buffer invalidates the cached kernel arguments
            self.__dict__["_native"] = None
        super().__setattr__(name, value)

    def _native_args(self) -> tuple:
        """(packed, scales, zeros, bias, bits, group_size) as the numpy views the kernel takes, made
        once per set of buffers: the per-call cost matters at batch 1 (in-place loads keep them valid)."""
        args = self.__dict__.get("_native")
        if args is None:
            p, s, z = _grid(self.packed, self.scales, self.zeros, self.bits, self.group_size, self.in_features)
            b = None if self.bias is None else _array(self.bias.float(), "bias", np.float32, 1)
            args = self.__dict__["_native"] = (p, s, z, b, self.bits, self.group_size)
        return args

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Hot path (CPU decode): a plain CPU float tensor of at most 64 rows goes straight to the
        # kernel with the cached views; everything else is checked and dispatched below.
        K = self.in_features
        if (type(x) is torch.Tensor and x.is_cpu and x.dtype in _CPU_DTYPES and not x.requires_grad and x.is_contiguous()
                and x.dim() > 0 and x.shape[-1] == K and 0 < x.numel() <= 64 * K):
            xa = (x if x.dtype is torch.float32 else x.float()).numpy()
            y = core.quant_matmul(xa.reshape(-1, K), *self._native_args(), 0, "auto")
            y = torch.from_numpy(y.reshape(xa.shape[:-1] + (self.out_features,)))
            return y if x.dtype is torch.float32 else y.to(x.dtype)
        _checks.check_tensor(x, "x")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape [..., {self.in_features}], got {list(x.shape)}")
        if x.device.type == "cuda":
            from . import _cuda

            if x.dtype not in (torch.float16, torch.bfloat16):  # the kernels take 16-bit activations
                w = _cuda.dequantize(self.packed, self.scales, self.zeros, self.bits, self.group_size,
                                     self.out_features, self.in_features, torch.float16).to(x.dtype)
                b = None if self.bias is None else self.bias.to(x.dtype)
                return torch.nn.functional.linear(x, w, b)
            y = _cuda.quant_matmul(
                x.reshape(-1, self.in_features), self.packed, self.scales, self.zeros,
                self.bits, self.group_size, self.out_features,
            ).reshape(*x.shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias.to(y.dtype)
        if x.device.type != "cpu":
            raise ValueError(f"QuantLinear runs on CPU or CUDA tensors, got {x.device}")
        if math.prod(x.shape[:-1]) > 64:
            w = self.dequantize().to(x.dtype)
            return torch.nn.functional.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))
        bias = None if self.bias is None else self.bias.float()
        return quant_matmul(x, self.packed, self.scales, self.zeros, self.bits, self.group_size, bias)

    @property
    def weight_bytes(self) -> int:
        """Bytes of the packed weight: ``packed``, ``scales`` and ``zeros`` (no bias)."""
        return int(sum(t.numel() * t.element_size() for t in (self.packed, self.scales, self.zeros) if t is not None))

    def dequantize(self) -> torch.Tensor:
        """The weight as float32 (N, K) on the CPU."""
        return dequantize(self.packed.cpu(), self.scales.cpu(), None if self.zeros is None else self.zeros.cpu(),
                          self.bits, self.group_size, self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"bits={self.bits}, group_size={self.group_size}, symmetric={self.symmetric}"
        )
