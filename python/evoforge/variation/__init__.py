"""Variation operators on batches of genomes: mutation, crossover, selection and Deep GA seed lists.

Every operator draws its numbers as a pure function of ``(seed, generation, individual, gene)``
(see :mod:`evoforge.random`), so the result is the same on any thread count, for any split of
the rows, and on the CPU and the GPU. ``evoforge.mutation``, ``evoforge.crossover``,
``evoforge.selection`` and ``evoforge.deepga`` are these modules under their old names.
"""

from __future__ import annotations

from . import crossover, deepga, mutation, selection

__all__ = ["mutation", "crossover", "selection", "deepga"]
