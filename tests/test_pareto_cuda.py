"""The CUDA Pareto ranking (cuda/pareto.cu, evoforge/_pareto_cuda.py) against the CPU kernel.

Two layers:
- everywhere: the kernels' algorithm as a numpy emulation (tests/cuda_emulation.py: same tiles,
  groups, block split, skips, update order; cross blocks in random order) and the torch pipeline
  around it (on CPU tensors) must equal ``evoforge.pareto.nondominated_rank``;
- ``@pytest.mark.cuda`` (skipped without a GPU and the _cuda module): the kernels themselves.

torch, hypothesis and moocore are optional here: tests needing one skip when it is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

import evoforge
from evoforge import _native, pareto
from evoforge import _pareto_cuda as pc

try:
    import torch
except ImportError:  # pragma: no cover - torch is in the test extras
    torch = None

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - hypothesis may be missing on a GPU machine
    HAVE_HYPOTHESIS = False

from cuda_emulation import pareto_rank_sorted_unique as emulate_rank  # noqa: E402
from strategies import CV_VALUES, INF, TIE_VALUES  # noqa: E402
KINDS = ("uniform", "simplex", "correlated", "integers", "ties")

GPU = (
    torch is not None
    and _native.cuda is not None
    and evoforge.has_cuda()
    and torch.cuda.is_available()
)
cuda = pytest.mark.cuda
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU, torch with CUDA and evoforge's _cuda module")
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

# Small geometries of the emulation: many tiles, groups, blocks and warps on small inputs.
TINY = [
    dict(tile=8, group=4, cross_points=2, warp=2, target_blocks=1),
    dict(tile=8, group=4, cross_points=1, warp=2, target_blocks=3),
    dict(tile=16, group=4, cross_points=2, warp=4, target_blocks=50),
    dict(tile=4, group=4, cross_points=1, warp=1, target_blocks=2),
]


def point_set(kind: str, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.random((n, m))
    if kind == "simplex":  # one front
        x = rng.exponential(size=(n, m))
        return x / x.sum(axis=1, keepdims=True)
    if kind == "correlated":  # many fronts
        return rng.random((n, 1)) + 0.02 * rng.standard_normal((n, m))
    if kind == "integers":  # ties and duplicates
        return rng.integers(0, 5, size=(n, m)).astype(np.float64)
    if kind == "ties":  # +-inf, -0.0 next to 0.0, duplicates
        return rng.choice(TIE_VALUES, size=(n, m))
    raise ValueError(kind)


def sorted_unique(F: np.ndarray) -> np.ndarray:
    """Distinct rows in lexicographic order, -0.0 as 0.0 (what the kernels receive)."""
    F = np.asarray(F, dtype=np.float64) + 0.0
    if len(F) == 0:
        return F
    order = np.lexsort(F.T[::-1])
    S = F[order]
    keep = np.ones(len(S), dtype=bool)
    keep[1:] = (S[1:] != S[:-1]).any(axis=1)
    return S[keep]


def emulation_ranker(**kw):
    def rank(P):
        return torch.from_numpy(emulate_rank(P.numpy(), **kw))

    return rank


# ---------------------------------------------------------------------------------------------
# Everywhere: the algorithm (numpy emulation) and the torch pipeline


def test_kernel_config_mirrors_native():
    for m in range(1, pc.MAX_OBJECTIVES + 1):
        c = pc.kernel_config(m)
        assert c["tile"] % c["group"] == 0 and c["tile"] % (c["cross_block"] * c["cross_points"]) == 0
        if _native.cuda is not None:
            assert _native.cuda.pareto_config(m) == c
    for bad in (0, pc.MAX_OBJECTIVES + 1):
        with pytest.raises(ValueError, match="objectives"):
            pc.kernel_config(bad)
        if _native.cuda is not None:
            with pytest.raises(ValueError, match="objectives"):
                _native.cuda.pareto_config(bad)


def test_native_workspace_bytes():
    if _native.cuda is None:
        pytest.skip("evoforge built without CUDA")
    ws = _native.cuda.rank_sorted_unique_workspace_bytes
    assert ws(0, 3, 8) == 0 and ws(1000, 1, 8) == 0
    assert ws(1000, 3, 8) >= 2 * 4 * 2 * 8 + 4 * 4
    assert ws(10**6, 5, 8) >= ws(10**6, 5, 4)


@pytest.mark.parametrize("geometry", TINY)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 9, 16])
def test_emulation_tiny_geometry_matches_cpu(geometry, m):
    rng = np.random.default_rng(17 * m + geometry["tile"])
    for kind in KINDS:
        for n in (1, 2, 5, 37, 150):
            P = sorted_unique(point_set(kind, n, m, rng))
            got = emulate_rank(P, rng=rng, **geometry)
            np.testing.assert_array_equal(got, pareto.nondominated_rank(P), err_msg=f"{kind} n={n}")


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6, 7, 9, 12, 16])
def test_emulation_real_geometry_matches_cpu(m):
    rng = np.random.default_rng(m)
    for kind in ("uniform", "simplex", "correlated", "integers"):
        n = 3000 if m <= 6 else 1200
        P = sorted_unique(point_set(kind, n, m, rng))
        got = emulate_rank(P, rng=rng)
        np.testing.assert_array_equal(got, pareto.nondominated_rank(P), err_msg=kind)


def test_emulation_exercises_every_skip():
    """The skips are where a blocked kernel can go wrong: make sure the tests reach them."""
    rng = np.random.default_rng(5)
    total = {"block_skips": 0, "warp_skips": 0, "folds": 0, "warps_idle": 0}
    for kind in ("correlated", "uniform", "simplex"):
        for geometry in TINY:
            P = sorted_unique(point_set(kind, 300, 3, rng))
            stats: dict = {}
            got = emulate_rank(P, rng=rng, stats=stats, **geometry)
            np.testing.assert_array_equal(got, pareto.nondominated_rank(P))
            for k in total:
                total[k] += stats[k]
    assert all(v > 0 for v in total.values()), total


def test_emulation_chain_and_antichain():
    for m in (2, 3, 5):
        chain = np.repeat(np.arange(2500, dtype=np.float64)[:, None], m, axis=1)
        np.testing.assert_array_equal(emulate_rank(chain), np.arange(2500))
        x = np.linspace(0, 1, 2500)
        anti = np.stack([x, 1 - x] + [np.full_like(x, 0.5)] * (m - 2), axis=1)
        np.testing.assert_array_equal(emulate_rank(anti), np.zeros(2500))


@needs_torch
@pytest.mark.parametrize("geometry", TINY[:2] + [{}])
def test_pipeline_matches_cpu(geometry):
    """The torch side (lexsort, duplicates, constraints, scatter) around the emulated kernels."""
    rng = np.random.default_rng(3)
    for trial in range(120):
        m = int(rng.integers(1, 7))
        n = int(rng.integers(0, 200))
        F = point_set(KINDS[trial % len(KINDS)], n, m, rng)
        cv = rng.choice(CV_VALUES, size=n) if trial % 3 == 0 else None
        dtype = np.float32 if trial % 2 else np.float64
        F = F.astype(dtype)
        want = pareto.nondominated_rank(F, constraint_violation=cv)
        X = torch.from_numpy(F) + 0.0
        c = None if cv is None else torch.from_numpy(cv)
        got = pc._rank_pipeline(X, c, emulation_ranker(rng=rng, **geometry))
        assert got.dtype == torch.int32 and got.shape == (n,)
        np.testing.assert_array_equal(got.numpy(), want, err_msg=f"trial {trial}")


@needs_torch
def test_pipeline_all_infeasible_and_negative_zero():
    rank = emulation_ranker()
    F = torch.tensor([[0.0, 1.0, 2.0], [-0.0, 1.0, 2.0], [1.0, -0.0, 2.0], [-0.0, 1.0, 2.5]]) + 0.0
    np.testing.assert_array_equal(pc._rank_pipeline(F, None, rank).numpy(), [0, 0, 0, 1])
    cv = torch.tensor([3.0, 1.0, 3.0, INF])
    np.testing.assert_array_equal(pc._rank_pipeline(F, cv, rank).numpy(), [1, 0, 1, 2])
    cv = torch.tensor([0.0, 1.0, -0.0, -2.0])
    np.testing.assert_array_equal(pc._rank_pipeline(F, cv, rank).numpy(), [0, 2, 0, 1])


def emulated_rank_tensor(F, cv=None, **kw):
    """nondominated_rank's tensor path (validation, fallback, pipeline) on a CPU tensor, kernels emulated."""
    return pareto._rank_tensor(F, cv, lambda device: emulation_ranker(**kw))


