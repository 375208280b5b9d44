"""The ``evoforge`` command line.

Bad input never shows a traceback: usage errors and expected failures print one line
``evoforge: error: ...`` to stderr and exit 2; anything unexpected prints one line
``evoforge: internal error: ...`` and exits 1. ``EVOFORGE_DEBUG=1`` re-raises instead, for the
traceback. Arguments are checked before any model is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

from evoforge import _cli_dashboard, _cli_front, _cli_merge, _cli_programs
from evoforge import _cli_neuro
from evoforge._cli_parser import OneLineParser as _Parser
from evoforge._cli_parser import int_at_least as _int_at_least
from evoforge._cli_parser import positive_float as _positive_float_arg
from evoforge._cli_parser import one_line as _one_line
from evoforge.errors import ConfigError, EvoforgeError


def _fail(msg: object) -> int:
    print(f"evoforge: error: {_one_line(msg)}", file=sys.stderr)
    return 2


def _group_size(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v == 0 or v < -1:
        raise argparse.ArgumentTypeError(f"must be -1 (one group per row) or an integer >= 1, got {s!r}")
    return v


def _stages(s: str) -> list[tuple[int, int | None]]:
    """``"4:256,1:all"`` -> [(4, 256), (1, None)], with the rules of OnePlusLambda: survivors >= 1,
    non-increasing, ending with 1; tokens >= 1 or ``all``. (First <= --offspring: checked later.)"""
    try:
        stages = [(int(a), None if b in ("", "all") else int(b)) for a, b in (part.split(":") for part in s.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must look like 4:256,1:all (survivors:tokens), got {s!r}") from None
    sizes = [n for n, _ in stages]
    if min(sizes) < 1 or any(t is not None and t < 1 for _, t in stages):
        raise argparse.ArgumentTypeError(f"survivors must be >= 1 and tokens >= 1 or 'all', got {s!r}")
    if sizes[-1] != 1 or any(b > a for a, b in zip(sizes, sizes[1:])):
        raise argparse.ArgumentTypeError(f"survivors must not increase and the last stage must keep 1, got {s!r}")
    return stages


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


def _check_bits(bits: list[int]) -> None:
    if not 2 <= min(bits) <= max(bits) <= 8:
        raise ConfigError(f"--bits: bits must be in [2, 8], got {bits}")


def _check_dir(option: str, path: str) -> None:
    """``path`` is, or can be made, a directory: its nearest existing ancestor is a writable directory."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise ConfigError(f"{option} {path!r}: {str(q)!r} exists and is not a directory")
            if not os.access(q, os.W_OK | os.X_OK):
                raise PermissionError(f"{option} {path!r}: {str(q)!r} is not writable")
            return


def _check_positions(model, option: str, n: int) -> None:
    """A window longer than the model's positions runs for minutes before it fails, or silently
    degrades: refuse it right after the model loads."""
    cfg = model.config
    limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if isinstance(limit, int) and n > limit:
        raise ConfigError(f"{option} {n} is longer than the model's {limit} positions")


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


def _load_model(C, path: str, quiet: bool):
    """``C.load_model(path)``; with --quiet without transformers' "Loading weights" progress bar (its
    setting is restored afterwards)."""
    if not quiet:
        return C.load_model(path)
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return C.load_model(path)
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _compress_package(cmd: str):
    """The compression package, or an ImportError saying what to install."""
    try:
        import evoforge.compress as compress
    except ImportError as e:
        raise ImportError(f"{cmd} needs torch and transformers (pip install evoforge[hf]): {e}") from e
    return compress


# compress options whose dest is a config field of the same name (the config holds their defaults)
_KNOBS = ("target", "database", "db_method", "db_levels", "db_step", "bits", "group_size", "symmetric",
          "count_metadata", "generations", "offspring", "stages", "seed", "compute_dtype", "device", "calib_text",
          "n_calib", "n_heldout", "seq_len", "backend", *_cli_front.FRONT_KNOBS)
_OPTION_OF = {"database": "--db", "export": "--no-export", "progress": "--quiet",
              "backend_options": "--workers / --timeout / --address"}


