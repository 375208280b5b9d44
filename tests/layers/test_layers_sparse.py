"""Sparse layer kernels (cpp/sparse.cpp) against float64 densify-then-matmul, and SparseLinear.

Error bound of every kernel: |y - y64| <= (K + 4) * 2^-23 * (|x| @ |W|^T) + 1e-30, where W is the
weight the packed format represents (float values, float16 values as float32, or s * (q - z)
rounded once to float32) and y64 the float64 product; float32 accumulation of K terms stays within
K * 2^-24 of that sum (Higham's gamma_K), with room for the dequantisation's own rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evoforge._native import core
from evoforge.layers.quant import unpack_codes
from evoforge.layers.sparse import (
    SparseLinear,
    pack_sparse,
    quantize_groups,
    sparse_matmul,
    unpack_sparse,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def random_sparse(rng, N, K, sparsity, pattern):
    W = rng.standard_normal((N, K)).astype(np.float32)
    if pattern == "2:4":
        Kp = -(-K // 4) * 4
        Wp = np.zeros((N, Kp), np.float32)
        Wp[:, :K] = W
        g = Wp.reshape(N, Kp // 4, 4)
        n_drop = 2 if sparsity <= 0.5 else 4  # ~100%: whole groups empty
        drop = np.argsort(rng.random(g.shape), axis=-1)[..., :n_drop]
        np.put_along_axis(g, drop, 0.0, axis=-1)
        return np.ascontiguousarray(Wp[:, :K])
    W[rng.random((N, K)) < sparsity] = 0.0
    return W


def reference_dense(b, K, fmt, bits, group_size):
    """numpy reading of the formats as documented (independent of the native unpacking)."""
    b = {k: v.numpy() for k, v in b.items()}

    def grid():
        s = b["scales"].astype(np.float32)
        return s, np.full_like(s, 2 ** (bits - 1)) if "zeros" not in b else b["zeros"].astype(np.float32)

    if fmt == "unstructured":
        N = b["mask"].shape[0]
        keep = np.unpackbits(b["mask"], axis=1, count=K, bitorder="little").astype(bool)
        W = np.zeros((N, K), np.float32)
        if bits is None:
            W[keep] = b["values"].astype(np.float32)
        elif keep.any():
            q = unpack_codes(b["packed"][None, :], bits, int(keep.sum()))[0].astype(np.float32)
            rows, cols = np.nonzero(keep)
            s, z = grid()
            g = K if group_size == 0 else group_size
            W[keep] = s[rows, cols // g] * (q - z[rows, cols // g])
        return W
    meta = b["meta"]
    N, Kp = meta.shape[0], meta.shape[1] * 8
    if bits is None:
        V = b["values"].astype(np.float32)
    else:
        q = unpack_codes(b["packed"], bits, Kp // 2).astype(np.float32)
        s, z = grid()
        gi = np.arange(Kp // 2) // (Kp // 2 if group_size == 0 else group_size)
        V = s[:, gi] * (q - z[:, gi])
    nib = np.stack([meta & 15, meta >> 4], axis=-1).reshape(N, Kp // 4)
    pos = np.stack([nib & 3, (nib >> 2) & 3], axis=-1).astype(np.int64)
    W = np.zeros((N, Kp // 4, 4), np.float32)
    np.put_along_axis(W, pos, V.reshape(N, Kp // 4, 2), axis=-1)
    return W.reshape(N, Kp)[:, :K]


def dense_of(W, buffers, fmt, bits, group_size, values_dtype):
    """The weight the packed buffers represent (float values: from W itself)."""
    if bits is None:
        return W.astype(np.float16).astype(np.float32) if values_dtype == torch.float16 else W
    return reference_dense(buffers, W.shape[1], fmt, bits, group_size)


def check_close(y, x, Wd, bias=None):
    x64, W64 = x.astype(np.float64), Wd.astype(np.float64)
    ref = x64 @ W64.T + (0 if bias is None else bias.astype(np.float64))
    K = x.shape[1]
    bound = (K + 4) * 2.0**-23 * (np.abs(x64) @ np.abs(W64).T + (0 if bias is None else np.abs(bias))) + 1e-30
    err = np.abs(y.astype(np.float64) - ref)
    assert (err <= bound).all(), f"max err {err.max():.3g}, bound there {bound.flat[np.argmax(err - bound)]:.3g}"


# ---- packing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["unstructured", "2:4"])
@pytest.mark.parametrize("vd", [torch.float32, torch.float16])
def test_pack_unpack_float_values_round_trip(fmt, vd):
    rng = np.random.default_rng(1)
    W = random_sparse(rng, 13, 77, 0.6, fmt)
    b = pack_sparse(W, fmt, values_dtype=vd)
    back = unpack_sparse(b, 77, fmt).numpy()
    assert np.array_equal(back, W.astype(np.float16).astype(np.float32) if vd == torch.float16 else W)
    if fmt == "unstructured":
        assert b["mask"].shape == (13, 10) and b["row_ptr"][-1] == int((W != 0).sum())
        keep = np.unpackbits(b["mask"].numpy(), axis=1, count=77, bitorder="little").astype(bool)
        assert np.array_equal(keep, W != 0)
    else:
        assert b["meta"].shape == (13, 96 // 8) and b["values"].shape == (13, 48)


def test_24_meta_layout_matches_the_contract():
    # row: group 0 keeps columns 1, 3; group 1 keeps 0, 2; group 2 has one non-zero at 2 (-> 0, 2)
    W = np.zeros((1, 12), np.float32)
    W[0, [1, 3, 4, 6, 10]] = [1, 2, 3, 4, 5]
    b = pack_sparse(W, "2:4")
    meta = b["meta"].numpy()[0]
    assert meta[0] == (1 | 3 << 2) | (0 | 2 << 2) << 4
    assert meta[1] & 15 == (0 | 2 << 2)
    assert b["values"].numpy()[0, :6].tolist() == [1, 2, 3, 4, 0, 5]


def test_24_pattern_violation_names_the_group():
    W = np.zeros((3, 16), np.float32)
    W[2, 4:7] = 1.0
    with pytest.raises(ValueError, match=r"not 2:4 sparse: row 2, columns 4\.\.7"):
        pack_sparse(W, "2:4")
    with pytest.raises(ValueError, match="not 2:4"):
        SparseLinear.from_dense(torch.from_numpy(W), format="2:4")


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_quantised_values_are_round_to_nearest_on_the_stored_grid(bits, symmetric):
    rng = np.random.default_rng(bits)
    W = random_sparse(rng, 6, 100, 0.5, "unstructured")
    keep = W != 0
    q, s, z = quantize_groups(W, keep, bits, 32, symmetric)
    assert s.dtype == np.float16 and s.shape == (6, 4) and (z is None) == symmetric
    zz = np.full(s.shape, 2 ** (bits - 1)) if symmetric else z.astype(np.float64)
    g = np.arange(100) // 32
    deq = s.astype(np.float64)[:, g] * (q - zz[:, g])
    # every kept weight is at its nearest grid point (within rounding) unless clipped at the range end
    cand = s.astype(np.float64)[:, g, None] * (np.arange(2**bits)[None, None, :] - zz[:, g, None])
    best = np.abs(cand - W[..., None]).min(-1)
    assert (np.abs(deq - W)[keep] <= best[keep] + 1e-6).all()


# ---- kernels against float64 -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    N=st.integers(1, 40),
    K=st.integers(1, 300),
    B=st.sampled_from([1, 2, 3, 7, 9, 64]),
    sparsity=st.sampled_from([0.0, 0.5, 0.7, 0.999, 1.0]),
    fmt=st.sampled_from(["unstructured", "2:4"]),
    values=st.sampled_from(["f32", "f16", 2, 3, 4, 8]),
    group_size=st.sampled_from([0, 32, 64, 128, 256]),
    symmetric=st.booleans(),
    isa=st.sampled_from([0, 1, 2]),
    seed=st.integers(0, 2**16),
)
def test_kernels_match_float64(N, K, B, sparsity, fmt, values, group_size, symmetric, isa, seed):
    rng = np.random.default_rng(seed)
    W = random_sparse(rng, N, K, sparsity, fmt)
    bits = values if isinstance(values, int) else None
    vd = torch.float16 if values == "f16" else torch.float32
    buf = pack_sparse(W, fmt, values_dtype=vd, bits=bits, group_size=group_size, symmetric=symmetric)
    Wd = dense_of(W, buf, fmt, bits, group_size, vd)
    if bits is not None:  # pruned weights stay exactly zero after quantisation
        assert (Wd[W == 0] == 0).all()
    # the native unpacking gives the same weight, bit for bit
    assert np.array_equal(unpack_sparse(buf, K, fmt, bits=bits, group_size=group_size).numpy(), Wd)
    x = rng.standard_normal((B, K)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32) if seed % 2 else None
    y = sparse_matmul(x, buf, K, fmt, bits=bits, group_size=group_size,
                      bias=None if bias is None else torch.from_numpy(bias), max_isa=isa)
    assert y.shape == (B, N) and y.dtype == np.float32
    check_close(y, x, Wd, bias)


@pytest.mark.parametrize("fmt", ["unstructured", "2:4"])
@pytest.mark.parametrize("bits", [None, 4, 3])
@pytest.mark.parametrize("isa", [0, 1, 2])
def test_results_do_not_depend_on_the_thread_count(fmt, bits, isa):
    rng = np.random.default_rng(7)
    W = random_sparse(rng, 300, 257, 0.6, fmt)
    buf = pack_sparse(W, fmt, bits=bits, group_size=64)
    x = rng.standard_normal((5, 257)).astype(np.float32)
    ys = [sparse_matmul(x, buf, 257, fmt, bits=bits, group_size=64, threads=t, max_isa=isa) for t in (1, 2, 3, 8)]
    for y in ys[1:]:
        assert np.array_equal(y, ys[0])


@pytest.mark.parametrize("isa", [1, 2])
def test_scalar_and_vector_paths_agree(isa):
    if core.sparse_best_isa() < isa:
        pytest.skip(f"this CPU lacks instruction set level {isa} (1 AVX2, 2 AVX-512)")
    rng = np.random.default_rng(3)
    for fmt in ("unstructured", "2:4"):
        W = random_sparse(rng, 50, 333, 0.5, fmt)
        for kw in ({}, {"values_dtype": torch.float16}, {"bits": 4, "group_size": 32}):
            buf = pack_sparse(W, fmt, **kw)
            x = rng.standard_normal((3, 333)).astype(np.float32)
            a = sparse_matmul(x, buf, 333, fmt, bits=kw.get("bits"), group_size=32, max_isa=isa)
            b = sparse_matmul(x, buf, 333, fmt, bits=kw.get("bits"), group_size=32, max_isa=0)
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# ---- bad input -------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(0)
    W = random_sparse(rng, 8, 40, 0.5, "unstructured")
    buf = pack_sparse(W)
    x = rng.standard_normal((2, 40)).astype(np.float32)
    with pytest.raises(ValueError, match=r"x must be \[B, 40\]"):
        sparse_matmul(x[:, :39], buf, 40)
    with pytest.raises(ValueError, match="NaN"):
        sparse_matmul(np.full((1, 40), np.nan, np.float32), buf, 40)
    with pytest.raises(ValueError, match="format"):
        pack_sparse(W, "1:4")
    with pytest.raises(ValueError, match="bits"):
        pack_sparse(W, bits=5)
    with pytest.raises(ValueError, match="group_size"):
        pack_sparse(W, bits=4, group_size=48)
    with pytest.raises(ValueError, match="NaN or inf"):
        pack_sparse(np.full((2, 3), np.inf, np.float32))
    with pytest.raises(ValueError, match="2-D"):
        pack_sparse(np.zeros(5, np.float32))
    with pytest.raises(TypeError, match="values_dtype"):
        pack_sparse(W, values_dtype=torch.int8)
    # the native checks: wrong dtypes and shapes, corrupt row_ptr / mask
    mask, rp, vals = buf["mask"].numpy(), buf["row_ptr"].numpy(), buf["values"].numpy()
    with pytest.raises(ValueError, match="mask has dtype"):
        core.sparse_unstructured_matmul(x, mask.astype(np.int16), rp, 40, values=vals)
    with pytest.raises(ValueError, match="values"):
        core.sparse_unstructured_matmul(x, mask, rp, 40, values=vals[:-1])
    with pytest.raises(ValueError, match="row_ptr"):
        core.sparse_unstructured_matmul(x, mask, rp[::-1].copy(), 40, values=vals)
    bad = rp.copy()
    bad[1:-1] = bad[2:]  # shifted counts: the mask's bits no longer match
    bad[-2] = bad[-1]
    with pytest.raises(ValueError, match="disagree"):
        core.sparse_unstructured_matmul(x, mask, bad, 40, values=vals)
    with pytest.raises(ValueError, match="disagree"):
        core.sparse_unstructured_dense(mask, bad, 40, values=vals)
    # bits past in_features (K = 4: only the low nibble is a column), each count consistent
    tail, rp4, v4 = np.array([[0xF0]], np.uint8), np.array([0, 4], np.int64), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="past in_features"):
        core.sparse_unstructured_dense(tail, rp4, 4, values=v4)
    with pytest.raises(ValueError, match="past in_features"):
        core.sparse_unstructured_matmul(np.ones((1, 4), np.float32), tail, rp4, 4, values=v4)
    with pytest.raises(ValueError, match="C-contiguous"):
        core.sparse24_matmul(np.asfortranarray(np.ones((3, 40), np.float32)),
                             np.zeros((2, 8), np.uint8), 40, values=np.zeros((2, 32), np.float32))


# ---- SparseLinear -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,kw", [("unstructured", {}), ("unstructured", {"values_dtype": torch.float16}),
                                    ("2:4", {}), ("2:4", {"bits": 4, "group_size": 32}),
                                    ("unstructured", {"bits": 3, "group_size": 64, "symmetric": False})])
def test_sparse_linear_matches_dense_linear_and_round_trips(fmt, kw):
    torch.manual_seed(0)
    lin = torch.nn.Linear(70, 33)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(random_sparse(np.random.default_rng(0), 33, 70, 0.5, fmt)))
    m = SparseLinear.from_linear(lin, fmt, **kw)
    x = torch.randn(2, 5, 70)
    ref = torch.nn.functional.linear(x.double(), m.to_dense().double(), lin.bias.double())
    y = m(x)
    assert y.shape == (2, 5, 33) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    xl = torch.randn(3, 40, 70)  # more than DENSE_ROWS rows: the dense fallback
    torch.testing.assert_close(m(xl).double(), torch.nn.functional.linear(xl.double(), m.to_dense().double(),
                               lin.bias.double()), rtol=1e-5, atol=1e-5)
    if not kw:
        torch.testing.assert_close(y, lin(x), rtol=1e-5, atol=1e-5)
    yb = m(x.bfloat16())
    assert yb.dtype == torch.bfloat16
    # a fresh module of the same settings loads the state (other buffer sizes: taken from the state)
    m2 = SparseLinear(70, 33, format=fmt, **kw)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2(x), y)
    m.half()  # a module dtype cast never re-types the packed format
    assert torch.equal(m(x), y)


def test_sparse_linear_rejects_wrong_width():
    m = SparseLinear(8, 4)
    with pytest.raises(ValueError, match="last dimension 8"):
        m(torch.zeros(2, 7))
