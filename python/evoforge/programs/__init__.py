"""Program search (issue 19), its foundation: AutoML-Zero-style typed register programs.

:class:`Program` (components of int32 ``[L, 4]`` instructions over scalar, vector and matrix
registers), its validation, canonical form (dead code removed, registers renamed) and printer;
:func:`pack` batches programs for the native interpreter (:mod:`evoforge.interpreter`);
:data:`OPS` is the op table.
"""

from __future__ import annotations

from .ops import OP_IDS, OPS, OpSpec, op_id
from .program import FUNCTION, LEARNER, Program, assemble, format_instruction, pack

__all__ = ["FUNCTION", "LEARNER", "OPS", "OP_IDS", "OpSpec", "Program", "assemble", "format_instruction", "op_id",
           "pack"]
