"""The optimizer-update-rule task of Lion (Chen et al. 2023, "Symbolic Discovery of Optimization
Algorithms"): search for the function that turns a parameter's gradient statistics into its update.

A *rule* is a function program (components ``{"predict"}``) run per parameter element by
:func:`evoforge.interpreter.run_function`: ``v0`` holds the element's features (:data:`FEATURES`,
``dim = 6``; read them with ``v_get``), the rule writes the update direction to ``s1``. Every step
of a training run, for every parameter element (float64 throughout: parameters, buffers, features
and the interpreter's registers):

* ``g``: the minibatch gradient of the mean cross-entropy at the current parameters (step t = 1, 2, ...);
* ``m9``: the EMA of g with beta 0.9, including this step's g, bias-corrected (Adam's ``m_hat``):
  ``m <- 0.9 m + (1 - 0.9) g``, ``m9 = m / (1 - 0.9**t)``;
* ``m99``: the EMA of g with beta 0.99, *before* this step's g and not corrected (Lion's momentum,
  updated ``m99 <- 0.99 m99 + (1 - 0.99) g`` after the rule ran);
* ``v999``: the EMA of g**2 with beta 0.999, including this step's g, bias-corrected (Adam's ``v_hat``);
* ``theta``: the parameter itself, before the update;
* ``progress``: ``t / steps``, in (0, 1].

then ``theta <- theta - lr (u + weight_decay theta)`` with ``u`` the rule's output (decoupled weight
decay, on every parameter, biases included). So AdamW is ``u = m9 / (sqrt(v999) + 1e-8)``
(:func:`adamw_program`) and Lion ``u = sign(0.9 m99 + (1 - 0.9) g)`` with ``sign(x) = heaviside(x) -
heaviside(-x)`` (:func:`lion_program`).

Problems (:data:`PROBLEMS`): multinomial logistic regression (``logreg``) and a one-hidden-layer tanh
MLP (``mlp``) on scikit-learn's bundled ``load_digits`` (8x8 images, pixels / 16), with analytic
gradients in numpy. Task i draws its classes (``n_classes`` of the 10 digits), a disjoint training
and validation split, the initial parameters and its minibatch order from ``(seed, split, i)``;
training tasks give the fitness, held-out tasks the :meth:`UpdateRuleTask.report`.

Fitness (one objective, ``"loss"``, minimised): for each training task and each learning rate of
the grid ``lrs`` (rules differ in scale, so each is scored at its best rate; the default grid 3e-3,
1e-2, 3e-2, 1e-1 holds AdamW's best rates on these problems, 1e-2 to 1e-1, and Lion's, 3 to 10 times
smaller), the mean validation cross-entropy after ``steps`` steps; the best over the grid per task,
averaged over the tasks (the rate is chosen on the loss it reports). A run
whose parameters become NaN or exceed ``1e6`` in magnitude (:data:`DIVERGED`), or whose loss is
not finite, scores ``penalty``, and every loss is clipped to ``penalty``: the fitness is always
finite.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import _checks
from ..errors import ConfigError
from ..interpreter import check_counts, run_function
from ..random import check_uint
from .ops import OPS, op_id
from .program import Program, assemble

__all__ = ["UpdateRuleTask", "adamw_program", "lion_program", "FEATURES", "RULE_OPS", "PROBLEMS"]

#: The features of a parameter element, in the order of ``v0`` (index = the ``v_get`` immediate).
FEATURES: tuple[str, ...] = ("g", "m9", "m99", "v999", "theta", "progress")
G, M9, M99, V999, THETA, PROGRESS = range(len(FEATURES))
#: The default ops of new instructions: every scalar op (scalar inputs and output) and ``v_get``.
RULE_OPS: tuple[str, ...] = tuple(op.name for op in OPS if op.out == "s" and set(op.ins) <= {"s"}) + ("v_get",)
#: The problems a task can train.
PROBLEMS: tuple[str, ...] = ("logreg", "mlp")
BETA_M9, BETA_M99, BETA_V999, ADAM_EPS = 0.9, 0.99, 0.999, 1e-8
LION_BETA1 = 0.9
#: A run has diverged once a parameter is NaN or larger than this in magnitude.
DIVERGED = 1e6
_PIXELS, _CLASSES = 64, 10
_MAX_STEPS, _MAX_TASKS, _MAX_HIDDEN, _MAX_LRS = 10_000, 64, 256, 32


def _registers(n_scalar: Any, n_vector: Any, n_matrix: Any) -> tuple[int, int, int]:
    ns, nv, nm, _ = check_counts(n_scalar, n_vector, n_matrix, len(FEATURES), min_vector=1)
    if ns < 8:
        raise ConfigError(f"n_scalar must be at least 8 (the baselines use s0..s7), got {ns}")
    return ns, nv, nm


def _rule(instructions: list[tuple[Any, ...]], registers: tuple[int, int, int]) -> Program:
    code, imm = assemble(instructions)
    ns, nv, nm = registers
    return Program({"predict": code}, {"predict": imm}, n_scalar=ns, n_vector=nv, n_matrix=nm,
                   dim=len(FEATURES)).validate()


def adamw_program(*, eps: float = ADAM_EPS, n_scalar: int = 8, n_vector: int = 1, n_matrix: int = 0) -> Program:
    """AdamW's direction ``s1 = m9 / (sqrt(v999) + eps)`` as a rule (``eps`` positive and finite)."""
    e = _checks.check_real(eps, "eps")
    if not (e > 0 and math.isfinite(e)):
        raise ConfigError(f"eps must be positive and finite, got {eps!r}")
    return _rule([("v_get", 2, 0, float(M9)), ("v_get", 3, 0, float(V999)), ("s_sqrt", 3, 3), ("s_const", 4, e),
                  ("s_add", 3, 3, 4), ("s_div", 1, 2, 3)], _registers(n_scalar, n_vector, n_matrix))


