"""evoforge.compress.adapters on tiny models built from configs (Llama, Mistral, Qwen2, Phi-3, GPT-2)
and on the real stories260k: structure, weight round-trips, GPT-2's transposed Conv1D, Phi-3's fused
groups, dropping sub-blocks against a manual residual bypass, forward_from against the full forward,
fingerprints, and errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import STORIES
from models import tiny_model as make_model
from evoforge import ConfigError
from evoforge.compress import SUPPORTED_ARCHITECTURES, UnsupportedModelError, adapt

VOCAB = 100
ARCHS = ["llama", "mistral", "qwen2", "phi3", "gpt2"]
PER_BLOCK = {"llama": 7, "mistral": 7, "qwen2": 7, "phi3": 4, "gpt2": 4}
KINDS = {
    "llama": ["q", "k", "v", "o", "gate", "up", "down"],
    "phi3": ["qkv", "o", "gate_up", "down"],
    "gpt2": ["qkv", "o", "up", "down"],
}
KINDS["mistral"] = KINDS["qwen2"] = KINDS["llama"]
SPLIT_KINDS = {"phi3": ["q", "k", "v", "o", "gate", "up", "down"], "gpt2": ["q", "k", "v", "o", "up", "down"]}


@pytest.fixture(scope="module", params=ARCHS)
def arch_model(request):
    return request.param, make_model(request.param)


@pytest.fixture(scope="module")
def tokens():
    g = torch.Generator().manual_seed(1)
    return torch.randint(3, VOCAB, (2, 9), generator=g)


def run(adapter, x, **kw):
    with torch.no_grad():
        return adapter.logits(x, **kw)


# ---- structure ----------------------------------------------------------------------------------


def test_structure(arch_model):
    arch, model = arch_model
    a = adapt(model)
    n = model.config.num_hidden_layers
    assert a.n_blocks == len(a.blocks) == n
    layers = a.linear_layers()
    assert len(layers) == PER_BLOCK[arch] * n
    assert [r.kind for r in layers] == KINDS[arch] * n
    assert [r.block for r in layers] == [b for b in range(n) for _ in range(PER_BLOCK[arch])]
    # the refs are exactly the linear modules inside the blocks (in forward order, which for Phi-3
    # is not the registration order: o_proj is registered before qkv_proj)
    cls = transformers.pytorch_utils.Conv1D if arch == "gpt2" else torch.nn.Linear
    inside = [m for blk in a.blocks for m in blk.modules() if isinstance(m, cls)]
    assert len(inside) == len(layers) and {id(r.module) for r in layers} == {id(m) for m in inside}
    for r in layers:
        W = r.weight()
        assert tuple(W.shape) == (r.out_features, r.in_features) and r.numel == W.numel()
        assert dict(model.named_modules())[r.name] is r.module
        assert (r.group == r.name) == bool(r.parts)
    assert a.embed is model.get_input_embeddings() and a.lm_head is model.get_output_embeddings()
    for i in range(n):
        assert a.attention(i) is a.sub_block(i, "attn").module
        assert a.mlp(i) is a.sub_block(i, "mlp").module
    split = a.linear_layers(split_groups=True)
    assert [r.kind for r in split] == SPLIT_KINDS.get(arch, KINDS[arch]) * n
    assert sum(r.numel for r in split) == sum(r.numel for r in layers)
    assert "ModelAdapter(" in repr(a) and arch in a.architecture.lower()


# ---- weights ------------------------------------------------------------------------------------


def test_weight_round_trip_and_zeroing(arch_model, tokens):
    arch, model = arch_model
    a = adapt(model)
    ref = run(a, tokens)
    for r in a.linear_layers():
        r.set_weight(r.weight().clone())
    for r in a.linear_layers(split_groups=True):
        r.set_weight(r.weight().clone())
    assert torch.equal(run(a, tokens), ref)
    target = a.linear_layers()[PER_BLOCK[arch] + 1]  # block 1
    saved = target.weight().clone()
    others = {r.name: r.weight().clone() for r in a.linear_layers() if r is not target}
    try:
        target.set_weight(torch.zeros_like(saved))
        assert torch.count_nonzero(target.weight()) == 0
        assert not torch.allclose(run(a, tokens), ref)
        assert all(torch.equal(r.weight(), others[r.name]) for r in a.linear_layers() if r is not target)
    finally:
        target.set_weight(saved)
    assert torch.equal(run(a, tokens), ref)


def test_set_weight_errors():
    a = adapt(make_model("llama"))
    r = a.linear_layers()[0]
    W = r.weight().clone()
    with pytest.raises(ValueError, match=r"shape \[32, 32\]"):
        r.set_weight(W[:3])
    with pytest.raises(TypeError, match="float32.*float64"):
        r.set_weight(W.double())
    with pytest.raises(TypeError, match="torch.Tensor"):
        r.set_weight(W.numpy())


def test_gpt2_conv1d_transposition():
    a = adapt(make_model("gpt2"))
    g = torch.Generator().manual_seed(3)
    for r in a.linear_layers():
        conv = r.module
        assert tuple(conv.weight.shape) == (r.in_features, r.out_features)  # stored [in, out]
        x = torch.randn(5, r.in_features, generator=g)
        with torch.no_grad():
            assert torch.allclose(conv(x), x @ r.weight().T + conv.bias, atol=1e-6)
            W = torch.randn(r.out_features, r.in_features, generator=g)
            old = r.weight().clone()
            r.set_weight(W)
            assert torch.equal(r.weight(), W)
            assert torch.allclose(conv(x), torch.nn.functional.linear(x, W, conv.bias), atol=1e-5)
            r.set_weight(old)


@pytest.mark.parametrize("arch", ["phi3", "gpt2"])
def test_fused_group_slices(arch):
    model = make_model(arch)
    a = adapt(model)
    cfg = model.config
    fused = [r for r in a.linear_layers() if r.parts]
    assert {r.kind for r in fused} == ({"qkv", "gate_up"} if arch == "phi3" else {"qkv"})
    for r in fused:
        # the slices tile [0, out_features) exactly, in order
        stops = [0] + [s.stop for _, s in r.parts]
        assert [s.start for _, s in r.parts] == stops[:-1] and stops[-1] == r.out_features
        sizes = [s.stop - s.start for _, s in r.parts]
        if r.kind == "qkv" and arch == "phi3":
            hd = cfg.hidden_size // cfg.num_attention_heads
            assert sizes == [cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd, cfg.num_key_value_heads * hd]
        elif r.kind == "qkv":
            assert sizes == [cfg.n_embd] * 3
        else:
            assert sizes == [cfg.intermediate_size] * 2
    parts = [p for p in a.linear_layers(split_groups=True) if p.group is not None]
    for r in fused:
        mine = [p for p in parts if p.group == r.name]
        assert [p.kind for p in mine] == [k for k, _ in r.parts]
        assert torch.equal(torch.cat([p.weight() for p in mine]), r.weight())
        # writing one part writes its rows only
        k = mine[1]
        before = r.weight().clone()
        k.set_weight(torch.full((k.out_features, k.in_features), 7.0))
        after = r.weight()
        assert torch.all(after[k.rows] == 7.0)
        keep = torch.ones(r.out_features, dtype=torch.bool)
        keep[k.rows] = False
        assert torch.equal(after[keep], before[keep])
        r.set_weight(before)


def test_phi3_group_matches_projection_semantics():
    """The 'q' rows of qkv_proj are what Phi-3 uses as queries: zeroing k and v rows leaves q's output."""
    a = adapt(make_model("phi3"))
    qkv = a.linear_layers()[0]
    x = torch.randn(3, qkv.in_features)
    q_rows = dict(qkv.parts)["q"]
    with torch.no_grad():
        full = qkv.module(x)
    assert torch.allclose(full[:, q_rows], x @ qkv.weight()[q_rows].T, atol=1e-6)
    gate_up = a.linear_layers()[2]
    assert [k for k, _ in gate_up.parts] == ["gate", "up"]


