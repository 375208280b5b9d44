"""evoforge.compress's configs and recipes: one dataclass per method with one default per knob
(shared with the database builder and the command line), the JSON round trip through the run
directory (old settings files still resume), validation before any model loads, recipes found by
config type, and ``compress(model, SparsityConfig(...))`` equal to the keyword form."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from conftest import STORIES
import models
from evoforge import ConfigError
from evoforge.compress import (
    CompressConfig,
    DepthConfig,
    DepthQuantConfig,
    FrontConfig,
    QuantConfig,
    SparsityConfig,
    build_database,
    compress,
    load_config,
)
from evoforge.compress.config import CONFIGS
from evoforge.compress.registry import recipe_for, register
from evoforge.compress.settings import config_for

EXAMPLES = [
    SparsityConfig(target=0.6, db_method="magnitude", db_levels=2, db_step=128, stages=[(2, 64), (1, None)]),
    QuantConfig(target=3.5, bits=[2, 3, 4], group_size=32, symmetric=True, count_metadata=True, top_k=64,
                backend="process", backend_options={"workers": 2}),
    DepthConfig(target=2, generations=3, compute_dtype=torch.bfloat16),
    DepthQuantConfig(target=3, db_method="rtn", run_dir="runs/x", export=False, progress=True),
    FrontConfig(space="sparsity", objectives=("kl", "bytes", "latency"), sparsities=(0.0, 0.5), screen=4),
]


@pytest.mark.parametrize("cfg", EXAMPLES, ids=[c.method for c in EXAMPLES])
def test_json_round_trip(cfg):
    d = cfg.to_json()
    assert d["method"] == cfg.method and json.loads(json.dumps(d)) == d  # plain JSON
    assert CompressConfig.from_json(d) == cfg
    assert type(cfg).from_json(json.dumps(d)) == cfg
    assert dataclasses.replace(cfg) == cfg


def test_one_default_per_knob():
    """The compress defaults users saw (group size 64, asymmetric grids, 2..8 bits, 4 levels) are the
    configs' fields, and build_database's defaults are those fields."""
    assert QuantConfig(target=3).group_size == DepthQuantConfig(target=3).group_size == 64
    assert QuantConfig(target=3).symmetric is False and QuantConfig(target=3).bits == (2, 3, 4, 5, 6, 7, 8)
    b = inspect.signature(build_database).parameters
    assert b["group_size"].default == QuantConfig.group_size
    assert b["symmetric"].default is QuantConfig.symmetric
    assert tuple(b["bits"].default) == QuantConfig.bits
    assert b["n_levels"].default == SparsityConfig.db_levels and b["sparsity"].default == SparsityConfig.target
    assert set(CONFIGS) == {"sparsity", "quant", "depth", "depth+quant", "front", "subnet"}


def test_cli_defaults_are_the_config_fields(tmp_path):
    """An option not given on the command line takes the config field's default."""
    from evoforge import cli

    parser = argparse.ArgumentParser()
    cli._add_compress(parser.add_subparsers())
    args = parser.parse_args(["compress", "--model", str(STORIES), "--target", "0.5", "--quiet",
                              "--run-dir", str(tmp_path / "r")])
    cfg = cli._compress_config(args)
    assert cfg == SparsityConfig(target=0.5, run_dir=str(tmp_path / "r"))
    args = parser.parse_args(["compress", "--model", str(STORIES), "--method", "quant", "--target", "3",
                              "--group-size", "32", "--symmetric", "--bits", "2..4", "--seq-len", "32",
                              "--run-dir", str(tmp_path / "r")])
    cfg = cli._compress_config(args)
    assert cfg == QuantConfig(target=3.0, group_size=32, symmetric=True, bits=(2, 3, 4), seq_len=32,
                              run_dir=str(tmp_path / "r"), progress=True)
    args = parser.parse_args(["compress", "--model", str(STORIES), "--method", "front", "--objectives", "kl,latency",
                              "--sparsities", "0,0.5", "--bits", "4,16", "--pop-size", "8", "--screen", "3",
                              "--run-dir", str(tmp_path / "r")])
    cfg = cli._compress_config(args)
    assert cfg == FrontConfig(objectives=("kl", "latency"), sparsities=(0.0, 0.5), bits=(4, 16), pop_size=8, screen=3,
                              run_dir=str(tmp_path / "r"), progress=True)


