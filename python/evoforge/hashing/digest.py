"""Digests of arrays and the streaming :class:`Hasher` (see :mod:`evoforge.hashing` for the
canonical stream and the quantisation), and :func:`genotype_hash`, the exact-duplicate key."""

from __future__ import annotations

import math
import struct
from typing import Any, Mapping

import numpy as np

from .. import _checks
from .._native import core
from ..errors import ConfigError

__all__ = ["hash_array", "Hasher", "genotype_hash", "DIGEST_SIZE", "check_seed", "check_quant", "is_array"]

DIGEST_SIZE = 16
_MASK64 = (1 << 64) - 1

# Element type codes of the native kernels (evoforge::hashing::ElemType).
_F16, _BF16, _F32, _F64 = 0, 1, 2, 3
_NP_CODES = {
    np.dtype(np.float16): _F16,
    np.dtype(np.float32): _F32,
    np.dtype(np.float64): _F64,
    np.dtype(np.int8): 4,
    np.dtype(np.int16): 5,
    np.dtype(np.int32): 6,
    np.dtype(np.int64): 7,
    np.dtype(np.uint8): 8,
    np.dtype(np.uint16): 9,
    np.dtype(np.uint32): 10,
    np.dtype(np.uint64): 11,
    np.dtype(np.bool_): 12,
}
_TORCH_CODES = {
    "torch.float16": _F16,
    "torch.bfloat16": _BF16,
    "torch.float32": _F32,
    "torch.float64": _F64,
    "torch.int8": 4,
    "torch.int16": 5,
    "torch.int32": 6,
    "torch.int64": 7,
    "torch.uint8": 8,
    "torch.uint16": 9,
    "torch.uint32": 10,
    "torch.uint64": 11,
    "torch.bool": 12,
}
_MODE_EXACT, _MODE_MANTISSA, _MODE_GRID = 0, 1, 2

# Header and item tags (ASCII, so that they read in a hex dump).
_TAG_ARRAY = 0x5952524146455645  # "EVEFARRY"
_CLASS_F32, _CLASS_F64, _CLASS_INT, _CLASS_GRID = 1, 2, 3, 4
_T_ARRAY, _T_BYTES, _T_STR, _T_INT, _T_BIGINT, _T_FLOAT, _T_BOOL, _T_NONE = range(0xE0, 0xE8)
_T_TUPLE, _T_LIST, _T_DICT, _T_SCALAR = range(0xE8, 0xEC)


# ---- validation ---------------------------------------------------------------------------------


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= _MASK64:
        raise ConfigError(f"seed must lie in [0, 2**64 - 1], got {seed}")
    return seed


def check_quant(mantissa_bits: Any, grid: Any) -> tuple[int, int, float]:
    """(mode, mantissa_bits, grid) for the native call; range of mantissa_bits checked later."""
    if mantissa_bits is not None and grid is not None:
        raise ConfigError("give mantissa_bits or grid, not both")
    if mantissa_bits is not None:
        if isinstance(mantissa_bits, bool) or not isinstance(mantissa_bits, (int, np.integer)):
            raise TypeError(f"mantissa_bits must be an int, got {type(mantissa_bits).__name__}")
        b = int(mantissa_bits)
        if not 0 <= b <= 52:
            raise ConfigError(f"mantissa_bits must lie in [0, 52] (float64) or [0, 23] (float32), got {b}")
        return _MODE_MANTISSA, b, 1.0
    if grid is not None:
        if isinstance(grid, bool) or not isinstance(grid, (int, float, np.integer, np.floating)):
            raise TypeError(f"grid must be a real number, got {type(grid).__name__}")
        g = float(grid)
        if not (g > 0 and math.isfinite(g)):  # also rejects NaN
            raise ConfigError(f"grid must be a positive finite number, got {grid!r}")
        return _MODE_GRID, 0, g
    return _MODE_EXACT, 0, 1.0