@needs_torch
def test_tensor_path_validation():
    F = torch.rand(10, 3)
    bad = F.clone()
    bad[7, 1] = float("nan")
    bad[9, 0] = float("nan")
    with pytest.raises(ValueError, match="F holds NaN in row 7"):
        emulated_rank_tensor(bad)
    cv = torch.zeros(10)
    cv[4] = float("nan")
    with pytest.raises(ValueError, match="constraint_violation holds NaN in row 4"):
        emulated_rank_tensor(F, cv)
    with pytest.raises(ValueError, match="torch tensor"):
        emulated_rank_tensor(F, np.zeros(10))
    with pytest.raises(ValueError, match="device"):
        emulated_rank_tensor(F, torch.zeros(10, device="meta"))
    with pytest.raises(ValueError, match=r"shape \[10\]"):
        emulated_rank_tensor(F, torch.zeros(9))
    with pytest.raises(ValueError, match="2-D"):
        emulated_rank_tensor(torch.rand(10))
    with pytest.raises(ValueError, match="M >= 1"):
        emulated_rank_tensor(torch.rand(10, 0))
    with pytest.raises(TypeError, match="real numbers"):
        emulated_rank_tensor(torch.rand(10, 2, dtype=torch.complex64))


@needs_torch
def test_tensor_path_dtypes_layouts_and_fallback():
    rng = np.random.default_rng(2)
    base = torch.from_numpy(rng.integers(0, 6, size=(1500, 8)).astype(np.float64))
    for F in (base[:, ::2], base.t().contiguous().t(), base[::3, 1:4], base[:, 5:6]):
        got = emulated_rank_tensor(F)
        np.testing.assert_array_equal(got.numpy(), pareto.nondominated_rank(F.numpy()))
    for dtype in (torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.bool):
        F = base[:, :3].to(dtype)
        ref = F.double() if dtype in (torch.int32, torch.int64, torch.bool) else F.float()
        np.testing.assert_array_equal(emulated_rank_tensor(F).numpy(), pareto.nondominated_rank(ref.numpy()))
    F = base[:, :3].clone().requires_grad_(True)
    np.testing.assert_array_equal(emulated_rank_tensor(F).numpy(), pareto.nondominated_rank(base[:, :3].numpy()))
    # float32 F, float64 cv: widened as on the CPU path, so 1e-300 stays infeasible
    cv = torch.full((1500,), 1e-300, dtype=torch.float64)
    cv[::2] = 0.0
    got = emulated_rank_tensor(base[:, :3].float(), cv)
    np.testing.assert_array_equal(got.numpy(), pareto.nondominated_rank(base[:, :3].float().numpy(), constraint_violation=cv.numpy()))
    # more objectives than the kernels take: the CPU kernel, same result
    wide = torch.from_numpy(rng.integers(0, 3, size=(300, pc.MAX_OBJECTIVES + 3)).astype(np.float32))
    cv = torch.from_numpy(rng.choice(CV_VALUES, size=300).astype(np.float32))
    got = pareto._rank_tensor(wide, cv, lambda device: pytest.fail("the kernels must not be called"))
    np.testing.assert_array_equal(got.numpy(), pareto.nondominated_rank(wide.numpy(), constraint_violation=cv.numpy()))
    for m in (1, 3):
        assert emulated_rank_tensor(torch.zeros(0, m)).shape == (0,)
        assert emulated_rank_tensor(torch.zeros(0, m), torch.zeros(0)).shape == (0,)
        np.testing.assert_array_equal(emulated_rank_tensor(torch.ones(1, m), torch.ones(1)).numpy(), [0])


