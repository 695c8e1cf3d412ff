"""RoPE and its variants against the posts' formulas, computed directly with complex numbers."""

import math

import pytest
import torch

from kexue.nn import (
    MultiHeadAttention,
    RoPE,
    log_n_scale,
    ntk_kappa,
    rerope_positions,
    yarn_attention_factor,
    yarn_ramp,
    yarn_ramp_by_index,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DIM, T, L = 16, 40, 10  # rotated features, positions, training length (so s = 4 at T = 40)


# --------------------------------------------------------------------------- references


def post_frequencies(variant: str, s: float, *, dim=DIM, base=10000.0, train_length=L,
                     alpha=1.0, beta=32.0, ramp="turns") -> tuple[torch.Tensor, float]:
    """θ'_i and the cos/sin factor √λ, written from posts 9948 / 8265 (not from the code)."""
    i = torch.arange(dim // 2, dtype=torch.float64)
    theta = base ** (-2 * i / dim)
    if variant == "pi":
        return theta / s, 1.0
    if variant == "ntk":
        return (base * s ** (dim / (dim - 2))) ** (-2 * i / dim), 1.0
    if variant != "yarn":
        return theta, 1.0
    if ramp == "turns":  # γ_i = 1 if r_i > τ, 0 if r_i < 1, (r_i - 1)/(τ - 1) otherwise
        r = train_length * theta / (2 * math.pi)
        gamma = torch.where(r > beta, 1.0, torch.where(r < alpha, 0.0, (r - alpha) / (beta - alpha)))
    else:  # YaRN's code: linear in i between the rounded indices of β and α turns
        at = [dim * math.log(train_length / (n * 2 * math.pi)) / (2 * math.log(base)) for n in (beta, alpha)]
        low, high = max(math.floor(at[0]), 0), min(math.ceil(at[1]), dim - 1)
        gamma = 1 - ((i - low) / (high - low)).clamp(0, 1)
    return (gamma + (1 - gamma) / s) * theta, 1 + 0.1 * math.log(s)


def post_relative(pos: torch.Tensor, variant: str, window=None, leak=None) -> torch.Tensor:
    """Relative positions i - j as (Leaky) ReRoPE uses them (post 9708), mirrored for j > i."""
    r = (pos[:, None] - pos[None, :]).double()
    if variant not in ("rerope", "leaky-rerope"):
        return r
    far = torch.full_like(r, float(window)) if variant == "rerope" else window + (r.abs() - window) / leak
    return torch.where(r.abs() < window, r, far * r.sign())


def as_complex(x: torch.Tensor, interleaved: bool) -> torch.Tensor:
    if interleaved:
        return torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())
    a, b = x.double().chunk(2, dim=-1)
    return torch.complex(a, b)


def from_complex(z: torch.Tensor, interleaved: bool) -> torch.Tensor:
    return torch.view_as_real(z).flatten(-2) if interleaved else torch.cat([z.real, z.imag], -1)


def complex_logits(q, k, rel, theta, interleaved=True):
    """Re Σ_i z_q,i conj(z_k,i) e^{j rel θ_i} for any real relative positions rel (t, s)."""
    zq, zk = as_complex(q, interleaved), as_complex(k, interleaved)
    phase = torch.exp(1j * rel.double()[..., None] * theta)  # (t, s, d/2)
    return (zq[..., :, None, :] * zk[..., None, :, :].conj() * phase).sum(-1).real


@pytest.fixture
def qk():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 3, T, DIM, generator=g, dtype=torch.float64),
            torch.randn(2, 3, T, DIM, generator=g, dtype=torch.float64))


VARIANT_OPTIONS = [
    ("plain", {}),
    ("pi", {"train_length": L}),
    ("pi", {"scale": 2.5}),
    ("ntk", {"train_length": L}),
    ("ntk", {"scale": 3.0}),
    ("yarn", {"train_length": L}),
    ("yarn", {"train_length": L, "ramp": "index"}),
    ("yarn", {"train_length": L, "scale": 8.0, "alpha": 2.0, "beta": 16.0}),
    ("rerope", {"window": 8}),
    ("leaky-rerope", {"window": 6, "leak": 4.0}),
]


