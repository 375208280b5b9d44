"""evoforge.neuro.rollout, evaluator and obs_norm: lockstep episodes, common reset seeds, purity of a
member's fitness, the step limit, observation statistics, environments by id, factory and object."""

from __future__ import annotations

import functools

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

from evoforge.errors import ConfigError  # noqa: E402
from evoforge.neuro import (MLPPolicy, ObsNorm, PolicyEvaluator, derive_seed, encode, episode_seeds,  # noqa: E402
                            evaluate_policy, make_env, rollout)
from evoforge.search.protocol import Batch  # noqa: E402


def _pop(policy, n, seed=0):
    return np.stack([policy.init_params(derive_seed(seed, "init", i)) for i in range(n)])


def test_lockstep_rollout_matches_one_episode_at_a_time():
    envs = [make_env("CartPole-v1") for _ in range(6)]
    policy = MLPPolicy.from_spaces(envs[0].observation_space, envs[0].action_space, (16,))
    params = _pop(policy, 3)
    seeds = episode_seeds(5, 2)
    res = rollout(policy, envs, params, seeds, max_steps=500)
    assert res.returns.shape == (3, 2) and res.steps.shape == (3,)
    # the same episodes, one member and one episode at a time, acting as the policy does
    env = make_env("CartPole-v1")
    for p in range(3):
        for e, s in enumerate(seeds):
            obs, _ = env.reset(seed=s)
            total, done, t = 0.0, False, 0
            while not done and t < 500:
                a = int(policy.act(params[p:p + 1], obs[None, None].astype(np.float32))[0, 0])
                obs, r, term, trunc, _ = env.step(a)
                total += r
                done, t = term or trunc, t + 1
            assert res.returns[p, e] == total
    assert res.steps.sum() == res.returns.sum()  # CartPole pays 1 per step


def test_fitness_is_a_pure_function_of_the_genome_and_context():
    ev = PolicyEvaluator("CartPole-v1", hidden=(8,), encoding="seeds", sigma=0.1)
    lists = [[derive_seed(0, "init", i)] for i in range(5)]
    g = encode(lists)
    full = ev.evaluate(g, Batch(g, fidelity=3, seed=11))
    part = ev.evaluate(g[[4, 1]], Batch(g[[4, 1]], fidelity=3, seed=11))
    np.testing.assert_array_equal(part, full[[4, 1]])
    # common random numbers: two copies of one genome score the same
    twin = encode([lists[2], lists[2]])
    f = ev.evaluate(twin, Batch(twin, fidelity=3, seed=11))
    assert f[0] == f[1] == full[2]
    # another context (episode seeds) gives other episodes
    other = ev.evaluate(g, Batch(g, fidelity=3, seed=12))
    assert not np.array_equal(other, full)
    ev.close()


def test_step_limit_and_continuous_env():
    ev = PolicyEvaluator("Pendulum-v1", hidden=(8,), encoding="params", max_steps=17, episodes=2)
    assert not ev.policy.discrete and ev.max_steps == 17
    params = _pop(ev.policy, 4)
    ev.set_context({"report": True})
    rows = ev.evaluate(params)
    assert rows.shape == (4, 2)
    np.testing.assert_array_equal(rows[:, 1], 2 * 17)  # Pendulum never terminates: the limit ends it
    assert (rows[:, 0] > 0).all()  # Pendulum's rewards are negative: fitness (minus the return) positive
    ev.close()


def test_obs_statistics_and_shared_normalisation():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3, 2, (n, 4)) for n in (50, 7, 120)]
    norm = ObsNorm(4)
    for c in chunks:
        ref = norm.mean.astype(np.float64)
        d = c - ref
        norm.update([len(c)], d.sum(0)[None], (d * d).sum(0)[None])
        norm.freeze()
    allx = np.concatenate(chunks)
    np.testing.assert_allclose(norm.mean, allx.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.std, allx.std(0), rtol=1e-5)
    # the rollout's per-member statistics are those of the observations the policy acted on
    envs = [make_env("CartPole-v1") for _ in range(2)]
    policy = MLPPolicy.from_spaces(envs[0].observation_space, envs[0].action_space, (4,))
    params = _pop(policy, 2)
    mean, std = np.full(4, 0.1, np.float32), np.full(4, 2.0, np.float32)
    res = rollout(policy, envs, params, episode_seeds(0, 1), max_steps=500, obs_norm=(mean, std, 5.0), stats=True)
    for p in range(2):
        env = make_env("CartPole-v1")
        obs, _ = env.reset(seed=episode_seeds(0, 1)[0])
        seen, done = [], False
        while not done:
            seen.append(obs.astype(np.float64))
            x = np.clip((obs - mean) / std, -5, 5)[None, None].astype(np.float32)
            obs, _, term, trunc, _ = env.step(int(policy.act(params[p:p + 1], x)[0, 0]))
            done = term or trunc
        d = np.array(seen) - mean.astype(np.float64)
        assert res.obs_count[p] == len(seen)
        np.testing.assert_allclose(res.obs_sum[p], d.sum(0), rtol=1e-12)
        np.testing.assert_allclose(res.obs_sumsq[p], (d * d).sum(0), rtol=1e-12)


class Corridor(gym.Env):
    """A tiny deterministic environment: walk right (action 1) to the end of a corridor."""

    def __init__(self, length=5):
        self.length = length
        self.observation_space = gym.spaces.Box(0, length, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([self.pos], np.float32), {}

    def step(self, action):
        self.pos += 1 if action == 1 else 0
        done = self.pos >= self.length
        return np.array([self.pos], np.float32), (1.0 if done else -0.1), done, False, {}


def test_factory_and_env_object_and_evaluate_policy():
    for env in (Corridor, functools.partial(Corridor, 5), Corridor(5)):
        ev = PolicyEvaluator(env, hidden=(), encoding="params", max_steps=20)
        right = np.zeros((1, ev.policy.n_params), np.float32)
        right[0, -1] = 1.0  # bias of action 1
        np.testing.assert_allclose(ev.evaluate(right), [-(1.0 - 0.4)])
        returns = evaluate_policy(env, ev.policy, right[0], episodes=3, max_steps=20)
        np.testing.assert_allclose(returns, 0.6)
        ev.close()


def test_unknown_env_id_and_bad_envs():
    with pytest.raises(ConfigError, match="NoSuchEnv-v0"):
        make_env("NoSuchEnv-v0")
    with pytest.raises(ConfigError, match="CartPole-v99"):
        PolicyEvaluator("CartPole-v99")
    with pytest.raises(ConfigError, match="vector"):
        make_env(gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")]))
    with pytest.raises(TypeError, match="gymnasium.Env"):
        make_env(lambda: 3)
    with pytest.raises(TypeError, match="id"):
        make_env(3)
    with pytest.raises(ConfigError, match="policy"):
        PolicyEvaluator("CartPole-v1", MLPPolicy(obs_dim=5, n_outputs=2))