# ---- running from a block -----------------------------------------------------------------------


def test_forward_from_equals_full(arch_model, tokens):
    _, model = arch_model
    a = adapt(model)
    with torch.no_grad():
        ref = a.logits(tokens)
        hs = a.block_inputs(tokens)
        assert len(hs) == a.n_blocks + 1 and all(h.shape == (*tokens.shape, hs[0].shape[-1]) for h in hs)
        ctx = a.block_context(hs[0])
        for i in range(a.n_blocks + 1):
            torch.testing.assert_close(a.forward_from(i, hs[i]), ref, rtol=0, atol=1e-5)
            torch.testing.assert_close(a.forward_from(i, hs[i], context=ctx), ref, rtol=0, atol=1e-5)


def test_forward_from_with_padding_mask(tokens):
    a = adapt(make_model("llama"))
    mask = torch.ones_like(tokens)
    mask[0, :3] = 0  # left padding in the first row
    with torch.no_grad():
        ref = a.logits(tokens, attention_mask=mask)
        hs = a.block_inputs(tokens, attention_mask=mask)
        for i in range(a.n_blocks + 1):
            out = a.forward_from(i, hs[i], attention_mask=mask)
            torch.testing.assert_close(out[:, 3:], ref[:, 3:], rtol=0, atol=1e-5)
            torch.testing.assert_close(out[1], ref[1], rtol=0, atol=1e-5)


