"""evoforge.layers.packed_bytes against the modules themselves: the predicted size of a layer's packed
weight equals ``.weight_bytes`` of the SparseLinear / QuantLinear built for it (or the dense weight)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evoforge.errors import ConfigError
from evoforge.layers import QuantLinear, SparseLinear, apply, packed_bytes
from evoforge.layers.format import storage_bits
from hypothesis import given, settings
from hypothesis import strategies as st

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
GROUPS = [None, -1, 0, 32, 64, 128, 256]


def _group(g):
    return 0 if g in (None, -1) else g


def _weight(rng, N, K, nnz):
    """A float32 [N, K] weight with exactly ``nnz`` non-zeros at random positions."""
    W = np.zeros(N * K, np.float32)
    keep = rng.choice(N * K, size=nnz, replace=False)
    W[keep] = rng.uniform(0.1, 1.0, nnz) * rng.choice([-1.0, 1.0], nnz)
    return torch.from_numpy(W.reshape(N, K))


@settings(max_examples=120, deadline=None)
@given(
    N=st.integers(1, 40),
    K=st.integers(1, 300),
    kind=st.sampled_from(["dense", "quant", "sparse", "2:4"]),
    frac=st.floats(0.0, 1.0),
    bits=st.sampled_from([None, 2, 3, 4, 5, 6, 7, 8]),
    group_size=st.sampled_from(GROUPS),
    symmetric=st.booleans(),
    values_dtype=st.sampled_from(["float32", "float16"]),
    seed=st.integers(0, 2**16),
)
def test_packed_bytes_equals_the_modules_weight_bytes(N, K, kind, frac, bits, group_size, symmetric, values_dtype,
                                                      seed):
    rng = np.random.default_rng(seed)
    numel = N * K
    nnz = int(round(frac * numel))
    kw = {"bits": bits, "group_size": group_size, "symmetric": symmetric, "values_dtype": values_dtype}
    mkw = {"bits": None if bits is None else storage_bits(bits), "group_size": _group(group_size),
           "symmetric": symmetric}
    if kind == "dense":
        lin = torch.nn.Linear(K, N, bias=False).to(DTYPES[values_dtype])
        got = lin.weight.numel() * lin.weight.element_size()
        assert packed_bytes(N, K, values_dtype=values_dtype, group_size=group_size, symmetric=symmetric) == got
        return
    if kind == "quant":
        if bits is None:
            bits = mkw["bits"] = kw["bits"] = 4
        m = QuantLinear.from_linear(torch.nn.Linear(K, N), bits=mkw["bits"], group_size=mkw["group_size"],
                                    symmetric=symmetric)
        assert packed_bytes(N, K, **kw) == m.weight_bytes
        return
    if kind == "sparse":
        m = SparseLinear.from_dense(_weight(rng, N, K, nnz), torch.zeros(N), values_dtype=values_dtype, **mkw)
        assert packed_bytes(N, K, nnz=nnz, **kw) == m.weight_bytes
        return
    m = SparseLinear.from_linear(torch.nn.Linear(K, N, bias=False), format="2:4", values_dtype=values_dtype, **mkw)
    assert packed_bytes(N, K, pattern="2:4", **kw) == m.weight_bytes
    assert packed_bytes(N, K, nnz=nnz, pattern="2:4", **kw) == m.weight_bytes  # nnz does not matter for 2:4


@settings(max_examples=40, deadline=None)
@given(
    N=st.integers(1, 24),
    K=st.integers(1, 200),
    sparsity=st.sampled_from([None, 0.0, 0.1, 0.5, 0.73, 0.999]),
    bits=st.sampled_from([None, 2, 3, 4, 6, 8]),
    group_size=st.sampled_from(GROUPS),
    symmetric=st.booleans(),
    values_dtype=st.sampled_from(["float32", "float16"]),
)
def test_packed_bytes_matches_what_apply_builds(N, K, sparsity, bits, group_size, symmetric, values_dtype):
    if sparsity is None and bits is None:
        sparsity = 0.5
    spec = {"group_size": group_size, "symmetric": symmetric, "values_dtype": values_dtype}
    spec.update({} if sparsity is None else {"sparsity": sparsity})
    spec.update({} if bits is None else {"bits": bits})
    torch.manual_seed(N * 1000 + K)
    model = apply(torch.nn.Sequential(torch.nn.Linear(K, N, bias=False)), spec)
    numel = N * K
    nnz = None if sparsity is None else numel - round(sparsity * numel)
    assert packed_bytes(N, K, nnz=nnz, bits=bits, group_size=group_size, symmetric=symmetric,
                        values_dtype=values_dtype) == model[0].weight_bytes


def test_packed_bytes_by_hand():
    # 4 x 64 at 50%: mask 4*8 + row_ptr 5*8 + 128 float16 values
    assert packed_bytes(4, 64, nnz=128) == 32 + 40 + 256
    assert packed_bytes(4, 64, nnz=128, values_dtype="float32") == 32 + 40 + 512
    # + int4 codes of 128 kept values (64 bytes) + float16 scales [4, 1] (g128 covers the row)
    assert packed_bytes(4, 64, nnz=128, bits=4) == 32 + 40 + 64 + 8
    assert packed_bytes(4, 64, nnz=128, bits=4, symmetric=False) == 32 + 40 + 64 + 16
    # QuantLinear int4 g32: 4 rows of 32 bytes + scales [4, 2]; 6 bits are stored as 8
    assert packed_bytes(4, 64, bits=4, group_size=32) == 128 + 16
    assert packed_bytes(4, 64, bits=6, group_size=32) == packed_bytes(4, 64, bits=8, group_size=32) == 256 + 16
    assert packed_bytes(4, 64) == 4 * 64 * 2
    assert packed_bytes(4, 64, values_dtype=torch.float32) == packed_bytes(4, 64, values_dtype="bfloat16") * 2


@pytest.mark.parametrize("kw, match", [
    ({"nnz": -1}, "nnz must be an int in"),
    ({"nnz": 4 * 64 + 1}, "nnz must be an int in"),
    ({"nnz": 10.0}, "nnz must be an int in"),
    ({"bits": 1}, "bits must lie in 2..8"),
    ({"bits": 9}, "bits must lie in 2..8"),
    ({"bits": 4.0}, "bits must be an int"),
    ({"bits": 4, "group_size": 48}, "group_size must be"),
    ({"group_size": "128"}, "group_size must be an int"),
    ({"bits": 4, "symmetric": "yes"}, "symmetric must be a bool"),
    ({"pattern": "1:4"}, "pattern must be"),
    ({"values_dtype": "int8"}, "values_dtype must be one of"),
    ({"nnz": 10, "values_dtype": "bfloat16"}, "values_dtype must be one of"),
])
def test_bad_settings_are_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        packed_bytes(4, 64, **kw)


def test_bad_sizes_are_rejected_like_nn_linear():
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        packed_bytes(4, 0)
    with pytest.raises(TypeError, match="out_features must be an int"):
        packed_bytes(2.5, 4)
