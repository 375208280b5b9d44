"""Sub-network search (issue 17): a cut model equals the full model with the removed heads' and
neurons' output columns zeroed (float64, the masks built here from the head layout), parameter
counts exact, importance against a brute-force recomputation, save / load round trips (evoforge's
loader and transformers' for uniform cuts), the front non-dominated with its objectives recomputed
from the cut models, healing, resume after kill -9, bad input."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import STORIES, start_and_kill9
from evoforge import ConfigError
from evoforge.cli import main as cli_main
from evoforge.compress.encoders import adapt_encoder
from evoforge.compress import (
    SubnetConfig,
    SubnetSpace,
    UnsupportedModelError,
    adapt,
    compress,
    importance,
    load_front,
    load_subnet,
    save_subnet,
    slice_model,
)
from models import tiny_model

WIDTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SMALL = {"n_calib": 4, "n_heldout": 4, "seq_len": 32, "pop_size": 12, "offspring": 8, "generations": 3, "seed": 0,
         "widths": (0.0, 0.5, 0.75, 1.0)}


def tiny_bert(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=64)
    m = transformers.BertModel(cfg, add_pooling_layer=False)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def _out(m, toks):
    with torch.no_grad():
        o = m(input_ids=toks)
    return o.last_hidden_state if hasattr(o, "last_hidden_state") else o.logits


def _space(arch: str, dtype=torch.float64):
    m = (tiny_bert() if arch == "bert" else tiny_model(arch)).to(dtype)
    a = adapt_encoder(m) if arch == "bert" else adapt(m)
    toks = torch.randint(3, 100, (4, 16), generator=torch.Generator().manual_seed(1))
    return m, a, SubnetSpace(a, importance(a, toks), WIDTHS), toks


def _adapt(m):
    return adapt_encoder(m) if isinstance(m, transformers.BertModel) else adapt(m)


def _masked(m, space, genome):
    """The full model with the output columns of the heads and neurons the genome removes zeroed,
    the head layout worked out here: query head h belongs to key-value group h // (H / G) and owns
    input columns h*hd .. (h+1)*hd of the output projection."""
    ref = copy.deepcopy(m)
    groups, neurons = space.kept(genome)
    per = space.n_heads // space.G
    for b, L in enumerate(_blocks(_adapt(ref))):
        o = L["o"]
        W = o.weight().clone()
        for h in range(space.n_heads):
            if h // per not in set(groups[b].tolist()):
                W[:, h * space.head_dim:(h + 1) * space.head_dim] = 0
        o.set_weight(W)
        d = L["down"]
        W = d.weight().clone()
        W[:, [j for j in range(W.shape[1]) if j not in set(neurons[b].tolist())]] = 0
        d.set_weight(W)
    return ref


def _blocks(a):
    out = [{} for _ in range(a.n_blocks)]
    for r in a.linear_layers():
        out[r.block][r.kind] = r
    return out


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_cut_equals_masked_and_params_exact(arch, data):
    m, _, space, toks = _space(arch)
    g = np.array([data.draw(st.integers(int(lo), int(hi))) for lo, hi in zip(space.lower, space.upper)])
    sub = slice_model(m, space, g)
    torch.testing.assert_close(_out(sub, toks), _out(_masked(m, space, g), toks), rtol=1e-10, atol=1e-10)
    assert sum(p.numel() for p in sub.parameters()) == int(space.params(g)[0])
    d = space.describe(g)
    assert sum(p.numel() for p in m.parameters()) == space.params_full  # the model stays whole
    assert [int(x) for x in d["heads"]] == [len(k) * space.n_heads // space.G for k in space.kept(g)[0]]


def test_importance_brute_force():
    """Each head's importance is the Frobenius norm of its contribution to the attention output and
    each neuron's the norm of its contribution to the MLP output, recomputed with plain hooks."""
    m, a, space, toks = _space("llama")
    per = space.n_heads // space.G
    ins = {}
    hooks = [L[k].module.register_forward_pre_hook(lambda mod, args, key=(b, k): ins.setdefault(key, args[0]))
             for b, L in enumerate(_blocks(a)) for k in ("o", "down")]
    with torch.no_grad():
        m(toks)
    for h in hooks:
        h.remove()
    for b, L in enumerate(_blocks(a)):
        X = ins[(b, "o")].reshape(-1, space.n_heads * space.head_dim)
        Wo = L["o"].weight()
        heads = [torch.linalg.norm(X[:, h * space.head_dim:(h + 1) * space.head_dim]
                                   @ Wo[:, h * space.head_dim:(h + 1) * space.head_dim].T).item()
                 for h in range(space.n_heads)]
        want = [sum(heads[j * per:(j + 1) * per]) for j in range(space.G)]
        np.testing.assert_allclose(space.imp.groups[b], want, rtol=1e-9)
        Xd = ins[(b, "down")].reshape(-1, space.I)
        Wd = L["down"].weight()
        want = [torch.linalg.norm(Xd[:, [j]] @ Wd[:, [j]].T).item() for j in range(space.I)]
        np.testing.assert_allclose(space.imp.neurons[b], want, rtol=1e-9)
        g = space.imp.groups[b]
        assert list(space.imp.group_order[b]) == sorted(range(space.G), key=lambda j: (-g[j], j))


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_save_load_round_trip(arch, tmp_path):
    m, _, space, toks = _space(arch, torch.float32)
    rng = np.random.default_rng(0)
    for k in range(3):
        g = rng.integers(space.lower, space.upper + 1)
        sub = slice_model(m, space, g)
        out = save_subnet(sub, tmp_path / f"s{k}")
        back = load_subnet(out)
        assert torch.equal(_out(back, toks), _out(sub, toks))
        assert back.dtype == torch.float32
        assert json.loads((out / "evoforge_subnet.json").read_text())["heads"] == space.describe(g)["heads"]
    # a uniform cut: transformers itself loads it (Llama can say fewer heads in its config)
    if arch == "llama":
        g = space.genome([2] * space.N, [24] * space.N)
        out = save_subnet(slice_model(m, space, g), tmp_path / "uniform")
        hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
        with torch.no_grad():
            torch.testing.assert_close(hf(toks).logits, slice_model(m, space, g)(toks).logits)
        assert hf.config.num_attention_heads == 2 and hf.config.intermediate_size == 24