if HAVE_HYPOTHESIS:

    from strategies import objective_sets

    @settings(max_examples=200, deadline=None)
    @given(objective_sets(), st.sampled_from(TINY), st.integers(0, 2**32 - 1))
    def test_emulation_property(F, geometry, seed):
        P = sorted_unique(F)
        got = emulate_rank(P, rng=np.random.default_rng(seed), **geometry)
        np.testing.assert_array_equal(got, pareto.nondominated_rank(P))

else:  # pragma: no cover

    @pytest.mark.skip(reason="needs hypothesis")
    def test_emulation_property():
        pass


# ---------------------------------------------------------------------------------------------
# On a GPU: the kernels


def cpu_rank(F, cv=None):
    """The reference: the CPU path on host copies."""
    F = F.detach().cpu()
    if F.dtype == torch.bfloat16:
        F = F.float()
    c = None if cv is None else cv.detach().cpu()
    return pareto.nondominated_rank(F.numpy(), constraint_violation=None if c is None else c.numpy())


def gpu_rank(F, cv=None):
    out = pareto.nondominated_rank(F, constraint_violation=cv)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int32
    assert out.device == F.device and out.shape == (F.shape[0],)
    return out.cpu().numpy()


@cuda
@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6])
def test_gpu_matches_cpu(m, dtype):
    rng = np.random.default_rng(100 + m)
    for kind in ("uniform", "simplex", "correlated", "integers", "ties"):
        for n in (2, 255, 256, 1023, 1024, 1025, 3000, 20000):
            if kind in ("simplex", "ties") and n == 20000 and m >= 5:
                n = 8000  # keeps the CPU reference quick
            F = torch.from_numpy(point_set(kind, n, m, rng).astype(dtype)).cuda()
            np.testing.assert_array_equal(gpu_rank(F), cpu_rank(F), err_msg=f"{kind} n={n}")


