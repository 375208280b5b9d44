"""In-model calibration of the latency table: the zero-cost stand-ins leave the model untouched and
give each layer's output shape; calibration fills the table for every level and returns one finite,
non-negative factor per level and a positive fixed part (timings themselves are not asserted)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evoforge import ConfigError
from evoforge.compress import latency
from evoforge.compress.latency_calibration import _Zeros, calibrate_levels, zero_linear_seconds
from evoforge.layers import linear_layers
from models import tiny_model


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_zero_linear_model_runs_and_leaves_the_model(arch, tmp_path, monkeypatch):
    monkeypatch.setenv("EVOFORGE_CACHE_DIR", str(tmp_path))
    m = tiny_model(arch)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert zero_linear_seconds(m, tokens=1, repeats=2) > 0
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    for mod in linear_layers(m).values():  # the stand-in answers what the layer answers, in shape
        in_f = mod.in_features if hasattr(mod, "in_features") else mod.nx
        x = torch.randn(2, 3, in_f)
        out_f = getattr(mod, "out_features", None) or mod.nf
        with torch.no_grad():
            assert _Zeros(out_f)(x).shape == mod(x).shape


def _dense_and_4bit(tmp_path, monkeypatch):
    """A tiny Llama, its two levels (every layer dense; every layer 4-bit) and a fresh table."""
    monkeypatch.setenv("EVOFORGE_CACHE_DIR", str(tmp_path))
    m = tiny_model("llama")
    shapes = {n: tuple(mod.weight.shape) for n, mod in linear_layers(m).items()}
    levels = [{n: (o, i, None) for n, (o, i) in shapes.items()},
              {n: (o, i, {"bits": 4, "group_size": 0}) for n, (o, i) in shapes.items()}]
    return m, levels, latency.LatencyTable.load()


def test_factors_from_their_parts(tmp_path, monkeypatch):
    m, levels, table = _dense_and_4bit(tmp_path, monkeypatch)
    factors, fixed = calibrate_levels(m, levels, table, tokens=1, repeats=2)
    assert factors.shape == (2,) and np.all(np.isfinite(factors)) and np.all(factors >= 0) and fixed > 0
    for lv in levels:  # every entry of every level is in the table now
        assert all(v in table for v in [(o, i, s, 1) for o, i, s in lv.values()])
    many, fixed2 = calibrate_levels(m, levels, table, tokens=(1, 4), repeats=2)  # packed once, timed twice
    assert many.shape == (2, 2) and fixed2.shape == (2,) and np.all(np.isfinite(many))
    with pytest.raises(ConfigError, match="at least one level"):
        calibrate_levels(m, [], table)


def test_a_level_timed_no_slower_than_the_fixed_part_keeps_the_floor(tmp_path, monkeypatch):
    """Under load a level can time as fast as the model without its layers: its factor is the floor,
    not 0 (which would make the latency objective blind to it); a level timed slower gets
    (took - fixed) / table sum."""
    from evoforge.compress import latency_calibration as lc

    m, levels, table = _dense_and_4bit(tmp_path, monkeypatch)
    table.measure([v for lv in levels for v in lv.values()], tokens=[1])
    totals = [table.total(list(lv.values()), 1) for lv in levels]
    took = iter([1.0, 0.9, 1.0 + 2.0 * totals[1]])  # fixed, dense level (faster: noise), packed level
    monkeypatch.setattr(lc, "_timed", lambda model, tokens, repeats: next(took))
    factors, fixed = calibrate_levels(m, levels, table, tokens=1, repeats=1)
    assert fixed == 1.0
    assert factors[0] == lc.MIN_FACTOR
    assert factors[1] == pytest.approx(2.0)
