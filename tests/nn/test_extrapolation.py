import math

import pytest
import torch

from kexue.nn import (
    MultiHeadAttention,
    RoPE,
    RotaryAngles,
    log_n_scale,
    ntk_kappa,
    rerope_positions,
    window_mask,
    yarn_attention_factor,
    yarn_ramp,
)
from kexue.nn.extrapolation import ReRotaryAngles, ScaledRotaryAngles

DIM = 16


def complex_logits(q, k, rel, inv_freq):
    """Reference: Re Σ_i z_q,i conj(z_k,i) e^{j r θ_i} with r = rel[i, j] (any real number)."""
    zq = torch.view_as_complex(q.double().unflatten(-1, (-1, 2)).contiguous())  # (..., t, d/2)
    zk = torch.view_as_complex(k.double().unflatten(-1, (-1, 2)).contiguous())
    phase = torch.exp(1j * rel.double()[..., None] * inv_freq)  # (t, s, d/2)
    return (zq[..., :, None, :] * zk[..., None, :, :].conj() * phase).sum(-1).real


def rope_logits(rope: RoPE, q, k):
    """Logits q·k of a RoPE object (rotation or two-pass), as the attention forms them."""
    angles = rope(torch.arange(q.shape[-2]), dtype=q.dtype)
    if hasattr(angles, "logits"):
        return angles.logits(q, k)
    rq = angles.rotate_query(q) if hasattr(angles, "rotate_query") else angles.rotate(q)
    return rq @ angles.rotate(k).transpose(-1, -2)


@pytest.fixture
def qk():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 40, DIM, generator=g, dtype=torch.float64), torch.randn(
        2, 3, 40, DIM, generator=g, dtype=torch.float64)


def test_plain_rope_matches_complex_reference(qk):
    q, k = qk
    rope = RoPE(DIM)
    pos = torch.arange(40)
    rel = pos[:, None] - pos[None, :]
    torch.testing.assert_close(rope_logits(rope, q, k), complex_logits(q, k, rel, rope.rotary.inv_freq))


def test_pi_divides_frequencies_and_ntk_matches_pi_at_lowest_frequency():
    base = RoPE(DIM).frequencies(512)[0]
    pi = RoPE(DIM, variant="pi", train_length=128).frequencies(512)[0]
    ntk = RoPE(DIM, variant="ntk", train_length=128).frequencies(512)[0]
    torch.testing.assert_close(pi, base / 4)
    assert ntk[0] == base[0]  # the highest frequency is untouched
    torch.testing.assert_close(ntk[-1], pi[-1])  # the lowest is exactly interpolated
    torch.testing.assert_close(ntk, (10000.0 * ntk_kappa(4.0, DIM)) ** (-torch.arange(0, DIM, 2).double() / DIM))
    assert ntk_kappa(4.0, DIM) == pytest.approx(4.0 ** (16 / 14))


def test_scale_is_dynamic_by_default_and_fixed_when_given():
    rope = RoPE(DIM, variant="pi", train_length=128)
    assert rope.factor(64) == 1.0 and rope.factor(128) == 1.0 and rope.factor(512) == 4.0
    torch.testing.assert_close(rope.frequencies(100)[0], RoPE(DIM).frequencies(100)[0])
    assert RoPE(DIM, variant="pi", scale=2.0).factor(10_000) == 2.0


def test_yarn_ramp_boundaries_and_frequencies():
    rope = RoPE(DIM, variant="yarn", train_length=128)
    theta = rope.rotary.inv_freq
    turns = 128 * theta / (2 * math.pi)
    gamma = yarn_ramp(theta, 128)
    assert torch.all(gamma[turns >= 32] == 1) and torch.all(gamma[turns <= 1] == 0)
    mid = (turns > 1) & (turns < 32)
    assert mid.any()
    torch.testing.assert_close(gamma[mid], (turns[mid] - 1) / 31)
    new, factor = rope.frequencies(512)
    torch.testing.assert_close(new[turns >= 32], theta[turns >= 32])  # fast pairs kept
    torch.testing.assert_close(new[turns <= 1], theta[turns <= 1] / 4)  # slow pairs interpolated
    assert factor == pytest.approx(1 + 0.1 * math.log(4)) == yarn_attention_factor(4.0)
    assert rope.frequencies(128)[1] == 1.0  # in-length: plain RoPE