@cuda
@needs_gpu
@pytest.mark.parametrize("m", [7, 8, 9, 12, 16])
def test_gpu_many_objectives(m):
    rng = np.random.default_rng(m)
    for dtype in (torch.float32, torch.float64):
        for kind in ("uniform", "correlated", "integers"):
            F = torch.from_numpy(point_set(kind, 3000, m, rng)).to("cuda", dtype)
            np.testing.assert_array_equal(gpu_rank(F), cpu_rank(F), err_msg=kind)


@cuda
@needs_gpu
def test_gpu_more_objectives_than_kernels_fall_back():
    rng = np.random.default_rng(0)
    F = torch.from_numpy(rng.integers(0, 3, size=(500, pc.MAX_OBJECTIVES + 3)).astype(np.float32)).cuda()
    cv = torch.from_numpy(rng.choice(CV_VALUES, size=500).astype(np.float32)).cuda()
    np.testing.assert_array_equal(gpu_rank(F), cpu_rank(F))
    np.testing.assert_array_equal(gpu_rank(F, cv), cpu_rank(F, cv))


@cuda
@needs_gpu
def test_gpu_chain_and_antichain():
    for m in (2, 3, 5):
        chain = torch.arange(5000, dtype=torch.float64, device="cuda")[:, None].repeat(1, m)
        np.testing.assert_array_equal(gpu_rank(chain), np.arange(5000))
        np.testing.assert_array_equal(gpu_rank(chain.flip(0)), np.arange(5000)[::-1])
        x = torch.linspace(0, 1, 5000, device="cuda", dtype=torch.float64)
        anti = torch.stack([x, 1 - x] + [torch.full_like(x, 0.5)] * (m - 2), dim=1)
        np.testing.assert_array_equal(gpu_rank(anti), np.zeros(5000))


