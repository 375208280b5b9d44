"""Healing: a short distillation of a cut model against the full model's next-token distributions.

:func:`heal` trains every parameter of ``student`` with AdamW to minimise KL(teacher || student)
over the full vocabulary, on minibatches of whole calibration sequences drawn with a seeded
generator (the same seed, the same steps); :func:`kl_on` measures that KL on other tokens, before
and after.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["heal", "kl_on"]


def _kl(t_logits: torch.Tensor, s_logits: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of KL(softmax t || softmax s), float32."""
    t = t_logits.float().log_softmax(-1)
    s = s_logits.float().log_softmax(-1)
    return (t.exp() * (t - s)).sum(-1).mean()


@torch.no_grad()
def kl_on(student: nn.Module, teacher: nn.Module, tokens: torch.Tensor, *, batch_size: int = 8) -> float:
    """KL(teacher || student) per token, averaged over ``tokens`` (int64 [S, T]), full vocabulary."""
    dev = next(student.parameters()).device
    total, n = 0.0, 0
    for s in range(0, len(tokens), batch_size):
        ids = tokens[s:s + batch_size].to(dev)
        k = _kl(teacher(input_ids=ids, use_cache=False).logits, student(input_ids=ids, use_cache=False).logits)
        total += float(k) * ids.numel()
        n += ids.numel()
    return total / max(n, 1)


def heal(student: nn.Module, teacher: nn.Module, tokens: torch.Tensor, *, steps: int, lr: float = 1e-4,
         batch_size: int = 4, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Distil ``teacher`` into ``student`` (in place) for ``steps`` AdamW steps on minibatches of
    ``batch_size`` sequences of ``tokens`` (int64 [S, T]). Returns ``{"steps", "lr", "losses"}``
    (the training KL of every step). Both run in eval mode (no dropout); the teacher is not changed."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be an int >= 0, got {steps!r}")
    if not (isinstance(lr, (int, float)) and 0 < lr < 1):
        raise ConfigError(f"lr must be a float in (0, 1), got {lr!r}")
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or len(tokens) == 0:
        raise ConfigError(f"tokens must be a non-empty int64 tensor [S, T], got {getattr(tokens, 'shape', tokens)!r}")
    dev = next(student.parameters()).device
    g = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=float(lr), weight_decay=0.0)
    teacher.eval()
    student.eval()  # no dropout: the student matches the teacher's deterministic outputs
    losses = []
    for step in range(steps):
        rows = torch.randperm(len(tokens), generator=g)[:batch_size]
        ids = tokens[rows].to(dev)
        with torch.no_grad():
            t = teacher(input_ids=ids, use_cache=False).logits
        loss = _kl(t, student(input_ids=ids, use_cache=False).logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress and (step + 1) % max(1, steps // 10) == 0:
            print(f"heal {step + 1}/{steps}: KL {losses[-1]:.4f}", file=sys.stderr)
    return {"steps": int(steps), "lr": float(lr), "losses": losses}
