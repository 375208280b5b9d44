"""KL fitness benchmark: evoforge.kl (fused, one pass per student row; full vocabulary and top K)
against the EvoPress reference's way, torch ``log_softmax`` twice + ``kl_div`` (batchmean), on the
same float32 logits and the same number of threads.

    evoforge bench kl [--quick] [--tokens 4096] [--vocab 49152] [--top-k 256] [--out FILE]

Logits: teacher N(0, 3^2), student = teacher + N(0, 1). torch's time counts both log_softmax
(the reference recomputes the teacher's each time); evoforge's counts only the student pass, and
the one-off teacher preparation is reported on its own row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import evoforge
from evoforge import kl
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness


def run(shapes, top_k: int, *, repeats: int = 5, budget_s: float = 10.0) -> dict:
    import torch

    threads = evoforge.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    for T, V in shapes:
        rows += _one(T, V, top_k, threads, repeats, budget_s)
    return {"machine": _harness.machine(), "torch": torch.__version__, "rows": rows}


def _one(
    T: int, V: int, top_k: int, threads: int, repeats: int, budget_s: float
) -> list[dict]:
    import torch
    import torch.nn.functional as F

    rows = []
    g = torch.Generator().manual_seed(0)
    t = torch.randn(T, V, generator=g) * 3
    s = t + torch.randn(T, V, generator=g)

    def ref():
        return F.kl_div(
            F.log_softmax(s, -1),
            F.log_softmax(t, -1),
            log_target=True,
            reduction="batchmean",
        ).item()

    want = ref()
    m_ref = _harness.measure(ref, repeats=repeats, budget_s=budget_s)
    m_prep = _harness.measure(
        lambda: kl.teacher_targets(t), repeats=3, budget_s=budget_s
    )
    m_prep_k = _harness.measure(
        lambda: kl.teacher_targets(t, top_k=top_k), repeats=3, budget_s=budget_s
    )
    te, tk = kl.teacher_targets(t), kl.teacher_targets(t, top_k=top_k)
    got = kl.kl_divergence(te, s)
    m_full = _harness.measure(
        lambda: kl.kl_divergence(te, s), repeats=repeats, budget_s=budget_s
    )
    m_topk = _harness.measure(
        lambda: kl.kl_divergence(tk, s), repeats=repeats, budget_s=budget_s
    )
    gb = T * V * 4 / 1e9
    for name, m, extra in (
        ("torch log_softmax x2 + kl_div", m_ref, {"kl": want}),
        ("evoforge full vocab", m_full, {"kl": got, "abs_err": abs(got - want)}),
        (f"evoforge top-{top_k}", m_topk, {"kl": kl.kl_divergence(tk, s)}),
        ("evoforge teacher_targets (once)", m_prep, {"teacher_bytes": te.nbytes}),
        (
            f"evoforge teacher_targets top-{top_k} (once)",
            m_prep_k,
            {"teacher_bytes": tk.nbytes},
        ),
    ):
        rows.append(
            {
                "tokens": T,
                "vocab": V,
                "method": name,
                "threads": threads,
                **m,
                "speedup_vs_torch": m_ref["median_ms"] / m["median_ms"],
                "student_GB_per_s": gb / (m["median_ms"] / 1e3),
                **extra,
            }
        )
    return rows


def main(argv=None) -> int:
    ap = OneLineParser(
        prog="evoforge bench kl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="512 x 49152 only")
    ap.add_argument("--tokens", type=int, nargs="+", default=None)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--top-k", type=int, default=256)
    ap.add_argument("--out", default=str(Path("bench/results/kl.json")))
    a = ap.parse_args(argv)
    tokens = a.tokens or ([512] if a.quick else [512, 4096])
    res = run([(T, a.vocab) for T in tokens], a.top_k, repeats=3 if a.quick else 5)
    _harness.print_table(
        ["T x V", "method", "threads", "median ms", "IQR ms", "x torch", "KL"],
        [
            [
                f"{r['tokens']}x{r['vocab']}",
                r["method"],
                r["threads"],
                _harness.fmt_ms(r["median_ms"]),
                _harness.fmt_ms(r["iqr_ms"]),
                f"{r['speedup_vs_torch']:.2f}",
                f"{r['kl']:.6f}" if "kl" in r else "-",
            ]
            for r in res["rows"]
        ],
    )
    print("wrote", _harness.write_json(a.out, res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
