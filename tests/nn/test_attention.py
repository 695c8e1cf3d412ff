import math

import pytest
import torch

from kexue.nn.attention import MultiHeadAttention, entropy_scale
from kexue.nn.masks import causal_mask, padding_mask, permutation_mask, unilm_mask
from kexue.nn.rope import RoPE

B, T, H, HEADS = 2, 7, 16, 4


def _attn(**kw):
    torch.manual_seed(0)
    return MultiHeadAttention(H, HEADS, **kw).double()


def _masks():
    am = torch.tensor([[1] * T, [1] * 4 + [0] * (T - 4)])
    seg = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0]])
    return {
        "none": (None, False),
        "padding": (padding_mask(am), False),
        "causal": (None, True),
        "causal+padding": (padding_mask(am), True),
        "unilm": (unilm_mask(seg, am), False),
        "permutation": (permutation_mask(torch.tensor([3, 0, 6, 2, 5, 1, 4])), False),
    }


@pytest.mark.parametrize("mask_name", list(_masks()))
@pytest.mark.parametrize("scale", ["sqrt", "entropy", 0.3])
@pytest.mark.parametrize("key_size", [6, 2, 4])  # head_size is 4: larger, smaller, equal
def test_sdpa_equals_explicit(mask_name, scale, key_size):
    mask, causal = _masks()[mask_name]
    attn = _attn(scale=scale, key_size=key_size)
    bias = torch.randn(1, HEADS, T, T, dtype=torch.float64)
    for attn_bias in (None, bias):
        out = []
        for use_sdpa in (True, False):
            attn.use_sdpa = use_sdpa
            torch.manual_seed(1)
            x = torch.randn(B, T, H, dtype=torch.float64, requires_grad=True)
            y, _ = attn(x, mask, is_causal=causal, attn_bias=attn_bias)
            (grad,) = torch.autograd.grad(y.pow(2).sum(), x)
            out.append((y, grad))
        torch.testing.assert_close(out[0], out[1], rtol=1e-10, atol=1e-10)


def test_explicit_matches_textbook_formula():
    attn = _attn(key_size=5, head_size=3)
    x = torch.randn(B, T, H, dtype=torch.float64)
    y, _ = attn(x)
    w = attn.qkv.weight
    q = (x @ w[:20].T + attn.qkv.bias[:20]).view(B, T, HEADS, 5)
    k = (x @ w[20:40].T + attn.qkv.bias[20:40]).view(B, T, HEADS, 5)
    v = (x @ w[40:].T + attn.qkv.bias[40:]).view(B, T, HEADS, 3)
    heads = []
    for h in range(HEADS):
        p = torch.softmax(q[:, :, h] @ k[:, :, h].transpose(1, 2) / math.sqrt(5), dim=-1)
        heads.append(p @ v[:, :, h])
    ref = attn.out(torch.cat(heads, dim=-1))
    torch.testing.assert_close(y, ref)
    assert attn.qkv.weight.shape == (HEADS * (5 + 5 + 3), H) and attn.out.weight.shape == (H, 12)


@pytest.mark.parametrize("mask_name", ["none", "padding", "causal", "unilm"])
def test_talking_heads_identity_init_equals_vanilla_exactly(mask_name):
    mask, causal = _masks()[mask_name]
    th = _attn(talking_heads=True)
    vanilla = _attn(use_sdpa=False)
    x = torch.randn(B, T, H, dtype=torch.float64)
    y_th, _ = th(x, mask, is_causal=causal)
    y_v, _ = vanilla(x, mask, is_causal=causal)
    assert torch.equal(y_th, y_v)
    with torch.no_grad():
        th.pre_mix.add_(0.1 * torch.randn(HEADS, HEADS, dtype=torch.float64))
    y_mixed, _ = th(x, mask, is_causal=causal)
    assert not torch.allclose(y_mixed, y_v)
    assert torch.isfinite(y_mixed).all()


def test_talking_heads_mask_after_mixing():
    """A masked key gets exactly zero weight even after the heads are mixed."""
    th = _attn(talking_heads=True)
    with torch.no_grad():
        th.pre_mix.copy_(torch.randn(HEADS, HEADS))
        th.post_mix.copy_(torch.eye(HEADS))
    x = torch.randn(1, T, H, dtype=torch.float64)
    keep = torch.ones(1, T, dtype=torch.long)
    keep[0, -2:] = 0
    y1, _ = th(x, padding_mask(keep))
    x2 = x.clone()
    x2[0, -2:] += 100.0  # changing masked keys/values must not change real outputs
    y2, _ = th(x2, padding_mask(keep))
    torch.testing.assert_close(y1[0, :-2], y2[0, :-2])