def _header(code: int, shape: tuple, quant: tuple[int, int, float], ignore_dtype: bool) -> list[int]:
    mode, b, g = quant
    is_float = code <= _F64
    if not is_float:
        mode, b, g = _MODE_EXACT, 0, 1.0  # integers are always exact
    elif mode == _MODE_MANTISSA:
        limit = 52 if code == _F64 else 23
        if b > limit:
            kind = "float64" if code == _F64 else "float32 (and float16, bfloat16)"
            raise ConfigError(f"mantissa_bits must lie in [0, {limit}] for {kind}, got {b}")
    if ignore_dtype:
        if not is_float:
            kind = _CLASS_INT
        elif mode == _MODE_GRID:
            kind = _CLASS_GRID
        else:
            kind = _CLASS_F64 if code == _F64 else _CLASS_F32
    else:
        kind = 0x100 + code
    param = b if mode == _MODE_MANTISSA else (struct.unpack("<Q", struct.pack("<d", g))[0] if mode == _MODE_GRID else 0)
    return [_TAG_ARRAY, kind, mode, param, len(shape), *(int(n) for n in shape)]


def _numpy_input(x: Any) -> tuple[np.ndarray, int]:
    """A (possibly strided) numpy view of x and its element type code; TypeError if unsupported."""
    if _checks.is_torch(x):
        t = x.detach()
        code = _TORCH_CODES.get(str(t.dtype))
        if code is None:
            raise TypeError(f"cannot hash a tensor of dtype {t.dtype}; supported: float16, bfloat16, "
                            "float32, float64, integers and bool")
        if code == _BF16:  # numpy has no bfloat16: hash its bits
            import torch

            t = t.view(torch.int16)
        if t.is_conj() or t.is_neg():
            t = t.resolve_conj().resolve_neg()
        return t.numpy(), code
    if isinstance(x, np.ndarray):
        a = x
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"cannot hash {type(x).__name__}: {exc}") from None
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    code = _NP_CODES.get(a.dtype)
    if code is None:
        raise TypeError(f"cannot hash an array of dtype {a.dtype}; supported: float16, bfloat16 "
                        "(torch), float32, float64, integers and bool")
    return a, code


# ---- arrays -------------------------------------------------------------------------------------


def hash_array(x: Any, *, mantissa_bits: int | None = None, grid: float | None = None, seed: int = 0,
               ignore_dtype: bool = False) -> bytes:
    """The 16-byte digest of an array's quantised values, shape and dtype.

    Parameters
    ----------
    x : numpy.ndarray, torch.Tensor or array-like, any shape, any strides
        float16, bfloat16 (torch), float32, float64, signed/unsigned integers or bool. A CUDA
        tensor is hashed on its device (no copy to the host) and gives the CPU digest. An
        array-like (list, scalar) is converted with ``numpy.asarray`` first.
    mantissa_bits : int, optional
        Round floats to this many explicit mantissa bits (ties away from zero): [0, 23] for
        float16/bfloat16/float32, [0, 52] for float64. See the module docstring.
    grid : float, optional
        Round floats to the nearest multiple of ``grid`` (ties to even) and hash the multiple's
        index. Not together with ``mantissa_bits``.
    seed : int in [0, 2**64)
        Selects an independent hash function.
    ignore_dtype : bool
        Leave the dtype out of the digest, keeping only its class: equal values hash equal across
        float16/bfloat16/float32, across all integer and bool dtypes, and, with ``grid``, across
        all float dtypes. The shape always counts.

    Returns
    -------
    bytes of length 16.

    Raises
    ------
    TypeError for an unsupported dtype (complex, object, strings, ...) or a non-int
    ``mantissa_bits``; ValueError for ``mantissa_bits`` out of range, both ``mantissa_bits`` and
    ``grid``, ``grid`` <= 0, infinite or NaN, or a seed out of range.
    """
    quant = check_quant(mantissa_bits, grid)
    seed = check_seed(seed)
    if _checks.is_torch(x) and x.device.type == "cuda":
        return _hash_cuda(x, quant, seed, ignore_dtype)
    a, code = _numpy_input(x)
    header = _header(code, a.shape, quant, bool(ignore_dtype))
    return core.hash_array(a, code, quant[0], quant[1], quant[2], header, seed)


