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

``_emulate_matmul`` is the kernels' arithmetic in numpy, step by step: the same 32-bit words,
shifts, masks and byte permutations, the same magic-number conversions and roundings, the same
fragment slots, mma order and split order. It is the executable specification of
cuda/layers.cu and is tested against a float64 dequantise-then-matmul where no GPU exists.
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


# ---------------------------------------------------------------------------------------------
# executable specification of cuda/layers.cu

_F16_MAGIC, _BF16_MAGIC = 0x6400, 0x4300


def _bits_to_f32(bits: np.ndarray, dtype: str) -> np.ndarray:
    bits = np.asarray(bits, dtype=np.uint16)
    if dtype == "float16":
        return bits.view(np.float16).astype(np.float32)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _f32_to_bits(v: np.ndarray, dtype: str) -> np.ndarray:
    """Round float32 to float16/bfloat16 bits (round to nearest even, as __float2*_rn)."""
    v = np.asarray(v, dtype=np.float32)
    if dtype == "float16":
        with np.errstate(over="ignore"):
            return v.astype(np.float16).view(np.uint16)
    u = v.view(np.uint32).astype(np.uint64)
    nan = np.isnan(v)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, np.uint16(0x7FC0), r)


def _half_op(a_bits, b_bits, op, dtype: str) -> np.ndarray:
    """One half2/bfloat162 operation on bit patterns: exact in float64, rounded once."""
    a = _bits_to_f32(a_bits, dtype).astype(np.float64)
    b = _bits_to_f32(b_bits, dtype).astype(np.float64)
    r = a - b if op == "sub" else a * b
    if dtype == "float16":
        with np.errstate(over="ignore"):
            return r.astype(np.float16).view(np.uint16)
    # to bf16 through float32: exact for these operands (integers <= 255, fp16-derived values)
    return _f32_to_bits(r.astype(np.float32), dtype)


