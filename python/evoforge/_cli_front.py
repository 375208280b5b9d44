"""The command line of fronts: the options of ``evoforge compress --method front`` and ``--method
subnet``, their summary, and ``evoforge compress export RUN_DIR --point I --out DIR [--packed]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evoforge._cli_parser import int_at_least
from evoforge.errors import ConfigError

__all__ = ["FRONT_KNOBS", "add_export", "add_options", "print_front"]

# compress options of the fronts whose dest is a FrontConfig / SubnetConfig field of the same name
FRONT_KNOBS = ("space", "objectives", "sparsities", "pop_size", "screen", "screen_depth", "latency_tokens", "widths",
               "attention", "pooling")


def _shares(s: str) -> list[float]:
    try:
        out = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must look like 0,0.3,0.5,0.7 (shares), got {s!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"must list at least one share, got {s!r}")
    return out


def _objectives(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def add_options(p: argparse.ArgumentParser) -> None:
    """The front's options of ``evoforge compress`` (default None: FrontConfig's defaults)."""
    g = p.add_argument_group("front (--method front)")
    g.add_argument("--space", default=None, help="sparsity, quant or sparsity+quant (default)")
    g.add_argument("--objectives", type=_objectives, default=None,
                   help="two or more of kl,bytes,latency (front; default kl,bytes) or kl|cosine,params,latency (subnet; "
                        "default kl,params; cosine for encoders)")
    g.add_argument("--sparsities", type=_shares, default=None, help="shares pruned per layer, e.g. 0,0.3,0.5,0.7")
    g.add_argument("--pop-size", type=int_at_least(2), default=None, help="NSGA-II population")
    g.add_argument("--screen", type=int_at_least(1), default=None,
                   help="make K times more offspring and evaluate those a ridge predictor ranks best (1: off)")
    g.add_argument("--screen-depth", type=int_at_least(1), default=None,
                   help="generations evolved on the predictions before the screen chooses (default 3; 1: the "
                        "population's own offspring)")
    g.add_argument("--latency-tokens", type=int_at_least(1), default=None,
                   help="tokens per forward of the latency objective (1: batch-1 decoding)")
    s = p.add_argument_group("sub-networks (--method subnet; also --objectives, --pop-size, --screen, --screen-depth, "
                             "--latency-tokens)")
    s.add_argument("--widths", type=_shares, default=None,
                   help="MLP shares a block may keep, ascending, ending with 1 (0: drop), e.g. 0,0.25,0.5,0.75,1")
    s.add_argument("--keep-heads", dest="attention", action="store_const", const=False, default=None,
                   help="search the MLP widths only; every block keeps all its heads")
    s.add_argument("--pooling", choices=("auto", "mean", "cls", "max"), default=None,
                   help="encoders: how token states become a sentence embedding (auto: the model directory's "
                        "sentence-transformers Pooling module)")


def print_front(res: Any) -> None:
    unit = "blocks" if res.method == "subnet" else "layers"
    print(f"front over {res.space} ({len(res.layers)} {unit}, {res.generations} generations, {res.evaluations} "
          f"evaluations): {len(res.points)} non-dominated points")
    print(res.table())
    if res.run_dir:
        rd = Path(res.run_dir)
        print(f"front: {rd / 'front.csv'}, {rd / 'front.png'}; report: {rd / 'report.md'}")
        print(f"export a point: evoforge compress export {rd} --point I --out DIR"
              f"{'' if res.method == 'subnet' else ' --packed'}")


def add_export(csub: argparse._SubParsersAction) -> None:
    e = csub.add_parser("export", help="write one point of a front run as a model")
    e.add_argument("run_dir", help="the run directory of an `evoforge compress --method front` or `subnet` run")
    e.add_argument("--point", type=int_at_least(0), required=True, help="the point's row in front.csv")
    e.add_argument("--out", required=True, help="directory to write the model to")
    e.add_argument("--packed", action="store_true",
                   help="packed layers (evoforge.layers.load reads them) instead of a dense Hugging Face model "
                        "(front; a sub-network is always a real smaller model: evoforge.compress.load_subnet)")
    e.add_argument("--model", default=None, help="the dense model (default: the one the run recorded)")
    e.add_argument("--heal-steps", type=int_at_least(0), default=0,
                   help="sub-networks: distil the cut model against the full one for this many steps first")
    e.add_argument("--heal-lr", type=float, default=1e-4, help="learning rate of --heal-steps (AdamW)")
    e.set_defaults(fn=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from evoforge.compress import load_front, load_model

    res = load_front(args.run_dir)
    if args.point >= len(res.points):
        raise ConfigError(f"--point {args.point}: the front has {len(res.points)} points (0..{len(res.points) - 1})")
    model, tok = (None, None) if args.model is None else load_model(args.model)
    out = res.export(args.point, args.out, packed=args.packed, model=model, tokenizer=tok, heal_steps=args.heal_steps,
                     heal_lr=args.heal_lr)
    p = res.points[args.point]
    print(f"point {args.point} ({', '.join(f'{k} {v:.6g}' for k, v in p['heldout'].items())}) -> {out}"
          f"{' (packed)' if args.packed and res.method != 'subnet' else ''}")
    if args.heal_steps:
        import json

        from evoforge.compress.subnet_model import SUBNET_FILE

        h = json.loads((Path(out) / SUBNET_FILE).read_text())["heal"]
        print(f"healed {h['steps']} steps: held-out KL {h['heldout_kl_before']:.4f} -> {h['heldout_kl_after']:.4f}")
    return 0
