"""evoforge.compress.latency: the per-layer latency table (keys, measuring only what is missing, the
per-machine cache file) and the fixed part of a model's forward. No timed asserts: what the timings
are worth is a benchmark's business; here only their bookkeeping and algebra."""

from __future__ import annotations

import copy
import json
import re
import warnings

import pytest
import torch
from evoforge.compress import latency
from evoforge.compress.latency import (
    LatencyTable,
    default_path,
    fixed_seconds,
    layer_shapes,
    machine_key,
    model_seconds,
    predict_seconds,
    spec_key,
)
from evoforge.errors import ConfigError
from evoforge.layers import QuantLinear, SparseLinear, apply, packed_bytes


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOFORGE_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def timed(monkeypatch):
    """The real time_module, counting its calls and keeping the modules it was given."""
    calls = []
    real = latency.time_module

    def counting(modules, x, **kw):
        calls.append((modules, tuple(x.shape)))
        return real(modules, x, **kw)

    monkeypatch.setattr(latency, "time_module", counting)
    return calls


def small_table(tmp_path, **kw):
    return LatencyTable(working_set_bytes=kw.pop("working_set_bytes", 0), path=tmp_path / "t.json", **kw)


# ---- keys -----------------------------------------------------------------------------------------


def test_specs_that_build_the_same_kernel_share_a_key():
    assert spec_key(None) == spec_key({}) == "dense"
    assert spec_key({"sparsity": 0.6}) == spec_key({"sparsity": 0.6004}) == spec_key({"sparsity": 0.5996}) \
        == spec_key({"sparsity": 0.6, "values_dtype": torch.float32}) == "s0.600-f32"
    assert spec_key({"sparsity": 0.6}) != spec_key({"sparsity": 0.601})
    assert spec_key({"sparsity": 0.6}) != spec_key({"sparsity": 0.6, "values_dtype": "float16"})
    assert spec_key({"bits": 5}) == spec_key({"bits": 7}) == spec_key({"bits": 8, "group_size": 128}) == "b8-g128-sym"
    assert spec_key({"bits": 4, "group_size": -1}) == spec_key({"bits": 4, "group_size": None}) \
        == spec_key({"bits": 4, "group_size": 0, "values_dtype": "float16"}) == "b4-g0-sym"
    assert spec_key({"sparsity": 0.5, "bits": 4, "group_size": 64, "symmetric": False}) == "s0.500-b4-g64-asym"
    assert spec_key({"pattern": "2:4"}) == spec_key({"pattern": "2:4", "sparsity": 0.5}) == "2:4-s0.500-f32"
    assert spec_key({"sparsity": 0.9999}) == "s0.999-f32"  # never rounded up to 1 (apply refuses 1)


@pytest.mark.parametrize("spec, err, match", [
    ({"sparsty": 0.5}, ConfigError, "unknown keys"),
    ({"sparsity": 1.0}, ConfigError, r"sparsity must be a number in \[0, 1\)"),
    ({"sparsity": -0.1}, ConfigError, "sparsity must be"),
    ({"sparsity": "0.5"}, ConfigError, "sparsity must be"),
    ({"sparsity": True}, ConfigError, "sparsity must be"),
    ({"bits": 9}, ConfigError, "bits must lie in 2..8"),
    ({"bits": 4.0}, ConfigError, "bits must be an int"),
    ({"bits": 4, "group_size": 48}, ConfigError, "group_size must be"),
    ({"bits": 4, "symmetric": 1}, ConfigError, "symmetric must be a bool"),
    ({"pattern": "1:4"}, ConfigError, "pattern must be"),
    ({"pattern": "2:4", "sparsity": 0.6}, ConfigError, "prunes exactly half"),
    ({"group_size": 64}, ConfigError, "a spec needs 'sparsity'"),
    ({"sparsity": 0.5, "values_dtype": "int8"}, ConfigError, "values_dtype must be one of"),
    ([("bits", 4)], TypeError, "spec must be"),
])
def test_bad_specs_are_refused_everywhere(tmp_path, spec, err, match):
    with pytest.raises(err, match=match):
        spec_key(spec)
    t = small_table(tmp_path)
    with pytest.raises(err, match=match):
        t.seconds(8, 8, spec, 1)
    with pytest.raises(err, match=match):
        t.measure([(8, 8, spec)], tokens=1, repeats=1)


