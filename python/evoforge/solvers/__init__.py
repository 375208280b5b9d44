"""Layer-wise solvers for post-training compression: SparseGPT pruning and GPTQ quantisation.

Symbols: a linear layer's weight ``W`` has shape (R, C) = (out_features, in_features), as in
``torch.nn.Linear.weight``; ``H`` is the (C, C) Hessian of the layer-wise loss
``||W X - W' X||^2``, i.e. ``H = 2 X^T X / n`` over n calibration inputs X of shape (n, C)
(see :func:`hessian`). Both solvers minimise that loss one column at a time, feeding the error
of every compressed column back into the columns not yet compressed (Frantar & Alistarh 2023,
"SparseGPT"; Frantar et al. 2022, "GPTQ"). The column loops run in C++ (cpp/solvers.cpp) on
``evoforge.get_num_threads()`` threads with the GIL released; the output does not depend on the
thread count.

Preparing H (shared by all solvers, see :func:`factor_hessian`): H is taken in float64; an input
whose diagonal entry is 0 ("dead", never active in the calibration data) gets ``H[i, i] = 1``
and its column of W is set to 0; then ``percdamp * mean(diag(H))`` is added to the diagonal
(dampening); finally U, the upper Cholesky factor of ``H^-1`` (``H^-1 = U^T U``), is computed
in W's dtype (torch's LAPACK when torch is installed, else numpy's). One
:class:`HessianFactor` can serve several layers that share their inputs (q/k/v projections)
and every level of a ladder.

Arrays: numpy arrays or CPU torch tensors; torch in gives torch out (sharing no memory with the
input). The computation runs in W's dtype (float32 or float64). Inputs are never modified.

Layout: ``_hessian`` (:func:`hessian`, :func:`factor_hessian`), ``_sparsegpt``, ``_rtn`` (and
:class:`QuantizedLayer`), ``_gptq``; ``_torch``: the same three solvers in torch on the weight's
device (a GPU; ``sparsegpt_levels_torch``, ``gptq_levels_torch``, ``rtn_torch``, used by the layer
database build, not public); this package is the public face of the others.
"""

from __future__ import annotations

from ._gptq import gptq, gptq_levels
from ._hessian import HessianFactor, factor_hessian, hessian
from ._rtn import QuantizedLayer, rtn
from ._sparsegpt import prune_counts, sparsegpt, sparsegpt_levels

__all__ = [
    "HessianFactor",
    "QuantizedLayer",
    "factor_hessian",
    "gptq",
    "gptq_levels",
    "hessian",
    "prune_counts",
    "rtn",
    "sparsegpt",
    "sparsegpt_levels",
]
