"""The decode benchmark (evoforge.bench.decode): a ``--quick`` run end to end on stories260k, its
equal-work check (packed models' greedy tokens against the same weights run densely) and its table."""

import json

import pytest
import torch
from conftest import SHARED_DATA, STORIES

from evoforge.bench import decode


@pytest.fixture
def shared_data(monkeypatch):
    if not (STORIES / "config.json").exists():
        pytest.skip(f"stories260k not found at {STORIES} (shared data absent)")
    monkeypatch.setenv("EVOFORGE_SHARED_DATA", str(SHARED_DATA))
    yield
    torch.set_num_threads(1)


def test_quick_run_reports_every_config_and_equal_work(shared_data, tmp_path, capsys):
    out = tmp_path / "decode.json"
    assert decode.main(["--quick", "--threads", "1", "--new-tokens", "6", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert [r["config"] for r in rows] == [name for name, _ in decode.CONFIGS]
    assert rows[0]["decode_x_fp32"] == 1.0 and all(r["decode_tok_per_s"] > 0 for r in rows)
    # packed models decode the same greedy tokens as their weights run densely in float32
    assert [r["same_tokens"] for r in rows] == [None, None, True, True, True]
    assert "| threads |" in capsys.readouterr().out


def test_dense_equivalent_matches_the_packed_model(shared_data):
    from evoforge.layers import QuantLinear, SparseLinear, packed_layers

    dense = decode._load(quick=True)
    model = decode.build(dense, {"sparsity": 0.6, "bits": 4, "group_size": 64}, pack_head=True)
    layers = packed_layers(model)
    assert decode._head_name(model) in layers  # the output head is packed too
    ref = decode.dense_equivalent(model)
    assert not packed_layers(ref)
    for name in layers:
        m, lin = model.get_submodule(name), ref.get_submodule(name)
        assert isinstance(m, (SparseLinear, QuantLinear))
        x = torch.randn(3, m.in_features, generator=torch.Generator().manual_seed(0))
        want = x.double() @ lin.weight.double().T
        torch.testing.assert_close(m(x).double(), want, rtol=1e-4, atol=1e-4)


def test_bad_threads_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        decode.main(["--threads", "0"])
    assert e.value.code == 2
    assert "--threads" in capsys.readouterr().err
