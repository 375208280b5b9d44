"""A persistent cache of fitness evaluations, keyed by a digest of the candidate.

Symbols: a *key* is a digest (``bytes``, e.g. the 16 bytes of :mod:`evoforge.hashing`); a *fitness*
is a float, or a float64 vector of M components for multi-objective search. An :class:`Entry` holds
the running mean (the fitness that is served) and variance of every evaluation folded into a key,
the number of evaluations, the first genome seen, timestamps and the number of hits.

Storage:

* ``EvaluationCache(path)`` stores the entries in an SQLite file (the standard library's sqlite3;
  WAL journal, busy timeout). A directory ``path`` means ``<dir>/evaluations.sqlite``, one file per
  run directory. Several processes may read and write the same file at once; each process opens its
  own ``EvaluationCache`` (pickling a cache reopens its file in the receiving process; a cache
  inherited through ``fork`` raises :class:`CacheError` in the child, as SQLite forbids it). Every
  ``put`` is its own transaction, committed before ``put`` returns, so every entry that ``put``
  returned survives kill -9 of the process (and, with ``synchronous="FULL"``, a power loss too).
* ``EvaluationCache()`` (``path=None``) is the in-memory cache: a dict in this process, gone at
  ``close``. It has the same API and policies.

Policies (each ``None``/``0`` by default, i.e. off), applied by :meth:`EvaluationCache.get`:

* ``aggregate=n`` (noisy fitness): a lookup of an entry with fewer than ``n`` evaluations is a
  miss, so the caller evaluates it again; ``put`` folds the new value into the running mean, which
  is what ``get`` and ``evaluate`` return.
* ``forget_every=n``: after ``n`` hits since its last evaluation, the next lookup of an entry is a
  miss (it is re-evaluated; the new value is folded in and the count of hits since evaluation
  restarts at 0).
* ``remove_probability=p``: a hit is served and then removes the entry with probability ``p``,
  drawn from ``random.Random(seed)``: the same sequence of calls gives the same removals.
* ``capacity=n``: at most ``n`` entries; a ``put`` of a new key beyond it evicts the least recently
  used ones (a hit or a put uses an entry).

With SQLite, hits are counted and LRU recency is recorded in memory and written in batches (at the
next ``put``, at ``flush()``, at ``close()``, and by a lookup every 1,000 hits or 1 s if no other
process holds the write lock then), so a lookup costs one read and never waits for a writer. A
kill -9 loses at most the hit counts and recency not yet written, never an entry. The policies of
another process see this process's hits once they are written.

Fitness values must be finite: NaN or +-inf raises ``ValueError`` (record a failed evaluation as a
large finite penalty). Genomes are stored as JSON text (numpy arrays and scalars become lists and
numbers, tuples become lists): the file is a durable record shared by processes and read by other
tools, and JSON is readable anywhere, unlike pickle, which runs code on load and breaks when a class
moves. A genome that JSON cannot hold raises ``TypeError``.

Layout: ``entries`` (Entry, CacheStats, a key's record, the fitness checks), ``memory`` and ``sqlite``
(the two stores), ``facade`` (EvaluationCache and its policies).
"""

from __future__ import annotations

from ..errors import CacheClosedError, CacheError, CorruptCacheError
from .entries import CacheStats, Entry, Fitness  # noqa: F401  (Fitness: the type alias, as before the split)
from .facade import EvaluationCache, _reopen  # noqa: F401  (_reopen: unpickles caches pickled before the split)
from .sqlite import FILE_NAME  # noqa: F401

__all__ = ["EvaluationCache", "Entry", "CacheStats", "CacheError", "CacheClosedError", "CorruptCacheError"]
