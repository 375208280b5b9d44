"""Layer solver benchmark: evoforge.solvers (SparseGPT ladder, GPTQ) against the same algorithms
written the reference's way (torch ops in a Python column loop, float32, the factorisation
redone for every level), on SmolLM2-135M's linear layer shapes, in the same process on the same
number of threads.

    evoforge bench solvers [--quick] [--levels 7] [--out FILE]

Shapes (out x in): q/o 576x576, k/v 192x576, gate/up 1536x576, down 576x1536; calibration
inputs have a random covariance (4096 samples). SparseGPT: 7 unstructured levels
(0.2, 0.3, ..., 0.8) per layer, block 128, 1% dampening. GPTQ: 3 bits, group 128, asymmetric.
Ours factorises H once per layer and solves all levels in one pass; the peer factorises per
level, as the reference's database builder does. The estimate for SmolLM2 scales the per-shape
times by the 30 decoder layers (210 linear layers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import evoforge
from evoforge import solvers
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness

# name -> (rows, cols, layers of that shape in SmolLM2-135M)
SHAPES = {
    "q/o 576x576": (576, 576, 60),
    "k/v 192x576": (192, 576, 60),
    "gate/up 1536x576": (1536, 576, 60),
    "down 576x1536": (576, 1536, 30),
}
QUICK = ("q/o 576x576", "gate/up 1536x576", "down 576x1536")


def make_layer(rows: int, cols: int, seed: int = 0, n: int = 4096):
    """(W float32 (rows, cols), H float32 (cols, cols)) with correlated inputs."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((cols, cols)).astype(np.float32) / np.sqrt(cols)
    X = rng.standard_normal((n, cols)).astype(np.float32) @ A
    X *= np.exp(0.5 * rng.standard_normal(cols)).astype(np.float32)
    H = (2.0 / n) * (X.T @ X)
    W = (0.02 * rng.standard_normal((rows, cols))).astype(np.float32)
    return W, H.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# The peer: the reference's way, in torch, float32.


def _torch_factor(torch, H, percdamp=0.01):
    H = H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0])
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    return torch.linalg.cholesky(Hinv, upper=True), dead


