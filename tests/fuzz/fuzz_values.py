"""The bad-input matrix: for every argument kind, labelled makers of bad values.

A maker is ``f(valid, ctx) -> bad value``: it derives the bad value from the argument's valid value
(a non-contiguous view of the same numbers, one row short, ...) and the worker's fixtures
(``ctx.files``). Labels are static per kind, so the parent process can name every case without
importing numpy's friends (torch, transformers); the values are built in the worker.

Labels in ``NONCONTIG`` are not bad at all: the call must return normally and give the same
result as the contiguous valid call.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

NONCONTIG = {"strided", "fortran", "negstride", "t_strided", "t_transposed"}

HUGE = 2**62  # an absurd size: must be refused before anything is allocated

# ---- fixtures ---------------------------------------------------------------------------------


class Files:
    """Paths every worker prepares once in its temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.missing = root / "does-not-exist" / "nothing.txt"
        self.afile = root / "afile.txt"
        self.afile.write_text("x\n")
        self.garbage = root / "garbage.bin"
        self.garbage.write_bytes(bytes(range(256)) * 8 + b"\xff\xfe\x00\x81" * 64)
        self.empty = root / "empty.txt"
        self.empty.write_bytes(b"")
        self.emptydir = root / "emptydir"
        self.emptydir.mkdir()
        self.text = root / "text.txt"
        self.text.write_text("Once upon a time there was a small cat who liked the sun. " * 60)
        # a directory holding every file name evoforge looks for, each of garbage bytes
        self.garbagedir = root / "garbagedir"
        self.garbagedir.mkdir()
        for name in ("config.json", "manifest.json", "history.jsonl", "evaluations.sqlite", "checkpoint.pkl",
                     "evoforge_layers.json", "model.safetensors", "teacher.json", "weights.npy", "norm.npy",
                     "cross.npy", "pivot.npy", "tokenizer.json", "report.json", "generation_config.json"):
            (self.garbagedir / name).write_bytes(self.garbage.read_bytes())


class Ctx:
    """What valid-call builders and bad-value makers may use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = Files(root / "fixtures")
        self._n = 0
        self.cleanups: list[Callable[[], Any]] = []
        self._cache: dict[str, Any] = {}

    def fresh(self) -> Path:
        """A new empty directory for this case."""
        self._n += 1
        d = self.root / "cases" / f"c{self._n:06d}"
        d.mkdir(parents=True)
        return d

    def copy(self, src: Path) -> Path:
        """A private copy of a fixture file or directory: a case may write into what it is given."""
        import shutil

        dst = self.fresh() / src.name
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
        return dst

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """Build once per worker (e.g. a saved tiny model directory that no case modifies)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def cleanup(self, fn: Callable[[], Any]) -> None:
        self.cleanups.append(fn)

    def run_cleanups(self) -> None:
        while self.cleanups:
            fn = self.cleanups.pop()
            try:
                fn()
            except BaseException:  # noqa: BLE001 -- a cleanup must not fail the next case
                pass


# ---- helpers ----------------------------------------------------------------------------------


def _np():
    import numpy as np

    return np


def _torch():
    import torch

    return torch


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def _arr(valid: Any):
    """valid as a numpy array (a tensor's numbers)."""
    if _is_torch(valid):
        return valid.detach().cpu().numpy()
    return _np().asarray(valid)


def _back(a: Any, valid: Any):
    """a in valid's kind: a tensor when valid is one (dtype kept when possible)."""
    if _is_torch(valid):
        t = _torch()
        try:
            return t.from_numpy(_np().ascontiguousarray(a))
        except TypeError:
            return a  # object / str arrays have no tensor form: the numpy array itself
    return a


