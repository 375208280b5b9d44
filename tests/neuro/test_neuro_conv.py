"""evoforge.neuro.conv_policy: the batched population conv forward against a per-member float64 loop
over the documented layout; MinAtar Breakout through the same path as the MLP; Atari RAM bytes scaled
to [0, 1]; saved policies (MLP and conv) rebuilt bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
from gymnasium import spaces  # noqa: E402

from evoforge.errors import ConfigError  # noqa: E402
from evoforge.neuro import ConvPolicy, MLPPolicy, evolve, load_policy, make_env, save_policy  # noqa: E402


def conv_forward64(policy: ConvPolicy, theta: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """One member in float64 with explicit loops: obs [N, H W C] -> outputs [N, A]."""
    H, W, C = policy.obs_shape
    k, s, F = policy.kernel, policy.stride, policy.channels
    t = theta.astype(np.float64)
    Wc = t[:k * k * C * F].reshape(k, k, C, F)
    bc = t[k * k * C * F:k * k * C * F + F]
    off = k * k * C * F + F
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    outs = []
    for x in obs.astype(np.float64).reshape(-1, H, W, C):
        y = np.zeros((Ho, Wo, F))
        for i in range(Ho):
            for j in range(Wo):
                patch = x[i * s:i * s + k, j * s:j * s + k, :]  # [k, k, C]
                for f in range(F):
                    y[i, j, f] = max(0.0, float((patch * Wc[..., f]).sum()) + bc[f])
        h = y.reshape(-1)
        sizes = policy.sizes
        o = off
        for li, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            Wl = t[o:o + a * b].reshape(a, b)
            o += a * b
            h = h @ Wl + t[o:o + b]
            o += b
            if li < len(sizes) - 2:
                h = np.tanh(h)
        assert o == len(t)
        outs.append(h)
    return np.stack(outs)


@pytest.mark.parametrize("shape,k,s,hidden,N", [((10, 10, 4), 3, 1, (32,), 2), ((7, 9, 2), 3, 2, (8, 8), 1),
                                                ((6, 6, 1), 2, 1, (), 3)])
def test_batched_conv_forward_equals_per_member_float64(shape, k, s, hidden, N):
    rng = np.random.default_rng(0)
    obs_space = spaces.Box(0, 1, shape, np.float32)
    policy = ConvPolicy.from_spaces(obs_space, spaces.Discrete(3), hidden, channels=5, kernel=k, stride=s)
    P = 6
    params = np.stack([policy.init_params(i) for i in range(P)])
    params += rng.normal(0, 0.1, params.shape).astype(np.float32)
    obs = rng.random((P, N, int(np.prod(shape)))).astype(np.float32)
    out = policy.forward(params, obs)
    assert out.shape == (P, N, 3) and out.dtype == np.float32
    for p in range(P):
        np.testing.assert_allclose(out[p], conv_forward64(policy, params[p], obs[p]), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(policy.act(params, obs), np.argmax(out, axis=-1))
    # a member's outputs do not depend on the rest of the population
    np.testing.assert_array_equal(policy.forward(params[2:3], obs[2:3]), out[2:3])


def test_conv_layout_init_and_identity():
    obs_space = spaces.Box(0, 1, (10, 10, 4), bool)
    policy = ConvPolicy.from_spaces(obs_space, spaces.Discrete(3), (64,), channels=16)
    assert policy.obs_dim == 400 and policy.out_hw == (8, 8) and policy.n_features == 1024
    assert policy.n_params == 3 * 3 * 4 * 16 + 16 + 1024 * 64 + 64 + 64 * 3 + 3
    names = [(n, s, o) for n, s, o in policy.layout()]
    assert names[:3] == [("Wc", (3, 3, 4, 16), 0), ("bc", (16,), 576), ("W0", (1024, 64), 592)]
    scale = policy.init_scale()
    assert np.isclose(scale[0], 1 / 6) and (scale[576:592] == 0).all() and np.isclose(scale[592], 1 / 32)
    np.testing.assert_array_equal(policy.init_params(3), policy.init_params(3))
    assert policy != MLPPolicy.from_spaces(obs_space, spaces.Discrete(3), (64,))
    assert policy == ConvPolicy.from_spaces(obs_space, spaces.Discrete(3), (64,), channels=16)
    assert policy != ConvPolicy.from_spaces(obs_space, spaces.Discrete(3), (64,), channels=8)
    assert policy.like(obs_space, spaces.Discrete(3)) == policy
    # a 2-D image is one channel; errors name what is wrong
    assert ConvPolicy.from_spaces(spaces.Box(0, 1, (5, 5)), spaces.Discrete(2), (4,)).obs_shape == (5, 5, 1)
    with pytest.raises(ConfigError, match="not an image"):
        ConvPolicy.from_spaces(spaces.Box(-1, 1, (8,)), spaces.Discrete(2))
    with pytest.raises(ConfigError, match="kernel 7 is larger"):
        ConvPolicy.from_spaces(spaces.Box(0, 1, (5, 5, 1)), spaces.Discrete(2), kernel=7)
    with pytest.raises(ConfigError, match="action space"):
        ConvPolicy.from_spaces(obs_space, spaces.MultiBinary(2))


def test_minatar_breakout_through_the_same_path():
    pytest.importorskip("minatar")
    env = make_env("MinAtar/Breakout-v1")
    policy = ConvPolicy.from_spaces(env.observation_space, env.action_space, (16,), channels=4)
    env.close()
    kw = dict(pop=6, generations=2, seed=1, policy=policy, elite_candidates=2, elite_episodes=2, max_steps=200)
    a = evolve("MinAtar/Breakout-v1", "ga", **kw)
    b = evolve("MinAtar/Breakout-v1", "ga", **kw)
    assert a.generations == 2 and a.env_steps > 0 and a.params.shape == (policy.n_params,)
    np.testing.assert_array_equal(a.params, b.params)
    assert a.act(np.zeros((10, 10, 4), bool)) in (0, 1, 2)
    es = evolve("MinAtar/Breakout-v1", "es", pop=4, generations=1, policy=policy, eval_episodes=1, max_steps=100)
    assert es.params.shape == (policy.n_params,)
    # a conv policy on an environment without images: refused, naming the observation space
    with pytest.raises(ConfigError, match="observation space.*is not an image"):
        evolve("CartPole-v1", "ga", pop=4, generations=1, policy=policy)


def test_ram_observations_are_scaled_to_unit_range():
    ram = spaces.Box(0, 255, (128,), np.uint8)
    policy = MLPPolicy.from_spaces(ram, spaces.Discrete(4), (8,))
    assert policy.obs_scale == pytest.approx(1 / 255) and policy.describe()["obs_scale"] == policy.obs_scale
    x = policy.flatten_obs(np.full(128, 255, np.uint8), (1,))
    np.testing.assert_allclose(x, 1.0, rtol=1e-6)
    assert MLPPolicy.from_spaces(spaces.Box(-1, 1, (3,)), spaces.Discrete(2)).obs_scale == 1.0
    assert MLPPolicy.from_spaces(spaces.Box(0, 1, (3,), np.uint8), spaces.Discrete(2)).obs_scale == 1.0
    assert "obs_scale" not in MLPPolicy(4, 2).describe()  # the identity of older runs is unchanged
    with pytest.raises(ConfigError, match="obs_scale"):
        MLPPolicy(4, 2, obs_scale=0.0)


def test_atari_breakout_from_ram():
    pytest.importorskip("ale_py")
    r = evolve("ALE/Breakout-v5", "ga", pop=4, generations=1, hidden=(8,), env_kwargs={"obs_type": "ram"},
               elite_candidates=1, elite_episodes=1, max_steps=30)
    assert r.policy.obs_dim == 128 and r.policy.obs_scale == pytest.approx(1 / 255) and r.env_steps > 0
    env = make_env("ALE/Breakout-ram-v5")  # the RAM id of older Gym: ALE/Breakout-v5 with obs_type="ram"
    assert env.observation_space.shape == (128,) and env.observation_space.dtype == np.uint8
    env.close()


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_saved_policy_round_trip(tmp_path, kind):
    if kind == "conv":
        policy = ConvPolicy.from_spaces(spaces.Box(0, 1, (6, 6, 2)), spaces.Discrete(3), (8,), channels=3)
    else:
        policy = MLPPolicy.from_spaces(spaces.Box(0, 255, (5,), np.uint8), spaces.Box(-1, 1, (2,)), (8, 4))
    params = policy.init_params(7)
    norm = (np.arange(policy.obs_dim, dtype=np.float32), np.full(policy.obs_dim, 2.0, np.float32), 5.0)
    path = save_policy(tmp_path / "p.npz", policy, params, norm, {"env": "X-v0", "env_kwargs": {"a": 1}})
    s = load_policy(path)
    assert s.policy == policy and type(s.policy) is type(policy)
    np.testing.assert_array_equal(s.params, params)
    np.testing.assert_array_equal(s.obs_norm[0], norm[0])
    assert s.obs_norm[2] == 5.0 and s.meta == {"env": "X-v0", "env_kwargs": {"a": 1}}
    with np.load(path, allow_pickle=False) as z:  # no pickles in the file
        assert set(z.files) >= {"params", "policy", "meta", "obs_mean", "obs_std", "obs_clip"}
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a saved policy"):
        load_policy(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="params"):
        save_policy(tmp_path / "q.npz", policy, params[:-1])
