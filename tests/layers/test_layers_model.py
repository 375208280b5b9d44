"""evoforge.layers.apply / save / load and evoforge.compress.pack on whole causal LMs.

Reference: the same model kept dense, with every replaced layer's weight set to the packed layer's
dense equivalent (zeros where pruned, dequantised values); its logits must match the packed model's
within 1e-4 (float32 accumulation order is the only difference).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_stories
import models
from evoforge.compress import adapt, apply_levels, build_database, pack, provider_for
from evoforge.errors import ConfigError
from evoforge.layers import QuantLinear, SparseLinear, apply, load, packed_layers, save


def tiny_llama(seed: int = 0):
    return models.tiny_llama(seed, vocab=96, hidden=64, intermediate=96, tie=True, token_ids=False)


def dense_equivalent(dense, packed):
    """dense with every packed layer's weight replaced by what the packed layer represents."""
    ref = copy.deepcopy(dense)
    for r in adapt(ref).linear_layers():
        m = packed.get_submodule(r.name)
        W = m.to_dense() if isinstance(m, SparseLinear) else m.dequantize()
        r.set_weight(W.to(r.weight().dtype))
    return ref


def logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


def dir_bytes(d) -> int:
    return sum(f.stat().st_size for f in Path(d).iterdir() if f.is_file())


SPECS = [
    {"sparsity": 0.5},
    {"sparsity": 0.7, "values_dtype": "float16"},
    {"pattern": "2:4"},
    {"sparsity": 0.5, "bits": 4, "group_size": 32},
    {"pattern": "2:4", "bits": 4, "group_size": 32, "symmetric": False},
    {"bits": 4, "group_size": 32},
    {"bits": 3, "group_size": 0, "symmetric": False},
]


@pytest.mark.parametrize("spec", SPECS, ids=[json.dumps(s) for s in SPECS])
def test_uniform_spec_matches_dense_equivalent_and_round_trips(spec, tmp_path):
    dense = tiny_llama()
    model = apply(copy.deepcopy(dense), spec)
    layers = packed_layers(model)
    assert len(layers) == 2 * 7
    cls = QuantLinear if "sparsity" not in spec and "pattern" not in spec else SparseLinear
    assert all(isinstance(model.get_submodule(n), cls) for n in layers)
    ids = torch.randint(0, 96, (2, 11), generator=torch.Generator().manual_seed(1))
    y = logits(model, ids)
    ref = dense_equivalent(dense, model)
    torch.testing.assert_close(y, logits(ref, ids), rtol=1e-4, atol=1e-4)
    if "sparsity" in spec:  # the requested share of every layer is pruned (magnitude: smallest |w|)
        for r in adapt(ref).linear_layers():
            assert abs(float((r.weight() == 0).float().mean()) - spec["sparsity"]) < 0.01
    if spec.get("pattern") == "2:4":
        for r in adapt(ref).linear_layers():
            assert ((r.weight().reshape(r.out_features, -1, 4) != 0).sum(-1) <= 2).all()
    save(model, tmp_path / "packed")
    back = load(tmp_path / "packed")
    assert packed_layers(back) == layers
    assert torch.equal(logits(back, ids), y)


def _sparsity_db(dense, path):
    return build_database(adapt(dense), None, path, method="magnitude", sparsity=0.5, n_levels=1, step=300)


def _quant_db(dense, path):
    return build_database(adapt(dense), None, path, method="rtn", bits=(3, 4, 6), group_size=32)


