"""The compression front (issue 15) on stories260k: a mutually non-dominated set whose objectives are
recomputed from the genomes by independent means (real packed modules' bytes, a fresh KL, the
exported model's KL), uniform configurations dominated or matched, export, resume after kill -9,
bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open
from torch import nn

from conftest import STORIES, start_and_kill9
from evoforge import ConfigError
from evoforge.cli import main as cli_main
from evoforge.compress import FrontConfig, KLFitness, adapt, compress, load_front
from evoforge.compress.front_export import point_modules
from evoforge.layers import load as load_packed
from evoforge.search import NSGA2

SMALL = {"sparsities": (0.0, 0.5, 0.7), "bits": (3, 4, 16), "group_size": 32, "db_method": "magnitude",
         "n_calib": 4, "n_heldout": 4, "seq_len": 32, "pop_size": 12, "offspring": 8, "generations": 4, "seed": 0}
CLI_SMALL = ["--sparsities", "0,0.5,0.7", "--bits", "3,4,16", "--group-size", "32", "--db-method", "magnitude",
             "--n-calib", "4", "--n-heldout", "4", "--seq-len", "32", "--pop-size", "12", "--offspring", "8",
             "--generations", "4", "--seed", "0", "--quiet"]


@pytest.fixture(scope="module")
def front_run(stories, tmp_path_factory):
    rd = tmp_path_factory.mktemp("front") / "run"
    res = compress(stories, FrontConfig(run_dir=str(rd), **SMALL))
    return res, rd


def _dominates(a, b):
    return bool(np.all(a <= b) and np.any(a < b))


def test_front_is_nondominated_and_covers_uniform(front_run):
    res, _ = front_run
    H = np.array([[p["heldout"][o] for o in res.objectives] for p in res.points])
    assert len(H) >= 2 and res.objectives == ["kl", "bytes"]
    for i in range(len(H)):  # brute force, on the held-out objectives the final front is chosen by
        assert not any(_dominates(H[j], H[i]) for j in range(len(H)) if j != i)
    assert len({tuple(p["genome"]) for p in res.points}) == len(res.points)
    assert len(res.uniform) == 3 * 3
    for u in res.uniform:  # every uniform configuration is dominated or matched by a front point
        hu = np.array([u["heldout"][o] for o in res.objectives])
        assert any(_dominates(h, hu) or np.allclose(h, hu, rtol=1e-12) for h in H), u["uniform"]
    assert H[:, 0].tolist() == sorted(H[:, 0].tolist())


def test_front_points_come_from_the_search(front_run):
    """Each point is one the search kept (its last front) or a uniform configuration, with the
    search's scores."""
    res, rd = front_run
    ck = NSGA2.resume(rd)
    try:
        best_G, best_F = ck.best
    finally:
        ck.close()
    known = {tuple(g): f for g, f in zip(best_G.tolist(), best_F)}
    known.update({tuple(u["genome"]): np.array([u["search"][o] for o in res.objectives]) for u in res.uniform})
    for p in res.points:
        f = known[tuple(p["genome"])]
        assert np.allclose(f, [p["search"][o] for o in res.objectives], rtol=1e-12)


def test_objectives_recomputed_from_genomes(stories, front_run):
    res, _ = front_run
    space = res._bound[1]
    a = adapt(stories)
    refs = a.linear_layers()
    kl = KLFitness(a, space, torch.load(res.run_dir + "/tokens.pt")["calibration"], batch_size=8)
    for p in res.points:
        modules = point_modules(stories, space, p["genome"])
        # bytes: the real modules' packed buffers (float16 weights for a dense float16 layer)
        expect = sum(m.weight.numel() * 2 if isinstance(m, nn.Linear) else m.weight_bytes for m in modules.values())
        assert p["search"]["bytes"] == expect
        # the layers are at the share and bit-width the point says
        for r, s, b in zip(refs, p["sparsity"], p["bits"]):
            m = modules[r.name]
            W = m.weight.detach() if isinstance(m, nn.Linear) else (
                m.dequantize() if hasattr(m, "dequantize") else m.to_dense())
            assert float((W == 0).float().mean()) >= s - 1e-9
            if b == 16:
                assert torch.equal(W, W.half().float())
        got = float(kl.evaluate(space.combined(np.array(p["genome"])), None)[0])
        assert got == pytest.approx(p["search"]["kl"], rel=1e-6, abs=1e-9)