def test_forward_from_errors(tokens):
    a = adapt(make_model("llama"))
    with torch.no_grad():
        hs = a.block_inputs(tokens)
        ctx = a.block_context(hs[0])
        with pytest.raises(ValueError, match=r"\[0, 3\]"):
            a.forward_from(4, hs[0])
        with pytest.raises(ValueError, match="shape"):
            a.forward_from(0, hs[0][0])
        with pytest.raises(ValueError, match="context"):
            a.forward_from(0, hs[0][:1], context=ctx)


# ---- dropping sub-blocks ------------------------------------------------------------------------


def manual_bypass(a, x, i, kind):
    """Logits with block i's `kind` branch removed, computed from the modules by hand."""
    with torch.no_grad():
        h_in = a.block_inputs(x)[i]
        mlp = a.sub_block(i, "mlp")
        if kind == "attn":  # h = h_in + mlp(norm(h_in))
            h_out = h_in + mlp.module(mlp.norm(h_in))
        else:  # the block's output without the MLP branch is what enters the MLP's norm
            seen = []
            hook = mlp.norm.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
            try:
                a.logits(x)
            finally:
                hook.remove()
            h_out = seen[0]
        return a.forward_from(i + 1, h_out)


@pytest.mark.parametrize("kind", ["attn", "mlp"])
def test_drop_equals_manual_bypass(arch_model, tokens, kind):
    _, model = arch_model
    a = adapt(model)
    ref = run(a, tokens)
    for i in range(a.n_blocks):
        want = manual_bypass(a, tokens, i, kind)
        with a.drop(i, kind):
            got = run(a, tokens)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        assert not torch.allclose(got, ref)
        assert "forward" not in a.sub_block(i, kind).module.__dict__
    assert torch.equal(run(a, tokens), ref)


def test_drop_whole_block_is_identity_and_restores(tokens):
    a = adapt(make_model("llama"))
    ref = run(a, tokens)
    with torch.no_grad():
        hs = a.block_inputs(tokens)
        with a.dropped([(1, "attn"), (1, "mlp"), (1, "attn")]):
            got = a.logits(tokens)
            assert torch.equal(a.block_inputs(tokens)[2], hs[1])  # block 1 passes its input through
            via_from = a.forward_from(1, hs[1])
        torch.testing.assert_close(got, a.forward_from(2, hs[1]), rtol=0, atol=1e-5)
        torch.testing.assert_close(via_from, got, rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="boom"), a.drop(0, "mlp"):
        raise RuntimeError("boom")
    assert torch.equal(run(a, tokens), ref)


def test_drop_errors():
    a = adapt(make_model("gpt2"))
    with pytest.raises(ValueError, match="attn"), a.drop(0, "ffn"):
        pass
    with pytest.raises(ValueError, match=r"\[0, 2\]"), a.drop(3, "mlp"):
        pass
    with pytest.raises(TypeError, match="pair"), a.dropped([0]):
        pass
    assert all("forward" not in a.sub_block(i, k).module.__dict__ for i in range(3) for k in ("attn", "mlp"))