def test_search_results_apply_as_packed_layers(tmp_path):
    dense = tiny_llama(2)
    sdb, qdb = _sparsity_db(dense, tmp_path / "sdb"), _quant_db(dense, tmp_path / "qdb")
    L = len(sdb.layers)
    rng = np.random.default_rng(0)
    s_levels = rng.choice([-1, 0, 1], size=L).tolist()
    q_levels = rng.choice([3, 4, 6], size=L).tolist()
    s_res = {"method": "sparsity", "layers": list(sdb.layers), "levels": s_levels}
    q_res = {"method": "quant", "layers": list(qdb.layers), "levels": q_levels}
    ids = torch.randint(0, 96, (2, 9), generator=torch.Generator().manual_seed(3))

    # sparsity: exactly the database's weights (the search's dense-with-zeros model)
    ms = pack(copy.deepcopy(dense), s_res, sdb.path)
    ref = copy.deepcopy(dense)
    prov = provider_for(sdb)
    apply_levels(adapt(ref), prov, [lv + prov.n for lv in s_levels])
    torch.testing.assert_close(logits(ms, ids), logits(ref, ids), rtol=1e-4, atol=1e-4)
    # float16 kept values: the same mask, values rounded once (half the bytes)
    mh = pack(copy.deepcopy(dense), s_res, sdb.path, values_dtype="float16")
    for n in packed_layers(mh):
        assert mh.get_submodule(n).values.dtype == torch.float16
        torch.testing.assert_close(mh.get_submodule(n).to_dense(), ms.get_submodule(n).to_dense().half().float(),
                                   rtol=0, atol=0)
    with pytest.raises(ConfigError, match="values_dtype"):
        pack(copy.deepcopy(dense), s_res, sdb.path, values_dtype="int8")

    # a run directory whose recorded db_path moved: <run_dir>/db is found next to its config.json
    moved = tmp_path / "moved"
    (moved / "db").parent.mkdir()
    import shutil

    shutil.copytree(sdb.path, moved / "db")
    (moved / "config.json").write_text(json.dumps({**s_res, "db_path": "no/such/db"}))
    torch.testing.assert_close(logits(pack(copy.deepcopy(dense), moved), ids), logits(ms, ids), rtol=0, atol=0)

    # quant: the database's codes and grid; 6 bits stored as 8-bit codes of the same values
    mq = pack(copy.deepcopy(dense), q_res, qdb.path)
    assert {mq.get_submodule(n).bits for n in packed_layers(mq)} <= {3, 4, 8}
    ref_q = copy.deepcopy(dense)
    for r, b in zip(adapt(ref_q).linear_layers(), q_levels):
        r.set_weight(qdb.weight(r.name, b).float())
    # the grid is stored as float16 (the database keeps float32 scales)
    torch.testing.assert_close(logits(mq, ids), logits(ref_q, ids), rtol=2e-3, atol=2e-3)

    # both: sparse layers with quantised kept values; a run directory's config.json also works
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(s_res))
    mb = pack(copy.deepcopy(dense), [run, q_res], [sdb.path, qdb.path])
    for n in packed_layers(mb):
        m = mb.get_submodule(n)
        assert isinstance(m, SparseLinear) and m.bits in (3, 4, 8)
    torch.testing.assert_close(logits(mb, ids), logits(dense_equivalent(dense, mb), ids), rtol=1e-4, atol=1e-4)
    for r in adapt(dense_equivalent(dense, mb)).linear_layers():  # the sparsity level's mask is kept
        assert torch.equal(r.weight() == 0, ref.get_submodule(r.name).weight == 0)


