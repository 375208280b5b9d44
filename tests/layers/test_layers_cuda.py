"""The CUDA quantised / 2:4 layer kernels (cuda/layers.cu, evoforge/layers/_cuda.py).

Two layers:
- everywhere: the kernels' arithmetic as a numpy emulation (same 32-bit words, shifts, masks,
  byte permutations, magic numbers, roundings, fragment slots and split order) against a float64
  dequantise-then-matmul of the packed format, written here from the format's definition; the
  launch geometry; the validation of every argument;
- ``@pytest.mark.cuda`` (skipped without a GPU and the _cuda module): the kernels themselves
  against the same float64 reference and against the emulation.

Stated error bounds, with S = |x| |W|^T (float64): float16 |y - ref| <= 2^-9 S, bfloat16 2^-6 S.
"""

from __future__ import annotations

import evoforge
import numpy as np
import pytest
from evoforge import _native
from evoforge.errors import CudaUnavailableError
from evoforge.layers import _cuda as lc

import cuda_emulation as emu  # tests/: the kernels' numpy specification

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extras
    torch = None

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - hypothesis may be missing on a GPU machine
    HAVE_HYPOTHESIS = False

GPU = torch is not None and _native.cuda is not None and evoforge.has_cuda() and torch.cuda.is_available()
cuda = pytest.mark.cuda
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU, torch with CUDA and evoforge's _cuda module")
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

# 4 unit roundoffs (u = 2^-11 for float16, 2^-8 for bfloat16): at most 3 roundings per product
# (zero, scale, product; bf16 also the scale to bf16) and one of y
BOUND = {"float16": 2.0**-9, "bfloat16": 2.0**-6}


# ---------------------------------------------------------------------------------------------
# the packed format v1, written from its definition (independent of the code under test)


