"""``evoforge neuro --env ENV_ID --algo ga|es --pop N --generations G --out RUN_DIR``: neuroevolution of
a policy on a Gymnasium environment (Deep GA over seed lists, or OpenAI-ES) into a resumable run
directory (checkpoint and history, ``curve.png``, ``best_policy.npz``, ``report.json``); and
``evoforge neuro play RUN_DIR --episodes K [--video PATH]``: the saved policy's returns and a video.

Every argument is checked before anything heavy runs: numbers by the parser, then the algorithm's
rules (an even population for ES), the run directory, and the environment id (one environment is
made and closed: an unknown id, or spaces no policy can drive, are refused in well under a second).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from evoforge._cli_parser import int_at_least, positive_float

__all__ = ["add_neuro"]

#: A population whose parameters would take more memory than this is refused before it is built.
MAX_POPULATION_BYTES = 8 << 30


def _hidden(s: str) -> tuple[int, ...]:
    """``"64"``, ``"64,64"`` or ``""`` (no hidden layer) -> widths."""
    try:
        widths = tuple(int(w) for w in s.split(",")) if s.strip() else ()
    except ValueError:
        widths = None
    if widths is None or any(w < 1 for w in widths) or len(widths) > 16:
        raise argparse.ArgumentTypeError(f"must be comma-separated widths >= 1 such as 64 or 64,64, got {s!r}")
    return widths


def _env_kwarg(s: str) -> tuple[str, object]:
    """``KEY=VALUE``; the value is read as JSON (numbers, true, false, null), else kept as a string."""
    key, eq, value = s.partition("=")
    if not eq or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"must look like KEY=VALUE (e.g. obs_type=ram), got {s!r}")
    try:
        v = json.loads(value)
    except ValueError:
        v = value
    return key.strip(), v


def add_neuro(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("neuro", help="evolve a policy on a Gymnasium environment (Deep GA or OpenAI-ES); "
                                     "play: a saved policy's returns and video",
                       description="Train: --env, --algo, --pop, --generations and --out are needed; an existing "
                                   "--out resumes its run.")
    psub = p.add_subparsers(dest="neuro_command")
    q = psub.add_parser("play", help="returns (mean, std) of a run's best policy, and a video (.gif or .mp4)")
    q.add_argument("run_dir", help="an `evoforge neuro` run directory (or its best_policy.npz)")
    q.add_argument("--episodes", type=int_at_least(1), default=10)
    q.add_argument("--video", default=None, metavar="PATH", help="write the first episode here (.gif; .mp4 needs "
                                                                 "moviepy)")
    q.add_argument("--seed", type=int_at_least(0), default=2**32 + 7, help="reset seed of the episodes")
    q.add_argument("--max-steps", type=int_at_least(1), default=None)
    q.set_defaults(fn=_cmd_play)

    p.add_argument("--env", default=None, metavar="ENV_ID",
                   help="a Gymnasium id: CartPole-v1, LunarLander-v3, MinAtar/Breakout-v1, ALE/Breakout-ram-v5 ...")
    p.add_argument("--env-kwarg", action="append", type=_env_kwarg, default=[], metavar="KEY=VALUE", dest="env_kwargs",
                   help="passed to gymnasium.make (repeat; e.g. obs_type=ram for ALE/Breakout-v5)")
    p.add_argument("--algo", choices=("ga", "es"), default=None, help="Deep GA (seed lists) or OpenAI-ES")
    p.add_argument("--pop", type=int_at_least(2), default=None, help="population size (even for es)")
    p.add_argument("--generations", type=int_at_least(0), default=None, help="generations in total (a resumed "
                                                                             "run counts those done)")
    p.add_argument("--episodes", type=int_at_least(1), default=1, help="episodes per candidate")
    p.add_argument("--hidden", type=_hidden, default=(64,), help="hidden widths, e.g. 64 or 64,64 (default 64)")
    p.add_argument("--policy", choices=("auto", "mlp", "conv"), default="auto",
                   help="auto: a conv layer before the MLP for image observations (H x W x C, at most 16 "
                        "channels: MinAtar), else an MLP")
    p.add_argument("--channels", type=int_at_least(1), default=16, help="conv channels (conv policy)")
    p.add_argument("--sigma", type=positive_float, default=None, help="mutation / perturbation power (0.05)")
    p.add_argument("--lr", type=positive_float, default=None, help="es: Adam's step size (0.03)")
    p.add_argument("--truncation", type=int_at_least(1), default=None, help="ga: parents per generation")
    p.add_argument("--elite-episodes", type=int_at_least(1), default=None, help="ga: episodes of each elite "
                                                                                "candidate's re-evaluation")
    p.add_argument("--eval-episodes", type=int_at_least(1), default=None, help="es: episodes of the mean's "
                                                                               "evaluation per generation")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--obs-norm", dest="obs_norm", action="store_true", default=None,
                      help="shared observation normalisation (default: es on, ga off)")
    norm.add_argument("--no-obs-norm", dest="obs_norm", action="store_false")
    p.add_argument("--max-steps", type=int_at_least(1), default=None, help="step limit per episode (default: "
                                                                           "the environment's, else 1000)")
    p.add_argument("--target-return", type=float, default=None, help="stop once the best return reaches it")
    p.add_argument("--final-episodes", type=int_at_least(1), default=20,
                   help="fresh episodes of the best policy's final evaluation (report.json)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--backend", choices=("inprocess", "process", "ray"), default="inprocess",
                   help="where rollouts run; process and ray workers receive seed lists, not weights")
    p.add_argument("--workers", type=int_at_least(1), default=None, help="process / ray workers")
    p.add_argument("--out", default=None, metavar="RUN_DIR", help="run directory (an existing one resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=lambda args: _cmd_neuro(args, p))


def _check_out(out: str) -> Path:
    from evoforge.errors import ConfigError

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {out!r} exists and is not a directory")
    for q in path.parents:
        if q.exists():
            if not q.is_dir():
                raise ConfigError(f"--out {out!r}: {str(q)!r} is not a directory")
            break
    return path


def _policy(args: argparse.Namespace, env_kwargs: dict):
    """One environment made (and closed) from the arguments: the id checked, and the policy built."""
    from evoforge.errors import ConfigError
    from evoforge.neuro import ConvPolicy, MLPPolicy, make_env

    env = make_env(args.env, env_kwargs)
    try:
        obs, act = env.observation_space, env.action_space
        shape = tuple(getattr(obs, "shape", None) or ())
        image = type(obs).__name__ == "Box" and len(shape) in (2, 3) and min(shape[:2]) >= 3
        if args.policy == "conv" or (args.policy == "auto" and image and len(shape) == 3 and shape[2] <= 16):
            if not image:
                raise ConfigError(f"--policy conv needs image observations (H x W x C), {args.env} gives {obs}")
            return ConvPolicy.from_spaces(obs, act, args.hidden, channels=args.channels)
        return MLPPolicy.from_spaces(obs, act, args.hidden)
    finally:
        env.close()


def _cmd_neuro(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from evoforge.errors import ConfigError

    missing = [f"--{n}" for n in ("env", "algo", "pop", "generations", "out") if getattr(args, n) is None]
    if missing:
        parser.error(f"neuro needs {', '.join(missing)} (or use `evoforge neuro play RUN_DIR`)")
    if args.algo == "es" and args.pop % 2:
        raise ConfigError(f"--pop must be even for es (antithetic pairs), got {args.pop}")
    if args.truncation is not None and args.truncation > args.pop:
        raise ConfigError(f"--truncation {args.truncation} is larger than --pop {args.pop}")
    ga_only = {"--truncation": args.truncation, "--elite-episodes": args.elite_episodes}
    es_only = {"--lr": args.lr, "--eval-episodes": args.eval_episodes}
    for name, v in (es_only if args.algo == "ga" else ga_only).items():
        if v is not None:
            raise ConfigError(f"{name} is not an option of --algo {args.algo}")
    if args.workers is not None and args.backend == "inprocess":
        raise ConfigError("--workers needs --backend process or ray")
    if args.target_return is not None and not math.isfinite(args.target_return):
        raise ConfigError(f"--target-return must be a finite number, got {args.target_return}")
    out = _check_out(args.out)
    env_kwargs = dict(args.env_kwargs)
    policy = _policy(args, env_kwargs)
    need = args.pop * policy.n_params * 4
    if need > MAX_POPULATION_BYTES:
        raise ConfigError(f"the policy has {policy.n_params} parameters: a population of {args.pop} would take "
                          f"{need / 2**30:.1f} GiB (more than {MAX_POPULATION_BYTES >> 30}); use a smaller --pop or "
                          "--hidden, or RAM observations (--env-kwarg obs_type=ram)")
    return _train(args, out, env_kwargs, policy)


def _train(args: argparse.Namespace, out: Path, env_kwargs: dict, policy) -> int:
    from evoforge.neuro import evolve
    from evoforge.neuro.report import write_run

    algo_kw = {k: v for k, v in {"truncation": args.truncation, "elite_episodes": args.elite_episodes, "lr": args.lr,
                                 "eval_episodes": args.eval_episodes, "obs_norm": args.obs_norm}.items()
               if v is not None}
    resumed = (out / "checkpoint.pkl").is_file()
    task = f"env:{args.env}:{json.dumps(env_kwargs, sort_keys=True)}"
    backend_options = {"workers": args.workers} if args.workers is not None else None
    res = evolve(args.env, args.algo, pop=args.pop, generations=args.generations, seed=args.seed, run_dir=out,
                 episodes=args.episodes, sigma=args.sigma, max_steps=args.max_steps,
                 target_return=args.target_return, backend=args.backend, backend_options=backend_options,
                 env_kwargs=env_kwargs or None, progress=not args.quiet, policy=policy, task=task, **algo_kw)
    settings = {k: getattr(args, k) for k in ("env", "algo", "pop", "generations", "episodes", "policy", "channels",
                                              "sigma", "lr", "truncation", "elite_episodes", "eval_episodes",
                                              "obs_norm", "max_steps", "target_return", "seed", "backend", "workers")}
    settings.update(hidden=list(args.hidden), env_kwargs=env_kwargs)
    if res.params is None:
        print(f"{args.env}: no generation run (--generations {args.generations}); nothing to save")
        return 0
    if not args.quiet:
        print(f"final evaluation of the best policy over {args.final_episodes} fresh episodes ...", file=sys.stderr)
    rep = write_run(res, out, settings=settings, eval_episodes=args.final_episodes)
    fe, b = rep["final_evaluation"], rep["bytes"]
    print(f"{args.env} {args.algo.upper()} pop {args.pop}{' (resumed)' if resumed else ''}: {res.generations} "
          f"generations, {res.env_steps} environment steps, {res.seconds:.1f} s "
          f"({rep['policy']['n_params']} parameters, stopped: {res.stopped})")
    print(f"best return in the search {res.best_return:.2f}; final {fe['episodes']} episodes: mean {fe['mean']:.2f} "
          f"std {fe['std']:.2f}")
    if "best_genome_bytes" in b:
        print(f"best genome: {b['best_genome_seeds']} seeds = {b['best_genome_bytes']} bytes against "
              f"{b['param_bytes']} bytes of weights ({b['best_genome_ratio']:.0f}x smaller)")
    print(f"run directory {out}: curve.png, best_policy.npz, report.json, history.jsonl")
    return 0


def _cmd_play(args: argparse.Namespace) -> int:
    from evoforge.neuro.play import check_video, play

    if args.video is not None:
        check_video(args.video)
    r = play(args.run_dir, args.episodes, video=args.video, seed=args.seed, max_steps=args.max_steps)
    print(f"{r['env']}: returns over {args.episodes} episodes: mean {r['mean']:.2f} std {r['std']:.2f} "
          f"(min {min(r['returns']):.2f}, max {max(r['returns']):.2f})")
    if r["video"]:
        print(f"video of the first episode (return {r['video_return']:.2f}, {r['frames']} frames): {r['video']}")
    return 0
