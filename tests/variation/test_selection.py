"""evoforge.selection.tournament against its documented draws and the theoretical distribution."""

from __future__ import annotations

import numpy as np
import pytest

import evoforge
from evoforge import selection
from evoforge import random as er


def contestants(N, n_select, k, seed, generation=0, offset=0):
    """The k contestants of each selection: 64-bit words (w0 << 32 | w1) * N >> 64 from block 0 on."""
    nblk = (2 * k + 3) // 4
    rows = []
    for s in range(n_select):
        ctr = np.array([[b, offset + s, generation, er.STREAMS["tournament"] << 24] for b in range(nblk)],
                       dtype=np.uint32)
        w = er.philox4x32_10(ctr, np.tile(np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint32), (nblk, 1))).ravel()
        x = [(int(w[2 * t]) << 32 | int(w[2 * t + 1])) * N >> 64 for t in range(k)]
        rows.append(x)
    return np.array(rows)


def test_winner_is_best_contestant():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 20, 50).astype(np.float64)  # ties
    sel = selection.tournament(f, 300, tournament_size=3, seed=5, generation=1, individual_offset=7)
    c = contestants(50, 300, 3, 5, 1, 7)
    best = [min(row, key=lambda i: (f[i], i)) for row in c]
    np.testing.assert_array_equal(sel, best)


def test_binary_tournament_distribution():
    N, n = 10, 200_000
    sel = selection.tournament(np.arange(N, dtype=np.float64), n, seed=1)
    freq = np.bincount(sel, minlength=N) / n
    i = np.arange(N)
    theory = ((N - i) ** 2 - (N - i - 1) ** 2) / N**2
    np.testing.assert_allclose(freq, theory, atol=0.005)


def test_lexicographic_threads_and_splits():
    rng = np.random.default_rng(1)
    keys = np.stack([rng.integers(0, 3, 100), -rng.random(100)], axis=1)  # (rank, -crowding)
    try:
        evoforge.set_num_threads(1)
        a = selection.tournament(keys, 9000, seed=2)
        evoforge.set_num_threads(2)
        b = selection.tournament(keys, 9000, seed=2)
    finally:
        evoforge.set_num_threads(0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(selection.tournament(keys, 4000, seed=2, individual_offset=5000), a[5000:])
    c = contestants(100, 50, 2, 2)
    for s in range(50):
        i, j = c[s]
        assert a[s] == min((i, j), key=lambda t: (keys[t, 0], keys[t, 1], t))


@pytest.mark.parametrize("args,kw,exc", [
    ((np.array([1.0, np.nan]), 2), {}, ValueError),
    ((np.zeros(0), 2), {}, ValueError),
    ((np.zeros(3), -1), {}, ValueError),
    ((np.zeros(3), 2), {"tournament_size": 0}, ValueError),
    ((np.array(["a", "b"]), 2), {}, TypeError),
    ((np.zeros(3), 2.0), {}, TypeError),
])
def test_bad_input(args, kw, exc):
    with pytest.raises(exc):
        selection.tournament(*args, seed=0, **kw)
