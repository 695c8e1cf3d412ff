import pytest
import torch

from kexue.models import TTA, Bert, BertConfig, masked_pseudo_log_likelihood

CFG = BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                 intermediate_size=48, max_position_embeddings=16, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)


def _tta(**kw):
    torch.manual_seed(0)
    return TTA(CFG, **kw).eval()


def test_output_i_never_sees_token_i_in_any_layer(one_thread):
    model = _tta()
    ids = torch.randint(5, 30, (1, 9))
    with torch.no_grad():
        base = model(ids)
        for i in range(9):
            changed = ids.clone()
            changed[0, i] = (ids[0, i] + 7) % 30
            out = model(changed)
            torch.testing.assert_close(out.last_hidden_state[0, i], base.last_hidden_state[0, i],
                                       rtol=0, atol=1e-6)
            others = torch.arange(9) != i
            assert (out.logits[0, others] - base.logits[0, others]).abs().max() > 1e-4
    # without the diagonal mask the token leaks into its own output (the test has power)
    leaky = _tta(diagonal_mask=False)
    with torch.no_grad():
        changed = ids.clone()
        changed[0, 4] = (ids[0, 4] + 7) % 30
        assert (leaky(changed).logits[0, 4] - leaky(ids).logits[0, 4]).abs().max() > 1e-4


def test_pseudo_log_likelihood_is_one_pass_and_ignores_padding(one_thread):
    model = _tta()
    ids = torch.randint(5, 30, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    with torch.no_grad():
        pll = model.pseudo_log_likelihood(ids, mask)
        logp = model(ids, mask).logits.log_softmax(-1)
        direct = torch.stack([sum(logp[b, i, ids[b, i]] for i in range(int(mask[b].sum())))
                              for b in range(2)])
        torch.testing.assert_close(pll, direct)
        alone = model.pseudo_log_likelihood(ids[1:, :4])
    torch.testing.assert_close(pll[1:], alone, rtol=1e-5, atol=1e-5)
    single = model.pseudo_log_likelihood(torch.tensor([[7]]))  # nothing to see: finite
    assert torch.isfinite(single).all()


def test_masked_pseudo_log_likelihood_equals_n_masked_passes(one_thread):
    torch.manual_seed(1)
    bert = Bert(CFG, mlm=True, pooler=False).eval()
    ids = torch.randint(5, 30, (3, 6))
    mask = torch.ones_like(ids)
    mask[2, 3:] = 0
    with torch.no_grad():
        got = masked_pseudo_log_likelihood(bert, ids, 4, mask, batch_size=5)
        want = []
        for b in range(3):
            n = int(mask[b].sum())
            total = 0.0
            for i in range(n):
                x = ids[b: b + 1, :n].clone()
                x[0, i] = 4
                total += bert(x).logits[0, i].log_softmax(-1)[ids[b, i]]
            want.append(total)
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-5, atol=1e-5)


def test_bad_input():
    model = _tta()
    with pytest.raises(ValueError, match="integer"):
        model(torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, seq\) = \(1, 3\)"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 4))
    with pytest.raises(ValueError, match="out of range"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        TTA(CFG, num_attention_heads=5)
