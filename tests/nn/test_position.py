import math

import pytest
import torch

from kexue.nn.position import (
    LearnedPositionEmbedding,
    RotaryEmbedding,
    SinusoidalPositionEmbedding,
    apply_rotary,
)


def _complex_rope(x, pos, base=10000.0, pos_scale=1.0):
    """Reference: pair (x_2i, x_2i+1) as a complex number times exp(j m θ_i)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())
    rot = torch.polar(torch.ones_like(theta), pos.double()[:, None] * pos_scale * theta)
    return torch.view_as_real(z * rot).flatten(-2)


def test_rope_equals_complex_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 16, dtype=torch.float64)  # (batch, heads, seq, dim)
    pos = torch.tensor([0, 1, 2, 5, 100, 1000, 4095])
    cos, sin = RotaryEmbedding(16)(pos, dtype=torch.float64)
    assert cos.shape == (1, 1, 7, 16)
    torch.testing.assert_close(
        apply_rotary(x, cos, sin), _complex_rope(x, pos), rtol=1e-12, atol=1e-12
    )


def test_rope_dot_product_depends_on_relative_position_only():
    torch.manual_seed(1)
    q, k = torch.randn(2, 1, 1, 8, dtype=torch.float64)
    rope = RotaryEmbedding(8, base=500.0)

    def score(m, n):
        cq, sq = rope(torch.tensor([m]), dtype=torch.float64)
        ck, sk = rope(torch.tensor([n]), dtype=torch.float64)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    torch.testing.assert_close(score(3, 10), score(103, 110))
    assert not torch.allclose(score(3, 10), score(3, 11))


def test_rope_half_layout_is_a_feature_permutation_of_interleaved():
    torch.manual_seed(2)
    x = torch.randn(1, 2, 5, 8, dtype=torch.float64)
    pos = torch.arange(5)
    perm = torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])  # interleaved -> halves
    c1, s1 = RotaryEmbedding(8)(pos, dtype=torch.float64)
    c2, s2 = RotaryEmbedding(8, interleaved=False)(pos, dtype=torch.float64)
    out_i = apply_rotary(x, c1, s1)
    out_h = apply_rotary(x[..., perm], c2, s2, interleaved=False)
    torch.testing.assert_close(out_h, out_i[..., perm])


def test_rope_scaling_hook_position_interpolation():
    torch.manual_seed(3)
    x = torch.randn(1, 1, 4, 8, dtype=torch.float64)
    pos = torch.tensor([0, 3, 9, 30])
    seen = {}

    def pi(inv_freq, seq_len):
        seen["seq_len"] = seq_len
        return inv_freq / 4.0, 0.5

    cos, sin = RotaryEmbedding(8, scaling=pi)(pos, dtype=torch.float64)
    assert seen["seq_len"] == 31
    ref = 0.5 * _complex_rope(x, pos, pos_scale=0.25)
    torch.testing.assert_close(apply_rotary(x, cos, sin), ref)


def test_sinusoidal_values():
    pe = SinusoidalPositionEmbedding(6)(torch.tensor([[0, 7]]))
    assert pe.shape == (1, 2, 6)
    for i in range(3):
        theta = 10000 ** (-2 * i / 6)
        assert pe[0, 1, 2 * i].item() == pytest.approx(math.sin(7 * theta), abs=1e-6)
        assert pe[0, 1, 2 * i + 1].item() == pytest.approx(math.cos(7 * theta), abs=1e-6)
    assert torch.equal(pe[0, 0], torch.tensor([0.0, 1.0] * 3))


def test_errors():
    with pytest.raises(ValueError, match="even number, got 7"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="base must be > 1"):
        RotaryEmbedding(8, base=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        RotaryEmbedding(8)(torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="integers"):
        RotaryEmbedding(8)(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="out of range.*4 learned positions"):
        LearnedPositionEmbedding(4, 8)(torch.tensor([[0, 4]]))
    cos, sin = RotaryEmbedding(8)(torch.arange(3))
    with pytest.raises(ValueError, match="does not match"):
        apply_rotary(torch.randn(1, 1, 3, 6), cos, sin)