def _option(field: str) -> str:
    """How a config field is given on the command line (for the config's messages)."""
    return _OPTION_OF.get(field, "--" + field.replace("_", "-"))


def _compress_config(args: argparse.Namespace):
    """The compression config of the ``compress`` arguments, checked (before the model loads):
    options not given take the config's defaults; returns it with the run directory."""
    from evoforge.compress.config import check_text_file
    from evoforge.compress.settings import config_for

    knobs = {k: getattr(args, k) for k in _KNOBS if getattr(args, k) is not None}
    knobs.update(export=not args.no_export, progress=not args.quiet)
    if args.address is not None and args.backend != "ray":
        raise ConfigError("--address needs --backend ray")
    if args.backend not in (None, "inprocess"):  # options of the in-process backend are ignored, as always
        opts = {"workers": args.workers, "timeout": args.timeout, "address": args.address}
        knobs["backend_options"] = {k: v for k, v in opts.items() if v is not None}
    config = config_for(args.method, knobs, spell=_option)
    config.validate(spell=_option)
    if args.eval_text is not None:
        check_text_file("--eval-text", args.eval_text, "evaluation text")
    run_dir = args.run_dir
    if run_dir is None:
        stem = Path(str(args.model).rstrip("/")).name or "model"
        what = getattr(config, "space", None) or (f"{float(config.target):g}" if config.method != "subnet" else
                                                  "heads+mlp" if config.attention else "mlp")
        run_dir = f"evoforge-runs/{stem}-{config.method}-{what}"
    _check_dir("--run-dir", run_dir)
    if args.json is not None:
        if Path(args.json).is_dir():
            raise ConfigError(f"--json {args.json!r} is a directory")
        _check_dir("--json", str(Path(args.json).parent))
    return dataclasses.replace(config, run_dir=run_dir)