def test_keyword_knobs():
    assert config_for(None, {"target": 0.5}) == SparsityConfig(target=0.5)
    # a knob of another method is ignored, as compress() always did; count_metadata is refused
    assert config_for("depth", {"target": 2, "bits": (2, 3), "db_method": "rtn"}) == DepthConfig(target=2)
    with pytest.raises(ConfigError, match="count_metadata"):
        config_for("sparsity", {"target": 0.5, "count_metadata": True})
    with pytest.raises(TypeError, match="unexpected keyword argument 'bitz'"):
        config_for("quant", {"target": 3, "bitz": 4})
    with pytest.raises(ConfigError, match="method must be one of"):
        config_for("pruning", {"target": 0.5})
    with pytest.raises(ConfigError, match="needs a target"):
        config_for("quant", {})
    with pytest.raises(TypeError):
        CompressConfig(target=0.5)  # the base is not a method


@pytest.mark.parametrize("cfg, match", [
    (SparsityConfig(target=1.5), "sparsity target must lie in"),
    (QuantConfig(target=9), "quant target must lie in"),
    (DepthConfig(target=float("nan")), "finite"),
    (SparsityConfig(target=0.5, db_method="gptq"), "db_method gptq does not fit method sparsity"),
    (QuantConfig(target=3, bits=(2, 9)), "bits must be in"),
    (QuantConfig(target=3, group_size=0), "group_size"),
    (SparsityConfig(target=0.5, offspring=0), "offspring must be a positive int"),
    (SparsityConfig(target=0.5, generations=-1), "generations must be an int >= 0"),
    (SparsityConfig(target=0.5, stages=((16, 8), (1, None))), "first stage keeps 16 survivors, more than offspring"),
    (SparsityConfig(target=0.5, stages=((2, 8), (2, None))), "last stage must keep 1"),
    (SparsityConfig(target=0.5, top_k=0), "top_k"),
    (SparsityConfig(target=0.5, compute_dtype="int8"), "compute_dtype"),
    (SparsityConfig(target=0.5, backend_options={"workers": 2}), "need a backend"),
    # absurd sizes are refused before anything is allocated
    (SparsityConfig(target=0.5, offspring=2**62), "offspring must be at most"),
    (SparsityConfig(target=0.5, n_calib=2**62), "at most 2\\*\\*31 tokens"),
    (SparsityConfig(target=0.5, db_levels=2**62), "db_levels must be an int in"),
    (SparsityConfig(target=0.5, seed=2**64), "seed must be an int in"),
    (DepthConfig(target=1.5), "must be an integer"),
])
def test_validate(cfg, match):
    with pytest.raises(ConfigError, match=match):
        cfg.validate()


def test_validate_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="calib_text: calibration text file not found"):
        SparsityConfig(calib_text=tmp_path / "missing.txt").validate()
    (tmp_path / "blank.txt").write_text(" \n")
    with pytest.raises(ConfigError, match="is empty"):
        SparsityConfig(calib_text=tmp_path / "blank.txt").validate()
    with pytest.raises(FileNotFoundError, match="layer database directory not found"):
        QuantConfig(target=3, database=tmp_path / "nodb").validate()
    # the command line names its options
    spell = {"db_method": "--db-method", "method": "--method"}.get
    with pytest.raises(ConfigError, match="--db-method gptq does not fit --method sparsity"):
        SparsityConfig(db_method="gptq").validate(spell=lambda f: spell(f, f))


