"""CUDA twins of the variation kernels: bit-identical to the CPU (the oracle)."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge import deepga, mutation
from evoforge import random as er

pytestmark = pytest.mark.cuda
torch = pytest.importorskip("torch")


def test_normals_bit_identical():
    for shape, off in (((300, 1001), 0), ((7, 5), 2**31)):
        cpu = er.normal(shape, seed=2**64 - 3, generation=5, individual_offset=off)
        gpu = er.normal(shape, seed=2**64 - 3, generation=5, individual_offset=off, device="cuda")
        np.testing.assert_array_equal(gpu.cpu().numpy().view(np.uint32), cpu.view(np.uint32))


@pytest.mark.parametrize("prob,bounds", [(1.0, False), (0.3, False), (1.0, True), (0.5, True)])
def test_gaussian_bit_identical(prob, bounds):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((257, 333)).astype(np.float32)
    sigma = rng.uniform(0, 2, 333).astype(np.float32)
    kw = dict(prob=prob, seed=17, generation=3, individual_offset=11)
    if bounds:
        kw.update(lower=-1.0, upper=np.linspace(0.1, 2, 333))
    cpu = mutation.gaussian(x, sigma, **kw)
    gpu = mutation.gaussian(torch.from_numpy(x).cuda(), sigma, **kw)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    np.testing.assert_array_equal(gpu.cpu().numpy().view(np.uint32), cpu.view(np.uint32))


def test_level_switch_bit_identical():
    rng = np.random.default_rng(1)
    parents = rng.integers(0, 7, (64, 224)).astype(np.int32)
    groups = rng.integers(0, 3, 224)
    kw = dict(n_offspring=16, max_switches=3, groups=groups, seed=5, generation=2)
    cpu = mutation.level_switch(parents, 0, 6, **kw)
    gpu = mutation.level_switch(torch.from_numpy(parents).cuda(), 0, 6, **kw)
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu)
    ladders = np.cumsum(rng.uniform(0.9, 1.1, (224, 7)), axis=1)
    kw = dict(n_offspring=8, costs=ladders, budget_tol=0.2, seed=6, return_drift=True)
    c_out, c_dr = mutation.level_switch(parents[:8], 0, 6, **kw)
    g_out, g_dr = mutation.level_switch(torch.from_numpy(parents[:8]).cuda(), 0, 6, **kw)
    np.testing.assert_array_equal(g_out.cpu().numpy(), c_out)
    np.testing.assert_array_equal(g_dr.cpu().numpy(), c_dr)
    with pytest.raises(ValueError, match="admits no switch"):
        mutation.level_switch(torch.full((2, 5), 2, dtype=torch.int32, device="cuda"), 2, 2, n_offspring=1, seed=0)


def test_seeds_to_params_bit_identical():
    theta0 = np.random.default_rng(2).standard_normal(100_003).astype(np.float32)
    lists = [[1, 2, 3], [2**64 - 1], [], list(range(10))]
    cpu = deepga.seeds_to_params(theta0, lists, 0.002)
    gpu = deepga.seeds_to_params(torch.from_numpy(theta0).cuda(), lists, 0.002)
    np.testing.assert_array_equal(gpu.cpu().numpy().view(np.uint32), cpu.view(np.uint32))
    ext = deepga.extend_params(gpu[[0, 1]], [7, 8], 0.002)
    np.testing.assert_array_equal(ext.cpu().numpy(), deepga.extend_params(cpu[[0, 1]], [7, 8], 0.002))
