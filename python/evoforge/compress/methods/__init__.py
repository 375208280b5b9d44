"""One recipe per compression method, registered by config type (:mod:`evoforge.compress.registry`):
database -> provider -> initial genome -> fitness -> search -> baselines -> result.

========================  ==========================  ============================================
config                    recipe                      what is searched
========================  ==========================  ============================================
``SparsityConfig``        :mod:`.sparsity`            per-layer sparsity (uniform and OWL baselines)
``QuantConfig``           :mod:`.quant`               per-layer bit-widths (uniform baseline)
``DepthConfig``           :mod:`.depth`               dropped sub-blocks (spread and ShortGPT)
``DepthQuantConfig``      :mod:`.depth_quant`         dropped sub-blocks and bit-widths together
``FrontConfig``           :mod:`.front`               the front of KL, bytes, latency (NSGA-II)
========================  ==========================  ============================================

Importing this package registers them; a new method is a module here, imported below.
"""

from __future__ import annotations

from . import depth, depth_quant, front, quant, sparsity, subnet

__all__ = ["depth", "depth_quant", "front", "quant", "sparsity"]