def lion_program(*, beta1: float = LION_BETA1, n_scalar: int = 8, n_vector: int = 1, n_matrix: int = 0) -> Program:
    """Lion's direction ``s1 = sign(beta1 m99 + (1 - beta1) g)`` as a rule, ``sign(c) = heaviside(c) -
    heaviside(-c)`` (``beta1`` in [0, 1]; Lion's second beta, 0.99, is the ``m99`` feature's)."""
    b = _checks.check_real(beta1, "beta1")
    if not 0.0 <= b <= 1.0:
        raise ConfigError(f"beta1 must lie in [0, 1], got {beta1!r}")
    return _rule([("v_get", 2, 0, float(M99)), ("s_const", 3, b), ("s_mul", 2, 2, 3), ("v_get", 4, 0, float(G)),
                  ("s_const", 5, 1.0 - b), ("s_mul", 4, 4, 5), ("s_add", 2, 2, 4), ("s_heaviside", 6, 2),
                  ("s_neg", 7, 2), ("s_heaviside", 7, 7), ("s_sub", 1, 6, 7)], _registers(n_scalar, n_vector, n_matrix))


# ---- the problems --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: pixels uint8 [1797, 64] (0..16), labels int64 [1797]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data.astype(np.uint8), d.target.astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _shapes(kind: str, n_classes: int, hidden: int) -> tuple[tuple[int, ...], ...]:
    if kind == "logreg":
        return (_PIXELS, n_classes), (n_classes,)
    return (_PIXELS, hidden), (hidden,), (hidden, n_classes), (n_classes,)


