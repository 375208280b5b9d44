"""evoforge.solvers (SparseGPT, GPTQ, RTN) against textbook float64 column loops written here."""

from __future__ import annotations

import evoforge
import numpy as np
import pytest
from evoforge import solvers
from hypothesis import given, settings
from hypothesis import strategies as st

# ------------------------------------------------------------------------------------------------
# Independent references: float64, one column at a time, every later column updated at once
# (no blocks of lazy updates), H^-1 via inverse then Cholesky as in the papers.


def ref_factor(H, percdamp=0.01):
    H = np.array(H, dtype=np.float64)
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    H[np.diag_indices_from(H)] += percdamp * np.mean(np.diag(H))
    U = np.linalg.cholesky(np.linalg.inv(H)).T  # H^-1 = L L^T = U^T U
    return U, dead


def ref_counts(rows, cols, bs, s):
    """Pruned weights per (row, block): cumulative rounding of s * (position in row-major order)."""
    c = lambda x: int(np.floor(s * x + 0.5))
    out = np.zeros((rows, -(-cols // bs)), dtype=np.int64)
    for r in range(rows):
        for b in range(out.shape[1]):
            start, end = r * cols + b * bs, r * cols + min((b + 1) * bs, cols)
            out[r, b] = c(end) - c(start)
    return out


def ref_sparsegpt(W, H, s=None, bs=128, n=0, m=0, percdamp=0.01):
    U, dead = ref_factor(H, percdamp)
    W = np.array(W, dtype=np.float64)
    W[:, dead] = 0
    R, C = W.shape
    d = np.diag(U)
    pruned = np.zeros((R, C), dtype=bool)
    counts = None if m else ref_counts(R, C, bs, s)
    for i in range(C):
        if not m and i % bs == 0:
            i2 = min(i + bs, C)
            score = W[:, i:i2] ** 2 / d[i:i2] ** 2
            for r in range(R):
                pruned[r, i + np.argsort(score[r], kind="stable")[: counts[r, i // bs]]] = True
        if m and i % m == 0:
            score = W[:, i : i + m] ** 2 / d[i : i + m] ** 2
            for r in range(R):
                pruned[r, i + np.argsort(score[r], kind="stable")[:n]] = True
        q = np.where(pruned[:, i], 0.0, W[:, i])
        err = (W[:, i] - q) / d[i]
        W[:, i] = q
        W[:, i + 1 :] -= np.outer(err, U[i, i + 1 :])
    return W, pruned


def ref_grid(x, bits, sym):
    """GPTQ's min/max grid per row of x (rows, k)."""
    maxq = 2**bits - 1
    xmin = np.minimum(x.min(axis=1), 0)
    xmax = np.maximum(x.max(axis=1), 0)
    if sym:
        xmax = np.maximum(-xmin, xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)
    both = (xmin == 0) & (xmax == 0)
    xmin = np.where(both, -1.0, xmin)
    xmax = np.where(both, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    zero = np.full_like(scale, (maxq + 1) / 2) if sym else np.round(-xmin / scale)
    return scale, zero


def ref_quantize(x, scale, zero, bits):
    q = np.clip(np.round(x / scale) + zero, 0, 2**bits - 1)
    return scale * (q - zero), q


def ref_gptq(W, H, bits, gs=128, sym=False, act_order=False, percdamp=0.01):
    W = np.array(W, dtype=np.float64)
    H = np.array(H, dtype=np.float64)
    R, C = W.shape
    dead = np.diag(H) == 0
    W[:, dead] = 0
    perm = np.arange(C)
    if act_order:
        Hd = H.copy()
        Hd[dead, dead] = 1
        perm = np.argsort(-np.diag(Hd), kind="stable")
        W, H = W[:, perm], H[np.ix_(perm, perm)]
    U, _ = ref_factor(H, percdamp)
    Q = np.zeros((R, C), dtype=np.int64)
    if gs <= 0 or gs >= C:
        gs = C
    scales, zeros = np.zeros((R, -(-C // gs))), np.zeros((R, -(-C // gs)))
    for i in range(C):
        if i % gs == 0:
            scales[:, i // gs], zeros[:, i // gs] = ref_grid(W[:, i : i + gs], bits, sym)
        wq, Q[:, i] = ref_quantize(W[:, i], scales[:, i // gs], zeros[:, i // gs], bits)
        err = (W[:, i] - wq) / U[i, i]
        W[:, i] = wq
        W[:, i + 1 :] -= np.outer(err, U[i, i + 1 :])
    inv = np.argsort(perm)
    return W[:, inv], scales, zeros, Q[:, inv]


def ref_rtn(W, bits, gs, sym):
    W = np.array(W, dtype=np.float64)
    R, C = W.shape
    gs = C if gs <= 0 or gs >= C else gs
    out, Q = np.zeros_like(W), np.zeros((R, C), dtype=np.int64)
    for g in range(0, C, gs):
        scale, zero = ref_grid(W[:, g : g + gs], bits, sym)
        out[:, g : g + gs], Q[:, g : g + gs] = ref_quantize(W[:, g : g + gs], scale[:, None], zero[:, None], bits)
    return out, Q


# ------------------------------------------------------------------------------------------------
# Layers with correlated inputs


def layer(rows, cols, seed=0, n=None, dead=()):
    """(W, X, H): X has a random covariance and a few large-variance inputs, H = 2 X^T X / n."""
    rng = np.random.default_rng(seed)
    n = n or 4 * cols
    A = rng.standard_normal((cols, cols)) / np.sqrt(cols)
    X = rng.standard_normal((n, cols)) @ A + 0.2 * rng.standard_normal((n, cols))
    X *= np.exp(rng.standard_normal(cols) * 0.5)
    X[:, list(dead)] = 0
    W = rng.standard_normal((rows, cols))
    return W, X, 2 * X.T @ X / n


def recon(W, Wc, X):
    return float(np.linalg.norm((np.asarray(W, np.float64) - np.asarray(Wc, np.float64)) @ X.T))


# ------------------------------------------------------------------------------------------------
# SparseGPT


@pytest.mark.parametrize(
    "rows,cols,bs,s,dead",
    [(13, 100, 32, 0.5, ()), (8, 70, 128, 0.3, (3, 40)), (20, 130, 64, 0.77, (0,)), (7, 64, 16, 0.0, ())],
)
def test_sparsegpt_matches_reference_f64(rows, cols, bs, s, dead):
    W, _X, H = layer(rows, cols, seed=rows + cols, dead=dead)
    want, want_mask = ref_sparsegpt(W, H, s, bs)
    got, mask = solvers.sparsegpt(W, H, s, blocksize=bs, return_mask=True)
    assert got.dtype == np.float64 and got.shape == W.shape
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * np.abs(want).max())
    assert np.all(got[mask] == 0)


@pytest.mark.parametrize("n,m,bs", [(2, 4, 128), (1, 4, 8), (4, 8, 64)])
def test_sparsegpt_n_m_matches_reference(n, m, bs):
    W, _X, H = layer(11, 96, seed=n * m)
    want, want_mask = ref_sparsegpt(W, H, bs=bs, n=n, m=m)
    got, mask = solvers.sparsegpt(W, H, blocksize=bs, prune_n=n, prune_m=m, return_mask=True)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * np.abs(want).max())
    groups = mask.reshape(11, -1, m).sum(axis=2)
    assert np.all(groups == n)


def test_sparsegpt_float32_close_to_reference():
    W, X, H = layer(48, 300, seed=5)
    want, want_mask = ref_sparsegpt(W, H, 0.6, 128)
    got, mask = solvers.sparsegpt(W.astype(np.float32), H.astype(np.float32), 0.6, return_mask=True)
    assert got.dtype == np.float32
    assert (mask == want_mask).mean() > 0.995
    assert abs(recon(W, got, X) - recon(W, want, X)) < 1e-2 * recon(W, want, X)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 300), st.integers(1, 130), st.floats(0, 0.999))
def test_prune_counts(rows, cols, bs, s):
    c = solvers.prune_counts(rows, cols, bs, s)
    assert c.dtype == np.int32 and c.shape == (rows, -(-cols // bs))
    np.testing.assert_array_equal(c, ref_counts(rows, cols, bs, s))
    assert c.sum() == int(np.floor(s * rows * cols + 0.5))
    widths = np.minimum(np.arange(1, c.shape[1] + 1) * bs, cols) - np.arange(c.shape[1]) * bs
    assert np.all(np.abs(c - s * widths) < 1 + 1e-9) and np.all(c <= widths)


@pytest.mark.parametrize("s", [0.25, 0.5, 0.7])
def test_exact_sparsity_per_row_and_block(s):
    W, _X, H = layer(30, 200, seed=1)
    got, mask = solvers.sparsegpt(W.astype(np.float32), H, s, blocksize=64, return_mask=True)
    nb = -(-200 // 64)
    per_block = np.stack([mask[:, b * 64 : (b + 1) * 64].sum(axis=1) for b in range(nb)], axis=1)
    np.testing.assert_array_equal(per_block, solvers.prune_counts(30, 200, 64, s))
    assert mask.sum() == round(s * 30 * 200)
    assert (got == 0).sum() >= mask.sum()


def test_levels_equal_single_solves_bit_for_bit():
    W, _X, H = layer(40, 200, seed=2, dead=(7,))
    W32 = W.astype(np.float32)
    levels = [0.0, 0.1, 0.35, 0.5, 0.8]
    out, masks = solvers.sparsegpt_levels(W32, H, levels, blocksize=64, return_mask=True)
    assert out.shape == (5, 40, 200) and out.dtype == np.float32
    f = solvers.factor_hessian(H, dtype=np.float32)  # a raw H is factorised in W's dtype
    for k, s in enumerate(levels):
        one, m1 = solvers.sparsegpt(W32, f, s, blocksize=64, return_mask=True)
        np.testing.assert_array_equal(out[k], one)
        np.testing.assert_array_equal(masks[k], m1)
    expect0 = W32.copy()
    expect0[:, 7] = 0
    np.testing.assert_array_equal(out[0], expect0)


def _magnitude(W, s):
    W = np.array(W, dtype=np.float64)
    k = round(s * W.shape[1])
    idx = np.argsort(np.abs(W), axis=1, kind="stable")[:, :k]
    np.put_along_axis(W, idx, 0.0, axis=1)
    return W


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.integers(2, 24), st.integers(16, 160), st.sampled_from([0.3, 0.5, 0.7]), st.integers(0, 99))
def test_sparsegpt_beats_magnitude(rows, cols, s, seed):
    W, X, H = layer(rows, cols, seed=seed)
    got = solvers.sparsegpt(W.astype(np.float32), H, s, blocksize=32)
    assert recon(W, got, X) < recon(W, _magnitude(W, s), X)


# ------------------------------------------------------------------------------------------------
# GPTQ and RTN


@pytest.mark.parametrize(
    "rows,cols,bits,gs,sym,act",
    [
        (9, 128, 4, 128, False, False),
        (9, 200, 3, 64, False, False),  # partial last group
        (6, 96, 2, 32, True, False),
        (5, 150, 8, 256, False, False),  # one group per row
        (7, 100, 3, -1, True, False),
        (8, 192, 4, 48, False, True),
        (4, 70, 2, -1, False, True),
    ],
)
def test_gptq_matches_reference_f64(rows, cols, bits, gs, sym, act):
    W, _X, H = layer(rows, cols, seed=cols + bits, dead=(1,))
    want, scales, zeros, q = ref_gptq(W, H, bits, gs, sym, act)
    got = solvers.gptq(W, H, bits, group_size=gs, symmetric=sym, blocksize=64, act_order=act)
    np.testing.assert_array_equal(got.q, q)
    np.testing.assert_allclose(got.weight, want, rtol=0, atol=1e-9 * np.abs(want).max())
    np.testing.assert_allclose(got.scales, scales, rtol=1e-9)
    np.testing.assert_array_equal(got.zeros, zeros)
    # the dequantised weight is on the grid of its group
    deq = np.take_along_axis(got.scales, np.broadcast_to(got.g_idx, W.shape).astype(np.int64), 1) * (
        got.q - np.take_along_axis(got.zeros, np.broadcast_to(got.g_idx, W.shape).astype(np.int64), 1)
    )
    np.testing.assert_allclose(got.weight, deq, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("gs", [32, 128, 100])
def test_gptq_values_on_the_group_grid(bits, gs):
    W, _X, H = layer(16, 257, seed=bits)
    r = solvers.gptq(W.astype(np.float32), H, bits, group_size=gs)
    assert r.weight.dtype == np.float32 and r.q.dtype == np.uint8 and r.g_idx.dtype == np.int32
    assert r.scales.shape == (16, -(-257 // gs)) and int(r.q.max()) <= 2**bits - 1
    np.testing.assert_array_equal(r.g_idx, np.arange(257) // gs)
    for g in range(r.scales.shape[1]):
        cols = slice(g * gs, (g + 1) * gs)
        for row in range(16):
            assert len(np.unique(r.weight[row, cols])) <= 2**bits
        np.testing.assert_allclose(
            r.weight[:, cols], r.scales[:, g : g + 1] * (r.q[:, cols] - r.zeros[:, g : g + 1]), rtol=1e-6, atol=1e-7
        )


def test_gptq_float32_close_to_reference():
    W, X, H = layer(32, 256, seed=9)
    want, *_ = ref_gptq(W, H, 3, 64)
    got = solvers.gptq(W.astype(np.float32), H.astype(np.float32), 3, group_size=64)
    assert abs(recon(W, got.weight, X) - recon(W, want, X)) < 2e-2 * recon(W, want, X)


@pytest.mark.parametrize("gs,sym", [(32, False), (64, True), (-1, False), (50, False)])
def test_rtn_matches_reference_and_diagonal_gptq(gs, sym):
    W, _X, H = layer(10, 150, seed=3)
    want, q = ref_rtn(W, 3, gs, sym)
    r = solvers.rtn(W, 3, group_size=gs, symmetric=sym)
    np.testing.assert_array_equal(r.q, q)
    np.testing.assert_allclose(r.weight, want, rtol=1e-12)
    # with a diagonal H there is no error to feed back: GPTQ is RTN
    g = solvers.gptq(W, np.diag(np.diag(H)), 3, group_size=gs, symmetric=sym)
    np.testing.assert_array_equal(g.q, r.q)
    np.testing.assert_allclose(g.weight, r.weight, rtol=1e-12)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.integers(2, 24), st.integers(16, 160), st.sampled_from([2, 3, 4]), st.sampled_from([16, 32, -1]),
       st.integers(0, 99))
def test_gptq_beats_rtn(rows, cols, bits, gs, seed):
    W, X, H = layer(rows, cols, seed=seed)
    W32 = W.astype(np.float32)
    ours = solvers.gptq(W32, H, bits, group_size=gs)
    base = solvers.rtn(W32, bits, group_size=gs)
    assert recon(W, ours.weight, X) < recon(W, base.weight, X)


def test_gptq_levels_equal_single_solves():
    W, _X, H = layer(12, 128, seed=4)
    out = solvers.gptq_levels(W.astype(np.float32), H, [2, 3, 4], group_size=32)
    for b, r in zip([2, 3, 4], out):
        one = solvers.gptq(W.astype(np.float32), H, b, group_size=32)
        np.testing.assert_array_equal(r.weight, one.weight)
        np.testing.assert_array_equal(r.q, one.q)


# ------------------------------------------------------------------------------------------------
# Threads, types, errors


def test_same_output_on_any_thread_count():
    W, _X, H = layer(100, 300, seed=6)
    W32 = W.astype(np.float32)
    outs = []
    try:
        for t in (1, 2, 3):
            evoforge.set_num_threads(t)
            outs.append(
                (solvers.sparsegpt_levels(W32, H, [0.3, 0.6], blocksize=64), solvers.gptq(W32, H, 3, group_size=64).weight)
            )
    finally:
        evoforge.set_num_threads(0)
    for s, g in outs[1:]:
        np.testing.assert_array_equal(s, outs[0][0])
        np.testing.assert_array_equal(g, outs[0][1])


def test_torch_in_torch_out_and_inputs_untouched():
    torch = pytest.importorskip("torch")
    W, X, H = layer(8, 64, seed=7)
    Wt, Ht = torch.from_numpy(W.astype(np.float32)), torch.from_numpy(H)
    W0 = Wt.clone()
    out = solvers.sparsegpt(Wt, Ht, 0.5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), solvers.sparsegpt(W.astype(np.float32), H, 0.5))
    r = solvers.gptq(Wt, Ht, 4, group_size=32)
    assert isinstance(r.weight, torch.Tensor) and r.q.dtype == torch.uint8
    assert torch.equal(Wt, W0)
    Hx = solvers.hessian(torch.from_numpy(X))
    np.testing.assert_allclose(Hx.numpy(), H, rtol=1e-10)
    np.testing.assert_allclose(solvers.hessian(X[None]), H, rtol=1e-10)


def test_bad_inputs():
    W, _X, H = layer(4, 32, seed=8)
    with pytest.raises(TypeError, match="W must be float32 or float64"):
        solvers.sparsegpt(W.astype(np.float16), H, 0.5)
    with pytest.raises(ValueError, match="W must be 2-D"):
        solvers.sparsegpt(W[0], H, 0.5)
    bad = W.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="W holds NaN or inf in row 2"):
        solvers.gptq(bad, H, 4)
    with pytest.raises(ValueError, match=r"H must have shape \(32, 32\)"):
        solvers.sparsegpt(W, H[:31, :31], 0.5)
    with pytest.raises(TypeError, match="H must be float32 or float64"):
        solvers.sparsegpt(W, H.astype(int), 0.5)
    Hn = H.copy()
    Hn[0, 0] = np.nan
    with pytest.raises(ValueError, match="H holds NaN"):
        solvers.sparsegpt(W, Hn, 0.5)
    with pytest.raises(ValueError, match="symmetric"):
        solvers.sparsegpt(W, H + np.triu(np.ones_like(H)), 0.5)
    with pytest.raises(ValueError, match="not positive definite after dampening"):
        solvers.sparsegpt(W, -np.ones((32, 32)) + 2 * np.eye(32), 0.5, percdamp=0.0)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        solvers.sparsegpt(W, H - 10 * np.eye(32) * H.max(), 0.5)
    for s in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="sparsity"):
            solvers.sparsegpt(W, H, s)
    with pytest.raises(TypeError, match="sparsity"):
        solvers.sparsegpt(W, H, "0.5")
    with pytest.raises(ValueError, match=r"sparsities\[1\]"):
        solvers.sparsegpt_levels(W, H, [0.5, 1.5])
    with pytest.raises(ValueError, match="sparsities is empty"):
        solvers.sparsegpt_levels(W, H, [])
    with pytest.raises(ValueError, match="sparsity is required"):
        solvers.sparsegpt(W, H)
    with pytest.raises(ValueError, match="multiples of prune_m"):
        solvers.sparsegpt(W, H, prune_n=2, prune_m=5)
    with pytest.raises(ValueError, match="prune_n must be < prune_m"):
        solvers.sparsegpt(W, H, prune_n=4, prune_m=4)
    with pytest.raises(ValueError, match="blocksize"):
        solvers.sparsegpt(W, H, 0.5, blocksize=0)
    with pytest.raises(ValueError, match="percdamp"):
        solvers.sparsegpt(W, H, 0.5, percdamp=-1)
    for b in (1, 9):
        with pytest.raises(ValueError, match="bits"):
            solvers.gptq(W, H, b)
    with pytest.raises(TypeError, match="bits"):
        solvers.rtn(W, 4.0)
    with pytest.raises(ValueError, match="group_size"):
        solvers.gptq(W, H, 4, group_size=0)
    f = solvers.factor_hessian(H, act_order=True)
    with pytest.raises(ValueError, match="act-order"):
        solvers.sparsegpt(W, f, 0.5)
    with pytest.raises(ValueError, match="pass act_order=True"):
        solvers.gptq(W, f, 4)
    with pytest.raises(ValueError, match="percdamp"):
        solvers.gptq(W, f, 4, act_order=True, percdamp=0.1)
    with pytest.raises(ValueError, match="64 columns"):
        solvers.gptq(np.zeros((2, 64)), solvers.factor_hessian(H), 4)


def test_prune_counts_and_sizes_are_range_checked():
    """blocksize=0 divided by zero, 2**64 overflowed a C long, rows=-1 returned an empty array."""
    np.testing.assert_array_equal(solvers.prune_counts(2, 8, 4, 0.5), [[2, 2], [2, 2]])
    assert solvers.prune_counts(0, 8, 4, 0.5).shape == (0, 2)
    assert solvers.prune_counts(3, 8, 4, 1.0).sum() == 24
    for kw in ({"rows": -1}, {"cols": -1}, {"blocksize": 0}, {"blocksize": 2**64}, {"rows": 2**62},
               {"sparsity": 1.5}, {"sparsity": float("nan")}):
        args = {"rows": 2, "cols": 8, "blocksize": 4, "sparsity": 0.5, **kw}
        with pytest.raises(ValueError, match=next(iter(kw))):
            solvers.prune_counts(**args)
    for kw in ({"rows": 2.5}, {"blocksize": float("inf")}, {"cols": True}, {"sparsity": "0.5"}):
        with pytest.raises(TypeError, match=next(iter(kw))):
            solvers.prune_counts(**{"rows": 2, "cols": 8, "blocksize": 4, "sparsity": 0.5, **kw})
    W, _X, H = layer(4, 32, seed=3)
    for call in (lambda: solvers.sparsegpt(W, H, 0.5, blocksize=2**64), lambda: solvers.gptq(W, H, 4, blocksize=2**64),
                 lambda: solvers.sparsegpt_levels(W, H, [0.5], blocksize=2**64)):
        with pytest.raises(ValueError, match=r"blocksize must lie in \[1, 2147483647\]"):
            call()


def test_hessian_of_0d_torch_tensor():
    torch = pytest.importorskip("torch")
    for X in (torch.tensor(1.0), np.float64(1.0)):
        with pytest.raises(ValueError, match="at least one dimension"):
            solvers.hessian(X)


def test_dead_inputs_and_zero_rows():
    W, _X, H = layer(6, 40, seed=10, dead=(0, 5, 39))
    out = solvers.sparsegpt(W, H, 0.25)
    assert np.all(out[:, [0, 5, 39]] == 0)
    r = solvers.gptq(W, H, 3, group_size=8)
    np.testing.assert_array_equal(r.weight[:, [0, 5, 39]], 0)
    empty = solvers.sparsegpt(np.zeros((0, 40)), H, 0.5)
    assert empty.shape == (0, 40)