def _hash_cuda(t: Any, quant: tuple[int, int, float], seed: int, ignore_dtype: bool) -> bytes:
    import torch

    from ._native import require_cuda

    cu = require_cuda()
    t = t.detach()
    code = _TORCH_CODES.get(str(t.dtype))
    if code is None:
        raise TypeError(f"cannot hash a tensor of dtype {t.dtype}; supported: float16, bfloat16, "
                        "float32, float64, integers and bool")
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    header = _header(code, tuple(t.shape), quant, bool(ignore_dtype))
    workspace = torch.empty(cu.hash_workspace_bytes(), dtype=torch.uint8, device=t.device)
    with torch.cuda.device(t.device):
        stream = torch.cuda.current_stream(t.device).cuda_stream
        return cu.hash_array(t.data_ptr(), code, list(t.shape), list(t.stride()), quant[0], quant[1],
                             quant[2], header, seed, workspace.data_ptr(), workspace.numel(), stream)


# ---- streaming ----------------------------------------------------------------------------------


def is_array(obj: Any) -> bool:
    return isinstance(obj, np.ndarray) or _checks.is_torch(obj)


#: Containers nested deeper than this are refused (ValueError) rather than recursed into until
#: Python's recursion limit (about 1000 frames) raises RecursionError.
MAX_NESTING = 256


def enter_container(obj: Any, path: set[int] | None) -> set[int]:
    """``path`` (ids of the containers being walked around ``obj``) with ``obj`` added; ValueError
    when ``obj`` is already on it (it contains itself) or the nesting is too deep."""
    path = set() if path is None else path
    if id(obj) in path:
        raise ValueError(f"cannot hash a {type(obj).__name__} that contains itself (a reference cycle)")
    if len(path) >= MAX_NESTING:
        raise ValueError(f"cannot hash containers nested more than {MAX_NESTING} levels deep")
    path.add(id(obj))
    return path


class Hasher:
    """Streaming 128-bit hash: folds items in order into one digest.

    ``update`` accepts numpy arrays and torch tensors (hashed by :func:`hash_array`, with the
    quantisation given to ``update``), numpy scalars, ``bytes``/``bytearray``/``memoryview``,
    ``str`` (UTF-8), ``int`` (any size), ``float`` (as a float64, quantised like an array),
    ``bool``, ``None``, and tuples, lists and dicts of these (dicts regardless of their order).
    Every item carries a type tag, so ``"1"``, ``1``, ``1.0``, ``True`` and ``b"1"`` all differ, as
    do ``(1, 2)`` and ``[1, 2]``; the order of the updates matters.

    Examples
    --------
    >>> key = Hasher().update("task-7").update(2).update(outputs, mantissa_bits=7).hexdigest()
    """

    __slots__ = ("_seed", "_state", "_count")

    def __init__(self, seed: int = 0) -> None:
        self._seed = check_seed(seed)
        self._state = core.hash_state_init(self._seed)
        self._count = 0

    def update(self, obj: Any, *, mantissa_bits: int | None = None, grid: float | None = None,
               ignore_dtype: bool = False) -> "Hasher":
        """Fold ``obj`` in; returns self so that calls chain."""
        quant = dict(mantissa_bits=mantissa_bits, grid=grid, ignore_dtype=ignore_dtype)
        check_quant(mantissa_bits, grid)  # validate even when obj holds no floats
        self._state = self._fold(self._state, obj, quant)
        self._count += 1
        return self

    def _fold(self, state: bytes, obj: Any, quant: dict, path: set[int] | None = None) -> bytes:
        """Fold one item; ``path`` holds the ids of the containers being folded around it (a
        container met again on its own path contains itself: ValueError, not a RecursionError)."""
        if is_array(obj):
            return core.hash_fold_digest(state, _T_ARRAY, hash_array(obj, seed=self._seed, **quant))
        if isinstance(obj, np.generic):
            return core.hash_fold_digest(state, _T_SCALAR, hash_array(np.asarray(obj), seed=self._seed, **quant))
        if obj is None:
            return core.hash_fold(state, [_T_NONE])
        if isinstance(obj, bool):
            return core.hash_fold(state, [_T_BOOL, int(obj)])
        if isinstance(obj, int):
            if -(1 << 63) <= obj < (1 << 63):
                return core.hash_fold(state, [_T_INT, obj & _MASK64])
            data = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
            return core.hash_fold_digest(state, _T_BIGINT, core.hash_bytes(data, [_T_BIGINT, len(data)], self._seed))
        if isinstance(obj, float):
            d = hash_array(np.float64(obj), seed=self._seed, **quant)
            return core.hash_fold_digest(state, _T_FLOAT, d)
        if isinstance(obj, str):
            data = obj.encode("utf-8", "surrogatepass")
            return core.hash_fold_digest(state, _T_STR, core.hash_bytes(data, [_T_STR, len(data)], self._seed))
        if isinstance(obj, (bytes, bytearray, memoryview)):
            data = memoryview(obj).cast("B") if isinstance(obj, memoryview) else obj
            return core.hash_fold_digest(state, _T_BYTES, core.hash_bytes(data, [_T_BYTES, len(data)], self._seed))
        if isinstance(obj, (tuple, list)):
            path = enter_container(obj, path)
            state = core.hash_fold(state, [_T_TUPLE if isinstance(obj, tuple) else _T_LIST, len(obj)])
            for item in obj:
                state = self._fold(state, item, quant, path)
            path.discard(id(obj))
            return state
        if isinstance(obj, Mapping):
            path = enter_container(obj, path)
            # Order-free: fold the sorted digests of the (key, value) pairs.
            pairs = []
            for k, v in obj.items():
                h = Hasher(self._seed)
                h._state = h._fold(h._fold(h._state, k, quant, path), v, quant, path)
                pairs.append(core.hash_state_final(h._state, 2))
            state = core.hash_fold(state, [_T_DICT, len(pairs)])
            for p in sorted(pairs):
                state = core.hash_fold_digest(state, _T_DICT, p)
            path.discard(id(obj))
            return state
        raise TypeError(f"Hasher cannot hash {type(obj).__name__}; give arrays, tensors, bytes, str, int, "
                        "float, bool, None, or tuples/lists/dicts of these")

    def digest(self) -> bytes:
        """The 16-byte digest of everything folded in so far (the hasher can go on)."""
        return core.hash_state_final(self._state, self._count)

    def hexdigest(self) -> str:
        return self.digest().hex()

    def copy(self) -> "Hasher":
        h = Hasher.__new__(Hasher)
        h._seed, h._state, h._count = self._seed, self._state, self._count
        return h


