"""evoforge.kl against torch in float64 (full vocabulary and the top-K definition)."""

from __future__ import annotations

import evoforge
import numpy as np
import pytest
from evoforge import kl
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Teacher weights are float16 (relative error <= 2^-11, renormalised: <= ~2^-10): per token the
# error is bounded by 2^-10 * sum_i p_i |log p_i - log q_i|, plus float32 rounding of the student.
WEIGHT_EPS = 2.0**-10


def ref_full(t: torch.Tensor, s: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(KL per token, its error scale sum p |log p - log q|) in float64."""
    lp = F.log_softmax(t.double(), -1)
    lq = F.log_softmax(s.double(), -1)
    p = lp.exp()
    if (
        torch.isinf(t).any() or torch.isinf(s).any()
    ):  # kl_div gives 0 * (-inf - -inf) = NaN
        d = torch.where(p > 0, lp - lq, torch.zeros_like(lp))
        kl_tok = (p * d).sum(-1)
    else:
        d = lp - lq
        kl_tok = F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)
    return kl_tok.numpy(), (p * d.abs()).sum(-1).numpy()


def ref_topk(t: torch.Tensor, s: torch.Tensor, k: int) -> np.ndarray:
    """EvoPress top-K: the teacher's K largest logits; both renormalised over those K indices."""
    idx = torch.from_numpy(
        np.argsort(-t.double().numpy(), axis=-1, kind="stable")[:, :k].copy()
    )
    tg, sg = t.double().gather(-1, idx), s.double().gather(-1, idx)
    lp, lq = F.log_softmax(tg, -1), F.log_softmax(sg, -1)
    if (
        torch.isinf(tg).any() or torch.isinf(sg).any()
    ):  # 0 * log 0 = 0 where the teacher masks
        return (
            (lp.exp() * torch.where(lp.exp() > 0, lp - lq, torch.zeros_like(lp)))
            .sum(-1)
            .numpy()
        )
    return F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).numpy()


def pair(T, V, scale=3.0, noise=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(T, V, generator=g) * scale
    return t, t + noise * torch.randn(T, V, generator=g)


def assert_full_close(got, t, s, rel=1e-6):
    want, scale = ref_full(t, s)
    finite_max = lambda x: (
        torch.where(torch.isfinite(x), x.double().abs(), 0.0).amax(-1).numpy()
    )
    mag = finite_max(s) + finite_max(t)
    tol = WEIGHT_EPS * scale + rel * (1 + mag) + 1e-9
    assert np.all(np.abs(got - want) <= tol), (np.abs(got - want) / tol).max()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 64),
    st.integers(1, 5000),
    st.floats(0.1, 20.0),
    st.integers(0, 2**31 - 1),
)
def test_full_matches_torch(T, V, scale, seed):
    t, s = pair(T, V, scale=scale, seed=seed)
    te = kl.teacher_targets(t)
    got = kl.kl_divergence(te, s, reduction="none")
    assert got.shape == (T,) and got.dtype == np.float64
    assert_full_close(got, t, s)
    assert kl.kl_divergence(te, s) == pytest.approx(got.mean(), rel=1e-12, abs=0)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 64), st.integers(1, 5000), st.data())
def test_topk_matches_torch(T, V, data):
    k = data.draw(st.integers(1, min(V, 300)))
    t, s = pair(T, V, seed=data.draw(st.integers(0, 2**31 - 1)))
    te = kl.teacher_targets(t, top_k=k, tail=False)
    assert te.indices.shape == (T, k) and te.indices.dtype == np.int32 and te.top_k == k
    got = kl.kl_divergence(te, s, reduction="none")
    np.testing.assert_allclose(got, ref_topk(t, s, k), rtol=1e-6, atol=1e-7)


def test_batchmean_and_self_kl():
    t, s = pair(16, 3000)
    te = kl.teacher_targets(t)
    want = F.kl_div(
        F.log_softmax(s.double(), -1),
        F.log_softmax(t.double(), -1),
        log_target=True,
        reduction="batchmean",
    ).item()
    assert kl.kl_divergence(te, s) == pytest.approx(want, rel=1e-3)
    np.testing.assert_allclose(
        kl.kl_divergence(te, t, reduction="none"), 0.0, atol=1e-6
    )
    np.testing.assert_allclose(
        kl.kl_divergence(kl.teacher_targets(t, top_k=50, tail=False), t, reduction="none"),
        0.0,
        atol=1e-9,
    )