@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("log_n", [False, True])
@pytest.mark.parametrize("variant, options", VARIANT_OPTIONS)
def test_every_variant_equals_the_posts_formula(qk, variant, options, log_n, interleaved):
    """The refactor's equivalence proof: rotated q/k (one-pass) and logits (all variants)
    equal the formulas of posts 8265 / 9948 / 9708 evaluated directly."""
    q, k = qk
    if log_n:
        options = {**options, "log_n": True, "train_length": options.get("train_length", L)}
    rope = RoPE(DIM, variant=variant, interleaved=interleaved, **options)
    rotary = rope(torch.arange(T), torch.float64)
    s = options.get("scale") or max(1.0, T / options.get("train_length", T))
    kw = {n: options[n] for n in ("alpha", "beta", "ramp") if n in options}
    theta, factor = post_frequencies(variant, s, train_length=options.get("train_length", L), **kw)
    pos = torch.arange(T)
    lam = torch.ones(T, dtype=torch.float64)
    if log_n:  # λ_n = max(1, log n / log L_train), n = i + 1
        lam = torch.tensor([max(1.0, math.log(i + 1) / math.log(options["train_length"])) for i in range(T)],
                           dtype=torch.float64)
    ref = complex_logits(q, k, post_relative(pos, variant, options.get("window"), options.get("leak")),
                         theta, interleaved) * factor**2 * lam[:, None]
    assert rotary.two_pass == (variant in ("rerope", "leaky-rerope"))
    torch.testing.assert_close(rotary.logits(q, k), ref, rtol=1e-10, atol=1e-10)
    if not rotary.two_pass:
        rq, rk = rotary.apply(q, k)
        turn = torch.exp(1j * pos.double()[:, None] * theta) * factor  # (t, d/2)
        torch.testing.assert_close(rq, from_complex(as_complex(q, interleaved) * turn * lam[:, None], interleaved))
        torch.testing.assert_close(rk, from_complex(as_complex(k, interleaved) * turn, interleaved))
    else:
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        torch.testing.assert_close(rotary.logits(q, k, causal=True)[..., causal], ref[..., causal])


def test_rope_dot_product_depends_on_relative_position_only():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 1, 1, 1, 8, generator=g, dtype=torch.float64)
    rope = RoPE(8, base=500.0)

    def score(m, n):
        (rq, _), (_, rk) = rope(torch.tensor([m]), torch.float64).apply(q, k), rope(
            torch.tensor([n]), torch.float64).apply(q, k)
        return (rq * rk).sum()

    torch.testing.assert_close(score(3, 10), score(103, 110))
    assert not torch.allclose(score(3, 10), score(3, 11))


def test_half_split_layout_is_a_feature_permutation_of_interleaved(qk):
    q, _ = qk
    perm = torch.cat([torch.arange(0, DIM, 2), torch.arange(1, DIM, 2)])  # interleaved -> halves
    a = RoPE(DIM)(torch.arange(T), torch.float64).rotate(q)
    b = RoPE(DIM, interleaved=False)(torch.arange(T), torch.float64).rotate(q[..., perm])
    torch.testing.assert_close(b, a[..., perm])


def test_pi_divides_frequencies_and_ntk_matches_pi_at_lowest_frequency():
    base = RoPE(DIM).frequencies(512)[0]
    pi = RoPE(DIM, variant="pi", train_length=128).frequencies(512)[0]
    ntk = RoPE(DIM, variant="ntk", train_length=128).frequencies(512)[0]
    torch.testing.assert_close(pi, base / 4)
    assert ntk[0] == base[0]  # the highest frequency is untouched
    torch.testing.assert_close(ntk[-1], pi[-1])  # the lowest is exactly interpolated
    assert ntk_kappa(4.0, DIM) == pytest.approx(4.0 ** (16 / 14))


def test_scale_is_dynamic_by_default_and_fixed_when_given():
    rope = RoPE(DIM, variant="pi", train_length=128)
    assert rope.factor(64) == 1.0 and rope.factor(128) == 1.0 and rope.factor(512) == 4.0
    torch.testing.assert_close(rope.frequencies(100)[0], RoPE(DIM).frequencies(100)[0])
    assert RoPE(DIM, variant="pi", scale=2.0).factor(10_000) == 2.0


