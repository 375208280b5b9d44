"""Deep GA and OpenAI-ES on CartPole-v1: solved within a small budget (mean return >= 475 over 20
fresh episodes), seed-deterministic, the same on a process pool as in process (whose workers get
seed lists, not weights), and the engines' bookkeeping (cache keys, ES ranks and noise)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from evoforge.neuro import (DeepGA, MLPPolicy, OpenAIES, PolicyEvaluator, centered_ranks, derive_seed,  # noqa: E402
                            evolve, payload_bytes)
from evoforge.variation.deepga import noise  # noqa: E402

GA = dict(pop=16, hidden=(64,), sigma=0.05, truncation=4, elite_candidates=3, elite_episodes=20, target_return=500,
          generations=30, seed=4)


def _curve(r):
    return [{k: v for k, v in c.items() if k != "seconds"} for c in r.curve]


def test_deep_ga_solves_cartpole_deterministically():
    a = evolve("CartPole-v1", "ga", **GA)
    b = evolve("CartPole-v1", "ga", **GA)
    assert a.stopped == "target" and 1 < a.generations <= 30  # evolution, not a lucky init
    assert a.best_return == 500
    np.testing.assert_array_equal(a.params, b.params)
    assert _curve(a) == _curve(b) and a.env_steps == b.env_steps
    returns = a.evaluate(episodes=20)
    assert returns.mean() >= 475, returns
    # the best policy acts on single observations as the environment gives them
    assert a.act(np.zeros(4, np.float32)) in (0, 1)
    # the elite's genome is one seed per generation of ancestry
    c = evolve("CartPole-v1", "ga", **{**GA, "seed": 5, "target_return": None, "generations": 3})
    assert len(c.curve) == 3 and [r["genome_seeds"] for r in c.curve][-1] <= 3


def test_openai_es_solves_cartpole_deterministically():
    kw = dict(pop=32, generations=40, seed=0, lr=0.05, eval_episodes=10, target_return=500)
    a = evolve("CartPole-v1", "es", **kw)
    b = evolve("CartPole-v1", "es", **kw)
    assert a.stopped == "target" and a.generations > 1
    np.testing.assert_array_equal(a.params, b.params)
    assert _curve(a) == _curve(b)
    assert a.obs_norm is not None and (a.obs_norm[1] > 0).all()
    assert a.evaluate(episodes=20).mean() >= 475


def test_process_backend_gives_the_in_process_result():
    kw = {**GA, "target_return": None, "generations": 3}
    a = evolve("CartPole-v1", "ga", **kw)
    b = evolve("CartPole-v1", "ga", backend="process", backend_options={"workers": 2}, **kw)
    np.testing.assert_array_equal(a.params, b.params)
    assert _curve(a) == _curve(b)


def test_genomes_sent_are_seed_lists_and_es_pairs():
    policy = MLPPolicy(obs_dim=4, n_outputs=2, hidden=(64,))
    ga = DeepGA(policy, pop_size=8, truncation=2, elite_candidates=2, elite_episodes=2, progress=False)
    batch = ga.ask()
    assert batch.genomes.dtype == np.uint64 and batch.genomes.shape == (8, 2) and (batch.genomes[:, 0] == 1).all()
    rep = payload_bytes(batch.genomes, policy.n_params)
    assert rep["param_bytes"] == 8 * policy.n_params * 4 and rep["ratio"] > 100
    ev = PolicyEvaluator("CartPole-v1", policy, encoding="seeds", sigma=ga.sigma)
    ga.run(ev, generations=2)
    nxt = ga.ask()  # generation 2: elite (2 seeds or fewer) and children of 3 seeds
    assert nxt.genomes.shape[1] == 4 and (nxt.genomes[1:, 0] == 3).all()
    # the cache key ignores the padding: the same seed list in a wider batch is the same candidate
    wide = np.zeros(6, np.uint64)
    wide[:3] = nxt.genomes[0, :3]
    assert ga.key(nxt.genomes[0], nxt) == ga.key(wide, nxt)
    ev.close()
    ga.close()

    es = OpenAIES(policy, pop_size=6, progress=False)
    b = es.ask()
    assert b.genomes.shape == (6, 2)
    np.testing.assert_array_equal(b.genomes[0::2, 0], b.genomes[1::2, 0])
    np.testing.assert_array_equal(b.genomes[:, 1], [0, 1, 0, 1, 0, 1])
    assert int(b.genomes[2, 0]) == derive_seed(0, "es-noise", 0, 1)
    ev = PolicyEvaluator("CartPole-v1", policy, encoding="es", sigma=es.sigma)
    es.push_context(ev)
    P = ev.params(b.genomes)
    eps = noise(int(b.genomes[0, 0]), policy.n_params)
    np.testing.assert_array_equal(P[0], es.mean + np.float32(es.sigma) * eps)
    np.testing.assert_array_equal(P[1], es.mean + np.float32(-es.sigma) * eps)
    ev.close()
    es.close()


def test_centered_ranks():
    np.testing.assert_allclose(centered_ranks([3.0, -1.0, 10.0, 0.0]), [1 / 6, -0.5, 0.5, -1 / 6])
    np.testing.assert_allclose(centered_ranks([1.0, 1.0]), [-0.5, 0.5])  # ties by position