def _setfirst(valid: Any, value: Any, dtype: Any = None):
    np = _np()
    a = np.array(_arr(valid), dtype=dtype if dtype is not None else None, copy=True)
    if a.dtype.kind in "iub" and isinstance(value, float):
        a = a.astype(np.float64)
    elif a.dtype.kind in "iub" and not np.can_cast(np.min_scalar_type(value), a.dtype):
        a = a.astype(np.int64 if value < 2**63 else np.uint64)  # widen: -1 in a uint32 array is int64
    a.reshape(-1)[-1] = value
    return _back(a, valid)


def _strided(valid: Any):
    """The same numbers as a non-contiguous view (every other element of a wider buffer)."""
    if _is_torch(valid):
        t = _torch()
        big = t.zeros(*valid.shape[:-1], 2 * valid.shape[-1], dtype=valid.dtype)
        big[..., ::2] = valid
        v = big[..., ::2]
        assert not v.is_contiguous()
        return v
    np = _np()
    a = np.asarray(valid)
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    big[..., ::2] = a
    v = big[..., ::2]
    assert not v.flags.c_contiguous
    return v


def _fortran(valid: Any):
    if _is_torch(valid):
        return valid.T.contiguous().T if valid.dim() == 2 else valid.transpose(0, 1).contiguous().transpose(0, 1)
    np = _np()
    v = np.asfortranarray(valid)
    return v


def _negstride(valid: Any):
    np = _np()
    a = np.asarray(valid)
    return a[::-1].copy()[::-1]


def _meta(valid: Any):
    t = _torch()
    shape = tuple(_arr(valid).shape)
    return t.empty(shape, device="meta")


def _astype(dtype_name: str) -> Callable:
    def make(valid: Any, ctx: Ctx) -> Any:
        np = _np()
        a = _arr(valid)
        if dtype_name == "str":
            return a.astype(str)
        if dtype_name == "object":
            return a.astype(object)
        return a.astype(getattr(np, dtype_name))

    return make


def _recursive_list() -> list:
    x: list = [1, 2]
    x.append(x)
    return x


# ---- the kinds --------------------------------------------------------------------------------

# labels shared by every float array kind
_FLOAT_ARRAY: dict[str, Callable] = {
    "nan": lambda v, c: _setfirst(v, math.nan),
    "inf": lambda v, c: _setfirst(v, math.inf),
    "-inf": lambda v, c: _setfirst(v, -math.inf),
    "1e308": lambda v, c: _back(_arr(v).astype("float64") * 0 + 1e308, v),
    "rows0": lambda v, c: v[:0],
    "0d": lambda v, c: _back(_np().array(_arr(v).reshape(-1)[0]), v),
    "ndim+1": lambda v, c: v[None],
    "object": _astype("object"),
    "str": _astype("str"),
    "complex": _astype("complex128"),
    "bool": lambda v, c: _arr(v) > 0,
    "float16": _astype("float16"),
    "list": lambda v, c: _arr(v).tolist(),
    "ragged": lambda v, c: [[1.0, 2.0], [3.0]],
    "none": lambda v, c: None,
    "string": lambda v, c: "abc",
    "short": lambda v, c: v[:-1],
    "torch_meta": lambda v, c: _meta(v),
    "strided": lambda v, c: _strided(v),
    "negstride": lambda v, c: _negstride(v) if not _is_torch(v) else _strided(v),
}

_MATRIX_EXTRA: dict[str, Callable] = {
    "cols0": lambda v, c: v[:, :0],
    "ndim-1": lambda v, c: v[0],
    "fortran": lambda v, c: _fortran(v),
}

