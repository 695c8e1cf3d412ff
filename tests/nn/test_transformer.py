import pytest
import torch
from torch import nn

from kexue.nn.masks import padding_mask, permutation_mask
from kexue.nn.rope import RoPE
from kexue.nn.transformer import (
    Transformer,
    TransformerBlock,
    get_activation,
    saved_activation_bytes,
)

H, HEADS, FF = 16, 4, 32


def test_post_and_pre_ln_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 5, H, dtype=torch.float64)
    for norm in ("post", "pre"):
        blk = TransformerBlock(H, HEADS, FF, norm=norm).double()
        y, _ = blk(x)
        if norm == "post":
            h = blk.ln1(x + blk.attn(x)[0])
            ref = blk.ln2(h + blk.ffn(h))
        else:
            h = x + blk.attn(blk.ln1(x))[0]
            ref = h + blk.ffn(blk.ln2(h))
        torch.testing.assert_close(y, ref)
        ff = blk.ffn.down(torch.nn.functional.gelu(blk.ffn.up(x)))
        torch.testing.assert_close(blk.ffn(x), ff)


def _loss_and_grads(model, x, mask, seed):
    torch.manual_seed(seed)
    model.zero_grad()
    y, _, _ = model(x, mask)
    loss = (y * torch.linspace(-1, 1, y.shape[-1])).pow(2).sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_recompute_gives_equal_gradients_with_dropout(norm):
    torch.manual_seed(0)
    model = Transformer(3, H, HEADS, FF, norm=norm, dropout=0.3, attention_dropout=0.3)
    model.train()
    x = torch.randn(2, 6, H)
    mask = padding_mask(torch.tensor([[1] * 6, [1] * 4 + [0] * 2]))
    l0, g0 = _loss_and_grads(model, x, mask, seed=123)
    model.recompute = True
    l1, g1 = _loss_and_grads(model, x, mask, seed=123)
    assert torch.equal(l0, l1)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-6, atol=1e-7, msg=name)
    # dropout really is on: another seed changes the loss
    l2, _ = _loss_and_grads(model, x, mask, seed=7)
    assert not torch.equal(l0, l2)


def test_recompute_saves_fewer_activations():
    torch.manual_seed(0)
    model = Transformer(4, H, HEADS, FF)
    x = torch.randn(2, 8, H, requires_grad=True)
    plain = saved_activation_bytes(model, lambda: model(x))
    model.recompute = True
    kept = saved_activation_bytes(model, lambda: model(x))
    # recompute keeps each block's input (and the tensors the checkpoint itself needs)
    assert 0 < kept < plain / 3


def test_saved_activation_bytes_counts_storages_once_and_skips_parameters():
    lin = nn.Linear(3, 4, bias=False)
    x = torch.randn(5, 3, requires_grad=True)
    # y = x W^T saves x (for dW) and W (for dx); W is a parameter, so only x counts
    assert saved_activation_bytes(lin, lambda: lin(x)) == x.numel() * 4
    # x * x saves x twice: one storage
    assert saved_activation_bytes(lin, lambda: x * x) == x.numel() * 4


def test_hidden_states_and_cache_shapes():
    model = Transformer(2, H, HEADS, FF).eval()
    x = torch.randn(2, 5, H)
    y, cache, hidden = model(x, output_hidden_states=True, use_cache=True, is_causal=True)
    assert len(hidden) == 3 and hidden[0] is x and torch.equal(hidden[-1], y)
    assert len(cache) == 2 and cache[0][0].shape == (2, HEADS, 5, H // HEADS)
    with pytest.raises(ValueError, match="must hold 2 layers, got 1"):
        model(x, past_key_values=cache[:1])


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_permutation_lm_equals_causal_lm_on_permuted_tokens(positions):
    """Mask with a factorisation order == causal mask on tokens and position ids permuted."""
    torch.manual_seed(0)
    vocab, T = 11, 7
    emb, pos_emb = nn.Embedding(vocab, H).double(), nn.Embedding(T, H).double()
    model = Transformer(2, H, HEADS, FF).double().eval()
    rope = RoPE(H // HEADS)
    tokens = torch.randint(0, vocab, (2, T))
    order = torch.stack([torch.randperm(T), torch.randperm(T)])

    def run(tok, pos, **kw):
        x = emb(tok)
        rot = None
        if positions == "learned":
            x = x + pos_emb(pos)
        else:
            rot = rope(pos, dtype=torch.float64)
        return model(x, rotary=rot, **kw)[0]

    y_perm = run(tokens, torch.arange(T).expand(2, T), attention_mask=permutation_mask(order))
    y_causal = run(tokens.gather(1, order), order, is_causal=True)
    expect = y_perm.gather(1, order[..., None].expand(-1, -1, H))
    torch.testing.assert_close(y_causal, expect)


def test_errors():
    with pytest.raises(ValueError, match="norm must be 'post' or 'pre', got 'mid'"):
        TransformerBlock(H, HEADS, FF, norm="mid")
    with pytest.raises(ValueError, match="unknown activation 'gelu2'"):
        get_activation("gelu2")
    with pytest.raises(ValueError, match="num_layers must be > 0, got 0"):
        Transformer(0, H, HEADS, FF)