def _split(theta: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """The parameter arrays [R, *shape] of flat parameters theta [R, n] (in the order of ``shapes``)."""
    out, off = [], 0
    for s in shapes:
        n = math.prod(s)
        out.append(theta[:, off:off + n].reshape(theta.shape[0], *s))
        off += n
    return out


def _forward(kind: str, shapes: Sequence[tuple[int, ...]], theta: np.ndarray, x: np.ndarray
             ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    """(logits [R, B, C], the parameter arrays, the hidden activations [R, B, H] or None)."""
    p = _split(theta, shapes)
    if kind == "logreg":
        return np.matmul(x, p[0]) + p[1][:, None, :], p, None
    h = np.tanh(np.matmul(x, p[0]) + p[1][:, None, :])
    return np.matmul(h, p[2]) + p[3][:, None, :], p, h


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean cross-entropy [R] of logits [R, B, C] against labels y [B]."""
    z = logits - logits.max(axis=-1, keepdims=True)  # log-softmax from the shifted logits: no cancellation
    return (np.log(np.exp(z).sum(axis=-1)) - z[:, np.arange(len(y)), y]).mean(axis=-1)


def _gradient(kind: str, shapes: Sequence[tuple[int, ...]], theta: np.ndarray, x: np.ndarray,
              onehot: np.ndarray) -> list[np.ndarray]:
    """The gradients [R, *shape] of the mean cross-entropy on (x [B, 64], onehot [B, C]) at theta [R, n]."""
    logits, p, h = _forward(kind, shapes, theta, x)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    d = (e / e.sum(axis=-1, keepdims=True) - onehot) / len(x)  # dLoss / dlogits [R, B, C]
    if h is None:
        return [np.matmul(x.T, d), d.sum(axis=1)]
    dh = np.matmul(d, p[2].transpose(0, 2, 1)) * (1.0 - h * h)
    return [np.matmul(x.T, dh), dh.sum(axis=1), np.matmul(h.transpose(0, 2, 1), d), d.sum(axis=1)]


class _Problem:
    """One task: a model kind, its classes, split, initial parameters and minibatch stream's seed."""

    def __init__(self, task: UpdateRuleTask, index: int, heldout: bool) -> None:
        self.words = (task.seed, int(heldout), index)
        rng = np.random.default_rng(np.random.SeedSequence(self.words))
        self.kind = task.problems[index % len(task.problems)]
        self.name = f"{'heldout' if heldout else 'train'}{index}:{self.kind}"
        _, labels = _digits()
        self.classes = np.sort(rng.choice(_CLASSES, task.n_classes, replace=False))
        pool = rng.permutation(np.flatnonzero(np.isin(labels, self.classes)))
        if task.n_train + task.n_valid > len(pool):
            raise ConfigError(f"n_train + n_valid = {task.n_train + task.n_valid} is more than the {len(pool)} "
                              f"digits of task {self.name}'s classes {self.classes.tolist()}")
        self.train_idx, self.valid_idx = pool[:task.n_train], pool[task.n_train:task.n_train + task.n_valid]
        self.shapes = _shapes(self.kind, task.n_classes, task.hidden)
        parts = []
        for s in self.shapes:
            std = 0.0 if len(s) == 1 else 0.01 if self.kind == "logreg" else 1.0 / math.sqrt(s[0])
            parts.append((rng.standard_normal(s) * std).ravel())
        self.init = np.concatenate(parts)
        self.size = len(self.init)
        self.batch_size = task.batch_size if task.batch_size is not None and task.batch_size < task.n_train else None

    def data(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x float64 [n, 64], labels int64 [n] in 0..C-1, one-hot float64 [n, C]) of the split."""
        pixels, labels = _digits()
        idx = self.train_idx if split == "train" else self.valid_idx
        y = np.searchsorted(self.classes, labels[idx])
        return pixels[idx] / 16.0, y, np.eye(len(self.classes))[y]

    def batches(self) -> Iterator[np.ndarray]:
        """The training rows of each step in turn, int64 [batch_size]: epochs of random permutations of
        the training split, one after the other, cut into batches (a batch may span two epochs)."""
        rng = np.random.default_rng(np.random.SeedSequence((*self.words, 1)))
        n, bs = len(self.train_idx), self.batch_size or len(self.train_idx)
        buf = np.empty(0, dtype=np.int64)
        while True:
            while len(buf) < bs:
                buf = np.concatenate([buf, rng.permutation(n)])
            yield buf[:bs]
            buf = buf[bs:]


# ---- training -------------------------------------------------------------------------------------------


def _train(rule: Program, problems: Sequence[_Problem], lrs: np.ndarray, steps: int, weight_decay: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Every problem trained with every learning rate by ``rule``, all at once (one interpreter call per
    step): (final parameters [R, N] (the problems' parameters side by side), alive bool [T, R])."""
    R, T = len(lrs), len(problems)
    sizes = [p.size for p in problems]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    theta = np.repeat(np.concatenate([p.init for p in problems])[None], R, axis=0)
    m9, m99, v = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    g = np.empty_like(theta)
    feats = np.empty(theta.shape + (len(FEATURES),))
    data = [p.data("train") for p in problems]
    batches = [p.batches() if p.batch_size is not None else None for p in problems]
    code, imm = rule.components["predict"][None], rule.imm["predict"][None]
    regs = rule.registers
    lr = lrs[:, None]
    alive = np.ones((T, R), dtype=bool)
    for t in range(1, steps + 1):
        for j, p in enumerate(problems):
            x, _, onehot = data[j]
            if batches[j] is not None:
                rows = next(batches[j])
                x, onehot = x[rows], onehot[rows]
            g[:, offs[j]:offs[j + 1]] = np.concatenate(
                [a.reshape(R, -1) for a in _gradient(p.kind, p.shapes, theta[:, offs[j]:offs[j + 1]], x, onehot)],
                axis=1)
        m9 *= BETA_M9
        m9 += (1.0 - BETA_M9) * g
        v *= BETA_V999
        v += (1.0 - BETA_V999) * (g * g)
        feats[..., G] = g
        feats[..., M9] = m9 / (1.0 - BETA_M9 ** t)
        feats[..., M99] = m99
        feats[..., V999] = v / (1.0 - BETA_V999 ** t)
        feats[..., THETA] = theta
        feats[..., PROGRESS] = t / steps
        u = run_function(code, imm, feats.reshape(-1, len(FEATURES)), **regs).reshape(theta.shape)
        m99 *= BETA_M99
        m99 += (1.0 - BETA_M99) * g
        theta -= lr * (u + weight_decay * theta)
        bad = ~(np.abs(theta) <= DIVERGED)  # NaN too
        if bad.any():
            alive &= ~np.logical_or.reduceat(bad, offs[:-1], axis=1).T
            if not alive.any():
                break
    return theta, alive


def _valid_losses(problems: Sequence[_Problem], theta: np.ndarray, alive: np.ndarray, penalty: float
                  ) -> np.ndarray:
    """The validation losses [T, R] of trained parameters, ``penalty`` where not finite (or diverged)."""
    out = np.full(alive.shape, penalty)
    off = 0
    for j, p in enumerate(problems):
        x, y, _ = p.data("valid")
        loss = _cross_entropy(_forward(p.kind, p.shapes, theta[:, off:off + p.size], x)[0], y)
        off += p.size
        ok = alive[j] & np.isfinite(loss)
        out[j, ok] = np.minimum(loss[ok], penalty)
    return out


# ---- the task -------------------------------------------------------------------------------------------


def _positive(x: Any, name: str, *, zero: bool = False) -> float:
    f = _checks.check_real(x, name)
    if not (math.isfinite(f) and (f > 0 or (zero and f == 0))):
        raise ConfigError(f"{name} must be a {'non-negative' if zero else 'positive'} finite number, got {x!r}")
    return f


def _names(x: Any, name: str, allowed: Sequence[str] | None) -> tuple[str, ...]:
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence):
        raise TypeError(f"{name} must be a sequence of names, got {type(x).__name__}")
    for n in x:
        if not isinstance(n, str):
            raise TypeError(f"{name} must hold names (str), got {type(n).__name__}")
        if allowed is None:
            op_id(n)  # ValueError naming the known ops
        elif n not in allowed:
            raise ConfigError(f"{name}: unknown {n!r}; choose from {', '.join(allowed)}")
    if not x:
        raise ConfigError(f"{name} must name at least one")
    return tuple(x)


class UpdateRuleTask:
    """The optimizer-update-rule task (see the module docstring): a :class:`ProgramTask` for the
    program engines, picklable (for process-pool and Ray workers) and deterministic.

    Parameters
    ----------
    steps : training steps per run (1..10000)
    lrs : the learning-rate grid (positive, finite; at most 32): each rule is scored at its best rate per task
    weight_decay : decoupled weight decay (>= 0), ``theta <- theta - lr (u + weight_decay theta)``
    problems : names from :data:`PROBLEMS`, cycled over the tasks (task i trains ``problems[i % len]``)
    n_tasks, n_heldout : training tasks (the fitness) and held-out tasks (the report), 1..64 each
    n_classes : digits per task (2..10; each task draws its own), n_train, n_valid : examples of its
        training and validation splits (disjoint; together at most the examples of its classes)
    batch_size : minibatch size (None, or at least ``n_train``: full batch)
    hidden : hidden units of ``mlp`` (1..256)
    penalty : the loss of a diverged run, and the clip of every loss (positive, finite)
    seed : the tasks' classes, splits, initial parameters and minibatch orders (an int in [0, 2**64))
    n_scalar (>= 8), n_vector (>= 1), n_matrix : the registers of rules (``dim`` is ``len(FEATURES)``)
    ops : op names new instructions may use (default :data:`RULE_OPS`; None: all)

    TypeError for arguments of the wrong type, ConfigError (a ValueError) for values out of range.
    """

    objectives: tuple[str, ...] = ("loss",)
    kind: str = "function"

    def __init__(self, *, steps: int = 100, lrs: Sequence[float] = (3e-3, 1e-2, 3e-2, 1e-1),
                 weight_decay: float = 0.0, problems: Sequence[str] = PROBLEMS, n_tasks: int = 4,
                 n_heldout: int = 4, n_classes: int = 5, n_train: int = 256, n_valid: int = 256,
                 batch_size: int | None = 64, hidden: int = 16, penalty: float = 100.0, seed: int = 0,
                 n_scalar: int = 8, n_vector: int = 1, n_matrix: int = 0,
                 ops: Sequence[str] | None = RULE_OPS) -> None:
        self.steps = _checks.check_int(steps, "steps", 1, _MAX_STEPS)
        if isinstance(lrs, (str, bytes)) or not isinstance(lrs, (Sequence, np.ndarray)) or \
                (isinstance(lrs, np.ndarray) and lrs.ndim != 1):
            raise TypeError(f"lrs must be a sequence of learning rates, got {type(lrs).__name__}")
        if not 1 <= len(lrs) <= _MAX_LRS:
            raise ConfigError(f"lrs must hold 1..{_MAX_LRS} learning rates, got {len(lrs)}")
        self.lrs = tuple(_positive(x, f"lrs[{i}]") for i, x in enumerate(lrs))
        self.weight_decay = _positive(weight_decay, "weight_decay", zero=True)
        self.problems = _names(problems, "problems", PROBLEMS)
        self.n_tasks = _checks.check_int(n_tasks, "n_tasks", 1, _MAX_TASKS)
        self.n_heldout = _checks.check_int(n_heldout, "n_heldout", 1, _MAX_TASKS)
        self.n_classes = _checks.check_int(n_classes, "n_classes", 2, _CLASSES)
        self.n_train = _checks.check_int(n_train, "n_train", 1, 1797)
        self.n_valid = _checks.check_int(n_valid, "n_valid", 1, 1797)
        self.batch_size = None if batch_size is None else _checks.check_int(batch_size, "batch_size", 1, 1797)
        self.hidden = _checks.check_int(hidden, "hidden", 1, _MAX_HIDDEN)
        self.penalty = _positive(penalty, "penalty")
        self.seed = check_uint(seed, "seed", 64)
        self.n_scalar, self.n_vector, self.n_matrix = _registers(n_scalar, n_vector, n_matrix)
        self.dim = len(FEATURES)
        self.ops = None if ops is None else _names(ops, "ops", None)
        self.namespace = ("evoforge.programs.update_rules/1", self.steps, self.lrs, self.weight_decay, self.problems,
                          self.n_tasks, self.n_classes, self.n_train, self.n_valid, self.batch_size, self.hidden,
                          self.penalty, self.seed)
        self._train_problems = [_Problem(self, i, False) for i in range(self.n_tasks)]
        self._heldout_problems = [_Problem(self, i, True) for i in range(self.n_heldout)]
        self._baselines: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return (f"UpdateRuleTask(steps={self.steps}, lrs={self.lrs}, problems={self.problems}, "
                f"n_tasks={self.n_tasks}, n_heldout={self.n_heldout}, seed={self.seed})")

    # ---- programs ---------------------------------------------------------------------------------------

    def initial(self) -> Program:
        """AdamW (:func:`adamw_program`) with the task's registers: where a search starts."""
        return adamw_program(n_scalar=self.n_scalar, n_vector=self.n_vector, n_matrix=self.n_matrix)

    def _rule(self, program: Any, name: str = "program") -> Program:
        if not isinstance(program, Program):
            raise TypeError(f"{name} must be a Program, got {type(program).__name__}")
        if program.kind != "function":
            raise ValueError(f"{name} must be a function program ({{'predict'}}), got a {program.kind}")
        if program.dim != self.dim or program.n_vector < 1:
            raise ValueError(f"{name} must have dim {self.dim} (the features) and n_vector >= 1, got dim "
                             f"{program.dim}, n_vector {program.n_vector}")
        return program.validate()

    def _losses(self, program: Program, problems: Sequence[_Problem]) -> np.ndarray:
        with np.errstate(all="ignore"):
            theta, alive = _train(program, problems, np.array(self.lrs), self.steps, self.weight_decay)
            return _valid_losses(problems, theta, alive, self.penalty)

    def evaluate(self, programs: Sequence[Program] | np.ndarray, batch: Any = None) -> np.ndarray:
        """The fitness float64 [B] of each rule: the mean over the training tasks of the best validation
        loss over ``lrs`` (finite: ``penalty`` at worst). ``batch`` is ignored (the evaluation is
        deterministic)."""
        if isinstance(programs, Program) or not isinstance(programs, (Sequence, np.ndarray)):
            raise TypeError(f"programs must be a sequence of Program, got {type(programs).__name__}")
        rules = [self._rule(p, f"programs[{i}]") for i, p in enumerate(list(programs))]
        return np.array([self._losses(r, self._train_problems).min(axis=1).mean() for r in rules], dtype=np.float64)

    def probe(self, program: Program) -> np.ndarray:
        """The rule's outputs float64 [64] on fixed feature rows (the functional hash's inputs)."""
        rule = self._rule(program)
        code, imm = rule.components["predict"][None], rule.imm["predict"][None]
        with np.errstate(all="ignore"):
            return run_function(code, imm, _probe_rows(), **rule.registers)[0]

    def train(self, program: Program, lr: float, *, index: int = 0, heldout: bool = False) -> dict[str, Any]:
        """One training run of a rule: task ``index`` of the training (or held-out) tasks at learning rate
        ``lr``. Returns ``params`` (the final flat parameters, float64 [n], in the order of
        :meth:`problem`'s ``shapes``), ``valid_loss`` and ``train_loss`` (on the whole splits; NaN or
        inf as they came: no penalty) and ``diverged`` (a parameter became NaN or exceeded
        :data:`DIVERGED` in magnitude at some step)."""
        rule = self._rule(program)
        p = self._problem(index, heldout)
        rate = _positive(lr, "lr")
        with np.errstate(all="ignore"):
            theta, alive = _train(rule, [p], np.array([rate]), self.steps, self.weight_decay)
            losses = {}
            for split in ("train", "valid"):
                x, y, _ = p.data(split)
                losses[split] = float(_cross_entropy(_forward(p.kind, p.shapes, theta, x)[0], y)[0])
        return {"params": theta[0].copy(), "valid_loss": losses["valid"], "train_loss": losses["train"],
                "diverged": not bool(alive[0, 0])}

    def _problem(self, index: Any, heldout: Any) -> _Problem:
        if not isinstance(heldout, (bool, np.bool_)):
            raise TypeError(f"heldout must be a bool, got {type(heldout).__name__}")
        problems = self._heldout_problems if heldout else self._train_problems
        return problems[_checks.check_int(index, "index", 0, len(problems) - 1)]

    def problem(self, index: int = 0, *, heldout: bool = False) -> dict[str, Any]:
        """Task ``index``'s problem as plain arrays (for an independent re-implementation): ``name``,
        ``kind``, ``classes`` (the digits, in label order), ``x_train`` / ``x_valid`` float64 [n, 64],
        ``y_train`` / ``y_valid`` int64 labels in 0..C-1, ``shapes`` (the parameter arrays, flattened
        in this order), ``init`` float64 [n] and ``batches`` (int64 [steps, batch_size] rows of
        x_train per step, or None: full batch)."""
        p = self._problem(index, heldout)
        (xt, yt, _), (xv, yv, _) = p.data("train"), p.data("valid")
        batches = None if p.batch_size is None else np.stack([b for b, _ in zip(p.batches(), range(self.steps))])
        return {"name": p.name, "kind": p.kind, "classes": p.classes.copy(), "x_train": xt, "y_train": yt,
                "x_valid": xv, "y_valid": yv, "shapes": p.shapes, "init": p.init.copy(), "batches": batches}

    def report(self, program: Program) -> dict[str, Any]:
        """The rule next to AdamW and Lion on the held-out tasks: ``tasks`` (per task: its ``name``, and for
        ``rule``, ``adamw``, ``lion`` the best validation loss over ``lrs`` and the rate that gave it,
        ``<name>_lr``), the mean loss of each over the tasks, and the rule's ``fitness`` on the
        training tasks."""
        rule = self._rule(program)
        lrs = np.array(self.lrs)
        for name, base in (("adamw", self.initial), ("lion", self._lion)):
            if name not in self._baselines:
                self._baselines[name] = self._losses(base(), self._heldout_problems)
        losses = {"rule": self._losses(rule, self._heldout_problems), **self._baselines}
        tasks = []
        for j, p in enumerate(self._heldout_problems):
            row: dict[str, Any] = {"name": p.name}
            for name, L in losses.items():
                row[name] = float(L[j].min())
                row[f"{name}_lr"] = float(lrs[int(np.argmin(L[j]))])
            tasks.append(row)
        out: dict[str, Any] = {"tasks": tasks}
        out.update({name: float(L.min(axis=1).mean()) for name, L in losses.items()})
        out["fitness"] = float(self.evaluate([rule])[0])
        return out

    def _lion(self) -> Program:
        return lion_program(n_scalar=self.n_scalar, n_vector=self.n_vector, n_matrix=self.n_matrix)


@functools.lru_cache(maxsize=1)
def _probe_rows() -> np.ndarray:
    """64 fixed feature rows float64 [64, 6] spanning the scales training meets: gradients from 1e-6
    to 1 (and exact zeros), momenta agreeing or not with them, positive second moments, parameters
    of either sign, progress in (0, 1]."""
    rng = np.random.default_rng(np.random.SeedSequence((0x5EED, 19)))
    n = 64
    scale = 10.0 ** rng.uniform(-6, 0, n)
    rows = np.empty((n, len(FEATURES)))
    rows[:, G] = scale * rng.standard_normal(n)
    rows[:, M9] = 0.5 * rows[:, G] + scale * rng.standard_normal(n)
    rows[:, M99] = 0.2 * rows[:, G] + scale * rng.standard_normal(n)
    rows[:, V999] = (scale * rng.standard_normal(n)) ** 2 + rows[:, G] ** 2
    rows[:, THETA] = 0.3 * rng.standard_normal(n)
    rows[:, PROGRESS] = rng.uniform(0, 1, n).round(2) + 0.01
    rows[:4, :V999 + 1] = 0.0  # a parameter without a gradient
    rows.setflags(write=False)
    return rows
