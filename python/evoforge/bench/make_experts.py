"""Experts to merge (issue 18): fine-tunes of one base on two texts, made here because no pair of
fine-tunes of one base ships on PyPI; cached (a finished expert is not made again).

    evoforge bench make_experts [--models stories260k,smollm2-135m] [--out DIR] [--steps N]

stories260k: 200 AdamW steps (lr 3e-3, 8 x 128 tokens; seconds) on tinyshakespeare and on
WikiText-2 (tokenised with its llama2.c tokenizer). SmolLM2-135M: 30 steps (lr 1e-4, 4 x 128
tokens; minutes on 2 cores). Each expert is a Hugging Face directory ``OUT/MODEL/TASK``, trained on
the first 90% of its text (``OUT/texts/TASK.train.txt``); ``bench merge`` scores merges on the
last 10% (``OUT/texts/TASK.test.txt``), which no expert saw.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from evoforge._cli_parser import OneLineParser, int_at_least
from evoforge.bench import _harness

STORIES = _harness.shared_data("stories260k", "hf")
TOK = _harness.shared_data("stories260k", "tok512.bin")
TEXTS = {"shakespeare": _harness.shared_data("text", "tinyshakespeare.txt"),
         "wiki": _harness.shared_data("text", "wikitext2-test.raw")}
SETTINGS = {"stories260k": {"steps": 200, "lr": 3e-3, "batch_size": 8, "seq_len": 128},
            "smollm2-135m": {"steps": 30, "lr": 1e-4, "batch_size": 4, "seq_len": 128}}


def default_out() -> Path:
    return Path(os.environ.get("EVOFORGE_CACHE_DIR") or Path.home() / ".cache" / "evoforge") / "experts"


def load_base(name: str):
    """(model, tokenizer) of a base by name."""
    from evoforge.compress import Llama2cTokenizer, load_model

    if name == "stories260k":
        return load_model(str(STORIES))[0], Llama2cTokenizer(TOK)
    return load_model(name)


def split_texts(out: Path) -> dict[str, tuple[Path, Path]]:
    """{task: (train part, test part)}: the first 90% and the last 10% of each text (at a line)."""
    d = out / "texts"
    d.mkdir(parents=True, exist_ok=True)
    parts = {}
    for task, path in TEXTS.items():
        train, test = d / f"{task}.train.txt", d / f"{task}.test.txt"
        if not test.is_file():
            text = Path(path).read_text(encoding="utf-8", errors="replace")
            cut = text.find("\n", int(0.9 * len(text))) + 1 or int(0.9 * len(text))
            train.write_text(text[:cut], encoding="utf-8")
            test.write_text(text[cut:], encoding="utf-8")
        parts[task] = (train, test)
    return parts


def make(name: str, out: Path, steps: int | None = None) -> dict[str, str]:
    """{task: expert directory} of base ``name``, fine-tuning those not yet in ``out``."""
    import torch

    from evoforge.merge import finetune

    texts = split_texts(out)

    done = {t: out / name / t for t in TEXTS}
    if all((d / "config.json").is_file() for d in done.values()):
        return {t: str(d) for t, d in done.items()}
    base, tok = load_base(name)
    s = dict(SETTINGS[name], **({"steps": steps} if steps else {}))
    for i, task in enumerate(TEXTS):
        text = texts[task][0]
        d = done[task]
        if (d / "config.json").is_file():
            continue
        t0 = time.perf_counter()
        torch.manual_seed(i)
        e = finetune(base, text, tok, seed=i, progress=True, **s)
        e.save_pretrained(d)
        (d / "evoforge_expert.json").write_text(json.dumps({"base": name, "text": str(text), **s,
                                                            "seconds": time.perf_counter() - t0}))
        print(f"{name} -> {task}: {s['steps']} steps in {time.perf_counter() - t0:.0f} s, saved to {d}", flush=True)
    return {t: str(d) for t, d in done.items()}


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench make_experts", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="stories260k,smollm2-135m", help="comma-separated, of " + ",".join(SETTINGS))
    ap.add_argument("--out", default=str(default_out()))
    ap.add_argument("--steps", type=int_at_least(1), default=None, help="fine-tuning steps (default per model)")
    a = ap.parse_args(argv)
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    bad = sorted(set(names) - set(SETTINGS))
    if bad:
        ap.error(f"--models: unknown {bad}; choose from {','.join(SETTINGS)}")
    for n in names:
        print(json.dumps(make(n, Path(a.out), a.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