@cuda
@needs_gpu
def test_gpu_duplicates_ties_inf_negative_zero():
    F = torch.tensor([[0.0, 1.0, 2.0], [-0.0, 1.0, 2.0], [1.0, -0.0, 2.0], [-0.0, 1.0, 2.5]], device="cuda")
    np.testing.assert_array_equal(gpu_rank(F), [0, 0, 0, 1])
    rng = np.random.default_rng(1)
    for m in (1, 2, 3, 4):
        base = rng.choice(TIE_VALUES, size=(700, m))
        flipped = np.where(base == 0.0, -base, base)  # 0.0 <-> -0.0: duplicates of the first block
        F = torch.from_numpy(np.concatenate([base, base[::-1], flipped])).cuda()
        np.testing.assert_array_equal(gpu_rank(F), cpu_rank(F))
        np.testing.assert_array_equal(gpu_rank(F.float()), cpu_rank(F.float()))


@cuda
@needs_gpu
@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_gpu_constraints(m):
    rng = np.random.default_rng(m)
    for n in (1, 10, 3000):
        F = torch.from_numpy(point_set("integers", n, m, rng)).cuda()
        for cv_np in (rng.choice(CV_VALUES, size=n), np.full(n, 2.0), -rng.random(n), rng.random(n) - 0.5):
            cv = torch.from_numpy(cv_np).cuda()
            np.testing.assert_array_equal(gpu_rank(F, cv), cpu_rank(F, cv))
        # float32 F with float64 cv: both widened, as on the CPU; tiny violations stay infeasible
        cv = torch.full((n,), 1e-300, dtype=torch.float64, device="cuda")
        np.testing.assert_array_equal(gpu_rank(F.float(), cv), cpu_rank(F.float(), cv))


@cuda
@needs_gpu
def test_gpu_empty_and_single():
    for m in (1, 2, 3, 5):
        for dtype in (torch.float32, torch.float64):
            assert gpu_rank(torch.zeros((0, m), dtype=dtype, device="cuda")).shape == (0,)
            np.testing.assert_array_equal(gpu_rank(torch.ones((1, m), dtype=dtype, device="cuda")), [0])
            cv = torch.ones(1, dtype=dtype, device="cuda")
            np.testing.assert_array_equal(gpu_rank(torch.ones((1, m), dtype=dtype, device="cuda"), cv), [0])
            assert gpu_rank(torch.zeros((0, m), device="cuda"), torch.zeros(0, device="cuda")).shape == (0,)


@cuda
@needs_gpu
def test_gpu_non_contiguous_and_dtypes():
    rng = np.random.default_rng(2)
    base = torch.from_numpy(rng.integers(0, 6, size=(4000, 8)).astype(np.float64)).cuda()
    for F in (base[:, ::2], base.t().contiguous().t(), base[::3, 1:4], base[:, 5:6]):
        assert not F.is_contiguous() or F.shape[1] == 1
        np.testing.assert_array_equal(gpu_rank(F), cpu_rank(F))
    for dtype in (torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.bool):
        F = base[:, :3].to(dtype)
        want = cpu_rank(F.double() if dtype in (torch.int32, torch.int64, torch.bool) else F.float())
        np.testing.assert_array_equal(gpu_rank(F), want)
    F = base[:, :3].clone().requires_grad_(True)
    np.testing.assert_array_equal(gpu_rank(F), cpu_rank(F))


@cuda
@needs_gpu
def test_gpu_non_default_stream():
    rng = np.random.default_rng(4)
    F = torch.from_numpy(point_set("uniform", 20000, 3, rng)).cuda()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out = pareto.nondominated_rank(F)
    s.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), cpu_rank(F))


