import pytest
import torch

from kexue.nn.masks import (
    causal_mask,
    combine_masks,
    padding_mask,
    permutation_mask,
    unilm_mask,
    window_mask,
)


def test_padding_mask():
    am = torch.tensor([[1, 1, 0], [1, 0, 0]])
    m = padding_mask(am)
    assert m.shape == (2, 1, 3) and m.dtype == torch.bool
    assert m[0, 0].tolist() == [True, True, False] and m[1, 0].tolist() == [True, False, False]


@pytest.mark.parametrize("q,k", [(5, 5), (1, 4), (3, 7)])
def test_causal_mask_brute_force(q, k):
    m = causal_mask(q, k)
    offset = k - q
    for i in range(q):
        for j in range(k):
            assert bool(m[i, j]) == (j <= i + offset)


def _unilm_reference(src_len, tgt_len, pad_len):
    """The post's definition: source bidirectional, target sees source + earlier target."""
    n = src_len + tgt_len + pad_len
    ref = torch.zeros(n, n, dtype=torch.bool)
    for i in range(src_len + tgt_len):
        for j in range(src_len + tgt_len):
            if j < src_len:
                ref[i, j] = True  # everyone real sees the whole source
            elif i >= src_len:
                ref[i, j] = j <= i  # target sees earlier target
    return ref


def test_window_mask():
    m = window_mask(6, 3)
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    assert torch.equal(m, (j <= i) & (i - j < 3))
    sink = window_mask(6, 2, sink=1)
    assert sink[:, 0].all() and sink[5].tolist() == [True, False, False, False, True, True]
    assert torch.equal(window_mask(6, 100), torch.tril(torch.ones(6, 6, dtype=torch.bool)))
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        window_mask(8, 0)
    with pytest.raises(ValueError, match="sink >= 0"):
        window_mask(8, 2, sink=-1)


def test_unilm_mask_against_definition():
    cases = [(3, 2, 0), (4, 3, 2), (2, 5, 1)]
    n = max(sum(c) for c in cases)
    seg = torch.zeros(len(cases), n, dtype=torch.long)
    am = torch.zeros(len(cases), n, dtype=torch.long)
    for b, (s, t, p) in enumerate(cases):
        seg[b, s : s + t] = 1
        am[b, : s + t] = 1
    m = unilm_mask(seg, am)
    assert m.shape == (len(cases), n, n)
    for b, (s, t, p) in enumerate(cases):
        pad_rest = n - s - t - p
        ref = _unilm_reference(s, t, p + pad_rest)
        real = s + t
        assert torch.equal(m[b, :real], ref[:real]), b
        assert not m[b, :, real:].any()  # nobody attends to padding


def test_unilm_mask_cumsum_rule_without_padding_mask():
    seg = torch.tensor([[0, 0, 1, 1, 0]])  # trailing pad has segment 0
    m = unilm_mask(seg)
    idx = seg.cumsum(1)[0]
    for i in range(5):
        for j in range(5):
            assert bool(m[0, i, j]) == bool(idx[j] <= idx[i])
    assert m[0, 3, 4]  # the pitfall: last target token sees the pad unless masked
    assert not unilm_mask(seg, torch.tensor([[1, 1, 1, 1, 0]]))[0, 3, 4]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permutation_mask_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(6, generator=g) for _ in range(2)])
    m = permutation_mask(order)
    assert m.shape == (2, 6, 6)
    for b in range(2):
        step_of = {int(p): t for t, p in enumerate(order[b])}
        for i in range(6):
            for j in range(6):
                assert bool(m[b, i, j]) == (step_of[j] <= step_of[i])
    # the identity order is the causal mask
    assert torch.equal(permutation_mask(torch.arange(6)), causal_mask(6))


def test_combine_masks():
    a = causal_mask(3)
    p = padding_mask(torch.tensor([[1, 1, 0]]))
    c = combine_masks(a, None, p)
    assert c.shape == (1, 3, 3)
    assert torch.equal(c[0], a & torch.tensor([True, True, False]))
    assert combine_masks(None) is None
    with pytest.raises(ValueError, match="boolean"):
        combine_masks(a, a.float())


def test_errors():
    with pytest.raises(ValueError, match=r"2-D \(batch, seq\)"):
        unilm_mask(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        unilm_mask(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"shape of segment_ids \(1, 2\).*\(1, 3\)"):
        unilm_mask(torch.tensor([[0, 1]]), torch.tensor([[1, 1, 1]]))
    with pytest.raises(ValueError, match="permutation of 0..2"):
        permutation_mask(torch.tensor([0, 0, 2]))
    with pytest.raises(ValueError, match="q_len=3, k_len=2"):
        causal_mask(3, 2)