def test_yarn_ramps_agree_at_the_ends_and_differ_between():
    theta = RoPE(DIM).inv_freq
    turns = 128 * theta / (2 * math.pi)
    gamma = yarn_ramp(theta, 128)
    assert torch.all(gamma[turns >= 32] == 1) and torch.all(gamma[turns <= 1] == 0)
    mid = (turns > 1) & (turns < 32)
    torch.testing.assert_close(gamma[mid], (turns[mid] - 1) / 31)
    by_index = yarn_ramp_by_index(DIM, 10000.0, 128)
    assert torch.all(by_index[turns >= 32] == 1) and torch.all(by_index[turns <= 1] == 0)
    # the measurement: L = 64, s = 4, d = 16 -> up to 0.53 apart in θ
    a = RoPE(16, variant="yarn", train_length=64, scale=4.0).frequencies(256)[0]
    b = RoPE(16, variant="yarn", train_length=64, scale=4.0, ramp="index").frequencies(256)[0]
    assert (a - b).abs().max() == pytest.approx(0.5278, abs=1e-4)
    assert yarn_attention_factor(4.0) == pytest.approx(1 + 0.1 * math.log(4))
    assert RoPE(DIM, variant="yarn", train_length=128).frequencies(128)[1] == 1.0  # in length: plain


def test_rerope_positions_formula():
    r = torch.arange(12)
    assert rerope_positions(r, 4).tolist() == [0, 1, 2, 3] + [4] * 8
    assert rerope_positions(r, 4, 2.0).tolist() == [0, 1, 2, 3, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7.5]


def test_rerope_equals_plain_inside_the_window(qk):
    q, k = qk
    plain = RoPE(DIM)(torch.arange(T), torch.float64).logits(q, k)
    for rope in (RoPE(DIM, variant="rerope", window=T), RoPE(DIM, variant="leaky-rerope", window=T, leak=8)):
        torch.testing.assert_close(rope(torch.arange(T), torch.float64).logits(q, k), plain)
    small = RoPE(DIM, variant="rerope", window=8)(torch.arange(T), torch.float64).logits(q, k)
    near = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs() < 8
    torch.testing.assert_close(small[..., near], plain[..., near])
    assert not torch.allclose(small[..., ~near], plain[..., ~near])


def test_rerope_logits_gradcheck():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    rotary = RoPE(4, variant="leaky-rerope", window=2, leak=3.0, log_n=True, train_length=3)(
        torch.arange(6), torch.float64)
    assert torch.autograd.gradcheck(rotary.logits, (q, k))


def test_log_n_scale_formula():
    s = log_n_scale(torch.arange(1, 513), 128)
    assert torch.all(s[:128] == 1)
    assert s[511].item() == pytest.approx(math.log(512) / math.log(128))


