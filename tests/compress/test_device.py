"""The compression job's device (issue 14, item 4): ``CompressConfig.device`` / ``--device``.

On the CPU: the device's checks (names, no CUDA, an index beyond the GPUs), the JSON round trip, a
run's identity without the device (a run resumes on another device), ``device="cpu"`` equal to the
default, and the device code paths run on CPU tensors against their references: the torch KL
against the C++ kernels, the mask decoding against numpy, the streamed provider with a small
bounded cache against an unbounded one, the torch solvers against the C++ ones.
``@pytest.mark.cuda`` (skipped without a GPU): a short CUDA run against the CPU run on stories260k.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import given, settings
from hypothesis import strategies as st

from evoforge import kl, solvers
from evoforge.compress import KLFitness, SparsityConfig, adapt, build_database, compress, run as run_mod
from evoforge.compress.config import CompressConfig, DepthConfig, QuantConfig, check_device_name
from evoforge.compress.database import unpack_mask
from evoforge.compress.providers import provider_for
from evoforge.errors import ConfigError
from evoforge.solvers import _torch as tsolvers

HAVE_CUDA = torch.cuda.is_available()
FAST = dict(n_calib=4, n_heldout=4, seq_len=16, generations=2, offspring=4, db_method="magnitude", db_levels=2,
            export=False, seed=0)


# ---- the config ------------------------------------------------------------------------------------


def test_default_is_cpu_and_json_round_trip_keeps_the_device():
    assert SparsityConfig().device == "cpu"
    for dev in ("cpu", "cuda", "cuda:1"):
        c = QuantConfig(target=3, device=dev)
        d = c.to_json()
        assert d["device"] == dev
        back = CompressConfig.from_json(json.dumps(d))
        assert back == c and back.device == dev
    assert SparsityConfig(device=torch.device("cpu")).device == "cpu"  # a torch.device, kept by name
    old = SparsityConfig().to_json()
    del old["device"]  # a run directory of an earlier version
    assert CompressConfig.from_json(old).device == "cpu"


def test_device_is_not_part_of_the_identity():
    a, b = SparsityConfig(device="cpu"), SparsityConfig(device="cuda:3")
    assert "device" not in a.identity() and a.identity() == b.identity()


def test_resume_on_another_device_is_allowed(tmp_path):
    """The settings check compares the identity only: the same run on another device resumes."""
    run_mod._check_settings(tmp_path, SparsityConfig(device="cpu"), "fp")
    run_mod._check_settings(tmp_path, SparsityConfig(device="cuda:1"), "fp")  # no ConfigError
    assert json.loads((tmp_path / "compress.json").read_text())["config"]["device"] == "cuda:1"
    with pytest.raises(ConfigError, match="target"):  # other settings are still refused
        run_mod._check_settings(tmp_path, SparsityConfig(target=0.6), "fp")


@pytest.mark.parametrize("bad", ["tpu", "", "CPU", "cpu:0", "cuda:", "cuda:-1", "cuda:x", "cuda:0:1", " cpu"])
def test_bad_device_names(bad):
    with pytest.raises(ConfigError, match="'cpu', 'cuda' or 'cuda:N'"):
        SparsityConfig(device=bad).validate()


@pytest.mark.parametrize("bad", [None, 0, b"cpu", ["cpu"]])
def test_device_of_another_type(bad):
    with pytest.raises(TypeError, match="device must be a device name"):
        SparsityConfig(device=bad).validate()


@pytest.mark.skipif(HAVE_CUDA, reason="checks the machine without CUDA")
@pytest.mark.parametrize("dev", ["cuda", "cuda:0", "cuda:7"], ids=["plain", "index-0", "index-7"])  # an id
# "cuda" would mark the test as needing a GPU (tests/conftest.py)
def test_cuda_without_a_gpu_is_refused_before_any_work(dev, stories, monkeypatch):
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        DepthConfig(target=1, device=dev).validate()
    monkeypatch.setattr(run_mod, "build_database", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        compress(stories, method="depth", target=1, device=dev, **{k: v for k, v in FAST.items()
                                                                   if not k.startswith("db_")})
    assert next(stories.parameters()).device.type == "cpu"


def test_gpu_index_beyond_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"GPU index 2 is out of range; this machine has 2 visible GPUs \(cuda:0..cuda:1\)"):
        check_device_name("cuda:2")


def test_explicit_cpu_equals_the_default(stories):
    tok = torch.randint(0, 512, (8, 16), generator=torch.Generator().manual_seed(3))
    kw = dict(calibration=tok[:4], heldout=tok[4:])
    a = compress(stories, SparsityConfig(target=0.5, **FAST), **kw)
    b = compress(stories, SparsityConfig(target=0.5, device="cpu", **FAST), **kw)
    assert a.genome == b.genome and a.kl_search == b.kl_search and a.kl_uniform == b.kl_uniform
    assert a.baselines["owl"]["kl"] == b.baselines["owl"]["kl"]


# ---- the device code paths on CPU tensors --------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(2, 70), st.sampled_from([None, 1, 3, "V"]), st.booleans(), st.booleans(),
       st.integers(0, 2**31 - 1), st.sampled_from(["float32", "bfloat16"]))
def test_torch_kl_equals_the_kernels(T, V, top_k, tail, batched, seed, dtype):
    rng = np.random.default_rng(seed)
    tl = torch.from_numpy(rng.normal(size=(T, V)).astype(np.float32) * 3)
    k = V if top_k == "V" else (None if top_k is None else min(top_k, V))
    t = kl.teacher_targets(tl, top_k=k, tail=tail)
    s = tl + torch.from_numpy(rng.normal(size=(T, V)).astype(np.float32))
    if rng.random() < 0.3:
        s[rng.integers(T), rng.integers(V)] = -torch.inf  # a masked logit: +inf where the teacher has weight
    if batched:
        s = torch.stack([s, tl])
    s = s.to(getattr(torch, dtype))
    ref = kl.kl_divergence(t, s, reduction="none")
    got = kl.kl_divergence_torch(t, s, reduction="none")
    assert got.shape == ref.shape and got.dtype == np.float64
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-5)
    # the moved teacher and the mean reduction
    np.testing.assert_allclose(kl.kl_divergence_torch(t.to("cpu"), s), kl.kl_divergence(t, s), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("top_k, tail", [(None, True), (3, True), (3, False)])
def test_torch_kl_rejects_nan_like_the_kernels(top_k, tail):
    rng = np.random.default_rng(0)
    tl = torch.from_numpy(rng.normal(size=(5, 9)).astype(np.float32))
    t = kl.teacher_targets(tl, top_k=top_k, tail=tail)
    for bad in (float("nan"), float("inf")):
        s = tl.clone()
        s[2, int(t.pivot[2])] = bad  # a logit every KL variant reads
        with pytest.raises(ValueError) as ref:
            kl.kl_divergence(t, s)
        with pytest.raises(ValueError) as got:
            kl.kl_divergence_torch(t, s)
        assert str(got.value) == str(ref.value).split(" [")[0]
    with pytest.raises(TypeError):
        kl.kl_divergence_torch(t, tl.numpy())
    with pytest.raises(TypeError):
        kl.kl_divergence_torch(t, tl.long())


def test_teacher_to_and_take():
    rng = np.random.default_rng(1)
    t = kl.teacher_targets(torch.from_numpy(rng.normal(size=(6, 11)).astype(np.float32)), top_k=4)
    assert t.to("cpu") is t  # the CPU kernels read numpy
    moved = kl._on(t, torch.device("cpu"))
    for rows in ([4, 1, 1], slice(2, 5)):
        a, b = t.take(rows), moved.take(rows)
        for n in ("weights", "indices", "norm", "cross", "pivot", "tail"):
            assert np.array_equal(getattr(a, n), getattr(b, n).numpy())


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_unpack_mask_equals_numpy(rows, cols, seed):
    keep = np.random.default_rng(seed).random((rows, cols)) < 0.5
    packed = torch.from_numpy(np.packbits(keep, axis=1, bitorder="little"))
    assert np.array_equal(unpack_mask(packed, cols).numpy(), keep)


def test_streamed_provider_with_a_bounded_cache(stories, tmp_path):
    """A cache of two layers' weights: levels are evicted and read again, and every weight and every
    KL equals the unbounded provider's."""
    ad = adapt(stories)
    db = build_database(ad, None, tmp_path / "db", method="magnitude", n_levels=2, step=256)
    full = provider_for(db, cache_bytes=None)
    big = max(int(np.prod(db.shape(i))) for i in range(len(db.layers))) * 4
    small = provider_for(db, device="cpu", cache_bytes=2 * big)
    assert full.cache_bytes is None and small.cache_bytes == 2 * big
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert provider_for(db).cache_bytes == ram // 4  # "auto" on the CPU: a quarter of the host's memory
    rng = np.random.default_rng(0)
    genomes = np.stack([rng.integers(full.lower, full.upper + 1) for _ in range(6)])
    for g in genomes:
        for i, j in enumerate(g):
            assert torch.equal(small.weight(i, int(j)), full.weight(i, int(j)))
            assert small.cached_bytes <= 2 * big
    assert small.loads > len(full._cache)  # evicted levels were read again
    tok = torch.randint(0, 512, (4, 16), generator=torch.Generator().manual_seed(0))
    ref = KLFitness(ad, full, tok).evaluate(genomes)
    got = KLFitness(ad, small, tok).evaluate(genomes)
    assert np.array_equal(ref, got)
    with pytest.raises(ConfigError, match="cache_bytes"):
        provider_for(db, cache_bytes=-1)


