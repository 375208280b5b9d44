"""evoforge against the EvoPress reference implementation, side by side in one run on one machine:
EvoPress's sparsity search (and, with ``--db-build``, its SparseGPT database) on the same model,
tokens, level ladder, schedule, seed and fitness.

    evoforge bench evopress_peer [--quick] [--generations 3] [--dtype float32,bfloat16]
                                 [--device cpu|cuda[:N]] [--model smollm2-135m|PATH|random:135m|1b|8b]
                                 [--db-build] [--work DIR] [--out FILE]

The reference (``../shared/peers/evopress``, Apache-2.0, unmodified) is copied to a temporary
directory and patched there (:mod:`evoforge.bench._evopress_ref` lists each patch); its
``evo_prune_search.py`` and ``prune.py`` run as subprocesses. evoforge runs in a subprocess too,
through its public API (``evoforge.compress.compress(model, SparsityConfig(...))``), so that both
sides' peak RSS (``/usr/bin/time -v``: the process and its children) is their own.

Same work on both sides
    model: SmolLM2-135M saved as a Hugging Face directory (``--model``: a directory, or
    ``random:135m|1b|8b``, a Llama of SmolLM2-135M / Llama-3.2-1B / Llama-3.1-8B shape with random
    weights, built from a config: speed does not depend on trained weights); calibration: 64 x 512
    tokens of WikiText-2 test (first half; random ids for random models), handed to the reference
    as its own calibration-file format; ladder: evoforge's 50% magnitude database (3 levels each
    side, 20,000 weights per step: 7 levels, 5 in the k/v projections), written in the reference's
    on-disk format as well, so both search the same weights; schedule: (1 + 16), stages
    4 <- 1024 and 1 <- 4096 tokens, the parent joining the last stage; fitness: KL over the full
    vocabulary (evoforge ``top_k=None``); dtype: float32 on both sides, and bfloat16 (the reference
    loads the model in bfloat16, evoforge computes under ``compute_dtype="bfloat16"``).
    ``--quick``: stories260k, 16 x 128 tokens sampled from the model, stages 4 <- 512, 1 <- 1024,
    2 generations (a smoke test of about a minute).

Measured
    seconds per generation: mean over generations 2..G of the time between the ends of consecutive
    generations (the reference: its ``Train fitnesses`` lines, time-stamped as they arrive;
    evoforge: its engine's history), so set-up (model, teacher logits, evoforge's OWL start) is
    left out; candidate tokens per second as the reference counts them (offspring x T1 + (S1 + 1)
    x T2: 36,864 per generation); database build time and size on disk; peak RSS; the training KL
    each side printed after G generations from the same seed (different RNGs, different
    minibatches: not comparable token for token); and both final configurations (and uniform)
    scored by one evaluator, evoforge's float32 KL on the first ``--score-seqs`` calibration
    sequences. evoforge starts from the better of uniform and OWL (its recipe); the reference from
    uniform.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from evoforge._cli_parser import OneLineParser, int_at_least
from evoforge.bench import _evopress_ref as ref
from evoforge.bench import _harness

STORIES = _harness.shared_data("stories260k", "hf")
TEXT = _harness.shared_data("text", "wikitext2-test.raw")
DTYPES = ("float32", "bfloat16")
#: Llama shapes for ``random:NAME``: SmolLM2-135M, Llama-3.2-1B, Llama-3.1-8B
RANDOM = {
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
               max_position_embeddings=8192),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, max_position_embeddings=8192),
}


def _tag(args) -> str:
    if args.quick:
        return "stories260k"
    m = str(args.model)
    if m.lower() == "smollm2-135m" or m.startswith("random:"):
        return m.lower().replace(":", "-")
    return Path(m).name + "-" + hashlib.sha256(str(Path(m).resolve()).encode()).hexdigest()[:8]


def _model_dirs(args, wd: Path) -> tuple[Path, Path]:
    """(model directory, tokenizer directory) the reference can load; saved in ``wd`` when needed."""
    import torch

    m = str(args.model)
    if args.quick:
        if not STORIES.is_dir():
            raise FileNotFoundError(f"stories260k not found at {STORIES}")
        tok = wd / "tokenizer"
        if not (tok / "tokenizer.json").is_file():
            ref.dummy_tokenizer(tok, 512)
        return STORIES, tok
    out = wd / "model"
    if m.startswith("random:"):
        if not (out / "config.json").is_file():
            from transformers import LlamaConfig, LlamaForCausalLM

            torch.manual_seed(0)
            model = LlamaForCausalLM(LlamaConfig(**RANDOM[m[7:]])).eval()
            model.save_pretrained(str(out))
            ref.dummy_tokenizer(out, model.config.vocab_size)
        return out, out
    if m.lower() == "smollm2-135m":
        if not (out / "config.json").is_file():
            from evoforge.compress import load_model

            model, tok = load_model(m)
            model.save_pretrained(str(out))
            tok.save_pretrained(str(out))
        return out, out
    p = Path(m)
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"--model {m!r} is not a Hugging Face model directory (no config.json)")
    has_tok = any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
    if has_tok:
        return p, p
    tok = wd / "tokenizer"
    if not (tok / "tokenizer.json").is_file():
        ref.dummy_tokenizer(tok, 1024)
    return p, tok


def prepare(args, wd: Path) -> dict:
    """The model directories, the calibration and held-out tokens (``calib.pt``: the reference's
    format; ``tokens.pt``: [N, S] tensors) and the magnitude database in both formats, in ``wd``
    (reused by later runs)."""
    import torch

    from evoforge.compress import adapt, build_database, load_model, text_ids
    from evoforge.compress.calibration import sample_sequences
    from evoforge.compress.database import MANIFEST, LayerDatabase

    wd.mkdir(parents=True, exist_ok=True)
    model_dir, tok_dir = _model_dirs(args, wd)
    model, tok = load_model(model_dir)
    adapter = adapt(model)
    n, S = args.n_calib, args.seq_len
    tp = wd / f"tokens-{n}x{S}.pt"
    if tp.is_file():
        tokens = torch.load(tp)
    else:
        if args.quick:
            both = sample_sequences(model, n + 1, S, seed=0, bos_token_id=1)
        elif str(args.model).startswith("random:") or tok is None:
            both = torch.randint(0, int(model.config.vocab_size), (n + 1, S), generator=torch.Generator().manual_seed(0))
        else:
            ids = text_ids(tok, args.text)
            first = ids[: ids.numel() // 2]
            if first.numel() < (n + 1) * S:
                raise SystemExit(f"evoforge bench evopress_peer: error: {args.text} has too few tokens")
            both = first[: (n + 1) * S].reshape(n + 1, S)
        tokens = {"calibration": both[:n].contiguous(), "heldout": both[n:].contiguous()}
        torch.save(tokens, tp)
    calib_file = wd / f"calib-{n}x{S}.pt"
    ref.write_calibration(tokens["calibration"], calib_file)
    db_dir, ref_db = wd / "db-magnitude", wd / "ref-db-magnitude"
    info_path = wd / "db-magnitude.json"
    step = None if args.quick else args.step
    stale = not info_path.is_file() or (step is not None and json.loads(info_path.read_text())["params"]["step"] != step)
    if not (db_dir / MANIFEST).is_file() or stale:
        t0 = time.perf_counter()
        db = build_database(adapter, None, db_dir, method="magnitude", sparsity=0.5, n_levels=3, step=step,
                            overwrite=True)
        t_db = time.perf_counter() - t0
        if ref_db.exists():
            shutil.rmtree(ref_db)
        t0 = time.perf_counter()
        ref.write_levels(db, ref_db)
        info = {"evoforge_s": t_db, "evoforge_bytes": ref.dir_bytes(db_dir), "reference_format_s":
                time.perf_counter() - t0, "reference_format_bytes": ref.dir_bytes(ref_db), "params": db.params}
        info_path.write_text(json.dumps(info, indent=1))
    info = json.loads(info_path.read_text())
    LayerDatabase.open(db_dir, model_fingerprint=adapter.fingerprint())  # the saved model is the database's
    del model, adapter
    return {"model_dir": str(model_dir), "tok_dir": str(tok_dir), "tokens": str(tp), "calib_file": str(calib_file),
            "db": str(db_dir), "ref_db": str(ref_db), "magnitude_db": info, "step": int(info["params"]["step"]),
            "teacher": str(wd / "teacher-evoforge")}


def _env(args) -> dict:
    if args.device.startswith("cuda:"):
        return {"CUDA_VISIBLE_DEVICES": args.device.split(":", 1)[1]}
    return {}


def _child(args, spec: dict, tmp: Path, name: str) -> tuple[dict, ref.Proc]:
    """Run an evoforge task (:func:`child`) in a subprocess; its JSON answer and the process."""
    sp, out = tmp / f"{name}.spec.json", tmp / f"{name}.out.json"
    sp.write_text(json.dumps({**spec, "out": str(out)}))
    code = f"from evoforge.bench.evopress_peer import child; child({str(sp)!r})"
    proc = ref.run_logged([sys.executable, "-c", code], cwd=Path.cwd(), env=_env(args), log=tmp / f"{name}.log",
                          prefix=f"[{name}] ", echo=args.verbose)
    if proc.rc != 0 or not out.is_file():
        raise RuntimeError(f"evoforge {name} failed (exit {proc.rc}):\n{proc.tail()}")
    return json.loads(out.read_text()), proc


def _ref_cmd(args, script: str) -> list[str]:
    if script == "prune.py" and args.device.startswith("cuda"):
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=1",
                f"--master_port={ref.free_port()}", script]
    return [sys.executable, "-u", script]


def run_reference(args, s: dict, dtype: str, copy: Path, tmp: Path) -> dict:
    n, S = args.n_calib, args.seq_len
    final = tmp / f"reference-{dtype}.configuration.txt"
    cmd = _ref_cmd(args, "evo_prune_search.py") + [
        "--model_name_or_path", s["model_dir"], "--tokenizer_name", s["tok_dir"], "--use_fast_tokenizer",
        "--calibration_data", s["calib_file"], "--calibration_tokens", str(n * S),
        "--calibration_sequence_length", str(S), "--eval_datasets", s["calib_file"], "--eval_tokens", str(S),
        "--eval_sequence_length", str(S), "--generations", str(args.generations), "--offspring", str(args.offspring),
        "--sparse_weights_path", s["ref_db"], "--survivors_per_selection", *[str(k) for k, _ in args.stages],
        "--tokens_per_selection", *[str(t) for _, t in args.stages], "--fitness_fn", "kl", "--dtype", dtype,
        "--seed", str(args.seed), "--attn_implementation", "sdpa", "--configuration_name", str(final)]
    if not args.device.startswith("cuda"):
        cmd.append("--memory_efficient")  # device_map=None: the model stays on the CPU
    proc = ref.run_logged(cmd, cwd=copy, env=_env(args), log=tmp / f"reference-{dtype}.log",
                          prefix=f"[reference {dtype}] ", echo=args.verbose)
    if proc.rc != 0:
        raise RuntimeError(f"the reference's search failed (exit {proc.rc}):\n{proc.tail()}")
    parsed = ref.parse_search(proc)
    levels = {}
    if final.is_file():
        for line in final.read_text().splitlines():
            name, _, lv = line.rpartition(":")
            levels[name.strip()] = int(lv)
    return {**parsed, "wall_s": proc.wall_s, "peak_rss": proc.peak_rss, "levels": levels}


def run_evoforge(args, s: dict, dtype: str, tmp: Path) -> dict:
    spec = {"task": "search", "setup": s, "dtype": dtype, "args": _plain_args(args), "run_dir": str(tmp / f"run-{dtype}")}
    ans, proc = _child(args, spec, tmp, f"evoforge-{dtype}")
    return {**ans, "wall_s": proc.wall_s, "peak_rss": proc.peak_rss}


def _plain_args(args) -> dict:
    return {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, list, tuple, type(None)))}


def _gen_seconds(per_gen: list[float]) -> float | None:
    """Mean seconds of generations 2..G (generation 1 holds evoforge's set-up); G = 1: None."""
    return sum(per_gen[1:]) / (len(per_gen) - 1) if len(per_gen) > 1 else None


def db_build(args, s: dict, copy: Path, tmp: Path) -> dict:
    """The reference's ``prune.py`` (SparseGPT) against evoforge's sparsegpt build, equal settings:
    50% target, 3 levels each side, the same step, damping 1%, blocks of 128, the same tokens."""
    wd = Path(s["db"]).parent
    out = wd / "ref-db-sparsegpt"
    if out.exists():
        shutil.rmtree(out)
    n, S = args.n_calib, args.seq_len
    env = {**_env(args), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(ref.free_port())}
    cmd = _ref_cmd(args, "prune.py") + [
        "--model_name_or_path", s["model_dir"], "--tokenizer_name", s["tok_dir"],
        "--prunable_modules", ".*layers.*((q|k|v|o|gate|up|down)_proj)$",
        "--pre_block_modules", "model.embed_tokens", "model.rotary_emb", "--block_modules", "model.layers",
        "--calibration_data", s["calib_file"], "--calibration_tokens", str(n * S),
        "--calibration_sequence_length", str(S), "--sparsity", "0.5", "--weights_diff", str(s["step"]),
        "--num_levels", "3", "--rel_damp", "0.01", "--block_size", "128", "--save_dir", str(out),
        "--dtype", "float32", "--attn_implementation", "sdpa"]
    proc = ref.run_logged(cmd, cwd=copy, env=env, log=tmp / "reference-prune.log", prefix="[reference prune] ",
                          echo=args.verbose)
    if proc.rc != 0:
        raise RuntimeError(f"the reference's prune.py failed (exit {proc.rc}):\n{proc.tail()}")
    took = [float(line.split()[2]) for _, line in proc.lines if line.startswith("Pruning took")]
    ans, eproc = _child(args, {"task": "db", "setup": s, "out_dir": str(wd / "db-sparsegpt")}, tmp, "evoforge-db")
    return {"reference": {"seconds": took[0] if took else None, "wall_s": proc.wall_s, "bytes": ref.dir_bytes(out),
                          "peak_rss": proc.peak_rss},
            "evoforge": {"seconds": ans["seconds"], "wall_s": eproc.wall_s, "bytes": ans["bytes"],
                         "peak_rss": eproc.peak_rss}}


def child(spec_path: str) -> None:
    """An evoforge task in its own process (``spec_path``: JSON): ``search`` (``compress()`` with a
    SparsityConfig), ``db`` (the sparsegpt build) or ``score`` (KL of level configurations on the
    calibration tokens); writes its JSON answer to ``spec["out"]``."""
    import numpy as np
    import torch

    from evoforge.compress import LayerDatabase, SparsityConfig, adapt, build_database, compress, load_model

    spec = json.loads(Path(spec_path).read_text())
    s, a = spec["setup"], spec.get("args", {})
    tokens = torch.load(s["tokens"])
    device = "cuda" if str(a.get("device", "cpu")).startswith("cuda") else "cpu"
    model = load_model(s["model_dir"])[0].to(device)
    if spec["task"] == "db":
        t0 = time.perf_counter()
        db = build_database(adapt(model), tokens["calibration"], spec["out_dir"], method="sparsegpt", sparsity=0.5,
                            n_levels=3, step=s["step"], percdamp=0.01, blocksize=128, overwrite=True)
        ans = {"seconds": time.perf_counter() - t0, "bytes": ref.dir_bytes(db.path)}
    elif spec["task"] == "search":
        rd = Path(spec["run_dir"])
        rd.mkdir(parents=True, exist_ok=True)
        Path(s["teacher"]).mkdir(parents=True, exist_ok=True)
        (rd / "teacher").symlink_to(s["teacher"], target_is_directory=True)  # reused between runs
        cfg = SparsityConfig(target=0.5, database=s["db"], n_calib=int(tokens["calibration"].shape[0]),
                             n_heldout=1, seq_len=int(tokens["calibration"].shape[1]),
                             generations=int(a["generations"]), offspring=int(a["offspring"]),
                             stages=tuple(tuple(x) for x in a["stages"]), seed=int(a["seed"]), run_dir=str(rd),
                             export=False, top_k=None, progress=False,
                             compute_dtype=None if spec["dtype"] == "float32" else spec["dtype"])
        t0 = time.perf_counter()
        res = compress(model, cfg, calibration=tokens["calibration"], heldout=tokens["heldout"])
        ans = {"seconds_total": time.perf_counter() - t0, "history": res.history, "times": res.times,
               "notes": res.notes, "levels": dict(zip(res.layers, res.levels)),
               "kl": res.kl_calib_search}
    else:  # score
        from evoforge.compress.fitness import KLFitness
        from evoforge.compress.providers import provider_for

        adapter = adapt(model)
        db = LayerDatabase.open(s["db"], model_fingerprint=adapter.fingerprint())
        prov = provider_for(db, device=device, dtype=torch.float32)
        genomes = np.stack([[lv[name] + prov.n for name in db.layers] for lv in spec["levels"]])
        fit = KLFitness(adapter, prov, tokens["calibration"][: int(a["score_seqs"])], top_k=None)
        ans = {"kl": [float(x) for x in fit.evaluate(genomes, None)]}
    Path(spec["out"]).write_text(json.dumps(ans, default=str))


def _row(side: str, dtype: str, per_gen: list[float], tokens_per_gen: int, r: dict, kl: float | None) -> dict:
    spg = _gen_seconds(per_gen)
    return {"side": side, "dtype": dtype, "seconds_per_generation": spg, "per_generation_s": per_gen,
            "candidate_tokens_per_s": None if spg is None else tokens_per_gen / spg, "peak_rss": r["peak_rss"],
            "process_wall_s": r["wall_s"], "train_kl": kl, "levels": r.get("levels", {})}


def run(args) -> dict:
    import torch

    wd = Path(args.work) / _tag(args)
    load0 = os.getloadavg()
    s = prepare(args, wd)
    (S1, T1), (_, T2) = args.stages[0], args.stages[-1]
    tokens_per_gen = args.offspring * T1 + (S1 + 1) * T2  # the reference's count (the parent joins the last stage)
    res = {"machine": _harness.machine(), "torch": torch.__version__, "model": _tag(args), "device": args.device,
           "calibration": [args.n_calib, args.seq_len], "stages": args.stages, "offspring": args.offspring,
           "generations": args.generations, "seed": args.seed, "candidate_tokens_per_generation": tokens_per_gen,
           "magnitude_db": s["magnitude_db"], "rows": [], "load_avg_start": load0}
    with tempfile.TemporaryDirectory(prefix="evoforge-evopress-") as t:
        tmp = Path(t)
        copy = tmp / "evopress"
        res["patches"] = ref.prepare_copy(ref.peer_dir(args.peer), copy, args.device)
        if args.db_build:
            res["sparsegpt_db"] = db_build(args, s, copy, tmp)
            print("database build:", json.dumps(res["sparsegpt_db"]), flush=True)
        for dtype in args.dtype:
            r = run_reference(args, s, dtype, copy, tmp)
            res["rows"].append(_row("reference", dtype, [g["seconds"] for g in r["generations"]], tokens_per_gen, r,
                                    r["generations"][-1]["kl"] if r["generations"] else None))
            res["rows"][-1]["setup_s"] = r["setup_s"]
            print(f"reference {dtype}: {r['generations']}", flush=True)
            e = run_evoforge(args, s, dtype, tmp)
            ends = [float(h["seconds"]) for h in e["history"]]
            res["rows"].append(_row("evoforge", dtype, [b - a for a, b in zip([0.0] + ends, ends)], tokens_per_gen, e,
                                    e["history"][-1]["best_fitness"] if e["history"] else None))
            res["rows"][-1].update(times=e["times"], notes=e["notes"])
            print(f"evoforge {dtype}: {[(h['generation'], h['seconds'], h['best_fitness']) for h in e['history']]}",
                  flush=True)
        if args.score_seqs:
            from evoforge.compress import LayerDatabase

            names = list(LayerDatabase.open(s["db"]).layers)
            configs = [{n: 0 for n in names}] + [r["levels"] for r in res["rows"]]
            ok = all(set(c) == set(names) for c in configs)
            if ok:
                ans, _ = _child(args, {"task": "score", "setup": s, "levels": configs, "args": _plain_args(args)},
                                tmp, "score")
                res["uniform_kl_common"] = ans["kl"][0]
                for row, kl in zip(res["rows"], ans["kl"][1:]):
                    row["kl_common"] = kl
    res["load_avg_end"] = os.getloadavg()
    if not args.keep_levels:
        for row in res["rows"]:
            row.pop("levels", None)
    return res


def _gb(b: int | None) -> str:
    if b is None:
        return "-"
    return f"{b / 2**30:.2f} GB" if b >= 2**30 else f"{b / 2**20:.1f} MB"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def report(res: dict) -> str:
    """The tables (the search's last); returns the search table's text."""
    m = res["magnitude_db"]
    db_rows = [["magnitude (search ladder)", "- (evoforge's levels, written in its format)",
                f"{m['evoforge_s']:.1f} s", _gb(m["reference_format_bytes"]), _gb(m["evoforge_bytes"]),
                _ratio(m["reference_format_bytes"], m["evoforge_bytes"])]]
    if "sparsegpt_db" in res:
        r, e = res["sparsegpt_db"]["reference"], res["sparsegpt_db"]["evoforge"]
        db_rows.append(["sparsegpt (--db-build)", f"{_num(r['seconds'], '.1f')} s (RSS {_gb(r['peak_rss'])})",
                        f"{e['seconds']:.1f} s (RSS {_gb(e['peak_rss'])})", _gb(r["bytes"]), _gb(e["bytes"]),
                        f"time {_ratio(r['seconds'], e['seconds'])}, size {_ratio(r['bytes'], e['bytes'])}"])
    _harness.print_table(["database", "reference build", "evoforge build", "reference size", "evoforge size",
                          "reference / evoforge"], db_rows)
    mc = res["machine"]
    print(f"\nmachine: {mc['cpu']} ({mc['cores']} cores), device {res['device']}; {mc['date']}; load average "
          f"{res['load_avg_start'][0]:.2f} at start, {res['load_avg_end'][0]:.2f} at end; torch {res['torch']}; "
          f"model {res['model']}, calibration {res['calibration'][0]} x {res['calibration'][1]}, (1 + "
          f"{res['offspring']}), stages {res['stages']}, {res['generations']} generations, seed {res['seed']}; "
          f"{res['candidate_tokens_per_generation']:,} candidate tokens per generation; uniform KL (common "
          f"evaluator) {_num(res.get('uniform_kl_common'), '.4f')}; the reference starts from uniform, evoforge: "
          f"{'; '.join(sorted({n for r in res['rows'] for n in r.get('notes', [])})) or '-'}\n", flush=True)
    rows = []
    by = {(r["dtype"], r["side"]): r for r in res["rows"]}
    for dtype in dict.fromkeys(r["dtype"] for r in res["rows"]):
        rr, ee = by[(dtype, "reference")], by[(dtype, "evoforge")]
        for r in (rr, ee):
            rows.append([dtype, r["side"], _num(r["seconds_per_generation"], ".2f"),
                         _num(r["candidate_tokens_per_s"], ",.0f"), _gb(r["peak_rss"]), _num(r["train_kl"], ".4g"),
                         _num(r.get("kl_common"), ".4f")])
        rows.append([dtype, "reference / evoforge", _ratio(rr["seconds_per_generation"], ee["seconds_per_generation"]),
                     _ratio(ee["candidate_tokens_per_s"], rr["candidate_tokens_per_s"]),
                     _ratio(rr["peak_rss"], ee["peak_rss"]), "-", "-"])
    return _harness.print_table(["dtype", "side", "s / generation", "candidate tokens/s", "peak RSS",
                                 "training KL (own, after G)", "KL (common evaluator)"], rows)


def main(argv=None) -> int:
    ap = OneLineParser(prog="evoforge bench evopress_peer", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="stories260k, 16 x 128 tokens, 2 generations (~1 min)")
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m, a model directory, or random:135m|1b|8b")
    ap.add_argument("--generations", type=int_at_least(1), default=None, help="default 3 (--quick: 2)")
    ap.add_argument("--dtype", default="float32,bfloat16", help="comma-separated: float32, bfloat16")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--offspring", type=int_at_least(2), default=16)
    ap.add_argument("--seed", type=int_at_least(0), default=0)
    ap.add_argument("--step", type=int_at_least(1), default=20000, help="weights per level step (not --quick)")
    ap.add_argument("--db-build", action="store_true", help="also time the SparseGPT database builds (minutes)")
    ap.add_argument("--score-seqs", type=int_at_least(0), default=16,
                    help="calibration sequences scoring both final configurations (0: skip)")
    ap.add_argument("--text", default=str(TEXT))
    ap.add_argument("--peer", default=None, help="the EvoPress folder (default ../shared/peers/evopress)")
    ap.add_argument("--work", default="/tmp/evoforge-bench-evopress", help="models, tokens, databases, teachers")
    ap.add_argument("--keep-levels", action="store_true", help="keep the final configurations in the JSON")
    ap.add_argument("--verbose", action="store_true", help="echo the subprocesses' output")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args(argv)
    a.dtype = [d.strip() for d in a.dtype.split(",") if d.strip()]
    bad = [d for d in a.dtype if d not in DTYPES]
    if bad or not a.dtype:
        ap.error(f"--dtype takes a comma-separated list of {', '.join(DTYPES)}, got {bad or 'nothing'}")
    if a.device != "cpu" and a.device != "cuda" and not (a.device.startswith("cuda:") and a.device[5:].isdigit()):
        ap.error(f"--device must be cpu, cuda or cuda:N, got {a.device!r}")
    if a.model.startswith("random:") and a.model[7:] not in RANDOM:
        ap.error(f"--model random:NAME takes one of {', '.join(sorted(RANDOM))}, got {a.model!r}")
    a.generations = a.generations or (2 if a.quick else 3)
    a.n_calib, a.seq_len = (16, 128) if a.quick else (64, 512)
    a.stages = [(4, 512), (1, 1024)] if a.quick else [(4, 1024), (1, 4096)]
    if a.stages[0][0] > a.offspring:
        ap.error(f"--offspring must be at least {a.stages[0][0]} (the first stage's survivors)")
    a.score_seqs = min(a.score_seqs, a.n_calib)
    res = run(a)
    if a.out:
        print("wrote", _harness.write_json(a.out, res))
    report(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
