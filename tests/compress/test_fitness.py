"""evoforge.compress.fitness.KLFitness on a tiny Llama built from a config and on stories260k:
KL of the dense genome ~ 0, agreement with an independent float64 computation (full vocabulary
and top K, with and without prefix reuse), minibatch determinism, errors, and a pruning sanity check."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import load_stories
import models
from evoforge import ConfigError
from evoforge.compress import adapt
from evoforge.compress.fitness import KLFitness, LevelProvider
from evoforge.search.engine import Batch

VOCAB = 100


class MagnitudeLevels:
    """In-memory LevelProvider: level k = magnitude pruning at sparsity k / n_levels_minus_one * max_sparsity."""

    def __init__(self, adapter, n_levels=5, max_sparsity=0.8):
        self.dense = [r.weight().detach().clone() for r in adapter.linear_layers()]
        self.n_layers = len(self.dense)
        self._n, self._max = n_levels, max_sparsity
        self._cache = {}

    def n_levels(self, i):
        return self._n

    def sparsity(self, level):
        return self._max * level / (self._n - 1)

    def weight(self, i, level):
        if not 0 <= level < self._n:
            raise IndexError(f"level {level} out of range")
        key = (i, level)
        if key not in self._cache:
            W = self.dense[i].clone()
            k = round(self.sparsity(level) * W.numel())
            if k:
                idx = W.abs().flatten().argsort()[:k]
                W.view(-1)[idx] = 0
            self._cache[key] = W
        return self._cache[key]


def tiny_llama(seed=0):
    return models.tiny_llama(seed, vocab=VOCAB, layers=3, norms="jitter")


@pytest.fixture(scope="module")
def tiny():
    model = tiny_llama()
    a = adapt(model)
    prov = MagnitudeLevels(a)
    g = torch.Generator().manual_seed(3)
    toks = torch.randint(3, VOCAB, (6, 12), generator=g)
    return model, a, prov, toks


def reference_kl(model, adapter, provider, tokens, genome, top_k=None, tail=True):
    """Independent: apply the genome by hand, full forward, float64 log_softmax + kl_div; restores weights.
    Top K: over the teacher's K tokens plus one bin for the rest (tail), or over the K renormalised."""
    layers = adapter.linear_layers()
    saved = [r.weight().clone() for r in layers]
    with torch.no_grad():
        t = model(input_ids=tokens).logits.double().reshape(-1, model.config.vocab_size)
        for r, lvl, i in zip(layers, genome, range(len(layers))):
            r.set_weight(provider.weight(i, int(lvl)))
        s = model(input_ids=tokens).logits.double().reshape(-1, model.config.vocab_size)
        for r, w in zip(layers, saved):
            r.set_weight(w)
    if top_k is not None:
        idx = t.topk(top_k, dim=-1).indices
        if tail:  # K + 1 bins: log-probabilities of the K tokens and of the rest, both models
            def bins(x):
                lx = torch.log_softmax(x, -1)
                rest = lx.scatter(1, idx, -torch.inf).logsumexp(-1, keepdim=True)
                return torch.cat([lx.gather(-1, idx), rest], -1)

            lp, lq = bins(t), bins(s)
            return float(torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="batchmean"))
        t, s = t.gather(-1, idx), s.gather(-1, idx)
    lp, lq = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
    return float(torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="batchmean"))


def test_protocol(tiny):
    _, _a, prov, _ = tiny
    assert isinstance(prov, LevelProvider)


def test_dense_genome_is_zero(tiny):
    _model, a, prov, toks = tiny
    f = KLFitness(a, prov, toks, batch_size=4)
    kl = f.evaluate(np.zeros((2, prov.n_layers), dtype=np.int64), Batch(np.zeros((2, 1))))
    assert kl.shape == (2,) and kl.dtype == np.float64
    assert np.all(np.abs(kl) < 1e-6)
    assert f.stats["blocks_computed"] == 0  # equals the dense stack: only the head runs


@pytest.mark.parametrize(("top_k", "tail", "reuse", "fused"),
                         [(None, True, True, True), (None, True, False, False), (7, True, True, True),
                          (7, True, False, False), (7, False, True, True), (7, False, True, False)])
