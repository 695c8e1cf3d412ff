import pytest
import torch

from kexue.data import mask_tokens


def test_rates_and_labels():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (400, 250), generator=g)
    inputs, labels = mask_tokens(ids, mask_token_id=3, vocab_size=100, generator=g, num_special=5)
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen])
    assert abs(chosen.float().mean().item() - 0.15) < 0.005
    masked = (inputs == 3) & chosen
    kept = (inputs == ids) & chosen
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.01
    # kept = the 10% kept plus random draws that hit the original id
    assert abs(kept.sum().item() / chosen.sum().item() - (0.1 + 0.1 / 95)) < 0.01
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert (inputs[chosen & ~(inputs == 3)] >= 5).all()


def test_padding_and_special_tokens_are_never_chosen():
    ids = torch.tensor([[1, 7, 8, 9, 2, 0, 0]] * 200)
    mask = (ids != 0).long()
    _, labels = mask_tokens(ids, 4, 50, torch.Generator().manual_seed(1), attention_mask=mask,
                            num_special=3, mask_prob=0.5)
    chosen = labels != -100
    assert not chosen[:, [0, 4, 5, 6]].any() and chosen[:, 1:4].any()


def test_same_generator_same_masks():
    ids = torch.arange(60).reshape(3, 20) + 5
    a = mask_tokens(ids, 1, 80, torch.Generator().manual_seed(3))
    b = mask_tokens(ids, 1, 80, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("kwargs, match", [
    ({"mask_prob": 0.0}, "0 < mask_prob < 1"),
    ({"num_special": 80}, "num_special"),
    ({"attention_mask": torch.ones(2, 3)}, "one shape"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mask_tokens(torch.ones(3, 4, dtype=torch.long), 1, 80, **kwargs)