def test_bad_shapes_tokens_and_layers(tmp_path):
    t = small_table(tmp_path)
    with pytest.raises(ConfigError, match="tokens must be an int >= 1"):
        t.seconds(8, 8, None, 0)
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        t.measure([(8, 0, None)], repeats=1)
    with pytest.raises(TypeError, match="out_features, in_features, spec"):
        t.total([(8, 8)], 1)
    with pytest.raises(ConfigError, match="working_set_bytes"):
        LatencyTable(working_set_bytes=-1)
    with pytest.raises(ConfigError, match="fixed must be seconds"):
        predict_seconds([], t, tokens=1, fixed=-1.0)


# ---- measuring ------------------------------------------------------------------------------------


def test_only_missing_entries_are_timed(tmp_path, timed):
    t = small_table(tmp_path)
    layers = [(16, 32, None), (16, 32, {"sparsity": 0.5}), (16, 32, {"sparsity": 0.5004}), (16, 32, {"bits": 4})]
    assert t.measure(layers, tokens=[1, 4], repeats=1) == 6  # the two sparsities share entries
    assert len(timed) == 6 and len(t) == 6
    assert sorted({s for _, s in timed}) == [(1, 1, 32), (1, 4, 32)]  # x is [1, tokens, in_features]
    assert t.measure(layers, tokens=[1, 4], repeats=1) == 0 and len(timed) == 6
    assert t.measure({"a": (16, 32, {"bits": 4}), "b": (32, 16, {"bits": 4})}, tokens=1, repeats=1) == 1
    assert len(timed) == 7
    for o, i, s in layers:
        for tok in (1, 4):
            assert t.seconds(o, i, s, tok) > 0 and (o, i, s, tok) in t
    assert t.total(layers, 1) == pytest.approx(sum(t.seconds(o, i, s, 1) for o, i, s in layers))
    with pytest.raises(KeyError, match=r"no latency for '16x32\|b4-g128-sym\|2'.*table.measure"):
        t.seconds(16, 32, {"bits": 4}, 2)


def test_the_timed_modules_are_what_apply_builds(tmp_path, timed):
    t = small_table(tmp_path)
    specs = [None, {"sparsity": 0.7, "values_dtype": "float16"}, {"bits": 3, "group_size": 32},
             {"sparsity": 0.5, "bits": 4, "group_size": 64, "symmetric": False}, {"pattern": "2:4"}]
    t.measure([(24, 80, s) for s in specs], repeats=1)
    kinds = [type(mods[0]) for mods, _ in timed]
    assert kinds == [torch.nn.Linear, SparseLinear, QuantLinear, SparseLinear, SparseLinear]
    nnz = 24 * 80 - round(0.7 * 24 * 80)
    assert timed[1][0][0].weight_bytes == packed_bytes(24, 80, nnz=nnz)
    assert timed[2][0][0].weight_bytes == packed_bytes(24, 80, bits=3, group_size=32)
    assert timed[3][0][0].weight_bytes == packed_bytes(24, 80, nnz=960, bits=4, group_size=64, symmetric=False)
    assert timed[4][0][0].format == "2:4"


def test_copies_span_the_working_set(tmp_path, timed):
    t = small_table(tmp_path, working_set_bytes=10_000)
    assert t.copies(2048) == 5 and t.copies(10**9) == 1 and t.copies(1) == latency.MAX_COPIES
    t.measure([(16, 32, None)], repeats=1)  # 2048 bytes of float32 weight
    mods = timed[0][0]
    assert len(mods) == 5 and len({id(m.weight) for m in mods}) == 5
    assert len({m.weight.data_ptr() for m in mods}) == 5  # distinct memory, the same weight
    assert all(torch.equal(m.weight, mods[0].weight) for m in mods)
    assert small_table(tmp_path).copies(2048) == 1  # working_set_bytes=0: one warm module
    assert LatencyTable().working_set_bytes >= 2 << 20  # default: twice the last-level cache


def test_changed_threads_are_refused(tmp_path):
    t = small_table(tmp_path)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(before + 1)
        with pytest.raises(ConfigError, match="machine key changed"):
            t.measure([(8, 8, None)], repeats=1)
    finally:
        torch.set_num_threads(before)


# ---- files ----------------------------------------------------------------------------------------


def test_machine_key_and_default_path(cache_dir):
    key = machine_key()
    assert re.fullmatch(r"[a-z0-9-]+", key) and key == machine_key("cpu")
    assert f"-t{torch.get_num_threads()}-" in key
    assert default_path() == cache_dir / "latency" / f"{key}.json"
    assert default_path(working_set_bytes=0) == cache_dir / "latency" / f"{key}-ws0.json"
    assert LatencyTable(working_set_bytes=0).path == default_path(working_set_bytes=0)


