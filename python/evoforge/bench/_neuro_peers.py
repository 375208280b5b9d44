"""The peers of ``bench neuro`` part (a): a population's policies stepped on a Gymnasium environment
by EvoTorch (``GymNE`` and ``VecGymNE``) and by an evosax loop (OpenES's ask / tell, the policies'
forward in JAX), each given the very same policies as evoforge (our flat parameters converted to
their layout), so that the episodes' lengths follow the same distribution.

Each runner returns ``{"steps", "seconds", "steps_per_s", "episodes"}`` for one evaluation of the
population (one episode per member), or ``{"error": "..."}`` when the peer does not install or run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["evotorch_rate", "evosax_rate", "torch_layout"]


def torch_layout(policy: Any, params: np.ndarray) -> np.ndarray:
    """Our MLP parameters [P, D] (W [in, out], b per layer) in torch's ``Linear`` order (weight
    [out, in], bias), as EvoTorch fills a network from a flat vector."""
    cols = []
    for name, shape, off in policy.layout():
        block = params[:, off:off + int(np.prod(shape))]
        if name.startswith("W"):
            a, b = shape
            block = block.reshape(-1, a, b).transpose(0, 2, 1).reshape(len(params), a * b)
        cols.append(block)
    return np.ascontiguousarray(np.concatenate(cols, axis=1), dtype=np.float32)


def evotorch_rate(env_id: str, policy: Any, params: np.ndarray, *, vectorised: bool = False) -> dict:
    """EvoTorch's ``GymNE`` (one episode after another, a torch forward per step and member) or
    ``VecGymNE`` (Gymnasium's vector environment, the population's forward batched) on ``params``."""
    try:
        import logging

        import torch
        from evotorch.neuroevolution import GymNE, VecGymNE
    except Exception as e:  # noqa: BLE001 -- any failure to import is reported, not raised
        return {"error": f"evotorch not usable: {type(e).__name__}: {e}"}
    logging.getLogger("evotorch").setLevel(logging.WARNING)
    hidden = policy.hidden[0]
    net = f"Linear(obs_length, {hidden}) >> Tanh() >> Linear({hidden}, act_length)"
    try:
        if vectorised:
            prob = VecGymNE(env=env_id, network=net, num_episodes=1, device="cpu")
        else:
            prob = GymNE(env=env_id, network=net, num_episodes=1)
        if prob.solution_length != policy.n_params:
            return {"error": f"evotorch's network has {prob.solution_length} parameters, ours {policy.n_params}"}
        batch = prob.generate_batch(len(params))
        batch.access_values()[:] = torch.from_numpy(torch_layout(policy, params))
        warm = prob.generate_batch(2)
        prob.evaluate(warm)  # environments made, first calls compiled
        s0 = int(prob.status.get("total_interaction_count", 0))
        t0 = time.perf_counter()
        prob.evaluate(batch)
        dt = time.perf_counter() - t0
        steps = int(prob.status["total_interaction_count"]) - s0
    except Exception as e:  # noqa: BLE001
        return {"error": f"evotorch {'VecGymNE' if vectorised else 'GymNE'} failed: {type(e).__name__}: {e}"}
    return {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "episodes": len(params)}


def _jax_forward(policy: Any):
    import jax
    import jax.numpy as jnp

    layout = policy.layout()

    def forward(theta, x):  # one member: theta [D], x [O] -> logits [A]
        h = x
        n = len(layout) // 2
        for i in range(n):
            (_, (a, b), ow), (_, _, ob) = layout[2 * i], layout[2 * i + 1]
            h = h @ jax.lax.dynamic_slice(theta, (ow,), (a * b,)).reshape(a, b) + theta[ob:ob + b]
            if i < n - 1:
                h = jnp.tanh(h)
        return jnp.argmax(h, axis=-1)

    return forward


def evosax_rate(env_id: str, policy: Any, params: np.ndarray, *, lockstep: bool = True, max_members: int = 256,
                seed: int = 0) -> dict:
    """evosax's OpenES (ask, tell) with Gymnasium environments: ``lockstep`` steps one environment
    per member together and runs the population's forward as one jitted ``vmap``; otherwise each
    member plays its episode alone with a jitted forward per step (at most ``max_members`` of
    them, the rate extrapolates)."""
    try:
        import jax
        import jax.numpy as jnp
        from evosax.algorithms import Open_ES
    except Exception as e:  # noqa: BLE001
        return {"error": f"evosax / jax not usable: {type(e).__name__}: {e}"}
    from evoforge.neuro import make_env

    try:
        P, D = params.shape
        es = Open_ES(population_size=P, solution=jnp.zeros(D))
        key = jax.random.PRNGKey(seed)
        es_params = es.default_params
        state = es.init(key, jnp.zeros(D), es_params)
        one = _jax_forward(policy)
        pop_fn = jax.jit(jax.vmap(one))
        one_fn = jax.jit(one)
        envs = [make_env(env_id) for _ in range(P if lockstep else 1)]
        x0 = np.zeros((P, policy.obs_dim), np.float32)
        pop_fn(jnp.asarray(params), x0).block_until_ready()  # compile before timing: the forwards,
        one_fn(jnp.asarray(params[0]), x0[0]).block_until_ready()
        _, warm = es.ask(key, state, es_params)  # ... and ask / tell (jitted on their first call)
        es.tell(key, jnp.asarray(params), jnp.zeros(P, jnp.float32), warm, es_params)
        t0 = time.perf_counter()
        _, state = es.ask(key, state, es_params)  # the framework's step, then our policies
        theta = jnp.asarray(params)
        returns = np.zeros(P)
        steps = 0
        if lockstep:
            obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
            live = np.ones(P, bool)
            while live.any():
                acts = np.asarray(pop_fn(theta, obs))
                for i in np.flatnonzero(live):
                    o, r, term, trunc, _ = envs[i].step(int(acts[i]))
                    obs[i], returns[i] = o, returns[i] + r
                    steps += 1
                    if term or trunc:
                        live[i] = False
            members = P
        else:
            members = min(P, max_members)
            env = envs[0]
            for i in range(members):
                o, _ = env.reset(seed=seed + i)
                done = False
                while not done:
                    a = int(one_fn(theta[i], jnp.asarray(o, jnp.float32)))
                    o, r, term, trunc, _ = env.step(a)
                    returns[i] += r
                    steps += 1
                    done = term or trunc
        es.tell(key, theta, jnp.asarray(-returns, jnp.float32), state, es_params)
        dt = time.perf_counter() - t0
        for e in envs:
            e.close()
    except Exception as e:  # noqa: BLE001
        return {"error": f"evosax loop failed: {type(e).__name__}: {e}"}
    return {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "episodes": members}
