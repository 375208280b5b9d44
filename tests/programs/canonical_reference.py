"""The canonical form in plain Python (sets and dicts, one instruction at a time): the tests' reference for
the native one behind :meth:`evoforge.programs.Program.canonical`."""

from __future__ import annotations

import numpy as np

from evoforge.interpreter import element_index
from evoforge.programs import OPS, Program
from evoforge.programs.program import RESERVED, V_GET
from evoforge.programs.ops import NOOP


def canonical(self: Program) -> Program:
    """:meth:`Program.canonical` (see its docstring), one instruction at a time."""
    self.validate()
    keep = _live_masks(self)
    maps: dict[str, dict[int, int]] = {t: {r: r for r in rs} for t, rs in RESERVED.items()}
    nxt = {t: len(rs) for t, rs in RESERVED.items()}

    def rename(t: str, r: int) -> int:
        m = maps[t]
        if r not in m:
            m[r] = nxt[t]
            nxt[t] += 1
        return m[r]

    code, imm = {}, {}
    for n, c in self.components.items():
        rows, vals = [], []
        for i in np.flatnonzero(keep[n]):
            op = OPS[int(c[i, 0])]
            ins = [rename(t, int(c[i, 2 + k])) for k, t in enumerate(op.ins)]
            out = rename(op.out, int(c[i, 1]))
            rows.append([op.id, out, *ins, *[0] * (2 - len(ins))])
            x = float(self.imm[n][i]) if op.reads_imm else 0.0
            vals.append(float(element_index(x, self.dim)) if op.id == V_GET else x)
        code[n] = np.array(rows, dtype=np.int32).reshape(-1, 4)
        imm[n] = np.array(vals, dtype=np.float64)
    return Program(code, imm, n_scalar=self.n_scalar, n_vector=self.n_vector, n_matrix=self.n_matrix,
                   dim=self.dim)


# liveness---------------------------------------------------------------------------------------


def _transfer(code: np.ndarray, live_out: set[tuple[str, int]]) -> tuple[set[tuple[str, int]], np.ndarray]:
    """Backward liveness through one component: (registers live at its start, instructions kept)."""
    live = set(live_out)
    keep = np.zeros(len(code), dtype=bool)
    for i in range(len(code) - 1, -1, -1):
        op = OPS[int(code[i, 0])]
        if op.id == NOOP:
            continue
        out = (op.out, int(code[i, 1]))
        if out in live:  # every op overwrites the whole of its output
            keep[i] = True
            live.discard(out)
            live.update((t, int(code[i, 2 + k])) for k, t in enumerate(op.ins))
    return live, keep


def _live_masks(p: Program) -> dict[str, np.ndarray]:
    s0, s1, v0 = ("s", 0), ("s", 1), ("v", 0)
    if p.kind == "function":
        return {"predict": _transfer(p.components["predict"], {s1})[1]}
    pred, learn = p.components["predict"], p.components["learn"]
    pred_in: set[tuple[str, int]] = set()
    learn_in: set[tuple[str, int]] = set()
    while True:  # the sets only grow, and are finite
        pred_out = {s1} | (learn_in - {s0}) | (pred_in - {v0})
        new_pred_in, keep_pred = _transfer(pred, pred_out)
        new_learn_in, keep_learn = _transfer(learn, new_pred_in - {v0})
        if new_pred_in == pred_in and new_learn_in == learn_in:
            break
        pred_in, learn_in = new_pred_in, new_learn_in
    keep_setup = _transfer(p.components["setup"], pred_in - {v0})[1]
    return {"setup": keep_setup, "predict": keep_pred, "learn": keep_learn}