def _cmd_compress(args: argparse.Namespace) -> int:
    import time

    C = _compress_package("compress")
    from evoforge.compress.report import budget_line, summary_table, write_report

    config = _compress_config(args)
    if config.backend == "ray":  # an unreachable cluster fails now, not after loading the model
        from evoforge.evaluate.ray_actors import connect

        connect(args.address)
    if hasattr(config, "check_architecture"):  # what the model is, from its config.json, before it loads
        from evoforge.compress.models import architectures_of

        for arch in architectures_of(args.model)[:1]:
            config.check_architecture(arch)
    model, tok = _load_model(C, args.model, args.quiet)  # a missing model fails here, before anything loads
    eval_text = args.eval_text or args.calib_text
    if eval_text is not None:  # else these fail only after the search
        if tok is None:
            raise ConfigError("--calib-text and --eval-text need a tokenizer (the model directory has none)")
        _check_positions(model, "--window", args.window)
    _check_positions(model, "--seq-len", config.seq_len)
    # workers load the model from its path (shared storage) rather than receive a copy
    in_process = config.backend in (None, "inprocess")
    res = C.compress(model if in_process else args.model, config, tokenizer=tok)
    if isinstance(res, C.FrontResult):
        if res.model is None and res.run_dir:  # the path the front's points export from
            from evoforge.compress.front_result import write_front

            res.model = str(args.model)
            write_front(res, res.run_dir)
        _cli_front.print_front(res)
        return 0
    if eval_text is not None:
        t0 = time.perf_counter()
        ids = C.text_ids(tok, eval_text)
        C.compare_perplexity(res, ids, window=args.window, max_windows=args.max_windows)
        res.times["perplexity"] = time.perf_counter() - t0
        n = min(ids.numel() // args.window, args.max_windows)
        res.notes.append(f"perplexity: {n} non-overlapping windows of {args.window} tokens of {eval_text}"
                         + (" (the calibration file)" if args.eval_text is None else ""))
        if res.model_dir:  # the exported configuration was written before the perplexities
            cfg_path = Path(res.run_dir) / "config.json"
            cfg = json.loads(cfg_path.read_text())
            cfg["ppl"] = res.ppl
            cfg_path.write_text(json.dumps(cfg, indent=1))
        write_report(res, res.run_dir)
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
    import time

    C = _compress_package("build-db")
    from evoforge.compress.calibration import sample_sequences, tokens_from_text
    from evoforge.compress.config import CompressConfig, check_text_file, field_default
    from evoforge.compress.database import MANIFEST, QUANT_METHODS

    # every argument before the model loads (build_database checks its own only after calibrating);
    # options not given take build_database's defaults (the compression configs')
    quant = args.method in QUANT_METHODS
    if quant and args.bits is not None:
        _check_bits(args.bits)
    elif not quant and args.target is not None and not 0.0 <= args.target < 1.0:
        raise ConfigError(f"--target: sparsity must lie in [0, 1), got {args.target}")
    if args.text is not None:
        check_text_file("--text", args.text, "calibration text")
    _check_dir("--out", args.out)
    if (Path(args.out) / MANIFEST).exists() and not args.overwrite:
        raise FileExistsError(f"--out {args.out!r} already holds a layer database; pass --overwrite to replace it")
    seq_len = args.seq_len if args.seq_len is not None else field_default(CompressConfig, "seq_len")
    seed = args.seed if args.seed is not None else field_default(CompressConfig, "seed")
    n_tokens = (args.model_samples * seq_len) if args.model_samples else args.tokens
    if n_tokens > 2**31:
        raise ConfigError(f"{'--model-samples' if args.model_samples else '--tokens'}: at most 2**31 calibration "
                          f"tokens, got {n_tokens}")
    if args.levels is not None and args.levels >= 2**31:
        raise ConfigError(f"--levels must be below 2**31, got {args.levels}")

    t0 = time.perf_counter()
    model, tok = _load_model(C, args.model, args.quiet)
    adapter = C.adapt(model)
    tokens, calib = None, None
    if args.method in ("wanda", "sparsegpt", "gptq"):
        _check_positions(model, "--seq-len", seq_len)
        n = args.model_samples or math.ceil(args.tokens / seq_len)
        if args.text is not None:
            if tok is None:
                raise ConfigError("--text needs a tokenizer (the model directory has none); use --model-samples")
            tokens = tokens_from_text(tok, args.text, n, seq_len, seed=seed)
            calib = {"source": "text", "file": str(args.text), "seed": seed}
        else:
            bos = getattr(model.config, "bos_token_id", None)
            tokens = sample_sequences(model, n, seq_len, seed=seed, bos_token_id=1 if bos is None else int(bos))
            calib = {"source": "samples", "seed": seed}
    t1 = time.perf_counter()
    given = {"bits": args.bits, "group_size": args.group_size, "symmetric": args.symmetric} if quant else \
        {"sparsity": args.target, "n_levels": args.levels, "step": args.step, "values_dtype": args.values_dtype}
    kw = {k: v for k, v in given.items() if v is not None}
    db = C.build_database(adapter, tokens, args.out, method=args.method, calibration=calib,
                          overwrite=args.overwrite, progress=not args.quiet, compute_dtype=args.compute_dtype, **kw)
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
    C = _compress_package("eval")
    from evoforge.compress.config import check_text_file

    check_text_file("--text", args.text)
    model, tok = C.load_model(args.model)
    _check_positions(model, "--window", args.window)
    ids = C.text_ids(tok, args.text)
    ppl = C.perplexity(model, ids, window=args.window, max_windows=args.max_windows)
    n = ids.numel() // args.window
    if args.max_windows is not None:
        n = min(n, args.max_windows)
    print(json.dumps({"model": str(args.model), "text": str(args.text), "window": args.window, "windows": n,
                      "perplexity": ppl}))
    return 0


def _add_compress(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("compress", help="search per-layer sparsity, bit-widths or dropped sub-blocks under an "
                                        "exact budget (EvoPress); build-db: build a layer database",
                       description="An option not given takes the default of its field of the method's config "
                                   "(evoforge.compress.SparsityConfig, QuantConfig, DepthConfig, DepthQuantConfig).")
    csub = p.add_subparsers(dest="compress_command")
    b = csub.add_parser("build-db", help="build a layer database (sparsity or quantisation ladders) of a model")
    b.add_argument("--model", required=True, help="model directory, .gguf file, or smollm2-135m")
    b.add_argument("--method", required=True, choices=("magnitude", "wanda", "sparsegpt", "rtn", "gptq"))
    b.add_argument("--out", required=True, help="directory to write the database to")
    b.add_argument("--target", type=float, default=None, help="sparsity of level 0 (sparsity methods)")
    b.add_argument("--levels", type=_int_at_least(0), default=None, help="sparsity levels on each side of the target")
    b.add_argument("--step", type=_int_at_least(1), default=None,
                   help="weights pruned per sparsity level step, the same in every layer (default 5%% of the "
                        "median layer)")
    b.add_argument("--bits", type=_bits_list, default=None, help="bit-widths, e.g. 2..8 or 2,3,4")
    b.add_argument("--group-size", type=_group_size, default=None, help="quantisation group size (-1: one group per row)")
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
    src.add_argument("--model-samples", type=_int_at_least(1), default=None, metavar="N",
                     help="calibrate on N sequences sampled from the dense model (the default source)")
    b.add_argument("--tokens", type=_int_at_least(1), default=8192,
                   help="calibration tokens (with --text or by default)")
    b.add_argument("--seq-len", type=_int_at_least(2), default=None, help="calibration sequence length")
    b.add_argument("--seed", type=_int_at_least(0), default=None)
    b.add_argument("--overwrite", action="store_true", help="replace a database already in --out")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(fn=_cmd_build_db, symmetric=None)

    p.add_argument("--model", help="model directory, .gguf file, or smollm2-135m")
    p.add_argument("--method", choices=("sparsity", "quant", "depth", "depth+quant", "front", "subnet"), default=None,
                   help="what is searched (default sparsity); front: the whole front of KL against size and "
                        "latency (NSGA-II); subnet: heads and MLP widths per block (a real smaller model)")
    p.add_argument("--target", type=float,
                   help="average sparsity (0..1), bits per weight (quant, depth+quant), or for depth K: the number "
                        "of attention AND of MLP sub-blocks to drop (an integer >= 1), or a fraction (0..1) of "
                        "the blocks")
    p.add_argument("--db-method", choices=("sparsegpt", "magnitude", "wanda", "gptq", "rtn"), default=None,
                   help="how the layer database is built when --db is not given (default sparsegpt / gptq)")
    p.add_argument("--db", "--database", dest="database", default=None,
                   help="a layer database of this model built by `evoforge compress build-db`")
    p.add_argument("--db-levels", type=_int_at_least(0), default=None, help="sparsity levels on each side of the target")
    p.add_argument("--db-step", type=_int_at_least(1), default=None, help="weights pruned per sparsity level step")
    p.add_argument("--bits", type=_bits_list, default=None, help="bit-widths, e.g. 2..8 or 2,3,4")
    p.add_argument("--group-size", type=_group_size, default=None)
    sym = p.add_mutually_exclusive_group()
    sym.add_argument("--symmetric", dest="symmetric", action="store_true", help="symmetric grids (no zero points)")
    sym.add_argument("--asymmetric", dest="symmetric", action="store_false", help="asymmetric grids (default)")
    p.add_argument("--count-metadata", action="store_true", default=None,
                   help="quant: the bit budget counts the 16-bit scales and the zero points of every group")
    p.add_argument("--generations", type=_int_at_least(0), default=None)
    p.add_argument("--offspring", type=_int_at_least(1), default=None)
    p.add_argument("--stages", type=_stages, default=None, help="selection stages survivors:tokens, e.g. 4:256,1:all")
    p.add_argument("--seed", type=_int_at_least(0), default=None)
    p.add_argument("--compute-dtype", choices=("bfloat16",), default=None,
                   help="evaluate the search's candidates (and the calibration forward of a database built by the "
                        "run) in bfloat16 (autocast; about 2.5x faster on CPUs with AMX or AVX-512 BF16); the "
                        "reported KL and perplexity stay in the model's dtype")
    p.add_argument("--device", default=None, metavar="cpu|cuda[:N]",
                   help="where the whole job runs (model, teacher, KL, database build, baselines, export); the "
                        "layer database stays on the host and is streamed to the device (default cpu)")
    p.add_argument("--run-dir", default=None, help="resumable run directory (default evoforge-runs/...)")
    p.add_argument("--calib-text", default=None, help="calibration text (default: samples from the model)")
    p.add_argument("--eval-text", default=None, help="text for perplexity (default: --calib-text)")
    p.add_argument("--n-calib", type=_int_at_least(1), default=None)
    p.add_argument("--n-heldout", type=_int_at_least(1), default=None)
    p.add_argument("--seq-len", type=_int_at_least(2), default=None)
    p.add_argument("--window", type=_int_at_least(2), default=512, help="perplexity window in tokens")
    p.add_argument("--max-windows", type=_int_at_least(1), default=16)
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--backend", choices=("inprocess", "process", "ray"), default=None,
                   help="where candidates are evaluated: here, a local process pool, or Ray actors")
    p.add_argument("--address", default=None,
                   help="Ray cluster: auto (started with `ray start` on this node) or HOST:PORT of its head")
    p.add_argument("--workers", type=_int_at_least(1), default=None,
                   help="evaluation workers (default: one per GPU or CPU)")
    p.add_argument("--timeout", type=_positive_float_arg, default=None,
                   help="seconds a worker may return nothing before it counts as hung and is replaced")
    _cli_front.add_options(p)
    _cli_front.add_export(csub)
    p.set_defaults(fn=_cmd_compress, symmetric=None)
    compress = p
    p = sub.add_parser("eval", help="evaluate a model: evoforge eval ppl --model DIR --text FILE")
    p.add_argument("what", choices=("ppl",))
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--window", type=_int_at_least(2), default=512, help="perplexity window in tokens")
    p.add_argument("--max-windows", type=_int_at_least(1), default=None)
    p.set_defaults(fn=_cmd_eval)
    return compress


# failures of bad input or of the environment: one line, exit 2 (OSError covers FileNotFoundError,
# FileExistsError, IsADirectoryError, PermissionError and ConnectionError)
_EXPECTED = (EvoforgeError, ValueError, TypeError, OSError, ImportError)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="evoforge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)  # sub-parsers are _Parser too
    p = sub.add_parser("info", help="build flags, threads, CUDA compiled / GPU visible")
    p.set_defaults(fn=_cmd_info)
    p = sub.add_parser("bench", help="run a benchmark against its peers: evoforge bench pareto --quick")
    p.add_argument("name", choices=_bench_names())
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark (see --help)")
    p.set_defaults(fn=_cmd_bench)
    compress = _add_compress(sub)
    _cli_dashboard.add_dashboard(sub)
    _cli_merge.add_merge(sub)
    _cli_neuro.add_neuro(sub)
    _cli_programs.add_programs(sub)
    args = parser.parse_args(argv)
    fronts = ("front", "subnet")
    if args.fn is _cmd_compress and (args.model is None or args.target is None and args.method not in fronts):
        missing = [f"--{n}" for n in ("model", "target") if getattr(args, n) is None and not (
            n == "target" and args.method in fronts)]
        compress.error(f"compress needs {' and '.join(missing)} (or use `evoforge compress build-db`)")
    if os.environ.get("EVOFORGE_DEBUG", "") not in ("", "0"):
        return args.fn(args)  # errors keep their traceback
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("evoforge: interrupted", file=sys.stderr)
        return 130
    except _EXPECTED as e:
        return _fail(str(e) or type(e).__name__)
    except Exception as e:  # noqa: BLE001 -- a bug: one line and exit 1, the traceback on request
        what = type(e).__name__ + (f": {_one_line(e)}" if str(e) else "")
        print(f"evoforge: internal error: {what} (set EVOFORGE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