_INT_ARRAY: dict[str, Callable] = {
    "neg": lambda v, c: _setfirst(v, -1),
    "2**40": lambda v, c: _setfirst(v, 2**40, dtype="int64"),
    "uint64max": lambda v, c: _setfirst(v, 2**64 - 1, dtype="uint64"),
    "frac": lambda v, c: _back(_arr(v).astype("float64") + 0.5, v),
    "as_float": lambda v, c: _back(_arr(v).astype("float64"), v),
    "nan": lambda v, c: _setfirst(v, math.nan, dtype="float64"),
    "rows0": lambda v, c: v[:0],
    "0d": lambda v, c: _back(_np().array(_arr(v).reshape(-1)[0]), v),
    "ndim+1": lambda v, c: v[None],
    "object": _astype("object"),
    "str": _astype("str"),
    "complex": _astype("complex128"),
    "bool": lambda v, c: _arr(v) > 0,
    "list": lambda v, c: _arr(v).tolist(),
    "none": lambda v, c: None,
    "string": lambda v, c: "abc",
    "short": lambda v, c: v[:-1],
    "torch_meta": lambda v, c: _meta(v),
    "strided": lambda v, c: _strided(v),
    "negstride": lambda v, c: _negstride(v) if not _is_torch(v) else _strided(v),
}

_INT_MATRIX_EXTRA: dict[str, Callable] = {
    "cols0": lambda v, c: v[:, :0],
    "ndim-1": lambda v, c: v[0],
    "fortran": lambda v, c: _fortran(v),
}

_TENSOR: dict[str, Callable] = {  # a torch float tensor (e.g. a layer input, a weight)
    "nan": lambda v, c: _setfirst(v, math.nan),
    "inf": lambda v, c: _setfirst(v, math.inf),
    "rows0": lambda v, c: v[:0],
    "0d": lambda v, c: v.reshape(-1)[0].clone(),
    "ndim+1": lambda v, c: v[None],
    "int64": lambda v, c: v.to(_torch().int64),
    "bool": lambda v, c: v > 0,
    "complex": lambda v, c: v.to(_torch().complex64),
    "float64": lambda v, c: v.to(_torch().float64),
    "bfloat16": lambda v, c: v.to(_torch().bfloat16),
    "numpy": lambda v, c: v.detach().numpy().copy(),
    "list": lambda v, c: v.tolist(),
    "none": lambda v, c: None,
    "string": lambda v, c: "abc",
    "short": lambda v, c: v[..., :-1],
    "meta": lambda v, c: v.to("meta"),
    "requires_grad": lambda v, c: v.clone().requires_grad_(True),
    "t_strided": lambda v, c: _strided(v),
}

_TENSOR_MATRIX_EXTRA: dict[str, Callable] = {
    "cols0": lambda v, c: v[:, :0],
    "ndim-1": lambda v, c: v[0],
    "t_transposed": lambda v, c: _fortran(v),
}

_TOKENS: dict[str, Callable] = {  # a LongTensor of token ids [n, S] (or 1-D ids)
    "neg": lambda v, c: _setfirst(v, -1),
    "oov": lambda v, c: _setfirst(v, 10**6),
    "float": lambda v, c: v.to(_torch().float32),
    "rows0": lambda v, c: v[:0],
    "0d": lambda v, c: v.reshape(-1)[0].clone(),
    "ndim+1": lambda v, c: v[None],
    "numpy": lambda v, c: v.numpy().copy(),
    "list": lambda v, c: v.tolist(),
    "none": lambda v, c: None,
    "string": lambda v, c: "abc",
    "meta": lambda v, c: v.to("meta"),
    "t_strided": lambda v, c: _strided(v),
}

_INT: dict[str, Callable] = {  # an integer argument that sizes something (a count, a width)
    "-1": lambda v, c: -1,
    "0": lambda v, c: 0,
    "2**62": lambda v, c: HUGE,
    "2**64": lambda v, c: 2**64,
    "2.5": lambda v, c: 2.5,
    "'3'": lambda v, c: "3",
    "None": lambda v, c: None,
    "True": lambda v, c: True,
    "nan": lambda v, c: math.nan,
    "inf": lambda v, c: math.inf,
    "np.int64": lambda v, c: _np().int64(v) if isinstance(v, int) else v,
    "array": lambda v, c: _np().array([v, v]),
}