def test_matches_reference(tiny, top_k, tail, reuse, fused):
    model, a, prov, toks = tiny
    before = [r.weight().clone() for r in a.linear_layers()]
    f = KLFitness(a, prov, toks, top_k=top_k, tail=tail, batch_size=4, prefix_reuse=reuse, fused_kl=fused,
                  head_tokens=5)
    rng = np.random.default_rng(0)
    L = prov.n_layers
    genomes = rng.integers(0, 5, size=(6, L))
    genomes[1, :] = genomes[0, :]  # a duplicate
    genomes[2, : L // 2] = 0  # dense first half: starts later
    genomes[3, :] = genomes[0, :]
    genomes[3, -1] = (genomes[0, -1] + 1) % 5  # differs from genome 0 only in the last layer
    genomes[4, :] = 0
    genomes[4, 9] = 3  # one change in block 1
    got = f.evaluate(genomes, Batch(genomes))
    want = [reference_kl(model, a, prov, toks, gnm, top_k, tail) for gnm in genomes]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
    assert got[0] == got[1] and got[4] > 0
    for r, w in zip(a.linear_layers(), before):  # model left dense
        assert torch.equal(r.weight(), w)
    if reuse:
        assert f.stats["blocks_skipped"] > 0
    else:
        assert f.stats["blocks_skipped"] == 0 and f.stats["blocks_computed"] == 5 * a.n_blocks
    # a second call on the same minibatch reuses the working stack and gives the same numbers
    again = f.evaluate(genomes[::-1], Batch(genomes))
    np.testing.assert_array_equal(again, got[::-1])


def test_prefix_accounting(tiny):
    model, a, prov, toks = tiny
    L, N = prov.n_layers, a.n_blocks  # 21 layers, 3 blocks of 7
    f = KLFitness(a, prov, toks, batch_size=4)
    g = np.zeros((1, L), dtype=np.int64)
    g[0, 9] = 3  # block 1
    f.evaluate(g, None)
    # the dense stack grows only as far as it is used: one block
    assert (f.stats["blocks_computed"], f.stats["blocks_skipped"], f.stats["dense_blocks"]) == (2, 1, 1)
    # with a base (parent): an offspring changed only in block 2 recomputes one block
    base = np.full(L, 2)
    kids = np.stack([base, base, base, base])
    kids[1, 16], kids[1, 17] = 3, 1  # block 2
    kids[2, 3], kids[2, 20] = 3, 1  # blocks 0 and 2
    kids[3, 8] = 4  # block 1
    f.set_base(base)
    f.reset_stats()
    got = f.evaluate(kids, None)
    assert f.stats["dense_blocks"] == N  # the base stack, once
    # base itself: head only; kid 1: 1 block; kid 2: 3 blocks; kid 3: 2 blocks
    assert (f.stats["blocks_computed"], f.stats["blocks_skipped"]) == (6, 6)
    want = [reference_kl(model, a, prov, toks, x) for x in kids]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
    f.reset_stats()  # the same minibatch: the base stack is kept
    np.testing.assert_array_equal(f.evaluate(kids, None), got)
    assert f.stats["dense_blocks"] == 0
    with pytest.raises(ConfigError, match="one genome"):
        f.set_base(kids)
    f.set_base(None)
    np.testing.assert_array_equal(f.evaluate(kids, None), got)


def test_minibatch_determinism(tiny):
    model, a, prov, toks = tiny
    f = KLFitness(a, prov, toks, batch_size=2)
    rng = np.random.default_rng(1)
    g = rng.integers(0, 5, size=(3, prov.n_layers))
    r1 = f.minibatch(24, 11)
    assert len(r1) == 2 and np.array_equal(r1, f.minibatch(24, 11))
    assert len(f.minibatch(25, 11)) == 3 and len(f.minibatch(None, 11)) == 6
    k1 = f.evaluate(g, Batch(g, fidelity=24, seed=11))
    f.evaluate(g, Batch(g, fidelity=24, seed=12))
    k2 = f.evaluate(g, Batch(g, fidelity=24, seed=11))
    np.testing.assert_array_equal(k1, k2)
    # equal to the reference on exactly those rows
    want = [reference_kl(model, a, prov, toks[torch.as_tensor(r1)], x) for x in g]
    np.testing.assert_allclose(k1, want, rtol=2e-4, atol=1e-6)
    # a fresh evaluator gives the same numbers
    k3 = KLFitness(a, prov, toks, batch_size=3).evaluate(g, Batch(g, fidelity=24, seed=11))
    np.testing.assert_allclose(k3, k1, rtol=1e-5, atol=1e-7)
    # seq_len cuts rows into windows
    f2 = KLFitness(a, prov, toks, batch_size=4, seq_len=5)
    assert (f2.n_seq, f2.seq_len) == (12, 5)


def test_errors(tiny):
    _, a, prov, toks = tiny
    f = KLFitness(a, prov, toks)
    L = prov.n_layers
    with pytest.raises(ConfigError, match=r"shape \[B, 21\]"):
        f.evaluate(np.zeros((2, L + 1), dtype=np.int64), Batch(np.zeros((2, 1))))
    bad = np.zeros((2, L), dtype=np.int64)
    bad[1, 4] = 5
    with pytest.raises(ConfigError, match=r"genome 1: level 5 of layer 4 .* out of range \[0, 4\]"):
        f.evaluate(bad, None)
    bad[1, 4] = -1
    with pytest.raises(ConfigError, match="out of range"):
        f.evaluate(bad, None)
    with pytest.raises(ConfigError, match="integers"):
        f.evaluate(np.full((1, L), 0.5), None)
    with pytest.raises(ConfigError, match="fidelity"):
        f.evaluate(np.zeros((1, L), dtype=np.int64), Batch(None, fidelity=0, seed=1))

    short = MagnitudeLevels(a)
    short.n_layers = 3
    with pytest.raises(ConfigError, match="provider has 3 layers"):
        KLFitness(a, short, toks)
    with pytest.raises(ConfigError, match="calib_tokens"):
        KLFitness(a, prov, toks.float())
    with pytest.raises(ConfigError, match=r"\[0, 100\)"):
        KLFitness(a, prov, toks + 200)

    class NoRange:  # provider without n_levels: its own error is named
        def __init__(self):
            self.n_layers, self.inner = L, prov

        def weight(self, i, level):
            return self.inner.weight(i, level)

    g = np.zeros((1, L), dtype=np.int64)
    g[0, 2] = 9
    with pytest.raises(ConfigError, match=r"no level 9 for layer 2"):
        KLFitness(a, NoRange(), toks).evaluate(g, None)


# ---- stories260k --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stories():
    model = load_stories()
    a = adapt(model)
    torch.manual_seed(0)
    with torch.no_grad():  # text sampled from the model itself, so the KL is meaningful
        toks = model.generate(torch.ones((8, 1), dtype=torch.long), do_sample=True, max_new_tokens=63,
                              min_new_tokens=63, pad_token_id=0, top_k=0, top_p=1.0)
    assert toks.shape == (8, 64)
    return model, a, toks


def test_stories260k(stories):
    model, a, toks = stories
    prov = MagnitudeLevels(a, n_levels=5, max_sparsity=0.8)
    f = KLFitness(a, prov, toks, batch_size=4)
    L = prov.n_layers
    uniform = np.stack([np.full(L, k) for k in range(5)])
    kl = f.evaluate(uniform, None)
    assert abs(kl[0]) < 1e-6
    assert np.all(np.diff(kl) > 0), kl  # more pruning, larger KL
    rng = np.random.default_rng(0)
    g = rng.integers(0, 5, size=(2, L))
    want = [reference_kl(model, a, prov, toks, x) for x in g]
    np.testing.assert_allclose(f.evaluate(g, None), want, rtol=2e-4, atol=1e-6)
    topk = KLFitness(a, prov, toks, top_k=32, batch_size=4).evaluate(g, None)
    np.testing.assert_allclose(topk, [reference_kl(model, a, prov, toks, x, 32) for x in g], rtol=2e-4, atol=1e-6)
    # a trained model puts almost all mass in the top K: the unfused path must not lose the tail
    unfused = KLFitness(a, prov, toks, top_k=32, batch_size=4, fused_kl=False).evaluate(g, None)
    np.testing.assert_allclose(unfused, topk, rtol=2e-4, atol=1e-6)


def test_with_one_plus_lambda(tiny):
    """KLFitness as the evaluator of the (1 + lambda) engine, multi-step selection on minibatches."""
    from evoforge.search import OnePlusLambda
    from evoforge.search.operators import LevelSwitch

    _, a, prov, toks = tiny
    f = KLFitness(a, prov, toks, batch_size=4)
    start = np.full(prov.n_layers, 2)
    e = OnePlusLambda(start, LevelSwitch(), lower=0, upper=4, n_offspring=6, stages=[(2, 24), (1, 48)], seed=0,
                      progress=False)
    res = e.run(f, generations=3)
    assert res.best_genome.sum() == start.sum()  # budget kept by the mutation
    assert res.best_fitness <= f.evaluate(start, None)[0] * 1.5
    assert f.stats["candidates"] > 0


def test_teacher_dir_memmap_and_reuse(tiny, tmp_path):
    _model, a, prov, toks = tiny
    g = np.random.default_rng(5).integers(0, 5, size=(3, prov.n_layers))
    mem = KLFitness(a, prov, toks, top_k=7, batch_size=4)
    f1 = KLFitness(a, prov, toks, top_k=7, teacher_dir=tmp_path / "t", batch_size=4)
    assert isinstance(f1.teacher.indices, np.memmap) and (tmp_path / "t" / "tail.npy").is_file()
    assert f1.teacher.nbytes == toks.numel() * 7 * 8 + toks.numel() * (8 + 8 + 4 + 8)  # K x (idx + w) + per token
    want = mem.evaluate(g, None)
    np.testing.assert_array_equal(f1.evaluate(g, None), want)
    stamp = (tmp_path / "t" / "weights.npy").stat().st_mtime_ns
    f2 = KLFitness(a, prov, toks, top_k=7, teacher_dir=tmp_path / "t", batch_size=2)  # reused, not recomputed
    assert (tmp_path / "t" / "weights.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(f2.evaluate(g, None), want)
    # other settings or other tokens: recomputed in place
    f3 = KLFitness(a, prov, toks[:3], teacher_dir=tmp_path / "t", batch_size=4, fused_kl=False)
    assert f3.teacher.indices is None and not (tmp_path / "t" / "tail.npy").exists()
    np.testing.assert_allclose(f3.evaluate(g, None),
                               KLFitness(a, prov, toks[:3], batch_size=4, fused_kl=False).evaluate(g, None),
                               rtol=1e-12)


def test_head_teacher_dir_reuse(tiny, tmp_path):
    """The full-vocabulary teacher of a linear head: 4 H + 8 bytes per token, saved and reused."""
    model, a, prov, toks = tiny
    g = np.random.default_rng(6).integers(0, 5, size=(3, prov.n_layers))
    f1 = KLFitness(a, prov, toks, teacher_dir=tmp_path / "h", batch_size=4)
    assert f1._head is not None and isinstance(f1.teacher.u, np.ndarray)
    assert f1.teacher.u.nbytes + f1.teacher.c.nbytes == toks.numel() * (4 * model.config.hidden_size + 8)
    want = f1.evaluate(g, None)
    stamp = (tmp_path / "h" / "head_u.npy").stat().st_mtime_ns
    f2 = KLFitness(a, prov, toks, teacher_dir=tmp_path / "h", batch_size=2)
    assert isinstance(f2.teacher.u, np.memmap) and (tmp_path / "h" / "head_u.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(f2.evaluate(g, None), want)
    f3 = KLFitness(a, prov, toks[:3], teacher_dir=tmp_path / "h", batch_size=4)  # other tokens: recomputed
    assert f3.teacher.num_tokens == toks[:3].numel()
    np.testing.assert_allclose(f3.evaluate(g, None), [reference_kl(model, a, prov, toks[:3], x) for x in g],
                               rtol=2e-4, atol=1e-6)


def test_bfloat16_compute(stories):
    """compute_dtype="bfloat16" (autocast blocks and head) ranks candidates as float32 does."""
    _model, a, toks = stories
    prov = MagnitudeLevels(a, n_levels=5, max_sparsity=0.8)
    f32 = KLFitness(a, prov, toks, top_k=32, batch_size=4)
    bf16 = KLFitness(a, prov, toks, top_k=32, batch_size=4, compute_dtype="bfloat16")
    assert bf16.compute_dtype == torch.bfloat16 and f32.compute_dtype is None
    L = prov.n_layers
    rng = np.random.default_rng(3)
    # what a search ranks: candidates of one budget (permutations of the same levels)
    base = np.repeat(np.arange(5), L // 5 + 1)[:L]
    g = np.stack([rng.permutation(base) for _ in range(16)])
    a32, a16 = f32.evaluate(g, None), bf16.evaluate(g, None)
    floor = float(bf16.evaluate(np.zeros((1, L), dtype=int), None)[0])  # the dense model in bfloat16
    assert 0 <= floor < 0.01 * a32.min()
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert np.corrcoef(rank(a32), rank(a16))[0, 1] >= 0.95, (a32, a16)
    np.testing.assert_allclose(a16, a32, rtol=0.02, atol=2 * floor)
    with pytest.raises(ConfigError, match="compute_dtype"):
        KLFitness(a, prov, toks, compute_dtype="int8")
