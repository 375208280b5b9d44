"""evoforge.neuro.policy: the batched population forward against a per-member float64 forward, the
flat layout, actions for Discrete and Box spaces, and the spaces a policy cannot drive."""

from __future__ import annotations

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
from gymnasium import spaces  # noqa: E402

from evoforge.errors import ConfigError  # noqa: E402
from evoforge.neuro import MLPPolicy  # noqa: E402


def forward64(policy: MLPPolicy, theta: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """One member, float64, layer by layer from the documented layout: obs [N, O] -> outputs [N, A]."""
    x = obs.astype(np.float64)
    sizes = (policy.obs_dim, *policy.hidden, policy.n_outputs)
    off = 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = theta[off:off + a * b].astype(np.float64).reshape(a, b)
        off += a * b
        bias = theta[off:off + b].astype(np.float64)
        off += b
        x = x @ W + bias
        if i < len(sizes) - 2:
            x = np.tanh(x)
    assert off == len(theta)
    return x


@pytest.mark.parametrize("hidden,N", [((64,), 1), ((16, 8), 3), ((), 2)])
def test_batched_forward_equals_per_member_float64(hidden, N):
    rng = np.random.default_rng(0)
    policy = MLPPolicy.from_spaces(spaces.Box(-1, 1, (5,)), spaces.Discrete(3), hidden)
    P = 7
    params = np.stack([policy.init_params(s) for s in range(P)])
    params += rng.normal(0, 0.1, (P, policy.n_params)).astype(np.float32)
    obs = rng.normal(0, 2, (P, N, 5)).astype(np.float32)
    out = policy.forward(params, obs)
    assert out.shape == (P, N, 3) and out.dtype == np.float32
    for p in range(P):
        np.testing.assert_allclose(out[p], forward64(policy, params[p], obs[p]), rtol=1e-4, atol=1e-5)
    acts = policy.act(params, obs)
    assert acts.shape == (P, N) and acts.dtype == np.int64
    ref = np.argmax(out, axis=-1)
    np.testing.assert_array_equal(acts, ref)


def test_continuous_actions_are_squashed_to_the_bounds():
    rng = np.random.default_rng(1)
    box = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32))
    policy = MLPPolicy.from_spaces(spaces.Box(-np.inf, np.inf, (3,)), box, (8,))
    assert not policy.discrete and policy.n_outputs == 2
    params = rng.normal(0, 3, (4, policy.n_params)).astype(np.float32)
    obs = rng.normal(0, 5, (4, 6, 3)).astype(np.float32)
    a = policy.act(params, obs)
    assert a.shape == (4, 6, 2) and a.dtype == np.float32
    assert (a >= box.low).all() and (a <= box.high).all()
    raw = np.stack([forward64(policy, params[p], obs[p]) for p in range(4)])
    want = box.low + (np.tanh(raw) + 1) / 2 * (box.high - box.low)
    np.testing.assert_allclose(a, want, rtol=1e-4, atol=1e-4)
    # unbounded dimensions keep the linear output
    free = MLPPolicy.from_spaces(spaces.Box(-1, 1, (3,)), spaces.Box(-np.inf, np.inf, (2,)), (8,))
    np.testing.assert_allclose(free.act(params, obs), raw, rtol=1e-4, atol=1e-4)


def test_layout_and_init():
    policy = MLPPolicy(obs_dim=4, n_outputs=2, hidden=(64,))
    assert policy.n_params == 4 * 64 + 64 + 64 * 2 + 2
    names = [(n, s, o) for n, s, o in policy.layout()]
    assert names == [("W0", (4, 64), 0), ("b0", (64,), 256), ("W1", (64, 2), 320), ("b1", (2,), 448)]
    scale = policy.init_scale()
    assert (scale[256:320] == 0).all() and np.isclose(scale[0], 0.5) and np.isclose(scale[320], 0.125)
    a, b = policy.init_params(3), policy.init_params(3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and not np.array_equal(a, policy.init_params(4))
    # image-like Box observations are flattened, Discrete ones one-hot
    img = MLPPolicy.from_spaces(spaces.Box(0, 1, (10, 10, 4), bool), spaces.Discrete(3))
    assert img.obs_dim == 400
    onehot = MLPPolicy.from_spaces(spaces.Discrete(5), spaces.Discrete(2, start=-1))
    x = onehot.flatten_obs(np.array([0, 4]), (2,))
    np.testing.assert_array_equal(x, np.eye(5, dtype=np.float32)[[0, 4]])
    acts = onehot.act(np.zeros((1, onehot.n_params), np.float32), x[None])
    assert set(acts.ravel().tolist()) <= {-1, 0}  # start offset applied


@pytest.mark.parametrize("space", [
    spaces.Dict({"a": spaces.Discrete(2)}), spaces.MultiBinary(3), spaces.MultiDiscrete([2, 3]),
    spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))), spaces.Box(0, 5, (2,), np.int64)])
def test_action_spaces_the_policy_cannot_drive(space):
    with pytest.raises(ConfigError, match="action space"):
        MLPPolicy.from_spaces(spaces.Box(-1, 1, (3,)), space)


def test_bad_observation_space_and_arguments():
    with pytest.raises(ConfigError, match="observation space"):
        MLPPolicy.from_spaces(spaces.Dict({"x": spaces.Box(-1, 1, (2,))}), spaces.Discrete(2))
    with pytest.raises(ConfigError, match="hidden"):
        MLPPolicy(4, 2, (0,))
    with pytest.raises(TypeError, match="hidden"):
        MLPPolicy(4, 2, "64")
    policy = MLPPolicy(4, 2)
    with pytest.raises(TypeError, match="float32"):
        policy.forward(np.zeros((2, policy.n_params)), np.zeros((2, 1, 4)))
    with pytest.raises(ValueError, match="observations"):
        policy.forward(np.zeros((2, policy.n_params), np.float32), np.zeros((2, 1, 5)))
