"""Input generators shared by the tests: value sets rich in ties and edge cases, and hypothesis
strategies (defined only when hypothesis is installed: the GPU machine may lack it)."""

from __future__ import annotations

import numpy as np

INF = float("inf")
# Few distinct values make ties and duplicates common; -0.0 next to 0.0 and +-inf test the edges.
TIE_VALUES = [-INF, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, INF]
CV_VALUES = [-1.0, -0.0, 0.0, 0.25, 1.0, 3.0, INF]

try:
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays
except ImportError:  # pragma: no cover
    st = None

if st is not None:

    @st.composite
    def objective_sets(draw, max_n=48, max_m=6):
        """[n, m] float32/float64 arrays, either from TIE_VALUES or continuous values."""
        n = draw(st.integers(0, max_n))
        m = draw(st.integers(1, max_m))
        dtype = draw(st.sampled_from([np.float32, np.float64]))
        if draw(st.booleans()):
            elements = st.sampled_from(TIE_VALUES)
        else:
            elements = st.floats(-1e6, 1e6, allow_nan=False, width=32)
        return draw(arrays(dtype, (n, m), elements=elements))
