"""evoforge.programs.update_rules: the Lion-style update-rule task. Training with adamw_program and
lion_program equals torch.optim.AdamW and a hand-written Lion (torch autograd gradients, float64) to
tight tolerance, on both problems, minibatch and full batch, with weight decay; the fitness is the
mean over training tasks of the best validation loss over the lr grid, finite (the penalty) for
diverging or NaN rules; determinism, pickling, probes, random / mutated rules and bad options."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from evoforge.errors import ConfigError
from evoforge.programs import (FEATURES, RULE_OPS, Program, UpdateRuleTask, adamw_program, assemble, lion_program,
                               mutate, op_id, random_program)

torch = pytest.importorskip("torch")

SMALL = dict(steps=25, lrs=(3e-3, 3e-2), n_tasks=2, n_heldout=2, n_train=96, n_valid=64, batch_size=32, hidden=8,
             seed=11)


@pytest.fixture(scope="module")
def task() -> UpdateRuleTask:
    return UpdateRuleTask(weight_decay=0.05, **SMALL)


def _rule(*instructions, n_scalar=8) -> Program:
    code, imm = assemble(instructions)
    return Program({"predict": code}, {"predict": imm}, n_scalar=n_scalar, n_vector=1, n_matrix=0, dim=len(FEATURES))


# ---- an independent reference: torch autograd, torch.optim.AdamW, a hand-written Lion ---------------------


def _torch_train(prob: dict, steps: int, lr: float, wd: float, optimizer: str) -> np.ndarray:
    """The problem trained in torch float64: the model from its kind and shapes, gradients by autograd,
    AdamW by torch.optim.AdamW, Lion by its paper's update (Chen et al. 2023, Program 1). Returns the
    final parameters flattened in the order of prob["shapes"]."""
    F = torch.nn.functional
    init, params, off = prob["init"], [], 0
    for s in prob["shapes"]:
        n = math.prod(s)
        params.append(torch.tensor(init[off:off + n].reshape(s), dtype=torch.float64, requires_grad=True))
        off += n
    x, y = torch.tensor(prob["x_train"], dtype=torch.float64), torch.tensor(prob["y_train"])

    def logits(xb):
        if prob["kind"] == "logreg":
            return xb @ params[0] + params[1]
        return torch.tanh(xb @ params[0] + params[1]) @ params[2] + params[3]

    adamw = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    moms = [torch.zeros_like(p) for p in params]
    beta1, beta2 = 0.9, 0.99
    for t in range(steps):
        rows = slice(None) if prob["batches"] is None else torch.tensor(prob["batches"][t])
        loss = F.cross_entropy(logits(x[rows]), y[rows])
        grads = torch.autograd.grad(loss, params)
        if optimizer == "adamw":
            for p, g in zip(params, grads):
                p.grad = g
            adamw.step()
            continue
        with torch.no_grad():
            for p, g, m in zip(params, grads, moms):
                c = beta1 * m + (1 - beta1) * g
                p.mul_(1 - lr * wd)
                p.add_(torch.sign(c), alpha=-lr)
                m.mul_(beta2).add_(g, alpha=1 - beta2)
    return torch.cat([p.detach().reshape(-1) for p in params]).numpy()


def _numpy_loss(prob: dict, params: np.ndarray, split: str) -> float:
    x, y = prob[f"x_{split}"], prob[f"y_{split}"]
    ws, off = [], 0
    for s in prob["shapes"]:
        ws.append(params[off:off + math.prod(s)].reshape(s))
        off += math.prod(s)
    z = x @ ws[0] + ws[1] if prob["kind"] == "logreg" else np.tanh(x @ ws[0] + ws[1]) @ ws[2] + ws[3]
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


@pytest.mark.parametrize("batch_size", [32, None])
@pytest.mark.parametrize("index,heldout", [(0, False), (1, False), (1, True)])
@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_baseline_rules_equal_torch_adamw_and_lion(name, index, heldout, batch_size):
    wd = 0.05
    task = UpdateRuleTask(weight_decay=wd, **{**SMALL, "batch_size": batch_size})
    prob = task.problem(index, heldout=heldout)
    assert prob["kind"] == ("logreg", "mlp")[index]
    assert (prob["batches"] is None) == (batch_size is None)
    rule = adamw_program() if name == "adamw" else lion_program()
    lr = 0.01 if name == "adamw" else 0.003  # Lion's rate 3x smaller (the paper: 3-10x)
    got = task.train(rule, lr, index=index, heldout=heldout)
    want = _torch_train(prob, task.steps, lr, wd, name)
    assert not got["diverged"] and got["params"].shape == want.shape == prob["init"].shape
    assert np.abs(want - prob["init"]).max() > 10 * lr  # it trained
    np.testing.assert_allclose(got["params"], want, rtol=1e-9, atol=1e-12)
    assert got["valid_loss"] == pytest.approx(_numpy_loss(prob, want, "valid"), rel=1e-9)
    assert got["train_loss"] == pytest.approx(_numpy_loss(prob, want, "train"), rel=1e-9)
    assert got["valid_loss"] < _numpy_loss(prob, prob["init"], "valid")  # it learned


def test_the_features_are_the_documented_buffers(task):
    """A rule that outputs one feature, run for one step from zero momentum, gives the feature's value
    at step 1: g, m9 = g (bias-corrected), m99 = 0 (before this step's g), v999 = g**2, theta, 1/steps."""
    prob = task.problem(0)
    one = UpdateRuleTask(**{**SMALL, "steps": 1})
    lr = 1e-3
    x, y = prob["x_train"][prob["batches"][0]], prob["y_train"][prob["batches"][0]]
    g = np.concatenate([a.reshape(-1) for a in _numpy_grad(prob, prob["init"], x, y)])
    want = {"g": g, "m9": g, "m99": np.zeros_like(g), "v999": g * g, "theta": prob["init"],
            "progress": np.full_like(g, 1.0)}
    assert FEATURES == ("g", "m9", "m99", "v999", "theta", "progress")
    for k, name in enumerate(FEATURES):
        got = one.train(_rule(("v_get", 1, 0, float(k))), lr, index=0)["params"]
        np.testing.assert_allclose((prob["init"] - got) / lr, want[name], rtol=1e-6, atol=1e-12, err_msg=name)


def _numpy_grad(prob, params, x, y):
    """Gradients of the mean cross-entropy by torch autograd (for the feature test)."""
    ps, off = [], 0
    for s in prob["shapes"]:
        ps.append(torch.tensor(params[off:off + math.prod(s)].reshape(s), requires_grad=True))
        off += math.prod(s)
    xt = torch.tensor(x)
    z = xt @ ps[0] + ps[1] if prob["kind"] == "logreg" else torch.tanh(xt @ ps[0] + ps[1]) @ ps[2] + ps[3]
    loss = torch.nn.functional.cross_entropy(z, torch.tensor(y))
    return [g.numpy() for g in torch.autograd.grad(loss, ps)]


# ---- fitness -----------------------------------------------------------------------------------------------


def test_fitness_is_the_mean_of_the_best_rate_per_task(task):
    rules = [adamw_program(), lion_program()]
    fit = task.evaluate(rules)
    assert fit.dtype == np.float64 and fit.shape == (2,)
    for f, rule in zip(fit, rules):
        per_task = [min(task.train(rule, lr, index=i)["valid_loss"] for lr in task.lrs) for i in range(task.n_tasks)]
        assert f == pytest.approx(np.mean(per_task), rel=1e-12)
    # an object array of programs (what the program engines pass) and a batch argument are accepted
    arr = np.empty(2, dtype=object)
    arr[:] = rules
    np.testing.assert_array_equal(task.evaluate(arr, batch=object()), fit)
    assert task.evaluate([]).shape == (0,)


def test_diverging_and_nan_rules_get_the_finite_penalty(task):
    huge = _rule(("s_const", 1, 1e300))  # the parameters leave [-1e6, 1e6] (and overflow)
    nan = _rule(("s_const", 2, -1.0), ("s_log", 1, 2))  # log(-1): NaN updates
    wild = _rule(("v_get", 2, 0, 0.0), ("s_const", 3, 1e6), ("s_mul", 1, 2, 3))  # finite, but the loss explodes
    fit = task.evaluate([huge, nan, wild])
    assert np.all(np.isfinite(fit)) and fit[0] == fit[1] == task.penalty
    assert task.evaluate([adamw_program()])[0] < fit[2] <= task.penalty
    run = task.train(nan, 0.01)
    assert run["diverged"] and np.isnan(run["params"]).all()
    slow = _rule(("s_const", 1, 1e7))  # a uniform shift of every parameter: 25 lr 1e7 past 1e6 for lr 0.03
    assert task.train(slow, 0.003)["diverged"] is False and task.train(slow, 0.03)["diverged"] is True
    # no update at all (and no weight decay): the loss of the initial parameters
    flat = UpdateRuleTask(**SMALL)
    zero = _rule(("s_const", 1, 0.0))
    want = np.mean([_numpy_loss(flat.problem(i), flat.problem(i)["init"], "valid") for i in range(2)])
    assert flat.evaluate([zero])[0] == pytest.approx(want, rel=1e-12)
    penal = UpdateRuleTask(**{**SMALL, "penalty": 0.5})  # every loss is clipped to the penalty
    assert penal.evaluate([zero])[0] == 0.5


def test_deterministic_and_picklable(task):
    rules = [adamw_program(), lion_program(), random_program("function", length=12, n_scalar=8, n_vector=1,
                                                            n_matrix=0, dim=len(FEATURES), seed=3, ops=RULE_OPS)]
    fit = task.evaluate(rules)
    again = UpdateRuleTask(weight_decay=0.05, **SMALL)
    np.testing.assert_array_equal(again.evaluate(rules), fit)
    clone = pickle.loads(pickle.dumps(task))
    np.testing.assert_array_equal(clone.evaluate(rules), fit)
    np.testing.assert_array_equal(clone.probe(rules[1]), task.probe(rules[1]))
    assert clone.namespace == task.namespace and len(pickle.dumps(task)) < 200_000
    other = UpdateRuleTask(weight_decay=0.05, **{**SMALL, "seed": 12})
    assert other.evaluate(rules[:1])[0] != fit[0] and other.namespace != task.namespace
    assert other.problem(0)["classes"].tolist() != task.problem(0)["classes"].tolist() or \
        not np.array_equal(other.problem(0)["init"], task.problem(0)["init"])


def test_probe_is_a_fixed_functional_fingerprint(task):
    a, lion = adamw_program(), lion_program()
    pa, pl = task.probe(a), task.probe(lion)
    assert pa.shape == (64,) and pa.dtype == np.float64 and np.isfinite(pa).all()
    assert not np.array_equal(pa, pl) and set(np.unique(pl)) <= {-1.0, 0.0, 1.0}
    # the same function written differently (dead code, another immediate for the same element)
    code, imm = a.components["predict"], a.imm["predict"].copy()
    imm[0] += len(FEATURES)  # v_get reads floor(|imm|) mod dim: the same element
    twin = Program({"predict": np.vstack([code, [[1, 5, 2, 3]]])}, {"predict": np.append(imm, 0.0)},
                   **a.registers)
    np.testing.assert_array_equal(task.probe(twin), pa)
    np.testing.assert_array_equal(UpdateRuleTask(**{**SMALL, "seed": 99}).probe(a), pa)  # the rows are fixed


def test_random_and_mutated_rules_run(task):
    """The task's attributes drive random_program and mutate; what they make evaluates to a finite fitness."""
    assert (task.kind, task.objectives, task.dim) == ("function", ("loss",), len(FEATURES))
    regs = dict(n_scalar=task.n_scalar, n_vector=task.n_vector, n_matrix=task.n_matrix, dim=task.dim)
    rules = [random_program(task.kind, length=10, seed=s, ops=task.ops, **regs) for s in range(6)]
    parent = task.initial()
    rules += [mutate(parent, seed=1, generation=0, individual=i, ops=task.ops) for i in range(6)]
    assert "v_get" in RULE_OPS
    v_get = op_id("v_get")
    idx = np.concatenate([r.imm["predict"][r.components["predict"][:, 0] == v_get] for r in rules])
    assert len(idx) and np.all((idx == np.floor(idx)) & (idx >= 0) & (idx < len(FEATURES)))
    fit = task.evaluate(rules)
    assert fit.shape == (12,) and np.isfinite(fit).all() and (fit <= task.penalty).all()


def test_report_compares_with_adamw_and_lion(task):
    r = task.report(adamw_program())
    assert [t["name"] for t in r["tasks"]] == ["heldout0:logreg", "heldout1:mlp"]
    for t in r["tasks"]:
        assert t["rule"] == t["adamw"] and t["rule_lr"] == t["adamw_lr"]  # the rule is AdamW
        assert t["lion_lr"] in task.lrs and np.isfinite(t["lion"])
    assert r["rule"] == r["adamw"] and r["fitness"] == pytest.approx(task.evaluate([adamw_program()])[0])
    assert r["adamw"] == pytest.approx(np.mean([t["adamw"] for t in r["tasks"]]))
    r2 = task.report(lion_program())
    assert r2["rule"] == r2["lion"] and r2["adamw"] == r["adamw"]


def test_problems_are_disjoint_splits_of_digits(task):
    for i, heldout in ((0, False), (1, False), (0, True)):
        p = task.problem(i, heldout=heldout)
        assert len(p["classes"]) == 5 and p["x_train"].shape == (96, 64) and p["x_valid"].shape == (64, 64)
        assert p["x_train"].min() >= 0 and p["x_train"].max() <= 1
        assert set(np.unique(p["y_train"])) <= set(range(5))
        train_rows = {r.tobytes() for r in p["x_train"]}
        assert sum(r.tobytes() in train_rows for r in p["x_valid"]) <= 2  # disjoint (a few digits repeat)
        assert p["init"].shape == (sum(math.prod(s) for s in p["shapes"]),)
        assert p["batches"].shape == (task.steps, 32) and p["batches"].max() < 96
    assert task.problem(0)["name"] == "train0:logreg" and task.problem(0, heldout=True)["name"] == "heldout0:logreg"


def test_bad_options_and_arguments(task):
    for kw, err, match in [
        (dict(steps=0), ConfigError, "steps"), (dict(steps=2**62), ConfigError, "steps"),
        (dict(steps=2.5), TypeError, "steps"), (dict(lrs=()), ConfigError, "lrs"),
        (dict(lrs=(0.1, -1.0)), ConfigError, r"lrs\[1\]"), (dict(lrs=(math.nan,)), ConfigError, "lrs"),
        (dict(lrs=0.1), TypeError, "lrs"), (dict(lrs=("a",)), TypeError, "lrs"),
        (dict(weight_decay=-0.1), ConfigError, "weight_decay"), (dict(problems=("cnn",)), ConfigError, "cnn"),
        (dict(problems="mlp"), TypeError, "problems"), (dict(problems=()), ConfigError, "problems"),
        (dict(n_tasks=0), ConfigError, "n_tasks"), (dict(n_classes=11), ConfigError, "n_classes"),
        (dict(n_classes=2, n_train=300, n_valid=200), ConfigError, "n_train \\+ n_valid"),
        (dict(batch_size=0), ConfigError, "batch_size"), (dict(hidden=True), TypeError, "hidden"),
        (dict(penalty=math.inf), ConfigError, "penalty"), (dict(seed=-1), ConfigError, "seed"),
        (dict(n_scalar=7), ConfigError, "n_scalar"), (dict(n_vector=0), ConfigError, "n_vector"),
        (dict(ops=("s_fft",)), ValueError, "unknown op"), (dict(ops="s_add"), TypeError, "ops"),
    ]:
        with pytest.raises(err, match=match):
            UpdateRuleTask(**{**SMALL, **kw})
    learner = random_program("learner", length=2, n_scalar=8, n_vector=1, n_matrix=0, dim=6, seed=0)
    wrong_dim = random_program("function", length=2, n_scalar=8, n_vector=1, n_matrix=0, dim=3, seed=0)
    with pytest.raises(TypeError, match="sequence of Program"):
        task.evaluate(adamw_program())
    with pytest.raises(TypeError, match=r"programs\[1\] must be a Program"):
        task.evaluate([adamw_program(), "s1 = g"])
    with pytest.raises(ValueError, match="function program"):
        task.evaluate([learner])
    with pytest.raises(ValueError, match="dim 6"):
        task.probe(wrong_dim)
    with pytest.raises(ConfigError, match="lr"):
        task.train(adamw_program(), 0.0)
    with pytest.raises(ConfigError, match="index"):
        task.train(adamw_program(), 0.01, index=2)
    with pytest.raises(TypeError, match="heldout"):
        task.problem(0, heldout=1)
    with pytest.raises(ConfigError, match="eps"):
        adamw_program(eps=0.0)
    with pytest.raises(ConfigError, match="beta1"):
        lion_program(beta1=1.5)
    with pytest.raises(ConfigError, match="n_scalar"):
        lion_program(n_scalar=4)