def test_token_checks_before_any_work():
    with pytest.raises(ConfigError, match="seq_len 128 is longer than the model's 64 positions"):
        compress(models.tiny_llama(), SparsityConfig())
    with pytest.raises(TypeError, match="calibration must be a torch.LongTensor"):
        compress(models.tiny_llama(), SparsityConfig(seq_len=8), calibration=[[1, 2]])
    with pytest.raises(ConfigError, match="heldout must be a non-empty integer tensor"):
        compress(models.tiny_llama(), SparsityConfig(seq_len=8), heldout=torch.zeros(2, 8))


def test_recipes_by_config_type(tmp_path):
    from evoforge.compress import methods

    for cls, mod in ((SparsityConfig, methods.sparsity), (QuantConfig, methods.quant), (DepthConfig, methods.depth),
                     (DepthQuantConfig, methods.depth_quant)):
        assert recipe_for(cls(target=0.5 if cls is SparsityConfig else 3)).__module__ == mod.__name__
    with pytest.raises(ConfigError, match="already has the recipe"):
        register(SparsityConfig)(lambda config, run: None)

    # a new method is a config class and a registered recipe; compress() finds it by type
    @dataclasses.dataclass(kw_only=True)
    class ToyConfig(SparsityConfig):
        method = "toy"

    seen = {}

    @register(ToyConfig)
    def toy(config, run):
        seen["run"] = run
        return "toy result"

    assert compress(models.tiny_llama(), ToyConfig(n_calib=2, n_heldout=2, seq_len=8)) == "toy result"
    assert seen["run"].calibration.shape == (2, 8) and seen["run"].run_dir is None


TINY = {"target": 0.5, "db_method": "magnitude", "db_levels": 2, "db_step": 512, "n_calib": 4, "n_heldout": 4,
        "seq_len": 16, "offspring": 4, "generations": 2, "seed": 3}


def test_config_and_keyword_forms_agree(stories, tmp_path):
    """compress(model, SparsityConfig(...)) and compress(model, method="sparsity", ...) give the same
    genome for the same seed; the run directory keeps the config, and a resumed run rebuilds it."""
    rd = tmp_path / "run"
    by_config = compress(stories, SparsityConfig(**TINY, run_dir=rd, export=False))
    by_keywords = compress(stories, method="sparsity", export_model=False, **TINY)
    assert by_config.genome == by_keywords.genome and by_config.kl_search == by_keywords.kl_search
    assert by_config.levels == by_keywords.levels and by_config.budget == by_keywords.budget
    cfg = load_config(rd)
    assert cfg == SparsityConfig(**TINY, run_dir=str(rd), export=False)
    again = compress(stories, dataclasses.replace(cfg, generations=3))  # resumes: one more generation
    assert again.generations == 3 and load_config(rd).generations == 3
    with pytest.raises(ConfigError, match=r"other settings \(seed\)"):
        compress(stories, dataclasses.replace(cfg, seed=4))
    with pytest.raises(TypeError, match="not both"):
        compress(stories, cfg, target=0.5)


def test_old_settings_file_resumes(stories, tmp_path):
    """A run directory of the previous release (compress.json without the config) resumes, and its
    config is rebuilt from the settings it recorded."""
    rd = tmp_path / "run"
    first = compress(stories, SparsityConfig(**TINY, run_dir=rd, export=False))
    s = json.loads((rd / "compress.json").read_text())
    old = {k: v for k, v in s.items() if k != "config"}
    assert set(old) == {"method", "target", "db_method", "db_levels", "db_step", "bits", "group_size", "symmetric",
                        "count_metadata", "n_calib", "n_heldout", "seq_len", "offspring", "stages", "max_switches",
                        "seed", "model_fingerprint", "database", "calib_text"}
    (rd / "compress.json").write_text(json.dumps(old))
    cfg = load_config(rd)
    assert cfg == SparsityConfig(**{**TINY, "generations": cfg.generations}, run_dir=None)
    again = compress(stories, dataclasses.replace(cfg, run_dir=str(rd), generations=2, export=False))
    assert again.genome == first.genome
    assert "config" in json.loads((rd / "compress.json").read_text())
