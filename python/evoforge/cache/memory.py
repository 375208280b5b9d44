"""The in-memory store of :class:`~evoforge.cache.EvaluationCache` (``path=None``): a dict in this
process, in LRU order."""

from __future__ import annotations

from .entries import Record

__all__ = ["MemoryStore"]


class MemoryStore:
    path = None

    def __init__(self) -> None:
        self._d: dict[bytes, Record] = {}  # insertion order = LRU order, least recently used first

    def load(self, key: bytes) -> Record | None:
        return self._d.get(key)

    def hit(self, key: bytes, rec: Record) -> None:
        rec.hits += 1
        rec.since_eval += 1
        d = self._d
        del d[key]
        d[key] = rec

    def put(self, key, x, seconds, genome, now, capacity) -> Record:
        d = self._d
        rec = d.pop(key, None)
        if rec is None:
            rec = Record.new(x, seconds, genome, now)
        else:
            try:
                rec.fold(key, x, seconds, genome, now)
            except ValueError:
                d[key] = rec
                raise
        d[key] = rec
        if capacity is not None:
            while len(d) > capacity:
                del d[next(iter(d))]
        return rec

    def delete(self, key: bytes) -> bool:
        return self._d.pop(key, None) is not None

    def contains(self, key: bytes) -> bool:
        return key in self._d

    def count(self) -> int:
        return len(self._d)

    def rows(self) -> list[tuple[bytes, Record]]:
        return list(self._d.items())

    def clear(self) -> None:
        self._d.clear()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._d = {}