def _prmt(a: np.ndarray, b: np.ndarray, sel) -> np.ndarray:
    """__byte_perm(a, b, sel) on uint32 arrays (default mode, selector nibbles < 8)."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    sel = np.asarray(sel, dtype=np.uint64)
    src = a | (b << np.uint64(32))
    out = np.zeros(np.broadcast(a, b, sel).shape, dtype=np.uint64)
    for n in range(4):
        idx = (sel >> np.uint64(4 * n)) & np.uint64(7)
        out |= ((src >> (idx * np.uint64(8))) & np.uint64(0xFF)) << np.uint64(8 * n)
    return out.astype(np.uint32)


def _words(packed: np.ndarray, n: int, nblocks: int, nbytes: int) -> np.ndarray:
    """uint32 little-endian words [n, nblocks, nbytes / 4] of the packed blocks."""
    return np.ascontiguousarray(packed).reshape(n, nblocks, nbytes).view("<u4").astype(np.uint32)


def _code_pair(w: np.ndarray, bits: int, i: int, h: int) -> np.ndarray:
    """Raw code pair (c[16h + 4j + m], c[16h + 4j + m + 2]) of dense blocks (code_pair in layers.cu)."""
    j, m = i >> 1, i & 1
    if bits == 4:
        return (w[..., j] >> (8 * m + 4 * h)) & 0x000F000F
    if bits == 8:
        return (w[..., 4 * h + j] >> (8 * m)) & 0x00FF00FF
    a = 2 * h + (j >> 1)
    lo = (w[..., j & 1] >> (8 * m + 2 * a)) & 0x00030003
    if bits == 2:
        return lo
    c = 16 * h + 4 * j + m
    hb = w[..., 2]
    return lo | (((hb >> c) & 1) << 2) | (((hb >> (c + 2)) & 1) << 18)


def _spread_selectors(nib: np.ndarray) -> np.ndarray:
    """spread_selectors in layers.cu: prmt selectors placing (v0, v1) at the kept positions."""
    nib = np.asarray(nib, dtype=np.uint32)
    i0, i1 = nib & 3, nib >> 2
    sel = np.zeros(nib.shape, dtype=np.uint32)
    for p in range(4):
        half = np.where(p == i0, 0x10, np.where(p == i1, 0x32, 0x44)).astype(np.uint32)
        sel |= half << np.uint32(16 * (p & 1) + 8 * (p >> 1))
    return sel


def _dequant_pairs(cp: np.ndarray, s_bits: np.ndarray, z_bits: np.ndarray | None, bits: int, dtype: str):
    """Dequant::operator() on raw code pairs cp [...] with per-element scale/zero bits [...]."""
    lo, hi = cp & 0xFFFF, cp >> 16
    f32 = dtype == "bfloat16" and (z_bits is not None or bits == 8)
    zc = 1 << (bits - 1)
    if f32:
        sf = _bits_to_f32(s_bits, "float16").astype(np.float64)
        z = _bits_to_f32(z_bits, "float16").astype(np.float64) if z_bits is not None else float(zc)
        nzs = -(z * sf)  # exact
        out = [_f32_to_bits((q.astype(np.float64) * sf + nzs).astype(np.float32), dtype) for q in (lo, hi)]
        return out[0].astype(np.uint32) | (out[1].astype(np.uint32) << 16)
    magic = _F16_MAGIC if dtype == "float16" else _BF16_MAGIC
    if dtype == "bfloat16":
        s2 = _f32_to_bits(_bits_to_f32(s_bits, "float16"), "bfloat16")
    else:
        s2 = np.asarray(s_bits, dtype=np.uint16)
    res = []
    for q in (lo, hi):
        qm = (q | magic).astype(np.uint16)
        if z_bits is None:
            d = _half_op(qm, np.full(qm.shape, magic | zc, np.uint16), "sub", dtype)
        else:
            d = _half_op(qm, np.full(qm.shape, magic, np.uint16), "sub", dtype)
            d = _half_op(d, z_bits, "sub", dtype)
        res.append(_half_op(d, s2, "mul", dtype))
    return res[0].astype(np.uint32) | (res[1].astype(np.uint32) << 16)


def _emulate_matmul(
    x_bits: np.ndarray,
    packed: np.ndarray,
    scales_bits: np.ndarray,
    zeros_bits: np.ndarray | None,
    bits: int,
    group_size: int,
    out_features: int,
    *,
    meta: np.ndarray | None = None,
    dtype: str = "float16",
    splits: int = 1,
    steps_per_split: int | None = None,
) -> np.ndarray:
    """y bits [B, N] (float16/bfloat16 bit patterns, uint16) computed as cuda/layers.cu does.

    x_bits: uint16 [B, K] bit patterns of ``dtype``; packed uint8 (dense, or 2:4 values with
    ``meta``); scales_bits/zeros_bits: uint16 float16 bit patterns [N, G]. ``splits`` and
    ``steps_per_split`` default to one split (kernel_config gives the kernels' choice)."""
    x_bits = np.asarray(x_bits, dtype=np.uint16)
    B, K = x_bits.shape
    N = int(out_features)
    sparse = meta is not None
    nblk = _ceil(K, 32)
    n_steps = _ceil(nblk, 4)
    steps_per_split = n_steps if steps_per_split is None else steps_per_split
    assert splits * steps_per_split >= n_steps and (splits - 1) * steps_per_split < n_steps
    G = scales_bits.shape[1]
    blk = np.arange(nblk)
    code0 = 16 * blk if sparse else 32 * blk
    gi = np.zeros(nblk, dtype=np.int64) if group_size == 0 else code0 // group_size
    s_bits = np.asarray(scales_bits, dtype=np.uint16)[:, gi]  # [N, nblk]
    z_bits = None if zeros_bits is None else np.asarray(zeros_bits, dtype=np.uint16)[:, gi]
    assert gi.max() < G

    # A fragments: a[n, blk, i, h] (uint32 pair of weight bits)
    a = np.zeros((N, nblk, 8, 2), dtype=np.uint32)
    if sparse:
        nvb = _ceil(16 * nblk, 32)
        vw = _words(packed, N, nvb, 16)[:, blk >> 1]  # [N, nblk, 4]: the value block of each lane
        mw = _words(meta, N, nblk, 4)[..., 0]  # [N, nblk]
        nib_shift = (4 * (blk & 1)).astype(np.uint32)[None, :]
        for s8 in range(8):
            xw = vw[..., s8 >> 1] >> (np.uint32(16 * (s8 & 1)) + nib_shift)
            cp = _prmt(xw, 0, 0x4140) & 0x000F000F
            v = _dequant_pairs(cp, s_bits, z_bits, bits, dtype)
            sel = _spread_selectors((mw >> np.uint32(4 * s8)) & 0xF)
            h, j = s8 >> 2, s8 & 3
            a[:, :, 2 * j, h] = _prmt(v, 0, sel & 0xFFFF)
            a[:, :, 2 * j + 1, h] = _prmt(v, 0, sel >> 16)
    else:
        w = _words(packed, N, nblk, 4 * bits)
        for i in range(8):
            for h in range(2):
                a[:, :, i, h] = _dequant_pairs(_code_pair(w, bits, i, h), s_bits, z_bits, bits, dtype)

    # B fragments: x words (0 beyond K), then one byte permutation per pair
    xp = np.zeros((B, nblk * 32), dtype=np.uint16)
    xp[:, :K] = x_bits
    xw = xp.reshape(B, nblk, 16, 2).astype(np.uint32)
    xw = xw[..., 0] | (xw[..., 1] << 16)  # [B, nblk, 16]
    bx = np.zeros((B, nblk, 8, 2), dtype=np.uint32)
    for i in range(8):
        j, m = i >> 1, i & 1
        for h in range(2):
            bx[:, :, i, h] = _prmt(xw[..., 8 * h + 2 * j], xw[..., 8 * h + 2 * j + 1], 0x7632 if m else 0x5410)

    def halves(f):  # [..., 8, 2] pairs -> float64 [..., 8, 2, 2] (slot p = low/high half)
        return np.stack([_bits_to_f32(f & 0xFFFF, dtype), _bits_to_f32(f >> 16, dtype)], axis=-1).astype(np.float64)

    av, bv = halves(a), halves(bx)
    pad = 4 * n_steps - nblk  # lanes past the last block hold zeros
    av = np.concatenate([av, np.zeros((N, pad, 8, 2, 2))], axis=1).reshape(N, n_steps, 4, 8, 2, 2)
    bv = np.concatenate([bv, np.zeros((B, pad, 8, 2, 2))], axis=1).reshape(B, n_steps, 4, 8, 2, 2)

    partial = []
    for sp in range(splits):
        acc = np.zeros((N, B), dtype=np.float32)
        for s in range(sp * steps_per_split, min((sp + 1) * steps_per_split, n_steps)):
            for i in range(8):  # one mma: the quad's 4 blocks x 2 halves x 2 slots
                mma = np.einsum("nthp,bthp->nb", av[:, s, :, i], bv[:, s, :, i])
                acc = (acc.astype(np.float64) + mma).astype(np.float32)
        partial.append(acc)
    total = partial[0]
    for p in partial[1:]:  # reduce_splits_kernel: split order, fp32
        total = (total + p).astype(np.float32)
    return np.ascontiguousarray(_f32_to_bits(total.T, dtype))