# an integer that counts iterations (generations, evaluations): a huge value asks for a long run,
# which is legitimate, so 2**62 is not in this kind
_ITER = {k: f for k, f in _INT.items() if k not in ("2**62", "2**64")}

_SEED: dict[str, Callable] = {
    "-1": lambda v, c: -1,
    "2**64": lambda v, c: 2**64,
    "2.5": lambda v, c: 2.5,
    "'3'": lambda v, c: "3",
    "None": lambda v, c: None,
    "True": lambda v, c: True,
    "nan": lambda v, c: math.nan,
    "np.uint64": lambda v, c: _np().uint64(2**64 - 1),
    "array": lambda v, c: _np().array([1, 2]),
}

_PROB: dict[str, Callable] = {
    "nan": lambda v, c: math.nan,
    "inf": lambda v, c: math.inf,
    "-1": lambda v, c: -1.0,
    "2": lambda v, c: 2.0,
    "'0.5'": lambda v, c: "0.5",
    "None": lambda v, c: None,
    "True": lambda v, c: True,
    "complex": lambda v, c: 0.5 + 0.5j,
    "array": lambda v, c: _np().array([0.5, 0.5]),
}

_REAL: dict[str, Callable] = {  # a real parameter (sigma, eta, damping, a target)
    "nan": lambda v, c: math.nan,
    "inf": lambda v, c: math.inf,
    "-inf": lambda v, c: -math.inf,
    "-1": lambda v, c: -1.0,
    "0": lambda v, c: 0.0,
    "1e308": lambda v, c: 1e308,
    "'1'": lambda v, c: "1",
    "None": lambda v, c: None,
    "True": lambda v, c: True,
    "complex": lambda v, c: 1 + 1j,
    "array": lambda v, c: _np().array([1.0, 2.0]),
}

_BOOL: dict[str, Callable] = {
    "'yes'": lambda v, c: "yes",
    "None": lambda v, c: None,
    "2": lambda v, c: 2,
    "nan": lambda v, c: math.nan,
    "array": lambda v, c: _np().array([True, False]),
}

_CHOICE: dict[str, Callable] = {
    "unknown": lambda v, c: "no-such-choice",
    "empty": lambda v, c: "",
    "None": lambda v, c: None,
    "int": lambda v, c: 3,
    "bytes": lambda v, c: b"x",
    "upper": lambda v, c: v.upper() if isinstance(v, str) else "X",
    "list": lambda v, c: [v],
}

_CALLABLE: dict[str, Callable] = {
    "None": lambda v, c: None,
    "int": lambda v, c: 3,
    "string": lambda v, c: "f",
    "no_args": lambda v, c: (lambda: 0.0),
}

_PATH_IN_FILE: dict[str, Callable] = {  # an existing file that is read
    "missing": lambda v, c: c.files.missing,
    "dir": lambda v, c: c.copy(c.files.emptydir),
    "garbage": lambda v, c: c.copy(c.files.garbage),
    "empty": lambda v, c: c.copy(c.files.empty),
    "int": lambda v, c: 3,
    "None": lambda v, c: None,
    "nul": lambda v, c: str(c.fresh() / "afile.txt") + "\0x",
}

_PATH_IN_DIR: dict[str, Callable] = {  # an existing directory that is read (model, database, run)
    "missing": lambda v, c: c.files.missing.parent,
    "file": lambda v, c: c.copy(c.files.afile),
    "garbage_file": lambda v, c: c.copy(c.files.garbage),
    "emptydir": lambda v, c: c.copy(c.files.emptydir),
    "garbagedir": lambda v, c: c.copy(c.files.garbagedir),
    "int": lambda v, c: 3,
    "None": lambda v, c: None,
    "nul": lambda v, c: str(c.fresh()) + "\0x",
}