def genotype_hash(genome: Any) -> bytes:
    """Exact-duplicate key of a genome: 16 bytes.

    Hashes arrays and tensors exactly (no quantisation; dtype and shape count, so an int32 and an
    int64 genome differ), and lists, tuples, dicts (order-free), strings, ints, floats, bools and
    None by value and type (``[1, 2]`` differs from ``[1.0, 2.0]`` and from ``(1, 2)``). -0.0
    equals 0.0 and NaNs are equal. Lists and tuples of plain ints or plain floats take a
    vectorised path.
    """
    h = Hasher(0)
    h._state = _genome_fold(h, h._state, genome)
    h._count = 1
    return h.digest()


_T_INT_SEQ, _T_FLOAT_SEQ = 0xF0, 0xF1


def _genome_fold(h: Hasher, state: bytes, g: Any, path: set[int] | None = None) -> bytes:
    if isinstance(g, (list, tuple)):
        path = enter_container(g, path)
        state = _genome_fold_seq(h, state, g, path)
        path.discard(id(g))
        return state
    return h._fold(state, g, {}, path)


def _genome_fold_seq(h: Hasher, state: bytes, g: list | tuple, path: set[int]) -> bytes:
    if len(g) > 8:
        tag = 0x100 if isinstance(g, tuple) else 0x200
        if all(type(v) is int for v in g):
            try:
                a = np.array(g, dtype=np.int64)
            except OverflowError:
                a = None
            if a is not None:
                return core.hash_fold_digest(state, _T_INT_SEQ | tag, hash_array(a))
        elif all(type(v) is float for v in g):
            return core.hash_fold_digest(state, _T_FLOAT_SEQ | tag, hash_array(np.array(g, dtype=np.float64)))
    state = core.hash_fold(state, [_T_TUPLE if isinstance(g, tuple) else _T_LIST, len(g)])
    for v in g:
        state = _genome_fold(h, state, v, path)
    return state