def test_yarn_logits_are_scaled_by_lambda(qk):
    q, k = qk
    rope = RoPE(DIM, variant="yarn", train_length=10)  # 40 positions: s = 4
    theta, factor = rope.frequencies(40)
    pos = torch.arange(40)
    ref = complex_logits(q, k, pos[:, None] - pos[None, :], theta) * factor**2
    torch.testing.assert_close(rope_logits(rope, q, k), ref)


@pytest.mark.parametrize("leak", [None, 4.0])
def test_rerope_two_pass_equals_explicit_relative_positions(qk, leak):
    q, k = qk
    variant = "rerope" if leak is None else "leaky-rerope"
    rope = RoPE(DIM, variant=variant, window=8, leak=leak)
    pos = torch.arange(40)
    rel = rerope_positions(pos[:, None] - pos[None, :], 8, leak)
    causal = torch.tril(torch.ones(40, 40, dtype=torch.bool))
    got, ref = rope_logits(rope, q, k), complex_logits(q, k, rel, rope.rotary.inv_freq)
    torch.testing.assert_close(got[..., causal], ref[..., causal])


def test_rerope_positions_formula():
    r = torch.arange(12)
    assert rerope_positions(r, 4).tolist() == [0, 1, 2, 3] + [4] * 8
    assert rerope_positions(r, 4, 2.0).tolist() == [0, 1, 2, 3, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7.5]


def test_rerope_equals_plain_inside_window(qk):
    q, k = qk
    plain = rope_logits(RoPE(DIM), q, k)
    causal = torch.tril(torch.ones(40, 40, dtype=torch.bool))
    for rope in (RoPE(DIM, variant="rerope", window=40), RoPE(DIM, variant="leaky-rerope", window=40, leak=8)):
        torch.testing.assert_close(rope_logits(rope, q, k)[..., causal], plain[..., causal])
    # with a small window the near band still equals plain RoPE
    near = causal & ~torch.tril(torch.ones(40, 40, dtype=torch.bool), diagonal=-8)
    small = rope_logits(RoPE(DIM, variant="rerope", window=8), q, k)
    torch.testing.assert_close(small[..., near], plain[..., near])
    assert not torch.allclose(small[..., causal & ~near], plain[..., causal & ~near])


def test_rerope_logits_gradcheck():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    angles = RoPE(4, variant="leaky-rerope", window=2, leak=3.0, log_n=True, train_length=3)(
        torch.arange(6), torch.float64)
    assert torch.autograd.gradcheck(angles.logits, (q, k))


def test_log_n_scale_formula_and_in_length_identity(qk):
    n = torch.arange(1, 513)
    s = log_n_scale(n, 128)
    assert torch.all(s[:128] == 1)
    torch.testing.assert_close(s[511], torch.tensor(math.log(512) / math.log(128), dtype=torch.float64))
    q, k = qk
    rope = RoPE(DIM, log_n=True, train_length=10)
    scale = log_n_scale(torch.arange(1, 41), 10)
    ref = rope_logits(RoPE(DIM), q, k) * scale[:, None]
    torch.testing.assert_close(rope_logits(rope, q, k), ref)


def test_returned_objects_by_variant():
    pos = torch.arange(5)
    assert isinstance(RoPE(DIM, variant="ntk", train_length=4)(pos), RotaryAngles)
    assert isinstance(RoPE(DIM, variant="ntk", train_length=4, log_n=True)(pos), ScaledRotaryAngles)
    assert isinstance(RoPE(DIM, variant="rerope", window=2)(pos), ReRotaryAngles)