def test_scalar_path_agrees():
    t, s = pair(8, 4099)
    te = kl.teacher_targets(t)
    a = kl.kl_divergence(te, s, reduction="none")
    b = kl.kl_divergence(te, s, reduction="none", _force_scalar=True)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    w_scalar = evoforge._native.core.kl_teacher_full_f32(t.numpy(), force_scalar=True)[
        0
    ]
    diff = np.abs(
        w_scalar.view(np.float16).astype(np.float64) - te.weights.astype(np.float64)
    )
    assert np.all(diff <= 2.0**-10 * np.abs(te.weights.astype(np.float64)) + 2.0**-24)


def test_batch_of_candidates():
    t, _ = pair(12, 777)
    g = torch.Generator().manual_seed(5)
    S = t + torch.randn(3, 12, 777, generator=g)
    for te in (kl.teacher_targets(t), kl.teacher_targets(t, top_k=40, tail=False)):
        got = kl.kl_divergence(te, S)
        assert got.shape == (3,)
        each = np.array([kl.kl_divergence(te, S[b]) for b in range(3)])
        np.testing.assert_array_equal(got, each)
        assert kl.kl_divergence(te, S, reduction="none").shape == (3, 12)


def test_thread_count_invariance():
    t, s = pair(64, 20000, seed=3)
    te, tk = kl.teacher_targets(t), kl.teacher_targets(t, top_k=64, tail=False)
    old = evoforge.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3, 7):
            evoforge.set_num_threads(n)
            te_n = kl.teacher_targets(t)
            np.testing.assert_array_equal(te_n.weights, te.weights)
            np.testing.assert_array_equal(te_n.cross, te.cross)
            outs.append(
                (
                    kl.kl_divergence(te, s, reduction="none"),
                    kl.kl_divergence(tk, s, reduction="none"),
                )
            )
    finally:
        evoforge.set_num_threads(old)
    for a, b in outs[1:]:
        np.testing.assert_array_equal(a, outs[0][0])
        np.testing.assert_array_equal(b, outs[0][1])


def test_dtypes():
    t, s = pair(10, 1000)
    te = kl.teacher_targets(t)
    f32 = kl.kl_divergence(te, s, reduction="none")
    # bfloat16 student: exact against torch on the rounded values
    sb = s.bfloat16()
    assert_full_close(kl.kl_divergence(te, sb, reduction="none"), t, sb.float())
    # numpy float16 / float64 student: converted to float32
    np.testing.assert_allclose(
        kl.kl_divergence(te, s.numpy().astype(np.float64), reduction="none"),
        f32,
        rtol=1e-12,
    )
    s16 = s.numpy().astype(np.float16)
    assert_full_close(
        kl.kl_divergence(te, s16, reduction="none"),
        t,
        torch.from_numpy(s16.astype(np.float32)),
    )
    # bf16 / f16 teacher: the distribution of the rounded logits
    for tt in (t.bfloat16(), t.half()):
        ten = kl.teacher_targets(tt)
        assert_full_close(kl.kl_divergence(ten, s, reduction="none"), tt.float(), s)
        np.testing.assert_allclose(
            kl.kl_divergence(kl.teacher_targets(tt, top_k=33, tail=False), s, reduction="none"),
            ref_topk(tt.float(), s, 33),
            rtol=1e-6,
            atol=1e-7,
        )
    assert te.weights.dtype == np.float16 and te.nbytes == 10 * 1000 * 2 + 10 * 20
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        kl.kl_divergence(te, s.numpy().astype(np.int32))