_PATH_OUT_DIR: dict[str, Callable] = {  # a directory that is created / written
    "file": lambda v, c: c.copy(c.files.afile),
    "under_file": lambda v, c: c.copy(c.files.afile) / "sub",
    "garbagedir": lambda v, c: c.copy(c.files.garbagedir),
    "int": lambda v, c: 3,
    "empty_str": lambda v, c: "",
    "nul": lambda v, c: str(c.fresh()) + "/a\0b",
}

_PATH_OUT_FILE: dict[str, Callable] = {  # a file that is written
    "dir": lambda v, c: c.copy(c.files.emptydir),
    "under_file": lambda v, c: c.copy(c.files.afile) / "x.png",
    "int": lambda v, c: 3,
    "empty_str": lambda v, c: "",
    "nul": lambda v, c: str(c.fresh()) + "/a\0b.png",
}

_CACHE_PATH: dict[str, Callable] = {  # EvaluationCache's path: a directory or the SQLite file
    "garbage": lambda v, c: c.copy(c.files.garbage),
    "empty_file": lambda v, c: _copy_to_fresh(c, c.files.empty, "e.sqlite"),
    "text_file": lambda v, c: c.copy(c.files.text),
    "garbagedir": lambda v, c: c.copy(c.files.garbagedir),
    "under_file": lambda v, c: c.copy(c.files.afile) / "sub",
    "int": lambda v, c: 3,
    "empty_str": lambda v, c: "",
    "memory": lambda v, c: ":memory:",
    "nul": lambda v, c: str(c.fresh()) + "/a\0b",
}


def _copy_to_fresh(c: Ctx, src: Path, name: str) -> Path:
    p = c.fresh() / name
    p.write_bytes(src.read_bytes())
    return p


_KEY: dict[str, Callable] = {  # a cache key: bytes
    "str": lambda v, c: "abc",
    "int": lambda v, c: 3,
    "None": lambda v, c: None,
    "empty": lambda v, c: b"",
    "bytearray": lambda v, c: bytearray(b"k" * 16),
    "list": lambda v, c: [1, 2],
    "array": lambda v, c: _np().zeros(16, dtype="uint8"),
}

_FITNESS: dict[str, Callable] = {  # a fitness value: a finite float or float vector
    "nan": lambda v, c: math.nan,
    "inf": lambda v, c: math.inf,
    "'1'": lambda v, c: "1",
    "None": lambda v, c: None,
    "2d": lambda v, c: [[1.0, 2.0]],
    "empty": lambda v, c: [],
    "object": lambda v, c: object(),
    "vec_nan": lambda v, c: [1.0, math.nan],
    "complex": lambda v, c: 1 + 2j,
    "ragged": lambda v, c: [[1.0], [1.0, 2.0]],
}

_ANY_OBJ: dict[str, Callable] = {  # something to hash: arbitrary Python objects
    "object": lambda v, c: object(),
    "set": lambda v, c: {1, 2},
    "recursive_list": lambda v, c: _recursive_list(),
    "generator": lambda v, c: (i for i in range(3)),
    "lambda": lambda v, c: (lambda: 0),
    "bigint": lambda v, c: 2**200,
    "nan": lambda v, c: math.nan,
    "object_array": lambda v, c: _np().array([object(), 1], dtype=object),
    "str_array": lambda v, c: _np().array(["a", "b"]),
    "complex_array": lambda v, c: _np().ones(3, dtype="complex64"),
}


_SHAPE: dict[str, Callable] = {
    "-1": lambda v, c: -1,
    "(2,-1)": lambda v, c: (2, -1),
    "(2**31,2**31)": lambda v, c: (2**31, 2**31),
    "(2**62,)": lambda v, c: (HUGE,),
    "(2.5,3)": lambda v, c: (2.5, 3),
    "'3'": lambda v, c: "3",
    "None": lambda v, c: None,
    "(1,2,3)": lambda v, c: (1, 2, 3),
    "()": lambda v, c: (),
    "True": lambda v, c: True,
    "nan": lambda v, c: math.nan,
}

