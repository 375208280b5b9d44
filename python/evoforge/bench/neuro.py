"""Neuroevolution benchmark (issue 20): environment steps per second against EvoTorch and evosax,
LunarLander solved, MinAtar and Atari-RAM Breakout curves, seed-list bytes, Ray speed-up.

    evoforge bench neuro --parts a,d,e          # or: python -m evoforge.bench.neuro --parts ...

Parts:

a. Steps per second of a population's policies: P = 256 members of an MLP with 64 tanh units, one
   episode each, on CartPole-v1 and LunarLander-v3; evoforge (lockstep rollout, numpy batched
   forward), EvoTorch ``GymNE`` and ``VecGymNE``, and evosax's OpenES with a Gymnasium loop (lockstep,
   a jitted ``vmap`` forward; and per member, a jitted forward per step), all given the SAME
   policies (our parameters converted to their layout), in this process, one after another. A peer
   that does not install or run is reported as such.
b. LunarLander-v3 solved: mean return >= 200 over 100 fresh episodes of the best policy, checked
   whenever the search's best passes 200; the wall time to get there, within ``--minutes``.
c. MinAtar Breakout (conv policy) and Atari Breakout from RAM (``ALE/Breakout-v5``, ``obs_type="ram"``):
   learning curves within ``--curve-seconds`` each, against random play (uniform actions, the same
   episode limit), drawn to ``bench/results/neuro_*.png``.
d. Seed-list genome bytes against the float32 parameters they encode, for the policies above and
   a larger one, by ancestry length; and what runs of part b / c sent (genomes against weights).
e. LunarLander evaluation of P genomes on Ray with 2 workers against 1 (the workers receive seed
   lists and rebuild the parameters), with the CPU share the workers got.

Targets (issue 20): (a) at least 2x the faster peer; (b) under 15 minutes on 2 cores; (d) genomes
at least 1000x smaller; (e) 2 workers at least 1.7x one on an idle machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness
from evoforge.bench._neuro_peers import evosax_rate, evotorch_rate
from evoforge.bench.distributed import cpu_seconds, load

TARGETS = {"a": 2.0, "b_minutes": 15.0, "d": 1000.0, "e": 1.7}


def _policy(env_id: str, hidden=(64,), **kw):
    from evoforge.neuro import ConvPolicy, MLPPolicy, make_env

    env = make_env(env_id, kw or None)
    try:
        if len(env.observation_space.shape) == 3:
            return ConvPolicy.from_spaces(env.observation_space, env.action_space, hidden)
        return MLPPolicy.from_spaces(env.observation_space, env.action_space, hidden)
    finally:
        env.close()


def _atari_pixels_policy():
    """A policy of Deep GA's size (about 4 M parameters) on Atari's 210 x 160 RGB frames."""
    from evoforge.neuro import ConvPolicy, make_env

    env = make_env("ALE/Breakout-v5")
    try:
        return ConvPolicy.from_spaces(env.observation_space, env.action_space, (128,), channels=16, kernel=8,
                                      stride=4)
    finally:
        env.close()


def _population(policy, P: int, seed: int = 0) -> np.ndarray:
    from evoforge.neuro import derive_seed

    return np.stack([policy.init_params(derive_seed(seed, "init", i)) for i in range(P)])


# ---- (a) steps per second ------------------------------------------------------------------------


def _evoforge_rate(env_id: str, policy, params: np.ndarray, seed: int) -> dict:
    from evoforge.neuro import PolicyEvaluator
    from evoforge.search.protocol import Batch

    ev = PolicyEvaluator(env_id, policy, encoding="params")
    try:
        ev.evaluate(params[:4], Batch(params[:4], fidelity=1, seed=seed + 99))  # environments made
        s0, t0 = ev.env_steps, time.perf_counter()
        ev.evaluate(params, Batch(params, fidelity=1, seed=seed))
        dt = time.perf_counter() - t0
        steps = ev.env_steps - s0
    finally:
        ev.close()
    return {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "episodes": len(params)}


def part_a(args) -> dict:
    out = {}
    for env_id in ("CartPole-v1", "LunarLander-v3"):
        policy = _policy(env_id)
        params = _population(policy, args.pop)
        rows = {"evoforge (1st)": _evoforge_rate(env_id, policy, params, 1)}
        rows["EvoTorch GymNE"] = evotorch_rate(env_id, policy, params)
        rows["EvoTorch VecGymNE"] = evotorch_rate(env_id, policy, params, vectorised=True)
        rows["evosax OpenES, lockstep jit(vmap)"] = evosax_rate(env_id, policy, params, lockstep=True)
        rows["evosax OpenES, per member jit"] = evosax_rate(env_id, policy, params, lockstep=False, max_members=32)
        rows["evoforge (2nd)"] = _evoforge_rate(env_id, policy, params, 2)
        ours = float(np.mean([rows[k]["steps_per_s"] for k in ("evoforge (1st)", "evoforge (2nd)")]))
        peers = {k: v["steps_per_s"] for k, v in rows.items() if "steps_per_s" in v and not k.startswith("evoforge")}
        best = max(peers.items(), key=lambda kv: kv[1]) if peers else None
        table = [[k, v.get("steps", "-"), f"{v['seconds']:.2f}" if "seconds" in v else "-",
                  f"{v['steps_per_s']:,.0f}" if "steps_per_s" in v else v.get("error", "?"),
                  f"{ours / v['steps_per_s']:.2f}x" if "steps_per_s" in v else "-"] for k, v in rows.items()]
        print(f"\n(a) {env_id}: P={args.pop}, MLP {policy.hidden[0]} tanh ({policy.n_params} parameters), one "
              f"episode each, the same policies for every framework; load {load()}")
        _harness.print_table(["framework", "steps", "s", "steps/s", "evoforge / it"], table)
        ratio = ours / best[1] if best else None
        if best:
            print(f"evoforge {ours:,.0f} steps/s = {ratio:.2f}x the fastest peer ({best[0]}); target "
                  f"{TARGETS['a']}x: {'met' if ratio >= TARGETS['a'] else 'NOT met'}")
        out[env_id] = {"rows": rows, "evoforge_steps_per_s": ours, "fastest_peer": best, "ratio": ratio,
                       "n_params": policy.n_params}
    return out


# ---- (b) LunarLander solved ----------------------------------------------------------------------


def _chunked(env_id: str, algo: str, run_dir: Path, budget_s: float, chunk: int, check=None, **kw):
    """``evolve`` resumed chunk by chunk (``chunk`` generations) until ``check(result)`` says done or
    the budget is spent; returns (last result, the check's verdict, seconds)."""
    from evoforge.neuro import evolve

    t0, gens, verdict, r = time.perf_counter(), 0, None, None
    while time.perf_counter() - t0 < budget_s:
        gens += chunk
        r = evolve(env_id, algo, run_dir=run_dir, generations=gens, **kw)
        if check is not None:
            verdict = check(r)
            if verdict is not None and verdict.get("done"):
                break
    return r, verdict, time.perf_counter() - t0


def _current_policy(run_dir: Path, algo: str):
    """(parameters, observation normalisation) of the run's current policy: OpenAI-ES's mean, Deep GA's
    elite (rebuilt from its seeds)."""
    from evoforge.neuro import DeepGA, OpenAIES, ParamCache

    if algo == "es":
        eng = OpenAIES.resume(run_dir, progress=False)
        out = (eng.mean, eng.obs_norm.state() if eng.obs_norm is not None else None)
    else:
        eng = DeepGA.resume(run_dir, progress=False)
        out = (ParamCache(eng.policy, eng.sigma, max_bytes=0).from_scratch(eng.elite),
               eng.obs_norm.state() if eng.obs_norm is not None else None)
    eng.close()
    return out


def part_b(args, results: Path) -> dict:
    from evoforge.neuro import evaluate_policy

    run_dir = Path(tempfile.mkdtemp(prefix="neuro-lunar-"))
    kw = dict(pop=args.b_pop, seed=args.seed, hidden=tuple(args.b_hidden), sigma=args.b_sigma, episodes=1)
    if args.b_algo == "es":
        kw.update(lr=args.b_lr, eval_episodes=5)
    else:
        kw.update(truncation=max(2, args.b_pop // 10), elite_candidates=10, elite_episodes=5)
    if args.b_workers > 1:
        kw.update(backend="process", backend_options={"workers": args.b_workers})
    state = {"checked": None, "checks": []}
    t_start = time.perf_counter()

    def check(r):
        """100 fresh episodes of the current policy (ES: the mean; GA: the elite) once its own few
        episodes reach 190, and of the run's best once it passes 200 (each policy checked once)."""
        last = r.curve[-1] if r.curve else {}
        current = last.get("center_return", last.get("elite_return"))
        todo = []
        if current is not None and current >= 190:
            todo.append(("current", *_current_policy(run_dir, args.b_algo)))
        if r.best_return is not None and r.best_return >= 200 and r.best_return != state["checked"]:
            state["checked"] = r.best_return
            todo.append(("best", r.params, r.obs_norm))
        for what, params, norm in todo:
            rets = evaluate_policy("LunarLander-v3", r.policy, params, episodes=100, obs_norm=norm, seed=2**32 + 7)
            state["checks"].append({"generation": r.generations, "policy": what, "own_estimate": current if
                                    what == "current" else r.best_return, "mean100": float(rets.mean()),
                                    "seconds": time.perf_counter() - t_start})
            print(f"  generation {r.generations}: the {what} policy, 100 fresh episodes {rets.mean():.1f} "
                  f"({(time.perf_counter() - t_start) / 60:.1f} min)", flush=True)
            if rets.mean() >= 200:  # confirmed on 100 other episodes (the checks above share their seeds)
                again = evaluate_policy("LunarLander-v3", r.policy, params, episodes=100, obs_norm=norm,
                                        seed=2**33 + 11)
                print(f"  confirmed on 100 other episodes: {again.mean():.1f}", flush=True)
                return {"done": True, "mean100": float(rets.mean()), "confirm_mean100": float(again.mean()),
                        "policy": what}
        return {"done": False, "mean100": state["checks"][-1]["mean100"]} if todo else None

    print(f"\n(b) LunarLander-v3 with {args.b_algo} {kw} for at most {args.minutes:g} min; load {load()}", flush=True)
    r, verdict, secs = _chunked("LunarLander-v3", args.b_algo, run_dir, args.minutes * 60, 10, check, **kw)
    from evoforge.neuro import plot_curve

    png = results / "neuro_lunarlander.png"
    plot_curve(r.curve, png, title=f"LunarLander-v3, {args.b_algo} pop {args.b_pop}", references={"solved": 200.0})
    solved = bool(verdict and verdict.get("done"))
    final = verdict["mean100"] if solved else float(r.evaluate(episodes=100).mean())
    print(f"(b) {'SOLVED' if solved else 'NOT solved'} after {secs / 60:.1f} min, {r.generations} generations, "
          f"{r.env_steps:,} steps; mean of 100 fresh episodes {final:.1f}; curve {png}")
    out = {"solved": solved, "minutes": secs / 60, "generations": r.generations, "env_steps": r.env_steps,
           "mean100": final, "settings": {k: v for k, v in kw.items() if k != "backend_options"},
           "workers": args.b_workers, "checks": state["checks"], "curve": r.curve, "algo": args.b_algo,
           "confirm_mean100": verdict.get("confirm_mean100") if verdict else None}
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


# ---- (c) MinAtar and Atari RAM curves -------------------------------------------------------------


def random_play(env_id: str, episodes: int, max_steps: int, env_kwargs=None, seed: int = 0) -> np.ndarray:
    """Returns of uniformly random actions (the action space's own generator, seeded)."""
    from evoforge.neuro import make_env

    env = make_env(env_id, env_kwargs)
    env.action_space.seed(seed)
    out = []
    for e in range(episodes):
        env.reset(seed=seed + e)
        total, t, done = 0.0, 0, False
        while not done and t < max_steps:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            total, t, done = total + float(r), t + 1, term or trunc
        out.append(total)
    env.close()
    return np.array(out)


def part_c(args, results: Path) -> dict:
    from evoforge.neuro import plot_curve

    games = [("MinAtar/Breakout-v1", None, dict(pop=64, hidden=(64,), max_steps=1000, elite_episodes=5, sigma=0.01)),
             ("ALE/Breakout-v5", {"obs_type": "ram"}, dict(pop=32, hidden=(64, 64), max_steps=1000,
                                                          elite_episodes=3, sigma=0.02))]
    out = {}
    for env_id, ekw, kw in games:
        max_steps, hidden = kw.pop("max_steps"), kw.pop("hidden")
        policy = _policy(env_id, hidden, **(ekw or {}))
        rand = random_play(env_id, 30, max_steps, ekw)
        run_dir = Path(tempfile.mkdtemp(prefix="neuro-curve-"))
        print(f"\n(c) {env_id} {ekw or ''}: Deep GA, {type(policy).__name__} ({policy.n_params} parameters), "
              f"{args.curve_seconds:g} s; random play {rand.mean():.2f}; load {load()}", flush=True)
        r, _, secs = _chunked(env_id, "ga", run_dir, args.curve_seconds, 5, None, seed=args.seed, policy=policy,
                              env_kwargs=ekw, max_steps=max_steps, **kw)
        final = r.evaluate(episodes=30, max_steps=max_steps)
        name = env_id.split("/")[-1].split("-")[0].lower()
        png = results / f"neuro_{'minatar' if env_id.startswith('MinAtar') else 'atari_ram'}_{name}.png"
        plot_curve(r.curve, png, title=f"{env_id}{' (RAM)' if ekw else ''}: Deep GA pop {kw['pop']}",
                   references={"random play": float(rand.mean())})
        print(f"(c) {env_id}: {r.generations} generations, {r.env_steps:,} steps in {secs:.0f} s; best policy "
              f"{final.mean():.2f} +- {final.std():.2f} over 30 fresh episodes, random play {rand.mean():.2f} "
              f"({final.mean() / max(rand.mean(), 1e-9):.1f}x); curve {png}")
        out[env_id] = {"generations": r.generations, "env_steps": r.env_steps, "seconds": secs,
                       "final_mean": float(final.mean()), "final_std": float(final.std()),
                       "random_mean": float(rand.mean()), "n_params": policy.n_params, "curve": r.curve,
                       "best_genome_seeds": int(r.genome[0]) if r.genome is not None else None}
        shutil.rmtree(run_dir, ignore_errors=True)
    return out


# ---- (d) bytes -----------------------------------------------------------------------------------


def part_d(args, measured: dict) -> dict:
    from evoforge.neuro import encode, payload_bytes

    policies = [("CartPole-v1 MLP 64", _policy("CartPole-v1")), ("LunarLander-v3 MLP 64", _policy("LunarLander-v3")),
                ("LunarLander-v3 MLP 256,256", _policy("LunarLander-v3", (256, 256)))]
    try:
        policies.append(("MinAtar Breakout conv16 + 64", _policy("MinAtar/Breakout-v1")))
        policies.append(("Atari RAM MLP 256,256", _policy("ALE/Breakout-v5", (256, 256), obs_type="ram")))
        policies.append(("Atari pixels conv16 8x8/4 + 128 (Deep GA's scale)", _atari_pixels_policy()))
    except Exception as e:  # noqa: BLE001 -- minatar / ale-py missing
        print(f"(d) skipped a policy: {e}")
    rows, out = [], {}
    for name, pol in policies:
        D = pol.n_params
        ratios = {n: payload_bytes(encode([list(range(1, n + 1))]), D)["param_bytes"] / (8 * n)
                  for n in (10, 100, 1000)}
        rows.append([name, D, 4 * D, *(f"{ratios[n]:,.0f}x" if ratios[n] >= 100 else f"{ratios[n]:.2g}x"
                                       for n in (10, 100, 1000))])
        out[name] = {"n_params": D, "param_bytes": 4 * D, "ratio_by_seeds": ratios}
    print("\n(d) one genome of n seeds (8 n bytes) against its float32 parameters (4 D bytes)")
    _harness.print_table(["policy", "D", "weights (bytes)", "n=10", "n=100", "n=1000"], rows)
    sent = []
    for what, m in measured.items():
        curve = m.get("curve") or []
        g, w = sum(r.get("genome_bytes", 0) for r in curve), sum(r.get("weight_bytes", 0) for r in curve)
        if g:
            sent.append([what, len(curve), f"{g:,}", f"{w:,}", f"{w / g:,.0f}x"])
    if sent:
        print("(d) what the runs sent to their evaluators (genome arrays) against shipping the weights")
        _harness.print_table(["run", "generations", "genome bytes", "weight bytes", "ratio"], sent)
    out["runs"] = sent
    return out


# ---- (e) Ray 2 workers against 1 -----------------------------------------------------------------


def part_e(args) -> dict:
    from evoforge.evaluate import RayBackend
    from evoforge.neuro import PolicyEvaluator, derive_seed, encode
    from evoforge.search.protocol import Batch

    import ray

    policy = _policy("LunarLander-v3")
    g = encode([[derive_seed(args.seed, "init", i), derive_seed(args.seed, "m", i)] for i in range(args.pop)])
    factory = functools.partial(PolicyEvaluator, "LunarLander-v3", policy, encoding="seeds", sigma=0.05)
    tmp = tempfile.mkdtemp(prefix="evoray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=tmp, log_to_driver=False)
    rows = {}
    try:
        for n in (1, 2):
            with RayBackend(factory, n, threads=1) as b:
                b.evaluate(g[:8], Batch(g[:8], fidelity=1, seed=5))  # workers up, environments made
                pids = b.pids()
                times, c0 = [], cpu_seconds(pids)
                t_all = time.perf_counter()
                for rep in range(args.e_repeats):
                    t0 = time.perf_counter()
                    b.evaluate(g, Batch(g, fidelity=args.e_episodes, seed=100 + rep))
                    times.append(time.perf_counter() - t0)
                c1, wall = cpu_seconds(pids), time.perf_counter() - t_all
                share = (c1 - c0) / (wall * n) if c0 is not None and c1 is not None else None
                rows[n] = {"median_s": float(np.median(times)), "times": times, "cpu_share": share, "load": load()}
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    speedup = rows[1]["median_s"] / rows[2]["median_s"]
    print(f"\n(e) LunarLander-v3, {args.pop} genomes (seed lists of 2), {args.e_episodes} episodes each, Ray actors")
    _harness.print_table(["workers", "median s", "CPU share per worker", "load"],
                         [[n, f"{r['median_s']:.2f}", f"{r['cpu_share']:.0%}" if r["cpu_share"] else "-", r["load"]]
                          for n, r in rows.items()])
    print(f"(e) 2 workers = {speedup:.2f}x one (target {TARGETS['e']}x on an idle machine: "
          f"{'met' if speedup >= TARGETS['e'] else 'NOT met'})")
    return {"rows": rows, "speedup": speedup, "episodes": args.e_episodes}


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench neuro", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="a,d,e", help="comma-separated parts among a,b,c,d,e (default a,d,e)")
    ap.add_argument("--pop", type=int, default=256, help="population of parts a and e (default 256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=15.0, help="(b) wall-time budget")
    ap.add_argument("--b-algo", choices=("es", "ga"), default="es")
    ap.add_argument("--b-pop", type=int, default=256)
    ap.add_argument("--b-hidden", type=lambda s: [int(x) for x in s.split(",")], default=[64])
    ap.add_argument("--b-sigma", type=float, default=0.05)
    ap.add_argument("--b-lr", type=float, default=0.03)
    ap.add_argument("--b-workers", type=int, default=2, help="(b) process workers (1: in process)")
    ap.add_argument("--curve-seconds", type=float, default=180.0, help="(c) budget per game")
    ap.add_argument("--e-repeats", type=int, default=3)
    ap.add_argument("--e-episodes", type=int, default=4, help="(e) episodes per genome (default 4)")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/neuro.json)")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - set("abcde"):
        ap.error(f"--parts must name parts among a,b,c,d,e, got {args.parts!r}")
    if (args.pop < 2 or args.b_pop < 2 or args.minutes <= 0 or args.curve_seconds <= 0 or args.e_repeats < 1
            or args.e_episodes < 1):
        ap.error("--pop and --b-pop must be >= 2; --minutes, --curve-seconds > 0; --e-repeats, --e-episodes >= 1")
    out = Path(args.out) if args.out else Path("bench/results/neuro.json")
    results = out.parent
    results.mkdir(parents=True, exist_ok=True)
    meta = _harness.machine()
    print(f"evoforge {meta['evoforge']} on {meta['cpu']} ({meta['cores']} cores), {meta['date']}, load {load()}",
          flush=True)
    payload: dict = {"machine": meta, "parts": parts, "targets": TARGETS}
    measured: dict = {}
    for p in parts:
        t0 = time.perf_counter()
        if p == "a":
            payload["a"] = part_a(args)
        elif p == "b":
            payload["b"] = part_b(args, results)
            measured["LunarLander (b)"] = payload["b"]
        elif p == "c":
            payload["c"] = part_c(args, results)
            measured.update(payload["c"])
        elif p == "d":
            payload["d"] = part_d(args, measured)
        elif p == "e":
            payload["e"] = part_e(args)
        payload.setdefault("seconds", {})[p] = time.perf_counter() - t0
        _harness.write_json(out, payload)  # after every part: a long run keeps what finished
    print(f"\nwrote {out} ({json.dumps(payload['seconds'])} s per part); load {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
