"""The default backend: the evaluator runs in the driver's process, one call per batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..search.protocol import Backend, call_evaluator

__all__ = ["InProcess"]


class InProcess(Backend):
    """Calls ``evaluator`` (``evaluate(genomes, batch)`` or ``f(genomes)``) on the whole batch, as the
    engines do without a backend; ``broadcast`` calls the evaluator's method at once."""

    def __init__(self, evaluator: Any) -> None:
        super().__init__()
        if not callable(getattr(evaluator, "evaluate", None)) and not callable(evaluator):
            raise TypeError(f"evaluator must have evaluate(genomes, batch) or be callable, got "
                            f"{type(evaluator).__name__}")
        self.evaluator = evaluator

    def evaluate_chunks(self, genomes: np.ndarray, batch: Any = None) -> Iterator[tuple[np.ndarray, Any]]:
        yield np.arange(len(genomes)), call_evaluator(self.evaluator, genomes, batch)

    def broadcast(self, method: str, *args: Any) -> None:
        super().broadcast(method, *args)
        getattr(self.evaluator, method)(*args)