# ---- fingerprint --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_fingerprint_stable_across_reloads(arch, tmp_path):
    model = make_model(arch)
    fp = adapt(model).fingerprint()
    assert len(fp) == 32 and fp == adapt(model).fingerprint()
    model.save_pretrained(tmp_path)
    cls = type(model)
    r1 = adapt(cls.from_pretrained(tmp_path)).fingerprint()
    r2 = adapt(cls.from_pretrained(tmp_path)).fingerprint()
    assert r1 == r2 == fp
    ref = adapt(model).linear_layers()[-1]
    W = ref.weight().clone()
    W2 = W.clone()
    W2[0, 0] += 1e-3
    ref.set_weight(W2)
    assert adapt(model).fingerprint() != fp
    ref.set_weight(W)
    assert adapt(model).fingerprint() == fp
    assert adapt(make_model(arch, seed=5)).fingerprint() != fp  # other norms


def test_fingerprint_depends_on_config():
    a = make_model("llama")
    b = make_model("llama")
    b.config.rms_norm_eps = 1e-3
    assert adapt(a).fingerprint() != adapt(b).fingerprint()


# ---- unsupported models -------------------------------------------------------------------------


def test_unsupported_model_error():
    t = transformers
    opt = t.OPTForCausalLM(t.OPTConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                                       num_attention_heads=2, word_embed_proj_dim=16, max_position_embeddings=32))
    with pytest.raises(UnsupportedModelError) as ei:
        adapt(opt)
    msg = str(ei.value)
    assert "OPTForCausalLM" in msg and "'opt'" in msg
    assert all(name in msg for name in SUPPORTED_ARCHITECTURES)
    assert isinstance(ei.value, ConfigError) and isinstance(ei.value, ValueError)
    with pytest.raises(UnsupportedModelError, match="LlamaModel"):  # no lm_head: not a causal LM class
        adapt(make_model("llama").model)
    with pytest.raises(UnsupportedModelError, match="Module"):
        adapt("llama")


def test_subclass_is_adapted_and_replaced_layers_refused():
    class MyLlama(transformers.LlamaForCausalLM):
        pass

    m = make_model("llama")
    m.__class__ = MyLlama
    assert adapt(m).architecture == "LlamaForCausalLM"

    class Fake(torch.nn.Module):
        def forward(self, x):
            return x

    m.model.layers[1].mlp.up_proj = Fake()
    with pytest.raises(UnsupportedModelError, match=r"model\.layers\.1\.mlp\.up_proj is a Fake"):
        adapt(m)


def test_import_evoforge_does_not_import_transformers():
    code = "import sys, evoforge; assert 'transformers' not in sys.modules and 'torch' not in sys.modules; " \
           "import evoforge.compress; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---- the real stories260k -----------------------------------------------------------------------


def test_stories260k(stories):
    a = adapt(stories)
    assert a.architecture == "LlamaForCausalLM" and a.n_blocks == 5
    layers = a.linear_layers()
    assert len(layers) == 35 and [r.kind for r in layers[:7]] == KINDS["llama"]
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in stories.modules())
    assert n_linear == 36  # 35 in the blocks + the lm_head (tied to the embedding)
    assert sum(r.numel for r in layers) == 5 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 172)
    x = torch.tensor([[1, 403, 407, 261, 378, 115, 16, 12]])
    with torch.no_grad():
        ref = a.logits(x)
        hs = a.block_inputs(x)
        for i in (0, 2, 5):
            torch.testing.assert_close(a.forward_from(i, hs[i]), ref, rtol=0, atol=1e-5)
        want = manual_bypass(a, x, 3, "attn")
        with a.drop(3, "attn"):
            torch.testing.assert_close(a.logits(x), want, rtol=0, atol=1e-5)
    fp = a.fingerprint()
    assert adapt(transformers.LlamaForCausalLM.from_pretrained(STORIES)).fingerprint() == fp
