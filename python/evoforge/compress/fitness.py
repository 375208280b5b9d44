"""KL fitness of per-layer compression configurations (EvoPress's objective), with prefix reuse.

A *genome* gives one level per linear layer (the order of :meth:`ModelAdapter.linear_layers`); a
:class:`LevelProvider` (e.g. the layer database) turns (layer, level) into a weight. The fitness of
a genome is KL(dense || compressed) of next-token distributions, averaged over the tokens of a
calibration minibatch (:class:`KLFitness`, an evaluator for :mod:`evoforge.search.engine`).

What is computed once
    The dense model's next-token distributions on every calibration token
    (:func:`evoforge.kl.teacher_targets`: full vocabulary as float16, 2 bytes per logit, or the
    teacher's top K plus a tail bin, 8 bytes per kept logit), written to ``teacher_dir`` and
    memory-mapped from there when given (reused by a later run on the same model and tokens),
    and a copy of every dense linear weight (to restore the model).

What is computed once per minibatch
    The minibatch (whole sequences, chosen from ``batch.seed``; the same for every candidate of the
    call), the hidden states entering block 0, and the dense model's hidden states entering later
    blocks only as far as some candidate can use them (the *dense stack*, grown on demand).

Prefix reuse
    Blocks are sequential, so a candidate whose layers in blocks ``0 .. j-1`` equal those of a
    configuration whose block inputs are known can start at block ``j`` from that configuration's
    block-``j`` input. Two such stacks are kept per minibatch: the dense one, and the *working* one
    of the last candidate computed (kept across calls on the same minibatch). A layer set to a level
    whose weight equals the dense weight counts as dense. Candidates are deduplicated and sorted
    lexicographically by their per-layer configuration (a depth-first walk of their trie), so that
    each one shares the longest possible prefix with the one before; each starts from whichever
    stack shares the longer prefix. :meth:`KLFitness.set_base` adds a third stack, of a given
    configuration (the parent of the offspring being evaluated), computed once per minibatch: an
    offspring then recomputes only the blocks from its first mutated layer on.
    With ``prefix_reuse=False`` every candidate runs from block 0.

Weights are swapped in place with :meth:`LayerRef.set_weight`, only for the layers whose level
differs from the configuration currently applied; :meth:`KLFitness.evaluate` leaves the model dense.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import ConfigError
from ..kl import Teacher, kl_divergence
from .adapters import ModelAdapter
from .head import LinearHeadKL, build_head_teacher
from .teacher import build_teacher, kl_torch
from .tokens import check_tokens, vocab_size

__all__ = ["KLFitness", "LevelProvider"]

_DENSE = -1  # effective level of a layer whose weight equals the dense weight


@runtime_checkable
class LevelProvider(Protocol):
    """The weights a genome's levels stand for (the layer database satisfies this).

    ``n_layers`` equals ``len(adapter.linear_layers())``; ``weight(i, level)`` returns layer ``i``'s
    weight at ``level`` with shape ``[out, in]`` (the :meth:`LayerRef.weight` convention; it is cast
    to the model's dtype and device when needed). ``n_levels(i)`` gives the number of levels of
    layer ``i`` (levels are ``0 .. n_levels(i) - 1``); a provider without it gets no range check
    beyond ``level >= 0`` (its own errors are re-raised naming the layer).
    """

    n_layers: int

    def weight(self, layer_index: int, level: int) -> torch.Tensor: ...


class _Stop(Exception):
    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


class KLFitness:
    """Evaluator: KL(dense || candidate) per genome on a calibration minibatch.

    Parameters
    ----------
    adapter : ModelAdapter
        The dense model (held, not copied; weights are swapped in place during :meth:`evaluate`
        and restored after).
    provider : LevelProvider
        ``n_layers`` must equal the adapter's number of linear layers.
    calib_tokens : LongTensor [N, S]
        Calibration sequences (token ids in ``[0, V)``).
    top_k : int, optional
        KL over the teacher's top K tokens plus one bin for the rest of the vocabulary (``tail``,
        default) or over the K tokens renormalised (``tail=False``, EvoPress's variant); None: the
        full vocabulary.
    teacher_dir : path, optional
        Where the teacher's arrays are written (``.npy``) and memory-mapped from; a teacher already
        there for the same model, tokens and settings is reused. None: kept in memory.
    batch_size : int
        Sequences per forward pass (1: one sequence at a time, as the EvoPress reference).
    head_tokens : int
        Tokens per lm_head + KL call (bounds the [tokens, V] logits buffer).
    fused_kl : bool
        Score the full vocabulary of a linear head with :class:`~evoforge.compress.head.LinearHeadKL`
        (the exact KL without [tokens, V] logits) and a top-K teacher with
        :func:`evoforge.kl.kl_divergence` (default), or both with torch's ``log_softmax`` and the
        same formula (the reference's way; for benchmarks).
    seq_len : int, optional
        Cut each calibration row into non-overlapping windows of this length (a remainder shorter
        than ``seq_len`` is dropped); default: the rows as given.
    prefix_reuse : bool
        Reuse cached block inputs (see the module docstring); False runs every candidate in full.
    compute_dtype : torch.dtype or str, optional
        Run the blocks and the LM head under ``torch.autocast`` in this dtype (``"bfloat16"``: about
        2.5x faster blocks on CPUs with AMX or AVX-512 BF16; the residual stream, norms and KL stay
        float32). The teacher is always the model in its own dtype, so the bfloat16 rounding is part
        of every candidate's KL alike. None (default): the model's dtype, no autocast.

    ``evaluate(genomes [B, L], batch)`` returns float64 ``[B]``. ``batch.fidelity`` is a number of
    tokens: the minibatch is ``ceil(fidelity / S)`` whole sequences (at most all of them), drawn
    without replacement by ``numpy.random.default_rng(batch.seed)`` (the first ones when the seed is
    None); ``fidelity=None`` means all calibration tokens. ``stats`` counts the work.
    """

    def __init__(self, adapter: ModelAdapter, provider: LevelProvider, calib_tokens: torch.Tensor, *,
                 top_k: int | None = None, tail: bool = True, teacher_dir: str | os.PathLike | None = None,
                 batch_size: int = 8, seq_len: int | None = None, prefix_reuse: bool = True,
                 head_tokens: int = 1024, fused_kl: bool = True, compute_dtype: Any = None) -> None:
        if not isinstance(adapter, ModelAdapter):
            raise TypeError(f"adapter must be a ModelAdapter (evoforge.compress.adapt), got {type(adapter).__name__}")
        self.adapter = adapter
        self.layers = adapter.linear_layers()
        L = len(self.layers)
        n_layers = getattr(provider, "n_layers", None)
        if not callable(getattr(provider, "weight", None)) or n_layers is None:
            raise TypeError("provider must have n_layers and weight(layer_index, level) (LevelProvider)")
        if int(n_layers) != L:
            raise ConfigError(f"provider has {n_layers} layers but the model has {L} linear layers")
        self.provider = provider
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)
        if isinstance(head_tokens, bool) or not isinstance(head_tokens, (int, np.integer)) or head_tokens < 1:
            raise ConfigError(f"head_tokens must be a positive int, got {head_tokens!r}")
        self.head_tokens = int(head_tokens)
        self.prefix_reuse = bool(prefix_reuse)
        self.fused_kl = bool(fused_kl)

        p = next(adapter.model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.compute_dtype = _compute_dtype(compute_dtype, self.dtype)
        self._n_levels = None
        if callable(getattr(provider, "n_levels", None)):
            self._n_levels = np.array([int(provider.n_levels(i)) for i in range(L)], dtype=np.int64)
        self._layer_block = np.array([r.block for r in self.layers], dtype=np.int64)
        self._dense_w = [r.weight().detach().clone() for r in self.layers]
        self._applied = np.full(L, _DENSE, dtype=np.int64)
        self._dense_equiv: dict[tuple[int, int], bool] = {}

        self.tokens = self._check_tokens(calib_tokens, seq_len)
        self.n_seq, self.seq_len = (int(s) for s in self.tokens.shape)
        self.top_k = top_k
        self._restore()  # the model is dense
        # The full vocabulary through a linear head: the exact KL from the head's weight and a small
        # teacher, without [tokens, V] logits (head.py); else the teacher's targets and the fused KL.
        self._head = LinearHeadKL.of(adapter, self.compute_dtype) if top_k is None and self.fused_kl else None
        directory = None if teacher_dir is None else Path(teacher_dir)
        if self._head is not None:
            self.teacher = build_head_teacher(adapter, self._head, self.tokens, batch_size=self.batch_size,
                                              directory=directory)
        else:
            self.teacher = build_teacher(adapter, self.tokens, top_k=top_k, tail=bool(tail),
                                         batch_size=self.batch_size, directory=directory)

        self._mb_rows: tuple[int, ...] | None = None
        self._mb_teacher: Teacher | None = None
        self._dense_stack: list[torch.Tensor] | None = None
        self._work_stack: list[torch.Tensor] | None = None
        self._work_cfg: np.ndarray | None = None
        self._work_kl: float | None = None
        self._base_genome: np.ndarray | None = None
        self._base_cfg: np.ndarray | None = None
        self._base_stack: list[torch.Tensor] | None = None
        self._contexts: dict[tuple[int, int], Any] = {}
        self.stats: dict[str, float] = {}
        self.reset_stats()

    # ---- set-up ---------------------------------------------------------------------------------

    def _check_tokens(self, x: Any, seq_len: int | None) -> torch.Tensor:
        x = check_tokens(x, "calib_tokens", vocab=vocab_size(self.adapter.model))
        if seq_len is not None:
            if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
                raise ConfigError(f"seq_len must be a positive int or None, got {seq_len!r}")
            w = x.shape[1] // int(seq_len)
            if w == 0:
                raise ConfigError(f"seq_len={seq_len} is longer than the calibration rows ({x.shape[1]} tokens)")
            x = x[:, : w * int(seq_len)].reshape(-1, int(seq_len))
        return x.contiguous().to(self.device)

    def reset_stats(self) -> None:
        """Zero the counters in ``stats``."""
        self.stats = {
            "candidates": 0,  # genomes passed to evaluate()
            "evaluated": 0,  # distinct configurations computed
            "tokens": 0,  # candidate tokens scored (distinct configurations x minibatch tokens)
            "blocks_computed": 0,  # block passes over a minibatch for candidates
            "blocks_skipped": 0,  # block passes reused from a cached stack
            "dense_blocks": 0,  # block passes for the dense and base stacks (at most once per minibatch)
            "layer_swaps": 0,  # set_weight calls
            "seconds": 0.0,
        }

    # ---- genomes --------------------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def check_genomes(self, genomes: Any) -> np.ndarray:
        """``genomes`` as int64 [B, L], or ConfigError naming what is wrong."""
        g = np.asarray(genomes)
        if g.ndim == 1:
            g = g[None, :]
        if g.ndim != 2 or g.shape[1] != self.n_layers:
            raise ConfigError(f"genomes must have shape [B, {self.n_layers}] (one level per linear layer), "
                              f"got {list(g.shape)}")
        if g.dtype.kind == "f":
            if not np.all(np.isfinite(g)) or not np.all(g == np.round(g)):
                raise ConfigError("genome levels must be integers")
        elif g.dtype.kind not in "iub":
            raise ConfigError(f"genome levels must be integers, got dtype {g.dtype}")
        g = g.astype(np.int64)
        bad = g < 0 if self._n_levels is None else (g < 0) | (g >= self._n_levels[None, :])
        if bad.any():
            b, i = (int(v) for v in np.argwhere(bad)[0])
            hi = "" if self._n_levels is None else f", {self._n_levels[i] - 1}"
            raise ConfigError(f"genome {b}: level {g[b, i]} of layer {i} ({self.layers[i].name}) "
                              f"is out of range [0{hi}]")
        return g

    def _level_weight(self, i: int, level: int) -> torch.Tensor:
        try:
            w = self.provider.weight(i, int(level))
        except (IndexError, KeyError, ValueError) as exc:
            raise ConfigError(f"provider has no level {level} for layer {i} ({self.layers[i].name}): {exc}") from exc
        ref = self.layers[i]
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (ref.out_features, ref.in_features):
            raise ConfigError(f"provider.weight({i}, {level}) must be a tensor of shape "
                              f"[{ref.out_features}, {ref.in_features}], got {list(getattr(w, 'shape', []))}")
        return w.to(device=self.device, dtype=self.dtype)

    def _effective(self, g: np.ndarray) -> np.ndarray:
        """Per-layer level, with levels whose weight equals the dense weight mapped to _DENSE."""
        eff = g.copy()
        for i in range(g.shape[1]):
            for lvl in np.unique(g[:, i]):
                key = (i, int(lvl))
                same = self._dense_equiv.get(key)
                if same is None:
                    same = self._dense_equiv[key] = bool(torch.equal(self._level_weight(i, lvl), self._dense_w[i]))
                if same:
                    eff[g[:, i] == lvl, i] = _DENSE
        return eff

    def _apply(self, eff: np.ndarray) -> None:
        for i in np.flatnonzero(eff != self._applied):
            lvl = int(eff[i])
            w = self._dense_w[i] if lvl == _DENSE else self._level_weight(int(i), lvl)
            self.layers[i].set_weight(w)
            self._applied[i] = lvl
            self.stats["layer_swaps"] += 1

    def _restore(self) -> None:
        self._apply(np.full(self.n_layers, _DENSE, dtype=np.int64))

    def _first_block(self, a: np.ndarray, b: np.ndarray) -> int:
        d = np.flatnonzero(a != b)
        return self.adapter.n_blocks if d.size == 0 else int(self._layer_block[d[0]])

    # ---- minibatches ----------------------------------------------------------------------------

    def minibatch(self, fidelity: int | None, seed: int | None) -> np.ndarray:
        """Sorted indices of the calibration sequences used for (fidelity, seed)."""
        if fidelity is None:
            return np.arange(self.n_seq)
        if isinstance(fidelity, bool) or not isinstance(fidelity, (int, np.integer)) or fidelity < 1:
            raise ConfigError(f"batch.fidelity must be a positive number of tokens or None, got {fidelity!r}")
        n = min(self.n_seq, math.ceil(int(fidelity) / self.seq_len))
        if seed is None or n == self.n_seq:
            return np.arange(n)
        return np.sort(np.random.default_rng(int(seed)).choice(self.n_seq, size=n, replace=False))

    def _context(self, h: torch.Tensor) -> Any:
        key = (int(h.shape[0]), int(h.shape[1]))
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = self.adapter.block_context(h)
        return ctx

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The hidden states entering block 0 (the model's own embedding path, stopped there)."""
        def hook(module: Any, args: tuple, kwargs: dict) -> None:
            raise _Stop(args[0] if args else kwargs["hidden_states"])

        h = self.adapter.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.adapter.model(input_ids=ids, use_cache=False)
        except _Stop as s:
            return s.hidden
        finally:
            h.remove()
        raise RuntimeError("the first block was not called")  # pragma: no cover

    def _autocast(self) -> Any:
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)

    def _run_blocks(self, src: list[torch.Tensor], start: int, *, dense: bool = False,
                    stop: int | None = None) -> list[torch.Tensor]:
        """Stack of block inputs over the minibatch (up to entry ``stop``, default N) from ``src[start]`` on."""
        stop = self.adapter.n_blocks if stop is None else stop
        stack = list(src[: start + 1])
        h_all = src[start]
        bs = self.batch_size
        for blk in self.adapter.blocks[start:stop]:
            outs = []
            for c0 in range(0, h_all.shape[0], bs):
                h = h_all[c0:c0 + bs]
                ctx = self._context(h)
                with self._autocast():
                    out = blk(h, *ctx.args, **ctx.kwargs)
                outs.append(out[0] if isinstance(out, tuple) else out)
            h_all = outs[0] if len(outs) == 1 else torch.cat(outs)
            stack.append(h_all)
        n = stop - start
        self.stats["dense_blocks" if dense else "blocks_computed"] += n
        if not dense:
            self.stats["blocks_skipped"] += start
        return stack

    def _kl(self, last: torch.Tensor) -> float:
        """Mean KL over the minibatch from the last block's output [n, T, H]."""
        flat_h = last.reshape(-1, last.shape[-1])
        total = 0.0
        for r0 in range(0, flat_h.shape[0], self.head_tokens):
            h = flat_h[r0:r0 + self.head_tokens]
            if self._head is not None:
                t = self._mb_teacher.take(slice(r0, r0 + h.shape[0]))
                total += float(self._head.kl(self.adapter.final_norm(h), t).sum())
                continue
            with self._autocast():
                logits = self.adapter.lm_head(self.adapter.final_norm(h))
            if logits.dtype not in (torch.float32, torch.bfloat16):
                logits = logits.float()
            t = self._mb_teacher.take(slice(r0, r0 + h.shape[0]))
            total += float((kl_divergence(t, logits, reduction="none") if self.fused_kl
                            else kl_torch(t, logits)).sum())
        return total / flat_h.shape[0]

    def _set_minibatch(self, rows: np.ndarray) -> None:
        key = tuple(int(r) for r in rows)
        if key == self._mb_rows:
            return
        self._mb_rows = key
        tok = (rows[:, None] * self.seq_len + np.arange(self.seq_len)[None, :]).reshape(-1)
        self._mb_teacher = self.teacher.take(tok).to(self.device)  # the CPU: itself, numpy
        self._restore()
        ids = self.tokens[torch.as_tensor(rows, device=self.device)]
        emb = torch.cat([self._embed(ids[c0:c0 + self.batch_size]) for c0 in range(0, len(rows), self.batch_size)])
        self._dense_stack = [emb]  # grown by _dense_upto when a candidate shares a dense prefix
        self._work_stack, self._work_cfg, self._work_kl = None, None, None
        self._base_stack = None

    def _dense_upto(self, j: int) -> None:
        """Grow the dense stack to hold the input of block ``j``."""
        have = len(self._dense_stack) - 1
        if j > have:
            self._restore()
            self._dense_stack = self._run_blocks(self._dense_stack, have, dense=True, stop=j)

    def set_base(self, genome: Any | None) -> None:
        """Hint the configuration most candidates derive from (e.g. the parent), or None.

        With prefix reuse, its block inputs are computed once per minibatch (lazily, on the first
        :meth:`evaluate` after this call or after the minibatch changes) and used as a third source:
        a candidate then starts at the first block where it differs from the base, the dense model
        or the previous candidate, whichever is latest.
        """
        if genome is None:
            self._base_genome = self._base_cfg = self._base_stack = None
            return
        g = self.check_genomes(genome)
        if g.shape[0] != 1:
            raise ConfigError(f"set_base takes one genome, got {g.shape[0]}")
        self._base_genome = g
        self._base_cfg = None  # effective configuration, computed under inference_mode in evaluate
        self._base_stack = None

    # ---- the evaluator --------------------------------------------------------------------------

    def _start(self, genomes: Any, batch: Any) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """Start of an evaluate (subclasses too): (start time, checked genomes, minibatch rows, out [B])."""
        t0 = time.perf_counter()
        g = self.check_genomes(genomes)
        rows = self.minibatch(getattr(batch, "fidelity", None), getattr(batch, "seed", None))
        self.stats["candidates"] += g.shape[0]
        return t0, g, rows, np.empty(g.shape[0], dtype=np.float64)

    def evaluate(self, genomes: Any, batch: Any = None) -> np.ndarray:
        """KL(dense || candidate), float64 [B], for genomes [B, L] on the minibatch of ``batch``.

        ``batch`` is an :class:`evoforge.search.engine.Batch` (its ``fidelity`` and ``seed`` are
        used) or None (all calibration tokens).
        """
        t0, g, rows, out = self._start(genomes, batch)
        N = self.adapter.n_blocks
        try:
            with torch.inference_mode():
                self._set_minibatch(rows)
                eff = self._effective(g)
                if self.prefix_reuse and self._base_genome is not None and self._base_stack is None:
                    self._base_cfg = self._effective(self._base_genome)[0]
                    start = self._first_block(self._base_cfg, np.full(self.n_layers, _DENSE, dtype=np.int64))
                    self._dense_upto(start)
                    self._apply(self._base_cfg)
                    self._base_stack = self._run_blocks(self._dense_stack, start, dense=True)
                uniq, inverse = np.unique(eff, axis=0, return_inverse=True)  # lexicographic order
                inverse = inverse.reshape(-1)
                dense_cfg = np.full(self.n_layers, _DENSE, dtype=np.int64)
                for u, cfg in enumerate(uniq):
                    if self.prefix_reuse:
                        j_d = self._first_block(cfg, dense_cfg)
                        j_w = -1 if self._work_cfg is None else self._first_block(cfg, self._work_cfg)
                        if j_w == N and self._work_kl is not None:
                            out[inverse == u] = self._work_kl
                            continue
                        src, start = (self._work_stack, j_w) if j_w >= j_d else (None, j_d)
                        if self._base_stack is not None:
                            j_b = self._first_block(cfg, self._base_cfg)
                            if j_b > start or (src is None and j_b == start):
                                src, start = self._base_stack, j_b
                        if src is None:
                            self._dense_upto(start)
                            src = self._dense_stack
                    else:
                        src, start = self._dense_stack, 0
                    self._apply(cfg)
                    stack = self._run_blocks(src, start)
                    kl = self._kl(stack[N])
                    self.stats["evaluated"] += 1
                    self.stats["tokens"] += len(rows) * self.seq_len
                    if self.prefix_reuse:
                        self._work_stack, self._work_cfg, self._work_kl = stack, cfg.copy(), kl
                    out[inverse == u] = kl
        finally:
            self._restore()
            self.stats["seconds"] += time.perf_counter() - t0
        return out

    def __call__(self, genomes: Any) -> np.ndarray:
        """``evaluate(genomes)`` on all calibration tokens."""
        return self.evaluate(genomes, None)

    def layer_blocks(self) -> Sequence[int]:
        """Block index of each genome position."""
        return [int(b) for b in self._layer_block]


def _compute_dtype(value: Any, model_dtype: torch.dtype) -> torch.dtype | None:
    """None (no autocast) or a lower-precision dtype for torch.autocast; names accepted."""
    if value is None:
        return None
    dt = getattr(torch, value, None) if isinstance(value, str) else value
    if dt not in (torch.float32, torch.float16, torch.bfloat16):
        raise ConfigError(f"compute_dtype must be None, 'float32', 'float16' or 'bfloat16', got {value!r}")
    return None if dt in (torch.float32, model_dtype) else dt
