"""The op table of register programs, read from :data:`evoforge.interpreter.OP_TABLE` (the native
table: one source of truth), with lookups by name and by id."""

from __future__ import annotations

from typing import NamedTuple

from ..interpreter import OP_TABLE, signature

__all__ = ["OPS", "OpSpec", "OP_IDS", "op_id", "check_ops"]


class OpSpec(NamedTuple):
    """One op: its id, name, output type, input types (``'s'``, ``'v'``, ``'m'``) and whether it
    reads the instruction's immediate."""

    id: int
    name: str
    out: str
    ins: tuple[str, ...]
    reads_imm: bool

    @property
    def arity(self) -> int:
        """The number of register inputs."""
        return len(self.ins)

    @property
    def signature(self) -> str:
        """``"v <- m, v"``."""
        return signature(self.id)


#: Every op, indexed by id (``OPS[0]`` is ``noop``).
OPS: tuple[OpSpec, ...] = tuple(OpSpec(i, n, o, ins, imm) for i, (n, o, ins, imm) in enumerate(OP_TABLE))
#: Op ids by name.
OP_IDS: dict[str, int] = {op.name: op.id for op in OPS}
NOOP = OP_IDS["noop"]


def op_id(name: str) -> int:
    """The id of the op called ``name``; ValueError naming the known ops otherwise."""
    try:
        return OP_IDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown op {name!r}; the ops are {', '.join(OP_IDS)}") from None


def check_ops(ops: object) -> tuple[str, ...]:
    """``ops`` as a tuple of known op names (at least one): TypeError for a non-sequence or a non-name,
    ValueError naming the known ops for an unknown one."""
    if isinstance(ops, (str, bytes)) or not isinstance(ops, (list, tuple)):
        raise TypeError(f"ops must be a list or tuple of op names, got {type(ops).__name__}")
    for n in ops:
        if not isinstance(n, str):
            raise TypeError(f"ops must hold op names (str), got {type(n).__name__}")
        op_id(n)
    if not ops:
        raise ValueError("ops must name at least one op")
    return tuple(ops)
