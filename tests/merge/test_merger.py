"""Merger: every method applied in place to a whole model equals a float64 reference of the
published formulas (written here, per tensor, from the task vectors); restore gives the base back
bit for bit; no parameter is reallocated; bad input is refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evoforge.errors import ConfigError
from evoforge.merge import Merger, Recipe
from evoforge.merging import dare_mask
from models import tiny_llama, tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _models(layers: int = 3):
    base = tiny_llama(0, layers=layers)
    experts = []
    for s in (1, 2):
        e = tiny_llama(0, layers=layers)
        g = torch.Generator().manual_seed(s)
        with torch.no_grad():  # fine-tunes of the base: small task vectors
            for p in e.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=g))
        experts.append(e)
    return base, experts


def _group(name: str, n_blocks: int, G: int) -> int:
    parts = name.split(".")
    if "layers" in parts:
        b = int(parts[parts.index("layers") + 1])
        return min(G - 1, b * G // n_blocks)
    return G


def _ref(method: str, base: np.ndarray, thetas: list[np.ndarray], w: np.ndarray, d: np.ndarray, seed: int,
         stream: int) -> np.ndarray:
    """float64: linear = weighted mean of the models; task arithmetic = base + sum w tau; TIES = trim
    each tau to its top-density magnitudes, elect the sign of sum w tau, weighted mean of the
    agreeing entries; DARE = keep each entry with probability density and divide by it."""
    b = base.astype(np.float64)
    taus = [t.astype(np.float64) - b for t in thetas]
    if method == "slerp":
        a, c = thetas[0].astype(np.float64), thetas[1].astype(np.float64)
        t = w[0]
        cos = np.clip(a @ c / (np.linalg.norm(a) * np.linalg.norm(c)), -1, 1)
        om = np.arccos(cos)
        if abs(cos) > 1 - 1e-8:
            return (1 - t) * a + t * c
        return (np.sin((1 - t) * om) * a + np.sin(t * om) * c) / np.sin(om)
    if method == "linear":
        return sum(wk * th.astype(np.float64) for wk, th in zip(w, thetas)) / w.sum()
    if method == "task-arithmetic":
        return b + sum(wk * t for wk, t in zip(w, taus))
    if method in ("ties",):
        kept = []
        for t, dk in zip(taus, d):
            n_keep = int(np.clip(np.floor(dk * t.size + 0.5), 1, t.size))
            thr = np.sort(np.abs(t))[::-1][n_keep - 1]
            kept.append(np.where(np.abs(t) >= thr, t, 0.0))
    else:  # dare, dare-ties
        kept = [np.where(dare_mask(t.size, dk, seed=seed, stream=stream, k=k), t / dk, 0.0)
                for k, (t, dk) in enumerate(zip(taus, d))]
    if method == "dare":
        return b + sum(wk * t for wk, t in zip(w, kept))
    s = np.sign(sum(wk * t for wk, t in zip(w, kept)))
    num = sum(np.where((np.sign(t) == s) & (t != 0), wk * t, 0.0) for wk, t in zip(w, kept))
    den = sum(np.where((np.sign(t) == s) & (t != 0), wk, 0.0) for wk, t in zip(w, kept))
    return b + np.divide(num, den, out=np.zeros_like(num), where=den != 0)


@pytest.mark.parametrize("method", ["linear", "task-arithmetic", "ties", "dare", "dare-ties", "slerp"])
@pytest.mark.parametrize("groups", [1, 2, 3])
def test_apply_equals_the_float64_reference(method, groups):
    base, experts = _models()
    thetas = {n: [dict(e.named_parameters())[n].detach().numpy().ravel().copy() for e in experts]
              for n, _ in base.named_parameters()}
    b0 = {n: p.detach().numpy().ravel().copy() for n, p in base.named_parameters()}
    m = Merger(base, experts, groups=groups)
    rng = np.random.default_rng(groups)
    k = 1 if method == "slerp" else 2
    r = Recipe(method, rng.uniform(0.1, 1.0, (groups + 1, k)), rng.uniform(0.2, 1.0, (groups + 1, k)), seed=7)
    m.apply(r)
    for t, (n, p) in enumerate(base.named_parameters()):
        g = _group(n, 3, groups)
        want = _ref(method, b0[n], thetas[n], r.weights[g], r.densities[g], 7, t)
        got = p.detach().numpy().ravel().astype(np.float64)
        scale = np.abs(b0[n]).max() + 1e-3
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * scale, err_msg=f"{method} {n}")


def test_apply_in_place_then_restore_gives_the_base_bit_for_bit():
    base, experts = _models()
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    ptrs = {n: p.data_ptr() for n, p in base.named_parameters()}
    m = Merger(base, experts, groups=2)
    for method in ("ties", "dare-ties", "slerp"):
        k = 1 if method == "slerp" else 2
        m.apply(Recipe(method, np.full((3, k), 0.6), np.full((3, k), 0.5), seed=3))
        assert any(not torch.equal(p, before[n]) for n, p in base.named_parameters())
        assert {n: p.data_ptr() for n, p in base.named_parameters()} == ptrs  # written into, never reallocated
    m.restore()
    for n, p in base.named_parameters():
        assert torch.equal(p, before[n]), n


def test_same_recipe_same_model_and_tied_weights_once():
    base, experts = _models()
    m = Merger(base, experts)
    r = m.recipe("dare-ties", 0.7, 0.4, seed=11)
    m.apply(r)
    first = [p.detach().clone() for p in base.parameters()]
    m.apply(m.recipe("ties", 0.2, 0.9))
    m.apply(r)
    assert all(torch.equal(a, p) for a, p in zip(first, base.parameters()))
    tied = tiny_llama(0, tie=True)
    mt = Merger(tied, [tiny_llama(1, tie=True)])
    assert len(mt.names) == len(list(tied.parameters()))


def test_bad_inputs_are_refused_clearly():
    base, experts = _models()
    with pytest.raises(ConfigError, match="share one architecture"):
        Merger(base, [tiny_model("gpt2")])
    with pytest.raises(ConfigError, match="shape"):
        Merger(base, [tiny_llama(0, layers=3, intermediate=64)])
    with pytest.raises(ConfigError, match="other parameters"):
        Merger(base, [tiny_llama(0, layers=2)])
    with pytest.raises(ConfigError, match="at least one"):
        Merger(base, [])
    with pytest.raises(ConfigError, match="groups"):
        Merger(base, experts, groups=4)
    with pytest.raises(ConfigError, match=r"densities must lie in \(0, 1\]"):
        Recipe("ties", np.ones((2, 2)), np.full((2, 2), 1.5))
    with pytest.raises(ConfigError, match=r"densities must lie in \(0, 1\]"):
        Recipe("dare", np.ones((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="method must be one of"):
        Recipe("bogus", np.ones((2, 2)), np.ones((2, 2)))
    m = Merger(base, experts, groups=1)
    with pytest.raises(ConfigError, match="needs"):
        m.apply(Recipe("ties", np.ones((3, 2)), np.ones((3, 2))))
    with pytest.raises(ConfigError, match="exactly two"):
        Merger(tiny_llama(0, layers=3), [experts[0]]).apply(Recipe("slerp", np.full((4, 1), 0.5), np.ones((4, 1))))
    half = tiny_llama(0, layers=3).to(torch.float16)
    with pytest.raises(ConfigError, match="float32"):
        Merger(half, [e.to(torch.float16) for e in _models()[1]])


def test_recipe_round_trips_and_writes_mergekit_yaml():
    yaml = pytest.importorskip("yaml")
    r = Recipe("dare-ties", [[0.5, 0.25], [1.0, 0.75]], [[0.3, 0.9], [0.5, 0.5]], seed=4, group_names=["a", "b"])
    back = Recipe.from_dict(r.to_dict())
    assert np.array_equal(back.weights, r.weights) and np.array_equal(back.densities, r.densities)
    y = yaml.safe_load(r.to_mergekit_yaml("BASE", ["A", "B"], [(0, 2), (0, 4)]))
    assert y["merge_method"] == "dare_ties" and y["base_model"] == "BASE"
    src = y["slices"][0]["sources"]
    assert [s["model"] for s in src] == ["BASE", "A", "B"]
    assert src[2]["parameters"] == {"weight": 0.25, "density": 0.9}