def torch_sparsegpt(torch, W, H, counts, bs=128):
    U, dead = _torch_factor(torch, H)
    W = W.clone()
    W[:, dead] = 0
    R, C = W.shape
    for b, i1 in enumerate(range(0, C, bs)):
        i2 = min(i1 + bs, C)
        B = i2 - i1
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        E = torch.zeros(R, B)
        score = W1**2 / torch.diag(U1).reshape(1, -1) ** 2
        order = score.argsort(dim=1, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(B).expand(R, B))
        mask = rank < counts[:, b : b + 1]
        for i in range(B):
            w = W1[:, i]
            q = w.clone()
            q[mask[:, i]] = 0
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err.unsqueeze(1).matmul(U1[i, i:].unsqueeze(0))
            W1[:, i] = q
            E[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= E.matmul(U[i1:i2, i2:])
    return W


def torch_gptq(torch, W, H, bits=3, gs=128, bs=128):
    U, dead = _torch_factor(torch, H)
    W = W.clone()
    W[:, dead] = 0
    R, C = W.shape
    maxq = 2**bits - 1
    scale = zero = None
    for i1 in range(0, C, bs):
        i2 = min(i1 + bs, C)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        E = torch.zeros(R, i2 - i1)
        for i in range(i2 - i1):
            if (i1 + i) % gs == 0:
                x = W1[:, i : i + gs]
                xmin = torch.clamp(x.min(1).values, max=0)
                xmax = torch.clamp(x.max(1).values, min=0)
                both = (xmin == 0) & (xmax == 0)
                xmin[both], xmax[both] = -1, 1
                scale = (xmax - xmin) / maxq
                zero = torch.round(-xmin / scale)
            w = W1[:, i]
            q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
            q = scale * (q - zero)
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err.unsqueeze(1).matmul(U1[i, i:].unsqueeze(0))
            W1[:, i] = q
            E[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= E.matmul(U[i1:i2, i2:])
    return W


# ------------------------------------------------------------------------------------------------


def run(shapes, levels, *, repeats=3, budget_s=20.0) -> dict:
    import torch

    threads = evoforge.get_num_threads()
    torch.set_num_threads(threads)
    sparsities = [round(0.2 + 0.6 * k / max(1, levels - 1), 4) for k in range(levels)]
    peer = f"torch-eager reference {torch.__version__}"
    rows_out = []
    for name in shapes:
        R, C, count = SHAPES[name]
        W, H = make_layer(R, C, seed=R + C)
        Wt, Ht = torch.from_numpy(W), torch.from_numpy(H)
        counts = [torch.from_numpy(solvers.prune_counts(R, C, 128, s).astype(np.int64)) for s in sparsities]

        def ours_sparse(W=W, H=H):
            return solvers.sparsegpt_levels(W, H, sparsities)

        def peer_sparse(Wt=Wt, Ht=Ht, counts=counts):
            return [torch_sparsegpt(torch, Wt, Ht, c) for c in counts]

        def ours_gptq(W=W, H=H):
            return solvers.gptq(W, H, 3, group_size=128)

        def peer_gptq(Wt=Wt, Ht=Ht):
            return torch_gptq(torch, Wt, Ht, 3, 128)

        mine, theirs = ours_sparse(), peer_sparse()
        err_s = max(float(np.abs(mine[k] - theirs[k].numpy()).max()) for k in range(levels))
        agree = float(np.mean([((mine[k] == 0) == (theirs[k].numpy() == 0)).mean() for k in range(levels)]))
        oq, pq = ours_gptq().weight, peer_gptq().numpy()
        err_q = float(np.abs(oq - pq).max())
        rel_q = float(np.linalg.norm(oq - pq) / np.linalg.norm(pq))
        rel_s = max(float(np.linalg.norm(mine[k] - theirs[k].numpy()) / np.linalg.norm(theirs[k].numpy()))
                    for k in range(levels))
        t = {
            key: _harness.measure(fn, repeats=repeats, budget_s=budget_s)["median_ms"]
            for key, fn in (("ours_s", ours_sparse), ("peer_s", peer_sparse), ("ours_q", ours_gptq), ("peer_q", peer_gptq))
        }
        row = {
            "shape": name, "rows": R, "cols": C, "layers_in_smollm2": count, "levels": levels,
            "sparsegpt_peer_ms": t["peer_s"], "sparsegpt_ours_ms": t["ours_s"],
            "sparsegpt_ratio": t["peer_s"] / t["ours_s"], "sparsegpt_max_abs_err": err_s,
            "sparsegpt_zero_pattern_agreement": agree, "sparsegpt_rel_diff": rel_s,
            "gptq_peer_ms": t["peer_q"], "gptq_ours_ms": t["ours_q"], "gptq_ratio": t["peer_q"] / t["ours_q"],
            "gptq_max_abs_err": err_q, "gptq_rel_diff": rel_q,
        }
        rows_out.append(row)
        print(f"  {name}: sparsegpt x{levels} ours {_harness.fmt_ms(t['ours_s'])} ms, peer "
              f"{_harness.fmt_ms(t['peer_s'])} ms; gptq ours {_harness.fmt_ms(t['ours_q'])} ms, peer "
              f"{_harness.fmt_ms(t['peer_q'])} ms", flush=True)
    return {"peer": peer, "threads": threads, "sparsities": sparsities, "rows": rows_out}


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench solvers", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three shapes, one timed run each")
    ap.add_argument("--levels", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="threads for evoforge and torch (default: evoforge's)")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/solvers.json)")
    args = ap.parse_args(argv)
    shapes = QUICK if args.quick else tuple(SHAPES)
    if args.threads > 0:
        evoforge.set_num_threads(args.threads)
    meta = _harness.machine()
    print(f"evoforge {meta['evoforge']} on {meta['cpu']} ({meta['cores']} cores), {meta['date']}", flush=True)
    res = run(shapes, args.levels, repeats=1 if args.quick else 3, budget_s=5.0 if args.quick else 20.0)
    threads = res["threads"]
    print(f"\nmedian ms, {threads} thread(s); peer = {res['peer']} (ratio > 1: evoforge faster);"
          " rel diff = max over levels of ||ours - peer||_F / ||peer||_F")
    table = []
    for r in res["rows"]:
        table.append([
            r["shape"], _harness.fmt_ms(r["sparsegpt_peer_ms"]), _harness.fmt_ms(r["sparsegpt_ours_ms"]),
            f"{r['sparsegpt_ratio']:.1f}x", f"{r['sparsegpt_rel_diff']:.1e}",
            _harness.fmt_ms(r["gptq_peer_ms"]), _harness.fmt_ms(r["gptq_ours_ms"]), f"{r['gptq_ratio']:.1f}x",
            f"{r['gptq_rel_diff']:.1e}",
        ])
    _harness.print_table(
        ["shape", f"sparsegpt x{args.levels} peer", "ours", "ratio", "rel diff",
         "gptq 3b peer", "ours", "ratio", "rel diff"], table)
    summary = {}
    if {r["shape"] for r in res["rows"]} == set(SHAPES):
        for who in ("peer", "ours"):
            summary[f"smollm2_sparsegpt_{who}_s"] = sum(
                r[f"sparsegpt_{who}_ms"] * r["layers_in_smollm2"] for r in res["rows"]) / 1e3
            summary[f"smollm2_gptq_{who}_s"] = sum(
                r[f"gptq_{who}_ms"] * r["layers_in_smollm2"] for r in res["rows"]) / 1e3
        print(f"\nSmolLM2-135M, 210 layers x {args.levels} SparseGPT levels: peer "
              f"{summary['smollm2_sparsegpt_peer_s']:.1f} s, evoforge {summary['smollm2_sparsegpt_ours_s']:.1f} s"
              f" (the EvoPress reference spends about 139 s here); GPTQ 3-bit, 210 layers: peer "
              f"{summary['smollm2_gptq_peer_s']:.1f} s, evoforge {summary['smollm2_gptq_ours_s']:.1f} s")
    out = Path(args.out) if args.out else Path("bench/results/solvers.json")
    _harness.write_json(out, {"benchmark": "solvers", "machine": meta, **res, "summary": summary})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