@pytest.mark.parametrize("mask_name", ["none", "padding", "causal", "causal+padding", "unilm"])
def test_entropy_scale_equals_direct_formula(mask_name):
    T2 = 40  # long enough that some queries see more than 16 keys
    am = torch.ones(B, T2, dtype=torch.long)
    am[1, 25:] = 0
    seg = torch.zeros(B, T2, dtype=torch.long)
    seg[0, 20:] = 1
    seg[1, 5:25] = 1
    mask = {"padding": padding_mask(am), "causal+padding": padding_mask(am),
            "unilm": unilm_mask(seg, am)}.get(mask_name)  # fmt: skip
    causal = mask_name.startswith("causal")
    attn = _attn(scale="entropy", use_sdpa=False)
    x = torch.randn(B, T2, H, dtype=torch.float64)
    y, _ = attn(x, mask, is_causal=causal)
    full = torch.ones(B, T2, T2, dtype=torch.bool)
    if mask is not None:
        full = full & mask
    if causal:
        full = full & causal_mask(T2)
    q, k, v = attn.qkv(x).split([H, H, H], dim=-1)
    d = H // HEADS
    out = torch.zeros(B, T2, H, dtype=torch.float64)
    for b in range(B):
        for i in range(T2):
            n = int(full[b, i].sum())
            lam = math.log(max(n, 16)) / math.log(512) / math.sqrt(d)
            for h in range(HEADS):
                sl = slice(h * d, (h + 1) * d)
                logits = lam * (k[b, :, sl] @ q[b, i, sl])
                logits[~full[b, i]] = -math.inf
                out[b, i, sl] = torch.softmax(logits, 0) @ v[b, :, sl]
    torch.testing.assert_close(y, attn.out(out))
    # and the helper itself
    n = torch.tensor([1, 16, 512, 4096])
    expect = [math.log(16) / math.log(512) / 2, math.log(16) / math.log(512) / 2, 1 / 2, 4 / 3 / 2]
    torch.testing.assert_close(entropy_scale(n, 4), torch.tensor(expect, dtype=torch.float64))


@pytest.mark.parametrize("use_sdpa", [True, False])
@pytest.mark.parametrize("scale", ["sqrt", "entropy"])
def test_kv_cache_equals_full_causal(use_sdpa, scale):
    attn = _attn(use_sdpa=use_sdpa, scale=scale, key_size=8)
    rope = RoPE(8)
    x = torch.randn(B, T, H, dtype=torch.float64)

    def rot(lo, hi):
        return rope(torch.arange(lo, hi), dtype=torch.float64)

    full, _ = attn(x, is_causal=True, rotary=rot(0, T))
    y1, cache = attn(x[:, :3], is_causal=True, rotary=rot(0, 3), use_cache=True)
    y2, cache = attn(
        x[:, 3:5], is_causal=True, rotary=rot(3, 5), past_key_value=cache, use_cache=True
    )
    y3, cache = attn(
        x[:, 5:6], is_causal=True, rotary=rot(5, 6), past_key_value=cache, use_cache=True
    )
    y4, cache = attn(
        x[:, 6:], is_causal=True, rotary=rot(6, 7), past_key_value=cache, use_cache=True
    )
    torch.testing.assert_close(torch.cat([y1, y2, y3, y4], 1), full)
    assert cache[0].shape == (B, HEADS, T, 8)


@pytest.mark.parametrize("kw", [{}, {"talking_heads": True}, {"scale": "entropy"}])
def test_gradcheck(kw):
    attn = MultiHeadAttention(8, 2, key_size=3, **kw).double()
    x = torch.randn(1, 5, 8, dtype=torch.float64, requires_grad=True)
    mask = padding_mask(torch.tensor([[1, 1, 1, 1, 0]]))
    assert torch.autograd.gradcheck(lambda x: attn(x, mask, is_causal=True)[0], (x,))


def test_fully_masked_query_gives_zeros_not_nan():
    mask = torch.ones(1, T, T, dtype=torch.bool)
    mask[0, 2] = False  # query 2 sees nothing
    for kw in ({"use_sdpa": True}, {"use_sdpa": False}, {"talking_heads": True}):
        attn = _attn(**kw)
        x = torch.randn(1, T, H, dtype=torch.float64, requires_grad=True)
        y, _ = attn(x, mask)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
        torch.testing.assert_close(y[0, 2], attn.out.bias)


def test_errors():
    with pytest.raises(ValueError, match="key_size must be > 0, got 8 and 0"):
        MultiHeadAttention(16, 2, key_size=0)
    with pytest.raises(
        ValueError, match=r"hidden_size \(10\) must be divisible by num_heads \(4\)"
    ):
        MultiHeadAttention(10, 4)
    MultiHeadAttention(10, 4, head_size=3)  # explicit head_size: no divisibility needed
    with pytest.raises(ValueError, match="scale must be one of"):
        MultiHeadAttention(16, 2, scale="log")
    with pytest.raises(ValueError, match="positive float"):
        MultiHeadAttention(16, 2, scale=-1.0)
    attn = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match=r"\(batch, seq, 16\).*\(2, 3, 8\)"):
        attn(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="boolean"):
        attn(torch.randn(2, 3, 16), torch.ones(2, 3, 3))
    with pytest.raises(ValueError, match=r"does not broadcast.*\(2, 2, 3, 3\)"):
        attn(torch.randn(2, 3, 16), torch.ones(2, 3, 4, dtype=torch.bool))