@pytest.mark.parametrize("options", [
    {"variant": "ntk", "train_length": 8, "log_n": True},
    {"variant": "rerope", "window": 6, "log_n": True, "train_length": 8},
    {"variant": "leaky-rerope", "window": 6, "leak": 4.0},
])
def test_attention_paths_agree(options):
    """SDPA (rotate_query) and the explicit path give the same output; ReRoPE output
    equals attention over the explicit relative-position logits."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 2, key_size=DIM, use_sdpa=True).double()
    ref_attn = MultiHeadAttention(32, 2, key_size=DIM, use_sdpa=False).double()
    ref_attn.load_state_dict(attn.state_dict())
    x = torch.randn(2, 20, 32, dtype=torch.float64)
    rope = RoPE(DIM, **options)
    angles = rope(torch.arange(20), torch.float64)
    y, _ = attn(x, is_causal=True, rotary=angles)
    y_ref, _ = ref_attn(x, is_causal=True, rotary=angles)
    torch.testing.assert_close(y, y_ref)
    # direct computation from the projections
    b, t, h = 2, 20, 2
    qh, kh, vh = attn.qkv(x).split(attn.split_sizes, dim=-1)
    qh, kh, vh = (z.view(b, t, h, -1).transpose(1, 2) for z in (qh, kh, vh))
    pos = torch.arange(t)
    rel = pos[:, None] - pos[None, :]
    if rope.variant != "plain" and rope.variant.endswith("rerope"):
        rel = rerope_positions(rel, rope.window, rope.leak)
    theta, factor = rope.frequencies(t)
    logits = complex_logits(qh, kh, rel, theta) * factor**2 / math.sqrt(DIM)
    if rope.log_n:
        logits = logits * log_n_scale(pos + 1, rope.train_length)[:, None]
    logits = logits.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool)), float("-inf"))
    out = (logits.softmax(-1) @ vh).transpose(1, 2).reshape(b, t, -1)
    torch.testing.assert_close(y, attn.out(out))


def test_rerope_rejects_kv_cache():
    attn = MultiHeadAttention(32, 2)
    x = torch.randn(1, 4, 32)
    past = (torch.zeros(1, 2, 3, 16), torch.zeros(1, 2, 3, 16))
    with pytest.raises(ValueError, match="KV cache"):
        attn(x, past_key_value=past, rotary=RoPE(16, variant="rerope", window=2)(torch.arange(4)))


def test_window_mask():
    m = window_mask(6, 3)
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    assert torch.equal(m, (j <= i) & (i - j < 3))
    sink = window_mask(6, 2, sink=1)
    assert sink[:, 0].all() and sink[5].tolist() == [True, False, False, False, True, True]
    assert torch.equal(window_mask(6, 100), torch.tril(torch.ones(6, 6, dtype=torch.bool)))


@pytest.mark.parametrize("call, match", [
    (lambda: window_mask(8, 0), "window must be a positive int, got 0"),
    (lambda: RoPE(DIM, variant="rerope", window=-2), "window must be a positive int, got -2"),
    (lambda: RoPE(DIM, variant="rerope"), "needs a window"),
    (lambda: RoPE(DIM, variant="pi", scale=0.5), "must be >= 1, got 0.5"),
    (lambda: ntk_kappa(0.9, DIM), "must be >= 1, got 0.9"),
    (lambda: RoPE(DIM, variant="leaky-rerope", window=4, leak=1.0), "leak k > 1, got 1.0"),
    (lambda: RoPE(DIM, variant="yarn"), "needs train_length"),
    (lambda: RoPE(DIM, variant="alibi"), "variant must be one of"),
    (lambda: RoPE(DIM, log_n=True), "needs train_length"),
    (lambda: RoPE(7), "positive even number, got 7"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_learned_positions_reject_longer_sequences():
    from kexue.nn import LearnedPositionEmbedding

    table = LearnedPositionEmbedding(128, 8)
    with pytest.raises(ValueError, match="position id 511 is out of range: this model has 128"):
        table(torch.arange(512)[None])