def test_generate_with_dropped_blocks():
    """A cut model with a block that keeps no heads and one without MLP decodes with transformers'
    KV cache exactly as it computes without one."""
    m, _, space, toks = _space("llama", torch.float32)
    g = space.genome([0, 4, 2], [48, 0, 12])
    sub = slice_model(m, space, g)
    ids = toks[:1, :6]
    out = sub.generate(ids, max_new_tokens=5, do_sample=False)
    x = ids
    for _ in range(5):
        with torch.no_grad():
            nxt = sub(x, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        x = torch.cat([x, nxt], dim=1)
    assert torch.equal(out, x)


@pytest.fixture(scope="module")
def subnet_run(stories, tmp_path_factory):
    rd = tmp_path_factory.mktemp("subnet") / "run"
    res = compress(stories, SubnetConfig(run_dir=str(rd), **SMALL))
    return res, rd


def _kl(full, sub, toks):
    with torch.no_grad():
        t = full(toks).logits.double().log_softmax(-1)
        s = sub(toks).logits.double().log_softmax(-1)
    return float((t.exp() * (t - s)).sum(-1).mean())


def test_front_nondominated_and_recomputed(stories, subnet_run):
    res, rd = subnet_run
    H = np.array([[p["heldout"][o] for o in res.objectives] for p in res.points])
    assert res.objectives == ["kl", "params"] and len(H) >= 2
    for i in range(len(H)):
        assert not any(np.all(H[j] <= H[i]) and np.any(H[j] < H[i]) for j in range(len(H)) if j != i)
    for u in res.uniform:
        hu = np.array([u["heldout"][o] for o in res.objectives])
        assert any(np.all(h <= hu) for h in H), u["label"]
    space = res._bound[1]
    tokens = torch.load(rd / "tokens.pt")
    for p in res.points[:4]:
        sub = slice_model(stories, space, np.array(p["genome"]))
        assert p["search"]["params"] == sum(q.numel() for q in sub.parameters())
        assert p["search"]["kl"] == pytest.approx(_kl(stories, sub, tokens["calibration"]), rel=1e-4, abs=1e-6)
        assert p["heldout"]["kl"] == pytest.approx(_kl(stories, sub, tokens["heldout"]), rel=1e-4, abs=1e-6)
    back = load_front(rd)
    assert back.points == res.points and back.method == "subnet"
    assert (rd / "front.csv").is_file() and (rd / "report.md").is_file()


def test_export_heal_and_reload(stories, subnet_run, tmp_path):
    res, rd = subnet_run
    i = len(res.points) // 2
    out = load_front(rd).export(i, tmp_path / "p", model=stories, heal_steps=20, heal_lr=1e-3)
    meta = json.loads((out / "evoforge_subnet.json").read_text())
    assert meta["heal"]["heldout_kl_before"] == pytest.approx(res.points[i]["heldout"]["kl"], rel=1e-4, abs=1e-6)
    assert meta["heal"]["heldout_kl_after"] < meta["heal"]["heldout_kl_before"]
    back = load_subnet(out)
    tokens = torch.load(rd / "tokens.pt")["heldout"]
    assert _kl(stories, back, tokens) == pytest.approx(meta["heal"]["heldout_kl_after"], rel=1e-4)


def test_latency_objective_is_the_table_sum(stories, tmp_path, monkeypatch):
    from evoforge.compress import latency

    monkeypatch.setenv("EVOFORGE_CACHE_DIR", str(tmp_path / "cache"))
    res = compress(stories, SubnetConfig(**{**SMALL, "generations": 1, "objectives": ("kl", "params", "latency")}))
    space = res._bound[1]
    table = latency.LatencyTable.load()
    for p in res.points:
        g = np.array(p["genome"])
        groups, neurons = g[:space.N], space.neurons[g[space.N:]]
        layers = [(o, i, None) for a, n in zip(groups, neurons) for s in space.shapes(int(a), int(n)) for o, i in s]
        expect = latency.predict_seconds(layers, table, tokens=1, fixed=res.fixed_seconds)
        assert p["search"]["latency"] == pytest.approx(expect, rel=1e-12)


def _cli(rd):
    return [sys.executable, "-m", "evoforge.cli", "compress", "--model", str(STORIES), "--method", "subnet",
            "--run-dir", str(rd), "--n-calib", "4", "--n-heldout", "4", "--seq-len", "32", "--pop-size", "12",
            "--offspring", "8", "--generations", "3", "--seed", "0", "--widths", "0,0.5,0.75,1", "--quiet"]


def test_cli_resume_after_kill9(stories, subnet_run, tmp_path):
    res, _ = subnet_run
    rd = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start_and_kill9(_cli(rd), rd, 1, env)
    assert not (rd / "front.json").exists()
    out = subprocess.run(_cli(rd), check=False, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    back = json.loads((rd / "front.json").read_text())
    assert [p["genome"] for p in back["points"]] == [p["genome"] for p in res.points]
    out = subprocess.run([sys.executable, "-m", "evoforge.cli", "compress", "export", str(rd), "--point", "0",
                          "--out", str(tmp_path / "p0")], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p0" / "evoforge_subnet.json").is_file()


def test_bad_input(tmp_path):
    m, a, space, _ = _space("llama", torch.float32)
    with pytest.raises(ConfigError, match="the model has 4"):
        space.genome([8, 4, 4], [48, 48, 48])
    with pytest.raises(ConfigError, match="multiple of 2"):
        space.genome([3, 4, 4], [48, 48, 48])
    narrow = SubnetSpace(a, space.imp, (0.5, 1.0))
    with pytest.raises(ConfigError, match="0 drops the MLP"):
        narrow.genome([4, 4, 4], [0, 48, 48])
    with pytest.raises(ConfigError, match="outside"):
        space.combined(np.array([5, 0, 0, 0, 0, 0]))
    with pytest.raises(ConfigError, match="widths"):
        SubnetSpace(a, space.imp, (0.5, 0.75))
    with pytest.raises(UnsupportedModelError, match="sub-network"):
        SubnetSpace(adapt(tiny_model("phi3")), space.imp)
    for knobs, match in (({"objectives": ("kl", "bytes")}, "two or more"), ({"widths": (0.5, 0.25, 1.0)}, "widths"),
                         ({"widths": (1.0,), "attention": False}, "nothing to search")):
        with pytest.raises(ConfigError, match=match):
            SubnetConfig(**knobs).validate()
    assert cli_main(["compress", "--model", str(STORIES), "--method", "subnet", "--widths", "0.5,0.25",
                     "--run-dir", str(tmp_path / "r")]) == 2
    with pytest.raises(ConfigError, match="no evoforge_subnet.json"):
        load_subnet(tmp_path)


def test_encoder_front(tmp_path):
    """A tiny BERT: the front of cosine distance against parameters, each point's cosine distance
    recomputed from its cut model's mean-pooled embeddings; the pooling found in a
    sentence-transformers directory; encoder-specific bad input."""
    m = tiny_bert()
    gen = torch.Generator().manual_seed(0)
    calib, held = torch.randint(3, 100, (6, 16), generator=gen), torch.randint(3, 100, (6, 16), generator=gen)
    cfg = SubnetConfig(objectives=("cosine", "params"), pooling="mean", widths=(0.0, 0.5, 1.0), pop_size=8,
                       offspring=4, generations=2, run_dir=str(tmp_path / "run"))
    res = compress(m, cfg, calibration=calib, heldout=held)
    space = res._bound[1]
    with torch.no_grad():
        full = m(input_ids=held).last_hidden_state.double().mean(1)
    for p in res.points:
        sub = slice_model(m, space, np.array(p["genome"]))
        with torch.no_grad():
            e = sub(input_ids=held).last_hidden_state.double().mean(1)
        want = float((1 - torch.nn.functional.cosine_similarity(e, full, dim=1)).mean())
        assert p["heldout"]["cosine"] == pytest.approx(want, rel=1e-4, abs=1e-6)
        assert p["heldout"]["params"] == sum(q.numel() for q in sub.parameters())
    # pooling "auto": read from a sentence-transformers layout, or a clear error without one
    from evoforge.compress.encoders import find_pooling

    d = tmp_path / "st"
    (d / "1_Pooling").mkdir(parents=True)
    (d / "modules.json").write_text(json.dumps([{"idx": 1, "path": "1_Pooling",
                                                 "type": "sentence_transformers.models.Pooling"}]))
    (d / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert find_pooling(d) == "cls" and find_pooling(tmp_path) is None
    bad = [({"pooling": "auto"}, ConfigError, "names no pooling"),
           ({"objectives": ("kl", "params")}, ConfigError, "takes 'cosine'")]
    for knobs, exc, match in bad:
        with pytest.raises(exc, match=match):
            compress(m, dataclasses.replace(cfg, run_dir=None, **knobs), calibration=calib, heldout=held)
    with pytest.raises(ConfigError, match="cannot sample its own calibration"):
        compress(m, SubnetConfig(objectives=("cosine", "params"), pooling="mean"))
    with pytest.raises(UnsupportedModelError, match="encoder"):
        compress(m, method="sparsity", target=0.5, calibration=calib)


def test_single_budget(stories, tmp_path):
    """target 0.5: one sub-network within half of the blocks' parameters, no worse on the search's
    KL than the best uniform sub-network within the budget (it starts from it), its KL recomputed."""
    res = compress(stories, SubnetConfig(**{**SMALL, "target": 0.5, "generations": 4, "offspring": 6},
                                         run_dir=str(tmp_path / "b")))
    space = res._bound[1]
    budget = space.params_rest + 0.5 * space.block_params()
    (p,) = res.points
    assert p["search"]["params"] <= budget and res.uniform
    assert all(u["search"]["params"] <= budget for u in res.uniform)
    assert p["search"]["kl"] <= min(u["search"]["kl"] for u in res.uniform) + 1e-12
    tokens = torch.load(tmp_path / "b" / "tokens.pt")
    sub = slice_model(stories, space, np.array(p["genome"]))
    assert p["heldout"]["kl"] == pytest.approx(_kl(stories, sub, tokens["heldout"]), rel=1e-4, abs=1e-6)
    with pytest.raises(ConfigError, match="target"):
        SubnetConfig(target=1.5).validate()
    with pytest.raises(ConfigError, match="no uniform sub-network"):
        compress(stories, SubnetConfig(**{**SMALL, "target": 0.01}))