def _attention_reference(attn, x, rope, causal):
    """softmax(post formula logits / √d, masked) V through attn's own projections."""
    b, t, h = x.shape[0], x.shape[1], attn.num_heads
    q, k, v = (z.view(b, t, h, -1).transpose(1, 2) for z in attn.qkv(x).split(attn.split_sizes, dim=-1))
    pos = torch.arange(t)
    theta, factor = rope.frequencies(t)
    logits = complex_logits(q, k, post_relative(pos, rope.variant, rope.window, rope.leak), theta)
    logits = logits * factor**2 / math.sqrt(attn.key_size)
    if rope.log_n:
        logits = logits * log_n_scale(pos + 1, rope.train_length)[:, None]
    if causal:
        logits = logits.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool)), float("-inf"))
    return attn.out((logits.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("options", [
    {"variant": "ntk", "train_length": 8, "log_n": True},
    {"variant": "yarn", "train_length": 8},
    {"variant": "rerope", "window": 6, "log_n": True, "train_length": 8},
    {"variant": "leaky-rerope", "window": 6, "leak": 4.0},
])
def test_attention_paths_agree_with_the_reference(options, causal):
    """SDPA (rotated q/k) and the explicit path give the same output, and both equal
    attention over the formula's logits (ReRoPE: two passes, bidirectional mirrored)."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 2, key_size=DIM, use_sdpa=True).double()
    ref_attn = MultiHeadAttention(32, 2, key_size=DIM, use_sdpa=False).double()
    ref_attn.load_state_dict(attn.state_dict())
    x = torch.randn(2, 20, 32, dtype=torch.float64)
    rope = RoPE(DIM, **options)
    rotary = rope(torch.arange(20), torch.float64)
    y, _ = attn(x, is_causal=causal, rotary=rotary)
    y_ref, _ = ref_attn(x, is_causal=causal, rotary=rotary)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(y, _attention_reference(attn, x, rope, causal))


def test_kv_cache_with_a_scaled_variant_equals_full():
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 2, key_size=DIM).double()
    rope = RoPE(DIM, variant="ntk", scale=4.0, log_n=True, train_length=4)
    x = torch.randn(1, 9, 32, dtype=torch.float64)
    full, _ = attn(x, is_causal=True, rotary=rope(torch.arange(9), torch.float64))
    a, cache = attn(x[:, :5], is_causal=True, rotary=rope(torch.arange(5), torch.float64), use_cache=True)
    b, _ = attn(x[:, 5:], is_causal=True, rotary=rope(torch.arange(5, 9), torch.float64),
                past_key_value=cache)
    torch.testing.assert_close(torch.cat([a, b], 1), full)


def test_rerope_rejects_kv_cache_and_apply():
    attn = MultiHeadAttention(32, 2)
    x = torch.randn(1, 4, 32)
    past = (torch.zeros(1, 2, 3, 16), torch.zeros(1, 2, 3, 16))
    rotary = RoPE(16, variant="rerope", window=2)(torch.arange(4))
    with pytest.raises(ValueError, match="KV cache"):
        attn(x, past_key_value=past, rotary=rotary)
    with pytest.raises(ValueError, match="call logits"):
        rotary.apply(torch.zeros(1, 2, 4, 16), torch.zeros(1, 2, 4, 16))


@pytest.mark.parametrize("call, match", [
    (lambda: RoPE(DIM, variant="rerope", window=-2), "window must be a positive int, got -2"),
    (lambda: RoPE(DIM, variant="rerope"), "needs a window"),
    (lambda: RoPE(DIM, variant="pi", scale=0.5), "must be >= 1, got 0.5"),
    (lambda: RoPE(DIM, variant="rerope", window=4, scale=2.0), "scale is used by the variants"),
    (lambda: ntk_kappa(0.9, DIM), "must be >= 1, got 0.9"),
    (lambda: RoPE(DIM, variant="leaky-rerope", window=4, leak=1.0), "leak k > 1, got 1.0"),
    (lambda: RoPE(DIM, variant="yarn"), "needs train_length"),
    (lambda: RoPE(DIM, variant="yarn", train_length=8, ramp="log"), "ramp must be one of"),
    (lambda: RoPE(DIM, variant="yarn", train_length=8, alpha=32.0), "0 < alpha < beta"),
    (lambda: RoPE(DIM, variant="alibi"), "variant must be one of"),
    (lambda: RoPE(DIM, log_n=True), "needs train_length"),
    (lambda: RoPE(7), "positive even number, got 7"),
    (lambda: RoPE(8, base=1.0), "base must be > 1"),
    (lambda: RoPE(8)(torch.tensor([-1, 0])), ">= 0"),
    (lambda: RoPE(8)(torch.tensor([0.5])), "integers"),
    (lambda: RoPE(8)(torch.arange(3)).rotate(torch.randn(1, 1, 3, 6)), "does not match"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_casting_the_model_leaves_the_angles_exact():
    rope = RoPE(DIM).to(torch.bfloat16)
    assert rope.inv_freq.dtype == torch.float64
    cos = rope(torch.arange(T), torch.float64).cos
    torch.testing.assert_close(cos, RoPE(DIM)(torch.arange(T), torch.float64).cos, rtol=0, atol=0)