_INT_LIST: dict[str, Callable] = {  # a list of ints (bit-widths)
    "empty": lambda v, c: [],
    "[1]": lambda v, c: [1],
    "[9]": lambda v, c: [9],
    "[2.5]": lambda v, c: [2.5],
    "'abc'": lambda v, c: "abc",
    "None": lambda v, c: None,
    "[2**62]": lambda v, c: [HUGE],
    "[nan]": lambda v, c: [math.nan],
    "nested": lambda v, c: [[2]],
    "[True]": lambda v, c: [True],
    "int": lambda v, c: 3,
}

_FLOAT_LIST: dict[str, Callable] = {  # a list of floats (sparsities)
    "empty": lambda v, c: [],
    "[nan]": lambda v, c: [math.nan],
    "[1.0]": lambda v, c: [1.0],
    "[-0.1]": lambda v, c: [-0.1],
    "'abc'": lambda v, c: "abc",
    "None": lambda v, c: None,
    "nested": lambda v, c: [[0.5]],
    "[True]": lambda v, c: [True],
    "float": lambda v, c: 0.5,
}

_STAGES: dict[str, Callable] = {
    "empty": lambda v, c: [],
    "0_survivors": lambda v, c: [(0, 8), (1, None)],
    "increasing": lambda v, c: [(1, 8), (2, None)],
    "neg_tokens": lambda v, c: [(1, -5)],
    "zero_tokens": lambda v, c: [(1, 0)],
    "short_tuple": lambda v, c: [(1,)],
    "'abc'": lambda v, c: "abc",
    "huge": lambda v, c: [(HUGE, None), (1, None)],
    "frac": lambda v, c: [(2.5, None), (1, None)],
    "nan_tokens": lambda v, c: [(1, math.nan)],
    "str_tokens": lambda v, c: [(1, "all")],
}

_SEED_LISTS: dict[str, Callable] = {
    "neg": lambda v, c: [[-1]],
    "2**64": lambda v, c: [[2**64]],
    "frac": lambda v, c: [[2.5]],
    "'abc'": lambda v, c: "abc",
    "None": lambda v, c: None,
    "flat_ints": lambda v, c: [1, 2],
    "array_1d": lambda v, c: _np().array([1, 2]),
    "array_3d": lambda v, c: _np().ones((1, 1, 1), dtype="int64"),
    "str_seed": lambda v, c: [["3"]],
    "bool_seed": lambda v, c: [[True]],
    "nan_seed": lambda v, c: [[math.nan]],
    "float_array": lambda v, c: _np().ones((2, 2)),
}

_SEEDS: dict[str, Callable] = {
    "-1": lambda v, c: -1,
    "2**64": lambda v, c: 2**64,
    "2.5": lambda v, c: 2.5,
    "'3'": lambda v, c: "3",
    "None": lambda v, c: None,
    "True": lambda v, c: True,
    "nested": lambda v, c: [[1, 2]],
    "neg_array": lambda v, c: _np().array([-1]),
    "float_array": lambda v, c: _np().array([1.5]),
    "too_many": lambda v, c: list(range(50)),
}

_DTYPE_NAME: dict[str, Callable] = {
    "int8": lambda v, c: "int8",
    "unknown": lambda v, c: "nope",
    "int": lambda v, c: 3,
    "torch.int8": lambda v, c: _torch().int8,
    "numpy": lambda v, c: _np().float32,
    "empty": lambda v, c: "",
}