def test_extreme_logits():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(8, 2000, generator=g) * 1000 + 3e4  # large offsets and spreads
    s = t + torch.randn(8, 2000, generator=g) * 50 - 2e4
    te = kl.teacher_targets(t)
    assert_full_close(kl.kl_divergence(te, s, reduction="none"), t, s)
    np.testing.assert_allclose(
        kl.kl_divergence(kl.teacher_targets(t, top_k=100, tail=False), s, reduction="none"),
        ref_topk(t, s, 100),
        rtol=1e-6,
        atol=1e-6,
    )
    # near one-hot teacher, uniform student: KL = log V
    one = torch.full((2, 4096), -1e4)
    one[:, 7] = 1e4
    got = kl.kl_divergence(
        kl.teacher_targets(one), torch.zeros(2, 4096), reduction="none"
    )
    np.testing.assert_allclose(got, np.log(4096), rtol=1e-6)


def test_masked_minus_inf():
    t, s = pair(4, 600)
    t[:, 100:200] = -float("inf")  # teacher mask: p = 0 there
    s[:, 100:200] = -float("inf")  # student mask on the same entries: fine
    s[1, 150] = 5.0
    te = kl.teacher_targets(t)
    got = kl.kl_divergence(te, s, reduction="none")
    assert np.all(np.isfinite(got))
    assert_full_close(got, t, s)
    s2 = s.clone()
    s2[2, 0] = -float(
        "inf"
    )  # student masks an entry the teacher gives weight: KL = +inf
    got = kl.kl_divergence(te, s2, reduction="none")
    assert got[2] == np.inf and np.all(np.isfinite(got[[0, 1, 3]]))
    tk = kl.teacher_targets(
        t, top_k=550, tail=False
    )  # K beyond the finite entries: masked ones get weight 0
    np.testing.assert_allclose(
        kl.kl_divergence(tk, s, reduction="none"),
        ref_topk(t, s, 550),
        rtol=1e-6,
        atol=1e-7,
    )
    assert kl.kl_divergence(tk, s2, reduction="none")[2] == np.inf


def test_bad_input():
    t, s = pair(4, 100)
    te = kl.teacher_targets(t)
    with pytest.raises(ValueError, match="shape"):
        kl.kl_divergence(te, s[:3])
    with pytest.raises(ValueError, match="V=100"):
        kl.kl_divergence(te, torch.zeros(4, 99))
    with pytest.raises(ValueError, match="shape"):
        kl.kl_divergence(te, torch.zeros(2, 2, 4, 100)[0, 0, 0])
    for kind in (te, kl.teacher_targets(t, top_k=5, tail=False)):
        col = (
            50 if kind.indices is None else int(kind.indices[2, 3])
        )  # top K reads only its K entries
        bad = s.clone()
        bad[2, col] = float("nan")
        with pytest.raises(ValueError, match="NaN at row 2"):
            kl.kl_divergence(kind, bad)
        bad[2, col] = float("inf")
        with pytest.raises(ValueError, match=r"\+inf at row 2"):
            kl.kl_divergence(kind, bad)
    bt = t.clone()
    bt[3, 1] = float("nan")
    with pytest.raises(ValueError, match="teacher logits hold NaN at row 3"):
        kl.teacher_targets(bt)
    bt[3, 1] = float("inf")
    with pytest.raises(ValueError, match=r"\+inf at row 3"):
        kl.teacher_targets(bt, top_k=4, tail=False)
    bt[3] = -float("inf")
    with pytest.raises(ValueError, match="all -inf"):
        kl.teacher_targets(bt)
    with pytest.raises(ValueError, match="top_k"):
        kl.teacher_targets(t, top_k=101, tail=False)
    with pytest.raises(ValueError, match="reduction"):
        kl.kl_divergence(te, s, reduction="sum")
    with pytest.raises(ValueError, match=r"\[T, V\]"):
        kl.teacher_targets(t[0])
    with pytest.raises(TypeError, match="Teacher"):
        kl.kl_divergence(t, s)


def test_take_minibatch():
    t, s = pair(20, 300)
    te = kl.teacher_targets(t)
    rows = np.array([3, 7, 19])
    np.testing.assert_array_equal(
        kl.kl_divergence(te.take(rows), s[rows], reduction="none"),
        kl.kl_divergence(te, s, reduction="none")[rows],
    )