@cuda
@needs_gpu
def test_gpu_errors(monkeypatch):
    F = torch.rand(10, 3, device="cuda")
    bad = F.clone()
    bad[7, 1] = float("nan")
    bad[9, 0] = float("nan")
    with pytest.raises(ValueError, match="F holds NaN in row 7"):
        pareto.nondominated_rank(bad)
    cv = torch.zeros(10, device="cuda")
    cv[4] = float("nan")
    with pytest.raises(ValueError, match="constraint_violation holds NaN in row 4"):
        pareto.nondominated_rank(F, constraint_violation=cv)
    with pytest.raises(ValueError, match="device"):
        pareto.nondominated_rank(F, constraint_violation=torch.zeros(10))
    with pytest.raises(ValueError, match="torch tensor"):
        pareto.nondominated_rank(F, constraint_violation=np.zeros(10))
    with pytest.raises(ValueError, match="shape"):
        pareto.nondominated_rank(F, constraint_violation=torch.zeros(9, device="cuda"))
    with pytest.raises(ValueError, match="2-D"):
        pareto.nondominated_rank(torch.rand(10, device="cuda"))
    with pytest.raises(ValueError, match="M >= 1"):
        pareto.nondominated_rank(torch.rand(10, 0, device="cuda"))
    with pytest.raises(TypeError, match="real numbers"):
        pareto.nondominated_rank(torch.rand(10, 2, device="cuda", dtype=torch.complex64))
    monkeypatch.setattr(_native, "cuda", None)
    with pytest.raises(evoforge.CudaUnavailableError):
        pareto.nondominated_rank(F)


@cuda
@needs_gpu
def test_gpu_native_argument_checks():
    mod = _native.cuda
    P = torch.rand(100, 3, device="cuda").contiguous()
    out = torch.empty(100, dtype=torch.int32, device="cuda")
    need = mod.rank_sorted_unique_workspace_bytes(100, 3, 4)
    ws = torch.empty(need, dtype=torch.uint8, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    dev = torch.cuda.current_device()
    with pytest.raises(ValueError, match="workspace"):
        mod.rank_sorted_unique_f32(P.data_ptr(), 100, 3, out.data_ptr(), ws.data_ptr(), need - 1, stream, dev)
    with pytest.raises(ValueError, match="objectives"):
        mod.rank_sorted_unique_f32(P.data_ptr(), 100, 17, out.data_ptr(), ws.data_ptr(), need, stream, dev)


@cuda
@needs_gpu
def test_gpu_second_device():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    rng = np.random.default_rng(9)
    F = torch.from_numpy(point_set("uniform", 5000, 3, rng)).to("cuda:1")
    np.testing.assert_array_equal(gpu_rank(F), cpu_rank(F))
    with pytest.raises(ValueError, match="device"):
        pareto.nondominated_rank(F, constraint_violation=torch.zeros(5000, device="cuda:0"))


@cuda
@needs_gpu
def test_gpu_matches_moocore():
    moocore = pytest.importorskip("moocore")
    rng = np.random.default_rng(11)
    for m in (2, 3, 4):
        F = point_set("correlated", 5000, m, rng)
        np.testing.assert_array_equal(gpu_rank(torch.from_numpy(F).cuda()), moocore.pareto_rank(F))


if HAVE_HYPOTHESIS:

    @st.composite
    def large_objective_sets(draw):
        """A small drawn set repeated k times with a drawn per-column shift: thousands of points
        (many tiles) with structure (chains when every shift is positive, duplicates at 0)."""
        base = draw(objective_sets(max_n=40))
        k = draw(st.integers(1, 120))
        shift = np.array(draw(st.lists(st.sampled_from([0.0, 0.5, -0.5, 1.0]), min_size=base.shape[1],
                                       max_size=base.shape[1])), dtype=base.dtype)
        return np.concatenate([base + j * shift for j in range(k)]) if len(base) else base

    @cuda
    @needs_gpu
    @settings(max_examples=150, deadline=None)
    @given(large_objective_sets(), st.data())
    def test_gpu_property(F, data):
        Ft = torch.from_numpy(F).cuda()
        cv = None
        if data.draw(st.booleans()):
            cv = torch.from_numpy(data.draw(arrays(F.dtype, len(F), elements=st.sampled_from(CV_VALUES)))).cuda()
        np.testing.assert_array_equal(gpu_rank(Ft, cv), cpu_rank(Ft, cv))

else:  # pragma: no cover

    @cuda
    @pytest.mark.skip(reason="needs hypothesis")
    def test_gpu_property():
        pass