_SPEC: dict[str, Callable] = {  # layers.apply config
    "empty_dict": lambda v, c: {},
    "bits9": lambda v, c: {"bits": 9},
    "bits_str": lambda v, c: {"bits": "4"},
    "bits_frac": lambda v, c: {"bits": 4.5},
    "sparsity_nan": lambda v, c: {"sparsity": math.nan},
    "sparsity_1.5": lambda v, c: {"sparsity": 1.5},
    "sparsity_str": lambda v, c: {"sparsity": "half"},
    "unknown_key": lambda v, c: {"nope": 1},
    "group7": lambda v, c: {"bits": 4, "group_size": 7},
    "group_str": lambda v, c: {"bits": 4, "group_size": "x"},
    "list": lambda v, c: [],
    "int": lambda v, c: 42,
    "None": lambda v, c: None,
    "missing_path": lambda v, c: c.files.missing,
    "garbage_file": lambda v, c: c.copy(c.files.garbage),
    "garbagedir": lambda v, c: c.copy(c.files.garbagedir),
    "emptydir": lambda v, c: c.copy(c.files.emptydir),
    "method_only": lambda v, c: {"method": "sparsity"},
}

_MODEL: dict[str, Callable] = {  # an nn.Module that should be a supported causal LM
    "None": lambda v, c: None,
    "string": lambda v, c: "abc",
    "linear": lambda v, c: _torch().nn.Linear(4, 4),
    "sequential": lambda v, c: _torch().nn.Sequential(),
    "int": lambda v, c: 3,
}

_LINEAR: dict[str, Callable] = {  # an nn.Linear to convert
    "None": lambda v, c: None,
    "conv": lambda v, c: _torch().nn.Conv1d(4, 4, 1),
    "nan_weight": lambda v, c: _linear_with(v, math.nan),
    "inf_weight": lambda v, c: _linear_with(v, math.inf),
    "float64": lambda v, c: _torch().nn.Linear(v.in_features, v.out_features).double(),
    "bfloat16": lambda v, c: _torch().nn.Linear(v.in_features, v.out_features).to(_torch().bfloat16),
    "meta": lambda v, c: _torch().nn.Linear(v.in_features, v.out_features, device="meta"),
    "huge_weight": lambda v, c: _linear_with(v, 1e30),
    "zero_in": lambda v, c: _torch().nn.Linear(0, 4),
}


def _linear_with(v: Any, value: float):
    t = _torch()
    lin = t.nn.Linear(v.in_features, v.out_features)
    with t.no_grad():
        lin.weight[0, 0] = value
    return lin


_OPERATOR: dict[str, Callable] = {  # a search operator object
    "None_": lambda v, c: "not-an-operator",
    "int": lambda v, c: 3,
    "function": lambda v, c: (lambda X, *a, **k: X),
}

_EVALUATOR: dict[str, Callable] = {  # engine.run's evaluator: a callable genomes -> fitness
    "None": lambda v, c: None,
    "int": lambda v, c: 3,
    "returns_nan": lambda v, c: _wrap_eval(v, lambda F: F * math.nan),
    "returns_inf": lambda v, c: _wrap_eval(v, lambda F: F + math.inf),
    "returns_short": lambda v, c: _wrap_eval(v, lambda F: F[:-1]),
    "returns_none": lambda v, c: (lambda X: None),
    "returns_str": lambda v, c: _wrap_eval(v, lambda F: F.astype(str)),
    "returns_scalar": lambda v, c: (lambda X: 1.0),
    "returns_3d": lambda v, c: _wrap_eval(v, lambda F: F[None, None]),
    "returns_object": lambda v, c: (lambda X: [object()] * len(X)),
    "returns_tuple3": lambda v, c: _wrap_eval(v, lambda F: (F, F, F)),
}


def _wrap_eval(v: Any, post: Callable) -> Callable:
    np = _np()
    return lambda X: post(np.asarray(v(X), dtype=np.float64))


def _buf_edit(edit: Callable[[dict], None]) -> Callable:
    def make(valid: Any, ctx: Ctx) -> Any:
        b = {k: v.clone() for k, v in valid.items()}
        edit(b)
        return b

    return make


def _first_of(b: dict, *names: str) -> str:
    return next(n for n in names if n in b)


def _set_item(t: Any, index: int, value: int) -> Any:
    t = t.clone()
    t.view(-1)[index] = value
    return t


