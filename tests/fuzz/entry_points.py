"""THE list of evoforge's public entry points that the bad-input harness walks.

Each :class:`Entry` names one public function (or constructor, or method), says how to build a
VALID call of it (small sizes: milliseconds) and gives the kind of every argument that is fuzzed
(see ``fuzz_values.KINDS``). The harness runs the valid call, then, for every fuzzed argument and
every label of its kind, the valid call with that one argument replaced by the bad value.

To cover a new public function, add one ``Entry`` to ``ENTRIES`` (and, for the command line, a
line to ``CLI_CASES``). Heavy modules (torch, transformers) are imported inside the builders, so
importing this file is cheap: the pytest process lists the cases without importing torch.

A builder gets the worker's ``Ctx`` (``ctx.fresh()`` a new directory, ``ctx.files`` fixtures,
``ctx.memo`` for things built once per worker, ``ctx.cleanup`` for what must be closed) and
returns ``Call(fn, kw)``: the call is ``fn(**kw)``, with every fuzzed argument in ``kw``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

# ---- the data model ---------------------------------------------------------------------------


@dataclass
class Call:
    fn: Callable[..., Any]
    kw: dict[str, Any]


@dataclass
class Entry:
    name: str  # "module.function" (the module part picks the worker group); "#variant" suffixes allowed
    build: Callable[[Any], Call]  # ctx -> a valid Call
    args: dict[str, str]  # fuzzed argument -> kind (a key of fuzz_values.KINDS)
    project: Callable[[Any], Any] | None = None  # result -> what must be equal for non-contiguous input
    timeout: float | None = None  # seconds per case (default: the harness's)
    skip: dict[str, tuple[str, ...]] = field(default_factory=dict)  # arg -> labels not applicable, with a reason

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]


# ---- small valid inputs -----------------------------------------------------------------------


def _np():
    import numpy as np

    return np


def _rng(seed: int = 0):
    return _np().random.default_rng(seed)


def _objectives(n: int = 6, m: int = 2):
    return _rng(1).random((n, m))


def _float_pop(p: int = 3, L: int = 5, dtype: str = "float64"):
    return _rng(2).random((p, L)).astype(dtype)


def _int_pop():
    np = _np()
    return np.array([[2, 2, 2, 2, 2, 2], [1, 2, 3, 2, 2, 2]], dtype=np.int32)


def _llama_config():
    import transformers

    return transformers.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                                    num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=1024,
                                    bos_token_id=1, eos_token_id=2, pad_token_id=0)


def tiny_llama(seed: int = 0):
    """A fresh 2-layer Llama built from a config (no download), eval mode."""
    import torch
    import transformers

    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(_llama_config()).eval()


def tiny_model_dir(ctx) -> str:
    """A saved tiny Llama (Hugging Face directory, no tokenizer), built once per worker."""
    def make():
        d = ctx.root / "tiny-llama"
        tiny_llama().save_pretrained(d)
        return str(d)

    return ctx.memo("tiny_model_dir", make)


def tiny_model_dir_with_tokenizer(ctx) -> str:
    """The tiny Llama with a character-level tokenizer (so that text options get past the tokenizer)."""
    def make():
        import shutil

        import transformers
        from tokenizers import Tokenizer, models, pre_tokenizers

        d = ctx.root / "tiny-llama-tok"
        shutil.copytree(tiny_model_dir(ctx), d)
        vocab = {"[UNK]": 0, **{chr(i): i - 31 for i in range(32, 127)}}  # ids 1..95 < vocab_size 128
        tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
        transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]").save_pretrained(d)
        return str(d)

    return ctx.memo("tiny_model_dir_tok", make)


def tokens(n: int = 2, s: int = 8, seed: int = 0):
    import torch

    return torch.randint(3, 64, (n, s), generator=torch.Generator().manual_seed(seed))


class CharTok:
    """A tokenizer for tokens_from_text: one id per character, within the tiny vocabulary."""

    def encode(self, text, add_special_tokens=False):
        return [3 + ord(ch) % 61 for ch in text]


def _close_all_figures():
    import matplotlib.pyplot as plt

    plt.close("all")


def _no_compare(_result: Any) -> None:
    return None


# ---- projections (what non-contiguous input must reproduce) ------------------------------------


def _entry_mean(e: Any) -> Any:
    return None if e is None else (e.mean, e.count)


def _search_result(r: Any) -> Any:
    return (r.best_genome, r.best_fitness, r.generations, r.evaluations)


def _state(m: Any) -> Any:
    return dict(m.state_dict())


def _compression(r: Any) -> Any:
    return (list(r.levels), r.budget, r.kl_search)


# ---- pareto, random, variation operators, selection, deepga -------------------------------------


def _pareto_rank(ctx):
    from evoforge import pareto

    F = _objectives()
    return Call(pareto.nondominated_rank, {"F": F, "constraint_violation": _np().zeros(len(F))})


def _pareto_crowding(ctx):
    from evoforge import pareto

    F = _objectives()
    return Call(pareto.crowding_distance, {"F": F, "ranks": pareto.nondominated_rank(F).astype("int64")})


def _pareto_select(ctx):
    from evoforge import pareto

    F = _objectives()
    return Call(pareto.select, {"F": F, "k": 3, "constraint_violation": _np().zeros(len(F))})


def _pareto_hv(ctx):
    from evoforge import pareto

    return Call(pareto.hypervolume, {"F": _objectives(), "ref": _np().array([1.1, 1.1])})


def _philox(ctx):
    from evoforge import random as er

    np = _np()
    return Call(er.philox4x32_10, {"counter": np.arange(12, dtype=np.uint32).reshape(3, 4),
                                   "key": np.arange(6, dtype=np.uint32).reshape(3, 2)})


def _box_muller(ctx):
    from evoforge import random as er

    np = _np()
    return Call(er.box_muller, {"w1": np.arange(1, 6, dtype=np.uint32) * 1000003,
                                "w2": np.arange(5, dtype=np.uint32) * 7919})


def _normal(ctx):
    from evoforge import random as er

    return Call(er.normal, {"shape": (2, 3), "seed": 1, "generation": 0, "individual_offset": 0})


def _level_switch(ctx):
    from evoforge import mutation

    np = _np()
    L = 6
    return Call(mutation.level_switch, {
        "parents": _int_pop(), "lower": np.zeros(L, np.int32), "upper": np.full(L, 4, np.int32), "n_offspring": 2,
        "max_switches": 3, "groups": np.array([0, 0, 0, 1, 1, 1]),
        "costs": np.tile(np.arange(5, dtype=np.float64) * 10.0, (L, 1)), "budget_tol": 1e-6, "seed": 1,
        "generation": 0, "individual_offset": 0, "max_attempts": 100, "return_drift": True})


def _point(ctx):
    from evoforge import mutation

    np = _np()
    return Call(mutation.point, {"x": _int_pop(), "lower": np.zeros(6, np.int32), "upper": np.full(6, 4, np.int32),
                                 "prob": 0.5, "seed": 3, "generation": 0, "individual_offset": 0})


def _gaussian(ctx):
    from evoforge import mutation

    np = _np()
    return Call(mutation.gaussian, {"x": _float_pop(), "sigma": np.full(5, 0.1), "prob": 0.5,
                                    "lower": np.full(5, -1.0), "upper": np.full(5, 2.0), "seed": 3,
                                    "generation": 0, "individual_offset": 0})


def _polynomial(ctx):
    from evoforge import mutation

    np = _np()
    return Call(mutation.polynomial, {"x": _float_pop(), "lower": np.zeros(5), "upper": np.ones(5), "eta": 20.0,
                                      "prob": 0.5, "seed": 3, "generation": 0, "individual_offset": 0})


def _points_crossover(kind):
    def build(ctx):
        from evoforge import crossover

        return Call(getattr(crossover, kind), {"a": _float_pop(), "b": _float_pop()[::-1].copy(), "prob": 1.0,
                                               "seed": 5, "generation": 0, "individual_offset": 0})

    return build


def _sbx(ctx):
    from evoforge import crossover

    np = _np()
    return Call(crossover.sbx, {"a": _float_pop(), "b": _float_pop()[::-1].copy(), "lower": np.zeros(5),
                                "upper": np.ones(5), "eta": 15.0, "prob": 1.0, "prob_var": 0.5, "seed": 5,
                                "generation": 0, "individual_offset": 0})


def _tournament(ctx):
    from evoforge import selection

    return Call(selection.tournament, {"fitness": _objectives(), "n_select": 4, "tournament_size": 2, "seed": 1,
                                       "generation": 0, "individual_offset": 0})


def _seeds_to_params(ctx):
    from evoforge import deepga

    return Call(deepga.seeds_to_params, {"theta0": _np().linspace(0, 1, 8, dtype="float32"),
                                         "seed_lists": [[1, 2], [3]], "sigma": 0.1})


def _extend_params(ctx):
    from evoforge import deepga

    return Call(deepga.extend_params, {"parent_params": _float_pop(2, 8, "float32"), "seeds": [5, 6], "sigma": 0.1})


def _noise(ctx):
    from evoforge import deepga

    return Call(deepga.noise, {"seed": 7, "D": 8})


def _set_num_threads(ctx):
    import evoforge

    ctx.cleanup(lambda: evoforge.set_num_threads(0))
    return Call(evoforge.set_num_threads, {"n": 1})


# ---- hashing and the cache --------------------------------------------------------------------


def _hash_array(**fixed):
    def build(ctx):
        from evoforge import hashing

        kw = {"x": _float_pop(3, 4, "float32"), "seed": 0, "ignore_dtype": False, **fixed}
        return Call(hashing.hash_array, kw)

    return build


def _hash_array_int(ctx):
    from evoforge import hashing

    return Call(hashing.hash_array, {"x": _int_pop(), "seed": 0})


def _hasher_update(obj_maker):
    def build(ctx):
        from evoforge import hashing

        def update(**kw):
            return hashing.Hasher(0).update(**kw).digest()

        return Call(update, {"obj": obj_maker(), "mantissa_bits": 7, "ignore_dtype": False})

    return build


def _hasher(ctx):
    from evoforge import hashing

    return Call(lambda seed: hashing.Hasher(seed).update(b"x").digest(), {"seed": 3})


def _genotype_hash(obj_maker):
    def build(ctx):
        from evoforge import hashing

        return Call(hashing.genotype_hash, {"genome": obj_maker()})

    return build


def echo(*args, **kwargs):
    """A candidate that accepts anything and returns its inputs: probe errors are evoforge's own."""
    return (args, kwargs)


def _functional_hasher(ctx):
    from evoforge import hashing

    return Call(lambda **kw: hashing.FunctionalHasher(**kw).hash(echo, task="t", fidelity=1),
                {"input_shape": (4,), "n_probes": 3, "seed": 0, "mantissa_bits": 7, "probe_version": 1})


def _functional_hasher_probes(ctx):
    import torch

    from evoforge import hashing

    return Call(lambda **kw: hashing.FunctionalHasher(**kw).hash(echo),
                {"probe_inputs": torch.linspace(0, 1, 12).reshape(3, 4)})


def _functional_hash(ctx):
    import torch

    from evoforge import hashing

    fh = hashing.FunctionalHasher(input_shape=(4,), n_probes=3, seed=0)
    lin = torch.nn.Linear(4, 3)
    return Call(fh.hash, {"candidate": lin, "task": "wikitext", "fidelity": 2048})


def _cache_ctor(ctx):
    from evoforge.cache import EvaluationCache

    def open_and_close(**kw):
        c = EvaluationCache(**kw)
        try:
            c.put(b"k" * 16, 1.0)
            return c.options
        finally:
            c.close()

    return Call(open_and_close, {"path": ctx.fresh(), "capacity": 10, "forget_every": 2, "aggregate": 2,
                                 "remove_probability": 0.5, "seed": 0, "timeout": 5.0, "synchronous": "NORMAL"})


def _open_cache(ctx, sqlite: bool):
    from evoforge.cache import EvaluationCache

    c = EvaluationCache(ctx.fresh() if sqlite else None)
    ctx.cleanup(c.close)
    return c


def _cache_put(sqlite: bool):
    def build(ctx):
        c = _open_cache(ctx, sqlite)
        return Call(c.put, {"key": b"k" * 16, "fitness": 1.5, "genome": [1, 2, 3], "seconds": 0.1})

    return build


def _cache_put_vector(ctx):
    c = _open_cache(ctx, False)
    return Call(c.put, {"key": b"k" * 16, "fitness": _np().array([1.0, 2.0])})


def _cache_get(sqlite: bool):
    def build(ctx):
        c = _open_cache(ctx, sqlite)
        c.put(b"k" * 16, 2.5)
        return Call(c.get, {"key": b"k" * 16})

    return build


def _cache_evaluate(ctx):
    c = _open_cache(ctx, False)
    return Call(c.evaluate, {"key": b"k" * 16, "fn": lambda: 2.0, "genome": [1, 2]})


# ---- search -----------------------------------------------------------------------------------


def _one_max(X):
    return -_np().asarray(X).sum(axis=1).astype("float64")


def _run_closing(make, evaluator, generations=2):
    def fn(**kw):
        eng = make(**kw)
        try:
            return eng.run(evaluator, generations=generations)
        finally:
            eng.close()

    return fn


def _one_plus_lambda(ctx):
    from evoforge.search import OnePlusLambda, PointMutation

    np = _np()
    make = functools.partial(OnePlusLambda, progress=False)
    return Call(_run_closing(make, _one_max), {
        "initial": np.zeros(6, np.int32), "mutation": PointMutation(), "lower": 0, "upper": 1, "n_offspring": 4,
        "stages": [(2, None), (1, None)], "seed": 0, "run_dir": ctx.fresh() / "run", "task": "t"})


def _one_plus_lambda_levels(ctx):
    from evoforge.search import LevelSwitch, OnePlusLambda

    np = _np()
    make = functools.partial(OnePlusLambda, progress=False, mutation=LevelSwitch())
    return Call(_run_closing(make, lambda X: np.asarray(X, dtype=np.float64) @ np.arange(6.0)), {
        "initial": np.full(6, 2, np.int32), "lower": np.zeros(6, np.int32), "upper": np.full(6, 4, np.int32),
        "n_offspring": 3})


def _nsga2(ctx):
    from evoforge.search import NSGA2, SBX, PolynomialMutation
    from evoforge.search.problems import zdt1

    make = functools.partial(NSGA2, progress=False)
    return Call(_run_closing(make, zdt1), {
        "lower": _np().zeros(4), "upper": _np().ones(4), "n_objectives": 2, "pop_size": 6, "n_offspring": 6,
        "crossover": SBX(), "mutation": PolynomialMutation(), "ref_point": _np().array([11.0, 11.0]),
        "initial": _float_pop(6, 4), "seed": 1, "run_dir": ctx.fresh() / "run"})


def _ga(ctx):
    from evoforge.search import GA, PointMutation, UniformCrossover

    np = _np()
    make = functools.partial(GA, progress=False)
    return Call(_run_closing(make, _one_max), {
        "lower": np.zeros(6, np.int64), "upper": np.ones(6, np.int64), "pop_size": 6, "elitism": 1,
        "tournament_size": 2, "crossover": UniformCrossover(), "mutation": PointMutation(),
        "initial": (_rng(3).random((6, 6)) > 0.5).astype(np.int64), "seed": 2})


def _screen(ctx):
    from evoforge.search import NSGA2, Screen

    np = _np()

    def two_costs(X):
        X = np.asarray(X, dtype=np.float64)
        return np.column_stack([X @ np.arange(1.0, 5.0), (3 - X) @ np.arange(4.0, 0.0, -1)])

    def run(**kw):
        eng = NSGA2(np.zeros(4, np.int32), np.full(4, 3, np.int32), n_objectives=2, pop_size=6, progress=False,
                    screen=Screen(**kw))
        try:
            return eng.run(two_costs, generations=3)
        finally:
            eng.close()

    return Call(run, {"factor": 2, "alpha": 1.0, "encode": None, "predictor": None, "min_train": 4,
                      "select": "hypervolume", "depth": 2})


def _engine_run(which):
    def build(ctx):
        from evoforge.search import GA, NSGA2, OnePlusLambda, PointMutation
        from evoforge.search.problems import zdt1

        np = _np()
        if which == "OnePlusLambda":
            eng = OnePlusLambda(np.zeros(6, np.int32), PointMutation(), lower=0, upper=1, n_offspring=4,
                                progress=False)
            ev = _one_max
        elif which == "NSGA2":
            eng = NSGA2(np.zeros(4), np.ones(4), n_objectives=2, pop_size=6, progress=False)
            ev = zdt1
        else:
            eng = GA(np.zeros(6, np.int64), np.ones(6, np.int64), pop_size=6, progress=False)
            ev = _one_max
        ctx.cleanup(eng.close)
        kw = {"evaluator": ev, "generations": 2, "max_evaluations": 20}
        if which != "NSGA2":
            kw["target"] = -100.0
        return Call(eng.run, kw)

    return build


def _engine_tell(which):
    def build(ctx):
        from evoforge.search import NSGA2, OnePlusLambda, PointMutation

        np = _np()
        if which == "OnePlusLambda":
            eng = OnePlusLambda(np.zeros(6, np.int32), PointMutation(), lower=0, upper=1, n_offspring=4,
                                progress=False)
            batch = eng.ask()
            fit = np.arange(len(batch.genomes), dtype=np.float64)
        else:
            eng = NSGA2(np.zeros(4), np.ones(4), n_objectives=2, pop_size=6, progress=False)
            batch = eng.ask()
            fit = _objectives(len(batch.genomes), 2)
        ctx.cleanup(eng.close)

        def tell(**kw):
            eng.tell(batch, **kw)
            return eng.best

        return Call(tell, {"fitness": fit})

    return build


def _resume(ctx):
    from evoforge.search import OnePlusLambda, PointMutation

    np = _np()
    rd = ctx.fresh() / "run"
    eng = OnePlusLambda(np.zeros(6, np.int32), PointMutation(), lower=0, upper=1, n_offspring=4, run_dir=rd,
                        progress=False)
    eng.run(_one_max, generations=1)
    eng.close()

    def resume(**kw):
        e = OnePlusLambda.resume(**kw)
        try:
            return (e.generation, e.parent)
        finally:
            e.close()

    return Call(resume, {"run_dir": rd})


def _mutation_op(cls_name, kw, integer):
    def build(ctx):
        from evoforge import search

        np = _np()

        def make_and_apply(**k):
            op = getattr(search, cls_name)(**k)
            if integer:
                X = _int_pop()
                return op(X, np.zeros(6, np.int32), np.full(6, 4, np.int32), seed=0, generation=0)
            return op(_float_pop(), np.zeros(5), np.ones(5), seed=0, generation=0)

        return Call(make_and_apply, dict(kw))

    return build


def _level_switch_op(ctx):
    from evoforge import search

    np = _np()
    L = 6

    def make_and_apply(**k):
        op = search.LevelSwitch(**k)
        return op.offspring(_int_pop()[0], 3, np.zeros(L, np.int32), np.full(L, 4, np.int32), seed=0, generation=0)

    return Call(make_and_apply, {"max_switches": 3, "groups": np.array([0, 0, 0, 1, 1, 1]),
                                 "costs": np.tile(np.arange(5, dtype=np.float64), (L, 1)), "budget_tol": 1e-6})


def _crossover_op(cls_name, kw):
    def build(ctx):
        from evoforge import search

        np = _np()

        def make_and_apply(**k):
            op = getattr(search, cls_name)(**k)
            return op(_float_pop(), _float_pop()[::-1].copy(), np.zeros(5), np.ones(5), seed=0, generation=0)

        return Call(make_and_apply, dict(kw))

    return build


# ---- evaluate ---------------------------------------------------------------------------------


def make_pool_evaluator():
    """A picklable factory for the process backend: returns an evaluator (module level, so spawn finds it)."""
    return _one_max


def _open_backend(ctx):
    from evoforge.evaluate import open_backend

    def opened(**kw):
        b = open_backend(**kw)
        close = getattr(b, "close", None)
        if close is not None:
            close()
        return type(b).__name__

    return Call(opened, {"name": "inprocess", "factory": make_pool_evaluator})


def _process_backend(ctx):
    from evoforge.evaluate import open_backend

    def opened(**kw):
        b = open_backend("process", make_pool_evaluator, **kw)
        try:
            return type(b).__name__
        finally:
            b.close()

    return Call(opened, {"workers": 1, "timeout": 30.0, "max_attempts": 3, "chunk_size": 4})


# ---- solvers and kl ---------------------------------------------------------------------------


def _X(n=2, s=5, c=8):
    return _rng(4).normal(size=(n, s, c))


def _H():
    from evoforge import solvers

    return solvers.hessian(_X())


def _W(dtype="float64"):
    return _rng(5).normal(size=(4, 8)).astype(dtype)


def _hessian(ctx):
    from evoforge import solvers

    return Call(solvers.hessian, {"X": _X()})


def _hessian_torch(ctx):
    import torch

    from evoforge import solvers

    return Call(solvers.hessian, {"X": torch.from_numpy(_X()).float()})


def _factor_hessian(ctx):
    from evoforge import solvers

    def factor(**kw):
        f = solvers.factor_hessian(**kw)
        return (f.U, f.dead, f.perm)

    return Call(factor, {"H": _H(), "percdamp": 0.01, "act_order": True, "dtype": _np().float64})


def _prune_counts(ctx):
    from evoforge import solvers

    return Call(solvers.prune_counts, {"rows": 4, "cols": 8, "blocksize": 4, "sparsity": 0.5})


def _sparsegpt(ctx):
    from evoforge import solvers

    return Call(solvers.sparsegpt, {"W": _W(), "H": _H(), "sparsity": 0.5, "blocksize": 4, "percdamp": 0.01,
                                    "return_mask": True})


def _sparsegpt_nm(ctx):
    from evoforge import solvers

    return Call(solvers.sparsegpt, {"W": _W(), "H": _H(), "sparsity": None, "prune_n": 2, "prune_m": 4})


def _sparsegpt_torch(ctx):
    import torch

    from evoforge import solvers

    return Call(solvers.sparsegpt, {"W": torch.from_numpy(_W("float32")), "H": _H(), "sparsity": 0.5})


def _sparsegpt_levels(ctx):
    from evoforge import solvers

    return Call(solvers.sparsegpt_levels, {"W": _W(), "H": _H(), "sparsities": [0.25, 0.5], "blocksize": 4,
                                           "percdamp": 0.01, "return_mask": False})


