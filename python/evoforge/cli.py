"""The ``evoforge`` command line."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    import evoforge

    print(json.dumps(evoforge.info(), indent=2, default=str))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from importlib import import_module

    mod = import_module(f"evoforge.bench.{args.name}")
    return int(mod.main(args.rest) or 0)


def _bench_names() -> list[str]:
    import pkgutil

    from evoforge import bench

    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def _fail(msg: str) -> int:
    print(f"evoforge: error: {msg}", file=sys.stderr)
    return 2


def _cmd_compress(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evoforge.errors import EvoforgeError

    try:
        from evoforge.compress import pipeline as pl
    except ImportError as e:
        return _fail(f"compress needs torch and transformers (pip install evoforge[hf]): {e}")
    run_dir = args.run_dir
    if run_dir is None:
        stem = Path(str(args.model).rstrip("/")).name or "model"
        run_dir = f"evoforge-runs/{stem}-{args.method}-{args.target:g}"
    for f in (args.calib_text, args.eval_text):
        if f is not None and not Path(f).is_file():
            return _fail(f"text file not found: {f!r}")
    stages = None
    if args.stages:
        try:
            stages = [(int(a), None if b in ("", "all") else int(b))
                      for a, b in (part.split(":") for part in args.stages.split(","))]
        except ValueError:
            return _fail(f"--stages must look like 4:256,1:all (survivors:tokens), got {args.stages!r}")
    backend = None
    if args.backend != "inprocess":
        import functools

        from evoforge.evaluate import open_backend

        opts = {"workers": args.workers, "timeout": args.timeout}
        if args.backend == "ray":
            opts["address"] = args.address
        elif args.address is not None:
            return _fail("--address needs --backend ray")
        backend = functools.partial(open_backend, args.backend, **opts)
    try:
        if args.backend == "ray":  # an unreachable cluster fails now, not after loading the model
            from evoforge.evaluate.ray_actors import connect

            connect(args.address)
        model, tok = pl.load_model(args.model)
        res = pl.compress(
            # workers load the model from its path (shared storage) rather than receive a copy
            model if backend is None else args.model, backend=backend,
            method=args.method, target=args.target, database=args.database, db_method=args.db_method,
            db_levels=args.db_levels, db_step=args.db_step, bits=args.bits, group_size=args.group_size,
            calib_text=args.calib_text, tokenizer=tok, n_calib=args.n_calib, n_heldout=args.n_heldout,
            seq_len=args.seq_len, generations=args.generations, offspring=args.offspring, stages=stages,
            seed=args.seed, run_dir=run_dir, export_model=not args.no_export, progress=not args.quiet)
        eval_text = args.eval_text or args.calib_text
        if eval_text is not None and tok is not None:
            pl.compare_perplexity(res, pl.text_ids(tok, eval_text), window=args.window,
                                  max_windows=args.max_windows)
            if res.model_dir:  # the exported configuration was written before the perplexities
                cfg_path = Path(res.run_dir) / "config.json"
                cfg = json.loads(cfg_path.read_text())
                cfg["ppl"] = res.ppl
                cfg_path.write_text(json.dumps(cfg, indent=1))
    except (EvoforgeError, ValueError, FileNotFoundError, ConnectionError, ImportError) as e:
        return _fail(str(e))
    if res.method == "depth":
        k = res.budget // 2
        print(f"depth target {res.target:g}: drop K={k} attention and K={k} MLP sub-blocks of {res.total_weights // 2} "
              f"blocks ({res.generations} generations, {res.evaluations} evaluations)")
        print("dropped: " + ", ".join(f"{b}:{kind}" for b, kind in res.dropped or ()))
    else:
        unit = "sparsity" if res.method == "sparsity" else "bits/weight"
        print(f"{res.method} target {res.target:g} ({res.db_method} database, {len(res.layers)} layers, "
              f"{res.generations} generations, {res.evaluations} evaluations)")
        print(f"budget: {res.budget} {'non-zeros' if res.method == 'sparsity' else 'weight bits'} "
              f"(uniform {res.uniform_budget}); average {unit} {res.average:.4f}")
    head = f"{'model':<10} {'KL (held-out)':>14}" + (f" {'perplexity':>11}" if res.ppl else "")
    print(head)
    print("-" * len(head))
    rows = [("dense", 0.0), ("uniform", res.kl_uniform)]
    rows += [(name, b["kl"]) for name, b in res.baselines.items()]  # shortgpt (depth) / owl (sparsity)
    rows.append(("evoforge", res.kl_search))
    for name, kl in rows:
        line = f"{name:<10} {kl:>14.4f}"
        if res.ppl:
            line += f" {res.ppl[name]:>11.3f}" if name in res.ppl else f" {'-':>11}"
        print(line)
    if res.model_dir:
        print(f"compressed model: {res.model_dir}  (configuration: {Path(res.run_dir) / 'config.json'})")
    if args.json:
        Path(args.json).write_text(json.dumps(res.to_json(), indent=1))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from evoforge.errors import EvoforgeError

    try:
        from evoforge.compress import pipeline as pl
    except ImportError as e:
        return _fail(f"eval needs torch and transformers (pip install evoforge[hf]): {e}")
    try:
        model, tok = pl.load_model(args.model)
        ids = pl.text_ids(tok, args.text)
        ppl = pl.perplexity(model, ids, window=args.window, max_windows=args.max_windows)
    except (EvoforgeError, ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    n = ids.numel() // args.window
    if args.max_windows is not None:
        n = min(n, args.max_windows)
    print(json.dumps({"model": str(args.model), "text": str(args.text), "window": args.window, "windows": n,
                      "perplexity": ppl}))
    return 0


def _add_compress(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="search per-layer sparsity or bit-widths under an exact budget (EvoPress)")
    p.add_argument("--model", required=True, help="model directory, .gguf file, or smollm2-135m")
    p.add_argument("--method", choices=("sparsity", "quant", "depth"), default="sparsity")
    p.add_argument("--target", type=float, required=True,
                   help="average sparsity (0..1), bits per weight, or for depth K: the number of attention AND "
                        "of MLP sub-blocks to drop (an integer >= 1), or a fraction (0..1) of the blocks")
    p.add_argument("--db-method", choices=("sparsegpt", "magnitude", "wanda", "gptq", "rtn"), default=None,
                   help="how the layer database is built (default sparsegpt / gptq)")
    p.add_argument("--database", default=None, help="an existing layer database directory of this model")
    p.add_argument("--db-levels", type=int, default=4, help="sparsity levels on each side of the target")
    p.add_argument("--db-step", type=int, default=None, help="weights pruned per sparsity level step")
    p.add_argument("--bits", type=lambda s: [int(b) for b in s.split(",")], default=[2, 3, 4, 5, 6, 7, 8])
    p.add_argument("--group-size", type=int, default=64)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--offspring", type=int, default=8)
    p.add_argument("--stages", default=None, help="selection stages survivors:tokens, e.g. 4:256,1:all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None, help="resumable run directory (default evoforge-runs/...)")
    p.add_argument("--calib-text", default=None, help="calibration text (default: samples from the model)")
    p.add_argument("--eval-text", default=None, help="text for perplexity (default: --calib-text)")
    p.add_argument("--n-calib", type=int, default=16)
    p.add_argument("--n-heldout", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--max-windows", type=int, default=16)
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--backend", choices=("inprocess", "process", "ray"), default="inprocess",
                   help="where candidates are evaluated: here, a local process pool, or Ray actors")
    p.add_argument("--address", default=None,
                   help="Ray cluster: auto (started with `ray start` on this node) or HOST:PORT of its head")
    p.add_argument("--workers", type=int, default=None, help="evaluation workers (default: one per GPU or CPU)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds a worker may return nothing before it counts as hung and is replaced")
    p.set_defaults(fn=_cmd_compress)
    p = sub.add_parser("eval", help="evaluate a model: evoforge eval ppl --model DIR --text FILE")
    p.add_argument("what", choices=("ppl",))
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--max-windows", type=int, default=None)
    p.set_defaults(fn=_cmd_eval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evoforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="build flags, threads, CUDA compiled / GPU visible")
    p.set_defaults(fn=_cmd_info)
    p = sub.add_parser("bench", help="run a benchmark against its peers: evoforge bench pareto --quick")
    p.add_argument("name", choices=_bench_names())
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark (see --help)")
    p.set_defaults(fn=_cmd_bench)
    _add_compress(sub)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