def test_depth_quant_result_drops_sub_blocks_and_quantises_the_rest(tmp_path):
    dense = tiny_llama(4)
    qdb = _quant_db(dense, tmp_path / "qdb")
    units = [4, 0, 3, 6]  # attention of blocks 0, 1, then MLP of blocks 0, 1; 0 = dropped
    res = {"method": "depth+quant", "layers": ["attn0", "attn1", "mlp0", "mlp1"], "bits": units,
           "db_path": str(qdb.path)}
    model = pack(copy.deepcopy(dense), res)
    ref = copy.deepcopy(dense)
    for r in adapt(ref).linear_layers():
        b = units[r.block if r.kind in ("q", "k", "v", "o") else 2 + r.block]
        if b:
            r.set_weight(qdb.weight(r.name, b).float())
            assert isinstance(model.get_submodule(r.name), QuantLinear)
        else:
            m = model.get_submodule(r.name)
            assert isinstance(m, SparseLinear) and int(m.row_ptr[-1]) == 0  # nothing stored
            if r.kind == "o":  # the exported model: the dropped sub-block's output projection zeroed
                r.set_weight(torch.zeros_like(r.weight()))
    ids = torch.randint(0, 96, (2, 9), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(logits(model, ids), logits(ref, ids), rtol=2e-3, atol=2e-3)


def test_bad_configs_raise(tmp_path):
    dense = tiny_llama()
    with pytest.raises(ConfigError, match="unknown keys"):
        apply(dense, {"sparsity": 0.5, "bitz": 4})
    with pytest.raises(ConfigError, match="2:4"):
        apply(dense, {"pattern": "2:4", "sparsity": 0.7})
    with pytest.raises(ConfigError, match="sparsity must lie"):
        apply(dense, {"sparsity": 1.5})
    with pytest.raises(ConfigError, match="group_size"):
        apply(dense, {"bits": 4, "group_size": 48})
    with pytest.raises(FileNotFoundError, match="compression config"):
        pack(dense, tmp_path / "nothing", tmp_path)
    sdb = _sparsity_db(dense, tmp_path / "sdb")
    with pytest.raises(ConfigError, match="do not match"):
        pack(dense, {"method": "sparsity", "layers": ["x"], "levels": [0]}, sdb.path)
    with pytest.raises(ConfigError, match="holds sparsity"):
        pack(dense, {"method": "quant", "layers": list(sdb.layers), "levels": [4] * len(sdb.layers)}, sdb.path)
    with pytest.raises(ConfigError, match="got method 'depth'"):
        pack(dense, {"method": "depth", "layers": [], "levels": []}, sdb.path)
    qdb = _quant_db(dense, tmp_path / "qdb")
    with pytest.raises(ConfigError, match="3 sub-block bit-widths"):
        pack(dense, {"method": "depth+quant", "bits": [4, 4, 4]}, qdb.path)
    with pytest.raises(ConfigError, match="no packed layers"):
        save(tiny_llama(), tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="evoforge_layers.json"):
        load(tmp_path)


def test_stories260k_packed_checkpoint_is_smaller_and_equal(tmp_path):
    dense = load_stories()
    ids = torch.randint(0, dense.config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(0))
    dense.save_pretrained(tmp_path / "dense")
    for spec, min_ratio in [({"sparsity": 0.5}, 1.3), ({"pattern": "2:4", "bits": 4, "group_size": 32}, 3.0)]:
        model = apply(copy.deepcopy(dense), spec)
        y = logits(model, ids)
        torch.testing.assert_close(y, logits(dense_equivalent(dense, model), ids), rtol=1e-4, atol=1e-4)
        out = tmp_path / "packed"
        save(model, out)
        assert dir_bytes(tmp_path / "dense") / dir_bytes(out) >= min_ratio
        assert torch.equal(logits(load(out), ids), y)
        for f in os.listdir(out):
            os.remove(out / f)


def test_old_apply_of_a_result_warns_and_still_works(tmp_path):
    """layers.apply(model, result) is compress.pack's deprecated spelling until 0.3: the same model,
    with a DeprecationWarning that names the new call."""
    dense = tiny_llama(6)
    sdb = _sparsity_db(dense, tmp_path / "sdb")
    res = {"method": "sparsity", "layers": list(sdb.layers), "levels": [0] * len(sdb.layers)}
    with pytest.warns(DeprecationWarning, match=r"evoforge\.compress\.pack\(model, result, database\)"):
        old = apply(copy.deepcopy(dense), res, sdb.path)
    new = pack(copy.deepcopy(dense), res, sdb.path)
    assert packed_layers(old) == packed_layers(new)
    for n in packed_layers(new):
        assert torch.equal(old.get_submodule(n).to_dense(), new.get_submodule(n).to_dense())
    for bad in (42, [42], None, []):  # not a result: a TypeError, no warning
        with pytest.raises(TypeError, match="config must be a spec dict"):
            apply(dense, bad)


def test_per_layer_specs_and_layer_selection():
    dense = tiny_llama(7)
    names = list(packed_layers(apply(copy.deepcopy(dense), {"bits": 4, "group_size": 32})))
    assert names == [r.name for r in adapt(dense).linear_layers()]  # linear_layers(): the block layers
    # explicit per-layer specs (a spec or a ready packed module per layer); the others stay dense
    q = QuantLinear.from_linear(dense.get_submodule(names[1]), bits=8, group_size=32)
    m = apply(copy.deepcopy(dense), {names[0]: {"sparsity": 0.5}, names[1]: q})
    assert list(packed_layers(m)) == names[:2] and m.get_submodule(names[1]) is q
    assert isinstance(m.get_submodule(names[0]), SparseLinear)
    assert isinstance(m.get_submodule(names[2]), torch.nn.Linear)
    m = apply(copy.deepcopy(dense), {"bits": 4, "group_size": 32}, layers=names[-2:])
    assert list(packed_layers(m)) == names[-2:]
    with pytest.raises(ConfigError, match="no layer 'nope'"):
        apply(copy.deepcopy(dense), {"nope": {"bits": 4}})


def test_load_rebuilds_the_saved_class_or_fills_a_given_model(tmp_path):
    dense = tiny_llama(8)
    model = apply(copy.deepcopy(dense), {"bits": 4, "group_size": 32})
    ids = torch.randint(0, 96, (1, 7), generator=torch.Generator().manual_seed(9))
    save(model, tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "evoforge_layers.json").read_text())
    assert meta["model_class"] == "transformers.models.llama.modeling_llama:LlamaForCausalLM"
    y = logits(model, ids)
    assert torch.equal(logits(load(tmp_path / "p"), ids), y)
    assert torch.equal(logits(load(tmp_path / "p", model=tiny_llama(9)), ids), y)  # a skeleton of any weights
    # a checkpoint of the previous release (no model_class): the class its config.json names
    del meta["model_class"]
    (tmp_path / "p" / "evoforge_layers.json").write_text(json.dumps(meta))
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    (tmp_path / "p" / "config.json").write_text(json.dumps({**cfg, "architectures": ["LlamaForCausalLM"]}))
    assert torch.equal(logits(load(tmp_path / "p"), ids), y)


def test_layers_import_neither_compress_nor_transformers():
    """The ops floor: evoforge.layers alone pulls in neither (ARCHITECTURE.md; the static rule is
    tests/test_architecture.py, this is the import at run time)."""
    import subprocess
    import sys

    code = ("import sys, evoforge.layers, evoforge.layers.model; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'transformers' or m.startswith('evoforge.compress')]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "phi3", "gpt2"])
def test_linear_layers_are_the_adapters_block_layers(arch):
    """layers finds the linear layers without evoforge.compress: for every supported architecture
    they are the adapter's block layers (GPT-2's Conv1D included, the head excluded), and a uniform
    spec packs them to the dense equivalent."""
    from evoforge.layers import linear_layers

    m = models.tiny_model(arch)
    assert set(linear_layers(m)) == {r.name for r in adapt(m).linear_layers()}
    packed = apply(copy.deepcopy(m), {"bits": 8, "group_size": 0})
    ids = torch.randint(0, 100, (1, 6), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits(packed, ids), logits(dense_equivalent(m, packed), ids), rtol=1e-4, atol=1e-4)
