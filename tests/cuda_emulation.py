"""Numpy emulations of evoforge's CUDA kernels: the executable specifications the tests check
against the CPU kernels on machines without a GPU (and, on a GPU, the kernels against them).

They live here, not in the package: nothing in evoforge runs them.

- :func:`pareto_rank_sorted_unique`: cuda/pareto.cu (``evoforge._pareto_cuda``), step by step:
  the same tiles, groups, block split, skips and update order.
- :func:`emulate_matmul`: cuda/layers.cu (``evoforge.layers._cuda``), the quantised / 2:4 matmul
  with its float16 / bfloat16 bit conversions (:func:`bits_to_f32`, :func:`f32_to_bits`).
- :func:`emulate_dare_mask`: cuda/merging.cu (``evoforge.merging.dare_mask(..., device="cuda")``),
  one thread per Philox block of 4 elements.
"""

from __future__ import annotations

import numpy as np

from evoforge import random as _er
from evoforge._pareto_cuda import GROUP, INT_MAX, WARP, kernel_config
from evoforge.layers._cuda import _ceil


def pareto_rank_sorted_unique(
    P: np.ndarray,
    *,
    tile: int | None = None,
    group: int = GROUP,
    cross_points: int | None = None,
    warp: int = WARP,
    target_blocks: int = 8 * 132,
    rng: np.random.Generator | None = None,
    stats: dict | None = None,
) -> np.ndarray:
    """Ranks of distinct lexicographically sorted rows P [U, M], computed exactly as the CUDA
    kernels do. ``tile``/``group``/``cross_points``/``warp`` default to the kernels' geometry;
    smaller ones exercise many tiles on small inputs. ``target_blocks`` is the cross kernel's
    block budget (8 per SM). With ``rng`` the cross blocks run in a random order, each reading
    the atomics that have landed so far, as on a GPU. ``stats``, when given, counts the groups
    a cross block skipped (``block_skips``), skipped by every warp (``warp_skips``) or folded."""
    P = np.asarray(P)
    U, M = P.shape
    if U == 0:
        return np.zeros(0, dtype=np.int32)
    if M == 1:  # iota_kernel
        return np.arange(U, dtype=np.int32)
    cfg = kernel_config(M)
    tile = cfg["tile"] if tile is None else tile
    pts = cfg["cross_points"] if cross_points is None else cross_points
    block = group  # a cross block stages one group point per thread
    assert tile % group == 0 and tile % (block * pts) == 0 and block % warp == 0

    Q = P[:, 1:]  # objective 0 is ordered by the sort
    ngroups = -(-U // group)
    gmin = np.stack([Q[g * group : (g + 1) * group].min(axis=0) for g in range(ngroups)])
    gmax = np.stack([Q[g * group : (g + 1) * group].max(axis=0) for g in range(ngroups)])
    gmaxr = np.zeros(ngroups, dtype=np.int64)  # written by intra for each finished group
    rank = np.zeros(U, dtype=np.int64)  # cudaMemsetAsync
    counts = {"block_skips": 0, "warp_skips": 0, "folds": 0, "warp_folds": 0, "warps_idle": 0}

    for t in range(-(-U // tile)):
        a = t * tile
        n = min(tile, U - a)
        b = a + n
        if t > 0:  # cross_kernel
            span = block * pts
            gx = -(-n // span)
            earlier = a // group
            per_seg = max(1, -(-(earlier * gx) // target_blocks))
            gy = -(-earlier // per_seg)
            blocks = [(x, y) for x in range(gx) for y in range(gy)]
            if rng is not None:
                rng.shuffle(blocks)
            for x, y in blocks:
                first = a + x * span
                idx = first + np.arange(pts)[:, None] * block + np.arange(block)[None, :]  # [pts, block]
                valid = idx < b
                safe = np.minimum(idx, U - 1)
                own = np.where(valid[..., None], Q[safe], 0)  # [pts, block, D]
                init = np.where(valid, rank[safe], INT_MAX)
                best = init.copy()
                last = min(first + span, b)
                bmax = gmax[first // group : (last - 1) // group + 1].max(axis=0)
                g_lo = y * per_seg
                g_hi = min(g_lo + per_seg, earlier)
                for g in range(g_hi - 1, g_lo - 1, -1):
                    gm = gmin[g]
                    if (gm > bmax).any():  # block skip: no point of the group dominates the block
                        counts["block_skips"] += 1
                        continue
                    sq = Q[g * group : (g + 1) * group]
                    sr = rank[g * group : (g + 1) * group]
                    need = (best <= gmaxr[g]) & ~(gm > own).any(axis=-1)  # [pts, block]
                    warp_runs = need.any(axis=0).reshape(-1, warp).any(axis=1)  # __any_sync
                    lanes = np.repeat(warp_runs, warp)  # [block]
                    if not lanes.any():
                        counts["warp_skips"] += 1
                        continue
                    counts["folds"] += 1
                    counts["warp_folds"] += int(warp_runs.sum())
                    counts["warps_idle"] += int((~warp_runs).sum())
                    dom = (sq[None, None, :, :] <= own[:, :, None, :]).all(axis=-1)  # [pts, block, G]
                    cand = np.where(dom, sr[None, None, :] + 1, 0).max(axis=-1)
                    best = np.where(lanes[None, :], np.maximum(best, cand), best)
                upd = valid & (best > init)  # atomicMax
                rank[idx[upd]] = np.maximum(rank[idx[upd]], best[upd])
        # intra_kernel: step j publishes the final rank of point a + j to the later points.
        for j in range(n - 1):
            r1 = rank[a + j] + 1
            later = rank[a + j + 1 : b]
            dom = (Q[a + j] <= Q[a + j + 1 : b]).all(axis=-1)
            rank[a + j + 1 : b] = np.where(dom & (r1 > later), r1, later)
        for g in range(a // group, -(-b // group)):
            gmaxr[g] = rank[g * group : min((g + 1) * group, b)].max()
    if stats is not None:
        stats.update(counts)
    return rank.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# cuda/layers.cu: the quantised / 2:4 matmul kernels' arithmetic in numpy, step by step (the same 32-bit
# words, shifts, masks and byte permutations, magic-number conversions and roundings, fragment
# slots, mma order and split order)

_F16_MAGIC, _BF16_MAGIC = 0x6400, 0x4300


def bits_to_f32(bits: np.ndarray, dtype: str) -> np.ndarray:
    bits = np.asarray(bits, dtype=np.uint16)
    if dtype == "float16":
        return bits.view(np.float16).astype(np.float32)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bits(v: np.ndarray, dtype: str) -> np.ndarray:
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
    a = bits_to_f32(a_bits, dtype).astype(np.float64)
    b = bits_to_f32(b_bits, dtype).astype(np.float64)
    r = a - b if op == "sub" else a * b
    if dtype == "float16":
        with np.errstate(over="ignore"):
            return r.astype(np.float16).view(np.uint16)
    # to bf16 through float32: exact for these operands (integers <= 255, fp16-derived values)
    return f32_to_bits(r.astype(np.float32), dtype)


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
        sf = bits_to_f32(s_bits, "float16").astype(np.float64)
        z = bits_to_f32(z_bits, "float16").astype(np.float64) if z_bits is not None else float(zc)
        nzs = -(z * sf)  # exact
        out = [f32_to_bits((q.astype(np.float64) * sf + nzs).astype(np.float32), dtype) for q in (lo, hi)]
        return out[0].astype(np.uint32) | (out[1].astype(np.uint32) << 16)
    magic = _F16_MAGIC if dtype == "float16" else _BF16_MAGIC
    if dtype == "bfloat16":
        s2 = f32_to_bits(bits_to_f32(s_bits, "float16"), "bfloat16")
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


def emulate_matmul(
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
        return np.stack([bits_to_f32(f & 0xFFFF, dtype), bits_to_f32(f >> 16, dtype)], axis=-1).astype(np.float64)

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
    return np.ascontiguousarray(f32_to_bits(total.T, dtype))


# ---------------------------------------------------------------------------------------------
# cuda/merging.cu: the DARE keep mask


#: DARE's operator stream (the top 8 bits of counter word 3), cpp/include/evoforge/merging.h.
DARE_STREAM = 10


def emulate_dare_mask(n: int, density: float, seed: int, stream: int, k: int, threads: int = 256) -> np.ndarray:
    """The mask dare_mask_kernel writes, bool [n]: thread ``b`` (of a grid-stride loop over
    ``ceil(n / 4)`` blocks, ``threads`` per CUDA block) draws the Philox4x32-10 block with key
    ``seed`` and counter ``(b & 0xffffffff, k, stream, (DARE_STREAM << 24) | (b >> 32))`` and writes
    elements ``4b .. 4b + 3`` (those below n): ``(w_q >> 8) < density * 2**24`` (in float64). The
    grid does not change the result; it is walked here in the kernel's order anyway."""
    nb = -(-n // 4)
    out = np.zeros(4 * nb, dtype=np.uint8)
    grid = min(-(-nb // threads), 65535 * 64) if nb else 0
    stride = max(1, grid * threads)
    cut = float(density) * 16777216.0
    key = np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32)
    for first in range(0, nb, stride):  # one grid-stride step: threads first .. first + stride - 1
        b = np.arange(first, min(first + stride, nb), dtype=np.uint64)
        sub = (b >> np.uint64(32)) & np.uint64(0xFFFFFF)
        ctr = np.stack([b & np.uint64(0xFFFFFFFF), np.full_like(b, k), np.full_like(b, stream),
                        np.uint64(DARE_STREAM << 24) | sub], axis=1).astype(np.uint32)
        w = _er.philox4x32_10(ctr, key)  # [nb, 4]: word q for element 4b + q
        out[4 * int(first): 4 * (int(first) + len(b))] = ((w >> 8).astype(np.float64) < cut).ravel()
    return out[:n].astype(np.bool_)
