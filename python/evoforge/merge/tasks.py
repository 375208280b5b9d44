"""What a merge is good at: tasks, each a held-out next-token loss on a text, a KL to a task's
expert on that text, or a user callable; windows split once into search and held-out ones.

Symbols: T tasks, n windows of ``seq_len`` tokens, V vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..compress.calibration import _encode  # the calibration's tokenising, shared
from ..errors import ConfigError

__all__ = ["Task", "TaskData", "prepare_tasks", "task_losses", "parse_task"]


@dataclass
class Task:
    """name; text : path of a UTF-8 text (the loss, or the KL's windows); expert : a model (or its
    path) whose next-token distribution on the text is the target (KL(expert || merged)); fn : a
    callable ``fn(model) -> float`` (smaller is better, e.g. 1 - accuracy) used instead of both."""

    name: str
    text: str | os.PathLike | None = None
    expert: Any = None
    fn: Callable[[nn.Module], float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a task needs a non-empty name, got {self.name!r}")
        if self.fn is None and self.text is None:
            raise ConfigError(f"task {self.name!r} needs a text file or a callable")
        if self.fn is not None and not callable(self.fn):
            raise ConfigError(f"task {self.name!r}: fn must be callable")
        if self.text is not None and Path(self.text).is_dir():
            raise IsADirectoryError(f"task {self.name!r}: {str(self.text)!r} is a directory, not a text file")
        if self.text is not None and not Path(self.text).is_file():
            raise FileNotFoundError(f"task {self.name!r}: text file not found: {str(self.text)!r}")


def parse_task(spec: str) -> Task:
    """``NAME=TEXT_FILE`` (the command line's form) -> Task."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"a task is NAME=TEXT_FILE, got {spec!r}")
    return Task(name, text=path)


@dataclass
class TaskData:
    """A task's windows: ``search`` / ``heldout`` int64 [n, seq_len]; ``targets`` the expert's
    log-probabilities on them ({split: float32 [n, seq_len, V]}) for a KL task."""

    task: Task
    search: torch.Tensor | None = None
    heldout: torch.Tensor | None = None
    targets: dict | None = None


def _windows(tokenizer: Any, path: Any, n: int, seq_len: int, seed: int) -> torch.Tensor:
    ids = _encode(tokenizer, Path(path).read_text(encoding="utf-8", errors="replace"))
    count = len(ids) // seq_len
    if count < n:
        raise ConfigError(f"{str(path)!r} has {len(ids)} tokens: {count} windows of {seq_len}, fewer than the {n} "
                          "needed (search + held-out)")
    pick = np.random.default_rng(seed).choice(count, size=n, replace=False)
    a = np.asarray(ids[: count * seq_len], dtype=np.int64).reshape(count, seq_len)
    return torch.from_numpy(a[np.sort(pick)])


@torch.inference_mode()
def _log_probs(model: nn.Module, tokens: torch.Tensor, batch: int = 8) -> torch.Tensor:
    out = [torch.log_softmax(model(input_ids=tokens[i:i + batch], use_cache=False).logits.float(), -1)
           for i in range(0, len(tokens), batch)]
    return torch.cat(out)


def prepare_tasks(tasks: list[Task], tokenizer: Any, *, n_search: int, n_heldout: int, seq_len: int, seed: int,
                  load: Callable[[Any], nn.Module] | None = None) -> list[TaskData]:
    """Each text task's windows (disjoint search and held-out ones, drawn with ``seed``) and, for a
    KL task, its expert's log-probabilities on them (the expert is loaded with ``load`` if a path)."""
    if not tasks:
        raise ConfigError("give at least one task")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"task names must differ, got {names}")
    out = []
    for i, t in enumerate(tasks):
        d = TaskData(t)
        if t.fn is None:
            if tokenizer is None:
                raise ConfigError("text tasks need a tokenizer (the model ships none: give one, e.g. "
                                  "--tokenizer ../shared/data/stories260k/tok512.bin)")
            w = _windows(tokenizer, t.text, n_search + n_heldout, seq_len, seed + i)
            d.search, d.heldout = w[:n_search], w[n_search:]
            if t.expert is not None:
                expert = load(t.expert) if isinstance(t.expert, (str, os.PathLike)) and load else t.expert
                d.targets = {"search": _log_probs(expert, d.search), "heldout": _log_probs(expert, d.heldout)}
        out.append(d)
    return out


@torch.inference_mode()
def task_losses(model: nn.Module, data: list[TaskData], split: str = "search", batch: int = 8) -> np.ndarray:
    """float64 [T]: per task, the mean next-token cross-entropy on its ``split`` windows (nats), the
    mean KL(expert || model) per token for a KL task, or ``fn(model)``."""
    out = np.empty(len(data))
    for i, d in enumerate(data):
        if d.task.fn is not None:
            out[i] = float(d.task.fn(model))
            continue
        tokens = d.search if split == "search" else d.heldout
        total, count = 0.0, 0
        for j in range(0, len(tokens), batch):
            x = tokens[j:j + batch]
            logp = torch.log_softmax(model(input_ids=x, use_cache=False).logits.float(), -1)
            if d.targets is None:
                nll = -logp[:, :-1].gather(-1, x[:, 1:, None]).squeeze(-1)
                total += float(nll.double().sum())
                count += nll.numel()
            else:
                t = d.targets[split][j:j + batch]
                total += float((t.exp() * (t - logp)).sum(-1).double().sum())
                count += x.numel()
        out[i] = total / count
    return out
