"""evoforge.neuro.genome: seed-list genomes, parameters rebuilt from seeds or from a cached parent
(the same bits, on any thread count), the compact encoding and what it saves."""

from __future__ import annotations

import numpy as np
import pytest

import evoforge
from evoforge.errors import ConfigError
from evoforge.neuro import MLPPolicy, ParamCache, decode, derive_seed, encode, payload_bytes
from evoforge.variation.deepga import noise


def reference(policy: MLPPolicy, seeds, sigma: float) -> np.ndarray:
    """float32 accumulation, left to right: init(s0) + sigma * noise(s1) + ..."""
    theta = noise(seeds[0], policy.n_params) * policy.init_scale()
    for s in seeds[1:]:
        theta = theta + np.float32(sigma) * noise(s, policy.n_params)
    return theta


def test_encode_decode_round_trip():
    lists = [[5], [2**64 - 1, 3, 9], [7, 8]]
    g = encode(lists)
    assert g.dtype == np.uint64 and g.shape == (3, 4)
    np.testing.assert_array_equal(g[:, 0], [1, 3, 2])
    assert decode(g) == [tuple(x) for x in lists]
    with pytest.raises(ConfigError, match="seeds"):
        encode([[]])
    with pytest.raises(ValueError, match="claims"):
        decode(np.array([[3, 1]], np.uint64))
    with pytest.raises(TypeError, match="integer"):
        decode(np.zeros((1, 2)))


def test_cached_parent_equals_from_scratch_bits():
    policy = MLPPolicy(obs_dim=8, n_outputs=4, hidden=(32, 16))
    sigma = 0.05
    lineage = [derive_seed(0, "init", 0)] + [derive_seed(0, "mutation", g, 0) for g in range(6)]
    cache = ParamCache(policy, sigma)
    # generation by generation, every child is one extension of its cached parent
    for n in range(1, len(lineage) + 1):
        got = cache.params(encode([lineage[:n]]))[0]
        np.testing.assert_array_equal(got, reference(policy, lineage[:n], sigma))
    assert cache.extended == len(lineage) - 1 and cache.rebuilt == 1
    # a fresh cache rebuilds the same bits from scratch, in one call for a mixed batch
    cold = ParamCache(policy, sigma)
    lists = [lineage, lineage[:3], [11, 12], lineage[:1]]
    batch = cold.params(encode(lists))
    assert cold.rebuilt == 4
    for row, lst in zip(batch, lists):
        np.testing.assert_array_equal(row, reference(policy, lst, sigma))
        np.testing.assert_array_equal(row, cold.from_scratch(lst))
    # a bounded cache evicts the least recently used and still gives the same bits
    tiny = ParamCache(policy, sigma, max_bytes=2 * policy.n_params * 4)
    np.testing.assert_array_equal(tiny.params(encode(lists)), batch)
    assert len(tiny) == 2


def test_same_bits_on_one_and_two_threads():
    policy = MLPPolicy(obs_dim=128, n_outputs=18, hidden=(256, 256))  # D ~ 104k: the kernel splits it
    lists = [[derive_seed(1, "init", i)] + [derive_seed(1, "mutation", g, i) for g in range(5)] for i in range(6)]
    try:
        evoforge.set_num_threads(1)
        one = ParamCache(policy, 0.01).params(encode(lists))
        parents = ParamCache(policy, 0.01)
        parents.params(encode([s[:-1] for s in lists]))
        one_ext = parents.params(encode(lists))
        evoforge.set_num_threads(2)
        two = ParamCache(policy, 0.01).params(encode(lists))
    finally:
        evoforge.set_num_threads(0)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, one_ext)


def test_derive_seed_and_payload_bytes():
    a = derive_seed(3, "mutation", 4, 5)
    assert a == derive_seed(3, "mutation", 4, 5) and 0 <= a < 2**64
    assert len({derive_seed(3, "mutation", 4, i) for i in range(1000)}) == 1000
    assert a != derive_seed(4, "mutation", 4, 5) and a != derive_seed(3, "parent", 4, 5)
    g = encode([[1, 2, 3]] * 10)
    rep = payload_bytes(g, 1_000_000)
    assert rep == {"genomes": 10, "genome_bytes": 10 * 4 * 8, "param_bytes": 10 * 4_000_000,
                   "ratio": 4_000_000 / 32}
    assert rep["ratio"] >= 1000
