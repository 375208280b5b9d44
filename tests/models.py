"""Tiny models built from configs (no downloads) shared by the tests: a Llama, and one model of each
architecture the adapters support; the real stories260k is the
``stories`` fixture in conftest.py."""

from __future__ import annotations

import torch


def tiny_llama(seed: int = 0, *, vocab: int = 100, hidden: int = 32, intermediate: int = 48, layers: int = 2,
               tie: bool = False, norms: str | None = None, token_ids: bool = True):
    """A randomly initialised Llama (4 heads, 2 key-value heads, 64 positions) in eval mode.

    norms : None (unit gains), ``"exp"`` (gains exp(N(0, 1)): uneven input columns, as in trained
        models) or ``"jitter"`` (gains 1 + 0.1 N(0, 1)).
    token_ids : set bos 1, eos 2, pad 0 (sampling from the model needs them).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0} if token_ids else {}
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=4,
                      num_key_value_heads=2, num_hidden_layers=layers, max_position_embeddings=64,
                      tie_word_embeddings=tie, **ids)
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 1 and norms == "exp":
                p.copy_(torch.exp(torch.randn_like(p)))
            elif p.ndim == 1 and norms == "jitter":
                p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def tiny_model(arch: str, seed: int = 0):
    """A tiny randomly initialised model of ``arch`` (hidden 32-48, 2-3 layers, vocab 100), in eval mode."""
    import transformers as t

    ids = {"vocab_size": 100, "bos_token_id": 1, "eos_token_id": 2}
    common = dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=64, pad_token_id=0, **ids)
    if arch == "llama":
        m = t.LlamaForCausalLM(t.LlamaConfig(num_hidden_layers=3, **common))
    elif arch == "mistral":
        m = t.MistralForCausalLM(t.MistralConfig(num_hidden_layers=2, **common))
    elif arch == "qwen2":
        m = t.Qwen2ForCausalLM(t.Qwen2Config(num_hidden_layers=2, **common))
    elif arch == "phi3":
        m = t.Phi3ForCausalLM(t.Phi3Config(num_hidden_layers=2, **{**common, "hidden_size": 48}))
    elif arch == "gpt2":
        m = t.GPT2LMHeadModel(t.GPT2Config(n_embd=32, n_layer=3, n_head=4, n_positions=64, **ids))
    else:
        raise AssertionError(arch)
    torch.manual_seed(seed)
    with torch.no_grad():  # non-trivial norms and biases, so that every path matters
        for name, p in m.named_parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return m.eval()
