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


def _bits_list(s: str) -> list[int]:
    """``"2..8"``, ``"2,3,4"`` or ``"3"`` -> a list of bit-widths."""
    try:
        if ".." in s:
            a, b = s.split("..")
            out = list(range(int(a), int(b) + 1))
        else:
            out = [int(b) for b in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bits must look like 2..8 or 2,3,4, got {s!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"bits must be an increasing range such as 2..8, got {s!r}")
    return out


def _cmd_compress(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from evoforge.errors import EvoforgeError

    try:
        from evoforge.compress import pipeline as pl
        from evoforge.compress.report import budget_line, summary_table, write_report
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
    if args.address is not None and args.backend != "ray":
        return _fail("--address needs --backend ray")
    if args.backend != "inprocess":
        import functools

        from evoforge.evaluate import open_backend

        opts = {"workers": args.workers, "timeout": args.timeout}
        if args.backend == "ray":
            opts["address"] = args.address
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
            symmetric=args.symmetric, count_metadata=args.count_metadata,
            calib_text=args.calib_text, tokenizer=tok, n_calib=args.n_calib, n_heldout=args.n_heldout,
            seq_len=args.seq_len, generations=args.generations, offspring=args.offspring, stages=stages,
            seed=args.seed, run_dir=run_dir, export_model=not args.no_export, progress=not args.quiet,
            compute_dtype=args.compute_dtype)
        eval_text = args.eval_text or args.calib_text
        if eval_text is not None and tok is not None:
            t0 = time.perf_counter()
            ids = pl.text_ids(tok, eval_text)
            pl.compare_perplexity(res, ids, window=args.window, max_windows=args.max_windows)
            res.times["perplexity"] = time.perf_counter() - t0
            n = ids.numel() // args.window
            n = n if args.max_windows is None else min(n, args.max_windows)
            res.notes.append(f"perplexity: {n} non-overlapping windows of {args.window} tokens of {eval_text}"
                             + (" (the calibration file)" if args.eval_text is None else ""))
            if res.model_dir:  # the exported configuration was written before the perplexities
                cfg_path = Path(res.run_dir) / "config.json"
                cfg = json.loads(cfg_path.read_text())
                cfg["ppl"] = res.ppl
                cfg_path.write_text(json.dumps(cfg, indent=1))
            write_report(res, res.run_dir)
    except (EvoforgeError, ValueError, FileNotFoundError, ConnectionError, ImportError) as e:
        return _fail(str(e))
    print(f"{res.method} target {res.target:g} ({res.db_method} database, {len(res.layers)} "
          f"{'sub-blocks' if res.method.startswith('depth') else 'layers'}, {res.generations} generations, "
          f"{res.evaluations} evaluations)")
    print(budget_line(res))
    if res.dropped:
        print("dropped: " + ", ".join(f"{b}:{kind}" for b, kind in res.dropped))
    print(summary_table(res))
    if res.model_dir:
        print(f"compressed model: {res.model_dir}  (configuration: {Path(res.run_dir) / 'config.json'})")
    print(f"report: {Path(res.run_dir) / 'report.md'}")
    if args.json:
        Path(args.json).write_text(json.dumps(res.to_json(), indent=1))
    return 0


def _cmd_build_db(args: argparse.Namespace) -> int:
    import math
    import time
    from pathlib import Path

    from evoforge.errors import EvoforgeError

    try:
        from evoforge.compress import adapt, build_database
        from evoforge.compress import pipeline as pl
        from evoforge.compress.calibration import sample_sequences, tokens_from_text
        from evoforge.compress.database import QUANT_METHODS
    except ImportError as e:
        return _fail(f"build-db needs torch and transformers (pip install evoforge[hf]): {e}")
    if args.text is not None and not Path(args.text).is_file():
        return _fail(f"calibration text file not found: {args.text!r}")
    try:
        t0 = time.perf_counter()
        model, tok = pl.load_model(args.model)
        adapter = adapt(model)
        tokens, calib = None, None
        if args.method in ("wanda", "sparsegpt", "gptq"):
            n = args.model_samples or max(1, math.ceil(args.tokens / args.seq_len))
            if args.text is not None:
                if tok is None:
                    return _fail("--text needs a tokenizer (the model directory has none); use --model-samples")
                tokens = tokens_from_text(tok, args.text, n, args.seq_len, seed=args.seed)
                calib = {"source": "text", "file": str(args.text), "seed": args.seed}
            else:
                bos = getattr(model.config, "bos_token_id", None)
                tokens = sample_sequences(model, n, args.seq_len, seed=args.seed,
                                          bos_token_id=1 if bos is None else int(bos))
                calib = {"source": "samples", "seed": args.seed}
        t1 = time.perf_counter()
        quant = args.method in QUANT_METHODS
        kw = ({"bits": args.bits, "group_size": args.group_size, "symmetric": args.symmetric} if quant else
              {"sparsity": args.target, "n_levels": args.levels, "step": args.step,
               "values_dtype": args.values_dtype})
        kw["compute_dtype"] = args.compute_dtype
        db = build_database(adapter, tokens, args.out, method=args.method, calibration=calib,
                            overwrite=args.overwrite, progress=not args.quiet, **kw)
    except (EvoforgeError, ValueError, FileNotFoundError, FileExistsError) as e:
        return _fail(str(e))
    t2 = time.perf_counter()
    m = db.manifest
    levels = sorted({lv for name in db.layers for lv in db.levels(name)})
    print(f"layer database {db.path}: {m['method']} ({m['kind']}), {len(db.layers)} layers, levels {levels}, "
          f"{m['total_bytes'] / 2**20:.1f} MiB")
    print(f"calibration: {'none' if tokens is None else f'{tokens.shape[0]} x {tokens.shape[1]} tokens from ' + calib['source']}"
          f" ({t1 - t0:.1f} s with loading); build {t2 - t1:.1f} s")
    print(f"use it: evoforge compress --model {args.model} --method {'quant' if quant else 'sparsity'} --db {db.path} "
          f"--target ...")
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
    p = sub.add_parser("compress", help="search per-layer sparsity, bit-widths or dropped sub-blocks under an "
                                        "exact budget (EvoPress); build-db: build a layer database")
    csub = p.add_subparsers(dest="compress_command")
    b = csub.add_parser("build-db", help="build a layer database (sparsity or quantisation ladders) of a model")
    b.add_argument("--model", required=True, help="model directory, .gguf file, or smollm2-135m")
    b.add_argument("--method", required=True, choices=("magnitude", "wanda", "sparsegpt", "rtn", "gptq"))
    b.add_argument("--out", required=True, help="directory to write the database to")
    b.add_argument("--target", type=float, default=0.5, help="sparsity of level 0 (sparsity methods)")
    b.add_argument("--levels", type=int, default=4, help="sparsity levels on each side of the target")
    b.add_argument("--step", type=int, default=None,
                   help="weights pruned per sparsity level step, the same in every layer (default 5%% of the "
                        "median layer)")
    b.add_argument("--bits", type=_bits_list, default=list(range(2, 9)), help="bit-widths, e.g. 2..8 or 2,3,4")
    b.add_argument("--group-size", type=int, default=64, help="quantisation group size (-1: one group per row)")
    b.add_argument("--compute-dtype", choices=("bfloat16",), default=None,
                   help="the calibration forward (Hessians) under bfloat16 autocast: about 2.5x faster on CPUs "
                        "with AMX or AVX-512 BF16")
    b.add_argument("--values-dtype", default=None, choices=("float16", "bfloat16", "float32"),
                   help="how sparsity levels store their non-zeros (default: bfloat16 for bfloat16 models, else "
                        "float16; float32 is lossless for float32 models)")
    sym = b.add_mutually_exclusive_group()
    sym.add_argument("--symmetric", dest="symmetric", action="store_true", help="symmetric grids (no zero points)")
    sym.add_argument("--asymmetric", dest="symmetric", action="store_false", help="asymmetric grids (default)")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--text", default=None, help="calibration text file (needs the model's tokenizer)")
    src.add_argument("--model-samples", type=int, default=None, metavar="N",
                     help="calibrate on N sequences sampled from the dense model (the default source)")
    b.add_argument("--tokens", type=int, default=8192, help="calibration tokens (with --text or by default)")
    b.add_argument("--seq-len", type=int, default=128, help="calibration sequence length")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--overwrite", action="store_true", help="replace a database already in --out")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(fn=_cmd_build_db, symmetric=False)

    p.add_argument("--model", help="model directory, .gguf file, or smollm2-135m")
    p.add_argument("--method", choices=("sparsity", "quant", "depth", "depth+quant"), default="sparsity")
    p.add_argument("--target", type=float,
                   help="average sparsity (0..1), bits per weight (quant, depth+quant), or for depth K: the number "
                        "of attention AND of MLP sub-blocks to drop (an integer >= 1), or a fraction (0..1) of "
                        "the blocks")
    p.add_argument("--db-method", choices=("sparsegpt", "magnitude", "wanda", "gptq", "rtn"), default=None,
                   help="how the layer database is built when --db is not given (default sparsegpt / gptq)")
    p.add_argument("--db", "--database", dest="database", default=None,
                   help="a layer database of this model built by `evoforge compress build-db`")
    p.add_argument("--db-levels", type=int, default=4, help="sparsity levels on each side of the target")
    p.add_argument("--db-step", type=int, default=None, help="weights pruned per sparsity level step")
    p.add_argument("--bits", type=_bits_list, default=list(range(2, 9)), help="bit-widths, e.g. 2..8 or 2,3,4")
    p.add_argument("--group-size", type=int, default=64)
    sym = p.add_mutually_exclusive_group()
    sym.add_argument("--symmetric", dest="symmetric", action="store_true", help="symmetric grids (no zero points)")
    sym.add_argument("--asymmetric", dest="symmetric", action="store_false", help="asymmetric grids (default)")
    p.add_argument("--count-metadata", action="store_true",
                   help="quant: the bit budget counts the 16-bit scales and the zero points of every group")
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--offspring", type=int, default=8)
    p.add_argument("--stages", default=None, help="selection stages survivors:tokens, e.g. 4:256,1:all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compute-dtype", choices=("bfloat16",), default=None,
                   help="evaluate the search's candidates (and the calibration forward of a database built by the "
                        "run) in bfloat16 (autocast; about 2.5x faster on CPUs with AMX or AVX-512 BF16); the "
                        "reported KL and perplexity stay in the model's dtype")
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
    p.set_defaults(fn=_cmd_compress, symmetric=False)
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
    if args.fn is _cmd_compress and (args.model is None or args.target is None):
        missing = [f"--{n}" for n in ("model", "target") if getattr(args, n) is None]
        parser.error(f"compress needs {' and '.join(missing)} (or use `evoforge compress build-db`)")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
