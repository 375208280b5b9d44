"""Seed-list genomes (Deep GA): the encoding the evaluators receive, and parameters rebuilt from it.

Symbols: B genomes in a batch, n seeds of one genome, L columns of the encoded batch, D parameters.

A genome is a list of 64-bit seeds ``[s0, s1, ..., s_{n-1}]``: ``s0`` is the init seed and each
later seed one mutation, so its parameters are (:func:`evoforge.variation.deepga.seeds_to_params`)::

    params = policy.init_params(s0) + sigma * noise(s1) + ... + sigma * noise(s_{n-1})

accumulated left to right in float32. A batch of genomes travels as one ``uint64`` array
``[B, L]`` (:func:`encode`): column 0 holds ``n``, columns ``1..n`` the seeds, the rest zeros (L is
one more than the longest list of the batch). That is what the process and Ray backends ship
(8 bytes per seed and generation of ancestry, against ``4 D`` bytes of float32 weights; see
:func:`payload_bytes`), and the workers rebuild the parameters themselves.

:class:`ParamCache`: a worker's least-recently-used cache of parameters by seed list, bounded in
bytes. A child whose parent (its list without the last seed) is cached costs one
:func:`~evoforge.variation.deepga.extend_params` (O(D)); otherwise it is rebuilt from its seeds
(O(n D)). Both give the same bits (the kernel's guarantee, checked in tests/neuro).

Mutation seeds are drawn by :func:`derive_seed`, a pure function of (run seed, purpose, generation,
individual), so a run is a pure function of its seed.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from .._checks import check_int, check_real, to_numpy
from ..errors import ConfigError
from ..hashing import Hasher
from ..variation.deepga import extend_params, seeds_to_params
from .policy import MLPPolicy

__all__ = ["encode", "decode", "derive_seed", "ParamCache", "payload_bytes"]

#: The longest seed list a genome may have (one seed per generation of ancestry).
MAX_SEEDS = 1 << 20


def derive_seed(seed: int, purpose: str, *parts: int) -> int:
    """A 64-bit seed (int in [0, 2**64)) from the run ``seed``, a ``purpose`` tag and ints ``parts``."""
    if not isinstance(purpose, str):
        raise TypeError(f"purpose must be a str, got {type(purpose).__name__}")
    for i, p in enumerate(parts):
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Integral):
            raise TypeError(f"parts[{i}] must be an int, got {type(p).__name__}")
    return int.from_bytes(Hasher(seed).update((purpose, tuple(int(p) for p in parts))).digest()[:8], "little")


def _seed(v: Any, where: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{where} must be an int seed, got {type(v).__name__}")
    if not 0 <= int(v) < 2**64:
        raise ValueError(f"{where} must lie in [0, 2**64), got {int(v)}")
    return int(v)


def encode(seed_lists: Sequence[Sequence[int]]) -> np.ndarray:
    """uint64 [B, L]: column 0 the length of each list, then its seeds, zero-padded (L = 1 + the
    longest list)."""
    if isinstance(seed_lists, np.ndarray) or not isinstance(seed_lists, (list, tuple)):
        raise TypeError(f"seed_lists must be a list of seed lists, got {type(seed_lists).__name__}")
    lists = []
    for i, s in enumerate(seed_lists):
        if isinstance(s, (str, bytes)) or not isinstance(s, (list, tuple, np.ndarray)):
            raise TypeError(f"seed_lists[{i}] must be a list of seeds, got {type(s).__name__}")
        lists.append([_seed(v, f"seed_lists[{i}]") for v in (s.tolist() if isinstance(s, np.ndarray) else s)])
    width = 1 + max((len(s) for s in lists), default=0)
    out = np.zeros((len(lists), width), np.uint64)
    for i, s in enumerate(lists):
        if not 1 <= len(s) <= MAX_SEEDS:
            raise ConfigError(f"seed list {i} must hold 1 to {MAX_SEEDS} seeds, got {len(s)}")
        out[i, 0] = len(s)
        out[i, 1:1 + len(s)] = np.array(s, dtype=np.uint64)
    return out


def decode(genomes: Any) -> list[tuple[int, ...]]:
    """The seed lists of an encoded batch [B, L] (see :func:`encode`), as tuples of ints."""
    g = _check_encoded(genomes)
    n = g[:, 0].astype(np.int64)
    return [tuple(int(v) for v in row[1:1 + k]) for row, k in zip(g, n)]


def _check_encoded(genomes: Any) -> np.ndarray:
    g = to_numpy(genomes, "genomes")
    if g.dtype.kind not in "iu" or g.dtype == np.bool_:
        raise TypeError(f"seed-list genomes must be an integer array [B, L], got dtype {g.dtype}")
    if g.ndim != 2 or g.shape[1] < 2:
        raise ValueError(f"seed-list genomes must have shape (B, L) with L >= 2, got {g.shape}")
    if g.dtype.kind == "i" and g.size and g.min() < 0:
        raise ValueError("seed-list genomes hold seeds in [0, 2**64): negative values found")
    g = g.astype(np.uint64, copy=False)
    n = g[:, 0]
    if g.shape[0] and ((n < 1) | (n > g.shape[1] - 1)).any():
        i = int(np.argmax((n < 1) | (n > g.shape[1] - 1)))
        raise ValueError(f"genome {i} claims {int(n[i])} seeds; column 0 must hold a length in [1, {g.shape[1] - 1}]")
    return g


class ParamCache:
    """Parameters of seed lists, least recently used first out, at most ``max_bytes`` of them.

    policy : MLPPolicy (the init of the first seed); sigma : the mutation power."""

    def __init__(self, policy: MLPPolicy, sigma: float, *, max_bytes: int = 1 << 28) -> None:
        if not isinstance(policy, MLPPolicy):
            raise TypeError(f"policy must be an MLPPolicy, got {type(policy).__name__}")
        self.policy = policy
        self.sigma = check_real(sigma, "sigma")
        if not np.isfinite(self.sigma):
            raise ConfigError(f"sigma must be finite, got {sigma}")
        self.max_bytes = check_int(max_bytes, "max_bytes", 0, 1 << 50)
        self._entries: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self.hits = self.extended = self.rebuilt = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return len(self._entries) * self.policy.n_params * 4

    def _put(self, key: tuple[int, ...], params: np.ndarray) -> None:
        if self.policy.n_params * 4 > self.max_bytes:
            return
        self._entries[key] = params
        self._entries.move_to_end(key)
        while self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)

    def get(self, seeds: tuple[int, ...]) -> np.ndarray | None:
        p = self._entries.get(seeds)
        if p is not None:
            self._entries.move_to_end(seeds)
        return p

    def from_scratch(self, seeds: Sequence[int]) -> np.ndarray:
        """float32 [D]: the parameters of ``seeds`` rebuilt from the init seed (no cache)."""
        s = [int(v) for v in seeds]
        return seeds_to_params(self.policy.init_params(s[0]), [s[1:]], self.sigma)[0]

    def params(self, genomes: Any) -> np.ndarray:
        """float32 [B, D]: the parameters of an encoded batch (see :func:`encode`), through the cache.

        Rows whose parent is cached are extended in one call; the others are rebuilt from their
        seeds, grouped by init seed; every result is then cached (it may be a parent next time)."""
        lists = decode(genomes)
        D = self.policy.n_params
        out = np.empty((len(lists), D), np.float32)
        extend: list[tuple[int, np.ndarray]] = []
        scratch: dict[int, list[int]] = {}
        for i, key in enumerate(lists):
            hit = self.get(key)
            if hit is not None:
                out[i] = hit
                self.hits += 1
                continue
            parent = self.get(key[:-1]) if len(key) > 1 else None
            if parent is not None:
                extend.append((i, parent))
            else:
                scratch.setdefault(key[0], []).append(i)
        if extend:
            rows = [i for i, _ in extend]
            out[rows] = extend_params(np.stack([p for _, p in extend]), [lists[i][-1] for i in rows], self.sigma)
            self.extended += len(rows)
        for s0, rows in scratch.items():
            out[rows] = seeds_to_params(self.policy.init_params(s0), [list(lists[i][1:]) for i in rows], self.sigma)
            self.rebuilt += len(rows)
        for i, key in enumerate(lists):
            if key not in self._entries:
                self._put(key, out[i].copy())
        return out


def payload_bytes(genomes: Any, n_params: int) -> dict:
    """What shipping ``genomes`` (an encoded batch [B, L], or any array of genomes) costs against
    shipping their float32 parameters: ``{"genomes": B, "genome_bytes", "param_bytes", "ratio"}``
    (ratio = param_bytes / genome_bytes)."""
    g = to_numpy(genomes, "genomes")
    if g.ndim != 2:
        raise ValueError(f"genomes must be a 2-D array [B, L], got shape {g.shape}")
    D = check_int(n_params, "n_params", 1)
    gb, pb = int(g.nbytes), int(g.shape[0]) * D * 4
    return {"genomes": int(g.shape[0]), "genome_bytes": gb, "param_bytes": pb,
            "ratio": (pb / gb) if gb else float("inf")}
