"""evoforge.deepga: seed lists to parameters, bit-exact against a float32 numpy rebuild."""

from __future__ import annotations

import numpy as np
import pytest

import evoforge
from evoforge import deepga
from evoforge import random as er


def noise_ref(seed: int, D: int) -> np.ndarray:
    nb = (D + 3) // 4
    b = np.arange(nb, dtype=np.uint64)
    ctr = np.stack([b & np.uint64(0xFFFFFFFF), b >> np.uint64(32), np.zeros(nb, np.uint64),
                    np.full(nb, er.STREAMS["deepga"] << 24, np.uint64)], axis=1).astype(np.uint32)
    key = np.tile(np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint32), (nb, 1))
    w = er.philox4x32_10(ctr, key)
    z01, z23 = er.box_muller(w[:, 0], w[:, 1]), er.box_muller(w[:, 2], w[:, 3])
    return np.stack([z01[:, 0], z01[:, 1], z23[:, 0], z23[:, 1]], axis=1).ravel()[:D]


def test_noise_layout_and_moments():
    z = deepga.noise(2**63 + 5, 100_003)
    np.testing.assert_array_equal(z, noise_ref(2**63 + 5, 100_003))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert not np.array_equal(deepga.noise(1, 64), deepga.noise(2, 64))


def test_rebuild_equals_float32_sum_and_incremental():
    rng = np.random.default_rng(0)
    D = 1001
    theta0 = rng.standard_normal(D).astype(np.float32)
    lists = [[3, 99, 2**64 - 1], [7], [], [3, 99]]
    sigma = 0.002
    out = deepga.seeds_to_params(theta0, lists, sigma)
    assert out.shape == (4, D) and out.dtype == np.float32
    for p, lst in enumerate(lists):
        ref = theta0.copy()
        for s in lst:
            ref = ref + np.float32(sigma) * noise_ref(s, D)  # one rounded multiply, one rounded add
        np.testing.assert_array_equal(out[p], ref)
    child = deepga.extend_params(out[3], 2**64 - 1, sigma)
    np.testing.assert_array_equal(child, out[0])
    batch = deepga.extend_params(out[[3, 1]], [2**64 - 1, 5], sigma)
    np.testing.assert_array_equal(batch[0], out[0])
    np.testing.assert_array_equal(batch[1], deepga.seeds_to_params(theta0, [[7, 5]], sigma)[0])
    np.testing.assert_array_equal(deepga.seeds_to_params(theta0, np.array([[3, 99], [7, 1]], np.uint64), sigma)[0],
                                  out[3])


def test_threads_and_torch():
    torch = pytest.importorskip("torch")
    theta0 = np.linspace(-1, 1, 9000, dtype=np.float32)
    lists = [[i, i + 1, i + 2] for i in range(7)]
    try:
        evoforge.set_num_threads(1)
        a = deepga.seeds_to_params(theta0, lists, 0.1)
        evoforge.set_num_threads(2)
        b = deepga.seeds_to_params(theta0, lists, 0.1)
    finally:
        evoforge.set_num_threads(0)
    np.testing.assert_array_equal(a, b)
    t = deepga.seeds_to_params(torch.from_numpy(theta0), lists, 0.1)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), a)
    e = deepga.extend_params(torch.from_numpy(a), list(range(7)), 0.1)
    assert isinstance(e, torch.Tensor)


@pytest.mark.parametrize("args,exc", [
    ((np.zeros(4, np.float64), [[1]], 0.1), TypeError),
    ((np.zeros((2, 4), np.float32), [[1]], 0.1), ValueError),
    ((np.zeros(4, np.float32), [[-1]], 0.1), ValueError),
    ((np.zeros(4, np.float32), [[2**64]], 0.1), ValueError),
    ((np.zeros(4, np.float32), [[1.5]], 0.1), TypeError),
    ((np.zeros(4, np.float32), [1, 2], 0.1), TypeError),
    ((np.zeros(4, np.float32), [[1]], float("nan")), ValueError),
    ((np.zeros(4, np.float32), [[1]], "x"), TypeError),
])
def test_bad_input(args, exc):
    with pytest.raises(exc):
        deepga.seeds_to_params(*args)
    with pytest.raises(ValueError, match="one seed per parent"):
        deepga.extend_params(np.zeros((2, 4), np.float32), [1], 0.1)
