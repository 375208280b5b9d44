"""evoforge.compress.head: the exact full-vocabulary KL of a linear head (c - h.u + logsumexp(W h + b))
against float64 brute force, over shapes that exercise every block boundary; heads that are not a
plain linear map are recognised and left to the logits path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import models
from evoforge.compress import adapt
from evoforge.compress.head import LinearHeadKL


def brute_kl(teacher_logits, W, b, h):
    """float64 KL(softmax(t) || softmax(W h + b)) per token."""
    z = h.double() @ W.double().T + (0 if b is None else b.double())
    lp, lq = torch.log_softmax(teacher_logits.double(), -1), torch.log_softmax(z, -1)
    return (lp.exp() * (lp - lq)).sum(-1)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 40), V=st.integers(2, 300), H=st.integers(1, 24), bias=st.booleans(),
       vb=st.integers(1, 64), tb=st.integers(1, 16), scale=st.sampled_from([0.1, 1.0, 8.0]),
       seed=st.integers(0, 2**31 - 1))
def test_matches_float64_brute_force(T, V, H, bias, vb, tb, scale, seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(V, H, generator=g)
    b = torch.randn(V, generator=g) if bias else None
    t = torch.randn(T, V, generator=g) * scale * 3
    h = torch.randn(T, H, generator=g) * scale
    head = LinearHeadKL(W, b, vocab_block=vb, token_block=tb)
    got = head.kl(h, head.teacher(t))
    want = brute_kl(t, W, b, h)
    assert got.dtype == torch.float64 and got.shape == (T,)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=2e-5 * (1 + scale * scale))
    assert (got > -1e-4).all()


def test_student_equal_to_teacher_is_zero():
    g = torch.Generator().manual_seed(1)
    W, h = torch.randn(1000, 16, generator=g), torch.randn(50, 16, generator=g) * 3
    head = LinearHeadKL(W, None, vocab_block=128)
    kl = head.kl(h, head.teacher(h @ W.T))
    assert kl.abs().max() < 2e-5


def test_take_and_blocks_do_not_change_the_result():
    g = torch.Generator().manual_seed(2)
    W, h, t = torch.randn(777, 32, generator=g), torch.randn(64, 32, generator=g), torch.randn(64, 777, generator=g)
    ref = LinearHeadKL(W, vocab_block=777, token_block=64)
    teacher = ref.teacher(t)
    whole = ref.kl(h, teacher)
    other = LinearHeadKL(W, vocab_block=50, token_block=7)
    np.testing.assert_allclose(other.kl(h[10:30], teacher.take(slice(10, 30))).numpy(), whole[10:30].numpy(),
                               rtol=1e-6, atol=1e-6)
    rows = np.array([3, 60, 5])
    np.testing.assert_allclose(other.kl(h[rows], teacher.take(rows)).numpy(), whole[rows].numpy(), rtol=1e-6,
                               atol=1e-6)
    with pytest.raises(ValueError, match="tokens"):
        ref.kl(h[:3], teacher)


class _Softcapped(torch.nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, x):
        return 30 * torch.tanh(self.lin(x) / 30)


class _Scaled(torch.nn.Linear):
    def forward(self, x):
        return super().forward(x) * 0.5


def test_only_plain_linear_heads():
    model = models.tiny_llama(0, vocab=100, layers=1)
    a = adapt(model)
    assert LinearHeadKL.of(a) is not None
    lin = model.lm_head
    a.lm_head = _Softcapped(lin)
    assert LinearHeadKL.of(a) is None
    scaled = _Scaled(lin.in_features, lin.out_features, bias=False)
    scaled.weight = lin.weight
    a.lm_head = scaled
    assert LinearHeadKL.of(a) is None