def _rtn(ctx):
    from evoforge import solvers

    return Call(solvers.rtn, {"W": _W(), "bits": 4, "group_size": 4, "symmetric": False})


def _gptq(ctx):
    from evoforge import solvers

    return Call(solvers.gptq, {"W": _W(), "H": _H(), "bits": 3, "group_size": 4, "symmetric": True, "blocksize": 4,
                               "percdamp": 0.01, "act_order": False})


def _gptq_levels(ctx):
    from evoforge import solvers

    return Call(solvers.gptq_levels, {"W": _W(), "H": _H(), "bits": [2, 4], "group_size": 4, "symmetric": False,
                                      "blocksize": 4, "percdamp": 0.01, "act_order": True})


def _logits(t=3, v=8, dtype="float32"):
    return _rng(6).normal(size=(t, v)).astype(dtype)


def _teacher_targets(top_k):
    def build(ctx):
        from evoforge import kl

        kw = {"teacher_logits": _logits()}
        if top_k is not None:
            kw.update(top_k=top_k, tail=True)
        return Call(kl.teacher_targets, kw)

    return build


def _kl(top_k, student=None, torch=False):
    def build(ctx):
        from evoforge import kl

        t = kl.teacher_targets(_logits(), top_k=top_k)
        s = _logits() + 0.1 if student is None else student()
        fn = kl.kl_divergence_torch if torch else kl.kl_divergence
        return Call(fn, {"teacher": t, "student_logits": s, "reduction": "none"})

    return build


def _teacher_save(ctx):
    from evoforge import kl

    t = kl.teacher_targets(_logits(), top_k=3)
    return Call(lambda directory: t.save(directory) or kl.Teacher.load(directory, mmap=False),
                {"directory": ctx.fresh() / "teacher"})


def _teacher_load(ctx):
    from evoforge import kl

    d = ctx.fresh() / "teacher"
    kl.teacher_targets(_logits(), top_k=3).save(d)
    return Call(lambda directory: kl.Teacher.load(directory, mmap=False), {"directory": d})


# ---- layers -----------------------------------------------------------------------------------

K_IN, N_OUT = 64, 8


def _linear():
    import torch

    torch.manual_seed(0)
    return torch.nn.Linear(K_IN, N_OUT)


def _x():
    import torch

    return torch.linspace(-1, 1, 3 * K_IN).reshape(3, K_IN)


def _quant_linear_ctor(ctx):
    from evoforge.layers import QuantLinear

    def make(**kw):
        m = QuantLinear(**kw)
        return m(_x()[:, : m.in_features]) if m.in_features <= K_IN else m

    return Call(make, {"in_features": K_IN, "out_features": N_OUT, "bias": True, "bits": 4, "group_size": 32,
                       "symmetric": False, "device": "cpu"})


def _quant_from_linear(ctx):
    from evoforge.layers import QuantLinear

    return Call(QuantLinear.from_linear, {"linear": _linear(), "bits": 4, "group_size": 32, "symmetric": True})


def _quantized():
    from evoforge.layers import quantize_rtn

    return quantize_rtn(_linear().weight.detach().numpy(), 4, 32, symmetric=False)