def test_export_computes_what_was_scored(stories, front_run, tmp_path):
    res, rd = front_run
    i = len(res.points) // 2
    p = res.points[i]
    dense_dir = res.export(i, tmp_path / "dense", packed=False)
    m = transformers.LlamaForCausalLM.from_pretrained(dense_dir).eval()
    calib = torch.load(rd / "tokens.pt")["calibration"]
    with torch.no_grad():
        lt = torch.log_softmax(stories(input_ids=calib).logits.double(), -1)
        ls = torch.log_softmax(m(input_ids=calib).logits.double(), -1)
    kl = float((lt.exp() * (lt - ls)).sum(-1).mean())
    assert kl == pytest.approx(p["search"]["kl"], rel=1e-4, abs=1e-7)
    if not all(s == 0 and b == 16 for s, b in zip(p["sparsity"], p["bits"])):
        packed_dir = res.export(i, tmp_path / "packed", packed=True)
        pm = load_packed(packed_dir).eval()
        with torch.no_grad():
            lp = torch.log_softmax(pm(input_ids=calib).logits.double(), -1)
        kl_p = float((lt.exp() * (lt - lp)).sum(-1).mean())
        assert kl_p == pytest.approx(kl, rel=0.02, abs=1e-3)  # float16 embeddings / norms in the checkpoint
        # the packed linear layers' tensors in the file are the bytes the search counted
        names = set(res.layers)
        with safe_open(str(packed_dir / "model.safetensors"), "pt") as f:
            stored = sum(f.get_tensor(k).nbytes for k in f.keys()
                         if k.rsplit(".", 1)[0] in names and not k.endswith(".bias"))
        assert stored == p["search"]["bytes"]


def test_files_and_reload(front_run):
    res, rd = front_run
    for name in ("front.json", "front.csv", "report.md", "history.jsonl", "compress.json"):
        assert (rd / name).is_file(), name
    back = load_front(rd)
    assert back.points == res.points and back.uniform == res.uniform
    rows = (rd / "front.csv").read_text().splitlines()
    assert len(rows) == 1 + len(res.points) + len(res.uniform)


def _cli(rd):
    return [sys.executable, "-m", "evoforge.cli", "compress", "--model", str(STORIES), "--method", "front",
            "--run-dir", str(rd), *CLI_SMALL]