def test_save_load_round_trip(cache_dir):
    t = LatencyTable.load(working_set_bytes=0)  # no file yet: an empty table bound to the default path
    assert len(t) == 0 and not t.path.exists()
    t.measure([(8, 16, None), (8, 16, {"bits": 2})], tokens=[1, 3], repeats=1)
    p = t.save()
    assert p == default_path(working_set_bytes=0) and p.is_file()
    u = LatencyTable.load(working_set_bytes=0)
    assert u.entries == t.entries and u.key == t.key
    assert u.seconds(8, 16, {"bits": 2}, 3) == t.seconds(8, 16, {"bits": 2}, 3)
    other = t.save(cache_dir / "elsewhere" / "x.json")
    assert LatencyTable.load(other, working_set_bytes=0).entries == t.entries
    data = json.loads(p.read_text())
    assert data["machine"]["torch_threads"] == torch.get_num_threads()


def test_a_file_from_another_machine_is_refused(tmp_path):
    t = small_table(tmp_path)
    t.measure([(8, 8, None)], repeats=1)
    p = t.save()
    data = json.loads(p.read_text())
    data["machine_key"] = "another-cpu-t64-e64-0123456789ab"
    p.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="measured under machine key 'another-cpu.*measure a new table"):
        LatencyTable.load(p, working_set_bytes=0)
    t.save()
    with pytest.raises(ConfigError, match="working_set_bytes=0, this table uses 4096"):
        LatencyTable.load(p, working_set_bytes=4096)
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable latency table"):
        LatencyTable.load(p, working_set_bytes=0)
    p.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ConfigError, match="not an evoforge latency table"):
        LatencyTable.load(p, working_set_bytes=0)


# ---- whole models ---------------------------------------------------------------------------------


def test_layer_shapes(stories):
    shapes = layer_shapes(stories)
    assert len(shapes) == 5 * 7 and "lm_head" not in shapes
    assert shapes["model.layers.0.self_attn.q_proj"] == (64, 64)
    assert shapes["model.layers.0.self_attn.k_proj"] == (32, 64)
    assert shapes["model.layers.0.mlp.down_proj"] == (64, 172)


@pytest.mark.parametrize("tokens, context", [(1, 4), (32, 0)])
def test_the_dense_model_is_predicted_exactly_by_construction(stories, tmp_path, tokens, context):
    t = small_table(tmp_path)
    dense = [(o, i, None) for o, i in layer_shapes(stories).values()]
    measured = model_seconds(stories, tokens=tokens, context=context, repeats=1)
    assert measured > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a clamped fixed part warns; allowed here
        fixed = fixed_seconds(stories, t, tokens=tokens, context=context, repeats=1, measured=measured)
    linear = t.total(dense, tokens)  # fixed_seconds timed the dense entries it lacked
    assert len(t) == 4  # q/o 64x64, k/v 32x64, gate/up 172x64, down 64x172
    assert fixed == pytest.approx(max(0.0, measured - linear))
    assert predict_seconds(dense, t, tokens=tokens, fixed=fixed) == pytest.approx(max(measured, linear))
    # a packed configuration: the same fixed part, its own layers' entries
    packed = [(o, i, {"sparsity": 0.5, "bits": 4, "group_size": 32}) for o, i, _ in dense]
    t.measure(packed, tokens=tokens, repeats=1)
    assert predict_seconds(packed, t, tokens=tokens, fixed=fixed) == pytest.approx(fixed + t.total(packed, tokens))


def test_fixed_seconds_times_the_model_and_refuses_packed_models(stories, tmp_path):
    t = small_table(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a clamped fixed part warns; allowed here
        assert fixed_seconds(stories, t, tokens=1, context=2, repeats=1) >= 0.0
    packed = apply(copy.deepcopy(stories), {"bits": 4, "group_size": 32})
    with pytest.raises(ConfigError, match="needs the dense model"):
        fixed_seconds(packed, t, tokens=1)
    with pytest.raises(ConfigError, match="float32"):
        fixed_seconds(copy.deepcopy(stories).to(torch.bfloat16), t, tokens=1)
    with pytest.raises(ConfigError, match="context must be"):
        model_seconds(stories, context=-1)