def _loss(W, Wq, H):
    D = (W - Wq).double()
    return float(torch.einsum("rc,cd,rd->", D, H, D))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_solvers_equal_the_kernels(dtype):
    """The GPU build's solvers on CPU tensors: RTN bit for bit; SparseGPT and GPTQ the kernels'
    result up to rounding (the same pruned counts, masks and codes but for near-ties, the layer loss
    within 1e-4 relative), dead inputs zeroed."""
    g = torch.Generator().manual_seed(0)
    R, C = 24, 100
    X = torch.randn(300, C, generator=g) @ torch.randn(C, C, generator=g) * 0.3
    X[:, 7] = 0  # a dead input
    H = solvers.hessian(X)
    f = solvers.factor_hessian(H.numpy())
    W = torch.randn(R, C, generator=g, dtype=dtype)
    levels = [0.25, 0.5, 0.75]
    a = solvers.sparsegpt_levels(W, f, levels, blocksize=32)
    b = tsolvers.sparsegpt_levels_torch(W, f, levels, blocksize=32)
    for la, lb in zip(a, b):
        assert int((la == 0).sum()) == int((lb == 0).sum())
        assert float(((la == 0) != (lb == 0)).float().mean()) <= 0.01
        assert bool((lb[:, 7] == 0).all())
        assert _loss(W, lb, H) == pytest.approx(_loss(W, la, H), rel=1e-4)
    for gs, sym in ((32, False), (-1, True), (48, True)):
        qa = solvers.gptq_levels(W, f, [2, 4], group_size=gs, symmetric=sym, blocksize=32)
        qb = tsolvers.gptq_levels_torch(W, f, [2, 4], group_size=gs, symmetric=sym, blocksize=32)
        for x, y in zip(qa, qb):
            assert torch.equal(x.g_idx, y.g_idx) and float((x.q != y.q).float().mean()) <= 0.02
            assert _loss(W, y.weight, H) == pytest.approx(_loss(W, x.weight, H), rel=1e-3)
        for bits in (2, 3, 8):
            ra = solvers.rtn(W, bits, group_size=gs, symmetric=sym)
            rb = tsolvers.rtn_torch(W, bits, group_size=gs, symmetric=sym)
            assert all(torch.equal(u, v) for u, v in zip(ra, rb))
    with pytest.raises(ValueError, match="NaN"):
        tsolvers.rtn_torch(torch.full((2, 3), float("nan")), 4)


