"""Functional hashing: fast 128-bit digests of quantised arrays, streaming keys, and the hash of
what a network computes on fixed probe inputs.

The digest (16 bytes) is that of a native, non-cryptographic 128-bit hash (``evoforge._core``,
cpp/hashing.cpp; construction documented in cpp/include/evoforge/hashing.h) over a canonical
stream, so it is the same for any thread count, for numpy and torch, for contiguous and strided
views, and on the CPU and a CUDA device (``evoforge._cuda``, cuda/hashing.cu):

* the elements in C order, after quantisation (floats only, see below);
* float16 and bfloat16 are widened to float32 (exactly) and hashed as float32; float64 is
  hashed as float64; integers and bools are hashed as int64 values (uint64 by its bits);
* -0.0 equals 0.0, and all NaNs (any sign or payload) are equal; +-inf are kept;
* the shape, the dtype (unless ``ignore_dtype=True``) and the quantisation settings are part of
  the digest.

Quantisation of floats
----------------------
``mantissa_bits=b``
    Round to the nearest value with ``b`` explicit mantissa bits and the same exponent range
    (subnormals round on the same absolute grid), **ties away from zero**. +-inf stays +-inf; a
    finite value at the top of the range may round up to +-inf. ``b`` lies in [0, 23] for the
    float32 class (float16, bfloat16, float32) and in [0, 52] for float64; 23 (52) is exact.
``grid=g``
    Hash the integer nearest to ``x / g``, **ties to even**, computed in float64 (so float32 and
    float64 inputs of the same value give the same integer). Values too large for an integer keep
    their float64 value; +-inf and NaN are kept.
neither
    The exact bits (after the -0.0 / NaN rules).

A quantised digest is only as stable as the rounding: values within floating-point noise of a
bucket edge (a tie of the rounding) can still land on either side.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any, Callable, Mapping

import numpy as np

from . import _checks
from ._native import core

__all__ = ["hash_array", "Hasher", "FunctionalHasher", "genotype_hash", "DIGEST_SIZE"]

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


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= _MASK64:
        raise ValueError(f"seed must lie in [0, 2**64 - 1], got {seed}")
    return seed


def _quant(mantissa_bits: Any, grid: Any) -> tuple[int, int, float]:
    """(mode, mantissa_bits, grid) for the native call; range of mantissa_bits checked later."""
    if mantissa_bits is not None and grid is not None:
        raise ValueError("give mantissa_bits or grid, not both")
    if mantissa_bits is not None:
        if isinstance(mantissa_bits, bool) or not isinstance(mantissa_bits, (int, np.integer)):
            raise TypeError(f"mantissa_bits must be an int, got {type(mantissa_bits).__name__}")
        b = int(mantissa_bits)
        if not 0 <= b <= 52:
            raise ValueError(f"mantissa_bits must lie in [0, 52] (float64) or [0, 23] (float32), got {b}")
        return _MODE_MANTISSA, b, 1.0
    if grid is not None:
        if isinstance(grid, bool) or not isinstance(grid, (int, float, np.integer, np.floating)):
            raise TypeError(f"grid must be a real number, got {type(grid).__name__}")
        g = float(grid)
        if not (g > 0 and math.isfinite(g)):  # also rejects NaN
            raise ValueError(f"grid must be a positive finite number, got {grid!r}")
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
            raise ValueError(f"mantissa_bits must lie in [0, {limit}] for {kind}, got {b}")
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
    quant = _quant(mantissa_bits, grid)
    seed = _check_seed(seed)
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


def _is_array(obj: Any) -> bool:
    return isinstance(obj, np.ndarray) or _checks.is_torch(obj)


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
        self._seed = _check_seed(seed)
        self._state = core.hash_state_init(self._seed)
        self._count = 0

    def update(self, obj: Any, *, mantissa_bits: int | None = None, grid: float | None = None,
               ignore_dtype: bool = False) -> "Hasher":
        """Fold ``obj`` in; returns self so that calls chain."""
        quant = dict(mantissa_bits=mantissa_bits, grid=grid, ignore_dtype=ignore_dtype)
        _quant(mantissa_bits, grid)  # validate even when obj holds no floats
        self._state = self._fold(self._state, obj, quant)
        self._count += 1
        return self

    def _fold(self, state: bytes, obj: Any, quant: dict) -> bytes:
        if _is_array(obj):
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
            state = core.hash_fold(state, [_T_TUPLE if isinstance(obj, tuple) else _T_LIST, len(obj)])
            for item in obj:
                state = self._fold(state, item, quant)
            return state
        if isinstance(obj, Mapping):
            # Order-free: fold the sorted digests of the (key, value) pairs.
            pairs = []
            for k, v in obj.items():
                h = Hasher(self._seed)
                h._state = h._fold(h._fold(h._state, k, quant), v, quant)
                pairs.append(core.hash_state_final(h._state, 2))
            state = core.hash_fold(state, [_T_DICT, len(pairs)])
            for p in sorted(pairs):
                state = core.hash_fold_digest(state, _T_DICT, p)
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


def _genome_fold(h: Hasher, state: bytes, g: Any) -> bytes:
    if isinstance(g, (list, tuple)) and len(g) > 8:
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
            state = _genome_fold(h, state, v)
        return state
    if isinstance(g, (list, tuple)):
        state = core.hash_fold(state, [_T_TUPLE if isinstance(g, tuple) else _T_LIST, len(g)])
        for v in g:
            state = _genome_fold(h, state, v)
        return state
    return h._fold(state, g, {})


# ---- functional hashing -------------------------------------------------------------------------


class FunctionalHasher:
    """Hash of what a candidate computes: its quantised outputs on fixed probe inputs.

    Two candidates that compute the same function (e.g. an MLP and the same MLP with its hidden
    units permuted) get the same digest, up to the quantisation of their outputs; candidates whose
    outputs differ by more than the rounding get different digests.

    Parameters
    ----------
    probe_inputs : torch.Tensor, tuple/list of tensors, or dict of tensors, optional
        The candidate is called as ``candidate(probe)``, ``candidate(*probe)`` or
        ``candidate(**probe)``. Default: ``torch.randn(n_probes, *input_shape)`` from a generator
        seeded with ``seed`` (needs ``input_shape``).
    n_probes : int
        Probe batch size when generating.
    input_shape : tuple of int
        Shape of one probe input (without the batch dimension) when generating.
    seed : int
        Seeds the probe inputs, the RNGs during the call, and the digest.
    mantissa_bits : int or None
        Quantisation of the float outputs (see :func:`hash_array`); None hashes exact bits.
    probe_version : int
        Part of the digest: bump it when the probes or their meaning change.

    Notes
    -----
    ``hash`` calls the candidate under ``torch.inference_mode()`` with the torch (CPU and CUDA),
    numpy and Python RNGs seeded with ``seed``, and restores their previous states afterwards. It
    does not change an ``nn.Module``'s train/eval mode. The probes are moved to the device of the
    module's first parameter or buffer (cached per device).
    Outputs may be tensors, numpy arrays, Python scalars, or tuples/lists/dicts of these; a
    mapping with a ``"logits"`` entry (a Hugging Face ``ModelOutput``) is reduced to its logits.
    """

    def __init__(self, probe_inputs: Any = None, *, n_probes: int = 10, input_shape: tuple | None = None,
                 seed: int = 0, mantissa_bits: int | None = 7, probe_version: int = 1) -> None:
        import torch

        self.seed = _check_seed(seed)
        _quant(mantissa_bits, None)
        self.mantissa_bits = mantissa_bits
        if isinstance(probe_version, bool) or not isinstance(probe_version, int):
            raise TypeError("probe_version must be an int")
        self.probe_version = probe_version
        if probe_inputs is None:
            if input_shape is None:
                raise ValueError("give probe_inputs, or input_shape to generate them")
            if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
                raise ValueError(f"n_probes must be a positive int, got {n_probes!r}")
            shape = (int(n_probes), *(int(s) for s in input_shape))
            gen = torch.Generator().manual_seed(self.seed)
            probe_inputs = torch.randn(shape, generator=gen, dtype=torch.float32)
        self.probe_inputs = probe_inputs
        self._on_device: dict[str, Any] = {}
        # The probes are part of the key: a different probe set must never share digests.
        self._probe_key = Hasher(self.seed).update(_to_hashable(probe_inputs)).digest()

    def _probes_for(self, device: Any) -> Any:
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = _map_tensors(self.probe_inputs, lambda t: t.to(device))
        return self._on_device[key]

    def outputs(self, candidate: Callable) -> Any:
        """The candidate's outputs on the probes (under inference mode, with the RNGs seeded)."""
        import torch

        device = _module_device(candidate)
        probes = self._probes_for(device) if device is not None else self.probe_inputs
        states = _save_rng()
        try:
            _seed_rng(self.seed)
            with torch.inference_mode():
                if isinstance(probes, Mapping):
                    return candidate(**probes)
                if isinstance(probes, (tuple, list)):
                    return candidate(*probes)
                return candidate(probes)
        finally:
            _restore_rng(states)

    def hash(self, candidate: Callable, *, task: Any = None, fidelity: Any = None) -> bytes:
        """16-byte digest of (task, fidelity, probe_version, probes, quantised outputs)."""
        out = _to_hashable(_reduce_output(self.outputs(candidate)))
        h = Hasher(self.seed)
        h.update(task).update(fidelity).update(self.probe_version).update(self._probe_key)
        h.update(out, mantissa_bits=self.mantissa_bits)
        return h.digest()

    __call__ = hash


def _module_device(candidate: Any) -> Any:
    for attr in ("parameters", "buffers"):
        fn = getattr(candidate, attr, None)
        if callable(fn):
            try:
                return next(iter(fn())).device
            except (StopIteration, TypeError):
                continue
    return None


def _map_tensors(obj: Any, fn: Callable) -> Any:
    if _checks.is_torch(obj):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def _reduce_output(out: Any) -> Any:
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    return out


def _to_hashable(obj: Any) -> Any:
    """Outputs as things Hasher takes: mappings to plain dicts (ModelOutput), tensors kept."""
    if _is_array(obj) or isinstance(obj, (np.generic, str, bytes, int, float, bool, type(None))):
        return obj
    if isinstance(obj, Mapping):
        return {k: _to_hashable(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_hashable(v) for v in obj) if type(obj) in (tuple, list) else tuple(
            _to_hashable(v) for v in obj)
    raise TypeError(f"cannot hash an output of type {type(obj).__name__}")


def _save_rng() -> dict:
    import torch

    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _seed_rng(seed: int) -> None:
    import torch

    torch.manual_seed(seed)  # CPU and every CUDA device
    np.random.seed(seed % (1 << 32))
    random.seed(seed)


def _restore_rng(states: dict) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])
