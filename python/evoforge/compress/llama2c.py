"""The tokenizer of llama2.c checkpoints (``tok512.bin`` of stories260k): a vocabulary with scores,
encoded as llama2.c does (characters, byte fallback for unknown ones, then greedy merges of the
adjacent pair with the highest score), so that texts reach models that ship no Hugging Face
tokenizer."""

from __future__ import annotations

import heapq
import os
import struct
from pathlib import Path

__all__ = ["Llama2cTokenizer", "load_tokenizer"]


class Llama2cTokenizer:
    """``encode(text) -> list[int]`` (no BOS), ``decode(ids) -> str`` for a llama2.c tokenizer file
    (int32 max token length, then per token: float32 score, int32 length, bytes)."""

    def __init__(self, path: str | os.PathLike) -> None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"llama2.c tokenizer file not found: {str(p)!r}")
        data = p.read_bytes()
        try:
            off = 4
            self.pieces: list[bytes] = []
            self.scores: list[float] = []
            while off < len(data):
                score, n = struct.unpack_from("<fi", data, off)
                off += 8
                if n < 0 or off + n > len(data):
                    raise ValueError("truncated")
                self.pieces.append(data[off:off + n])
                self.scores.append(score)
                off += n
            if len(self.pieces) < 259:  # encode() needs ids 3..258, the byte fallbacks <0x00>..<0xFF>
                raise ValueError(f"{len(self.pieces)} tokens, fewer than the 3 specials and 256 byte fallbacks")
        except (struct.error, ValueError) as e:
            raise ValueError(f"{str(p)!r} is not a llama2.c tokenizer file ({e})") from None
        self.ids = {piece: i for i, piece in enumerate(self.pieces)}
        self.vocab_size = len(self.pieces)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids: list[int] = []
        for ch in text:
            b = ch.encode("utf-8")
            if b in self.ids:
                ids.append(self.ids[b])
            else:
                ids.extend(byte + 3 for byte in b)  # ids 3..258 are the byte fallbacks <0xNN>
        return self._merge(ids)

    def _merge(self, ids: list[int]) -> list[int]:
        """llama2.c's rule (repeatedly merge the adjacent pair of highest score, the leftmost among
        equals) in O(n log n): a linked list of tokens and a heap of candidate pairs."""
        n = len(ids)
        tok, nxt, prv, alive = list(ids), list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
        heap: list[tuple[float, int, int, int]] = []

        def push(i: int) -> None:
            j = nxt[i]
            if j < n:
                m = self.ids.get(self.pieces[tok[i]] + self.pieces[tok[j]])
                if m is not None:
                    heapq.heappush(heap, (-self.scores[m], i, tok[i], tok[j]))

        for i in range(n - 1):
            push(i)
        while heap:
            _, i, a, b = heapq.heappop(heap)
            j = nxt[i] if alive[i] else n
            if j >= n or tok[i] != a or tok[j] != b:
                continue  # stale: one side was merged since
            tok[i] = self.ids[self.pieces[a] + self.pieces[b]]
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0:
                push(prv[i])
            push(i)
        return [tok[i] for i in range(n) if alive[i]]

    def decode(self, ids: list[int]) -> str:
        bad = [int(i) for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self.vocab_size})")
        out = bytearray()
        for i in ids:
            piece = self.pieces[int(i)]
            out += bytes([int(i) - 3]) if 3 <= int(i) <= 258 and piece.startswith(b"<0x") else piece
        return out.decode("utf-8", errors="replace")


def load_tokenizer(path: str | os.PathLike) -> object:
    """A tokenizer from a llama2.c ``.bin`` file or a Hugging Face tokenizer directory."""
    p = Path(path)
    if p.is_file() and p.suffix == ".bin":
        return Llama2cTokenizer(p)
    if not p.exists():
        raise FileNotFoundError(f"tokenizer not found: {str(p)!r}")
    if not p.is_dir():
        raise ValueError(f"{str(p)!r} is neither a llama2.c tokenizer (.bin) nor a Hugging Face tokenizer directory")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(p))
    except (OSError, ValueError) as e:
        raise ValueError(f"{str(p)!r} holds no tokenizer Hugging Face can load ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from e