# ---- on a GPU ------------------------------------------------------------------------------------

# The tolerance of a CUDA run against the CPU run: the same genome, or searched KLs within
# 1e-4 + 1e-2 relative (the searches may part ways at a near-tie of two candidates' KLs, which
# differ between devices by float32 rounding); the uniform and baseline KLs, which evaluate the same
# genomes, within 1e-4 + 1e-3 relative.
KL_ABS, KL_REL_SEARCH, KL_REL_SAME = 1e-4, 1e-2, 1e-3

needs_torch_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs torch with a CUDA GPU")


@pytest.mark.cuda
@needs_torch_cuda
@pytest.mark.parametrize("method, knobs", [
    ("sparsity", dict(target=0.5, db_method="sparsegpt", db_levels=2)),
    ("quant", dict(target=3.0, db_method="gptq", bits=(2, 3, 4))),
    ("depth", dict(target=1)),
])
def test_cuda_run_matches_the_cpu_run(method, knobs, tmp_path):
    from conftest import load_stories

    tok = torch.randint(0, 512, (8, 32), generator=torch.Generator().manual_seed(5))
    common = dict(n_calib=4, n_heldout=4, seq_len=32, generations=3, offspring=4, seed=0, export=False, **knobs)
    res = {}
    for dev in ("cpu", "cuda"):
        model = load_stories()
        cfg = {"sparsity": SparsityConfig, "quant": QuantConfig, "depth": DepthConfig}[method](device=dev, **common)
        res[dev] = compress(model, cfg, calibration=tok[:4], heldout=tok[4:])
        assert next(model.parameters()).device.type == dev
    a, b = res["cpu"], res["cuda"]
    assert b.kl_uniform == pytest.approx(a.kl_uniform, rel=KL_REL_SAME, abs=KL_ABS)
    for name, base in a.baselines.items():
        assert b.baselines[name]["kl"] == pytest.approx(base["kl"], rel=KL_REL_SAME, abs=KL_ABS)
    assert a.genome == b.genome or b.kl_search == pytest.approx(a.kl_search, rel=KL_REL_SEARCH, abs=KL_ABS)
    assert a.budget == b.budget


