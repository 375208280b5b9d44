"""The EvoPress side-by-side benchmark (evoforge.bench.evopress_peer): its run-time patching of the
reference, the reference-format ladder it writes, the parsing of the reference's output, and a
``--quick`` run end to end (only where the reference's folder and stories260k exist)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, SHARED_DATA, STORIES

from evoforge.bench import _evopress_ref as ref

PEER = REPO.parent / "shared" / "peers" / "evopress"


def _fake_peer(tmp_path: Path, search_text: str) -> Path:
    peer = tmp_path / "peer"
    (peer / "src").mkdir(parents=True)
    (peer / "src" / "data_utils.py").write_text("import os\nfrom datasets import load_dataset\n")
    (peer / "evo_prune_search.py").write_text(search_text)
    (peer / "prune.py").write_text('dist.init_process_group(backend="nccl", init_method="env://")\n'
                                   '    device = f"cuda:{rank}"\n')
    return peer


def test_patch_fails_loudly_when_the_reference_changed(tmp_path):
    peer = _fake_peer(tmp_path, '    device = f"cuda"\n')  # the evaluation lines are missing
    with pytest.raises(ref.PeerPatchError, match="evo_prune_search.py: expected exactly one occurrence"):
        ref.prepare_copy(peer, tmp_path / "copy", "cpu")


def test_cuda_copy_patches_only_the_data_import(tmp_path):
    peer = _fake_peer(tmp_path, '    device = f"cuda"\n')
    applied = ref.prepare_copy(peer, tmp_path / "copy", "cuda")
    assert applied == ["src/data_utils.py: load_dataset = None"]
    assert (tmp_path / "copy" / "evo_prune_search.py").read_text() == '    device = f"cuda"\n'
    ns: dict = {}
    exec((tmp_path / "copy" / "src" / "data_utils.py").read_text(), ns)  # no `datasets` needed
    assert "load_dataset" in ns


@pytest.mark.skipif(not (PEER / "evo_prune_search.py").is_file(), reason=f"EvoPress reference not found at {PEER}")
def test_real_reference_patches_apply(tmp_path):
    applied = ref.prepare_copy(PEER, tmp_path / "copy", "cpu")
    text = (tmp_path / "copy" / "evo_prune_search.py").read_text()
    assert 'device = "cpu"' in text and 'f"cuda"' not in text and len(applied) == 7
    assert 'backend="gloo"' in (tmp_path / "copy" / "prune.py").read_text()
    assert "load_dataset = None" in (tmp_path / "copy" / "src" / "data_utils.py").read_text()


def test_levels_in_the_reference_format_are_the_database_weights(tmp_path):
    from models import tiny_llama

    from evoforge.compress import adapt, build_database

    model = tiny_llama()
    db = build_database(adapt(model), None, tmp_path / "db", method="magnitude", sparsity=0.5, n_levels=2)
    ref.write_levels(db, tmp_path / "ref")
    for name in db.layers:
        files = sorted(int(p.stem) for p in (tmp_path / "ref" / name).glob("*.pth"))
        assert files == db.levels(name)
        for k in files:
            w = torch.load(tmp_path / "ref" / name / f"{k}.pth")
            assert torch.equal(w, db.weight(name, k))
            # the reference's level k prunes k steps more than the target: non-zeros fall with k
            assert int((w != 0).sum()) == db.cost(name, k)


def test_parse_search_times_generations_between_their_ends():
    lines = [(1.0, "loading"), (5.0, "Generation 1/2"), (5.1, "Current search point: [0]"),
             (9.0, "Train fitnesses: 2.28e+00"), (9.1, "Generation 2/2"), (12.0, "Train fitnesses: 2.14e+00")]
    got = ref.parse_search(ref.Proc(0, 13.0, None, lines))
    assert got["setup_s"] == 5.0
    assert [g["seconds"] for g in got["generations"]] == pytest.approx([4.0, 3.0])
    assert [g["kl"] for g in got["generations"]] == [2.28, 2.14]
    # with the periodic evaluation (CUDA, unpatched) a generation starts at its ppl_train line
    lines += [(12.5, "Generation 3/3"), (20.0, "ppl_train: 40.0"), (22.0, "Train fitnesses: 2.0e+00")]
    assert ref.parse_search(ref.Proc(0, 23.0, None, lines))["generations"][-1]["seconds"] == pytest.approx(2.0)


@pytest.mark.slow
@pytest.mark.skipif(not (PEER / "evo_prune_search.py").is_file(), reason=f"EvoPress reference not found at {PEER}")
@pytest.mark.skipif(not (STORIES / "config.json").is_file(), reason=f"stories260k not found at {STORIES}")
def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "res.json"
    env = {**os.environ, "EVOFORGE_SHARED_DATA": str(SHARED_DATA)}
    cmd = [sys.executable, "-m", "evoforge.bench.evopress_peer", "--quick", "--peer", str(PEER), "--work",
           str(tmp_path / "work"), "--out", str(out), "--keep-levels"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    last = p.stdout.rstrip().splitlines()[-1]  # the search table comes last
    assert "bfloat16" in last and "reference / evoforge" in last
    rows = {(r["dtype"], r["side"]): r for r in res["rows"]}
    assert set(rows) == {(d, s) for d in ("float32", "bfloat16") for s in ("reference", "evoforge")}
    from evoforge.compress import LayerDatabase

    db = LayerDatabase.open(tmp_path / "work" / "stories260k" / "db-magnitude")
    uniform = sum(db.cost(n, 0) for n in db.layers)
    for r in rows.values():
        assert len(r["per_generation_s"]) == 2 and r["seconds_per_generation"] > 0 and r["peak_rss"] > 0
        # both searches keep the budget exact: the same non-zeros as uniform 50%
        assert set(r["levels"]) == set(db.layers)
        assert sum(db.cost(n, k) for n, k in r["levels"].items()) == uniform
        assert 0 < r["kl_common"] < 10 and 0 < r["train_kl"] < 10
