"""Quantised and 2:4 linear layers on CUDA tensors: the torch side of cuda/layers.cu.

Weights use evoforge's packed weight formats v1 (int2/3/4/8 codes in blocks of 32, float16 group
scales and optional zeros; 2:4 keeps two of every four columns, its values V [N, Kp/2] packed the
same way, with 2-bit positions in ``meta`` [N, Kp/8], Kp = K rounded up to 32).

- ``quant_matmul(x, packed, scales, zeros, bits, group_size, out_features)``: y = x W^T, x float16
  or bfloat16 [B, K]. B <= 32 runs the tensor-core kernels on the packed weights (fp32 sums);
  B > 32, or a GPU older than compute capability 8.0, dequantises W and calls torch.
- ``sparse24_quant_matmul(x, values_packed, meta, scales, zeros, bits, group_size, out_features)``:
  the same for a 2:4 weight (the kernels take 4-bit values; other bits go through ``dequantize``).
- ``dequantize(...)`` / ``sparse24_dequantize(...)``: the dense [N, K] weight in float16/bfloat16.

Everything is checked (device, dtype, shape, contiguity, alignment, bits, group size) before the
native call; the native module never links libtorch (raw device pointers, sizes, stream). These are
inference kernels: the outputs carry no autograd history.
Results are deterministic: for a given GPU and shape, K is split into a fixed number of ranges
(from the shape, the SM count and the kernel's occupancy) whose partial sums are added in a fixed
order, so the same inputs give the same bits on every run. Error (stated, and tested): with Sum|x||w| the row sums of |x| |W|^T in float64,
|y - x W^T| <= 2^-9 Sum|x||w| for float16 and 2^-6 Sum|x||w| for bfloat16, i.e. 4 unit roundoffs
(the weight is rounded to the activation type two or three times, products are exact, sums are
fp32, y is rounded once).

The kernels' arithmetic in numpy, step by step (the executable specification of cuda/layers.cu,
tested against a float64 dequantise-then-matmul where no GPU exists), is in the tests:
``tests/cuda_emulation.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _native
from .format import BITS, GROUP_SIZES, num_groups, row_bytes

__all__ = ["dequantize", "kernel_config", "quant_matmul", "sparse24_dequantize", "sparse24_quant_matmul"]

# Mirrors of cuda/include/evoforge/cuda/layers.h (checked against the _cuda module by the CUDA tests).
ROWS_PER_BLOCK = 128  # 4 warps x 2 tiles of 16 rows
CODES_PER_STEP = 128  # a warp's step: one 32-code block per lane of a quad
MAX_BATCH = 32
MAX_SPLITS = 64
BLOCKS_PER_SM = 2  # resident blocks per SM when the occupancy is not asked (tests, emulation)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def stored_columns(in_features: int, sparse: bool) -> int:
    """Columns of the stored code matrix: K, or Kp / 2 for 2:4 values."""
    return _ceil(in_features, 32) * 16 if sparse else in_features


def kernel_config(batch: int, out_features: int, in_features: int, sm_count: int,
                  blocks_per_sm: int = BLOCKS_PER_SM) -> dict:
    """Launch geometry of the matmul kernels: {"splits", "steps_per_split", "n_steps", "row_tiles"}.

    K is cut into ``n_steps`` steps of 128 codes; a block takes 128 rows x one range of steps.
    The ranges (splits) multiply the blocks up to one full wave (``blocks_per_sm`` resident
    blocks on each of ``sm_count`` SMs, from the native occupancy query), every range non-empty.
    ``batch`` is part of the signature for tuning; the geometry does not depend on it."""
    del batch
    n_steps = _ceil(_ceil(in_features, 32), 4)
    row_tiles = _ceil(out_features, ROWS_PER_BLOCK)
    wave = max(blocks_per_sm, 1) * max(sm_count, 1)
    splits = max(1, min(wave // row_tiles, n_steps, MAX_SPLITS))
    steps = _ceil(n_steps, splits)
    splits = _ceil(n_steps, steps)
    return {"splits": splits, "steps_per_split": steps, "n_steps": n_steps, "row_tiles": row_tiles}


# ---------------------------------------------------------------------------------------------
# validation (device-agnostic: the tests run it on CPU tensors)

_ACT = {"torch.float16": 0, "torch.bfloat16": 1}


def _tensor(t: Any, name: str, device, dtype: str, shape: tuple[int, int]):
    if not _checks.is_torch(t):
        raise TypeError(f"{name} must be a torch tensor on {device}, got {type(t).__name__}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, x is on {device}; put all tensors on one device")
    if str(t.dtype) != dtype:
        raise TypeError(f"{name} must be {dtype}, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() once when building the layer)")
    if t.numel() and t.data_ptr() % 16:
        raise ValueError(f"{name} must be 16-byte aligned (a view at an offset? store a .clone())")
    return t


def _check_format(bits: Any, group_size: Any, out_features: Any, in_features: Any) -> None:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
    if (isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer))
            or int(group_size) not in GROUP_SIZES):
        raise ValueError(f"group_size must be one of {GROUP_SIZES} (0 = one group per row), got {group_size!r}")
    for name, v in (("out_features", out_features), ("in_features", in_features)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= int(v) < 2**31 - 32:
            raise ValueError(f"{name} must be an integer in [1, 2^31 - 32), got {v!r}")


def _check_weight(device, packed, scales, zeros, meta, bits, group_size, out_features, in_features) -> None:
    """Shapes, dtypes, device, contiguity and alignment of a packed weight ([N, K] dense)."""
    _check_format(bits, group_size, out_features, in_features)
    n, k = int(out_features), int(in_features)
    sparse = meta is not None
    cols = stored_columns(k, sparse)
    _tensor(packed, "values_packed" if sparse else "packed", device, "torch.uint8", (n, row_bytes(cols, bits)))
    g = (n, num_groups(cols, int(group_size)))
    _tensor(scales, "scales", device, "torch.float16", g)
    if zeros is not None:
        _tensor(zeros, "zeros", device, "torch.float16", g)
    if sparse:
        _tensor(meta, "meta", device, "torch.uint8", (n, _ceil(k, 32) * 4))


def _check_x(x: Any):
    """x as a contiguous float16/bfloat16 [B, K] tensor (a copy when it was strided)."""
    if not _checks.is_torch(x):
        raise TypeError(f"x must be a torch tensor, got {type(x).__name__}")
    if str(x.dtype) not in _ACT:
        raise TypeError(f"x must be float16 or bfloat16, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [B, K], got shape {list(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"x must have K >= 1 columns, got shape {list(x.shape)}")
    return x.contiguous()


def _require_gpu(t, name: str) -> Any:
    """The _cuda module (CudaUnavailableError when missing), after checking t is a CUDA tensor."""
    mod = _native.require_cuda()
    if t.device.type != "cuda":
        raise ValueError(f"{name} is on {t.device}; these kernels take CUDA tensors (the CPU path is evoforge.layers)")
    return mod


# ---------------------------------------------------------------------------------------------
# public functions


def _launch(x, packed, scales, zeros, meta, bits, group_size, out_features):
    import torch

    x = _check_x(x)
    mod = _require_gpu(x, "x")
    b, k = x.shape
    _check_weight(x.device, packed, scales, zeros, meta, bits, group_size, out_features, k)
    n = int(out_features)
    if b == 0:
        return torch.empty(0, n, dtype=x.dtype, device=x.device)
    index = x.device.index if x.device.index is not None else torch.cuda.current_device()
    sparse_slow = meta is not None and int(bits) != 4
    if b > MAX_BATCH or sparse_slow or not _supported(mod, index):
        w = _dequantize(mod, packed, scales, zeros, meta, bits, group_size, n, k, x.dtype, index)
        return torch.nn.functional.linear(x, w)
    cfg = kernel_config(b, n, k, _sm_count(index), _blocks_per_sm(mod, index, x.dtype, bits, b, meta is not None))
    args, y, _ws = _matmul_args(x, packed, scales, zeros, meta, bits, group_size, n, cfg,
                                torch.cuda.current_stream(index).cuda_stream, index)
    mod.quant_matmul(**args)
    return y


def _matmul_args(x, packed, scales, zeros, meta, bits, group_size, n, cfg, stream, index):
    """Keyword arguments of the native quant_matmul for checked tensors, the output y [B, N] and
    the split workspace (kept alive by the caller until the launch is queued). Device-agnostic:
    the tests run it on CPU tensors."""
    import torch

    b, k = x.shape
    y = torch.empty(b, n, dtype=x.dtype, device=x.device)
    ws = torch.empty(cfg["splits"] * b * n, dtype=torch.float32, device=x.device) if cfg["splits"] > 1 else None
    args = {
        "x": x.data_ptr(), "type": _ACT[str(x.dtype)], "B": b, "x_aligned": k % 8 == 0 and x.data_ptr() % 16 == 0,
        "packed": packed.data_ptr(), "scales": scales.data_ptr(), "zeros": 0 if zeros is None else zeros.data_ptr(),
        "meta": 0 if meta is None else meta.data_ptr(), "bits": int(bits), "group_size": int(group_size),
        "N": n, "K": k, "splits": cfg["splits"], "steps_per_split": cfg["steps_per_split"],
        "workspace": 0 if ws is None else ws.data_ptr(), "y": y.data_ptr(), "stream": stream, "device": index,
    }
    return args, y, ws


_SUPPORTED: dict[int, bool] = {}
_SMS: dict[int, int] = {}


def _sm_count(index: int) -> int:
    if index not in _SMS:
        import torch

        _SMS[index] = int(torch.cuda.get_device_properties(index).multi_processor_count)
    return _SMS[index]


_OCCUPANCY: dict[tuple, int] = {}


def _blocks_per_sm(mod, index: int, dtype, bits: int, b: int, sparse: bool) -> int:
    key = (index, str(dtype), int(bits), (b + 7) // 8, sparse)
    if key not in _OCCUPANCY:
        _OCCUPANCY[key] = int(mod.quant_matmul_blocks_per_sm(type=_ACT[str(dtype)], bits=int(bits), B=b,
                                                             sparse=sparse, device=index))
    return _OCCUPANCY[key]


def _supported(mod, index: int) -> bool:
    if index not in _SUPPORTED:
        _SUPPORTED[index] = bool(mod.quant_matmul_supported(device=index))
    return _SUPPORTED[index]


def _dequantize(mod, packed, scales, zeros, meta, bits, group_size, n, k, dtype, index):
    import torch

    out = torch.empty(n, k, dtype=dtype, device=packed.device)
    mod.quant_dequantize(packed=packed.data_ptr(), scales=scales.data_ptr(),
                         zeros=0 if zeros is None else zeros.data_ptr(), meta=0 if meta is None else meta.data_ptr(),
                         bits=int(bits), group_size=int(group_size), N=n, K=k, type=_ACT[str(dtype)],
                         out=out.data_ptr(), stream=torch.cuda.current_stream(index).cuda_stream, device=index)
    return out


def quant_matmul(x, packed, scales, zeros, bits: int, group_size: int, out_features: int):
    """y [B, N] = x [B, K] W^T (dtype of x) for a packed weight on x's CUDA device.

    x: float16 or bfloat16 [B, K] (copied when not contiguous); packed: uint8 [N, ceil(K/32)*4*bits];
    scales: float16 [N, G]; zeros: float16 [N, G] or None (symmetric, zero 2^(bits-1));
    G = ceil(K / group_size), or 1 for group_size 0. No bias: add it in the caller.
    """
    return _launch(x, packed, scales, zeros, None, bits, group_size, out_features)


def sparse24_quant_matmul(x, values_packed, meta, scales, zeros, bits: int, group_size: int, out_features: int):
    """y [B, N] = x [B, K] W^T for a 2:4 weight with quantised values, on x's CUDA device.

    values_packed: uint8 [N, ceil(Kv/32)*4*bits] with Kv = ceil(K/32)*16 (the kept values V);
    meta: uint8 [N, ceil(K/32)*4]; scales/zeros: float16 [N, ceil(Kv / group_size)] (1 column for
    group_size 0). meta is not validated per call: a nibble with i0 >= i1 gives wrong numbers
    (never a crash)."""
    if meta is None:
        raise ValueError("meta must be a uint8 tensor [N, ceil(K/32)*4], got None")
    return _launch(x, values_packed, scales, zeros, meta, bits, group_size, out_features)


def _dense(packed, scales, zeros, meta, bits, group_size, out_features, in_features, dtype):
    import torch

    if not _checks.is_torch(packed):
        raise TypeError(f"packed must be a torch tensor, got {type(packed).__name__}")
    if dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"dtype must be torch.float16 or torch.bfloat16, got {dtype}")
    mod = _require_gpu(packed, "packed")
    _check_weight(packed.device, packed, scales, zeros, meta, bits, group_size, out_features, in_features)
    index = packed.device.index if packed.device.index is not None else torch.cuda.current_device()
    return _dequantize(mod, packed, scales, zeros, meta, bits, group_size, int(out_features), int(in_features),
                       dtype, index)


def dequantize(packed, scales, zeros, bits: int, group_size: int, out_features: int, in_features: int, dtype):
    """The dense weight [N, K] of ``dtype`` (float16/bfloat16): scales * (q - zeros) rounded once."""
    return _dense(packed, scales, zeros, None, bits, group_size, out_features, in_features, dtype)


def sparse24_dequantize(values_packed, meta, scales, zeros, bits: int, group_size: int, out_features: int,
                        in_features: int, dtype):
    """The dense weight [N, K] of a 2:4 layer with quantised values (dropped weights are 0)."""
    if meta is None:
        raise ValueError("meta must be a uint8 tensor [N, ceil(K/32)*4], got None")
    return _dense(values_packed, scales, zeros, meta, bits, group_size, out_features, in_features, dtype)
