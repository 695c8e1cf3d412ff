import pytest
import torch

from kexue.nn import MultiHeadAttention, Packing, real_tokens


def _keep():
    return torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)


def test_pack_unpack_round_trip_and_zeros_at_padding():
    keep = _keep()
    packing = Packing.from_mask(keep)
    assert packing.num_tokens == 4 and packing.indices.tolist() == [0, 1, 2, 8]
    x = torch.randn(3, 4, 5)
    packed = packing.pack(x)
    torch.testing.assert_close(packed, x[keep], rtol=0, atol=0)  # row-major, as boolean indexing
    back = packing.unpack(packed)
    torch.testing.assert_close(back, x * keep[..., None], rtol=0, atol=0)


def test_pack_unpack_gradients():
    packing = Packing.from_mask(_keep())
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: packing.unpack(packing.pack(x) * 2), (x,))
    y = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda y: packing.pack(packing.unpack(y).tanh()), (y,))


def test_real_tokens_from_masks():
    assert real_tokens(None, 2, 3) is None
    assert real_tokens(torch.ones(2, 1, 1, 3, dtype=torch.bool), 2, 3) is None  # nothing to skip
    keys = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)[:, None, None]  # (b, 1, 1, k)
    assert real_tokens(keys, 2, 3).indices.tolist() == [0, 1, 2, 3, 4]
    cached = real_tokens(keys, 2, 1)  # one new token after 2 cached ones: the last key column
    assert cached.indices.tolist() == [0]
    # a (q, k) mask: a token no query sees is padding, whatever it sees itself
    m = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.bool)[None, None]
    assert real_tokens(m, 2, 3).indices.tolist() == [0, 1, 3, 4]  # broadcast over the batch


def test_packed_attention_equals_padded_on_real_tokens():
    torch.manual_seed(0)
    keep = _keep()
    mask = keep[:, None, None, :]
    packing = Packing.from_mask(keep)
    x = torch.randn(3, 4, 16, dtype=torch.float64)
    attn = MultiHeadAttention(16, 4, key_size=3, use_sdpa=False).double()
    reference, _ = attn(x, mask)  # the readable explicit path on the padded batch
    for use_sdpa in (True, False):
        attn.use_sdpa = use_sdpa
        padded, _ = attn(x, mask)
        packed, _ = attn(packing.pack(x), mask, packing=packing)
        torch.testing.assert_close(padded[keep], reference[keep], rtol=0, atol=1e-12)
        torch.testing.assert_close(packed, reference[keep], rtol=0, atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="keep must be a boolean"):
        Packing.from_mask(torch.ones(2, 3))
    packing = Packing.from_mask(_keep())
    with pytest.raises(ValueError, match=r"expected a \(3, 4, ...\) tensor"):
        packing.pack(torch.randn(3, 5, 2))
    with pytest.raises(ValueError, match="expected 4 packed rows"):
        packing.unpack(torch.randn(5, 2))
    attn = MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match=r"x must be a float \(n, 16\)"):
        attn(torch.randn(3, 4, 16), packing=packing)
