"""Bad input to evoforge.neuro gives a clear error: an unknown environment id (named), an action space
the policy cannot drive, a population too small, and engines fed the wrong evaluator."""

from __future__ import annotations

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

from evoforge.errors import ConfigError  # noqa: E402
from evoforge.neuro import DeepGA, MLPPolicy, OpenAIES, PolicyEvaluator, evolve  # noqa: E402


class DictActions(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Dict({"move": gym.spaces.Discrete(2), "jump": gym.spaces.MultiBinary(1)})

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


class MultiBinaryActions(DictActions):
    action_space = gym.spaces.MultiBinary(3)


def test_unknown_env_id_names_it():
    with pytest.raises(ConfigError, match="'CartPol-v1'.*CartPole"):
        evolve("CartPol-v1", pop=4, generations=1)
    with pytest.raises(ConfigError, match="'NoSuch/Env-v0'"):
        evolve("NoSuch/Env-v0", pop=4, generations=1)
    with pytest.raises(ConfigError, match="empty"):
        evolve("", pop=4, generations=1)


@pytest.mark.parametrize("env_cls,space", [(DictActions, "Dict"), (MultiBinaryActions, "MultiBinary")])
def test_action_space_the_policy_cannot_drive(env_cls, space):
    with pytest.raises(ConfigError, match=f"action space.*{space}.*supported action spaces are Discrete, Box"):
        evolve(env_cls, pop=4, generations=1)


@pytest.mark.parametrize("algo,pop,match", [("ga", 1, "pop_size"), ("es", 1, "pop_size"), ("es", 5, "even"),
                                            ("ga", 0, "pop_size"), ("ga", 2**40, "pop_size")])
def test_population_too_small_or_absurd(algo, pop, match):
    with pytest.raises(ConfigError, match=match):
        evolve("CartPole-v1", algo, pop=pop, generations=1)


def test_bad_hyperparameters():
    with pytest.raises(ConfigError, match="algo"):
        evolve("CartPole-v1", "cma", pop=4, generations=1)
    with pytest.raises(ConfigError, match="sigma"):
        evolve("CartPole-v1", pop=4, generations=1, sigma=-1.0)
    with pytest.raises(ConfigError, match="truncation"):
        evolve("CartPole-v1", pop=4, generations=1, truncation=5)
    with pytest.raises(ConfigError, match="backend"):
        evolve("CartPole-v1", pop=4, generations=1, backend="nope")
    with pytest.raises(TypeError, match="unexpected keyword"):
        evolve("CartPole-v1", pop=4, generations=1, not_a_knob=1)
    policy = MLPPolicy(4, 2)
    with pytest.raises(ConfigError, match="lr"):
        OpenAIES(policy, pop_size=4, lr=0.0)
    with pytest.raises(ConfigError, match="beta1"):
        OpenAIES(policy, pop_size=4, beta1=1.0)
    with pytest.raises(TypeError, match="MLPPolicy"):
        DeepGA("CartPole-v1", pop_size=4)


def test_engine_with_the_wrong_evaluator():
    policy = MLPPolicy(4, 2, (8,))
    ga = DeepGA(policy, pop_size=4, progress=False)
    with pytest.raises(ConfigError, match="PolicyEvaluator"):
        ga.run(lambda X: np.zeros(len(X)), generations=1)
    ev = PolicyEvaluator("CartPole-v1", policy, encoding="es")
    with pytest.raises(ConfigError, match="encoding='seeds'"):
        ga.run(ev, generations=1)
    other = PolicyEvaluator("CartPole-v1", hidden=(16,), encoding="seeds")
    with pytest.raises(ConfigError, match="policy"):
        ga.run(other, generations=1)
    noisy = PolicyEvaluator("CartPole-v1", policy, encoding="seeds", sigma=0.5)
    with pytest.raises(ConfigError, match="sigma"):
        ga.run(noisy, generations=1)
    es = OpenAIES(policy, pop_size=4, progress=False)
    with pytest.raises(ConfigError, match="center"):
        ev.params(np.zeros((2, 2), np.uint64))  # ES genomes before the engine sent the mean
    es.run(ev, generations=1)
    for e in (ev, other, noisy, ga, es):
        e.close()
