"""Hardware-aware latency: a per-layer lookup table timed with evoforge's packed kernels, cached per machine.

Model latency = sum over the linear layers of ``table[(out_features, in_features, spec, tokens)]``
+ a fixed part (embeddings, norms, attention, the head, Python), measured once on the dense model
(:func:`fixed_seconds`). Units are seconds; ``tokens`` is the number of rows each linear layer sees
in one forward at batch 1: 1 for a decode step (with a KV cache), T for a prefill of T tokens.
:mod:`evoforge.compress.latency_calibration` corrects the table to what layers cost inside a model.

Entries
    One per (out_features, in_features, spec, tokens): the median over ``repeats`` of the time per
    call of the module's forward on float32 activations ``[1, tokens, in_features]`` on the table's
    device, after warm-up, in ``torch.inference_mode``, with the process's torch and evoforge thread
    settings (set both explicitly, as the model will run, before making or loading a table). The module is what :func:`evoforge.layers.apply` builds for the spec from a random
    ``nn.Linear`` without bias (``None`` or ``{}``: that dense float32 ``nn.Linear`` itself).
    ``sparsity`` is rounded to 3 decimals and bit-widths to their storage bits (5-7 bits run as 8),
    so specs that build the same kernel share an entry (:func:`spec_key`).
Caches like a model's
    Inside a model whose weights exceed the last-level cache a layer's weights come from memory;
    timing one module over and over would find them in cache. So each entry cycles through copies of
    the module spanning ``working_set_bytes`` (default: twice the last-level cache; at most 256
    copies); ``working_set_bytes=0`` times a single, cache-warm module (models that fit in cache).
Files
    JSON at ``$EVOFORGE_CACHE_DIR/latency/<machine_key>.json`` (default cache dir
    ``~/.cache/evoforge``; ``-ws<bytes>`` is added to the name for a non-default working set), or an
    explicit path. The file records its :func:`machine_key` (CPU, device, thread counts, torch and
    evoforge versions) and working set; :meth:`LatencyTable.load` refuses a file made under another
    key or working set (ConfigError): timings do not carry across machines or thread settings.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn


from .._native import cpu_model, get_num_threads
from ..errors import ConfigError
from ..layers import apply, linear_layers, packed_layers
from ..layers.format import check_features, check_group_size, storage_bits
from ..layers.sparse import values_dtype_of

__all__ = ["LatencyTable", "default_path", "fixed_seconds", "layer_shapes", "machine_info", "machine_key",
           "model_seconds", "predict_seconds", "spec_key", "time_module"]

FORMAT = "evoforge.latency_table"
VERSION = 1
MAX_COPIES = 256
_SPEC_KEYS = {"sparsity", "pattern", "bits", "group_size", "symmetric", "values_dtype"}
Layer = tuple[int, int, Union[Mapping, None]]  # (out_features, in_features, spec)


# ---- the machine ----------------------------------------------------------------------------------


def _evoforge_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evoforge")
    except PackageNotFoundError:  # a build tree
        from .._native import core

        return str(core.build_info()["version"])


def _device(device: Any) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device must be a torch device or its name ('cpu', 'cuda:0'), got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: torch sees no CUDA GPU")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def machine_info(device: Any = "cpu") -> dict[str, Any]:
    """What a latency depends on besides the layer: CPU model, architecture, device (and GPU name),
    torch's and evoforge's thread counts, torch and evoforge versions."""
    dev = _device(device)
    info = {"cpu": cpu_model(), "arch": platform.machine(), "device": str(dev),
            "torch_threads": torch.get_num_threads(), "evoforge_threads": get_num_threads(),
            "torch": torch.__version__, "evoforge": _evoforge_version()}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def machine_key(device: Any = "cpu") -> str:
    """A file-name-safe key of :func:`machine_info`: a readable prefix (CPU or GPU, device, thread
    counts) and a hash of all of it, e.g. ``amd-epyc-cpu-t1-e2-3f2a...``."""
    info = machine_info(device)
    name = re.sub(r"[^a-z0-9]+", "-", info.get("gpu", info["cpu"]).lower()).strip("-")[:32] or "machine"
    digest = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]
    dev = info["device"].replace(":", "")
    return f"{name}-{dev}-t{info['torch_threads']}-e{info['evoforge_threads']}-{digest}"


def _last_level_cache(dev: torch.device) -> int:
    """Bytes of the last-level cache (the CPU's from sysfs, a GPU's L2), 32 MiB when unknown."""
    if dev.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or 32 << 20)
    best = 0
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            m = re.fullmatch(r"(\d+)([KMG]?)", (d / "size").read_text().strip())
        except OSError:
            continue
        if m:
            best = max(best, int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)])
    return best or 32 << 20


def default_path(device: Any = "cpu", working_set_bytes: int | None = None) -> Path:
    """``$EVOFORGE_CACHE_DIR`` (else ``~/.cache/evoforge``) ``/latency/<machine_key>[-ws<bytes>].json``."""
    root = Path(os.environ.get("EVOFORGE_CACHE_DIR") or Path.home() / ".cache" / "evoforge")
    suffix = "" if working_set_bytes is None else f"-ws{int(working_set_bytes)}"
    return root / "latency" / f"{machine_key(device)}{suffix}.json"


# ---- specs ----------------------------------------------------------------------------------------


def _canonical(spec: Mapping | None) -> dict | None:
    """The settings of the module ``apply`` builds for ``spec`` (None: dense), rounded to share entries."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise TypeError(f"spec must be an evoforge.layers.apply spec dict or None (dense), got {type(spec).__name__}")
    if not spec:
        return None
    bad = set(spec) - _SPEC_KEYS
    if bad:
        raise ConfigError(f"unknown keys {sorted(bad)} in the spec; allowed: {sorted(_SPEC_KEYS)}")
    out: dict[str, Any] = {}
    pattern = spec.get("pattern", "unstructured")
    if pattern == "2:4":
        if spec.get("sparsity", 0.5) != 0.5:
            raise ConfigError(f"pattern '2:4' prunes exactly half; got sparsity {spec['sparsity']}")
        out.update(pattern="2:4", sparsity=0.5)
    elif pattern != "unstructured":
        raise ConfigError(f"pattern must be 'unstructured' or '2:4', got {pattern!r}")
    elif "sparsity" in spec:
        s = spec["sparsity"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= float(s) < 1.0:
            raise ConfigError(f"sparsity must be a number in [0, 1), got {s!r}")
        out["sparsity"] = min(round(float(s), 3), 0.999)
    if "bits" in spec:
        b = spec["bits"]
        if isinstance(b, bool) or not isinstance(b, int):
            raise ConfigError(f"bits must be an int in 2..8, got {b!r}")
        out["bits"] = storage_bits(b)
        g = spec.get("group_size", 128)
        out["group_size"] = check_group_size(0 if g is None else g)
        sym = spec.get("symmetric", True)
        if not isinstance(sym, bool):
            raise ConfigError(f"symmetric must be a bool, got {sym!r}")
        out["symmetric"] = sym
    elif "sparsity" not in out:
        raise ConfigError("a spec needs 'sparsity' (or pattern '2:4') and/or 'bits'; None or {} is the dense layer")
    vd = values_dtype_of(spec.get("values_dtype", "float32"))
    if "bits" not in out:  # float kept values: their dtype matters
        out["values_dtype"] = str(vd).removeprefix("torch.")
    return out


def spec_key(spec: Mapping | None) -> str:
    """The table's name of a spec: ``"dense"``, ``"s0.600-f16"``, ``"b4-g64-sym"``, ``"s0.500-b4-g64-asym"``,
    ``"2:4-s0.500-f32"``. ConfigError / TypeError for a spec ``apply`` would refuse."""
    c = _canonical(spec)
    if c is None:
        return "dense"
    parts = ["2:4"] if c.get("pattern") == "2:4" else []
    if "sparsity" in c:
        parts.append(f"s{c['sparsity']:.3f}")
    if "bits" in c:
        parts += [f"b{c['bits']}", f"g{c['group_size']}", "sym" if c["symmetric"] else "asym"]
    if "values_dtype" in c:
        parts.append({"float32": "f32", "float16": "f16"}[c["values_dtype"]])
    return "-".join(parts)


def _entry(out_features: int, in_features: int, spec: Mapping | None, tokens: int) -> str:
    in_features, out_features = check_features(in_features, out_features)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ConfigError(f"tokens must be an int >= 1, got {tokens!r}")
    return f"{out_features}x{in_features}|{spec_key(spec)}|{tokens}"


def _layers(layers: Iterable[Layer] | Mapping[str, Layer]) -> list[Layer]:
    items = list(layers.values()) if isinstance(layers, Mapping) else list(layers)
    for it in items:
        if not (isinstance(it, tuple) and len(it) == 3):
            raise TypeError(f"layers must be (out_features, in_features, spec) tuples, got {it!r}")
    return items


# ---- timing ---------------------------------------------------------------------------------------


def time_module(modules: list[nn.Module], x: torch.Tensor, *, repeats: int = 7, warmup: int = 1,
                min_seconds: float = 1e-3) -> float:
    """Median seconds per call of ``m(x)``, cycling through ``modules`` (copies of one layer).

    Each of the ``repeats`` samples times whole passes over ``modules``, as many as fill
    ``min_seconds`` (estimated in the ``warmup`` passes), divided by the calls made; CUDA is
    synchronised around each sample."""
    if not modules or repeats < 1:
        raise ConfigError(f"need at least one module and repeats >= 1, got {len(modules)} and {repeats}")
    cuda = x.device.type == "cuda"

    def one_pass() -> float:
        if cuda:
            torch.cuda.synchronize(x.device)
        t0 = time.perf_counter()
        for m in modules:
            m(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - t0

    with torch.inference_mode():
        est = min(one_pass() for _ in range(max(1, warmup)))
        passes = max(1, math.ceil(min_seconds / max(est, 1e-9)))
        times = []
        for _ in range(repeats):
            times.append(sum(one_pass() for _ in range(passes)) / (passes * len(modules)))
    return statistics.median(times)


def _build(out_features: int, in_features: int, spec: dict | None, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(in_features, out_features, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(out_features, in_features, generator=g) / math.sqrt(in_features))
    return lin if spec is None else apply(nn.Sequential(lin), {"0": spec})[0]


def _weight_bytes(m: nn.Module) -> int:
    wb = getattr(m, "weight_bytes", None)
    return int(wb) if wb is not None else m.weight.numel() * m.weight.element_size()


# ---- the table ------------------------------------------------------------------------------------


class LatencyTable:
    """Seconds per forward of one packed linear layer, keyed by (out_features, in_features, spec, tokens).

    ``LatencyTable(device)`` is empty; :meth:`load` reads a saved one (an absent file: empty);
    :meth:`measure` times the missing entries; :meth:`seconds` / :meth:`total` look them up.
    """

    def __init__(self, device: Any = "cpu", *, working_set_bytes: int | None = None,
                 path: str | os.PathLike | None = None) -> None:
        self.device = _device(device)
        if working_set_bytes is not None and (isinstance(working_set_bytes, bool) or not isinstance(
                working_set_bytes, int) or working_set_bytes < 0):
            raise ConfigError(f"working_set_bytes must be None (twice the last-level cache) or an int >= 0, "
                              f"got {working_set_bytes!r}")
        self.machine = machine_info(self.device)
        self.key = machine_key(self.device)
        self.working_set_bytes = (2 * _last_level_cache(self.device) if working_set_bytes is None
                                  else int(working_set_bytes))
        self.path = Path(path) if path is not None else default_path(self.device, working_set_bytes)
        self.entries: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, item: Any) -> bool:
        return isinstance(item, tuple) and len(item) == 4 and _entry(*item) in self.entries

    # -- files --

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, device: Any = "cpu",
             working_set_bytes: int | None = None) -> LatencyTable:
        """The table saved at ``path`` (default :func:`default_path`), or an empty one bound to that
        path when there is no file. ConfigError for a file that is not a latency table, or that was
        measured under another machine key (CPU, device, threads, versions) or working set."""
        t = cls(device, working_set_bytes=working_set_bytes, path=path)
        if not t.path.is_file():
            return t
        try:
            data = json.loads(t.path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{str(t.path)!r} is not a readable latency table: {e}") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ConfigError(f"{str(t.path)!r} is not an evoforge latency table of version {VERSION}")
        if data.get("machine_key") != t.key:
            raise ConfigError(f"{str(t.path)!r} was measured under machine key {data.get('machine_key')!r} "
                              f"({data.get('machine')}), this process is {t.key!r} ({t.machine}): timings do not "
                              f"carry across machines or thread settings; measure a new table (another path)")
        if data.get("working_set_bytes") != t.working_set_bytes:
            raise ConfigError(f"{str(t.path)!r} was measured with working_set_bytes={data.get('working_set_bytes')}, "
                              f"this table uses {t.working_set_bytes}")
        t.entries = {str(k): float(v) for k, v in data.get("entries", {}).items()}
        return t

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the table as JSON (atomically) to ``path`` (default: the table's path); returns it."""
        p = Path(path) if path is not None else self.path
        p.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "version": VERSION, "machine_key": self.key, "machine": self.machine,
                "working_set_bytes": self.working_set_bytes, "entries": dict(sorted(self.entries.items()))}
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, p)
        return p

    # -- timing --

    def _check_machine(self) -> None:
        now = machine_key(self.device)
        if now != self.key:
            raise ConfigError(f"the machine key changed since this table was made ({self.key!r} -> {now!r}; "
                              f"thread counts?): time under the settings the table records, or make a new table")

    def copies(self, layer_bytes: int) -> int:
        """How many copies of a layer of ``layer_bytes`` bytes one entry's timing cycles through."""
        if self.working_set_bytes == 0:
            return 1
        return max(1, min(MAX_COPIES, math.ceil(self.working_set_bytes / max(1, layer_bytes))))

    def measure(self, layers: Iterable[Layer] | Mapping[str, Layer], *, tokens: int | Iterable[int] = 1,
                repeats: int = 7, warmup: int = 1,
                progress: bool | Callable[[str], None] = False) -> int:
        """Time the entries of ``layers`` ((out_features, in_features, spec) tuples, or a dict of them)
        at each of ``tokens`` that the table lacks; returns how many were timed. ``progress``: True
        prints a line per entry to stderr, a callable gets that line."""
        self._check_machine()
        toks = [tokens] if isinstance(tokens, int) else list(tokens)
        todo: dict[tuple[int, int, str], tuple[int, int, dict | None, list[int]]] = {}
        for out_f, in_f, spec in _layers(layers):
            for t in toks:
                k = _entry(out_f, in_f, spec, t)
                if k in self.entries:
                    continue
                group = todo.setdefault((int(out_f), int(in_f), spec_key(spec)),
                                        (int(out_f), int(in_f), _canonical(spec), []))
                if t not in group[3]:
                    group[3].append(t)
        say = (lambda s: print(s, file=sys.stderr)) if progress is True else (progress or None)
        done, n = 0, sum(len(g[3]) for g in todo.values())
        for i, (out_f, in_f, spec, ts) in enumerate(todo.values()):
            m = _build(out_f, in_f, spec, seed=i)
            mods = [m] + [copy.deepcopy(m) for _ in range(self.copies(_weight_bytes(m)) - 1)]
            mods = [c.to(self.device) for c in mods]
            for t in ts:
                x = torch.randn(1, t, in_f, generator=torch.Generator().manual_seed(t)).to(self.device)
                key = _entry(out_f, in_f, spec, t)
                self.entries[key] = float(time_module(mods, x, repeats=repeats, warmup=warmup))
                done += 1
                if say:
                    say(f"latency {done}/{n}: {key} {self.entries[key] * 1e6:.1f} us ({len(mods)} copies)")
        return done

    # -- lookups --

    def seconds(self, out_features: int, in_features: int, spec: Mapping | None, tokens: int) -> float:
        """Seconds per forward of the layer at ``tokens`` rows; KeyError if not measured."""
        k = _entry(out_features, in_features, spec, tokens)
        try:
            return self.entries[k]
        except KeyError:
            raise KeyError(f"no latency for {k!r} in the table ({len(self.entries)} entries, {str(self.path)!r}); "
                           f"time it first: table.measure([({out_features}, {in_features}, spec)], "
                           f"tokens={tokens})") from None

    def total(self, layers: Iterable[Layer] | Mapping[str, Layer], tokens: int) -> float:
        """The sum of :meth:`seconds` over ``layers`` ((out_features, in_features, spec) tuples or a dict)."""
        return float(sum(self.seconds(o, i, s, tokens) for o, i, s in _layers(layers)))


# ---- whole models ---------------------------------------------------------------------------------


def layer_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Name -> (out_features, in_features) of :func:`evoforge.layers.linear_layers` (the head excluded)."""
    out = {}
    for name, m in linear_layers(model).items():
        w = m.weight
        out[name] = (int(w.shape[0]), int(w.shape[1])) if isinstance(m, nn.Linear) else (int(w.shape[1]),
                                                                                        int(w.shape[0]))
    return out


def model_seconds(model: nn.Module, *, tokens: int = 1, context: int = 16, repeats: int = 5, warmup: int = 1,
                  seed: int = 0) -> float:
    """Median seconds of one forward of ``model`` (a causal LM) at batch 1: ``tokens`` new tokens
    after ``context`` cached ones (``context=16, tokens=1``: a decode step with a KV cache; the
    cache is rebuilt, untimed, before each run) or, with ``context=0``, a prefill of ``tokens``
    tokens without a cache (``use_cache=False``). Random token ids; the model's device."""
    for name, v in (("tokens", tokens), ("repeats", repeats)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ConfigError(f"context must be an int >= 0, got {context!r}")
    dev = next(model.parameters()).device
    vocab = model.get_input_embeddings().num_embeddings
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randint(0, vocab, (1, context), generator=g).to(dev)
    new = torch.randint(0, vocab, (1, tokens), generator=g).to(dev)
    # transformers >= 5.x names the KV cache ``cache``; older versions ``past_key_values``
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    times = []
    with torch.inference_mode():
        for i in range(max(0, warmup) + repeats):
            past = {cache_kw: getattr(model(input_ids=ctx, use_cache=True), cache_kw)} if context else {}
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            if context:
                model(input_ids=new, use_cache=True, **past)
            else:
                model(input_ids=new, use_cache=False)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fixed_seconds(model: nn.Module, table: LatencyTable, *, tokens: int = 1, context: int = 16, repeats: int = 5,
                  measured: float | None = None) -> float:
    """The part of a forward the table does not cover: :func:`model_seconds` of the dense ``model``
    (or ``measured``, seconds timed already) minus the table's sum over its dense linear layers at
    ``tokens`` (timed here if missing), clamped at 0 (with a warning: the layer timings then
    overestimate the in-model cost). ``model``: float32, unpacked, on the table's device."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if packed_layers(model):
        raise ConfigError("fixed_seconds needs the dense model: its linear layers are packed already")
    lin = linear_layers(model)
    if not lin:
        raise ConfigError("the model has no linear layers to subtract (evoforge.layers.linear_layers is empty)")
    for name, m in lin.items():
        if m.weight.dtype != torch.float32 or m.weight.device != table.device:
            raise ConfigError(f"layer {name!r} is {m.weight.dtype} on {m.weight.device}; the table times float32 "
                              f"layers on {table.device}")
    table._check_machine()
    layers = [(o, i, None) for o, i in layer_shapes(model).values()]
    table.measure(layers, tokens=tokens, repeats=repeats)
    linear = table.total(layers, tokens)
    if measured is None:
        measured = model_seconds(model, tokens=tokens, context=context, repeats=repeats)
    if linear > measured:
        warnings.warn(f"the table's dense layers take {linear:.3g} s, more than the model's forward "
                      f"({measured:.3g} s): the fixed part is clamped to 0", RuntimeWarning, stacklevel=2)
    return max(0.0, float(measured) - linear)


def predict_seconds(layers: Iterable[Layer] | Mapping[str, Layer], table: LatencyTable, *, tokens: int,
                    fixed: float) -> float:
    """Predicted seconds of one forward: the table's sum over ``layers`` ((out_features,
    in_features, spec) tuples, or a dict of them; spec None = dense) at ``tokens`` + ``fixed``
    (:func:`fixed_seconds` at the same ``tokens`` and context)."""
    if isinstance(fixed, bool) or not isinstance(fixed, (int, float)) or not fixed >= 0:
        raise ConfigError(f"fixed must be seconds >= 0, got {fixed!r}")
    return table.total(layers, tokens) + float(fixed)