def _quant_from_codes(ctx):
    from evoforge.layers import QuantLinear

    np = _np()
    codes, s, z = _quantized()
    return Call(QuantLinear.from_codes, {"codes": codes, "scales": s, "zeros": z, "bits": 4, "group_size": 32,
                                         "bias": np.zeros(N_OUT, np.float32), "g_idx": np.arange(K_IN) // 32})


def _quant_forward(ctx):
    from evoforge.layers import QuantLinear

    m = QuantLinear.from_linear(_linear(), bits=4, group_size=32)
    return Call(m, {"x": _x()})


def _sparse_linear_ctor(ctx):
    from evoforge.layers import SparseLinear

    def make(**kw):
        m = SparseLinear(**kw)
        return m(_x()[:, : m.in_features]) if m.in_features <= K_IN else m

    return Call(make, {"in_features": K_IN, "out_features": N_OUT, "bias": True, "format": "2:4", "bits": 4,
                       "group_size": 32, "symmetric": False, "values_dtype": "float16"})


def _sparse_from_linear(ctx):
    from evoforge.layers import SparseLinear

    return Call(SparseLinear.from_linear, {"linear": _linear(), "format": "2:4", "bits": 4, "group_size": 32,
                                           "values_dtype": "float32"})


def _pruned_weight():
    w = _linear().weight.detach().clone()
    w[w.abs() < 0.05] = 0
    return w


def _sparse_from_dense(ctx):
    import torch

    from evoforge.layers import SparseLinear

    return Call(SparseLinear.from_dense, {"weight": _pruned_weight(), "bias": torch.zeros(N_OUT),
                                          "format": "unstructured", "values_dtype": "float16"})


def _sparse_forward(ctx):
    from evoforge.layers import SparseLinear

    m = SparseLinear.from_dense(_pruned_weight(), format="unstructured")
    return Call(m, {"x": _x()})


def _pack_codes(ctx):
    from evoforge.layers import pack_codes

    codes, _s, _z = _quantized()
    return Call(pack_codes, {"codes": codes, "bits": 4})


def _unpack_codes(ctx):
    from evoforge.layers import pack_codes, unpack_codes

    codes, _s, _z = _quantized()
    return Call(unpack_codes, {"packed": pack_codes(codes, 4), "bits": 4, "in_features": K_IN})


def _quantize_rtn(ctx):
    from evoforge.layers import quantize_rtn

    return Call(quantize_rtn, {"weight": _linear().weight.detach().numpy().copy(), "bits": 4, "group_size": 32,
                               "symmetric": False})


def _dequantize(ctx):
    from evoforge.layers import dequantize, pack_codes

    codes, s, z = _quantized()
    return Call(dequantize, {"packed": pack_codes(codes, 4), "scales": s, "zeros": z, "bits": 4, "group_size": 32,
                             "in_features": K_IN})


def _quant_matmul(ctx):
    from evoforge.layers import pack_codes, quant_matmul

    np = _np()
    codes, s, z = _quantized()
    return Call(quant_matmul, {"x": _x().numpy().copy(), "packed": pack_codes(codes, 4), "scales": s, "zeros": z,
                               "bits": 4, "group_size": 32, "bias": np.linspace(0, 1, N_OUT, dtype=np.float32),
                               "isa": "auto"})


def _pack_sparse(quant):
    def build(ctx):
        from evoforge.layers import pack_sparse

        kw = {"weight": _pruned_weight().numpy(), "format": "unstructured", "values_dtype": "float32"}
        if quant:
            kw.update(bits=4, group_size=32, symmetric=False)
        return Call(pack_sparse, kw)

    return build


def _sparse_buffers(fmt="unstructured"):
    from evoforge.layers import pack_sparse

    w = _pruned_weight()
    if fmt == "2:4":
        from evoforge.layers.sparse import prune_24

        w = prune_24(w)
    return pack_sparse(w, fmt)


def _unpack_sparse(ctx):
    from evoforge.layers import unpack_sparse

    return Call(unpack_sparse, {"buffers": _sparse_buffers(), "in_features": K_IN, "format": "unstructured",
                                "threads": 0})


def _sparse_matmul(fmt):
    def build(ctx):
        import torch

        from evoforge.layers import sparse_matmul

        return Call(sparse_matmul, {"x": _x().numpy().copy(), "buffers": _sparse_buffers(fmt), "in_features": K_IN,
                                    "format": fmt, "bias": torch.zeros(N_OUT), "threads": 0, "max_isa": 2})

    return build


def _apply_spec(ctx):
    from evoforge.layers import apply

    return Call(lambda **kw: _state(apply(**kw)), {"model": tiny_llama(), "config": {"bits": 4, "group_size": 32},
                                                   "values_dtype": "float32"})


def _compressed_run(ctx) -> str:
    """A tiny sparsity compression run directory (with its database), made once per worker."""
    def make():
        from evoforge.compress import compress

        rd = ctx.root / "tiny-run"
        compress(tiny_llama(), method="sparsity", target=0.5, db_method="magnitude", db_levels=1, n_calib=2,
                 n_heldout=2, seq_len=8, generations=1, offspring=2, run_dir=rd, export_model=True)
        return str(rd)

    return ctx.memo("compressed_run", make)


def _pack_config_json(ctx):
    """compress.pack of a run's config.json file (the run directory form is the entry compress.pack)."""
    from pathlib import Path

    from evoforge.compress import pack

    rd = Path(_compressed_run(ctx))
    return Call(lambda **kw: _state(pack(**kw)), {"model": tiny_llama(), "result": rd / "config.json",
                                                  "database": rd / "db"})


def _apply_deprecated(ctx):
    """The deprecated form layers.apply(model, run_dir, database): the packed model of compress.pack, and a
    DeprecationWarning (a call that returns without the warning fails the case)."""
    import warnings
    from pathlib import Path

    from evoforge.layers import apply

    rd = _compressed_run(ctx)

    def deprecated_apply(**kw):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = apply(**kw)
        if not any(issubclass(w.category, DeprecationWarning) for w in caught):
            raise AssertionError("layers.apply(model, result) returned without its DeprecationWarning")
        return _state(out)

    return Call(deprecated_apply, {"model": tiny_llama(), "config": rd, "database": Path(rd) / "db"})


def _packed_model():
    from evoforge.layers import apply

    return apply(tiny_llama(), {"bits": 4, "group_size": 32})


def _save(ctx):
    import torch

    from evoforge.layers import save

    return Call(save, {"model": _packed_model(), "out_dir": ctx.fresh() / "packed", "dtype": torch.float16})


def _load(ctx):
    from evoforge.layers import load, save

    def make():
        return str(save(_packed_model(), ctx.root / "packed-checkpoint"))

    return Call(lambda **kw: _state(load(**kw)), {"path": ctx.memo("packed_checkpoint", make)})


def _row_bytes(ctx):
    from evoforge.layers import row_bytes

    return Call(row_bytes, {"columns": 64, "bits": 4})


def _num_groups(ctx):
    from evoforge.layers import num_groups

    return Call(num_groups, {"columns": 64, "group_size": 32})


# ---- compress ---------------------------------------------------------------------------------


def _adapt(ctx):
    from evoforge.compress import adapt

    return Call(lambda **kw: adapt(**kw).fingerprint(), {"model": tiny_llama()})


def _build_db(method):
    def build(ctx):
        from evoforge.compress import adapt, build_database

        def built(**kw):
            db = build_database(**kw)
            return sorted(db.layers)

        kw = {"adapter": adapt(tiny_llama()), "out_dir": ctx.fresh() / "db", "method": method, "batch_size": 2}
        if method == "magnitude":
            kw.update(tokens=None, sparsity=0.5, n_levels=1, step=64, values_dtype="float16")
        elif method == "sparsegpt":
            kw.update(tokens=tokens(), sparsity=0.5, n_levels=1, step=64, percdamp=0.01, blocksize=16,
                      compute_dtype="bfloat16")
        else:
            kw.update(tokens=tokens(), bits=[2, 4], group_size=16, symmetric=False, percdamp=0.01, blocksize=16)
        return Call(built, kw)

    return build


_COMPRESS_FAST = {"n_calib": 2, "n_heldout": 2, "seq_len": 8, "generations": 1, "offspring": 2}


def _compress(method):
    def build(ctx):
        from evoforge.compress import compress

        kw = {"model_or_path": tiny_llama(), "export_model": False, "seed": 0, **_COMPRESS_FAST}
        if method == "run_dir":  # a run directory adds the report and its plots (slower): only here
            kw.update(method="sparsity", target=0.5, db_method="magnitude", db_levels=1, run_dir=ctx.fresh() / "run")
        if method == "sparsity":
            kw.update(method="sparsity", target=0.5, db_method="magnitude", db_levels=1, db_step=64,
                      stages=[(2, 8), (1, None)], max_switches=2, batch_size=2, top_k=8, device="cpu")
        elif method == "quant":
            kw.update(method="quant", target=4.0, db_method="rtn", bits=[2, 3, 4], group_size=32, symmetric=False,
                      count_metadata=True)
        elif method == "depth":
            kw.update(method="depth", target=1)
        elif method == "tokens":  # explicit calibration tokens and a bfloat16 search
            kw.update(method="sparsity", target=0.5, db_method="magnitude", db_levels=1,
                      calibration=tokens(2, 8, 1), heldout=tokens(2, 8, 2), compute_dtype="bfloat16")
        return Call(compress, kw)

    return build


def _compress_path(ctx):
    from evoforge.compress import compress

    return Call(compress, {"model_or_path": tiny_model_dir(ctx), "method": "sparsity", "target": 0.5,
                           "db_method": "magnitude", "db_levels": 1, "export_model": False, **_COMPRESS_FAST})


def _compress_text(ctx):
    from evoforge.compress import compress

    return Call(compress, {"model_or_path": tiny_llama(), "method": "sparsity", "target": 0.5,
                           "db_method": "magnitude", "db_levels": 1, "export_model": False,
                           "calib_text": ctx.files.text, "tokenizer": CharTok(), **_COMPRESS_FAST})


def _perplexity(ctx):
    import torch

    from evoforge.compress import perplexity

    ids = torch.randint(3, 64, (40,), generator=torch.Generator().manual_seed(0))
    return Call(perplexity, {"model": tiny_llama(), "ids": ids, "window": 8, "max_windows": 3})


def _load_model(ctx):
    from evoforge.compress import load_model

    return Call(lambda **kw: _state(load_model(**kw)[0]), {"name_or_path": tiny_model_dir(ctx)})


def _resolve_model(ctx):
    from evoforge.compress import resolve_model

    return Call(resolve_model, {"name_or_path": tiny_model_dir(ctx)})


def _tokens_from_text(ctx):
    from evoforge.compress import tokens_from_text

    return Call(tokens_from_text, {"tokenizer": CharTok(), "path": ctx.files.text, "n": 3, "length": 16, "seed": 0})


def _tokens_from_text_callable(ctx):
    from evoforge.compress import tokens_from_text

    return Call(tokens_from_text, {"tokenizer": CharTok().encode, "path": ctx.files.text, "n": 3, "length": 16,
                                   "seed": 0})


def _sample_sequences(ctx):
    from evoforge.compress import sample_sequences

    return Call(sample_sequences, {"model": tiny_llama(), "n": 2, "length": 6, "seed": 0, "temperature": 1.0,
                                   "batch_size": 2})


def _collect_hessians(ctx):
    from evoforge.compress import adapt, collect_hessians

    def collected(**kw):
        st = collect_hessians(**kw)
        return sorted(vars(st)) if hasattr(st, "__dict__") else None

    return Call(collected, {"adapter": adapt(tiny_llama()), "tokens": tokens(), "batch_size": 2})


def _depth_count(ctx):
    from evoforge.compress import depth_count

    return Call(depth_count, {"target": 1, "n_blocks": 4})


def _sparsity_ladder(ctx):
    from evoforge.compress import sparsity_ladder

    return Call(sparsity_ladder, {"numel": 1000, "target": 0.5, "n_levels": 2, "step": 50})


def _db_open(ctx):
    from pathlib import Path

    from evoforge.compress import LayerDatabase

    db_dir = Path(_compressed_run(ctx)) / "db"
    return Call(lambda **kw: sorted(LayerDatabase.open(**kw).layers), {"path": db_dir})


def _depth_drops(ctx):
    from evoforge.compress import depth_drops

    return Call(depth_drops, {"genome": _np().array([0, 1, 1, 0]), "n_blocks": 2})


def _depth_mutation(ctx):
    from evoforge.compress import depth_mutation

    def make(**kw):
        op = depth_mutation(**kw)
        return (op.max_switches, op.groups)

    return Call(make, {"n_blocks": 4, "max_switches": 2})


def _shortgpt_genome(ctx):
    from evoforge.compress import shortgpt_genome

    return Call(shortgpt_genome, {"scores": _np().array([0.3, 0.1, 0.2, 0.5, 0.4, 0.6]), "k": 1})


def _shortgpt_scores(ctx):
    from evoforge.compress import adapt, shortgpt_scores

    return Call(shortgpt_scores, {"adapter": adapt(tiny_llama()), "tokens": tokens(), "batch_size": 2})


def _owl_sparsities(ctx):
    from evoforge.compress import adapt, collect_hessians, owl_sparsities

    a = adapt(tiny_llama())
    return Call(owl_sparsities, {"adapter": a, "stats": collect_hessians(a, tokens(), batch_size=2), "target": 0.5,
                                 "lam": 0.08, "m": 5.0})


def _provider(ctx):
    from pathlib import Path

    from evoforge.compress import LayerDatabase, provider_for

    return provider_for(LayerDatabase.open(Path(_compressed_run(ctx)) / "db"))


def _apply_levels(ctx):
    from evoforge.compress import adapt, apply_levels

    a = adapt(tiny_llama())
    return Call(lambda **kw: apply_levels(**kw) or _state(a.model),
                {"adapter": a, "provider": _provider(ctx), "genome": _np().zeros(len(a.linear_layers()), "int64")})


def _kl_fitness(ctx):
    from evoforge.compress import KLFitness, adapt

    def make_and_evaluate(**kw):
        f = KLFitness(**kw)
        return f.evaluate(_np().zeros((2, len(f.layers)), "int64"))

    return Call(make_and_evaluate, {"adapter": adapt(tiny_llama()), "provider": _provider(ctx),
                                    "calib_tokens": tokens(), "top_k": 8, "batch_size": 2, "seq_len": 8,
                                    "head_tokens": 4, "compute_dtype": "bfloat16"})


def _kl_fitness_evaluate(ctx):
    from evoforge.compress import KLFitness, adapt

    a = adapt(tiny_llama())
    f = KLFitness(a, _provider(ctx), tokens(), batch_size=2)
    return Call(f.evaluate, {"genomes": _np().zeros((2, len(a.linear_layers())), "int64")})


def _tiny_result(ctx):
    from evoforge.compress import compress

    return compress(tiny_llama(), method="sparsity", target=0.5, db_method="magnitude", db_levels=1, n_calib=2,
                    n_heldout=2, seq_len=8, generations=1, offspring=2, export_model=False)


def _export(ctx):
    from evoforge.compress import export

    return Call(export, {"result": _tiny_result(ctx), "out_dir": ctx.fresh() / "exported"})


def _write_report(ctx):
    from evoforge.compress import write_report

    ctx.cleanup(_close_all_figures)
    return Call(write_report, {"result": _tiny_result(ctx), "run_dir": ctx.fresh() / "report"})


def _summary_table(ctx):
    from evoforge.compress import summary_table

    return Call(summary_table, {"result": _tiny_result(ctx), "markdown": True})


def _config(cls_name, **valid):
    def build(ctx):
        from evoforge import compress as C

        return Call(lambda **kw: getattr(C, cls_name)(**kw).validate().to_json(), dict(valid))

    return build


_FRONT_FAST = {"sparsities": (0.0, 0.5), "bits": (4, 16), "group_size": 32, "db_method": "magnitude", "pop_size": 4,
               "n_calib": 2, "n_heldout": 2, "seq_len": 8, "generations": 1, "offspring": 2, "seed": 0}


def _front_run(ctx) -> str:
    """A tiny front run directory (with its database), made once per worker."""
    def make():
        from evoforge.compress import FrontConfig, compress

        rd = ctx.root / "tiny-front"
        compress(tiny_llama(), FrontConfig(run_dir=str(rd), **_FRONT_FAST))
        return str(rd)

    return ctx.memo("front_run", make)


def _front_compress(ctx):
    from evoforge.compress import FrontConfig, compress

    def run(**kw):
        return [p["search"] for p in compress(tiny_llama(), FrontConfig(**{**_FRONT_FAST, **kw})).points]

    return Call(run, {"sparsities": [0.0, 0.5], "bits": [4, 16], "pop_size": 4, "screen": 2})


def _load_front(ctx):
    from evoforge.compress import load_front

    return Call(lambda **kw: len(load_front(**kw).points), {"run_dir": _front_run(ctx)})


def _front_export(ctx):
    from evoforge.compress import load_front

    res = load_front(_front_run(ctx))
    return Call(lambda **kw: res.export(model=tiny_llama(), **kw).is_dir(), {"i": 0, "out_dir": ctx.fresh() / "p"})


def _front_space(ctx):
    from pathlib import Path

    from evoforge.compress import FrontSpace, LayerDatabase

    db = LayerDatabase.open(Path(_front_run(ctx)) / "db")
    return Call(lambda **kw: FrontSpace(db, **kw).bytes(FrontSpace(db, **kw).uniform()).tolist(),
                {"bits": [4, 16], "group_size": 32, "symmetric": True})


_SUBNET_FAST = {"n_calib": 2, "n_heldout": 2, "seq_len": 8, "generations": 1, "offspring": 2, "pop_size": 4,
                "seed": 0, "widths": (0.0, 0.5, 1.0)}


def _subnet_parts(ctx):
    """A tiny Llama, its adapter, importance and space, built once per worker."""
    def make():
        import torch

        from evoforge.compress import SubnetSpace, adapt, importance

        m = tiny_llama()
        a = adapt(m)
        imp = importance(a, torch.randint(3, 100, (2, 8), generator=torch.Generator().manual_seed(0)))
        return m, a, imp, SubnetSpace(a, imp, (0.0, 0.5, 1.0))

    return ctx.memo("subnet_parts", make)


def _subnet_compress(ctx):
    from evoforge.compress import SubnetConfig, compress

    def run(**kw):
        return [p["search"] for p in compress(tiny_llama(), SubnetConfig(**{**_SUBNET_FAST, **kw})).points]

    return Call(run, {"widths": [0.0, 0.5, 1.0], "pop_size": 4, "screen": 2})


def _subnet_importance(ctx):
    import torch

    from evoforge.compress import importance

    _, a, _, _ = _subnet_parts(ctx)
    toks = torch.randint(3, 100, (2, 8), generator=torch.Generator().manual_seed(1))
    return Call(lambda **kw: importance(a, **kw).groups.tolist(), {"tokens": toks, "batch_size": 2})


def _subnet_importance_json(ctx):
    from evoforge.compress import Importance

    _, _, imp, _ = _subnet_parts(ctx)
    return Call(lambda **kw: Importance(**kw).group_order.tolist(), {"groups": imp.groups, "neurons": imp.neurons})


def _subnet_space(ctx):
    from evoforge.compress import SubnetSpace

    _, a, imp, _ = _subnet_parts(ctx)
    return Call(lambda **kw: SubnetSpace(a, imp, **kw).uniform().tolist(), {"widths": [0.0, 0.5, 1.0],
                                                                            "attention": True})


def _subnet_slice(ctx):
    from evoforge.compress import slice_model

    m, _, _, space = _subnet_parts(ctx)
    return Call(lambda **kw: sum(p.numel() for p in slice_model(m, space, **kw).parameters()),
                {"genome": space.full()})


def _subnet_save(ctx):
    from evoforge.compress import save_subnet, slice_model

    m, _, _, space = _subnet_parts(ctx)
    sub = slice_model(m, space, space.uniform()[0])
    return Call(lambda **kw: save_subnet(sub, **kw).is_dir(), {"out_dir": ctx.fresh() / "s"})


def _subnet_load(ctx):
    from evoforge.compress import load_subnet, save_subnet, slice_model

    m, _, _, space = _subnet_parts(ctx)
    out = save_subnet(slice_model(m, space, space.uniform()[0]), ctx.fresh() / "s")
    return Call(lambda **kw: sum(p.numel() for p in load_subnet(**kw).parameters()), {"path": out})


def _packed_bytes(ctx):
    from evoforge.layers import packed_bytes

    return Call(packed_bytes, {"out_features": 8, "in_features": 64, "nnz": 100, "bits": 4, "group_size": 32,
                               "symmetric": False, "values_dtype": "float16"})


def _load_config(ctx):
    from evoforge.compress import load_config

    return Call(lambda **kw: load_config(**kw).to_json(), {"run_dir": _compressed_run(ctx)})


def _text_ids(ctx):
    from evoforge.compress import text_ids

    return Call(text_ids, {"tokenizer": CharTok(), "path": ctx.files.text})


def _compare_perplexity(ctx):
    import torch

    from evoforge.compress import compare_perplexity

    ids = torch.randint(3, 64, (40,), generator=torch.Generator().manual_seed(0))
    return Call(compare_perplexity, {"result": _tiny_result(ctx), "ids": ids, "window": 8, "max_windows": 2})


def _levels_applied(ctx):
    from evoforge.compress import adapt, levels_applied

    a = adapt(tiny_llama())

    def inside(**kw):
        with levels_applied(**kw):
            return _state(a.model)

    return Call(inside, {"adapter": a, "provider": _provider(ctx),
                         "genome": _np().zeros(len(a.linear_layers()), "int64")})


def _pack(ctx):
    from pathlib import Path

    from evoforge.compress import pack

    rd = _compressed_run(ctx)
    return Call(lambda **kw: _state(pack(**kw)), {"model": tiny_llama(), "result": rd, "database": Path(rd) / "db",
                                                  "values_dtype": "float16"})


def _linear_layers(ctx):
    from evoforge.layers import linear_layers

    return Call(lambda **kw: sorted(linear_layers(**kw)), {"model": tiny_llama()})


# ---- plot -------------------------------------------------------------------------------------


def _history_run(ctx) -> str:
    def make():
        from evoforge.search import NSGA2
        from evoforge.search.problems import zdt1

        rd = ctx.root / "history-run"
        eng = NSGA2(_np().zeros(4), _np().ones(4), n_objectives=2, pop_size=6, ref_point=[11.0, 11.0],
                    run_dir=rd, progress=False)
        eng.run(zdt1, generations=2)
        eng.close()
        return str(rd)

    return ctx.memo("history_run", make)


def _convergence(ctx):
    from evoforge import plot

    ctx.cleanup(_close_all_figures)
    return Call(plot.convergence, {"run": _history_run(ctx), "key": "hypervolume", "x": "evaluations",
                                   "label": "hv", "save": ctx.fresh() / "c.png"})


def _load_history(ctx):
    from evoforge import plot

    return Call(plot.load_history, {"run": _history_run(ctx)})


def _layer_levels(ctx):
    from evoforge import plot

    ctx.cleanup(_close_all_figures)
    return Call(plot.layer_levels, {"values": _np().array([0.5, 0.4, 0.6]), "labels": ["a", "b", "c"],
                                    "reference": 0.5, "save": ctx.fresh() / "l.png"})


def _pareto_front(ctx):
    from evoforge import pareto, plot

    ctx.cleanup(_close_all_figures)
    F = _objectives(8, 2)
    return Call(plot.pareto_front, {"F": F, "ranks": pareto.nondominated_rank(F).astype("int64"), "max_fronts": 3,
                                    "save": ctx.fresh() / "p.png"})


# ---- merging (native merge kernels) ------------------------------------------------------------

_MERGE_N, _MERGE_K = 64, 3


def _merge_inputs():
    """base [N], deltas [K, N], weights [K], densities [K] (float32 buffers, float64 per-model numbers)."""
    r = _rng(7)
    base = r.normal(size=_MERGE_N).astype("float32")
    deltas = (0.1 * r.normal(size=(_MERGE_K, _MERGE_N))).astype("float32")
    return base, deltas, _np().array([0.5, 0.3, 0.2]), _np().array([0.5, 0.7, 0.9])


def _merge_deltas(**fixed):
    def build(ctx):
        from evoforge import merging

        base, deltas, w, d = _merge_inputs()
        kw = {"out": _np().zeros(_MERGE_N, "float32"), "base": base, "deltas": deltas, "weights": w,
              "densities": d, "trim": False, "dare": False, "sign_election": True, "normalize": True, "scale": 1.0,
              "seed": 3, "stream": 1, **fixed}
        return Call(merging.merge_deltas, kw)

    return build


# non-contiguous labels that merging's parameter buffers refuse by contract: they are read and
# written in place as views of a model's memory ("a view, never a copy"; ValueError "must be
# C-contiguous", evoforge/merging.py), so there is no contiguous result to reproduce
_IN_PLACE = ("strided", "negstride")


def _merged_copy(out: Any) -> Any:
    """merge_deltas / slerp return ``out`` itself (written in place): compare its numbers."""
    return _np().array(out, copy=True)


def _slerp(ctx):
    from evoforge import merging

    base, deltas, _, _ = _merge_inputs()
    return Call(merging.slerp, {"out": _np().zeros(_MERGE_N, "float32"), "a": base + deltas[0],
                                "b": base + deltas[1], "t": 0.3, "eps": 1e-8})


def _merge_deltas_thresholds(ctx):
    call = _merge_deltas(trim=True)(ctx)
    call.kw["thresholds"] = _np().full(_MERGE_K, 0.05, "float32")
    return call


def _trim_thresholds(ctx):
    from evoforge import merging

    _, deltas, _, d = _merge_inputs()
    return Call(merging.trim_thresholds, {"sorted_magnitudes": _np().sort(_np().abs(deltas), axis=1), "densities": d})


def _n_keep(ctx):
    from evoforge import merging

    return Call(merging.n_keep, {"density": 0.3, "n": 10})


def _dare_mask(ctx):
    from evoforge import merging

    return Call(merging.dare_mask, {"n": 100, "density": 0.5, "seed": 7, "stream": 2, "k": 1, "device": "cpu"})


# ---- CMA-ES -----------------------------------------------------------------------------------


def _sphere(X):
    np = _np()
    X = np.asarray(X, dtype=np.float64)
    return ((X - 0.3) ** 2).sum(axis=1)


def _cmaes(ctx):
    from evoforge.search import CMAES

    np = _np()
    make = functools.partial(CMAES, progress=False)
    return Call(_run_closing(make, _sphere), {
        "x0": np.full(4, 0.5), "sigma0": 0.2, "lower": np.zeros(4), "upper": np.ones(4), "pop_size": 4, "seed": 1,
        "run_dir": ctx.fresh() / "run", "task": "t"})


def _cmaes_engine(ctx):
    from evoforge.search import CMAES

    np = _np()
    eng = CMAES(np.full(4, 0.5), 0.2, lower=0.0, upper=1.0, pop_size=4, seed=2, progress=False)
    ctx.cleanup(eng.close)
    return eng


def _cmaes_run(ctx):
    return Call(_cmaes_engine(ctx).run, {"evaluator": _sphere, "generations": 2, "max_evaluations": 20,
                                         "target": -1.0})


def _cmaes_run_async(ctx):
    from evoforge.evaluate import InProcess

    return Call(_cmaes_engine(ctx).run_async, {"backend": InProcess(_sphere), "max_evaluations": 10})


def _cmaes_run_async_evaluator(ctx):
    """run_async with an InProcess backend around a (fuzzed) evaluator: what the workers return."""
    from evoforge.evaluate import InProcess

    eng = _cmaes_engine(ctx)
    return Call(lambda evaluator, max_evaluations: eng.run_async(InProcess(evaluator),
                                                                 max_evaluations=max_evaluations),
                {"evaluator": _sphere, "max_evaluations": 10})


# ---- the llama2.c tokenizer ---------------------------------------------------------------------


def llama2c_tokenizer_file(ctx) -> str:
    """A tiny valid llama2.c tokenizer (.bin), built once per worker: int32 max token length, then per
    token float32 score, int32 byte length, bytes. Ids 0..2 specials, 3..258 byte fallbacks <0xNN>,
    then the text fixture's characters and a few merges."""
    def make():
        import struct

        text = ctx.files.text.read_text()
        pieces = [(0.0, b"<unk>"), (0.0, b"\n<s>\n"), (0.0, b"\n</s>\n")]
        pieces += [(0.0, f"<0x{b:02X}>".encode()) for b in range(256)]
        pieces += [(-1.0, ch.encode()) for ch in sorted(set(text))]
        pieces += [(-0.5, m.encode()) for m in ("th", "he", "the", "on", "ce", " a", " the")]
        out = [struct.pack("<i", max(len(p) for _, p in pieces))]
        out += [struct.pack("<fi", s, len(p)) + p for s, p in pieces]
        path = ctx.root / "tok-llama2c.bin"
        path.write_bytes(b"".join(out))
        return str(path)

    return ctx.memo("llama2c_tok", make)


def _llama2c(ctx):
    from evoforge.compress import Llama2cTokenizer

    def encode_decode(**kw):
        tok = Llama2cTokenizer(**kw)
        ids = tok.encode("Once upon a time, the cat \u00e9t\u00e9.")
        return ids, tok.decode(ids), tok.vocab_size

    return Call(encode_decode, {"path": llama2c_tokenizer_file(ctx)})


def _load_tokenizer(which):
    def build(ctx):
        from evoforge.compress import load_tokenizer

        def encoded(**kw):
            return list(load_tokenizer(**kw).encode("Once upon a time", add_special_tokens=False))

        path = llama2c_tokenizer_file(ctx) if which == "bin" else tiny_model_dir_with_tokenizer(ctx)
        return Call(encoded, {"path": path})

    return build


# ---- merge (the application) -----------------------------------------------------------------


def _merge_experts():
    return [tiny_llama(seed=1), tiny_llama(seed=2)]


_MERGE_FAST = {"evaluations": 4, "n_search": 1, "n_heldout": 1, "seq_len": 8, "pop_size": 4, "progress": False,
               "grid_weights": (0.5,), "grid_densities": (0.5,)}


def _merge_config(ctx):
    from evoforge.merge import MergeConfig

    return Call(lambda **kw: MergeConfig(**kw).validate().to_json(), {
        "method": "ties", "search": "cmaes", "evaluations": 4, "groups": 2, "combine": "mean", "n_search": 1,
        "n_heldout": 1, "seq_len": 8, "pop_size": 4, "sigma0": 0.25, "weight_range": (0.0, 1.0),
        "density_range": (0.1, 1.0), "asynchronous": False, "backend": "inprocess", "workers": 1,
        "grid_weights": (0.5,), "grid_densities": (0.5,), "layer_repeats": 2, "layer_scales": (0.5, 1.0),
        "seed": 0})


def _recipe(ctx):
    from evoforge.merge import Recipe

    np = _np()
    return Call(lambda **kw: Recipe(**kw).to_dict(), {"method": "ties", "weights": np.full((3, 2), 0.5),
                                                      "densities": np.array([[0.5, 0.6]] * 3), "seed": 0})


def _merger(ctx):
    from evoforge.merge import Merger

    def make(**kw):
        m = Merger(**kw)
        return (m.n_groups, m.group_names, m.nbytes)

    return Call(make, {"model": tiny_llama(), "experts": _merge_experts(), "groups": 1})


def _merger_expert(ctx):
    """Merger with one expert of the list replaced (an incompatible or wrong model)."""
    from evoforge.merge import Merger

    base, other = tiny_llama(), tiny_llama(seed=2)
    return Call(lambda expert: Merger(base, [expert, other]).n_groups, {"expert": tiny_llama(seed=1)})


def _merger_apply(ctx):
    from evoforge.merge import Merger

    m = Merger(tiny_llama(), _merge_experts(), groups=1)
    return Call(m.apply, {"recipe": m.recipe("ties", [[0.5, 0.3], [0.4, 0.6]], 0.5, seed=1)})


def _task(**fixed):
    def build(ctx):
        from evoforge.merge import Task

        return Call(Task, {"name": "t", **fixed} if fixed else {"name": "t", "text": ctx.files.text,
                                                                "expert": None, "fn": None})

    return build


def _merge_call(ctx, **over):
    from evoforge.merge import MergeConfig, Task, merge

    kw = {"base": tiny_llama(), "models": _merge_experts(), "tasks": [Task("t", text=ctx.files.text)],
          "config": MergeConfig(**_MERGE_FAST), "tokenizer": CharTok()}
    kw.update(over)
    return Call(merge, kw)


def _merge_result(r: Any) -> Any:
    return (r.recipe.to_dict() if r.recipe is not None else None, r.heldout, r.search, r.evaluations)


def _merge(ctx):
    return _merge_call(ctx)


def _merge_one_model(ctx):
    """merge with one of the models replaced (a wrong or incompatible model)."""
    from evoforge.merge import merge

    call = _merge_call(ctx)
    kw = dict(call.kw)
    other = kw.pop("models")[1]
    return Call(lambda model, **k: merge(models=[model, other], **k), {"model": tiny_llama(seed=1), **kw})


def _merge_path(ctx):
    """The base as a saved directory that ships a tokenizer (no tokenizer given)."""
    return _merge_call(ctx, base=tiny_model_dir_with_tokenizer(ctx), tokenizer=None)


def _finetune(ctx):
    from evoforge.merge import finetune

    return Call(lambda **kw: _state(finetune(**kw)), {
        "model": tiny_llama(), "text": ctx.files.text, "tokenizer": CharTok(), "steps": 2, "lr": 1e-3, "seq_len": 8,
        "batch_size": 2, "seed": 0})


def _recipe_dir(ctx):
    """A run directory holding a recipe.json (what load_recipe reads), made once per worker."""
    def make():
        from evoforge.merge import Recipe

        d = ctx.root / "recipe-run"
        d.mkdir()
        r = Recipe("dare", _np().full((2, 2), 0.5), _np().full((2, 2), 0.7), 3, ["blocks 0-1", "embeddings"])
        (d / "recipe.json").write_text(r.to_json())
        return d

    return ctx.memo("recipe_dir", make)


def _load_recipe(as_file):
    def build(ctx):
        from evoforge.merge import load_recipe

        d = _recipe_dir(ctx)
        return Call(lambda **kw: load_recipe(**kw).to_dict(), {"path": d / "recipe.json" if as_file else d})

    return build


# ---- interpreter and programs (typed register programs, the native interpreter) ------------------

# register files of the small programs below: s0..s4, v0..v2, m0, vectors and matrices of length 3
_REGS = {"n_scalar": 5, "n_vector": 3, "n_matrix": 1}
_DIM = 3


def _fn_scalar_programs():
    """Two function programs over a scalar input (s0): (code [L, 4], imm [L]) each, the second the
    longer (so that the packed batch ends in a real binary instruction, not noop padding)."""
    from evoforge.programs import assemble

    a = assemble([("s_mul", 1, 0, 0), ("s_const", 2, 1.5), ("s_add", 1, 1, 2)])
    b = assemble([("s_sin", 2, 0), ("s_const", 3, 0.5), ("v_bcast", 1, 0), ("m_const", 0, 0.25),
                  ("m_matvec", 2, 0, 1), ("v_sum", 4, 2), ("s_mul", 2, 2, 3), ("s_add", 1, 2, 4)])
    return [a, b]


def _fn_vector_programs():
    """Two function programs over a vector input (v0)."""
    from evoforge.programs import assemble

    a = assemble([("v_dot", 1, 0, 0)])
    b = assemble([("v_norm", 2, 0), ("m_outer", 0, 0, 0), ("m_matvec", 1, 0, 0), ("v_const", 2, 0.5),
                  ("v_mul", 1, 1, 2), ("v_sum", 3, 1), ("s_add", 1, 2, 3)])
    return [a, b]


def _learner_parts(lr: float = 0.1):
    """Linear regression by SGD: setup w = 0; predict s1 = dot(w, x); learn w += lr (y - s1) x."""
    from evoforge.programs import assemble

    return {"setup": assemble([("v_const", 1, 0.0)]),
            "predict": assemble([("v_dot", 1, 1, 0)]),
            "learn": assemble([("s_sub", 2, 0, 1), ("s_const", 3, lr), ("s_mul", 2, 3, 2), ("v_scale", 2, 2, 0),
                               ("v_add", 1, 1, 2)])}


def _batch(parts: list):
    """(code [P, L, 4], imm [P, L]) of (code, imm) pairs, padded with noop."""
    np = _np()
    L = max(len(c) for c, _ in parts)
    code = np.zeros((len(parts), L, 4), dtype=np.int32)
    imm = np.zeros((len(parts), L))
    for i, (c, m) in enumerate(parts):
        code[i, :len(c)], imm[i, :len(c)] = c, m
    return code, imm


def _run_function_scalar(ctx):
    from evoforge import interpreter

    code, imm = _batch(_fn_scalar_programs())
    return Call(interpreter.run_function, {"code": code, "imm": imm, "inputs": _np().linspace(-1.0, 1.0, 7),
                                           **_REGS, "dim": _DIM, "input_register": "s0"})


def _run_function_vector(ctx):
    from evoforge import interpreter

    code, imm = _batch(_fn_vector_programs())
    return Call(interpreter.run_function, {"code": code, "imm": imm, "inputs": _rng(3).normal(size=(6, _DIM)),
                                           **_REGS, "dim": _DIM, "input_register": "v0"})


def _learner_data():
    """train_x [T=2, N=8, dim], train_y [T, N] (linear targets), valid_x [T, M=4, dim]."""
    r = _rng(4)
    x = r.normal(size=(2, 8, _DIM))
    w = r.normal(size=(2, _DIM))
    return x, (x * w[:, None, :]).sum(-1), r.normal(size=(2, 4, _DIM))


def _learner_batch():
    """{component: (code [P=2, L, 4], imm [P, L])} of two linear-regression learners."""
    a, b = _learner_parts(0.1), _learner_parts(0.05)
    return {n: _batch([a[n], b[n]]) for n in a}


def _run_learner(ctx):
    from evoforge import interpreter

    x, y, vx = _learner_data()
    return Call(interpreter.run_learner, {**_learner_batch(), "train_x": x, "train_y": y, "valid_x": vx,
                                          **_REGS, "epochs": 2, "dtype": "float64"})


def _run_learner_arrays(ctx):
    """run_learner with each component's code and imm arrays given separately (each fuzzed alone)."""
    from evoforge import interpreter

    x, y, vx = _learner_data()
    batch = _learner_batch()

    def run(**kw):
        pairs = {n: (kw.pop(f"{n}_code"), kw.pop(f"{n}_imm")) for n in ("setup", "predict", "learn")}
        return interpreter.run_learner(**pairs, **kw)

    arrays = {f"{n}_{w}": a for n, pair in batch.items() for w, a in zip(("code", "imm"), pair)}
    return Call(run, {**arrays, "train_x": x, "train_y": y, "valid_x": vx, **_REGS})


def _validate_code(batched: bool):
    def build(ctx):
        from evoforge import interpreter

        code, imm = _batch(_fn_scalar_programs()) if batched else _fn_scalar_programs()[1]
        return Call(interpreter.validate_code, {"code": code, "imm": imm, **_REGS, "name": "code"})

    return build


def _canonical_code():
    def build(ctx):
        from evoforge import interpreter

        np = _np()
        (a, ia), (b, ib) = _fn_scalar_programs()
        return Call(interpreter.canonical_code, {"code": np.concatenate([a, b]), "imm": np.concatenate([ia, ib]),
                                                 "lengths": np.array([[len(a)], [len(b)]]), **_REGS, "dim": _DIM})

    return build


def _fn_program(**kw):
    from evoforge.programs import Program

    code, imm = _fn_scalar_programs()[1]
    return Program({"predict": code}, {"predict": imm}, **_REGS, dim=_DIM, **kw)


def _learner_program(lr: float = 0.1):
    from evoforge.programs import Program

    parts = _learner_parts(lr)
    return Program({n: c for n, (c, _) in parts.items()}, {n: m for n, (_, m) in parts.items()}, **_REGS, dim=_DIM)


def _program_new(ctx):
    """The constructor and validate (the constructor converts the arrays; validate checks the rest)."""
    from evoforge.programs import Program

    parts = _learner_parts()
    return Call(lambda **kw: Program(**kw).validate(), {
        "components": {n: c for n, (c, _) in parts.items()}, "imm": {n: m for n, (_, m) in parts.items()},
        **_REGS, "dim": _DIM})


def _program_method(method: str, learner: bool):
    """Program(...).METHOD() with one component's code and imm arrays and the counts fuzzed."""
    def build(ctx):
        from evoforge.programs import Program

        parts = _learner_parts() if learner else {"predict": _fn_scalar_programs()[1]}
        fuzzed = "learn" if learner else "predict"

        def call(code, imm, **kw):
            comps = {n: (code, imm) if n == fuzzed else p for n, p in parts.items()}
            p = Program({n: c for n, (c, _) in comps.items()}, {n: m for n, (_, m) in comps.items()}, **kw)
            return getattr(p, method)()

        code, imm = parts[fuzzed]
        return Call(call, {"code": code, "imm": imm, **_REGS, "dim": _DIM})

    return build


def _programs_pack(ctx):
    from evoforge.programs import pack

    return Call(pack, {"programs": [_learner_program(0.1), _learner_program(0.05)], "component": "learn"})


def _programs_pack_one(ctx):
    """pack with one program of the list replaced (a wrong object, another form)."""
    from evoforge.programs import pack

    other = _fn_program()
    return Call(lambda program, **kw: pack([other, program], **kw), {"program": _fn_program(), "component": "predict"})


def _assemble(ctx):
    from evoforge.programs import assemble

    return Call(assemble, {"instructions": [("v_const", 1, 0.0), ("v_dot", 1, 1, 0), ("s_sub", 2, 0, 1), ("noop",)]})


def _assemble_operands(ctx):
    """assemble with the fields of an instruction fuzzed: the op name, two registers, an immediate."""
    from evoforge.programs import assemble

    return Call(lambda op, out, in1, imm: assemble([("s_const", 3, imm), (op, out, in1, 3)]),
                {"op": "s_add", "out": 1, "in1": 0, "imm": 0.5})


def _format_instruction(ctx):
    from evoforge.programs import format_instruction, op_id

    return Call(format_instruction, {"ins": _np().array([op_id("m_matvec"), 2, 0, 1], dtype="int32"), "imm": 0.0,
                                     "dim": 3})


def _op_id(ctx):
    from evoforge.programs import op_id

    return Call(op_id, {"name": "v_dot"})


def _fn_probe(p):
    """A probe of function programs over a scalar input (s0): the outputs on 5 inputs."""
    from evoforge import interpreter
    from evoforge.programs import pack

    return interpreter.run_function(*pack([p]), _np().linspace(-1.0, 1.0, 5), **p.registers)


def _mutate(ctx):
    from evoforge.programs import MUTATION_KINDS, mutate

    return Call(mutate, {"program": _learner_program(), "seed": 7, "generation": 2, "individual": 3, "max_length": 9,
                         "ops": ["s_add", "v_scale", "s_const", "v_dot"], "kinds": list(MUTATION_KINDS),
                         "imm_sigma": 0.1})


def _mutate_code(ctx):
    """mutate of a function program whose code and imm arrays are fuzzed (the program checks them)."""
    from evoforge.programs import Program, mutate

    def call(code, imm):
        return mutate(Program({"predict": code}, {"predict": imm}, **_REGS, dim=_DIM), seed=1, generation=0,
                      individual=0)

    code, imm = _fn_scalar_programs()[1]
    return Call(call, {"code": code, "imm": imm})


def _mutate_until_different(ctx):
    from evoforge.programs import mutate_until_different

    return Call(mutate_until_different, {"program": _fn_program(), "evaluate_outputs": _fn_probe, "seed": 1,
                                         "generation": 0, "individual": 4, "max_tries": 4, "max_length": 12,
                                         "ops": None, "kinds": ["argument", "op"], "imm_sigma": 0.5,
                                         "quantise": 20})


def _random_program(ctx):
    from evoforge.programs import random_program

    return Call(random_program, {"kind": "learner", "length": 4, **_REGS, "dim": _DIM, "seed": 5,
                                 "ops": ["s_add", "v_dot", "m_matvec", "v_const"]})


def _program_cache_new(ctx):
    from evoforge.cache import EvaluationCache
    from evoforge.programs import ProgramCache

    return Call(lambda **kw: ProgramCache(**kw).report()["lookups"],
                {"cache": EvaluationCache(), "probe": _fn_probe, "quantise": 20, "namespace": "task"})


def _program_cache(ctx, stored: bool = True):
    """A ProgramCache over a fresh in-memory EvaluationCache; the scalar function program stored."""
    from evoforge.cache import EvaluationCache
    from evoforge.programs import ProgramCache

    store = EvaluationCache()
    ctx.cleanup(store.close)
    cache = ProgramCache(store, probe=_fn_probe, namespace="task")
    if stored:
        p = _fn_program()
        cache.store(cache.lookup(p)[2], 0.5, p)
    return cache


def _program_cache_lookup(ctx):
    return Call(_program_cache(ctx).lookup, {"program": _fn_program()})


def _program_cache_lookup_many(ctx):
    """lookup_many of a stored program and a new one, the probes of the misses run together."""
    from evoforge.programs import horner_program

    return Call(_program_cache(ctx).lookup_many, {
        "programs": [_fn_program(), horner_program([1.0, 0.5])],
        "probe_many": lambda ps: [_fn_probe(p) for p in ps]})


def _program_cache_store(ctx):
    cache = _program_cache(ctx, stored=False)
    p = _fn_program()
    return Call(cache.store, {"key": cache.lookup(p)[2], "fitness": 1.5, "program": p, "seconds": 0.01})


def _program_cache_evaluate(ctx):
    return Call(_program_cache(ctx, stored=False).evaluate, {"program": _fn_program(), "fn": lambda p: float(len(p))})


def _functional_digest(ctx):
    from evoforge.programs import functional_digest

    return Call(functional_digest, {"outputs": _float_pop(3, 4), "quantise": 0.01, "namespace": ("task", 1)})


def _structural_digest(ctx):
    from evoforge.programs import structural_digest

    return Call(structural_digest, {"program": _learner_program(), "namespace": "task"})


def _ulp_error(ctx):
    """ulp_error of float32 predictions [P=2, E=5] against float64 exact values [E]."""
    from evoforge.programs import ulp_error

    np = _np()
    exact = np.exp2(np.linspace(0.0, 1.0, 5))
    return Call(ulp_error, {"pred": np.stack([exact, exact * (1 + 1e-6)]).astype(np.float32), "exact": exact})


def _probe_points(ctx):
    from evoforge.programs import probe_points

    return Call(probe_points, {"target": "exp2", "n": 9, "n_random": 4, "seed": 3, "interval": [0.0, 1.0]})


def _minimax_polynomial(ctx):
    from evoforge.programs import minimax_polynomial

    return Call(minimax_polynomial, {"target": "exp2", "degree": 3, "interval": [0.0, 1.0], "error": "relative"})


def _horner_program(ctx):
    from evoforge.programs import horner_program

    return Call(horner_program, {"coeffs": _np().array([1.0, 0.6931, 0.2402, 0.0555]), "dtype": "float32"})


def _op_count(ctx):
    from evoforge.programs import horner_program, op_count

    return Call(op_count, {"program": horner_program([1.0, 0.5, 0.25]), "live": True})


def _minimax_baseline(ctx):
    from evoforge.programs import minimax_baseline

    def call(**kw):  # the programs and coefficients as plain values, comparable across calls
        return [(r["degree"], r["ops"], r["max_ulp"], r["coefficients"]) for r in minimax_baseline(**kw)]

    # exp2: n=None (every float32 of [0, 1), about 2**30) is refused at once; log2's 2**23 would take a second
    return Call(call, {"target": "exp2", "degrees": [1, 2], "interval": [0.0, 1.0], "n": 257})


# ---- programs: the update-rule task (Lion) -----------------------------------------------------

# a task of milliseconds: 3 steps, 2 rates, 1 training and 1 held-out task of 32 + 16 digits
_RULE_TASK = {"steps": 3, "lrs": [0.01, 0.03], "weight_decay": 0.01, "problems": ["logreg", "mlp"], "n_tasks": 1,
              "n_heldout": 1, "n_classes": 3, "n_train": 32, "n_valid": 16, "batch_size": 8, "hidden": 4,
              "penalty": 50.0, "seed": 0, "n_scalar": 8, "n_vector": 1, "n_matrix": 0, "ops": ["s_add", "v_get"]}


def _rule_task():
    from evoforge.programs import UpdateRuleTask

    return UpdateRuleTask(**_RULE_TASK)


def _update_rule_task_new(ctx):
    from evoforge.programs import UpdateRuleTask

    return Call(lambda **kw: UpdateRuleTask(**kw).namespace, dict(_RULE_TASK))


def _update_rule_method(method: str):
    """UpdateRuleTask(...).METHOD(...) on the small task, with AdamW and Lion as the rules."""
    def build(ctx):
        from evoforge.programs import adamw_program, lion_program

        task = _rule_task()
        kw = {"evaluate": {"programs": [adamw_program(), lion_program()], "batch": None},
              "probe": {"program": lion_program()},
              "train": {"program": adamw_program(), "lr": 0.01, "index": 0, "heldout": True},
              "problem": {"index": 0, "heldout": False},
              "report": {"program": lion_program()}}[method]
        return Call(getattr(task, method), kw)

    return build


def _adamw_program(ctx):
    from evoforge.programs import adamw_program

    return Call(adamw_program, {"eps": 1e-8, "n_scalar": 8, "n_vector": 1, "n_matrix": 0})


def _lion_program(ctx):
    from evoforge.programs import lion_program

    return Call(lion_program, {"beta1": 0.9, "n_scalar": 8, "n_vector": 2, "n_matrix": 0})


# ---- programs: the searches (engines, the function and learner tasks, search_programs) ------------

# tasks of milliseconds: 17 float32 points, 2 CMA-ES iterations of 4 candidates; 1 learning task of 10 + 10
_FUNCTION_TASK = {"target": "exp2", "interval": [0.0, 1.0], "n_points": 17, "n_probe": 4,
                  "objectives": ["ulp", "ops"], "n_scalar": 4, "ops": ["s_add", "s_mul", "s_const"],
                  "fit_iterations": 2, "fit_popsize": 4, "fit_points": 9,
                  "fit_integers": True, "fit_linear": True, "fit_polish": 2}
_LEARNER_TASK = {"kind": "regression", "dim": 3, "n_tasks": 1, "n_train": 10, "n_valid": 10, "n_heldout": 2,
                 "epochs": 1, "n_scalar": 4, "n_vector": 3, "ops": ["s_sub", "s_mul", "v_scale", "v_add", "v_dot"],
                 "source": None, "seed": 0}
# search_programs("linear", ...) at its smallest (no run directory: nothing written, no plot)
_SEARCH = {"name": "linear", "engine": "regularized", "generations": 1, "seed": 0, "run_dir": None,
           "initial": None, "backend": "inprocess", "task_options": {"n_tasks": 1, "n_train": 10, "n_valid": 10},
           "progress": False, "population_size": 4, "tournament_size": 2, "batch_size": 2, "max_length": 4}


def _function_task(**over):
    from evoforge.programs import FunctionTask

    kw = {**_FUNCTION_TASK, **over}
    return FunctionTask(kw.pop("target"), **kw)


def _learner_task(**over):
    from evoforge.programs import LearnerTask

    kw = {**_LEARNER_TASK, **over}
    return LearnerTask(kw.pop("kind"), **kw)


def _taylor(degree: int = 2):
    from evoforge.programs import taylor_program

    return taylor_program("exp2", degree)


def _linear_learner(lr: float = 0.1):
    from evoforge.programs import linear_regression_program

    return linear_regression_program(dim=3, lr=lr, n_scalar=4, n_vector=3)


def _function_task_new(ctx):
    return Call(lambda **kw: _function_task(**kw).namespace, dict(_FUNCTION_TASK))


def _function_task_method(method: str):
    """FunctionTask(...).METHOD(...) on the small task, with Taylor polynomials as the programs."""
    def build(ctx):
        task = _function_task()
        kw = {"outputs": {"programs": [_taylor(1), _taylor(3)], "x": _np().linspace(0.0, 0.9, 5)},
              "errors": {"programs": [_taylor(1), _taylor(3)]},
              "evaluate": {"programs": [_taylor(1), _taylor(3)], "batch": None},
              "probe": {"program": _taylor(2)},
              "probe_many": {"programs": [_taylor(1), _taylor(2), _taylor(1)]},
              "tune": {"programs": [_taylor(1), _taylor(2)], "seed": 3},
              "report": {"program": _taylor(2), "every_float": False},
              "baseline": {"degrees": [1, 2]}}[method]
        return Call(getattr(task, method), kw)

    return build


def _taylor_program(ctx):
    from evoforge.programs import taylor_program

    return Call(taylor_program, {"target": "log2", "degree": 3, "n_scalar": 5})


def _learner_task_new(ctx):
    return Call(lambda **kw: _learner_task(**kw).namespace, dict(_LEARNER_TASK))


def _learner_task_classification(ctx):
    """The classification tasks: the data source (digits or synthetic) fuzzed."""
    return Call(lambda **kw: _learner_task(**kw).namespace, {"kind": "classification", "source": "synthetic"})


def _learner_task_method(method: str):
    """LearnerTask(...).METHOD(...) on the small regression task, with SGD and the empty learner."""
    def build(ctx):
        task = _learner_task()
        progs = [_linear_learner(0.1), task.initial()]
        kw = {"predictions": {"programs": progs, "data": task.data},
              "losses": {"programs": progs, "data": task.data},
              "evaluate": {"programs": progs, "batch": None},
              "probe": {"program": _linear_learner(0.05)},
              "probe_many": {"programs": [_linear_learner(0.05), task.initial()]},
              "report": {"program": _linear_learner(0.1)}}[method]
        return Call(getattr(task, method), kw)

    return build


def _learner_task_arrays(method: str):
    """LearnerTask(...).METHOD(programs, data) with each array of ``data`` fuzzed alone."""
    def build(ctx):
        task = _learner_task()
        progs = [_linear_learner(0.1), _linear_learner(0.05)]
        fn = getattr(task, method)
        x, y, vx, vy = (a.copy() for a in task.data)
        if method == "predictions":
            return Call(lambda train_x, train_y, valid_x: fn(progs, (train_x, train_y, valid_x)),
                        {"train_x": x, "train_y": y, "valid_x": vx})
        return Call(lambda valid_y: fn(progs, (x, y, vx, valid_y)), {"valid_y": vy})

    return build


def _linear_regression_program(ctx):
    from evoforge.programs import linear_regression_program

    # validate(): the program must be well formed for its registers (or refused)
    return Call(lambda **kw: linear_regression_program(**kw).validate(),
                {"dim": 3, "lr": 0.1, "n_scalar": 4, "n_vector": 3})


def _program_engine(which: str):
    """The engine's constructor, then 2 generations on its small task (its default evaluator)."""
    def build(ctx):
        from evoforge.programs import ProgramNSGA2, RegularizedEvolution

        np = _np()
        if which == "regularized":
            cls, task = RegularizedEvolution, _learner_task()
            kw = {"population_size": 4, "tournament_size": 2, "batch_size": 2, "restart_stall": 2, "initial": None}
        else:
            cls, task = ProgramNSGA2, _function_task()
            kw = {"population_size": 4, "n_offspring": 3, "ref_point": np.array([70.0, 50.0]),
                  "resolution": np.array([0.02, 0.0]), "initial": [_taylor(1), _taylor(2)]}
        kw.update(task=task, max_length=6, kinds=["insert", "remove", "argument", "op"],
                  imm_sigma=0.1, cache=True, functional_cache=True, quantise=20, seed=1,
                  run_dir=ctx.fresh() / "run")

        def fn(**kw):
            eng = cls(progress=False, **kw)
            try:
                return eng.run(generations=2)
            finally:
                eng.close()

        return Call(fn, kw)

    return build


def _program_engine_built(which: str, ctx):
    from evoforge.programs import ProgramNSGA2, RegularizedEvolution

    if which == "regularized":
        eng = RegularizedEvolution(_learner_task(), population_size=4, tournament_size=2, batch_size=2,
                                   max_length=6, progress=False)
    else:
        eng = ProgramNSGA2(_function_task(), population_size=4, n_offspring=3, initial=[_taylor(1), _taylor(2)],
                           max_length=6, progress=False)
    ctx.cleanup(eng.close)
    return eng


def _program_engine_run(which: str):
    def build(ctx):
        eng = _program_engine_built(which, ctx)
        task = eng.program_task
        kw = {"evaluator": lambda programs: task.evaluate(programs), "generations": 2, "max_evaluations": 20}
        if which == "regularized":
            kw["target"] = -1.0
        return Call(eng.run, kw)

    return build


def _program_engine_ask(which: str):
    def build(ctx):
        eng = _program_engine_built(which, ctx)
        eng.tell(eng.ask(), eng.program_task.evaluate(eng.ask().genomes))  # the second ask makes children
        return Call(lambda: list(eng.ask().genomes), {})

    return build


def _program_engine_tell(which: str):
    def build(ctx):
        eng = _program_engine_built(which, ctx)
        batch = eng.ask()
        F = _np().asarray(eng.program_task.evaluate(batch.genomes), dtype="float64").copy()

        def tell(**kw):
            eng.tell(batch, **kw)
            return eng.best

        return Call(tell, {"fitness": F})

    return build


def _search_programs(ctx):
    from evoforge.programs import search_programs

    return Call(search_programs, dict(_SEARCH))


def _search_programs_run_dir(ctx):
    """search_programs into a run directory (written at the end: best.py, report.json, curve.png)."""
    from evoforge.programs import search_programs

    return Call(search_programs, {**_SEARCH, "run_dir": ctx.fresh() / "run"})


def _search_programs_exp2(ctx):
    """search_programs("exp2", ...): NSGA-II from the Taylor polynomials, constants fitted."""
    from evoforge.programs import search_programs

    return Call(search_programs, {"name": "exp2", "engine": "nsga2", "generations": 1, "initial": None,
                                  "progress": False, "population_size": 4, "max_length": 12,
                                  "task_options": {"n_points": 17, "fit_iterations": 2, "fit_popsize": 4}})


def _program_run(r: Any) -> Any:
    return (r.best, r.fitness, r.engine.generation, r.engine.evaluations)


# ---- warm-up ----------------------------------------------------------------------------------


def warm_up(groups: set[str], ctx) -> None:
    """Imports and first-call costs paid once per worker, before any case's clock starts."""
    if "programs" in groups:
        from evoforge.programs.update_rules import _digits

        _digits()  # scikit-learn's import and the digits, for the update-rule task
        try:
            import cma  # noqa: F401  (FunctionTask.tune's CMA-ES, an optional dependency)
        except ImportError:
            pass
        import matplotlib  # search_programs's plots of a run directory

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    if groups & {"hashing", "solvers", "kl", "layers", "compress", "cli", "search", "evaluate", "merging", "merge"}:
        import torch

        torch.set_num_threads(1)
    if "search" in groups:
        try:
            import cma  # noqa: F401  (CMAES's strategy, an optional dependency)
        except ImportError:
            pass
    if "merge" in groups:
        import evoforge.compress.models  # noqa: F401  (transformers)
        import evoforge.merge  # noqa: F401

        try:
            import cma  # noqa: F401  (merge's CMA-ES)
        except ImportError:
            pass

        tiny_llama()(input_ids=tokens(1, 4))
    if groups & {"layers", "compress", "cli"}:
        import evoforge.compress.pipeline  # noqa: F401  (transformers)
        import evoforge.layers  # noqa: F401

        tiny_llama()(input_ids=tokens(1, 4))
    if groups & {"plot", "compress"}:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    if "cli" in groups:
        import evoforge.cli  # noqa: F401

        tiny_model_dir_with_tokenizer(ctx)


# ---- the list ---------------------------------------------------------------------------------

_SEEDS3 = {"seed": "seed", "generation": "seed", "individual_offset": "seed"}
_MODEL_TIMEOUT = 5.0  # a whole tiny compression may run when a bad value is accepted (valid: < 1 s)
_COUNTS = {"n_scalar": "int", "n_vector": "int", "n_matrix": "int"}  # the register files of a program


# ---- neuro (issue 20): policies, rollouts, seed-list genomes, engines, evolve ----------------------
# CartPole with tiny networks and step limits, so that a valid call takes milliseconds.


def _neuro_policy(hidden=(4,)):
    from evoforge.neuro import MLPPolicy

    return MLPPolicy(obs_dim=4, n_outputs=2, hidden=hidden)


def _neuro_mlp(ctx):
    from evoforge.neuro import MLPPolicy

    return Call(MLPPolicy, {"obs_dim": 4, "n_outputs": 2, "hidden": [8], "discrete": True})


def _neuro_from_spaces(ctx):
    import gymnasium as gym

    from evoforge.neuro import MLPPolicy

    return Call(MLPPolicy.from_spaces, {"observation_space": gym.spaces.Box(-1, 1, (3,)),
                                        "action_space": gym.spaces.Discrete(2), "hidden": [8]})


def _neuro_forward(ctx):
    p = _neuro_policy()
    params = _np().stack([p.init_params(s) for s in range(3)])
    return Call(p.forward, {"params": params, "obs": _rng(4).random((3, 2, 4)).astype("float32")})


def _neuro_act(ctx):
    p = _neuro_policy()
    params = _np().stack([p.init_params(s) for s in range(3)])
    return Call(p.act, {"params": params, "obs": _rng(4).random((3, 2, 4)).astype("float32")})


def _neuro_make_env(ctx):
    from evoforge.neuro import make_env

    def make(**kw):
        env = make_env(**kw)
        env.close()
        return type(env).__name__

    return Call(make, {"env": "CartPole-v1", "env_kwargs": None})


def _neuro_rollout(ctx):
    from evoforge.neuro import make_env, rollout

    p = _neuro_policy()
    envs = [make_env("CartPole-v1") for _ in range(4)]
    ctx.cleanup(lambda: [e.close() for e in envs])
    params = _np().stack([p.init_params(s) for s in range(2)])
    return Call(functools.partial(rollout, p, envs), {"params": params, "seeds": [3, 4], "max_steps": 10,
                                                      "stats": False})


def _neuro_episode_seeds(ctx):
    from evoforge.neuro import episode_seeds

    return Call(episode_seeds, {"context_seed": 3, "episodes": 4})


def _neuro_evaluate_policy(ctx):
    from evoforge.neuro import evaluate_policy

    p = _neuro_policy()
    return Call(functools.partial(evaluate_policy, policy=p), {
        "env": "CartPole-v1", "params": p.init_params(1), "episodes": 2, "seed": 0, "max_steps": 10})


def _neuro_obs_norm(ctx):
    from evoforge.neuro import ObsNorm

    def make(**kw):
        n = ObsNorm(**kw)
        return (n.mean, n.std)

    return Call(make, {"obs_dim": 4, "clip": 5.0, "eps": 0.01})


def _neuro_obs_norm_update(ctx):
    from evoforge.neuro import ObsNorm

    def update(**kw):
        n = ObsNorm(3)
        n.update(**kw)
        n.freeze()
        return (n.mean, n.std)

    return Call(update, {"counts": _np().array([5.0, 7.0]), "sums": _rng(5).random((2, 3)),
                         "sumsq": _rng(6).random((2, 3)) + 1.0})


def _neuro_encode(ctx):
    from evoforge.neuro import encode

    return Call(encode, {"seed_lists": [[1, 2], [3]]})


def _neuro_decode(ctx):
    from evoforge.neuro import decode, encode

    return Call(decode, {"genomes": encode([[1, 2], [3]]).astype("int64")})


def _neuro_derive_seed(ctx):
    from evoforge.neuro import derive_seed

    def derive(seed, purpose, generation):
        return derive_seed(seed, purpose, generation)

    return Call(derive, {"seed": 3, "purpose": "mutation", "generation": 4})


def _neuro_param_cache(ctx):
    from evoforge.neuro import ParamCache, encode

    def make(**kw):
        return ParamCache(**kw).params(encode([[1, 2], [1]]))

    return Call(make, {"policy": _neuro_policy(), "sigma": 0.1, "max_bytes": 1 << 20})


def _neuro_param_cache_params(ctx):
    from evoforge.neuro import ParamCache, encode

    return Call(ParamCache(_neuro_policy(), 0.1).params, {"genomes": encode([[1, 2], [3]]).astype("int64")})


def _neuro_payload_bytes(ctx):
    from evoforge.neuro import encode, payload_bytes

    return Call(payload_bytes, {"genomes": encode([[1, 2], [3]]).astype("int64"), "n_params": 100})


def _neuro_evaluator(ctx):
    from evoforge.neuro import PolicyEvaluator, encode

    np = _np()

    def make(**kw):
        ev = PolicyEvaluator(**kw)
        try:
            if ev.encoding == "seeds":
                return ev.evaluate(encode([[1, 2], [3]]))
            if ev.encoding == "es":
                ev.set_context({"center": ev.policy.init_params(0)})
                return ev.evaluate(np.array([[5, 0], [5, 1]], np.uint64))
            return ev.evaluate(np.zeros((2, ev.policy.n_params), np.float32))
        finally:
            ev.close()

    return Call(make, {"env": "CartPole-v1", "hidden": [4], "encoding": "seeds", "sigma": 0.1, "episodes": 1,
                       "max_steps": 10, "seed": 0, "cache_bytes": 1 << 20, "env_kwargs": None})


def _neuro_evaluator_method(method):
    def build(ctx):
        from evoforge.neuro import PolicyEvaluator, encode

        ev = PolicyEvaluator("CartPole-v1", hidden=(4,), encoding="seeds", sigma=0.1, max_steps=10)
        ctx.cleanup(ev.close)
        if method == "evaluate":
            return Call(ev.evaluate, {"genomes": encode([[1, 2], [3]]).astype("int64")})
        return Call(ev.set_context, {"context": {"obs_norm": None, "report": True}})

    return build


def _neuro_engine(which):
    def build(ctx):
        from evoforge.neuro import DeepGA, OpenAIES, PolicyEvaluator

        cls = DeepGA if which == "ga" else OpenAIES

        def fn(**kw):
            eng = cls(progress=False, **kw)
            ev = PolicyEvaluator("CartPole-v1", eng.policy, encoding=eng.encoding, sigma=eng.sigma, max_steps=10)
            try:
                return eng.run(ev, generations=1)
            finally:
                ev.close()
                eng.close()

        kw = {"policy": _neuro_policy(), "pop_size": 4, "sigma": 0.1, "episodes": 1, "obs_norm": True,
              "obs_clip": 5.0, "seed": 1, "run_dir": ctx.fresh() / "run"}
        if which == "ga":
            kw.update(truncation=2, elite_candidates=2, elite_episodes=1)
        else:
            kw.update(lr=0.05, beta1=0.9, beta2=0.999, adam_eps=1e-8, weight_decay=0.01, eval_episodes=1,
                      init=_neuro_policy().init_params(3))
        return Call(fn, kw)

    return build


def _neuro_engine_run(which):
    def build(ctx):
        from evoforge.neuro import DeepGA, OpenAIES, PolicyEvaluator

        cls = DeepGA if which == "ga" else OpenAIES
        eng = cls(_neuro_policy(), pop_size=4, sigma=0.1, progress=False, **({"elite_episodes": 1} if which == "ga"
                                                                              else {"eval_episodes": 1}))
        ev = PolicyEvaluator("CartPole-v1", eng.policy, encoding=eng.encoding, sigma=0.1, max_steps=10)
        ctx.cleanup(ev.close)
        ctx.cleanup(eng.close)
        return Call(eng.run, {"evaluator": ev, "generations": 1, "target": None})

    return build


def _neuro_centered_ranks(ctx):
    from evoforge.neuro import centered_ranks

    return Call(centered_ranks, {"returns": _np().array([3.0, -1.0, 10.0, 0.0])})


def _neuro_result(r: Any) -> Any:
    return (r.params, [{k: v for k, v in c.items() if k != "seconds"} for c in r.curve], r.best_return)


def _neuro_evolve(ctx):
    from evoforge.neuro import evolve

    return Call(functools.partial(evolve, elite_episodes=1), {
        "env": "CartPole-v1", "algo": "ga", "pop": 4, "generations": 1, "seed": 0, "run_dir": ctx.fresh() / "run",
        "hidden": [4], "episodes": 1, "sigma": 0.1, "max_steps": 10, "target_return": None, "backend": "inprocess"})



# ---- neuro: conv policies, saved policies, curves, run files, play (issue 20) ---------------------


def _neuro_conv(ctx):
    import gymnasium as gym

    from evoforge.neuro import ConvPolicy

    return Call(ConvPolicy.from_spaces, {"observation_space": gym.spaces.Box(0, 1, (6, 6, 2)),
                                         "action_space": gym.spaces.Discrete(3), "hidden": [4], "channels": 2,
                                         "kernel": 3, "stride": 1})


def _neuro_conv_policy():
    import gymnasium as gym

    from evoforge.neuro import ConvPolicy

    return ConvPolicy.from_spaces(gym.spaces.Box(0, 1, (6, 6, 2)), gym.spaces.Discrete(3), (4,), channels=2)


def _neuro_conv_forward(ctx):
    p = _neuro_conv_policy()
    params = _np().stack([p.init_params(s) for s in range(3)])
    return Call(p.forward, {"params": params, "obs": _rng(4).random((3, 2, 72)).astype("float32")})


def _neuro_run(ctx):
    """A finished tiny CartPole run (its EvolveResult and run directory), once per worker."""
    def make():
        from evoforge.neuro import evolve, write_run

        d = ctx.root / "neuro-run"
        r = evolve("CartPole-v1", "ga", pop=4, generations=1, hidden=(4,), max_steps=10, elite_episodes=1,
                   run_dir=d)
        write_run(r, d, settings={"pop": 4, "max_steps": 10}, eval_episodes=1)
        return r, d

    return ctx.memo("neuro-run", make)


def _neuro_save_policy(ctx):
    from evoforge.neuro import save_policy

    p = _neuro_policy()
    return Call(save_policy, {"path": ctx.fresh() / "p.npz", "policy": p, "params": p.init_params(1),
                              "meta": {"env": "CartPole-v1"}})


def _neuro_load_policy(ctx):
    from evoforge.neuro import load_policy

    def load(**kw):
        s = load_policy(**kw)
        return (s.params, s.policy.describe(), s.meta)

    return Call(load, {"path": _neuro_run(ctx)[1] / "best_policy.npz"})


def _neuro_load_curve(ctx):
    from evoforge.neuro import load_curve

    return Call(load_curve, {"run": _neuro_run(ctx)[1] / "history.jsonl"})


def _neuro_plot_curve(ctx):
    from evoforge.neuro import plot_curve

    return Call(lambda **kw: plot_curve(**kw) and None, {
        "run": _neuro_run(ctx)[1] / "history.jsonl", "save": ctx.fresh() / "c.png", "title": "t",
        "references": {"random": 20.0}})


def _neuro_write_run(ctx):
    from evoforge.neuro import write_run

    return Call(lambda **kw: write_run(**kw)["final_evaluation"], {
        "result": _neuro_run(ctx)[0], "run_dir": ctx.fresh() / "run", "settings": {"max_steps": 10},
        "eval_episodes": 1, "eval_seed": 3, "references": {"random": 20.0}})


def _neuro_play(ctx):
    from evoforge.neuro import play

    return Call(lambda **kw: play(**kw)["returns"], {
        "run": _neuro_run(ctx)[1], "episodes": 2, "video": ctx.fresh() / "v.gif", "seed": 1, "max_steps": 10,
        "max_frames": 5})


ENTRIES: list[Entry] = [
    # evoforge
    Entry("evoforge.set_num_threads", _set_num_threads, {"n": "int"}),
    # pareto
    Entry("pareto.nondominated_rank", _pareto_rank, {"F": "matrix_f", "constraint_violation": "vector_f"}),
    Entry("pareto.crowding_distance", _pareto_crowding, {"F": "matrix_f", "ranks": "vector_i"}),
    Entry("pareto.select", _pareto_select, {"F": "matrix_f", "k": "int", "constraint_violation": "vector_f"}),
    Entry("pareto.hypervolume", _pareto_hv, {"F": "matrix_f", "ref": "vector_f"}),
    # random
    Entry("random.philox4x32_10", _philox, {"counter": "matrix_i", "key": "matrix_i"}),
    Entry("random.box_muller", _box_muller, {"w1": "vector_i", "w2": "vector_i"}),
    Entry("random.normal", _normal, {"shape": "shape", **_SEEDS3}),
    # mutation
    Entry("mutation.level_switch", _level_switch, {
        "parents": "matrix_i", "lower": "vector_i", "upper": "vector_i", "n_offspring": "int", "max_switches": "int",
        "groups": "vector_i", "costs": "matrix_f", "budget_tol": "real", **_SEEDS3, "max_attempts": "int",
        "return_drift": "bool"}),
    Entry("mutation.point", _point, {"x": "matrix_i", "lower": "vector_i", "upper": "vector_i", "prob": "prob",
                                     **_SEEDS3}),
    Entry("mutation.gaussian", _gaussian, {"x": "matrix_f", "sigma": "vector_f", "prob": "prob", "lower": "vector_f",
                                           "upper": "vector_f", **_SEEDS3}),
    Entry("mutation.polynomial", _polynomial, {"x": "matrix_f", "lower": "vector_f", "upper": "vector_f",
                                               "eta": "real", "prob": "prob", **_SEEDS3}),
    # crossover
    *[Entry(f"crossover.{k}", _points_crossover(k), {"a": "matrix_f", "b": "matrix_f", "prob": "prob", **_SEEDS3})
      for k in ("uniform", "one_point", "two_point")],
    Entry("crossover.sbx", _sbx, {"a": "matrix_f", "b": "matrix_f", "lower": "vector_f", "upper": "vector_f",
                                  "eta": "real", "prob": "prob", "prob_var": "prob", **_SEEDS3}),
    # selection
    Entry("selection.tournament", _tournament, {"fitness": "matrix_f", "n_select": "int", "tournament_size": "int",
                                                **_SEEDS3}),
    # deepga
    Entry("deepga.seeds_to_params", _seeds_to_params, {"theta0": "vector_f", "seed_lists": "seed_lists",
                                                       "sigma": "real"}),
    Entry("deepga.extend_params", _extend_params, {"parent_params": "matrix_f", "seeds": "seeds", "sigma": "real"}),
    Entry("deepga.noise", _noise, {"seed": "seed", "D": "int"}),
    # hashing
    Entry("hashing.hash_array", _hash_array(mantissa_bits=7), {"x": "matrix_f", "mantissa_bits": "int",
                                                                "seed": "seed", "ignore_dtype": "bool"}),
    Entry("hashing.hash_array#grid", _hash_array(grid=0.01), {"x": "matrix_f", "grid": "real"}),
    Entry("hashing.hash_array#int", _hash_array_int, {"x": "matrix_i"}),
    Entry("hashing.Hasher", _hasher, {"seed": "seed"}),
    Entry("hashing.Hasher.update", _hasher_update(lambda: {"a": [1, "x", 2.5], "b": None}),
          {"obj": "any_obj", "mantissa_bits": "int", "ignore_dtype": "bool"}),
    Entry("hashing.Hasher.update#array", _hasher_update(lambda: _float_pop(3, 4)), {"obj": "matrix_f"}),
    Entry("hashing.genotype_hash", _genotype_hash(lambda: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), {"genome": "any_obj"}),
    Entry("hashing.genotype_hash#array", _genotype_hash(_int_pop), {"genome": "matrix_i"}),
    Entry("hashing.FunctionalHasher", _functional_hasher, {"input_shape": "shape", "n_probes": "int", "seed": "seed",
                                                           "mantissa_bits": "int", "probe_version": "int"}),
    Entry("hashing.FunctionalHasher#probes", _functional_hasher_probes, {"probe_inputs": "tensor_matrix"}),
    Entry("hashing.FunctionalHasher.hash", _functional_hash, {"candidate": "callable", "task": "any_obj",
                                                              "fidelity": "any_obj"}, project=_no_compare),
    # cache
    Entry("cache.EvaluationCache", _cache_ctor, {
        "path": "cache_path", "capacity": "int", "forget_every": "int", "aggregate": "int",
        "remove_probability": "prob", "seed": "seed", "timeout": "real", "synchronous": "choice"}),
    Entry("cache.EvaluationCache.put", _cache_put(False), {"key": "key", "fitness": "fitness", "genome": "any_obj",
                                                            "seconds": "real"}, project=_entry_mean),
    Entry("cache.EvaluationCache.put#vector", _cache_put_vector, {"fitness": "vector_f"}, project=_entry_mean),
    Entry("cache.EvaluationCache.put#sqlite", _cache_put(True), {"key": "key", "fitness": "fitness",
                                                                  "genome": "any_obj", "seconds": "real"},
          project=_entry_mean),
    Entry("cache.EvaluationCache.get", _cache_get(False), {"key": "key"}, project=_entry_mean),
    Entry("cache.EvaluationCache.get#sqlite", _cache_get(True), {"key": "key"}, project=_entry_mean),
    Entry("cache.EvaluationCache.evaluate", _cache_evaluate, {"key": "key", "fn": "callable", "genome": "any_obj"}),
    # search
    Entry("search.OnePlusLambda", _one_plus_lambda, {
        "initial": "vector_i", "mutation": "operator", "lower": "int", "upper": "int", "n_offspring": "int",
        "stages": "stages", "seed": "seed", "run_dir": "path_out_dir"}, project=_search_result),
    Entry("search.OnePlusLambda#levels", _one_plus_lambda_levels, {"initial": "vector_i", "lower": "vector_i",
                                                                   "upper": "vector_i"}, project=_search_result),
    Entry("search.NSGA2", _nsga2, {
        "lower": "vector_f", "upper": "vector_f", "n_objectives": "int", "pop_size": "int", "n_offspring": "int",
        "crossover": "operator", "mutation": "operator", "ref_point": "vector_f", "initial": "matrix_f",
        "seed": "seed", "run_dir": "path_out_dir"}, project=_search_result),
    Entry("search.GA", _ga, {
        "lower": "vector_i", "upper": "vector_i", "pop_size": "int", "elitism": "int", "tournament_size": "int",
        "crossover": "operator", "mutation": "operator", "initial": "matrix_i", "seed": "seed"},
        project=_search_result),
    Entry("search.OnePlusLambda.run", _engine_run("OnePlusLambda"), {
        "evaluator": "evaluator", "generations": "iterations", "max_evaluations": "iterations", "target": "real"},
        project=_search_result),
    Entry("search.NSGA2.run", _engine_run("NSGA2"), {
        "evaluator": "evaluator", "generations": "iterations", "max_evaluations": "iterations"},
        project=_search_result),
    Entry("search.GA.run", _engine_run("GA"), {
        "evaluator": "evaluator", "generations": "iterations", "max_evaluations": "iterations", "target": "real"},
        project=_search_result),
    Entry("search.OnePlusLambda.tell", _engine_tell("OnePlusLambda"), {"fitness": "vector_f"}),
    Entry("search.NSGA2.tell", _engine_tell("NSGA2"), {"fitness": "matrix_f"}),
    Entry("search.OnePlusLambda.resume", _resume, {"run_dir": "path_in_dir"}),
    Entry("search.Screen", _screen, {"factor": "int", "alpha": "real", "encode": "callable", "predictor": "any_obj",
                                     "min_train": "int", "select": "choice", "depth": "int"}, project=_search_result),
    Entry("search.PointMutation", _mutation_op("PointMutation", {"prob": 0.5}, True), {"prob": "prob"}),
    Entry("search.GaussianMutation", _mutation_op("GaussianMutation", {"sigma": 0.1, "prob": 0.5}, False),
          {"sigma": "real", "prob": "prob"}),
    Entry("search.PolynomialMutation", _mutation_op("PolynomialMutation", {"eta": 20.0, "prob": 0.5}, False),
          {"eta": "real", "prob": "prob"}),
    Entry("search.LevelSwitch", _level_switch_op, {"max_switches": "int", "groups": "vector_i", "costs": "matrix_f",
                                                   "budget_tol": "real"}),
    Entry("search.SBX", _crossover_op("SBX", {"eta": 15.0, "prob": 0.9, "prob_var": 0.5}),
          {"eta": "real", "prob": "prob", "prob_var": "prob"}),
    *[Entry(f"search.{c}", _crossover_op(c, {"prob": 0.9}), {"prob": "prob"})
      for c in ("UniformCrossover", "OnePointCrossover", "TwoPointCrossover")],
    Entry("search.CMAES", _cmaes, {
        "x0": "vector_f", "sigma0": "real", "lower": "vector_f", "upper": "vector_f", "pop_size": "int",
        "seed": "seed", "run_dir": "path_out_dir"}, project=_search_result),
    Entry("search.CMAES.run", _cmaes_run, {
        "evaluator": "evaluator", "generations": "iterations", "max_evaluations": "iterations", "target": "real"},
        project=_search_result),
    Entry("search.CMAES.run_async", _cmaes_run_async, {"backend": "callable", "max_evaluations": "iterations"},
          project=_search_result),
    Entry("search.CMAES.run_async#evaluator", _cmaes_run_async_evaluator, {"evaluator": "evaluator"},
          project=_search_result),
    # evaluate
    Entry("evaluate.open_backend", _open_backend, {"name": "choice", "factory": "callable"}),
    Entry("evaluate.open_backend#process", _process_backend, {"workers": "int", "timeout": "real",
                                                              "max_attempts": "int", "chunk_size": "int"},
          timeout=_MODEL_TIMEOUT),
    # solvers
    Entry("solvers.hessian", _hessian, {"X": "array_f"}),
    Entry("solvers.hessian#torch", _hessian_torch, {"X": "tensor"}),
    Entry("solvers.factor_hessian", _factor_hessian, {"H": "matrix_f", "percdamp": "real", "act_order": "bool",
                                                      "dtype": "dtype_name"}),
    Entry("solvers.prune_counts", _prune_counts, {"rows": "int", "cols": "int", "blocksize": "int",
                                                  "sparsity": "prob"}),
    Entry("solvers.sparsegpt", _sparsegpt, {"W": "matrix_f", "H": "matrix_f", "sparsity": "prob", "blocksize": "int",
                                            "percdamp": "real", "return_mask": "bool"}),
    Entry("solvers.sparsegpt#nm", _sparsegpt_nm, {"prune_n": "int", "prune_m": "int"}),
    Entry("solvers.sparsegpt#torch", _sparsegpt_torch, {"W": "tensor_matrix"}),
    Entry("solvers.sparsegpt_levels", _sparsegpt_levels, {"W": "matrix_f", "H": "matrix_f",
                                                          "sparsities": "float_list", "blocksize": "int",
                                                          "percdamp": "real", "return_mask": "bool"}),
    Entry("solvers.rtn", _rtn, {"W": "matrix_f", "bits": "int", "group_size": "int", "symmetric": "bool"}),
    Entry("solvers.gptq", _gptq, {"W": "matrix_f", "H": "matrix_f", "bits": "int", "group_size": "int",
                                  "symmetric": "bool", "blocksize": "int", "percdamp": "real", "act_order": "bool"}),
    Entry("solvers.gptq_levels", _gptq_levels, {"W": "matrix_f", "H": "matrix_f", "bits": "int_list",
                                                "group_size": "int", "blocksize": "int", "act_order": "bool"}),
    # kl
    Entry("kl.teacher_targets", _teacher_targets(None), {"teacher_logits": "matrix_f"}),
    Entry("kl.teacher_targets#topk", _teacher_targets(3), {"teacher_logits": "matrix_f", "top_k": "int",
                                                           "tail": "bool"}),
    Entry("kl.kl_divergence", _kl(None), {"teacher": "model", "student_logits": "matrix_f", "reduction": "choice"}),
    Entry("kl.kl_divergence#topk", _kl(3), {"student_logits": "matrix_f"}),
    Entry("kl.kl_divergence#batched", _kl(None, lambda: _np().stack([_logits() + 0.1, _logits() - 0.2])),
          {"student_logits": "array_f"}),
    Entry("kl.kl_divergence#torch", _kl(3, lambda: __import__("torch").from_numpy(_logits() + 0.1)),
          {"student_logits": "tensor_matrix"}),
    Entry("kl.kl_divergence_torch", _kl(3, lambda: __import__("torch").from_numpy(_logits() + 0.1), torch=True),
          {"teacher": "model", "student_logits": "tensor_matrix", "reduction": "choice"}),
    Entry("kl.Teacher.save", _teacher_save, {"directory": "path_out_dir"}),
    Entry("kl.Teacher.load", _teacher_load, {"directory": "path_in_dir"}),
    # layers
    Entry("layers.packed_bytes", _packed_bytes, {"out_features": "int", "in_features": "int", "nnz": "int",
                                                 "bits": "int", "group_size": "int", "symmetric": "bool",
                                                 "values_dtype": "choice"}),
    Entry("layers.QuantLinear", _quant_linear_ctor, {
        "in_features": "int", "out_features": "int", "bias": "bool", "bits": "int", "group_size": "int",
        "symmetric": "bool", "device": "choice"}),
    Entry("layers.QuantLinear.from_linear", _quant_from_linear, {"linear": "linear", "bits": "int",
                                                                 "group_size": "int", "symmetric": "bool"},
          project=_state),
    Entry("layers.QuantLinear.from_codes", _quant_from_codes, {
        "codes": "matrix_i", "scales": "matrix_f", "zeros": "matrix_f", "bits": "int", "group_size": "int",
        "bias": "vector_f", "g_idx": "vector_i"}, project=_state),
    Entry("layers.QuantLinear.forward", _quant_forward, {"x": "tensor_matrix"}),
    Entry("layers.SparseLinear", _sparse_linear_ctor, {
        "in_features": "int", "out_features": "int", "bias": "bool", "format": "choice", "bits": "int",
        "group_size": "int", "symmetric": "bool", "values_dtype": "dtype_name"}),
    Entry("layers.SparseLinear.from_linear", _sparse_from_linear, {"linear": "linear", "format": "choice",
                                                                   "bits": "int", "group_size": "int",
                                                                   "values_dtype": "dtype_name"}, project=_state),
    Entry("layers.SparseLinear.from_dense", _sparse_from_dense, {"weight": "tensor_matrix", "bias": "tensor",
                                                                 "format": "choice", "values_dtype": "dtype_name"},
          project=_state),
    Entry("layers.SparseLinear.forward", _sparse_forward, {"x": "tensor_matrix"}),
    Entry("layers.pack_codes", _pack_codes, {"codes": "matrix_i", "bits": "int"}),
    Entry("layers.unpack_codes", _unpack_codes, {"packed": "matrix_i", "bits": "int", "in_features": "int"}),
    Entry("layers.quantize_rtn", _quantize_rtn, {"weight": "matrix_f", "bits": "int", "group_size": "int",
                                                 "symmetric": "bool"}),
    Entry("layers.dequantize", _dequantize, {"packed": "matrix_i", "scales": "matrix_f", "zeros": "matrix_f",
                                             "bits": "int", "group_size": "int", "in_features": "int"}),
    Entry("layers.quant_matmul", _quant_matmul, {"x": "matrix_f", "packed": "matrix_i", "scales": "matrix_f",
                                                 "zeros": "matrix_f", "bits": "int", "group_size": "int",
                                                 "bias": "vector_f", "isa": "choice"}),
    Entry("layers.pack_sparse", _pack_sparse(False), {"weight": "matrix_f", "format": "choice",
                                                      "values_dtype": "dtype_name"}),
    Entry("layers.pack_sparse#quant", _pack_sparse(True), {"bits": "int", "group_size": "int", "symmetric": "bool"}),
    Entry("layers.unpack_sparse", _unpack_sparse, {"buffers": "sparse_buffers", "in_features": "int",
                                                   "format": "choice", "threads": "int"}),
    Entry("layers.sparse_matmul", _sparse_matmul("unstructured"), {
        "x": "matrix_f", "buffers": "sparse_buffers", "in_features": "int", "format": "choice", "bias": "tensor",
        "threads": "int", "max_isa": "int"}),
    Entry("layers.sparse_matmul#24", _sparse_matmul("2:4"), {"x": "matrix_f", "buffers": "sparse_buffers",
                                                             "in_features": "int"}),
    Entry("layers.apply", _apply_spec, {"model": "model", "config": "spec", "values_dtype": "dtype_name"}),
    Entry("layers.apply#deprecated", _apply_deprecated, {"config": "path_in_dir"}),
    Entry("layers.save", _save, {"model": "model", "out_dir": "path_out_dir", "dtype": "dtype_name"},
          project=_no_compare),
    Entry("layers.load", _load, {"path": "path_in_dir"}),
    Entry("layers.linear_layers", _linear_layers, {"model": "model"}),
    Entry("layers.row_bytes", _row_bytes, {"columns": "int", "bits": "int"}),
    Entry("layers.num_groups", _num_groups, {"columns": "int", "group_size": "int"}),
    # compress
    Entry("compress.adapt", _adapt, {"model": "model"}),
    Entry("compress.build_database", _build_db("magnitude"), {
        "adapter": "model", "out_dir": "path_out_dir", "method": "choice", "sparsity": "prob", "n_levels": "int",
        "step": "int", "batch_size": "int", "values_dtype": "dtype_name"}, timeout=_MODEL_TIMEOUT),
    Entry("compress.build_database#sparsegpt", _build_db("sparsegpt"), {
        "tokens": "tokens", "percdamp": "real", "blocksize": "int", "compute_dtype": "choice"},
        timeout=_MODEL_TIMEOUT),
    Entry("compress.build_database#gptq", _build_db("gptq"), {"tokens": "tokens", "bits": "int_list",
                                                              "group_size": "int", "symmetric": "bool"},
          timeout=_MODEL_TIMEOUT),
    Entry("compress.compress", _compress("sparsity"), {
        "model_or_path": "model", "method": "choice", "target": "real", "db_method": "choice", "db_levels": "int",
        "db_step": "int", "n_calib": "int", "n_heldout": "int", "seq_len": "int", "generations": "iterations",
        "offspring": "int", "stages": "stages", "max_switches": "int", "seed": "seed", "batch_size": "int",
        "top_k": "int", "device": "choice"}, project=_compression, timeout=_MODEL_TIMEOUT),
    Entry("compress.compress#run_dir", _compress("run_dir"), {"run_dir": "path_out_dir"}, project=_compression,
          timeout=_MODEL_TIMEOUT),
    Entry("compress.compress#quant", _compress("quant"), {"target": "real", "bits": "int_list", "group_size": "int",
                                                          "symmetric": "bool", "count_metadata": "bool"},
          project=_compression, timeout=_MODEL_TIMEOUT),
    Entry("compress.compress#depth", _compress("depth"), {"target": "real"}, project=_compression,
          timeout=_MODEL_TIMEOUT),
    Entry("compress.compress#tokens", _compress("tokens"), {"calibration": "tokens", "heldout": "tokens",
                                                            "compute_dtype": "choice"},
          project=_compression, timeout=_MODEL_TIMEOUT),
    Entry("compress.compress#path", _compress_path, {"model_or_path": "path_in_dir"}, project=_compression,
          timeout=_MODEL_TIMEOUT),
    Entry("compress.compress#text", _compress_text, {"calib_text": "path_in_file", "tokenizer": "callable"},
          project=_compression, timeout=_MODEL_TIMEOUT),
    Entry("compress.perplexity", _perplexity, {"model": "model", "ids": "tokens", "window": "int",
                                               "max_windows": "int"}),
    Entry("compress.load_model", _load_model, {"name_or_path": "path_in_dir"}),
    Entry("compress.resolve_model", _resolve_model, {"name_or_path": "path_in_dir"}),
    Entry("compress.tokens_from_text", _tokens_from_text, {"tokenizer": "callable", "path": "path_in_file", "n": "int",
                                                           "length": "int", "seed": "seed"}),
    Entry("compress.tokens_from_text#callable", _tokens_from_text_callable, {"tokenizer": "callable"}),
    Entry("compress.sample_sequences", _sample_sequences, {"model": "model", "n": "int", "length": "int",
                                                           "seed": "seed", "temperature": "real",
                                                           "batch_size": "int"}),
    Entry("compress.collect_hessians", _collect_hessians, {"adapter": "model", "tokens": "tokens",
                                                           "batch_size": "int"}),
    Entry("compress.depth_count", _depth_count, {"target": "real", "n_blocks": "int"}),
    Entry("compress.sparsity_ladder", _sparsity_ladder, {"numel": "int", "target": "prob", "n_levels": "int",
                                                         "step": "int"}),
    Entry("compress.LayerDatabase.open", _db_open, {"path": "path_in_dir"}),
    Entry("compress.depth_drops", _depth_drops, {"genome": "vector_i", "n_blocks": "int"}),
    Entry("compress.depth_mutation", _depth_mutation, {"n_blocks": "int", "max_switches": "int"}),
    Entry("compress.shortgpt_genome", _shortgpt_genome, {"scores": "vector_f", "k": "int"}),
    # below, arguments that only evoforge builds (an adapter, layer statistics, a provider, a result) are
    # not fuzzed: the user data they take is
    Entry("compress.shortgpt_scores", _shortgpt_scores, {"tokens": "tokens", "batch_size": "int"}),
    Entry("compress.owl_sparsities", _owl_sparsities, {"target": "real", "lam": "real", "m": "real"}),
    Entry("compress.apply_levels", _apply_levels, {"genome": "vector_i"}),
    Entry("compress.KLFitness", _kl_fitness, {
        "calib_tokens": "tokens", "top_k": "int", "batch_size": "int", "seq_len": "int", "head_tokens": "int",
        "compute_dtype": "choice"}, timeout=_MODEL_TIMEOUT),
    Entry("compress.KLFitness.evaluate", _kl_fitness_evaluate, {"genomes": "matrix_i"}),
    Entry("compress.export", _export, {"out_dir": "path_out_dir"}, project=_no_compare, timeout=_MODEL_TIMEOUT),
    Entry("compress.write_report", _write_report, {"run_dir": "path_out_dir"}, project=_no_compare,
          timeout=_MODEL_TIMEOUT),
    Entry("compress.summary_table", _summary_table, {"markdown": "bool"}, timeout=_MODEL_TIMEOUT),
    Entry("compress.SparsityConfig", _config(
        "SparsityConfig", target=0.5, n_calib=2, n_heldout=2, seq_len=8, generations=1, offspring=4,
        stages=((2, 8), (1, None)), max_switches=2, seed=0, db_method="magnitude", db_levels=1, db_step=64, top_k=8,
        compute_dtype="bfloat16", batch_size=2, export=False, calib_text=None), {
        "target": "real", "n_calib": "int", "n_heldout": "int", "seq_len": "int", "generations": "iterations",
        "offspring": "int", "stages": "stages", "max_switches": "int", "seed": "seed", "db_method": "choice",
        "db_levels": "int", "db_step": "int", "top_k": "int", "compute_dtype": "choice", "batch_size": "int",
        "export": "bool"}),
    Entry("compress.QuantConfig", _config("QuantConfig", target=3.0, bits=(2, 3, 4), group_size=32, symmetric=True,
                                          count_metadata=False), {
        "target": "real", "bits": "int_list", "group_size": "int", "symmetric": "bool", "count_metadata": "bool"}),
    Entry("compress.DepthConfig", _config("DepthConfig", target=1), {"target": "real"}),
    Entry("compress.DepthQuantConfig", _config("DepthQuantConfig", target=3.0, bits=(2, 3, 4)),
          {"target": "real", "bits": "int_list"}),
    Entry("compress.load_config", _load_config, {"run_dir": "path_in_dir"}),
    Entry("compress.FrontConfig", _config("FrontConfig", space="sparsity+quant", objectives=("kl", "bytes"),
                                          sparsities=(0.0, 0.5), bits=(4, 16), group_size=32, pop_size=4, screen=2,
                                          screen_depth=2, latency_tokens=1), {
        "sparsities": "float_list", "bits": "int_list", "group_size": "int", "pop_size": "int", "screen": "int",
        "screen_depth": "int", "latency_tokens": "int", "space": "choice"}),
    Entry("compress.compress#front", _front_compress, {"sparsities": "float_list", "bits": "int_list",
                                                        "pop_size": "int", "screen": "int"},
          project=_no_compare, timeout=_MODEL_TIMEOUT),
    Entry("compress.load_front", _load_front, {"run_dir": "path_in_dir"}, timeout=_MODEL_TIMEOUT),
    Entry("compress.FrontResult.export", _front_export, {"i": "int", "out_dir": "path_out_dir"}, project=_no_compare,
          timeout=_MODEL_TIMEOUT),
    Entry("compress.FrontSpace", _front_space, {"bits": "int_list", "group_size": "int", "symmetric": "bool"},
          timeout=_MODEL_TIMEOUT),
    Entry("compress.SubnetConfig", _config("SubnetConfig", objectives=("kl", "params"), widths=(0.0, 0.5, 1.0),
                                           attention=True, pop_size=4, screen=2, screen_depth=2, latency_tokens=1), {
        "widths": "float_list", "attention": "bool", "pop_size": "int", "screen": "int", "screen_depth": "int",
        "latency_tokens": "int"}),
    Entry("compress.compress#subnet", _subnet_compress, {"widths": "float_list", "pop_size": "int", "screen": "int"},
          project=_no_compare, timeout=_MODEL_TIMEOUT),
    Entry("compress.importance", _subnet_importance, {"tokens": "tokens", "batch_size": "int"},
          timeout=_MODEL_TIMEOUT),
    Entry("compress.Importance", _subnet_importance_json, {"groups": "matrix_f", "neurons": "matrix_f"}),
    Entry("compress.SubnetSpace", _subnet_space, {"widths": "float_list", "attention": "bool"},
          timeout=_MODEL_TIMEOUT),
    Entry("compress.slice_model", _subnet_slice, {"genome": "vector_i"}, timeout=_MODEL_TIMEOUT),
    Entry("compress.save_subnet", _subnet_save, {"out_dir": "path_out_dir"}, project=_no_compare,
          timeout=_MODEL_TIMEOUT),
    Entry("compress.load_subnet", _subnet_load, {"path": "path_in_dir"}, timeout=_MODEL_TIMEOUT),
    Entry("compress.text_ids", _text_ids, {"tokenizer": "callable", "path": "path_in_file"}),
    Entry("compress.compare_perplexity", _compare_perplexity, {"ids": "tokens", "window": "int",
                                                               "max_windows": "int"}, timeout=_MODEL_TIMEOUT),
    Entry("compress.levels_applied", _levels_applied, {"genome": "vector_i"}),
    Entry("compress.pack", _pack, {"model": "model", "result": "path_in_dir", "database": "path_in_dir",
                                   "values_dtype": "dtype_name"}),
    Entry("compress.pack#config_json", _pack_config_json, {"result": "path_in_file"}),
    Entry("compress.Llama2cTokenizer", _llama2c, {"path": "path_in_file"}),
    Entry("compress.load_tokenizer", _load_tokenizer("bin"), {"path": "path_in_file"}),
    Entry("compress.load_tokenizer#hf", _load_tokenizer("hf"), {"path": "path_in_dir"}),
    # merging (the native kernels); out is written in place and returned: its numbers are compared.
    # The parameter buffers (out, base, deltas; a, b) are used in place, never copied (they are a
    # model's memory): a non-contiguous one is refused by contract (ValueError), see _IN_PLACE.
    Entry("merging.merge_deltas", _merge_deltas(), {
        "out": "vector_f", "base": "vector_f", "deltas": "matrix_f", "weights": "vector_f", "densities": "vector_f",
        "trim": "bool", "dare": "bool", "sign_election": "bool", "normalize": "bool", "scale": "real",
        "seed": "seed", "stream": "seed"}, project=_merged_copy,
        skip={"out": _IN_PLACE, "base": _IN_PLACE, "deltas": (*_IN_PLACE, "fortran")}),
    Entry("merging.merge_deltas#ties", _merge_deltas(trim=True), {"densities": "vector_f", "weights": "vector_f"},
          project=_merged_copy),
    Entry("merging.merge_deltas#dare", _merge_deltas(dare=True, sign_election=False, normalize=False),
          {"densities": "vector_f", "seed": "seed", "stream": "seed"}, project=_merged_copy),
    Entry("merging.slerp", _slerp, {"out": "vector_f", "a": "vector_f", "b": "vector_f", "t": "prob",
                                    "eps": "real"}, project=_merged_copy,
          skip={"out": _IN_PLACE, "a": _IN_PLACE, "b": _IN_PLACE}),
    Entry("merging.merge_deltas#thresholds", _merge_deltas_thresholds, {"thresholds": "vector_f"},
          project=_merged_copy),
    Entry("merging.trim_thresholds", _trim_thresholds, {"sorted_magnitudes": "matrix_f", "densities": "vector_f"}),
    Entry("merging.n_keep", _n_keep, {"density": "prob", "n": "int"}),
    Entry("merging.dare_mask", _dare_mask, {"n": "int", "density": "prob", "seed": "seed", "stream": "seed",
                                            "k": "seed", "device": "choice"}),
    # merge (the application)
    Entry("merge.MergeConfig.validate", _merge_config, {
        "method": "choice", "search": "choice", "evaluations": "int", "groups": "int", "combine": "choice",
        "n_search": "int", "n_heldout": "int", "seq_len": "int", "pop_size": "int", "sigma0": "real",
        "weight_range": "float_list", "density_range": "float_list", "asynchronous": "bool", "backend": "choice",
        "workers": "int", "grid_weights": "float_list", "grid_densities": "float_list", "layer_repeats": "int",
        "layer_scales": "float_list", "seed": "seed"}),
    Entry("merge.Recipe", _recipe, {"method": "choice", "weights": "matrix_f", "densities": "matrix_f",
                                    "seed": "seed"}),
    Entry("merge.Merger", _merger, {"model": "model", "experts": "model", "groups": "int"}),
    Entry("merge.Merger#expert", _merger_expert, {"expert": "model"}),
    Entry("merge.Merger.apply", _merger_apply, {"recipe": "any_obj"}, project=_state),
    Entry("merge.Task", _task(), {"name": "choice", "text": "path_in_file", "expert": "model", "fn": "callable"}),
    Entry("merge.Task#fn", _task(fn=lambda m: 0.0), {"fn": "callable"}),
    Entry("merge.merge", _merge, {"base": "model", "models": "model", "tasks": "any_obj", "config": "spec",
                                  "tokenizer": "callable"}, project=_merge_result, timeout=_MODEL_TIMEOUT,
          skip={"config": ("None",)}),  # None: the default config, a full-size run (200 evaluations)
    Entry("merge.merge#model", _merge_one_model, {"model": "model"}, project=_merge_result, timeout=_MODEL_TIMEOUT),
    Entry("merge.merge#path", _merge_path, {"base": "path_in_dir"}, project=_merge_result, timeout=_MODEL_TIMEOUT),
    Entry("merge.finetune", _finetune, {"model": "model", "text": "path_in_file", "tokenizer": "callable",
                                        "steps": "iterations", "lr": "real", "seq_len": "int", "batch_size": "int",
                                        "seed": "seed"}, timeout=_MODEL_TIMEOUT),
    Entry("merge.load_recipe", _load_recipe(False), {"path": "path_in_dir"}),
    Entry("merge.load_recipe#file", _load_recipe(True), {"path": "path_in_file"}),
    # interpreter (the native register-program interpreter)
    Entry("interpreter.run_function", _run_function_scalar, {
        "code": "matrix_i", "imm": "matrix_f", "inputs": "vector_f", **_COUNTS, "dim": "int",
        "input_register": "choice"}),
    Entry("interpreter.run_function#vector", _run_function_vector, {
        "code": "matrix_i", "imm": "matrix_f", "inputs": "matrix_f", **_COUNTS, "dim": "int",
        "input_register": "choice"}),
    Entry("interpreter.run_learner", _run_learner, {
        "setup": "any_obj", "predict": "any_obj", "learn": "any_obj", "train_x": "matrix_f", "train_y": "matrix_f",
        "valid_x": "matrix_f", **_COUNTS, "epochs": "iterations", "dtype": "dtype_name"}),
    Entry("interpreter.run_learner#arrays", _run_learner_arrays, {
        **{f"{n}_code": "matrix_i" for n in ("setup", "predict", "learn")},
        **{f"{n}_imm": "matrix_f" for n in ("setup", "predict", "learn")}}),
    Entry("interpreter.validate_code", _validate_code(True), {"code": "matrix_i", "imm": "matrix_f", **_COUNTS,
                                                              "name": "choice"}),
    Entry("interpreter.canonical_code", _canonical_code(), {"code": "matrix_i", "imm": "vector_f",
                                                            "lengths": "matrix_i", **_COUNTS, "dim": "int"}),
    Entry("interpreter.validate_code#single", _validate_code(False), {"code": "matrix_i", "imm": "vector_f"}),
    # programs (typed register programs: representation, canonical form, printer, packing)
    Entry("programs.Program", _program_new, {"components": "any_obj", "imm": "any_obj", **_COUNTS, "dim": "int"}),
    *[Entry(f"programs.Program.{m}", _program_method(m, learner), {"code": "matrix_i", "imm": "vector_f", **_COUNTS,
                                                                    "dim": "int"})
      for m, learner in (("validate", False), ("canonical", True), ("source", False), ("to_arrays", True))],
    Entry("programs.pack", _programs_pack, {"programs": "any_obj", "component": "choice"}),
    Entry("programs.pack#program", _programs_pack_one, {"program": "any_obj", "component": "choice"}),
    Entry("programs.assemble", _assemble, {"instructions": "any_obj"}),
    Entry("programs.assemble#operands", _assemble_operands, {"op": "choice", "out": "int", "in1": "int",
                                                             "imm": "real"}),
    Entry("programs.format_instruction", _format_instruction, {"ins": "vector_i", "imm": "real", "dim": "int"}),
    Entry("programs.op_id", _op_id, {"name": "choice"}),
    # programs: mutations, random programs, the two-level cache
    Entry("programs.mutate", _mutate, {"program": "any_obj", "seed": "seed", "generation": "seed",
                                       "individual": "seed", "max_length": "int", "ops": "any_obj",
                                       "kinds": "any_obj", "imm_sigma": "real"}),
    Entry("programs.mutate#code", _mutate_code, {"code": "matrix_i", "imm": "vector_f"}),
    Entry("programs.mutate_until_different", _mutate_until_different, {
        "program": "any_obj", "evaluate_outputs": "callable", "seed": "seed", "generation": "seed",
        "individual": "seed", "max_tries": "int", "max_length": "int", "ops": "any_obj", "kinds": "any_obj",
        "imm_sigma": "real", "quantise": "int"}),
    Entry("programs.random_program", _random_program, {"kind": "choice", "length": "int", **_COUNTS, "dim": "int",
                                                       "seed": "seed", "ops": "any_obj"}),
    Entry("programs.ProgramCache", _program_cache_new, {"cache": "any_obj", "probe": "callable", "quantise": "real",
                                                        "namespace": "any_obj"}),
    Entry("programs.ProgramCache.lookup", _program_cache_lookup, {"program": "any_obj"}),
    Entry("programs.ProgramCache.lookup_many", _program_cache_lookup_many, {"programs": "any_obj",
                                                                            "probe_many": "callable"}),
    Entry("programs.ProgramCache.store", _program_cache_store, {"key": "any_obj", "fitness": "fitness",
                                                                "program": "any_obj", "seconds": "real"}),
    Entry("programs.ProgramCache.evaluate", _program_cache_evaluate, {"program": "any_obj", "fn": "callable"}),
    Entry("programs.functional_digest", _functional_digest, {"outputs": "matrix_f", "quantise": "real",
                                                             "namespace": "any_obj"}),
    Entry("programs.structural_digest", _structural_digest, {"program": "any_obj", "namespace": "any_obj"}),
    # programs: the elementary-functions task (AutoNumerics-Zero): error, probes, minimax baseline
    Entry("programs.ulp_error", _ulp_error, {"pred": "matrix_f", "exact": "vector_f"}),
    Entry("programs.probe_points", _probe_points, {"target": "choice", "n": "int", "n_random": "int", "seed": "seed",
                                                   "interval": "float_list"}),
    Entry("programs.minimax_polynomial", _minimax_polynomial, {"target": "choice", "degree": "int",
                                                               "interval": "float_list", "error": "choice"}),
    Entry("programs.horner_program", _horner_program, {"coeffs": "vector_f", "dtype": "dtype_name"}),
    Entry("programs.op_count", _op_count, {"program": "any_obj", "live": "bool"}),
    Entry("programs.minimax_baseline", _minimax_baseline, {"target": "choice", "degrees": "int_list",
                                                           "interval": "float_list", "n": "int"}),
    # programs: the update-rule task (Lion): options, evaluation, probe, runs, problems, report, baselines
    Entry("programs.UpdateRuleTask", _update_rule_task_new, {
        "steps": "int", "lrs": "float_list", "weight_decay": "real", "problems": "any_obj", "n_tasks": "int",
        "n_heldout": "int", "n_classes": "int", "n_train": "int", "n_valid": "int", "batch_size": "int",
        "hidden": "int", "penalty": "real", "seed": "seed", **_COUNTS, "ops": "any_obj"}),
    Entry("programs.UpdateRuleTask.evaluate", _update_rule_method("evaluate"), {"programs": "any_obj",
                                                                                "batch": "any_obj"}),
    Entry("programs.UpdateRuleTask.probe", _update_rule_method("probe"), {"program": "any_obj"}),
    Entry("programs.UpdateRuleTask.train", _update_rule_method("train"), {"program": "any_obj", "lr": "real",
                                                                          "index": "int", "heldout": "bool"}),
    Entry("programs.UpdateRuleTask.problem", _update_rule_method("problem"), {"index": "int", "heldout": "bool"}),
    Entry("programs.UpdateRuleTask.report", _update_rule_method("report"), {"program": "any_obj"}),
    Entry("programs.adamw_program", _adamw_program, {"eps": "real", **_COUNTS}),
    Entry("programs.lion_program", _lion_program, {"beta1": "prob", **_COUNTS}),
    # programs: the searches (issue 19): the elementary-function and learner tasks, the engines, search_programs
    Entry("programs.FunctionTask", _function_task_new, {
        "target": "choice", "interval": "float_list", "n_points": "int", "n_probe": "int", "objectives": "any_obj",
        "n_scalar": "int", "ops": "any_obj", "fit_iterations": "int", "fit_popsize": "int", "fit_points": "int",
        "fit_integers": "bool", "fit_linear": "bool", "fit_polish": "int"}),
    Entry("programs.FunctionTask.outputs", _function_task_method("outputs"), {"programs": "any_obj",
                                                                             "x": "vector_f"}),
    Entry("programs.FunctionTask.errors", _function_task_method("errors"), {"programs": "any_obj"}),
    Entry("programs.FunctionTask.evaluate", _function_task_method("evaluate"), {"programs": "any_obj",
                                                                               "batch": "any_obj"}),
    Entry("programs.FunctionTask.probe", _function_task_method("probe"), {"program": "any_obj"}),
    Entry("programs.FunctionTask.probe_many", _function_task_method("probe_many"), {"programs": "any_obj"}),
    Entry("programs.FunctionTask.tune", _function_task_method("tune"), {"programs": "any_obj", "seed": "seed"}),
    Entry("programs.FunctionTask.report", _function_task_method("report"), {"program": "any_obj",
                                                                           "every_float": "bool"}),
    Entry("programs.FunctionTask.baseline", _function_task_method("baseline"), {"degrees": "int_list"}),
    Entry("programs.taylor_program", _taylor_program, {"target": "choice", "degree": "int", "n_scalar": "int"}),
    Entry("programs.LearnerTask", _learner_task_new, {
        "kind": "choice", "dim": "int", "n_tasks": "int", "n_train": "int", "n_valid": "int", "n_heldout": "int",
        "epochs": "int", "n_scalar": "int", "n_vector": "int", "ops": "any_obj", "source": "choice", "seed": "seed"}),
    Entry("programs.LearnerTask#classification", _learner_task_classification, {"kind": "choice",
                                                                                "source": "choice"}),
    Entry("programs.LearnerTask.predictions", _learner_task_method("predictions"), {"programs": "any_obj",
                                                                                    "data": "any_obj"}),
    Entry("programs.LearnerTask.predictions#arrays", _learner_task_arrays("predictions"), {
        "train_x": "array_f", "train_y": "matrix_f", "valid_x": "array_f"}),
    Entry("programs.LearnerTask.losses", _learner_task_method("losses"), {"programs": "any_obj", "data": "any_obj"}),
    Entry("programs.LearnerTask.losses#valid_y", _learner_task_arrays("losses"), {"valid_y": "matrix_f"}),
    Entry("programs.LearnerTask.evaluate", _learner_task_method("evaluate"), {"programs": "any_obj",
                                                                             "batch": "any_obj"}),
    Entry("programs.LearnerTask.probe", _learner_task_method("probe"), {"program": "any_obj"}),
    Entry("programs.LearnerTask.probe_many", _learner_task_method("probe_many"), {"programs": "any_obj"}),
    Entry("programs.LearnerTask.report", _learner_task_method("report"), {"program": "any_obj"}),
    Entry("programs.linear_regression_program", _linear_regression_program, {"dim": "int", "lr": "real",
                                                                              "n_scalar": "int", "n_vector": "int"}),
    Entry("programs.RegularizedEvolution", _program_engine("regularized"), {
        "task": "any_obj", "population_size": "int", "tournament_size": "int", "batch_size": "int",
        "restart_stall": "int", "initial": "any_obj", "max_length": "int", "kinds": "any_obj", "imm_sigma": "real", "cache": "any_obj",
        "functional_cache": "bool", "quantise": "real", "seed": "seed", "run_dir": "path_out_dir"},
        project=_search_result),
    Entry("programs.ProgramNSGA2", _program_engine("nsga2"), {
        "task": "any_obj", "population_size": "int", "n_offspring": "int", "ref_point": "vector_f",
        "resolution": "vector_f", "initial": "any_obj", "max_length": "int", "kinds": "any_obj", "imm_sigma": "real",
        "cache": "any_obj", "functional_cache": "bool", "quantise": "real", "seed": "seed",
        "run_dir": "path_out_dir"}, project=_search_result),
    Entry("programs.RegularizedEvolution.run", _program_engine_run("regularized"), {
        "evaluator": "evaluator", "generations": "iterations", "max_evaluations": "iterations", "target": "real"},
        project=_search_result),
    Entry("programs.ProgramNSGA2.run", _program_engine_run("nsga2"), {
        "evaluator": "evaluator", "generations": "iterations", "max_evaluations": "iterations"},
        project=_search_result),
    Entry("programs.RegularizedEvolution.ask", _program_engine_ask("regularized"), {}),
    Entry("programs.ProgramNSGA2.ask", _program_engine_ask("nsga2"), {}),
    Entry("programs.RegularizedEvolution.tell", _program_engine_tell("regularized"), {"fitness": "vector_f"}),
    Entry("programs.ProgramNSGA2.tell", _program_engine_tell("nsga2"), {"fitness": "matrix_f"}),
    Entry("programs.search_programs", _search_programs, {
        "name": "choice", "engine": "choice", "generations": "iterations", "seed": "seed", "initial": "any_obj",
        "backend": "choice", "task_options": "any_obj", "progress": "bool", "population_size": "int",
        "tournament_size": "int", "batch_size": "int", "max_length": "int"}, project=_program_run),
    Entry("programs.search_programs#run_dir", _search_programs_run_dir, {"run_dir": "path_out_dir"},
          project=_program_run),
    Entry("programs.search_programs#exp2", _search_programs_exp2, {"initial": "any_obj", "task_options": "any_obj",
                                                                   "population_size": "int"},
          project=_program_run),
    # plot
    Entry("plot.convergence", _convergence, {"run": "path_in_dir", "key": "choice", "x": "choice",
                                             "save": "path_out_file"}, project=_no_compare),
    Entry("plot.load_history", _load_history, {"run": "path_in_dir"}),
    Entry("plot.layer_levels", _layer_levels, {"values": "vector_f", "reference": "real", "save": "path_out_file"},
          project=_no_compare),
    Entry("plot.pareto_front", _pareto_front, {"F": "matrix_f", "ranks": "vector_i", "max_fronts": "int",
                                               "save": "path_out_file"}, project=_no_compare),
    # neuro (issue 20)
    Entry("neuro.MLPPolicy", _neuro_mlp, {"obs_dim": "int", "n_outputs": "int", "hidden": "int_list",
                                          "discrete": "bool"}),
    Entry("neuro.MLPPolicy.from_spaces", _neuro_from_spaces, {"observation_space": "any_obj",
                                                              "action_space": "any_obj", "hidden": "int_list"}),
    Entry("neuro.MLPPolicy.forward", _neuro_forward, {"params": "matrix_f", "obs": "array_f"}),
    Entry("neuro.MLPPolicy.act", _neuro_act, {"params": "matrix_f", "obs": "array_f"}),
    Entry("neuro.make_env", _neuro_make_env, {"env": "choice", "env_kwargs": "any_obj"}),
    Entry("neuro.rollout", _neuro_rollout, {"params": "matrix_f", "seeds": "int_list", "max_steps": "int",
                                            "stats": "bool"}),
    Entry("neuro.episode_seeds", _neuro_episode_seeds, {"context_seed": "seed", "episodes": "int"}),
    Entry("neuro.evaluate_policy", _neuro_evaluate_policy, {"env": "choice", "params": "vector_f", "episodes": "int",
                                                            "seed": "seed", "max_steps": "int"}),
    Entry("neuro.ObsNorm", _neuro_obs_norm, {"obs_dim": "int", "clip": "real", "eps": "real"}),
    Entry("neuro.ObsNorm.update", _neuro_obs_norm_update, {"counts": "vector_f", "sums": "matrix_f",
                                                           "sumsq": "matrix_f"}),
    Entry("neuro.encode", _neuro_encode, {"seed_lists": "seed_lists"}),
    Entry("neuro.decode", _neuro_decode, {"genomes": "matrix_i"}),
    Entry("neuro.derive_seed", _neuro_derive_seed, {"seed": "seed", "purpose": "choice", "generation": "int"}),
    Entry("neuro.ParamCache", _neuro_param_cache, {"policy": "any_obj", "sigma": "real", "max_bytes": "int"}),
    Entry("neuro.ParamCache.params", _neuro_param_cache_params, {"genomes": "matrix_i"}),
    Entry("neuro.payload_bytes", _neuro_payload_bytes, {"genomes": "matrix_i", "n_params": "int"}),
    Entry("neuro.PolicyEvaluator", _neuro_evaluator, {
        "env": "choice", "hidden": "int_list", "encoding": "choice", "sigma": "real", "episodes": "int",
        "max_steps": "int", "seed": "seed", "cache_bytes": "int", "env_kwargs": "any_obj"}),
    Entry("neuro.PolicyEvaluator.evaluate", _neuro_evaluator_method("evaluate"), {"genomes": "matrix_i"}),
    Entry("neuro.PolicyEvaluator.set_context", _neuro_evaluator_method("set_context"), {"context": "any_obj"}),
    Entry("neuro.DeepGA", _neuro_engine("ga"), {
        "policy": "any_obj", "pop_size": "int", "truncation": "int", "sigma": "real", "episodes": "int",
        "elite_candidates": "int", "elite_episodes": "int", "obs_norm": "bool", "obs_clip": "real", "seed": "seed",
        "run_dir": "path_out_dir"}, project=_search_result),
    Entry("neuro.OpenAIES", _neuro_engine("es"), {
        "policy": "any_obj", "pop_size": "int", "sigma": "real", "lr": "real", "beta1": "prob", "beta2": "prob",
        "adam_eps": "real", "weight_decay": "real", "episodes": "int", "eval_episodes": "int", "obs_norm": "bool",
        "obs_clip": "real", "init": "vector_f", "seed": "seed", "run_dir": "path_out_dir"}, project=_search_result),
    Entry("neuro.DeepGA.run", _neuro_engine_run("ga"), {"evaluator": "evaluator", "generations": "iterations",
                                                        "target": "real"}, project=_search_result),
    Entry("neuro.OpenAIES.run", _neuro_engine_run("es"), {"evaluator": "evaluator", "generations": "iterations",
                                                          "target": "real"}, project=_search_result),
    Entry("neuro.centered_ranks", _neuro_centered_ranks, {"returns": "vector_f"}),
    Entry("neuro.evolve", _neuro_evolve, {
        "env": "choice", "algo": "choice", "pop": "int", "generations": "iterations", "seed": "seed",
        "run_dir": "path_out_dir", "hidden": "int_list", "episodes": "int", "sigma": "real", "max_steps": "int",
        "target_return": "real", "backend": "choice"}, project=_neuro_result),
    Entry("neuro.ConvPolicy", _neuro_conv, {"observation_space": "any_obj", "action_space": "any_obj",
                                            "hidden": "int_list", "channels": "int", "kernel": "int", "stride": "int"}),
    Entry("neuro.ConvPolicy.forward", _neuro_conv_forward, {"params": "matrix_f", "obs": "array_f"}),
    Entry("neuro.save_policy", _neuro_save_policy, {"path": "path_out_file", "policy": "any_obj",
                                                    "params": "vector_f", "meta": "any_obj"}, project=_no_compare),
    Entry("neuro.load_policy", _neuro_load_policy, {"path": "path_in_file"}, timeout=30),
    Entry("neuro.load_curve", _neuro_load_curve, {"run": "path_in_file"}, timeout=30),
    Entry("neuro.plot_curve", _neuro_plot_curve, {"run": "path_in_file", "save": "path_out_file", "title": "choice",
                                                  "references": "any_obj"}, project=_no_compare, timeout=30),
    Entry("neuro.write_run", _neuro_write_run, {"result": "any_obj", "run_dir": "path_out_dir", "settings": "any_obj",
                                                "eval_episodes": "int", "eval_seed": "seed", "references": "any_obj"},
          project=_no_compare, timeout=30),
    Entry("neuro.play", _neuro_play, {"run": "path_in_dir", "episodes": "int", "video": "path_out_file",
                                      "seed": "seed", "max_steps": "int", "max_frames": "int"}, timeout=30),
]

# Public names that are not walked, and why (the coverage test requires every other public name of
# the modules' __all__ to start an entry's name).
NOT_FUZZED: dict[str, str] = {
    **{f"evoforge.{n}": "a subpackage (walked through its own entries)" for n in (
        "pareto", "hashing", "cache", "random", "variation", "mutation", "crossover", "selection", "deepga",
        "evaluate", "search", "solvers", "kl", "layers", "compress", "plot")},
    "evoforge.__version__": "a constant",
    "evoforge.info": "takes no arguments",
    "evoforge.has_cuda": "takes no arguments",
    "evoforge.get_num_threads": "takes no arguments",
    **{f"{m}.{n}": "an exception class" for m, n in (
        ("evoforge", "EvoforgeError"), ("evoforge", "CudaUnavailableError"), ("evoforge", "ConfigError"),
        ("cache", "CacheError"), ("cache", "CacheClosedError"), ("cache", "CorruptCacheError"),
        ("compress", "CorruptDatabaseError"), ("compress", "DatabaseMismatchError"),
        ("compress", "UnsupportedModelError"), ("evaluate", "EvaluationError"))},
    **{f"{m}.{n}": "a constant" for m, n in (
        ("hashing", "DIGEST_SIZE"), ("random", "STREAMS"), ("layers", "BITS"), ("layers", "GROUP_SIZES"),
        ("compress", "QUANT_METHODS"), ("compress", "SPARSITY_METHODS"), ("compress", "SUPPORTED_ARCHITECTURES"),
        ("evaluate", "BACKENDS"))},
    **{f"{m}.{n}": "a result or record type that evoforge builds (not built from user input)" for m, n in (
        ("cache", "Entry"), ("cache", "CacheStats"), ("search", "Batch"), ("search", "Result"),
        ("solvers", "HessianFactor"), ("solvers", "QuantizedLayer"), ("compress", "CompressionResult"),
        ("compress", "LayerStats"), ("compress", "LayerRef"), ("compress", "SubBlock"),
        ("compress", "BlockContext"), ("evaluate", "Task"), ("evaluate", "Replica"))},
    **{f"{m}.{n}": "an abstract base class or protocol" for m, n in (
        ("search", "Engine"), ("search", "Evaluator"), ("search", "Mutation"), ("search", "Crossover"),
        ("compress", "LevelProvider"), ("compress", "ModelAdapter"), ("evaluate", "Backend"),
        ("evaluate", "EvaluatorFactory"), ("evaluate", "WorkerPool"))},
    "kl.write_teacher_meta": "an internal step of Teacher.save (walked there)",
    "layers.packed_layers": "a read-only listing of a model's packed modules",
    "compress.DepthFitness": "KLFitness with a depth provider (KLFitness is walked)",
    "compress.JointFitness": "KLFitness with a joint provider (KLFitness is walked)",
    "compress.JointLevels": "built by compress(method='depth+quant') from a database",
    "compress.JointSwitch": "a LevelSwitch variant built by compress(method='depth+quant')",
    "compress.QuantLevels": "built by provider_for from a database (walked through KLFitness / apply_levels)",
    "compress.SparsityLevels": "built by provider_for from a database (walked through KLFitness / apply_levels)",
    "compress.provider_for": "takes an open LayerDatabase (LayerDatabase.open is walked)",
    "compress.CompressConfig": "the shared base of the method configs (each walked)",
    "compress.register": "a decorator registering an extension recipe for a config class (mutates a registry)",
    "compress.owl_genome": "takes a provider and layer statistics built by evoforge (owl_sparsities is walked)",
    "evaluate.InProcess": "built by open_backend('inprocess') (walked)",
    "evaluate.ProcessPool": "built by open_backend('process') (walked)",
    "evaluate.RayBackend": "needs a Ray cluster",
    "merge.METHODS": "a constant (the merge methods and their kernel options)",
    "merge.MergeResult": "a result class, returned by merge (walked there)",
    "interpreter.OP_TABLE": "a constant (the native op table)",
    "programs.FUNCTION": "a constant (the component names of a function program)",
    "programs.LEARNER": "a constant (the component names of a learner program)",
    "programs.OPS": "a constant (the op table as OpSpec records)",
    "programs.OP_IDS": "a constant (op ids by name; op_id is walked)",
    "programs.OpSpec": "a record type of the op table that evoforge builds (not built from user input)",
    "programs.MUTATION_KINDS": "a constant (the mutation kinds; mutate's kinds is walked)",
    "programs.DEFAULT_QUANTISE": "a constant (the default quantisation of probe outputs)",
    "programs.ProgramKey": "a record type that ProgramCache.lookup builds (store's key is walked)",
    "programs.TARGETS": "a constant (the elementary-function targets; each entry's target is walked)",
    "programs.FEATURES": "a constant (the update-rule features, in the order of v0)",
    "programs.RULE_OPS": "a constant (the default ops of update rules; UpdateRuleTask's ops is walked)",
    "programs.PROBLEMS": "a constant (the update-rule problems; UpdateRuleTask's problems is walked)",
    "programs.ARITHMETIC": "a constant (the default ops of FunctionTask; its ops is walked)",
    "programs.WORST": "a constant (the ulp objective of a NaN or infinite output)",
    "programs.LEARNER_OPS": "a constant (the default ops of LearnerTask; its ops is walked)",
    "programs.TASKS": "a constant (search_programs's tasks by name; its name is walked)",
    "programs.ProgramRun": "a result type that search_programs builds (walked there)",
    "programs.ProgramTask": "a protocol (FunctionTask, LearnerTask and UpdateRuleTask are walked, and the engines' "
                            "task)",
    "neuro.SUPPORTED_ACTION_SPACES": "a constant (the action spaces a policy drives)",
    "neuro.ENCODINGS": "a constant (the genome encodings of PolicyEvaluator, walked there)",
    "neuro.ALGORITHMS": "a constant (evolve's algo names, walked there)",
    "neuro.RolloutResult": "a result type that rollout builds (walked there)",
    "neuro.EvolveResult": "a result type that evolve builds (walked there)",
    "neuro.NeuroEngine": "an abstract base class (DeepGA and OpenAIES are walked)",
    "neuro.SavedPolicy": "a record that load_policy builds (walked there)",
}

# ---- the command line -------------------------------------------------------------------------
# Each case: (id, argv with placeholders, what it needs). Placeholders: {model} a saved tiny Llama
# directory (no tokenizer), {text} a text file, {empty} an empty file, {blank} whitespace only,
# {garbage} garbage bytes, {afile} an existing regular file, {dir} an empty directory, {missing} a
# path that does not exist, {garbagedir} a directory of garbage files, {new} a fresh path.
# Every case must exit 2 with exactly one stderr line "evoforge...error...", no traceback, fast,
# without loading the model (the CLI checks every argument first).

# small settings, so that a bad value the CLI accepts costs seconds, not minutes (a later option wins)
_FAST = ["--n-calib", "2", "--n-heldout", "2", "--seq-len", "8", "--generations", "1", "--offspring", "2",
         "--db-levels", "1", "--bits", "2..4", "--max-windows", "1", "--window", "16", "--no-export",
         "--run-dir", "{new}"]
_FAST_DB = ["--tokens", "16", "--seq-len", "8"]
_C = ["compress", "--model", "{model}", "--target", "0.5", "--quiet"]
_B = ["compress", "build-db", "--model", "{model}", "--method", "gptq", "--out", "{new}", "--quiet"]
_E = ["eval", "ppl", "--model", "{model}", "--text", "{text}"]
# merge: small settings (a later option wins), so that an accepted bad value costs seconds
# programs: a search of milliseconds (linear: 4 learners, 2 children per generation, 1 generation)
_PG = ["programs", "linear", "--generations", "1", "--population", "4", "--batch", "2", "--tournament", "2"]
_MG = ["merge", "--base", "{model}", "--models", "{model}", "{model}", "--task", "t={text}", "--out", "{new}",
       "--evaluations", "2", "--seq-len", "8", "--n-search", "1", "--n-heldout", "1", "--pop-size", "2"]

_NE = ["neuro", "--env", "CartPole-v1", "--algo", "ga", "--pop", "8", "--generations", "1", "--quiet", "--out",
       "{new}"]

CLI_CASES: list[tuple[str, list[str]]] = [
    # top level
    ("no-command", []),
    ("unknown-command", ["bogus"]),
    ("unknown-option", ["--nope"]),
    ("info-extra-arg", ["info", "extra"]),
    ("info-unknown-option", ["info", "--nope"]),
    ("bench-unknown", ["bench", "no-such-bench"]),
    ("bench-no-name", ["bench"]),
    ("bench-pareto-unknown-option", ["bench", "pareto", "--nope"]),
    ("bench-pareto-bad-int", ["bench", "pareto", "--repeats", "x"]),
    ("bench-pareto-bad-kind", ["bench", "pareto", "--kinds", "nope"]),
    # compress: missing / unknown
    ("compress-no-args", ["compress"]),
    ("compress-no-target", ["compress", "--model", "{model}"]),
    ("compress-no-model", ["compress", "--target", "0.5"]),
    ("compress-device-tpu", [*_C, "--device", "tpu"]),
    ("compress-device-cuda-99", [*_C, "--device", "cuda:99"]),
    ("compress-unknown-option", [*_C, "--nope"]),
    ("compress-bad-method", [*_C, "--method", "nope"]),
    ("compress-target-nan", ["compress", "--model", "{model}", "--target", "nan", "--quiet"]),
    ("compress-target-inf", ["compress", "--model", "{model}", "--target", "inf", "--quiet"]),
    ("compress-target-text", ["compress", "--model", "{model}", "--target", "half", "--quiet"]),
    ("compress-target-1.5", ["compress", "--model", "{model}", "--target", "1.5", "--quiet"]),
    ("compress-target-0", ["compress", "--model", "{model}", "--target", "0", "--quiet"]),
    ("compress-quant-target-9", ["compress", "--model", "{model}", "--method", "quant", "--target", "9", "--quiet"]),
    ("compress-depth-target-0", ["compress", "--model", "{model}", "--method", "depth", "--target", "0", "--quiet"]),
    ("compress-depth-target-99", ["compress", "--model", "{model}", "--method", "depth", "--target", "99",
                                  "--quiet"]),
    ("compress-depth-target-1.5", ["compress", "--model", "{model}", "--method", "depth", "--target", "1.5",
                                   "--quiet"]),
    # compress: numbers
    ("compress-window-0", [*_C, "--window", "0"]),
    ("compress-window--5", [*_C, "--window", "-5"]),
    ("compress-window-1", [*_C, "--window", "1"]),
    ("compress-window-2**62", [*_C, "--eval-text", "{text}", "--window", str(2**62)]),
    ("compress-max-windows-0", [*_C, "--max-windows", "0"]),
    ("compress-generations--1", [*_C, "--generations", "-1"]),
    ("compress-generations-2.5", [*_C, "--generations", "2.5"]),
    ("compress-offspring-0", [*_C, "--offspring", "0"]),
    ("compress-offspring-2**62", [*_C, "--offspring", str(2**62)]),
    ("compress-n-calib-0", [*_C, "--n-calib", "0"]),
    ("compress-n-calib-2**62", [*_C, "--n-calib", str(2**62)]),
    ("compress-n-heldout-0", [*_C, "--n-heldout", "0"]),
    ("compress-seq-len-1", [*_C, "--seq-len", "1"]),
    ("compress-seq-len-2**62", [*_C, "--seq-len", str(2**62)]),
    ("compress-seed--1", [*_C, "--seed", "-1"]),
    ("compress-seed-2**64", [*_C, "--seed", str(2**64)]),
    ("compress-workers-0", [*_C, "--workers", "0"]),
    ("compress-timeout-0", [*_C, "--timeout", "0"]),
    ("compress-timeout-nan", [*_C, "--timeout", "nan"]),
    ("compress-db-levels--1", [*_C, "--db-levels", "-1"]),
    ("compress-db-levels-2**62", [*_C, "--db-levels", str(2**62)]),
    ("compress-db-step-0", [*_C, "--db-step", "0"]),
    ("compress-group-size-0", [*_C, "--group-size", "0"]),
    ("compress-bits-1..9", ["compress", "--model", "{model}", "--method", "quant", "--target", "3", "--bits",
                            "1..9", "--quiet"]),
    ("compress-bits-8..2", ["compress", "--model", "{model}", "--method", "quant", "--target", "3", "--bits",
                            "8..2", "--quiet"]),
    ("compress-bits-text", ["compress", "--model", "{model}", "--method", "quant", "--target", "3", "--bits",
                            "a..b", "--quiet"]),
    ("compress-stages-neg-tokens", [*_C, "--stages", "4:-5,1:all"]),
    ("compress-stages-zero", [*_C, "--stages", "0:8,1:all"]),
    ("compress-stages-increasing", [*_C, "--stages", "2:8,4:all"]),
    ("compress-stages-not-1", [*_C, "--stages", "4:8,2:all"]),
    ("compress-stages-garbage", [*_C, "--stages", "4"]),
    ("compress-stages-empty", [*_C, "--stages", ""]),
    ("compress-stages-gt-offspring", [*_C, "--stages", "16:8,1:all"]),
    # compress --method subnet
    ("compress-subnet-widths-unsorted", ["compress", "--model", "{model}", "--method", "subnet", "--widths",
                                         "0.5,0.25,1", "--quiet"]),
    ("compress-subnet-widths-no-1", ["compress", "--model", "{model}", "--method", "subnet", "--widths", "0,0.5",
                                     "--quiet"]),
    ("compress-subnet-widths-text", ["compress", "--model", "{model}", "--method", "subnet", "--widths", "a,b",
                                     "--quiet"]),
    ("compress-subnet-objective-bytes", ["compress", "--model", "{model}", "--method", "subnet", "--objectives",
                                         "kl,bytes", "--quiet"]),
    ("compress-subnet-objective-cosine", ["compress", "--model", "{model}", "--method", "subnet", "--objectives",
                                          "cosine,params", "--quiet"]),
    ("compress-subnet-target-1", ["compress", "--model", "{model}", "--method", "subnet", "--target", "1",
                                  "--quiet"]),
    ("compress-subnet-pooling-bad", ["compress", "--model", "{model}", "--method", "subnet", "--pooling", "sum",
                                     "--quiet"]),
    ("compress-subnet-screen-depth-0", ["compress", "--model", "{model}", "--method", "subnet", "--screen", "2",
                                        "--screen-depth", "0", "--quiet"]),
    ("compress-front-screen-depth-huge", ["compress", "--model", "{model}", "--method", "front", "--screen", "262144",
                                          "--screen-depth", "64", "--quiet"]),
    # compress: files and directories
    ("compress-run-dir-file", [*_C, "--run-dir", "{afile}"]),
    ("compress-run-dir-under-file", [*_C, "--run-dir", "{afile}/sub"]),
    ("compress-json-dir", [*_C, "--json", "{dir}"]),
    ("compress-json-under-file", [*_C, "--json", "{afile}/out.json"]),
    ("compress-calib-text-missing", [*_C, "--calib-text", "{missing}"]),
    ("compress-calib-text-empty", [*_C, "--calib-text", "{empty}"]),
    ("compress-calib-text-blank", [*_C, "--calib-text", "{blank}"]),
    ("compress-calib-text-dir", [*_C, "--calib-text", "{dir}"]),
    ("compress-eval-text-empty", [*_C, "--eval-text", "{empty}"]),
    ("compress-eval-text-missing", [*_C, "--eval-text", "{missing}"]),
    ("compress-db-missing", [*_C, "--db", "{missing}"]),
    ("compress-db-emptydir", [*_C, "--db", "{dir}"]),
    ("compress-db-file", [*_C, "--db", "{afile}"]),
    ("compress-db-garbagedir", [*_C, "--db", "{garbagedir}"]),
    ("compress-model-missing", ["compress", "--model", "{missing}", "--target", "0.5", "--quiet"]),
    ("compress-model-file", ["compress", "--model", "{afile}", "--target", "0.5", "--quiet"]),
    ("compress-model-emptydir", ["compress", "--model", "{dir}", "--target", "0.5", "--quiet"]),
    ("compress-model-garbagedir", ["compress", "--model", "{garbagedir}", "--target", "0.5", "--quiet"]),
    ("compress-count-metadata-sparsity", [*_C, "--count-metadata"]),
    ("compress-db-method-mismatch", [*_C, "--db-method", "gptq"]),
    ("compress-address-without-ray", [*_C, "--address", "auto"]),
    ("compress-bad-backend", [*_C, "--backend", "nope"]),
    ("compress-bad-compute-dtype", [*_C, "--compute-dtype", "float8"]),
    # build-db
    ("build-db-no-args", ["compress", "build-db"]),
    ("build-db-no-out", ["compress", "build-db", "--model", "{model}", "--method", "rtn"]),
    ("build-db-bad-method", ["compress", "build-db", "--model", "{model}", "--method", "nope", "--out", "{new}"]),
    ("build-db-out-file", ["compress", "build-db", "--model", "{model}", "--method", "rtn", "--out", "{afile}",
                           "--quiet"]),
    ("build-db-out-under-file", ["compress", "build-db", "--model", "{model}", "--method", "rtn", "--out",
                                 "{afile}/sub", "--quiet"]),
    ("build-db-tokens-0", [*_B, "--tokens", "0"]),
    ("build-db-tokens-2**62", [*_B, "--tokens", str(2**62)]),
    ("build-db-seq-len-1", [*_B, "--seq-len", "1"]),
    ("build-db-seq-len-2**62", [*_B, "--seq-len", str(2**62)]),
    ("build-db-levels--1", [*_B, "--levels", "-1"]),
    ("build-db-levels-2**62", ["compress", "build-db", "--model", "{model}", "--method", "magnitude", "--out",
                               "{new}", "--levels", str(2**62), "--quiet"]),
    ("build-db-step-0", [*_B, "--step", "0"]),
    ("build-db-model-samples-0", [*_B, "--model-samples", "0"]),
    ("build-db-model-samples-2**62", [*_B, "--model-samples", str(2**62)]),
    ("build-db-group-size--2", [*_B, "--group-size", "-2"]),
    ("build-db-text-empty", [*_B, "--text", "{empty}"]),
    ("build-db-text-missing", [*_B, "--text", "{missing}"]),
    ("build-db-target-1.5", ["compress", "build-db", "--model", "{model}", "--method", "magnitude", "--out", "{new}",
                             "--target", "1.5", "--quiet"]),
    ("build-db-target-nan", ["compress", "build-db", "--model", "{model}", "--method", "magnitude", "--out",
                             "{new}", "--target", "nan", "--quiet"]),
    ("build-db-bits-1..4", ["compress", "build-db", "--model", "{model}", "--method", "rtn", "--out", "{new}",
                            "--bits", "1..4", "--quiet"]),
    ("build-db-model-missing", ["compress", "build-db", "--model", "{missing}", "--method", "rtn", "--out", "{new}",
                                "--quiet"]),
    ("build-db-unknown-option", [*_B, "--nope"]),
    # eval
    ("eval-no-args", ["eval"]),
    ("eval-bad-what", ["eval", "nope", "--model", "{model}", "--text", "{text}"]),
    ("eval-no-text", ["eval", "ppl", "--model", "{model}"]),
    ("eval-window-0", [*_E, "--window", "0"]),
    ("eval-window-1", [*_E, "--window", "1"]),
    ("eval-window-text", [*_E, "--window", "x"]),
    ("eval-max-windows-0", [*_E, "--max-windows", "0"]),
    ("eval-text-missing", ["eval", "ppl", "--model", "{model}", "--text", "{missing}"]),
    ("eval-text-empty", ["eval", "ppl", "--model", "{model}", "--text", "{empty}"]),
    ("eval-text-blank", ["eval", "ppl", "--model", "{model}", "--text", "{blank}"]),
    ("eval-text-dir", ["eval", "ppl", "--model", "{model}", "--text", "{dir}"]),
    ("eval-model-missing", ["eval", "ppl", "--model", "{missing}", "--text", "{text}"]),
    ("eval-model-garbagedir", ["eval", "ppl", "--model", "{garbagedir}", "--text", "{text}"]),
    ("eval-unknown-option", [*_E, "--nope"]),
    # dashboard (refused before anything is served or written)
    ("dashboard-no-run-dir", ["dashboard"]),
    ("dashboard-missing", ["dashboard", "{missing}"]),
    ("dashboard-not-a-dir", ["dashboard", "{afile}"]),
    ("dashboard-port-x", ["dashboard", "{dir}", "--port", "x"]),
    ("dashboard-port-70000", ["dashboard", "{dir}", "--port", "70000"]),
    ("dashboard-port-negative", ["dashboard", "{dir}", "--port", "-1"]),
    ("dashboard-stale-after-nan", ["dashboard", "{dir}", "--stale-after", "nan"]),
    ("dashboard-stale-after-0", ["dashboard", "{dir}", "--stale-after", "0"]),
    ("dashboard-export-a-dir", ["dashboard", "{dir}", "--export", "{dir}"]),
    ("dashboard-export-no-parent", ["dashboard", "{dir}", "--export", "{missing}/report.html"]),
    ("dashboard-unknown-option", ["dashboard", "{dir}", "--nope"]),
    # merge (every argument, files included, is checked before any model loads)
    ("merge-no-args", ["merge"]),
    ("merge-no-base", ["merge", "--models", "{model}", "{model}", "--task", "t={text}", "--out", "{new}"]),
    ("merge-no-models", ["merge", "--base", "{model}", "--task", "t={text}", "--out", "{new}"]),
    ("merge-no-task", ["merge", "--base", "{model}", "--models", "{model}", "{model}", "--out", "{new}"]),
    ("merge-no-out", ["merge", "--base", "{model}", "--models", "{model}", "{model}", "--task", "t={text}"]),
    ("merge-task-no-equals", [*_MG, "--task", "{text}"]),
    ("merge-task-no-name", [*_MG, "--task", "={text}"]),
    ("merge-task-no-file", [*_MG, "--task", "t="]),
    ("merge-task-missing", [*_MG, "--task", "t={missing}"]),
    ("merge-task-dir", [*_MG, "--task", "t={dir}"]),
    ("merge-bad-method", [*_MG, "--method", "bogus"]),
    ("merge-bad-search", [*_MG, "--search", "bogus"]),
    ("merge-bad-combine", [*_MG, "--combine", "bogus"]),
    ("merge-bad-backend", [*_MG, "--backend", "bogus"]),
    ("merge-evaluations--1", [*_MG, "--evaluations", "-1"]),
    ("merge-evaluations-text", [*_MG, "--evaluations", "x"]),
    ("merge-groups-0", [*_MG, "--groups", "0"]),
    ("merge-pop-size-1", [*_MG, "--pop-size", "1"]),
    ("merge-n-search-0", [*_MG, "--n-search", "0"]),
    ("merge-n-heldout-0", [*_MG, "--n-heldout", "0"]),
    ("merge-workers-0", [*_MG, "--workers", "0"]),
    ("merge-seed--1", [*_MG, "--seed", "-1"]),
    ("merge-seed-2**64", [*_MG, "--seed", str(2**64)]),
    ("merge-pop-size-2**62", [*_MG, "--pop-size", str(2**62)]),
    ("merge-async-inprocess", [*_MG, "--async"]),
    ("merge-async-nsga2", [*_MG, "--async", "--backend", "process", "--search", "nsga2"]),
    ("merge-base-missing", [*_MG, "--base", "{missing}"]),
    ("merge-model-missing", [*_MG, "--models", "{model}", "{missing}"]),
    ("merge-out-file", [*_MG, "--out", "{afile}"]),
    ("merge-tokenizer-missing", [*_MG, "--tokenizer", "{missing}"]),
    ("merge-seq-len-1", [*_MG, "--seq-len", "1"]),
    ("merge-sigma0-0", [*_MG, "--sigma0", "0"]),
    ("merge-sigma0-nan", [*_MG, "--sigma0", "nan"]),
    ("merge-sigma0-2", [*_MG, "--sigma0", "2"]),
    ("merge-unknown-option", [*_MG, "--nope"]),
    # neuro (issue 20): every argument, the environment id included, is checked before any rollout
    ("neuro-no-args", ["neuro"]),
    ("neuro-no-out", ["neuro", "--env", "CartPole-v1", "--algo", "ga", "--pop", "4", "--generations", "1"]),
    ("neuro-unknown-env", [*_NE, "--env", "CartPol-v1"]),
    ("neuro-unknown-namespace", [*_NE, "--env", "NoSuch/Env-v0"]),
    ("neuro-empty-env", [*_NE, "--env", ""]),
    ("neuro-pop-1", [*_NE, "--pop", "1"]),
    ("neuro-pop-text", [*_NE, "--pop", "x"]),
    ("neuro-pop-2**62", [*_NE, "--pop", str(2**62)]),
    ("neuro-es-odd-pop", [*_NE, "--algo", "es", "--pop", "5"]),
    ("neuro-bad-algo", [*_NE, "--algo", "cma"]),
    ("neuro-generations--1", [*_NE, "--generations", "-1"]),
    ("neuro-episodes-0", [*_NE, "--episodes", "0"]),
    ("neuro-hidden-0", [*_NE, "--hidden", "0"]),
    ("neuro-hidden-text", [*_NE, "--hidden", "a,b"]),
    ("neuro-hidden-huge", [*_NE, "--hidden", str(2**21)]),
    ("neuro-sigma-0", [*_NE, "--sigma", "0"]),
    ("neuro-sigma-nan", [*_NE, "--sigma", "nan"]),
    ("neuro-lr-with-ga", [*_NE, "--lr", "0.1"]),
    ("neuro-truncation-gt-pop", [*_NE, "--truncation", "9"]),
    ("neuro-seed--1", [*_NE, "--seed", "-1"]),
    ("neuro-seed-2**64", [*_NE, "--seed", str(2**64)]),
    ("neuro-workers-inprocess", [*_NE, "--workers", "2"]),
    ("neuro-workers-0", [*_NE, "--backend", "process", "--workers", "0"]),
    ("neuro-bad-backend", [*_NE, "--backend", "nope"]),
    ("neuro-env-kwarg-garbage", [*_NE, "--env-kwarg", "novalue"]),
    ("neuro-env-kwarg-unknown", [*_NE, "--env-kwarg", "nope=1"]),
    ("neuro-conv-no-image", [*_NE, "--policy", "conv"]),
    ("neuro-target-nan", [*_NE, "--target-return", "nan"]),
    ("neuro-out-file", [*_NE, "--out", "{afile}"]),
    ("neuro-out-under-file", [*_NE, "--out", "{afile}/sub"]),
    ("neuro-out-garbagedir", [*_NE, "--out", "{garbagedir}"]),
    ("neuro-unknown-option", [*_NE, "--nope"]),
    ("neuro-play-no-run", ["neuro", "play"]),
    ("neuro-play-missing", ["neuro", "play", "{missing}"]),
    ("neuro-play-emptydir", ["neuro", "play", "{dir}"]),
    ("neuro-play-garbagedir", ["neuro", "play", "{garbagedir}"]),
    ("neuro-play-file", ["neuro", "play", "{afile}"]),
    ("neuro-play-garbage", ["neuro", "play", "{garbage}"]),
    ("neuro-play-episodes-0", ["neuro", "play", "{dir}", "--episodes", "0"]),
    ("neuro-play-video-avi", ["neuro", "play", "{dir}", "--video", "{new}.avi"]),
    ("neuro-play-video-dir", ["neuro", "play", "{dir}", "--video", "{dir}"]),
    ("neuro-play-video-no-parent", ["neuro", "play", "{dir}", "--video", "{missing}/v.gif"]),
    ("neuro-play-unknown-option", ["neuro", "play", "{dir}", "--nope"]),
    # programs (every option is checked before the search starts; the small settings come first)
    ("programs-no-name", ["programs"]),
    ("programs-unknown-name", ["programs", "nope", "--generations", "1"]),
    ("programs-unknown-option", [*_PG, "--nope"]),
    ("programs-generations--1", [*_PG, "--generations", "-1"]),
    ("programs-generations-text", [*_PG, "--generations", "x"]),
    ("programs-population-1", [*_PG, "--population", "1"]),
    ("programs-population-2**62", [*_PG, "--population", str(2**62)]),
    ("programs-tournament-0", [*_PG, "--tournament", "0"]),
    ("programs-tournament-gt-population", [*_PG, "--tournament", "5"]),
    ("programs-batch-gt-population", [*_PG, "--batch", "5"]),
    ("programs-max-length-0", [*_PG, "--max-length", "0"]),
    ("programs-restart-stall-0", [*_PG, "--restart-stall", "0"]),
    ("programs-restart-stall-nsga2", ["programs", "linear", "--generations", "1", "--population", "4",
                                      "--engine", "nsga2", "--restart-stall", "2"]),
    ("programs-imm-sigma-0", [*_PG, "--imm-sigma", "0"]),
    ("programs-imm-sigma-nan", [*_PG, "--imm-sigma", "nan"]),
    ("programs-fit-iterations-linear", [*_PG, "--fit-iterations", "2"]),
    ("programs-fit-iterations--1", ["programs", "exp2", "--generations", "1", "--population", "4",
                                    "--fit-iterations", "-1"]),
    ("programs-tournament-nsga2", ["programs", "exp2", "--generations", "1", "--population", "4",
                                   "--fit-iterations", "2", "--engine", "nsga2", "--tournament", "2"]),
    ("programs-batch-nsga2", ["programs", "linear", "--generations", "1", "--population", "4", "--engine", "nsga2",
                              "--batch", "2"]),
    ("programs-bad-engine", [*_PG, "--engine", "bogus"]),
    ("programs-bad-start", [*_PG, "--start", "bogus"]),
    ("programs-bad-backend", [*_PG, "--backend", "bogus"]),
    ("programs-workers-0", [*_PG, "--workers", "0"]),
    ("programs-seed--1", [*_PG, "--seed", "-1"]),
    ("programs-out-file", [*_PG, "--out", "{afile}"]),
    ("programs-out-under-file", [*_PG, "--out", "{afile}/sub"]),
    ("programs-out-garbagedir", [*_PG, "--out", "{garbagedir}"]),
]



def _with_fast(argv: list[str]) -> list[str]:
    """The small settings go first: the case's own options come later and win."""
    if argv[:2] == ["compress", "build-db"]:
        return argv[:2] + _FAST_DB + argv[2:]
    if argv[:1] == ["compress"]:
        return argv[:1] + _FAST + argv[1:]
    return argv


CLI_CASES = [(name, _with_fast(argv)) for name, argv in CLI_CASES]

# cases also run as a real `python -m evoforge.cli` process (the same rule, plus the exit status of
# the interpreter)
CLI_SUBPROCESS = ["unknown-command", "compress-run-dir-file", "eval-window-1"]

# the argv of CLI cases that may load the model before refusing (the argument needs the model)
CLI_NEEDS_MODEL: set[str] = {"compress-window-2**62", "compress-seq-len-2**62", "build-db-seq-len-2**62",
                              "compress-depth-target-99"}
