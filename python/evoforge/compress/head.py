"""The exact full-vocabulary KL of a linear LM head without a [tokens, V] logits tensor.

For logits ``z = W h + b`` (``W`` [V, H], the dense model's head, which a compression search never
changes) and the teacher's next-token distribution ``p`` over the whole vocabulary,

    KL(p || softmax(z)) = sum_v p_v log p_v - sum_v p_v z_v + logsumexp(z)
                        = c - h . u + logsumexp(W h + b),

with ``u = W^T p`` ([H] per token) and ``c = sum_v p_v log p_v - b . p``, both computed once from the
teacher. A candidate then needs, per token, one dot product with ``u`` and the log-sum-exp of its
logits, which :meth:`LinearHeadKL.kl` computes in blocks of the vocabulary (``vocab_block`` rows of
``W`` at a time, into one reused buffer that stays in cache) instead of writing [tokens, V] logits
to memory and reading them back with a [tokens, V] teacher: the same KL (no top-K truncation, no
float16 teacher), with the head's matmul as the only [tokens, V] work, and a teacher of ``4 H + 8``
bytes per token instead of ``2 V``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["HeadTeacher", "LinearHeadKL", "build_head_teacher"]


class HeadTeacher:
    """The teacher side of :class:`LinearHeadKL` for T tokens: ``u`` float32 [T, H] (``W^T p``) and
    ``c`` float64 [T] (``sum p log p - b . p``), as NumPy arrays (memory-mapped when loaded)."""

    def __init__(self, u: Any, c: Any) -> None:
        if u.ndim != 2 or tuple(c.shape) != (u.shape[0],):
            raise ValueError(f"u must be [T, H] and c [T], got {tuple(u.shape)} and {tuple(c.shape)}")
        self.u, self.c = u, c

    @property
    def num_tokens(self) -> int:
        return int(self.u.shape[0])

    def take(self, rows: Any) -> HeadTeacher:
        """The teacher of the tokens ``rows`` (an index array or a slice)."""
        if isinstance(self.u, torch.Tensor):
            return HeadTeacher(self.u[rows], self.c[rows])
        return HeadTeacher(np.ascontiguousarray(self.u[rows]), np.ascontiguousarray(self.c[rows]))

    def to(self, device: Any) -> HeadTeacher:
        """The same teacher with its arrays as tensors on ``device`` (itself on the CPU)."""
        if torch.device(device).type == "cpu":
            return self
        return HeadTeacher(torch.as_tensor(np.asarray(self.u)).to(device), torch.as_tensor(np.asarray(self.c)).to(device))

    def save(self, directory: Path, key: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "head.json").unlink(missing_ok=True)
        np.save(directory / "head_u.npy", self.u)
        np.save(directory / "head_c.npy", self.c)
        (directory / "head.json").write_text(json.dumps({"key": key, "tokens": self.num_tokens}))

    @classmethod
    def load(cls, directory: Path, key: str) -> HeadTeacher | None:
        """The teacher saved in ``directory`` under ``key``, or None."""
        try:
            if json.loads((directory / "head.json").read_text()).get("key") != key:
                return None
            return cls(np.load(directory / "head_u.npy", mmap_mode="r"), np.load(directory / "head_c.npy", mmap_mode="r"))
        except (OSError, ValueError):
            return None


class LinearHeadKL:
    """KL(teacher || student) per token over the full vocabulary of a linear head ``z = W h + b``.

    Parameters
    ----------
    weight : Tensor [V, H] -- the head's weight (kept by reference, not copied)
    bias : Tensor [V] or None
    vocab_block : int -- rows of ``weight`` per matmul (the [tokens, vocab_block] buffer is reused)
    token_block : int -- tokens per block
    compute_dtype : torch dtype or None -- the head's matmul in this dtype (e.g. bfloat16, as under
        autocast); the log-sum-exp and the dot products are float32 / float64 whatever it is.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, vocab_block: int = 4096,
                 token_block: int = 256, compute_dtype: torch.dtype | None = None) -> None:
        self.weight, self.bias = weight, bias
        self.vocab_block, self.token_block = int(vocab_block), int(token_block)
        self._w = weight if compute_dtype is None or compute_dtype == weight.dtype else weight.to(compute_dtype)
        self._buf: torch.Tensor | None = None

    @staticmethod
    def of(adapter: Any, compute_dtype: torch.dtype | None = None) -> LinearHeadKL | None:
        """The KL of ``adapter``'s head when it is a plain linear map of the final norm's output
        (checked on random inputs against the head itself: a softcap or logit scale fails), else None."""
        head = adapter.lm_head
        w, b = getattr(head, "weight", None), getattr(head, "bias", None)
        if not isinstance(head, torch.nn.Linear) or not isinstance(w, torch.Tensor) or w.dim() != 2:
            return None
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, w.shape[1], generator=g).to(device=w.device, dtype=w.dtype) * 4
        with torch.inference_mode():
            ref = head(x).double()
            mine = x.double() @ w.double().T + (0 if b is None else b.double())
        if not torch.allclose(ref, mine, rtol=1e-2, atol=1e-2 * float(mine.abs().max())):
            return None
        return LinearHeadKL(w, b, compute_dtype=compute_dtype)

    def teacher(self, logits: torch.Tensor) -> HeadTeacher:
        """``u`` and ``c`` from the teacher's logits [T, V] (float32 softmax, float64 entropy),
        ``token_block`` rows at a time."""
        us, cs = [], []
        w = self.weight.float()
        for t0 in range(0, logits.shape[0], self.token_block):
            logp = torch.log_softmax(logits[t0:t0 + self.token_block].float(), dim=-1)
            p = logp.exp()
            c = (p.double() * logp.double()).sum(-1)
            if self.bias is not None:
                c -= p.double() @ self.bias.double()
            us.append((p @ w).cpu())
            cs.append(c.cpu())
        return HeadTeacher(torch.cat(us).numpy(), torch.cat(cs).numpy())

    def logsumexp(self, h: torch.Tensor) -> torch.Tensor:
        """log-sum-exp over the vocabulary of ``W h + b``, float32 [T], for final-normed ``h`` [T, H]."""
        T, V = h.shape[0], self.weight.shape[0]
        out = torch.empty(T, dtype=torch.float32, device=h.device)
        hw = h.to(self._w.dtype)
        for t0 in range(0, T, self.token_block):
            x = hw[t0:t0 + self.token_block]
            acc = None
            for v0 in range(0, V, self.vocab_block):
                blk = self._block(x, v0)
                lse = torch.logsumexp(blk, dim=1)
                acc = lse if acc is None else torch.logaddexp(acc, lse, out=acc)
            out[t0:t0 + x.shape[0]] = acc
        return out

    def _block(self, x: torch.Tensor, v0: int) -> torch.Tensor:
        w = self._w[v0:v0 + self.vocab_block]
        n = x.shape[0] * w.shape[0]
        buf = self._buf  # flat, so that every block's view of it is contiguous
        if buf is None or buf.numel() < n or buf.device != x.device or buf.dtype != x.dtype:
            buf = self._buf = torch.empty(max(n, self.token_block * self.vocab_block), dtype=x.dtype,
                                          device=x.device)
        out = buf[:n].view(x.shape[0], w.shape[0])
        if self.bias is None:
            torch.mm(x, w.T, out=out)
        else:
            torch.addmm(self.bias[v0:v0 + w.shape[0]].to(x.dtype), x, w.T, out=out)
        return out if out.dtype == torch.float32 else out.float()

    def kl(self, h: torch.Tensor, teacher: HeadTeacher) -> torch.Tensor:
        """KL per token, float64 [T], of final-normed hidden states ``h`` [T, H] against ``teacher``."""
        if teacher.num_tokens != h.shape[0]:
            raise ValueError(f"the teacher has {teacher.num_tokens} tokens, h has {h.shape[0]}")
        u, c = (torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(h.device)
                for a in (teacher.u, teacher.c))
        dot = (h.double() * u.double()).sum(-1)
        return c - dot + self.logsumexp(h).double()


def build_head_teacher(adapter: Any, head: LinearHeadKL, tokens: torch.Tensor, *, batch_size: int,
                       directory: Path | None) -> HeadTeacher:
    """The :class:`HeadTeacher` of the dense model (as it is now) on every token of ``tokens`` [N, S],
    ``batch_size`` sequences per forward; with ``directory``, saved there and reused when the model
    and tokens are the same."""
    key = hashlib.sha256(b"head|%s|%r|" % (adapter.fingerprint().encode(), tuple(tokens.shape))
                         + tokens.cpu().numpy().tobytes()).hexdigest()
    if directory is not None:
        found = HeadTeacher.load(directory, key)
        if found is not None:
            return found
    us, cs = [], []
    with torch.inference_mode():
        for c0 in range(0, tokens.shape[0], batch_size):
            logits = adapter.logits(tokens[c0:c0 + batch_size])
            part = head.teacher(logits.reshape(-1, logits.shape[-1]))
            del logits
            us.append(part.u)
            cs.append(part.c)
    teacher = HeadTeacher(np.concatenate(us), np.concatenate(cs))
    if directory is not None:
        teacher.save(directory, key)
    return teacher
