"""The merge searches on two real experts (stories260k fine-tuned for seconds on Shakespeare and on
WikiText-2): the evolved recipe beats the best uniform recipe of its method on the mean held-out
loss; the layer path exports as an ordinary model equal to the searched one; a run killed with
kill -9 resumes to the uninterrupted result; the CLI writes its run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, STORIES, load_stories, start_and_kill9

FULL = {"shakespeare": SHARED_DATA / "text" / "tinyshakespeare.txt", "wiki": SHARED_DATA / "text" / "wikitext2-test.raw"}
TEXTS: dict[str, Path] = {}  # the first 200 kB of each (tokenised in a second rather than five), set by `experts`
TOK = SHARED_DATA / "stories260k" / "tok512.bin"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    """Paths of the base and of two experts (60 AdamW steps each on one text)."""
    if not all(p.is_file() for p in [*FULL.values(), TOK]):
        pytest.skip("shared texts or the stories260k tokenizer are absent")
    t = tmp_path_factory.mktemp("texts")
    for name, p in FULL.items():
        TEXTS[name] = t / p.name
        TEXTS[name].write_text(p.read_text(encoding="utf-8")[:200_000], encoding="utf-8")
    from evoforge.compress import Llama2cTokenizer
    from evoforge.merge import finetune

    torch.set_num_threads(1)
    base = load_stories()
    tok = Llama2cTokenizer(TOK)
    d = tmp_path_factory.mktemp("experts")
    out = []
    for i, (name, text) in enumerate(TEXTS.items()):
        finetune(base, text, tok, steps=60, lr=3e-3, seq_len=128, batch_size=8, seed=i).save_pretrained(d / name)
        out.append(str(d / name))
    return str(STORIES), out


def _tasks():
    from evoforge.merge import Task

    return [Task(n, text=str(p)) for n, p in TEXTS.items()]


@pytest.mark.parametrize("method", ["ties", "dare-ties"])
def test_evolved_merge_beats_the_best_uniform_recipe(experts, method, tmp_path):
    from evoforge.merge import MergeConfig, merge

    base, models = experts
    res = merge(base, models, _tasks(), MergeConfig(method=method, evaluations=60, tokenizer=str(TOK), progress=False,
                                                    n_search=16, groups=2, grid_weights=(0.5, 1.0),
                                                    run_dir=str(tmp_path / "run")))
    uniform = np.mean(res.best_uniform["heldout"])
    assert np.mean(res.heldout) < uniform, res.table()
    assert np.mean(res.heldout) < min(np.mean(v) for v in res.baselines["experts"].values()), res.table()
    # the run directory: model (reloads with the held-out losses), recipe, report, plot
    from evoforge.merge import load_recipe
    from evoforge.merge.tasks import prepare_tasks, task_losses
    from evoforge.compress import Llama2cTokenizer
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    assert load_recipe(run).method == method
    assert {"recipe.yaml", "report.md", "merge.png", "result.json", "history.jsonl"} <= {p.name for p in run.iterdir()}
    m = AutoModelForCausalLM.from_pretrained(run / "model").eval()
    data = prepare_tasks(_tasks(), Llama2cTokenizer(TOK), n_search=16, n_heldout=16, seq_len=128, seed=0)
    np.testing.assert_allclose(task_losses(m, data, "heldout"), res.heldout, rtol=1e-5)
    assert res.apply_s > 0 and res.eval_s > 0


def test_nsga2_front_is_non_dominated(experts, tmp_path):
    from evoforge import pareto
    from evoforge.merge import MergeConfig, merge

    base, models = experts
    res = merge(base, models, _tasks(), MergeConfig(method="ties", search="nsga2", evaluations=24, pop_size=8,
                                                    grid_weights=(1.0,), tokenizer=str(TOK), progress=False,
                                                    run_dir=str(tmp_path / "run")))
    F = np.array([p["search"] for p in res.front])
    assert len(F) >= 1 and (pareto.nondominated_rank(F) == 0).all()
    csv = np.loadtxt(tmp_path / "run" / "front.csv", delimiter=",", skiprows=1, ndmin=2)
    np.testing.assert_allclose(csv[:, 1:3], F, rtol=1e-5)


def test_layer_path_exports_an_ordinary_model(experts, tmp_path):
    from transformers import AutoModelForCausalLM

    from evoforge.compress import load_model
    from evoforge.merge import MergeConfig, merge
    from evoforge.merge.dataflow import PathModel, export_path

    base, models = experts
    srcs = [load_model(p)[0] for p in [base, *models]]
    path = [(1, 0, 1.0), (2, 1, 0.5), (0, 1, 1.5), (1, 2, 1.25), (2, 3, 1.0), (1, 4, 0.75), (2, 4, 1.0)]
    x = torch.randint(3, 512, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = PathModel(srcs, path)(x).logits
        m = export_path(srcs, path)
        m.save_pretrained(tmp_path / "m")
        back = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
        got = back(input_ids=x).logits
    assert back.config.num_hidden_layers == 7
    # equal up to the RMSNorms' epsilon (the scales are folded into the output projections)
    assert (got - want).abs().max() < 2e-3 * want.abs().max()
    res = merge(base, models, _tasks(), MergeConfig(search="layers", evaluations=32, tokenizer=str(TOK),
                                                    progress=False, run_dir=str(tmp_path / "run")))
    assert res.path and np.mean(res.heldout) <= min(np.mean(v) for v in res.baselines["experts"].values()) + 1e-9
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").config.num_hidden_layers == len(res.path)


def test_cli_run_killed_with_kill9_resumes_to_the_uninterrupted_result(experts, tmp_path):
    base, models = experts
    argv = [sys.executable, "-m", "evoforge.cli", "merge", "--base", base, "--models", *models, "--method", "ties",
            "--task", f"shakespeare={TEXTS['shakespeare']}", "--task", f"wiki={TEXTS['wiki']}", "--evaluations", "30",
            "--n-heldout", "4", "--tokenizer", str(TOK), "--seed", "3", "--out"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVOFORGE_NUM_THREADS": "1"}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    start_and_kill9(argv + [str(killed)], killed, history_lines=2, env=env)
    assert not (killed / "recipe.json").exists()
    subprocess.run(argv + [str(killed)], check=True, env=env, capture_output=True)
    subprocess.run(argv + [str(whole)], check=True, env=env, capture_output=True)
    a, b = (json.loads((d / "recipe.json").read_text()) for d in (killed, whole))
    assert a == b
    ha = [json.loads(line)["best_fitness"] for line in (killed / "history.jsonl").read_text().splitlines()]
    hb = [json.loads(line)["best_fitness"] for line in (whole / "history.jsonl").read_text().splitlines()]
    assert ha == hb


def test_bad_task_and_config_are_refused(experts, tmp_path):
    from evoforge.errors import ConfigError
    from evoforge.merge import MergeConfig, Task, merge

    base, models = experts
    with pytest.raises(FileNotFoundError, match="text file not found"):
        Task("x", text=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="tokenizer"):
        merge(base, models, _tasks(), MergeConfig(evaluations=2, progress=False))
    with pytest.raises(ConfigError, match="density_range"):
        merge(base, models, _tasks(), MergeConfig(density_range=(0.0, 1.0)))
    with pytest.raises(ConfigError, match="asynchronous"):
        merge(base, models, _tasks(), MergeConfig(asynchronous=True))
    with pytest.raises(ConfigError, match="task names must differ"):
        merge(base, models, [_tasks()[0], _tasks()[0]], MergeConfig(tokenizer=str(TOK), progress=False))
    with pytest.raises(FileNotFoundError, match="model not found"):
        merge(base, [str(tmp_path / "nope")], _tasks(), MergeConfig(tokenizer=str(TOK)))


def test_process_backend_gives_the_in_process_result(experts, tmp_path):
    from evoforge.merge import MergeConfig, merge

    base, models = experts
    kw = dict(method="dare-ties", evaluations=16, pop_size=8, n_search=2, n_heldout=2, seq_len=64, groups=1,
              grid_weights=(1.0,), grid_densities=(0.5,), tokenizer=str(TOK), progress=False)
    a = merge(base, models, _tasks(), MergeConfig(**kw))
    b = merge(base, models, _tasks(), MergeConfig(backend="process", workers=2, **kw))
    assert a.recipe.to_dict() == b.recipe.to_dict() and a.heldout == b.heldout


def test_kl_and_callable_tasks(experts):
    """A KL task scores KL(expert || model) per token on its windows (against a float64 computation
    here); a callable task is called with the model; both combine with a loss task."""
    import torch.nn.functional as F

    from evoforge.compress import Llama2cTokenizer, load_model
    from evoforge.merge import Task
    from evoforge.merge.tasks import prepare_tasks, task_losses

    base, models = experts
    b, _ = load_model(base)
    e = load_model(models[0])[0]
    calls = []
    tasks = [Task("kl", text=str(TEXTS["shakespeare"]), expert=models[0]),
             Task("fn", fn=lambda m: calls.append(m) or 0.25), Task("wiki", text=str(TEXTS["wiki"]))]
    data = prepare_tasks(tasks, Llama2cTokenizer(TOK), n_search=2, n_heldout=2, seq_len=32, seed=1,
                         load=lambda p: load_model(p)[0])
    got = task_losses(b, data, "heldout")
    x = data[0].heldout
    with torch.no_grad():
        p = F.log_softmax(e(input_ids=x).logits.double(), -1)
        q = F.log_softmax(b(input_ids=x).logits.double(), -1)
    want = float((p.exp() * (p - q)).sum(-1).mean())
    assert got[0] == pytest.approx(want, rel=1e-4) and got[1] == 0.25 and calls == [b]
    assert task_losses(e, data, "heldout")[0] == pytest.approx(0.0, abs=1e-5)


def test_asynchronous_merge_on_a_process_pool(experts, tmp_path):
    """MergeConfig(asynchronous=True): two workers each with their own resident model, CMA-ES told
    every lambda results; the budget is spent exactly and the run directory is written."""
    from evoforge.merge import MergeConfig, merge

    base, models = experts
    res = merge(base, models, _tasks(), MergeConfig(
        method="ties", evaluations=16, pop_size=4, n_search=2, n_heldout=2, seq_len=64, groups=1,
        grid_weights=(1.0,), grid_densities=(0.5,), tokenizer=str(TOK), progress=False, backend="process",
        workers=2, asynchronous=True, run_dir=str(tmp_path / "run")))
    assert res.evaluations == 16 and len(res.history) == 4
    assert (tmp_path / "run" / "recipe.json").is_file() and np.isfinite(res.heldout).all()