_SPARSE_BUFFERS: dict[str, Callable] = {  # the packed buffers of a sparse weight (pack_sparse's dict)
    "empty": lambda v, c: {},
    "None": lambda v, c: None,
    "list": lambda v, c: list(v.values()),
    "numpy": lambda v, c: {k: t.numpy().copy() for k, t in v.items()},
    "missing_index": _buf_edit(lambda b: b.pop(_first_of(b, "mask", "meta"))),
    "values_short": _buf_edit(lambda b: b.update(values=b["values"][:-1].clone())),
    "values_float64": _buf_edit(lambda b: b.update(values=b["values"].double())),
    "values_nan": _buf_edit(lambda b: b.update(values=_set_item(b["values"], 0, math.nan))),
    "index_float": _buf_edit(lambda b: b.update({_first_of(b, "mask", "meta"): b[_first_of(b, "mask", "meta")]
                                                 .float()})),
    "index_short": _buf_edit(lambda b: b.update({_first_of(b, "mask", "meta"): b[_first_of(b, "mask", "meta")]
                                                 [:-1].clone()})),
    "row_ptr_huge": _buf_edit(lambda b: b.update(row_ptr=_set_item(b["row_ptr"], -1, 2**40)) if "row_ptr" in b
                              else b.update(meta=b["meta"][:, :-1].clone())),
    "row_ptr_neg": _buf_edit(lambda b: b.update(row_ptr=_set_item(b["row_ptr"], 1, -5)) if "row_ptr" in b
                             else b.update(meta=b["meta"].T.contiguous())),
    "all_bits_set": _buf_edit(lambda b: b.update({_first_of(b, "mask", "meta"):
                                                  b[_first_of(b, "mask", "meta")].fill_(255)})),
    "strided": lambda v, c: {k: (_strided(t) if t.dim() >= 1 and t.numel() > 1 else t) for k, t in v.items()},
}

KINDS: dict[str, dict[str, Callable]] = {
    "matrix_f": {**_FLOAT_ARRAY, **_MATRIX_EXTRA},
    "vector_f": dict(_FLOAT_ARRAY),
    "array_f": dict(_FLOAT_ARRAY),
    "matrix_i": {**_INT_ARRAY, **_INT_MATRIX_EXTRA},
    "vector_i": dict(_INT_ARRAY),
    "tensor": dict(_TENSOR),
    "tensor_matrix": {**_TENSOR, **_TENSOR_MATRIX_EXTRA},
    "tokens": dict(_TOKENS),
    "int": _INT,
    "iterations": _ITER,
    "seed": _SEED,
    "prob": _PROB,
    "real": _REAL,
    "bool": _BOOL,
    "choice": _CHOICE,
    "callable": _CALLABLE,
    "path_in_file": _PATH_IN_FILE,
    "path_in_dir": _PATH_IN_DIR,
    "path_out_dir": _PATH_OUT_DIR,
    "path_out_file": _PATH_OUT_FILE,
    "cache_path": _CACHE_PATH,
    "key": _KEY,
    "fitness": _FITNESS,
    "any_obj": _ANY_OBJ,
    "shape": _SHAPE,
    "int_list": _INT_LIST,
    "float_list": _FLOAT_LIST,
    "stages": _STAGES,
    "seed_lists": _SEED_LISTS,
    "seeds": _SEEDS,
    "dtype_name": _DTYPE_NAME,
    "spec": _SPEC,
    "model": _MODEL,
    "linear": _LINEAR,
    "operator": _OPERATOR,
    "evaluator": _EVALUATOR,
    "sparse_buffers": _SPARSE_BUFFERS,
}


def labels(kind: str) -> list[str]:
    return list(KINDS[kind])


def make(kind: str, label: str, valid: Any, ctx: Ctx) -> Any:
    return KINDS[kind][label](valid, ctx)


def fspath_ok(p: Any) -> bool:
    return isinstance(p, (str, os.PathLike))