def test_cli_resume_after_kill9(stories, front_run, tmp_path):
    res, _ = front_run
    rd = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start_and_kill9(_cli(rd), rd, 2, env)
    assert not (rd / "front.json").exists()
    out = subprocess.run(_cli(rd), check=False, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "non-dominated points" in out.stdout
    back = json.loads((rd / "front.json").read_text())
    assert [p["genome"] for p in back["points"]] == [p["genome"] for p in res.points]
    for p, q in zip(back["points"], res.points):
        assert p["search"]["kl"] == pytest.approx(q["search"]["kl"], rel=1e-9)
    # and the CLI exports a point
    out = subprocess.run([sys.executable, "-m", "evoforge.cli", "compress", "export", str(rd), "--point", "0",
                          "--out", str(tmp_path / "p0"), "--model", str(STORIES)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p0" / "config.json").is_file()


@pytest.mark.parametrize("knobs, match", [
    ({"objectives": ("kl",)}, "two or more"),
    ({"objectives": ("kl", "speed")}, "two or more"),
    ({"objectives": ("kl", "kl")}, "two or more"),
    ({"space": "sparsity+width"}, "distinct parts"),
    ({"space": "quant+quant"}, "distinct parts"),
    ({"space": "sparsity", "sparsities": ()}, "shares"),
    ({"space": "sparsity", "sparsities": (0.5,)}, "single configuration"),
    ({"sparsities": (0.5, 1.0)}, "shares"),
    ({"bits": (4, 5)}, "bits"),
    ({"group_size": 48}, "group_size"),
    ({"pop_size": 1}, "pop_size"),
    ({"pop_size": 2**62}, "pop_size"),
    ({"screen": 2**20, "offspring": 64}, "candidates per generation"),
    ({"screen": 0}, "screen"),
    ({"backend": "ray"}, "in-process"),
])
def test_bad_config(knobs, match):
    with pytest.raises(ConfigError, match=match):
        FrontConfig(**knobs).validate()


def test_cli_errors(capsys, tmp_path):
    assert cli_main(["compress", "--model", str(STORIES), "--method", "front", "--objectives", "kl",
                     "--run-dir", str(tmp_path / "r")]) == 2
    assert "two or more" in capsys.readouterr().err
    assert cli_main(["compress", "export", str(tmp_path), "--point", "0", "--out", str(tmp_path / "o")]) == 2
    assert "no front" in capsys.readouterr().err


def test_latency_objective_is_the_table_sum(stories, tmp_path, monkeypatch):
    """kl, bytes, latency: each point's latency is this machine's table summed over its layers' specs,
    each times its level's in-model factor, plus the fixed part (recomputed here from the saved
    table), and front.png is drawn."""
    from evoforge.compress import latency

    monkeypatch.setenv("EVOFORGE_CACHE_DIR", str(tmp_path / "cache"))
    rd = tmp_path / "lat"
    knobs = {**SMALL, "generations": 1, "objectives": ("kl", "bytes", "latency"), "sparsities": (0.0, 0.5),
             "bits": (4, 16)}
    res = compress(stories, FrontConfig(run_dir=str(rd), **knobs))
    space = res._bound[1]
    table = latency.LatencyTable.load()
    assert len(table) > 0 and table.path.is_file()
    shapes = [space.shapes[i] for i in range(space.n_layers)]
    factors = res.latency_factors
    assert len(factors) == space.n_levels(0) and all(f > 0 for f in factors)
    for p in res.points:
        j = space.combined(np.array(p["genome"]))[0]
        expect = res.fixed_seconds + sum(table.seconds(*shapes[i], space.spec(i, int(lv)), 1) * factors[int(lv)]
                                         for i, lv in enumerate(j))
        assert p["search"]["latency"] == pytest.approx(expect, rel=1e-12)
        assert p["heldout"]["latency"] == p["search"]["latency"]
    assert (rd / "front.png").stat().st_size > 10_000


def test_depth_in_the_space(stories, tmp_path):
    """sparsity+quant+depth: a dropped sub-block (its layers zeroed) scores the KL of the model with
    that sub-block removed (DepthFitness, float32 weights: equal up to the float16 rounding of the
    kept layers); its layers cost an all-zero SparseLinear's bytes; the exported model reproduces the
    searched KL."""
    from evoforge.compress import DepthFitness
    from evoforge.compress.methods.front import FrontObjectives

    knobs = {**SMALL, "sparsities": (0.0, 0.5), "bits": (4, 16), "generations": 2}
    res = compress(stories, FrontConfig(space="sparsity+quant+depth", run_dir=str(tmp_path / "d"), **knobs))
    space = res._bound[1]
    a = adapt(stories)
    L, n_sub = space.n_layers, space.n_sub
    assert n_sub == 2 * a.n_blocks and len(res.points[0]["genome"]) == 2 * L + n_sub
    calib = torch.load(tmp_path / "d" / "tokens.pt")["calibration"]
    g = np.array([0] * L + [1] * L + [0] * n_sub)  # dense, float16 values
    g[2 * L + 1] = 1  # drop block 1's attention
    obj = FrontObjectives(space, ["kl", "bytes"], KLFitness(a, space, calib, batch_size=8))
    kl, nbytes = obj.evaluate(g[None, :])[0]
    d = np.zeros(n_sub, dtype=np.int64)
    d[1] = 1
    ref = float(DepthFitness(a, calib, batch_size=8).evaluate(d[None, :], None)[0])
    assert kl == pytest.approx(ref, rel=2e-2)
    modules = point_modules(stories, space, g)
    dropped = [r.name for r in a.linear_layers() if r.block == 1 and r.kind in ("q", "k", "v", "o")]
    assert all(float(modules[n].to_dense().abs().sum()) == 0 for n in dropped)
    expect = sum(m.weight.numel() * 2 if isinstance(m, nn.Linear) else m.weight_bytes for m in modules.values())
    assert nbytes == expect
    assert space.describe(g)["dropped"] == [1]
    # the front's points carry their drops, and an exported point computes its searched KL
    p = max(res.points, key=lambda q: len(q["dropped"]))
    m = transformers.LlamaForCausalLM.from_pretrained(res.export(res.points.index(p), tmp_path / "x", packed=False))
    with torch.no_grad():
        lt = torch.log_softmax(stories(input_ids=calib).logits.double(), -1)
        ls = torch.log_softmax(m.eval()(input_ids=calib).logits.double(), -1)
    assert float((lt.exp() * (lt - ls)).sum(-1).mean()) == pytest.approx(p["search"]["kl"], rel=1e-4, abs=1e-7)
