"""Joint depth + quantisation search (method="depth+quant") on stories260k and its mutation:
every offspring keeps each group's bit budget exactly (hypothesis), the search beats uniform on
held-out tokens with the exact budget, the exported model reloads with the claimed bit-widths
and zeroed dropped sub-blocks and reproduces the reported KL, and a resumed run equals an
uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from evoforge import ConfigError
from evoforge.compress import adapt, compress
from evoforge.compress.joint import JointSwitch

RUN = {"db_method": "rtn", "bits": tuple(range(2, 9)), "group_size": 64, "n_calib": 16, "n_heldout": 16,
       "seq_len": 64, "offspring": 8, "seed": 0}


@pytest.fixture(scope="module")
def joint_run(stories, tmp_path_factory):
    rd = tmp_path_factory.mktemp("joint") / "run"
    return compress(stories, method="depth+quant", target=3, generations=12, run_dir=rd, **RUN), rd


def _units(g, b_min):
    return np.where(g > 0, g + b_min - 1, 0)


def test_joint_switch_keeps_group_budgets():
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    @hyp.settings(max_examples=30, deadline=None)
    @hyp.given(st.integers(2, 6), st.integers(0, 2**31), st.integers(1, 3), st.floats(0, 1),
               st.lists(st.integers(0, 5), min_size=4, max_size=4))
    def check(n_per_group, seed, max_switches, p_depth, start):
        b_min, b_max = 2, 6
        groups = np.repeat([0, 1], n_per_group)
        rng = np.random.default_rng(seed)
        parent = rng.integers(1, b_max - b_min + 2, size=groups.size)  # every sub-block kept
        parent[rng.random(groups.size) < 0.3] = 0
        for gid in (0, 1):  # at least one kept per group
            if not (parent[groups == gid] > 0).any():
                parent[np.flatnonzero(groups == gid)[0]] = 1
        mut = JointSwitch(groups, b_min, b_max, max_switches=max_switches, p_depth=p_depth)
        try:
            kids = mut.offspring(parent, 4, None, None, seed=seed, generation=start[0])
        except ConfigError:
            return  # no distinct move exists (e.g. a single kept sub-block at b_min everywhere)
        pu = _units(parent, b_min)
        assert len({k.tobytes() for k in kids} | {parent.tobytes()}) == 5  # distinct, not the parent
        for k in kids:
            u = _units(k, b_min)
            assert ((k >= 0) & (k <= b_max - b_min + 1)).all()
            for gid in (0, 1):
                m = groups == gid
                assert u[m].sum() == pu[m].sum()  # the group's bits are exactly preserved
                assert (u[m] > 0).any()
        again = mut.offspring(parent, 4, None, None, seed=seed, generation=start[0])
        assert np.array_equal(kids, again)  # deterministic

    check()


def test_joint_beats_uniform_with_exact_budget(stories, joint_run):
    res, _ = joint_run
    a = adapt(stories)
    total = sum(r.numel for r in a.linear_layers())
    assert res.method == "depth+quant" and res.total_weights == total
    assert res.budget == res.uniform_budget == 3 * total  # exact: every sub-block's bits x weights
    attn = {r.block: 0 for r in a.linear_layers()}
    mlp = dict(attn)
    for r in a.linear_layers():
        (attn if r.kind in ("q", "k", "v", "o") else mlp)[r.block] += r.numel
    w = [attn[b] for b in sorted(attn)] + [mlp[b] for b in sorted(mlp)]
    assert sum(b * n for b, n in zip(res.bits, w)) == res.budget
    assert res.dropped, "stories260k at 3 bits: the search drops a sub-block and spends its bits elsewhere"
    assert res.kl_search < 0.9 * res.kl_uniform, (res.kl_search, res.kl_uniform)
    sg = res.baselines["shortgpt"]  # as many drops, chosen by ShortGPT importance, at the same budget
    assert sg["budget"] == res.budget
    assert len(sg["dropped"]) == len(res.dropped)


def test_joint_export(stories, joint_run):
    res, rd = joint_run
    cfg = json.loads((rd / "config.json").read_text())
    m = transformers.LlamaForCausalLM.from_pretrained(rd / "model").eval()
    layers = adapt(m).linear_layers()
    assert [r.name for r in layers] == [e["name"] for e in cfg["per_layer"]]
    dropped = {tuple(d) for d in res.dropped}
    for r, e in zip(layers, cfg["per_layer"]):
        W = r.weight()
        kind = "attn" if r.kind in ("q", "k", "v", "o") else "mlp"
        assert e["dropped"] == ((r.block, kind) in dropped)
        if e["dropped"]:
            if r.kind in ("o", "down"):
                assert int((W != 0).sum()) == 0, r.name
            continue
        b = e["bits"]
        assert 2 <= b <= 8
        for g0 in range(0, r.in_features, 64):  # at most 2**b distinct values per row and group
            assert max(len(torch.unique(W[i, g0:g0 + 64])) for i in range(r.out_features)) <= 2 ** b, r.name
    # the saved model reproduces the reported held-out KL (float64 reference)
    held = torch.load(rd / "tokens.pt")["heldout"]
    with torch.no_grad():
        p = torch.log_softmax(stories(input_ids=held).logits.double(), -1)
        q = torch.log_softmax(m(input_ids=held).logits.double(), -1)
    kl = float((p.exp() * (p - q)).sum(-1).mean())
    assert kl == pytest.approx(res.kl_search, rel=2e-3)


def test_joint_resume_equals_uninterrupted(stories, joint_run, tmp_path):
    res, _ = joint_run
    rd = tmp_path / "r"
    first = compress(stories, method="depth+quant", target=3, generations=5, run_dir=rd, export_model=False, **RUN)
    assert first.generations == 5
    again = compress(stories, method="depth+quant", target=3, generations=12, run_dir=rd, export_model=False, **RUN)
    assert again.generations == 12
    assert again.genome == res.genome and again.kl_search == pytest.approx(res.kl_search, rel=1e-12)


def test_joint_bad_input(stories, tmp_path):
    with pytest.raises(ConfigError, match="does not fit"):
        compress(stories, method="depth+quant", target=3, db_method="sparsegpt")
    with pytest.raises(ConfigError, match="depth\\+quant target"):
        compress(stories, method="depth+quant", target=9)
    with pytest.raises(ConfigError, match="count_metadata"):
        compress(stories, method="depth+quant", target=3, count_metadata=True)
    with pytest.raises(ConfigError, match="consecutive"):
        compress(stories, method="depth+quant", target=3, db_method="rtn", bits=(2, 4, 8), n_calib=2, n_heldout=2,
                 seq_len=8, generations=1)


def test_joint_fitness_prefix_reuse_matches_fresh(stories, joint_run):
    """Candidates evaluated together (reusing the parent's and each other's block inputs) get the KL
    each gets alone from block 0."""
    from evoforge.compress.joint import JointFitness
    from evoforge.search.engine import Batch

    res, rd = joint_run
    joint, adapter = res._provider, res._adapter
    calib = torch.load(rd / "tokens.pt")["calibration"]
    parent = np.asarray(res.genome)
    kids = joint.mutation(3, p_depth=0.5).offspring(parent, 6, None, None, seed=3, generation=0)
    batch = Batch(np.vstack([kids, parent]), 512, 11, 0, 0)
    f = JointFitness(adapter, joint, calib, batch_size=4)
    f.set_base(parent)
    together = f.evaluate(batch.genomes, batch)
    assert f.stats["blocks_skipped"] > 0
    alone = [JointFitness(adapter, joint, calib, batch_size=4).evaluate(g[None], batch)[0] for g in batch.genomes]
    np.testing.assert_allclose(together, alone, rtol=1e-5)
    assert len(set(np.round(together, 9))) > 1


def test_joint_perplexity_matches_exported_model(stories, joint_run):
    from evoforge.compress import compare_perplexity, perplexity

    res, rd = joint_run
    ids = torch.randint(3, 512, (4 * 32,), generator=torch.Generator().manual_seed(5))
    ppl = compare_perplexity(res, ids, window=32)
    assert set(ppl) == {"dense", "uniform", "evoforge", *res.baselines}
    m = transformers.LlamaForCausalLM.from_pretrained(rd / "model").eval()
    assert ppl["evoforge"] == pytest.approx(perplexity(m, ids, window=32), rel=1e-5)
    assert ppl["dense"] == pytest.approx(perplexity(stories, ids, window=32), rel=1e-12)  # left dense
