"""Predictor screening: an online surrogate of an expensive objective, from the genome alone.

A screened engine makes ``factor`` times more candidates than it evaluates, predicts their
objectives with a model refitted on every candidate evaluated so far, and evaluates only those the
prediction ranks best: NSGA2 by NSGA-II survival of the predictions among its population,
OnePlusLambda by the best predicted fitness. Each generation's history records how well the
prediction ranked what was then evaluated (``screen_spearman``).

The default model is ridge regression on a per-gene encoding (integer genes one-hot over their
levels, float genes scaled to [0, 1]), which an objective that adds up per-layer costs (as a
compression budget or, roughly, a loss) fits well.

Symbols: n candidates, P pool (generated) candidates, L genes, D encoded features, N archive rows,
T targets (the M objectives, plus the constraint violation for a constrained NSGA2).
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any, Callable

import numpy as np

from .. import pareto
from .._checks import INT_MAX, check_int, check_real
from ..errors import ConfigError
from .engine import MAX_POPULATION

__all__ = ["Screen", "Ridge", "GeneEncoding", "spearman"]

#: Integer genes with more levels than this are encoded by value, not one-hot: a wide range (e.g.
#: a raw integer parameter) would make D, and the fit, absurdly large.
MAX_ONE_HOT_LEVELS = 64

#: How NSGA2 chooses among the predictions: by NSGA-II survival (rank, then crowding) or greedily by
#: the hypervolume each adds to the population's front.
SELECT = ("survival", "hypervolume")


class Ridge:
    """Ridge regression with an unpenalised intercept, all targets in one solve.

    ``fit(Z [N, D], Y [N, T] or [N])`` minimises ``||Z W + b - Y||^2 + alpha ||W||^2`` per target;
    ``predict(Z [n, D]) -> float64 [n, T]``. Targets are standardised for the solve (an objective
    in the thousands and one near 1e-3 get equally conditioned systems); the primal (D x D) or dual
    (N x N) system is solved, whichever is smaller."""

    def __init__(self, alpha: float = 1.0) -> None:
        alpha = check_real(alpha, "alpha")
        if not 0.0 < alpha < math.inf:
            raise ConfigError(f"alpha must be a finite float > 0, got {alpha}")
        self.alpha = alpha
        self.z_mean: np.ndarray | None = None
        self.y_mean: np.ndarray | None = None
        self.coef: np.ndarray | None = None

    def fit(self, Z: Any, Y: Any) -> Ridge:
        Z = np.asarray(Z, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        Y = Y[:, None] if Y.ndim == 1 else Y
        if Z.ndim != 2 or Y.ndim != 2 or len(Z) != len(Y) or len(Z) == 0:
            raise ValueError(f"fit needs Z [N, D] and Y [N, T] with N >= 1, got {Z.shape} and {Y.shape}")
        N, D = Z.shape
        self.z_mean, self.y_mean = Z.mean(axis=0), Y.mean(axis=0)
        scale = Y.std(axis=0)
        scale[~(scale > 0)] = 1.0  # a constant target: the mean predicts it
        Zc, Yc = Z - self.z_mean, (Y - self.y_mean) / scale
        if N < D:  # W = Zc^T (Zc Zc^T + a I)^-1 Yc: the same solution, through the smaller system
            W = Zc.T @ np.linalg.solve(Zc @ Zc.T + self.alpha * np.eye(N), Yc)
        else:
            W = np.linalg.solve(Zc.T @ Zc + self.alpha * np.eye(D), Zc.T @ Yc)
        self.coef = W * scale
        return self

    def predict(self, Z: Any) -> np.ndarray:
        if self.coef is None:
            raise ValueError("Ridge.predict before fit")
        return (np.asarray(Z, dtype=np.float64) - self.z_mean) @ self.coef + self.y_mean


class GeneEncoding:
    """The default features of genomes [n, L] -> float64 [n, D]: each integer gene with at most
    :data:`MAX_ONE_HOT_LEVELS` levels in [lower, upper] one-hot (a value outside: all zeros), every
    other gene its value scaled to [0, 1] by its bounds (unscaled without finite bounds), so that one
    ``alpha`` suits any units."""

    def __init__(self, lower: Any, upper: Any, n_genes: int, integer: bool) -> None:
        L = int(n_genes)
        if lower is None or upper is None:
            lo, hi = np.zeros(L), np.full(L, np.nan)  # no bounds: every gene by its raw value
        else:
            try:
                lo = np.broadcast_to(np.asarray(lower, dtype=np.float64), (L,)).copy()
                hi = np.broadcast_to(np.asarray(upper, dtype=np.float64), (L,)).copy()
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"lower and upper must be scalars or of shape ({L},) to encode genomes "
                                  f"for screening: {exc}") from exc
        bounded = np.isfinite(lo) & np.isfinite(hi) & (hi >= lo)
        levels = np.where(bounded, hi - lo + 1, np.inf)
        self.one_hot = np.flatnonzero(bounded & bool(integer) & (levels <= MAX_ONE_HOT_LEVELS))
        self.by_value = np.setdiff1d(np.arange(L), self.one_hot)
        self.lower = lo[self.one_hot].astype(np.int64)
        self.levels = levels[self.one_hot].astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.levels)[:-1]]).astype(np.int64)
        self.n_one_hot = int(self.levels.sum())
        span = np.where(bounded & (hi > lo), hi - lo, 1.0)
        self.shift = np.where(bounded, lo, 0.0)[self.by_value]
        self.span = span[self.by_value]

    def __call__(self, genomes: np.ndarray) -> np.ndarray:
        X = np.asarray(genomes)
        n = len(X)
        Z = np.zeros((n, self.n_one_hot + len(self.by_value)))
        if self.n_one_hot:
            V = X[:, self.one_hot].astype(np.int64) - self.lower
            inside = (V >= 0) & (V < self.levels)
            rows = np.broadcast_to(np.arange(n)[:, None], V.shape)
            Z[rows[inside], (self.offsets + V)[inside]] = 1.0
        Z[:, self.n_one_hot:] = (X[:, self.by_value].astype(np.float64) - self.shift) / self.span
        return Z


def _average_ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    s = a[order]
    new = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(a)]
    ranks = np.empty(len(a))
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(new) - 1]  # 1-based mean rank of each tie group
    return ranks


def spearman(x: Any, y: Any) -> float | None:
    """Spearman's rank correlation of two vectors [n] (ties: average ranks); None when it is
    undefined (n < 2, or either vector constant)."""
    rx, ry = _average_ranks(np.asarray(x, np.float64).ravel()), _average_ranks(np.asarray(y, np.float64).ravel())
    if len(rx) != len(ry):
        raise ValueError(f"spearman needs two vectors of one length, got {len(rx)} and {len(ry)}")
    if len(rx) < 2:
        return None
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / den if den > 0 else None


def _repeats(pool: np.ndarray, seen: Any) -> np.ndarray:
    """bool [P]: the row equals a ``seen`` genome or an earlier row (evaluating it again is wasted)."""
    known = {x.tobytes() for x in np.asarray(seen, dtype=pool.dtype).reshape(-1, pool.shape[1])}
    out = np.zeros(len(pool), dtype=bool)
    for i, x in enumerate(pool):
        b = x.tobytes()
        out[i] = b in known
        known.add(b)
    return out


def _by_contribution(F: np.ndarray, P: np.ndarray, order: np.ndarray, n: int, ok: np.ndarray) -> np.ndarray:
    """``order`` [P] with its first ``n`` rows replaced by a greedy choice among the ``ok`` rows: each in
    turn the row whose predicted objectives ``P`` [P, M] add the most hypervolume to the front of
    ``F`` [N, M] and the rows chosen before it (reference point: the worst of both, plus a tenth of
    the range); once none adds any, the rest in ``order``."""
    both = np.concatenate([F, P])
    lo, hi = both.min(axis=0), both.max(axis=0)
    ref = hi + 0.1 * np.where(hi > lo, hi - lo, 1.0)
    front = F[pareto.nondominated_rank(F) == 0] if len(F) else F
    base = pareto.hypervolume(front, ref)
    chosen: list[int] = []
    left = [int(i) for i in order if ok[i]]
    while len(chosen) < n and left:
        gain = np.array([pareto.hypervolume(np.concatenate([front, P[i:i + 1]]), ref) - base for i in left])
        b = int(np.argmax(gain))
        if not gain[b] > 0:
            break
        i = left.pop(b)
        chosen.append(i)
        front = np.concatenate([front, P[i:i + 1]])
        base += float(gain[b])
    picked = set(chosen)
    return np.array(chosen + [int(i) for i in order if i not in picked], dtype=np.int64)


class Screen:
    """Screening of an engine's candidates by a predictor: pass ``screen=Screen(...)`` to
    :class:`~evoforge.search.NSGA2` or :class:`~evoforge.search.OnePlusLambda`.

    Parameters
    ----------
    factor : int >= 1 -- k: candidates generated per candidate evaluated. 1 evaluates every
        candidate as without a screen (the predictions are still fitted and their rank
        correlation recorded).
    alpha : float > 0 -- L2 penalty of the default ridge predictor.
    encode : callable genomes [n, L] -> features [n, D] (float), optional -- default
        :class:`GeneEncoding` from the engine's bounds.
    predictor : object with ``fit(Z [N, D], Y [N, T])`` and ``predict(Z [n, D]) -> [n, T]`` (or
        [n] when T = 1), optional -- default ``Ridge(alpha)``; refitted before each screening on
        every (genome, targets) the engine observed (one row per distinct genome, its latest value).
    min_train : int >= 1, optional -- archive rows needed before screening starts; until then the
        engine makes and evaluates candidates as without a screen. Default: NSGA2's ``pop_size``,
        OnePlusLambda's ``n_offspring`` (the first generation's evaluations).
    select : str -- how NSGA2 chooses what to evaluate (:data:`SELECT`): ``"survival"`` by NSGA-II
        survival of the predictions among the population; ``"hypervolume"`` greedily, each candidate
        the one whose prediction adds the most hypervolume to the population's front and those
        chosen before it, then by survival once no prediction adds any.
    depth : int in [1, 64] -- NSGA2 draws the pool from this many generations: the population's
        offspring, then offspring of the population evolved on the predictions (NSGA-II survival of
        it and the predicted pool, ``factor * n_offspring`` more each), so that a good predictor
        leads the evaluations further than one generation (1: the population's offspring only).

    The engine works on its own copy (``engine.screen``; it is part of the checkpoint). After a
    screened generation, ``last_pool`` [P, L] holds the generated candidates, ``last_predicted``
    float64 [P, T] their predictions and ``last_chosen`` int64 [n] the rows evaluated, in the order
    of the batch; ``archive_X`` [N, L] and ``archive_Y`` float64 [N, T] are the training data.
    ``encode`` and ``predictor`` are deep-copied with it and pickled into the checkpoint: with a
    ``run_dir``, give module-level functions and classes (not lambdas).
    """

    select: str = "survival"  # class defaults: checkpoints written before these existed resume with them
    depth: int = 1

    def __init__(self, factor: int = 4, *, alpha: float = 1.0, encode: Callable[[np.ndarray], np.ndarray] | None = None,
                 predictor: object | None = None, min_train: int | None = None, select: str = "survival",
                 depth: int = 1) -> None:
        self.factor = check_int(factor, "factor", 1, MAX_POPULATION, integral_float=True)
        self.depth = check_int(depth, "depth", 1, 64, integral_float=True)
        if select not in SELECT:
            raise ConfigError(f"select must be one of {SELECT}, got {select!r}")
        self.select = select
        self.alpha = Ridge(alpha).alpha
        if encode is not None:
            if not callable(encode):
                raise TypeError(f"encode must be a callable genomes [n, L] -> features [n, D], got "
                                f"{type(encode).__name__}")
            try:
                inspect.signature(encode).bind(None)
            except TypeError:
                raise TypeError("encode must take one argument (genomes [n, L])") from None
            except ValueError:  # no signature to read (some builtins): trust it
                pass
        if predictor is not None and not (callable(getattr(predictor, "fit", None))
                                          and callable(getattr(predictor, "predict", None))):
            raise TypeError(f"predictor must have fit(Z, Y) and predict(Z) methods, got {type(predictor).__name__}")
        self.encode = encode
        self.predictor = predictor
        self.min_train = None if min_train is None else check_int(min_train, "min_train", 1, INT_MAX,
                                                                  integral_float=True)
        self.n_targets = 0  # set by the engine (bind)
        self.archive_X: np.ndarray | None = None
        self.archive_Y = np.empty((0, 0))
        self.last_pool: np.ndarray | None = None
        self.last_predicted: np.ndarray | None = None
        self.last_chosen: np.ndarray | None = None
        self._rows: dict[bytes, int] = {}
        self._version = self._fitted = 0
        self._pending: np.ndarray | None = None  # predictions [n, T] of the batch being evaluated
        self._generated = self._evaluated = 0

    def bind(self, *, lower: Any, upper: Any, n_genes: int, integer: bool, n_targets: int, n_offspring: int,
             min_train: int) -> Screen:
        """The engine's own copy, set up for its genomes (called by the engines' constructors)."""
        if self.depth * self.factor * n_offspring > MAX_POPULATION:
            raise ConfigError(f"screen depth * factor * n_offspring must be at most {MAX_POPULATION}, got "
                              f"{self.depth} * {self.factor} * {n_offspring}")
        s = copy.deepcopy(self)
        s.n_targets = int(n_targets)
        s.min_train = int(min_train) if self.min_train is None else self.min_train
        if s.encode is None:
            s.encode = GeneEncoding(lower, upper, n_genes, integer)
        if s.predictor is None:
            s.predictor = Ridge(self.alpha)
        s.archive_Y = np.empty((0, s.n_targets))
        return s

    # ---- data -------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether enough candidates were observed to screen."""
        return len(self.archive_Y) >= self.min_train

    def observe(self, genomes: np.ndarray, targets: np.ndarray) -> None:
        """Add evaluated genomes [n, L] and their targets [n, T] (non-finite rows are dropped)."""
        X = np.asarray(genomes)
        Y = np.asarray(targets, dtype=np.float64).reshape(len(X), self.n_targets)
        ok = np.isfinite(Y).all(axis=1)
        X, Y = X[ok], Y[ok]
        if self.archive_X is None:
            self.archive_X = np.empty((0, X.shape[1]), dtype=X.dtype)
        new_X, new_Y = [], []
        for x, y in zip(X, Y):
            key = x.tobytes()
            row = self._rows.get(key)
            if row is None:
                self._rows[key] = len(self.archive_Y) + len(new_Y)
                new_X.append(x)
                new_Y.append(y)
            elif row < len(self.archive_Y):
                self.archive_Y[row] = y
            else:
                new_Y[row - len(self.archive_Y)] = y
        if new_X:
            self.archive_X = np.concatenate([self.archive_X, np.asarray(new_X, dtype=self.archive_X.dtype)])
            self.archive_Y = np.concatenate([self.archive_Y, np.asarray(new_Y)])
        self._version += 1

    def _features(self, genomes: np.ndarray) -> np.ndarray:
        Z = np.asarray(self.encode(genomes), dtype=np.float64)
        if Z.ndim != 2 or len(Z) != len(genomes):
            raise ValueError(f"encode must return features of shape ({len(genomes)}, D), got {Z.shape}")
        if not np.isfinite(Z).all():
            raise ValueError("encode returned non-finite features")
        return Z

    def predict(self, genomes: np.ndarray) -> np.ndarray:
        """Predicted targets float64 [n, T] of genomes [n, L], refitting first if new data came."""
        if not len(self.archive_Y):
            raise ValueError("Screen.predict before any candidate was observed")
        if self._fitted != self._version:
            self.predictor.fit(self._features(self.archive_X), self.archive_Y.copy())
            self._fitted = self._version
        n, T = len(genomes), self.n_targets
        P = np.asarray(self.predictor.predict(self._features(genomes)), dtype=np.float64)
        if P.shape == (n,) and T == 1:
            P = P[:, None]
        if P.shape != (n, T):
            raise ValueError(f"predictor.predict must return shape ({n}, {T}), got {P.shape}")
        if not np.isfinite(P).all():
            raise ValueError("predictor.predict returned non-finite values")
        return P

    # ---- choosing what to evaluate -----------------------------------------------------------------

    def choose_best(self, pool: np.ndarray, n: int, *, seen: Any = ()) -> np.ndarray:
        """Rows [n] (ascending) of ``pool`` [P, L] with the smallest predicted first target; genomes
        repeated in the pool or equal to a ``seen`` one come last, ties by row."""
        pred = self.predict(pool)
        order = np.lexsort((np.arange(len(pool)), pred[:, 0], _repeats(pool, seen)))
        return self._chose(pool, pred, order[:n])

    def choose_survivors(self, pool: np.ndarray, n: int, F: np.ndarray, CV: np.ndarray | None, *,
                         seen: Any = ()) -> np.ndarray:
        """Rows [n] (ascending) of ``pool`` [P, L] that NSGA-II survival ranks best when their
        predicted objectives (and constraint violation, with ``CV``) join the population's known
        ``F`` [N, M] (and ``CV`` [N]): by non-dominated rank, then crowding distance, then row;
        repeated genomes (in the pool, or ``seen``: the population) come last."""
        pred = self.predict(pool)
        M = F.shape[1]
        FF = np.concatenate([F, pred[:, :M]])
        CVm = None if CV is None else np.concatenate([CV, pred[:, M]])
        rank = pareto.nondominated_rank(FF, constraint_violation=CVm)
        crowd = pareto.crowding_distance(FF, rank)
        rank, crowd = rank[len(F):], crowd[len(F):]
        repeats = _repeats(pool, seen)
        order = np.lexsort((np.arange(len(pool)), -crowd, rank, repeats))
        if self.select == "hypervolume":
            order = _by_contribution(F if CV is None else F[CV <= 0], pred[:, :M], order, n,
                                     ok=~repeats if CVm is None else ~repeats & (pred[:, M] <= 0))
        return self._chose(pool, pred, order[:n])

    def _chose(self, pool: np.ndarray, pred: np.ndarray, rows: np.ndarray) -> np.ndarray:
        rows = np.sort(rows).astype(np.int64)  # pool order: factor 1 evaluates the unscreened batch
        self.last_pool, self.last_predicted, self.last_chosen = pool.copy(), pred, rows
        self._pending = pred[rows]
        self._generated, self._evaluated = len(pool), len(rows)
        return rows

    def skip(self, n: int) -> None:
        """This generation evaluates ``n`` candidates unscreened."""
        self._pending = None
        self._generated = self._evaluated = int(n)

    def record(self, observed: np.ndarray) -> dict:
        """History fields of the generation whose objectives [n] or [n, M] were ``observed``:
        ``screen_spearman`` (predicted vs observed, a float, a list per objective, or None when
        the generation was not screened), ``screen_generated`` and ``screen_evaluated``."""
        rho = None
        if self._pending is not None:
            obs = np.asarray(observed, dtype=np.float64).reshape(len(self._pending), -1)
            rho = [spearman(self._pending[:, m], obs[:, m]) for m in range(obs.shape[1])]
            rho = rho[0] if len(rho) == 1 else rho
        self._pending = None
        return {"screen_spearman": rho, "screen_generated": self._generated, "screen_evaluated": self._evaluated}
