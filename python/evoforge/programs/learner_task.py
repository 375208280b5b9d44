"""AutoML-Zero's tasks: learn a learning algorithm (setup / predict / learn) on many small tasks.

``regression``: linear regression tasks ``y = w . x`` with ``w, x ~ N(0, I_dim)``, fresh per task;
the loss of a task is ``min(1 - R^2, 2)`` of the validation predictions (2 also for NaN or inf).
``classification``: binary tasks, labels 0 / 1 in ``s0`` while ``learn`` runs; a prediction ``s1``
says class 1 when ``s1 > 0`` (``sigmoid(s1) > 1/2``); the loss is the validation error rate. Its
data: random projections to ``dim`` of two classes of sklearn's bundled ``digits`` (AutoML-Zero's
projected binary tasks, on digits instead of CIFAR-10), or, without scikit-learn or with
``source="synthetic"``, labels ``1[w . x > 0]`` of Gaussian inputs.

Fitness: the mean loss over the task's ``n_tasks`` search tasks; :meth:`LearnerTask.report` measures
a program on ``n_heldout`` fresh tasks. The functional hash probes AutoML-Zero's way: predictions on
10 training and 10 validation examples of one more task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _checks
from ..errors import ConfigError
from ..interpreter import run_learner
from .ops import check_ops
from .program import Program, assemble, pack

__all__ = ["LearnerTask", "LEARNER_OPS", "linear_regression_program"]

#: The ops of the learner searches: scalar and vector arithmetic, dot products, reductions, and a few
#: elementwise functions (no matrices: the tasks are linear, and they cost dim x dim per op).
LEARNER_OPS: tuple[str, ...] = ("s_add", "s_sub", "s_mul", "s_div", "s_abs", "s_recip", "s_exp", "s_heaviside",
                                "s_const", "v_add", "v_sub", "v_mul", "v_scale", "v_bcast", "v_dot", "v_norm",
                                "v_mean", "v_const")
_KINDS = ("regression", "classification")
#: The most feature values a task set may hold (float64: 2 GiB).
MAX_DATA = 1 << 28
_PROBE = 10


def _digits() -> tuple[np.ndarray, np.ndarray] | None:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    d = load_digits()
    return d.data.astype(np.float64) / 16.0, d.target.astype(np.int64)


class LearnerTask:
    """Tasks for AutoML-Zero learners; see the module docstring.

    Parameters
    ----------
    kind : ``"regression"`` or ``"classification"``
    dim : features per example (the vector registers' length)
    n_tasks, n_train, n_valid : search tasks and their training / validation examples
    n_heldout : fresh tasks of :meth:`report`
    epochs : passes over the training examples
    n_scalar, n_vector : registers (``s0`` label, ``s1`` prediction, ``v0`` features)
    ops : op names mutations may use (default :data:`LEARNER_OPS`)
    source : classification data, ``"digits"`` (scikit-learn) or ``"synthetic"``; None: digits when
        scikit-learn imports
    seed : the tasks' data (search, probe and held-out tasks never share a seed)
    """

    n_matrix = 0

    def __init__(self, kind: str = "regression", *, dim: int = 4, n_tasks: int = 8, n_train: int = 100,
                 n_valid: int = 100, n_heldout: int = 100, epochs: int = 1, n_scalar: int = 5, n_vector: int = 4,
                 ops: Sequence[str] | None = LEARNER_OPS, source: str | None = None, seed: int = 0) -> None:
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ConfigError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.task_kind = kind
        self.dim = _checks.check_int(dim, "dim", 1, 4096)
        self.n_tasks = _checks.check_int(n_tasks, "n_tasks", 1, 1 << 16)
        self.n_train = _checks.check_int(n_train, "n_train", _PROBE, 1 << 20)
        self.n_valid = _checks.check_int(n_valid, "n_valid", _PROBE, 1 << 20)
        self.n_heldout = _checks.check_int(n_heldout, "n_heldout", 1, 1 << 16)
        self.epochs = _checks.check_int(epochs, "epochs", 1, 1 << 16)
        self.n_scalar = _checks.check_int(n_scalar, "n_scalar", 2, 1024)
        self.n_vector = _checks.check_int(n_vector, "n_vector", 1, 1024)
        self.ops = None if ops is None else check_ops(ops)
        self.seed = _checks.check_int(seed, "seed", 0, 2**63 - 1)
        if source is not None and source not in ("digits", "synthetic"):
            raise ConfigError(f"source must be 'digits', 'synthetic' or None, got {source!r}")
        digits = _digits() if kind == "classification" and source != "synthetic" else None
        if source == "digits" and digits is None:
            raise ConfigError("source='digits' needs scikit-learn (pip install scikit-learn)")
        self.source = "digits" if digits is not None else ("synthetic" if kind == "classification" else "gaussian")
        self._digits = digits
        self.objectives = ("loss",)
        self.kind = "learner"
        size = max(self.n_tasks, self.n_heldout) * (self.n_train + self.n_valid) * self.dim
        if size > MAX_DATA:
            raise ConfigError(f"the tasks would hold {size} numbers (max(n_tasks, n_heldout) x (n_train + n_valid) x "
                              f"dim), more than {MAX_DATA}: make them smaller")
        self.data = self._tasks(self.n_tasks, 0)
        probe = self._tasks(1, 1)
        self._probe = (probe[0][:, :_PROBE], probe[1][:, :_PROBE], probe[2][:, :_PROBE])
        self.namespace = ("learner", kind, self.source, self.dim, self.n_tasks, self.n_train, self.n_valid,
                          self.epochs, self.seed)

    # ---- data ------------------------------------------------------------------------------------------

    def _tasks(self, n: int, stream: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train_x [n, N, dim], train_y [n, N], valid_x [n, M, dim], valid_y [n, M]), float64."""
        rng = np.random.default_rng([self.seed, stream, _KINDS.index(self.task_kind)])
        N, M, d = self.n_train, self.n_valid, self.dim
        if self._digits is not None:
            X, labels = self._digits
            xs, ys = [], []
            for _ in range(n):
                a, b = rng.choice(10, size=2, replace=False)
                rows = np.flatnonzero((labels == a) | (labels == b))
                rows = rng.choice(rows, size=min(N + M, len(rows)), replace=len(rows) < N + M)
                proj = rng.standard_normal((X.shape[1], d)) / np.sqrt(X.shape[1])
                z = X[rows] @ proj
                z = (z - z.mean(axis=0)) / (z.std(axis=0) + 1e-12)
                xs.append(z)
                ys.append((labels[rows] == b).astype(np.float64))
            x, y = np.stack(xs), np.stack(ys)
        else:
            x = rng.standard_normal((n, N + M, d))
            w = rng.standard_normal((n, d))
            y = np.einsum("tnd,td->tn", x, w)
            if self.task_kind == "classification":
                y = (y > 0).astype(np.float64)
        return x[:, :N], y[:, :N], x[:, N:], y[:, N:]

    # ---- scoring ---------------------------------------------------------------------------------------

    def initial(self) -> Program:
        """The empty learner (predicts 0)."""
        empty = np.zeros((0, 4), np.int32)
        return Program({"setup": empty, "predict": empty, "learn": empty}, n_scalar=self.n_scalar,
                       n_vector=self.n_vector, n_matrix=0, dim=self.dim)

    def _check(self, programs: Sequence[Program]) -> None:
        for p in programs:
            if not isinstance(p, Program):
                raise TypeError(f"programs must hold Programs, got {type(p).__name__}")
            if p.kind != "learner" or p.dim != self.dim or p.n_matrix:
                raise ValueError(f"LearnerTask programs are learners of dim {self.dim} without matrices, got a "
                                 f"{p.kind} of dim {p.dim} with {p.n_matrix} matrices")

    def predictions(self, programs: Sequence[Program], data: tuple) -> tuple[np.ndarray, np.ndarray]:
        """(train_pred [B, T, N], valid_pred [B, T, M]) float64 of the programs on ``data``."""
        if not isinstance(data, (tuple, list)) or len(data) < 3:
            raise TypeError("data must be a tuple (train_x, train_y, valid_x[, valid_y]), got "
                            + (f"{len(data)} items" if isinstance(data, (tuple, list)) else type(data).__name__))
        programs = list(programs)
        self._check(programs)
        if not programs:
            x, vx = np.asarray(data[0]), np.asarray(data[2])
            return np.empty((0, *x.shape[:2])), np.empty((0, *vx.shape[:2]))
        ns = max(p.n_scalar for p in programs)
        nv = max(p.n_vector for p in programs)
        same = [p if (p.n_scalar, p.n_vector) == (ns, nv) else
                Program(p.components, p.imm, n_scalar=ns, n_vector=nv, n_matrix=0, dim=self.dim) for p in programs]
        comps = [pack(same, c) for c in ("setup", "predict", "learn")]
        return run_learner(*comps, data[0], data[1], data[2], n_scalar=ns, n_vector=nv, n_matrix=0,
                           epochs=self.epochs, dtype=np.float64)

    def losses(self, programs: Sequence[Program], data: tuple) -> np.ndarray:
        """float64 [B, T]: each program's loss on each task of ``data``."""
        if not isinstance(data, (tuple, list)) or len(data) < 4:
            raise TypeError("data must be a tuple (train_x, train_y, valid_x, valid_y), got "
                            + (f"{len(data)} items" if isinstance(data, (tuple, list)) else type(data).__name__))
        programs = list(programs)
        if not programs:
            return np.empty((0, len(data[0])))
        _, pred = self.predictions(programs, data)
        y = np.asarray(data[3], dtype=np.float64)
        if y.shape != pred.shape[1:]:
            raise ValueError(f"valid_y must have shape {pred.shape[1:]} (tasks, validation examples), got {y.shape}")
        y = y[None]
        with np.errstate(all="ignore"):
            if self.task_kind == "regression":
                sse = ((pred - y) ** 2).sum(axis=-1)
                sst = ((y - y.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
                loss = sse / np.maximum(sst, 1e-300)
                return np.where(np.isfinite(loss), np.minimum(loss, 2.0), 2.0)
            wrong = np.where(np.isfinite(pred), (pred > 0) != (y > 0.5), True)
            return wrong.mean(axis=-1)

    def evaluate(self, programs: Any, batch: Any = None) -> np.ndarray:
        return self.losses(list(programs), self.data).mean(axis=1)

    def probe(self, program: Program) -> np.ndarray:
        return self.probe_many([program])[0]

    def probe_many(self, programs: Sequence[Program]) -> list[np.ndarray]:
        """:meth:`probe` of every program, in one interpreter call."""
        train, valid = self.predictions(list(programs), self._probe)
        return [np.concatenate([t.ravel(), v.ravel()]) for t, v in zip(train, valid)]

    def report(self, program: Program) -> dict[str, Any]:
        """The program on ``n_heldout`` fresh tasks: mean loss, mean R^2 (regression) or accuracy."""
        loss = self.losses([program], self._tasks(self.n_heldout, 2))[0]
        out = {"heldout_tasks": self.n_heldout, "heldout_loss": float(loss.mean()),
               "search_loss": float(self.evaluate([program])[0]), "source": program.canonical().source()}
        if self.task_kind == "regression":
            out["heldout_r2"] = float(1.0 - loss.mean())
        else:
            out["heldout_accuracy"] = float(1.0 - loss.mean())
        return out

    def __repr__(self) -> str:
        return f"LearnerTask({self.task_kind!r}, dim={self.dim}, n_tasks={self.n_tasks}, source={self.source!r})"


def linear_regression_program(dim: int = 4, lr: float = 0.1, *, n_scalar: int = 5, n_vector: int = 4) -> Program:
    """The SGD linear-regression learner (what the search should rediscover): ``v1`` the weights,
    ``predict: s1 = v1 . v0``; ``learn: s2 = s0 - s1; s2 = s2 * lr; v2 = s2 * v0; v1 = v1 + v2``."""
    lr = _checks.check_real(lr, "lr")
    if not np.isfinite(lr):
        raise ConfigError(f"lr must be finite, got {lr}")
    setup = assemble([("s_const", 3, lr)])
    predict = assemble([("v_dot", 1, 1, 0)])
    learn = assemble([("s_sub", 2, 0, 1), ("s_mul", 2, 2, 3), ("v_scale", 2, 2, 0), ("v_add", 1, 1, 2)])
    return Program({"setup": setup[0], "predict": predict[0], "learn": learn[0]},
                   {"setup": setup[1], "predict": predict[1], "learn": learn[1]},
                   n_scalar=n_scalar, n_vector=n_vector, n_matrix=0, dim=dim)