@pytest.mark.cuda
@needs_torch_cuda
def test_cuda_paths_equal_the_cpu_ones(stories, tmp_path):
    """The device pieces on the GPU: the KL, the streamed provider (bit for bit) and the solvers."""
    rng = np.random.default_rng(0)
    tl = torch.from_numpy(rng.normal(size=(40, 512)).astype(np.float32))
    s = tl + torch.from_numpy(rng.normal(size=(40, 512)).astype(np.float32))
    for k in (None, 8):
        t = kl.teacher_targets(tl, top_k=k)
        np.testing.assert_allclose(kl.kl_divergence(t.to("cuda"), s.cuda(), reduction="none"),
                                   kl.kl_divergence(t, s, reduction="none"), rtol=1e-5, atol=1e-6)
    db = build_database(adapt(stories), None, tmp_path / "db", method="magnitude", n_levels=1, step=256)
    cpu, gpu = provider_for(db), provider_for(db, device="cuda", cache_bytes=1 << 16)
    for i in range(cpu.n_layers):
        assert torch.equal(gpu.weight(i, 1).cpu(), cpu.weight(i, 1))
    W = torch.randn(16, 64)
    f = solvers.factor_hessian(solvers.hessian(torch.randn(200, 64)).numpy())
    ref = solvers.sparsegpt_levels(W, f, [0.5], blocksize=32)
    got = tsolvers.sparsegpt_levels_torch(W.cuda(), f, [0.5], blocksize=32).cpu()
    assert int((got == 0).sum()) == int((ref == 0).sum())
    assert all(torch.equal(u.cpu(), v) for u, v in zip(tsolvers.rtn_torch(W.cuda(), 4), solvers.rtn(W, 4)))


def test_torch_kl_top_k_logits_all_masked():
    """The teacher's K tokens all -inf in the student: +inf as the kernels give, not NaN (found by
    hypothesis: T=1, V=2, top_k=1, seed 28)."""
    tl = torch.tensor([[2.0, -1.0]])
    t = kl.teacher_targets(tl, top_k=1, tail=False)
    s = torch.tensor([[-torch.inf, 0.5]])
    assert np.isposinf(kl.kl_divergence(t, s, reduction="none")).all()
    assert np.isposinf(kl.kl_divergence_torch(t, s, reduction="none")).all()