def ref_topk_tail(t: torch.Tensor, s: torch.Tensor, k: int) -> np.ndarray:
    """KL over K + 1 bins in float64: the teacher's top K tokens (full-softmax probabilities of
    both models) and one bin for everything else."""
    idx = torch.from_numpy(np.argsort(-t.double().numpy(), axis=-1, kind="stable")[:, :k].copy())
    lp, lq = F.log_softmax(t.double(), -1), F.log_softmax(s.double(), -1)
    pk, lpk, lqk = lp.gather(-1, idx).exp(), lp.gather(-1, idx), lq.gather(-1, idx)
    mask = torch.ones_like(lp, dtype=torch.bool).scatter_(1, idx, False)
    lpt = torch.where(mask, lp, -torch.inf).logsumexp(-1)
    lqt = torch.where(mask, lq, -torch.inf).logsumexp(-1)
    pt = lpt.exp()
    tail = torch.where(pt > 0, pt * (lpt - lqt), torch.zeros_like(pt))
    return ((pk * (lpk - lqk)).sum(-1) + tail).numpy()


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 6), V=st.integers(2, 300), data=st.data())
def test_topk_tail_matches_torch(T, V, data):
    k = data.draw(st.integers(1, V))
    scale = data.draw(st.sampled_from([0.5, 3.0, 12.0]))
    t, s = pair(T, V, scale=scale, seed=data.draw(st.integers(0, 100)))
    te = kl.teacher_targets(t, top_k=k)
    assert te.tail is not None and te.tail.shape == (T,) and np.all((te.tail >= 0) & (te.tail < 1))
    want = ref_topk_tail(t, s, k)
    got = kl.kl_divergence(te, s, reduction="none")
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(kl.kl_divergence(te, s, reduction="none", _force_scalar=True), want,
                               rtol=2e-5, atol=2e-6)


def test_topk_tail_properties():
    t, s = pair(64, 5000, scale=3.0, seed=4)
    te = kl.teacher_targets(t, top_k=64)
    # the teacher against itself: 0; a lower bound of the full KL; above the renormalised variant's
    # blind spot: a student that moves mass outside the teacher's top K is penalised
    np.testing.assert_allclose(kl.kl_divergence(te, t, reduction="none"), 0.0, atol=2e-6)
    full = kl.kl_divergence(kl.teacher_targets(t), s, reduction="none")
    assert np.all(kl.kl_divergence(te, s, reduction="none") <= full + 1e-5)
    renorm = kl.teacher_targets(t, top_k=64, tail=False)
    shifted = t - 30.0 * torch.ones_like(t)  # a constant shift changes nothing
    np.testing.assert_allclose(kl.kl_divergence(te, shifted, reduction="none"), 0.0, atol=2e-5)
    spread = t.clone()
    mask = torch.ones_like(t, dtype=torch.bool).scatter_(1, torch.from_numpy(te.indices.astype(np.int64)), False)
    spread[mask] += 8.0  # mass moved into the tail: the renormalised variant cannot see it
    assert kl.kl_divergence(renorm, spread) < 1e-6
    assert kl.kl_divergence(te, spread) > 0.1


def test_teacher_save_load_mmap(tmp_path):
    t, s = pair(40, 300, seed=5)
    for te in (kl.teacher_targets(t), kl.teacher_targets(t, top_k=16), kl.teacher_targets(t, top_k=16, tail=False)):
        te.save(tmp_path / "t", info={"key": "x"})
        back = kl.Teacher.load(tmp_path / "t")
        assert isinstance(back.weights, np.memmap) and back.top_k == te.top_k
        assert (back.tail is None) == (te.tail is None)
        assert kl.kl_divergence(back, s) == kl.kl_divergence(te, s)
        np.testing.assert_array_equal(kl.kl_divergence(back.take([3, 1]), s[[3, 1]], reduction="none"),
                                      kl.kl_divergence(te, s, reduction="none")[[3, 1]])
    with pytest.raises(FileNotFoundError, match="teacher.json"):
        kl.Teacher.load(tmp_path / "nothing")