def pack_codes(q: np.ndarray, bits: int) -> np.ndarray:
    """codes uint8 [N, K] -> packed uint8 [N, ceil(K/32) * 4 * bits] (K padded with code 0)."""
    n, k = q.shape
    nb = -(-k // 32)
    c = np.zeros((n, nb * 32), dtype=np.uint32)
    c[:, :k] = q
    c = c.reshape(n, nb, 32)
    if bits == 8:
        out = c
    elif bits == 4:
        out = c[..., :16] | (c[..., 16:] << 4)
    elif bits == 2:
        out = c[..., :8] | (c[..., 8:16] << 2) | (c[..., 16:24] << 4) | (c[..., 24:] << 6)
    else:  # 3: two low bits as for 2 bits, then a little-endian uint32 of the third bits
        lo = c & 3
        low = lo[..., :8] | (lo[..., 8:16] << 2) | (lo[..., 16:24] << 4) | (lo[..., 24:] << 6)
        word = ((c >> 2) & 1) << np.arange(32, dtype=np.uint32)
        word = np.bitwise_or.reduce(word, axis=-1)
        high = np.stack([(word >> (8 * i)) & 0xFF for i in range(4)], axis=-1)
        out = np.concatenate([low, high], axis=-1)
    return out.astype(np.uint8).reshape(n, nb * 4 * bits)


def dequant_ref(q, scales, zeros, bits, group_size) -> np.ndarray:
    """float64 [N, K]: scales[n, k // g] * (q[n, k] - zeros[n, k // g])."""
    _n, k = q.shape
    gi = np.zeros(k, dtype=np.int64) if group_size == 0 else np.arange(k) // group_size
    s = scales.astype(np.float64)[:, gi]
    z = 2.0 ** (bits - 1) if zeros is None else zeros.astype(np.float64)[:, gi]
    return s * (q.astype(np.float64) - z)


def groups(k: int, g: int) -> int:
    return 1 if g == 0 else -(-k // g)


def random_quant(rng, n, k, bits, g, with_zeros):
    """codes, packed, scales (fp16), zeros (fp16 or None), dense float64 W."""
    q = rng.integers(0, 2**bits, size=(n, k), dtype=np.uint8)
    G = groups(k, g)
    scales = (rng.uniform(0.2, 2.0, size=(n, G)) * rng.choice([-1, 1], size=(n, G)) * 2.0**-bits).astype(np.float16)
    zeros = None
    if with_zeros:  # fractional zero points exercise the subtraction's rounding
        zeros = (rng.uniform(0, 2**bits - 1, size=(n, G))).astype(np.float16)
    return q, pack_codes(q, bits), scales, zeros, dequant_ref(q, scales, zeros, bits, g)


def random_sparse24(rng, n, k, bits, g, with_zeros):
    """2:4 weight: packed values, meta, scales, zeros, dense float64 W [N, K]."""
    nb = -(-k // 32)
    kp = nb * 32
    pairs = np.array([(a, b) for a in range(4) for b in range(a + 1, 4)])
    choice = pairs[rng.integers(0, len(pairs), size=(n, kp // 4))]  # [N, Kp/4, 2]
    nib = choice[..., 0] | (choice[..., 1] << 2)
    meta = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)  # [N, Kp/8]
    kv = kp // 2
    _q, packed, scales, zeros, V = random_quant(rng, n, kv, bits, g, with_zeros)
    W = np.zeros((n, kp))
    rows = np.arange(n)[:, None]
    grp = np.arange(kp // 4)[None, :]
    W[rows, 4 * grp + choice[..., 0]] = V[:, 0::2]
    W[rows, 4 * grp + choice[..., 1]] = V[:, 1::2]
    return packed, meta, scales, zeros, W[:, :k]


def random_x(rng, b, k, dtype):
    """x bit patterns uint16 [B, K] of dtype and their float64 values."""
    x = rng.standard_normal((b, k)).astype(np.float32)
    bits = emu.f32_to_bits(x, dtype)
    return bits, emu.bits_to_f32(bits, dtype).astype(np.float64)


def check_close(y_bits, dtype, x64, W, bound=None):
    y = emu.bits_to_f32(y_bits, dtype).astype(np.float64)
    ref = x64 @ W.T
    scale = np.abs(x64) @ np.abs(W).T
    tol = (BOUND[dtype] if bound is None else bound) * scale + 1e-30
    err = np.abs(y - ref)
    assert np.all(err <= tol), f"max error / bound = {np.max(err / tol):.3g}"


# ---------------------------------------------------------------------------------------------
# the reference packer against the format's definition, element by element


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_reference_packer_follows_the_format(bits):
    rng = np.random.default_rng(bits)
    q = rng.integers(0, 2**bits, size=(3, 70), dtype=np.uint8)
    p = pack_codes(q, bits).reshape(3, 3, 4 * bits)  # 3 blocks (70 -> 96 codes)
    for n in range(3):
        for k in range(70):
            blk, j = divmod(k, 32)
            b = p[n, blk]
            if bits == 8:
                got = b[j]
            elif bits == 4:
                got = (b[j % 16] >> (4 * (j // 16))) & 15
            elif bits == 2:
                got = (b[j % 8] >> (2 * (j // 8))) & 3
            else:
                word = int.from_bytes(bytes(b[8:12]), "little")
                got = ((b[j % 8] >> (2 * (j // 8))) & 3) | (((word >> j) & 1) << 2)
            assert got == q[n, k]


# ---------------------------------------------------------------------------------------------
# the emulation (executable specification of the kernels) against float64


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("with_zeros", [False, True])
def test_emulation_matches_float64(bits, dtype, with_zeros):
    rng = np.random.default_rng(100 * bits + with_zeros)
    for n, k, b, g in [(17, 300, 3, 64), (8, 33, 1, 32), (5, 517, 9, 0), (20, 256, 32, 256), (3, 1, 2, 128)]:
        _, packed, scales, zeros, W = random_quant(rng, n, k, bits, g, with_zeros)
        xb, x64 = random_x(rng, b, k, dtype)
        y = emu.emulate_matmul(xb, packed, emu.f32_to_bits(scales.astype(np.float32), "float16"),
                               None if zeros is None else zeros.view(np.uint16), bits, g, n, dtype=dtype)
        assert y.shape == (b, n) and y.dtype == np.uint16
        check_close(y, dtype, x64, W)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("with_zeros", [False, True])
def test_emulation_sparse24_matches_float64(dtype, with_zeros):
    rng = np.random.default_rng(7 + with_zeros)
    for n, k, b, g in [(9, 300, 4, 32), (16, 64, 1, 0), (3, 31, 17, 128), (5, 520, 8, 256)]:
        packed, meta, scales, zeros, W = random_sparse24(rng, n, k, 4, g, with_zeros)
        xb, x64 = random_x(rng, b, k, dtype)
        y = emu.emulate_matmul(xb, packed, scales.view(np.uint16), None if zeros is None else zeros.view(np.uint16),
                               4, g, n, meta=meta, dtype=dtype)
        check_close(y, dtype, x64, W)


def test_emulation_splits_add_in_order():
    """Split-K partials are added in split order: within bounds, and one split per step equals the
    same sum regrouped (only fp32 rounding may differ)."""
    rng = np.random.default_rng(3)
    n, k, b, bits, g = 12, 1000, 5, 4, 128
    _, packed, scales, zeros, W = random_quant(rng, n, k, bits, g, True)
    xb, x64 = random_x(rng, b, k, "float16")
    args = (xb, packed, scales.view(np.uint16), zeros.view(np.uint16), bits, g, n)
    n_steps = (k + 127) // 128  # ceil(ceil(k / 32) / 4)
    one = emu.emulate_matmul(*args)
    for splits, steps in [(2, 4), (3, 3), (n_steps, 1)]:
        y = emu.emulate_matmul(*args, splits=splits, steps_per_split=steps)
        check_close(y, "float16", x64, W)
        diff = np.abs(emu.bits_to_f32(y, "float16") - emu.bits_to_f32(one, "float16"))
        assert np.all(diff <= 2.0**-10 * (np.abs(x64) @ np.abs(W).T))


def test_emulation_fragment_slots_matter():
    """The x permutation is what makes the sum right: a weight with a single non-zero column k
    gives y = w_k x_k exactly, for every k of a block (a wrong slot would pick another x)."""
    n, k, bits = 1, 64, 4
    x = (np.arange(1, k + 1) * 2.0**-6).astype(np.float16)[None, :]
    for col in range(k):
        q = np.full((n, k), 8, dtype=np.uint8)  # symmetric zero 8: weight 0
        q[0, col] = 11  # weight 3 * scale
        scales = np.full((n, 1), 0.5, dtype=np.float16)
        y = emu.emulate_matmul(x.view(np.uint16), pack_codes(q, bits), scales.view(np.uint16), None, bits, 0, n)
        assert emu.bits_to_f32(y, "float16")[0, 0] == np.float32(1.5 * x[0, col])


if HAVE_HYPOTHESIS:

    @settings(max_examples=25, deadline=None)
    @given(
        bits=st.sampled_from([2, 3, 4, 8]),
        g=st.sampled_from([0, 32, 64, 128, 256]),
        n=st.integers(1, 24),
        k=st.integers(1, 400),
        b=st.integers(1, 32),
        dtype=st.sampled_from(["float16", "bfloat16"]),
        with_zeros=st.booleans(),
        seed=st.integers(0, 2**31),
        split_steps=st.integers(1, 4),
    )
    def test_emulation_property(bits, g, n, k, b, dtype, with_zeros, seed, split_steps):
        rng = np.random.default_rng(seed)
        _, packed, scales, zeros, W = random_quant(rng, n, k, bits, g, with_zeros)
        xb, x64 = random_x(rng, b, k, dtype)
        n_steps = (k + 127) // 128  # ceil(ceil(k / 32) / 4)
        steps = min(split_steps, n_steps)
        y = emu.emulate_matmul(xb, packed, scales.view(np.uint16), None if zeros is None else zeros.view(np.uint16),
                               bits, g, n, dtype=dtype, splits=-(-n_steps // steps), steps_per_split=steps)
        check_close(y, dtype, x64, W)

    @settings(max_examples=15, deadline=None)
    @given(
        g=st.sampled_from([0, 32, 64, 128, 256]),
        n=st.integers(1, 20),
        k=st.integers(1, 300),
        b=st.integers(1, 32),
        dtype=st.sampled_from(["float16", "bfloat16"]),
        with_zeros=st.booleans(),
        seed=st.integers(0, 2**31),
    )
    def test_emulation_sparse24_property(g, n, k, b, dtype, with_zeros, seed):
        rng = np.random.default_rng(seed)
        packed, meta, scales, zeros, W = random_sparse24(rng, n, k, 4, g, with_zeros)
        xb, x64 = random_x(rng, b, k, dtype)
        y = emu.emulate_matmul(xb, packed, scales.view(np.uint16), None if zeros is None else zeros.view(np.uint16),
                               4, g, n, meta=meta, dtype=dtype)
        check_close(y, dtype, x64, W)


def test_bf16_rounding_helper_matches_torch():
    if torch is None:
        pytest.skip("needs torch")
    v = np.random.default_rng(0).standard_normal(10000).astype(np.float32) * 1e3
    v[:4] = [np.inf, -np.inf, 0.0, -0.0]
    ours = emu.f32_to_bits(v, "bfloat16")
    theirs = torch.from_numpy(v).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours, theirs)


# ---------------------------------------------------------------------------------------------
# launch geometry


@pytest.mark.parametrize("n", [1, 100, 576, 4096, 8192, 11008, 50000])
@pytest.mark.parametrize("k", [1, 31, 128, 1536, 4096, 11008])
@pytest.mark.parametrize(("sms", "per_sm"), [(1, 1), (108, 4), (132, 3), (132, 2)])
def test_kernel_config_fills_one_wave_without_empty_splits(n, k, sms, per_sm):
    c = lc.kernel_config(1, n, k, sms, per_sm)
    assert c["n_steps"] == (k + 127) // 128  # ceil(ceil(k / 32) / 4)
    assert c["row_tiles"] == -(-n // 128)
    assert 1 <= c["splits"] <= min(lc.MAX_SPLITS, c["n_steps"])
    assert c["splits"] * c["steps_per_split"] >= c["n_steps"] > (c["splits"] - 1) * c["steps_per_split"]
    # split K only while all blocks stay resident at once (one wave)
    assert c["splits"] == 1 or c["row_tiles"] * c["splits"] <= sms * per_sm
    if c["row_tiles"] * 2 <= sms * per_sm and c["n_steps"] >= 2:
        assert c["splits"] >= 2  # and do split when two ranges fit


# ---------------------------------------------------------------------------------------------
# validation (CPU tensors: everything but the device is checked the same way)


@needs_torch
def test_validation_names_the_problem():
    dev = torch.device("cpu")
    n, k, bits, g = 6, 100, 4, 32
    packed = torch.zeros(n, lc.row_bytes(k, bits), dtype=torch.uint8)
    scales = torch.ones(n, 4, dtype=torch.float16)
    ok = {"packed": packed, "scales": scales, "zeros": None, "meta": None, "bits": bits, "group_size": g, "out_features": n,
              "in_features": k}

    def check(exc, match, **kw):
        a = dict(ok, **kw)
        with pytest.raises(exc, match=match):
            lc._check_weight(dev, a["packed"], a["scales"], a["zeros"], a["meta"], a["bits"], a["group_size"],
                             a["out_features"], a["in_features"])

    lc._check_weight(dev, packed, scales, None, None, bits, g, n, k)  # fine
    check(ValueError, "bits must be one of", bits=5)
    check(ValueError, "bits must be one of", bits=True)
    check(ValueError, "group_size must be one of", group_size=48)
    check(ValueError, "out_features", out_features=0)
    check(ValueError, "in_features", in_features=-3)
    check(TypeError, "packed must be torch.uint8", packed=packed.to(torch.int8))
    check(ValueError, r"packed must have shape \[6, 64\]", packed=packed[:, :32].contiguous())
    check(ValueError, r"scales must have shape \[6, 4\]", scales=torch.ones(n, 3, dtype=torch.float16))
    check(TypeError, "scales must be torch.float16", scales=scales.float())
    check(ValueError, r"zeros must have shape", zeros=torch.ones(n, 1, dtype=torch.float16))
    check(ValueError, "contiguous", packed=torch.zeros(64, n, dtype=torch.uint8).t())
    base = torch.zeros(n * 64 + 16, dtype=torch.uint8)
    check(ValueError, "16-byte aligned", packed=base[1 : 1 + n * 64].view(n, 64))
    check(TypeError, "packed must be a torch tensor", packed=np.zeros((n, 64), np.uint8))
    check(ValueError, "is on meta", scales=torch.ones(n, 4, dtype=torch.float16, device="meta"))
    # 2:4: values [N, ceil(Kv/32)*4*bits] with Kv = 16 * ceil(K/32), meta [N, ceil(K/32)*4]
    kv = lc.stored_columns(k, True)
    assert kv == 64
    vals = torch.zeros(n, lc.row_bytes(kv, 4), dtype=torch.uint8)
    meta = torch.zeros(n, 16, dtype=torch.uint8)
    lc._check_weight(dev, vals, torch.ones(n, 2, dtype=torch.float16), None, meta, 4, 32, n, k)
    with pytest.raises(ValueError, match=r"meta must have shape \[6, 16\]"):
        lc._check_weight(dev, vals, torch.ones(n, 2, dtype=torch.float16), None, meta[:, :8].contiguous(), 4, 32, n, k)


@needs_torch
def test_x_checks_and_missing_extension(monkeypatch):
    n, k = 4, 64
    packed = torch.zeros(n, 32, dtype=torch.uint8)
    scales = torch.ones(n, 1, dtype=torch.float16)
    with pytest.raises(TypeError, match="x must be float16 or bfloat16"):
        lc.quant_matmul(torch.zeros(2, k), packed, scales, None, 4, 0, n)
    with pytest.raises(ValueError, match=r"x must be 2-D"):
        lc.quant_matmul(torch.zeros(2, 3, k, dtype=torch.float16), packed, scales, None, 4, 0, n)
    with pytest.raises(TypeError, match="x must be a torch tensor"):
        lc.quant_matmul(np.zeros((2, k), np.float16), packed, scales, None, 4, 0, n)
    with pytest.raises(ValueError, match="meta must be a uint8 tensor"):
        lc.sparse24_quant_matmul(torch.zeros(2, k, dtype=torch.float16), packed, None, scales, None, 4, 0, n)
    x = torch.zeros(2, k, dtype=torch.float16)
    monkeypatch.setattr(_native, "cuda", None)
    with pytest.raises(CudaUnavailableError, match="without CUDA kernels"):
        lc.quant_matmul(x, packed, scales, None, 4, 0, n)
    with pytest.raises(CudaUnavailableError):
        lc.dequantize(packed, scales, None, 4, 0, n, k, torch.float16)


@needs_torch
@pytest.mark.skipif(_native.cuda is None, reason="needs evoforge's _cuda module")
def test_cpu_tensors_are_refused_with_the_extension():
    x = torch.zeros(2, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="take CUDA tensors"):
        lc.quant_matmul(x, torch.zeros(4, 32, dtype=torch.uint8), torch.ones(4, 1, dtype=torch.float16), None, 4, 0, 4)


# ---------------------------------------------------------------------------------------------
# the launch arguments: names accepted by the native module, pointers and sizes that a kernel
# following the emulation turns into the right y (CPU tensors, memory read through ctypes)


def _read(ptr, dtype, shape):
    import ctypes

    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(ctypes.string_at(ptr, n), dtype=dtype).reshape(shape).copy()


def _run_emulated(a):
    """Execute native quant_matmul arguments on CPU memory with the emulation; writes y."""
    import ctypes

    sparse = a["meta"] != 0
    cols = lc.stored_columns(a["K"], sparse)
    G = lc.num_groups(cols, a["group_size"])
    n, k, b = a["N"], a["K"], a["B"]
    y = emu.emulate_matmul(
        _read(a["x"], np.uint16, (b, k)), _read(a["packed"], np.uint8, (n, lc.row_bytes(cols, a["bits"]))),
        _read(a["scales"], np.uint16, (n, G)), _read(a["zeros"], np.uint16, (n, G)) if a["zeros"] else None,
        a["bits"], a["group_size"], n, meta=_read(a["meta"], np.uint8, (n, -(-k // 32) * 4)) if sparse else None,
        dtype=["float16", "bfloat16"][a["type"]], splits=a["splits"], steps_per_split=a["steps_per_split"])
    y = np.ascontiguousarray(y)  # keep it alive across the copy
    ctypes.memmove(a["y"], y.ctypes.data, y.nbytes)


@needs_torch
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_launch_arguments_drive_the_emulated_kernel(sparse, dtype):
    rng = np.random.default_rng(11)
    n, k, b, g = 150, 700, 6, 64
    if sparse:
        packed, meta, scales, zeros, W = random_sparse24(rng, n, k, 4, g, True)
    else:
        _, packed, scales, zeros, W = random_quant(rng, n, k, 3, g, True)
        meta = None
    bits = 4 if sparse else 3
    xb, x64 = random_x(rng, b, k, dtype)
    x = torch.from_numpy(xb.view(np.int16)).view(torch.float16 if dtype == "float16" else torch.bfloat16)
    t = {key: None if v is None else torch.from_numpy(np.ascontiguousarray(v))
         for key, v in (("packed", packed), ("scales", scales), ("zeros", zeros), ("meta", meta))}
    lc._check_weight(x.device, t["packed"], t["scales"], t["zeros"], t["meta"], bits, g, n, k)
    cfg = lc.kernel_config(b, n, k, sm_count=3, blocks_per_sm=2)  # several splits
    assert cfg["splits"] > 1
    args, y, ws = lc._matmul_args(x, t["packed"], t["scales"], t["zeros"], t["meta"], bits, g, n, cfg, 0, 0)
    assert ws.numel() == cfg["splits"] * b * n and args["workspace"] == ws.data_ptr()
    _run_emulated(args)
    check_close(y.view(torch.int16).numpy().view(np.uint16), dtype, x64, W)
    if _native.cuda is not None:  # the real module takes these names (and refuses a bad split first)
        with pytest.raises(ValueError, match="splits"):
            _native.cuda.quant_matmul(**dict(args, splits=lc.MAX_SPLITS + 1))


# ---------------------------------------------------------------------------------------------
# the kernels (GPU)


def _t(a, dev="cuda"):
    return torch.from_numpy(np.ascontiguousarray(a)).to(dev)


def _x_tensor(xb, dtype):
    t = torch.from_numpy(xb.view(np.int16)).cuda()
    return t.view(torch.float16 if dtype == "float16" else torch.bfloat16)


def _bits(y):
    return y.contiguous().view(torch.int16).cpu().numpy().view(np.uint16)


@cuda
@needs_gpu
def test_constants_match_the_native_module():
    mod = _native.cuda
    assert mod.quant_rows_per_block == lc.ROWS_PER_BLOCK
    assert mod.quant_codes_per_step == lc.CODES_PER_STEP
    assert mod.quant_max_batch == lc.MAX_BATCH
    assert mod.quant_max_splits == lc.MAX_SPLITS


@cuda
@needs_gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("with_zeros", [False, True])
def test_quant_matmul_against_float64_and_emulation(bits, dtype, with_zeros):
    rng = np.random.default_rng(bits + 10 * with_zeros)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for n, k, b, g in [(1, 1, 1, 0), (17, 300, 3, 64), (130, 517, 32, 32), (300, 1000, 16, 128),
                       (64, 4096, 8, 256), (257, 33, 5, 0), (40, 2048, 33, 128), (40, 96, 70, 32)]:
        _, packed, scales, zeros, W = random_quant(rng, n, k, bits, g, with_zeros)
        xb, x64 = random_x(rng, b, k, dtype)
        y = lc.quant_matmul(_x_tensor(xb, dtype), _t(packed), _t(scales), None if zeros is None else _t(zeros),
                            bits, g, n)
        torch.cuda.synchronize()
        assert y.shape == (b, n) and y.dtype == (torch.float16 if dtype == "float16" else torch.bfloat16)
        # B > 32 is torch's matmul of the dequantised weight (which may reduce in 16 bits): 2x looser
        check_close(_bits(y), dtype, x64, W, bound=BOUND[dtype] * (2 if b > lc.MAX_BATCH else 1))
        if b <= lc.MAX_BATCH:  # the kernels agree with their specification (mma sum order aside)
            per_sm = _native.cuda.quant_matmul_blocks_per_sm(int(dtype == "bfloat16"), bits, b, False, 0)
            assert per_sm >= 1
            c = lc.kernel_config(b, n, k, sms, per_sm)
            emu = emu.emulate_matmul(xb, packed, scales.view(np.uint16),
                                     None if zeros is None else zeros.view(np.uint16), bits, g, n, dtype=dtype,
                                     splits=c["splits"], steps_per_split=c["steps_per_split"])
            d = np.abs(emu.bits_to_f32(_bits(y), dtype).astype(np.float64) - emu.bits_to_f32(emu, dtype))
            # one output ulp (<= 2u |y|) apart at most, plus fp32 noise: the mma's internal summation
            # order is the only difference
            assert np.all(d <= 0.6 * BOUND[dtype] * (np.abs(x64) @ np.abs(W).T) + 1e-30)


@cuda
@needs_gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("bits", [4, 2])
def test_sparse24_matmul_against_float64(dtype, bits):
    rng = np.random.default_rng(bits)
    for n, k, b, g, wz in [(9, 300, 4, 32, False), (130, 64, 1, 0, True), (3, 31, 17, 128, True),
                           (257, 2080, 32, 256, False), (16, 512, 40, 64, True)]:
        packed, meta, scales, zeros, W = random_sparse24(rng, n, k, bits, g, wz)
        xb, x64 = random_x(rng, b, k, dtype)
        y = lc.sparse24_quant_matmul(_x_tensor(xb, dtype), _t(packed), _t(meta), _t(scales),
                                     None if zeros is None else _t(zeros), bits, g, n)
        fallback = b > lc.MAX_BATCH or bits != 4  # dequantise + torch
        check_close(_bits(y), dtype, x64, W, bound=BOUND[dtype] * (2 if fallback else 1))
        d = lc.sparse24_dequantize(_t(packed), _t(meta), _t(scales), None if zeros is None else _t(zeros), bits, g,
                                   n, k, torch.float16 if dtype == "float16" else torch.bfloat16)
        wd = emu.bits_to_f32(_bits(d), dtype).astype(np.float64)
        ulp = 2.0 ** (-7 if dtype == "bfloat16" else -10)  # relative; 2^-24: fp16 subnormal spacing
        assert np.all((wd == 0) | (W != 0)) and np.all(np.abs(wd - W) <= ulp * np.abs(W) + 2.0**-24)


@cuda
@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16] if torch is not None else [])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_dequantize_is_rounded_once(bits, dtype):
    rng = np.random.default_rng(bits)
    for n, k, g, wz in [(5, 77, 32, True), (33, 256, 0, False), (7, 1000, 256, True)]:
        _, packed, scales, zeros, W = random_quant(rng, n, k, bits, g, wz)
        d = lc.dequantize(_t(packed), _t(scales), None if zeros is None else _t(zeros), bits, g, n, k, dtype)
        assert d.shape == (n, k) and d.dtype == dtype
        ref = torch.from_numpy(W).to(dtype)  # float64 rounded once
        ulp = 2.0 ** (-7 if dtype == torch.bfloat16 else -10)
        assert torch.all((d.cpu().double() - ref.double()).abs() <= ulp * ref.double().abs() + 2.0**-24)


@cuda
@needs_gpu
def test_deterministic_strided_and_empty():
    rng = np.random.default_rng(5)
    n, k, bits, g = 1000, 4096, 4, 128
    _, packed, scales, zeros, W = random_quant(rng, n, k, bits, g, True)
    xb, x64 = random_x(rng, 7, k, "float16")
    x = _x_tensor(xb, "float16")
    args = (_t(packed), _t(scales), _t(zeros), bits, g, n)
    y1 = lc.quant_matmul(x, *args)
    y2 = lc.quant_matmul(x, *args)
    assert torch.equal(y1, y2)
    xs = x.t().contiguous().t()  # same values, column-major strides: copied
    assert not xs.is_contiguous() and torch.equal(lc.quant_matmul(xs, *args), y1)
    xo = torch.empty(7 * k + 1, dtype=torch.float16, device="cuda")[1:].view(7, k)  # unaligned x
    xo.copy_(x)
    check_close(_bits(lc.quant_matmul(xo, *args)), "float16", x64, W)
    e = lc.quant_matmul(x[:0], *args)
    assert e.shape == (0, n)


@cuda
@needs_gpu
def test_bad_inputs_on_the_gpu():
    n, k = 8, 64
    packed = torch.zeros(n, 32, dtype=torch.uint8, device="cuda")
    scales = torch.ones(n, 1, dtype=torch.float16, device="cuda")
    x = torch.zeros(2, k, dtype=torch.float16, device="cuda")
    with pytest.raises(ValueError, match="is on cpu"):
        lc.quant_matmul(x, packed.cpu(), scales, None, 4, 0, n)
    with pytest.raises(ValueError, match="take CUDA tensors"):
        lc.quant_matmul(x.cpu(), packed, scales, None, 4, 0, n)
    with pytest.raises(ValueError, match=r"packed must have shape \[8, 48\], got \[8, 32\]"):
        lc.quant_matmul(torch.zeros(2, k + 32, dtype=torch.float16, device="cuda"), packed, scales, None, 4, 0, n)
    with pytest.raises(ValueError, match="bits must be one of"):
        lc.quant_matmul(x, packed, scales, None, 5, 0, n)
    with pytest.raises(TypeError, match="dtype must be"):
        lc.dequantize(packed, scales, None, 4, 0, n, k, torch.float32)
    with pytest.raises(ValueError, match="out_features"):
        lc.quant_matmul(x, packed, scales, None, 4, 0, 0)


@pytest.mark.skipif(_native.cuda is None, reason="needs evoforge's _cuda module")
def test_native_checks_arguments_before_touching_the_device():
    """The native layer refuses bad geometry on its own (no device needed: nothing is launched)."""
    mod = _native.cuda
    P = 1 << 20  # a fake, 16-byte aligned device address: never dereferenced

    def mm(**kw):
        a = {"x": P, "type": 0, "B": 1, "x_aligned": False, "packed": P, "scales": P, "zeros": 0, "meta": 0, "bits": 4, "group_size": 0, "N": 8,
                 "K": 64, "splits": 1, "steps_per_split": 1, "workspace": 0, "y": P, "stream": 0, "device": 0}
        a.update(kw)
        mod.quant_matmul(**a)

    for kw, match in [({"splits": 3}, "splits"), ({"steps_per_split": 0}, "splits"), ({"bits": 5}, "bits"),
                      ({"group_size": 96}, "group_size"), ({"B": 0}, "batch"), ({"B": 33}, "batch"),
                      ({"K": 0}, "K ="), ({"packed": P + 2}, "aligned"), ({"x_aligned": True, "x": P + 8}, "x_aligned"),
                      ({"K": 1000, "splits": 2, "steps_per_split": 1}, "splits"),
                      ({"K": 1000, "splits": 2, "steps_per_split": 4}, "workspace"), ({"meta": P, "bits": 2}, "4-bit"),
                      ({"type": 2}, "type")]:
        with pytest.raises(ValueError, match=match):
            mm(**kw)
    # keyword names as evoforge/layers/_cuda.py passes them
    dq = {"packed": P, "scales": P, "zeros": 0, "meta": 0, "bits": 4, "group_size": 0, "N": 8, "K": 64, "type": 0,
          "out": P, "stream": 0, "device": 0}
    with pytest.raises(ValueError, match="bits"):
        mod.quant_dequantize(**dict(dq, bits=5))
    with pytest.raises(ValueError, match="out must be"):
        mod.quant_dequantize(**dict(dq, out=0))
    with pytest.raises(ValueError, match="type must be"):
        mod.quant_matmul_blocks_per_sm(type=2, bits=4, B=1, sparse=False, device=0)
    if evoforge.has_cuda():
        assert isinstance(mod.quant_matmul_supported(device=0), bool)
    else:  # no GPU: the CUDA runtime's error, not a TypeError for a renamed argument
        with pytest.raises(mod.CudaError):
            mod.quant_matmul_supported(device=0)
