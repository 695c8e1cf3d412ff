import pytest
import torch
import transformers

from kexue.generate import CausalLM
from kexue.models import GPT2, GPT2Config, GPT2Output

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A random transformers GPT-2 and the kexue model loaded from its saved folder."""
    folder = tmp_path_factory.mktemp("gpt2")
    cfg = transformers.GPT2Config(
        vocab_size=101, n_positions=48, n_embd=32, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    ref = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if "ln" in n or n.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    ref.save_pretrained(folder)
    return ref, GPT2.from_pretrained(folder).eval(), folder


def test_logits_equal_transformers(pair):
    ref, ours, _ = pair
    ids = torch.randint(0, 101, (3, 17))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, ref(ids).logits, rtol=0, atol=1e-5)
    assert ours.config.intermediate_size is None and ours.config.inner_size == 128


def test_logits_equal_transformers_left_padding(pair):
    ref, ours, _ = pair
    ids = torch.randint(0, 101, (2, 9))
    am = torch.ones(2, 9, dtype=torch.long)
    am[1, :3] = 0
    pos = (am.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        a = ours(ids, attention_mask=am).logits
        b = ref(ids, attention_mask=am, position_ids=pos).logits
    real = am.bool()
    torch.testing.assert_close(a[real], b[real], rtol=0, atol=1e-5)


def test_kv_cache_logits_equal_full(pair):
    _, ours, _ = pair
    ids = torch.randint(0, 101, (2, 12))
    with torch.no_grad():
        full = ours(ids)
        a = ours(ids[:, :5], use_cache=True)
        b = ours(ids[:, 5:6], a.past_key_values, use_cache=True)
        c = ours(ids[:, 6:], b.past_key_values, use_cache=True)
    assert isinstance(full, GPT2Output) and full.past_key_values is None
    torch.testing.assert_close(torch.cat([a.logits, b.logits, c.logits], 1), full.logits,
                               rtol=1e-5, atol=1e-5)
    cache = c.past_key_values
    assert len(cache) == 2 and cache[0][0].shape == (2, 4, 12, 8)


def test_save_pretrained_round_trip(pair, tmp_path):
    ref, ours, _ = pair
    ours.save_pretrained(tmp_path)
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 101, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, ref(ids).logits, rtol=0, atol=1e-6)
    assert GPT2Config.from_json(tmp_path) == ours.config


def test_recompute_and_options():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     max_position_embeddings=16)  # fmt: skip
    model = GPT2(cfg, attention={"key_size": 4, "talking_heads": True}).train()
    ids = torch.randint(0, 30, (2, 8))

    def grads():
        torch.manual_seed(1)
        model.zero_grad()
        model(ids).logits.logsumexp(-1).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    g0 = grads()
    model.blocks.recompute = True
    for a, b in zip(g0, grads()):
        torch.testing.assert_close(a, b)


def test_bad_input(pair, tmp_path):
    _, ours, _ = pair
    with pytest.raises(ValueError, match="position id 48 is out of range"):
        ours(torch.zeros(1, 49, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, past \+ seq\)"):
        ours(torch.zeros(1, 4, dtype=torch.long), attention_mask=torch.ones(1, 5))
    with pytest.raises(ValueError, match="integer"):
        ours(torch.zeros(1, 4))
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    ))  # fmt: skip
    bert.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="expected a 'gpt2' checkpoint, config.json says 'bert'"):
        GPT2.from_pretrained(tmp_path)


# --------------------------------------------------------------------------- RoPE decoder

ROPE_VARIANTS = [
    {"variant": "pi", "train_length": 8},
    {"variant": "ntk", "train_length": 8, "log_n": True},
    {"variant": "yarn", "train_length": 8},
    {"variant": "rerope", "window": 8},
    {"variant": "leaky-rerope", "window": 8, "leak": 4.0, "log_n": True, "train_length": 8},
]


def _rope_gpt2(layers=2, **kw):
    cfg = GPT2Config(vocab_size=30, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                     hidden_dropout_prob=0.0, embedding_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, position_embedding_type="rope")  # fmt: skip
    return GPT2(cfg, **kw).eval()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("options", ROPE_VARIANTS)
def test_rope_variant_from_config_call_or_apply_rope(options):
    """A RoPE decoder takes any variant from its config, for one call (rope=) or through
    apply_rope — the same logits; within the training length / window it is plain RoPE."""
    from kexue.nn import RoPE, apply_rope

    torch.manual_seed(0)
    plain = _rope_gpt2()
    model = _rope_gpt2(rope_options=options)
    model.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 30, (2, 20))
    with torch.no_grad():
        out = model(ids).logits
        torch.testing.assert_close(plain(ids, rope=RoPE(8, **options)).logits, out, rtol=0, atol=0)
        torch.testing.assert_close(model(ids[:, :8]).logits, plain(ids[:, :8]).logits)
        assert (out - plain(ids).logits).abs().max() > 1e-5
        torch.testing.assert_close(apply_rope(plain, **options)(ids).logits, out, rtol=0, atol=0)


def test_rope_decoder_cache_padding_and_round_trip(tmp_path):
    from kexue.nn import RoPE

    torch.manual_seed(0)
    model = _rope_gpt2()
    assert model.wpe is None and "wpe.weight" not in model.state_dict()
    ids = torch.randint(0, 30, (2, 12))
    ntk = RoPE(8, variant="ntk", scale=2.0)
    with torch.no_grad():
        for rope in (None, ntk):
            full = model(ids, rope=rope).logits
            first = model(ids[:, :5], use_cache=True, rope=rope)
            a, cache = first.logits, first.past_key_values
            b = model(ids[:, 5:], cache, use_cache=True, rope=rope).logits
            torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=1e-5, atol=1e-5)
        # left padding: the padded row's real tokens get the unpadded row's logits
        am = torch.ones(2, 12, dtype=torch.long)
        am[1, :4] = 0
        padded = model(ids, attention_mask=am).logits
        torch.testing.assert_close(padded[1, 4:], model(ids[1:, 4:]).logits[0], rtol=1e-5, atol=1e-5)
    model.save_pretrained(tmp_path)
    again = GPT2.from_pretrained(tmp_path).eval()
    assert again.config == model.config and again.rope is not None
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_rope_decoder_window_mask_and_bidirectional():
    from kexue.nn import window_mask

    torch.manual_seed(0)
    model = _rope_gpt2(layers=1)
    ids = torch.randint(0, 30, (1, 10))
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] + 1) % 30
    with torch.no_grad():
        # a window of 3 keys: in one layer, position i >= 3 cannot see token 0
        mask = window_mask(10, 3)[None]
        a, b = model(ids, attention_mask=mask).logits, model(changed, attention_mask=mask).logits
        torch.testing.assert_close(a[0, 3:], b[0, 3:], rtol=0, atol=0)
        assert not torch.allclose(a[0, :3], b[0, :3])
        torch.testing.assert_close(model(ids, attention_mask=window_mask(10, 10)[None]).logits, model(ids).logits)
        # is_causal=False: the first position sees the last token
        last = ids.clone()
        last[0, -1] = (ids[0, -1] + 1) % 30
        assert torch.equal(model(ids).logits[0, 0], model(last).logits[0, 0])
        assert not torch.allclose(model(ids, is_causal=False).logits[0, 0], model(last, is_causal=False).logits[0, 0])


def test_rope_decoder_bad_input(pair):
    from kexue.nn import RoPE

    _, absolute, _ = pair
    with pytest.raises(ValueError, match="rope= needs a model with position_embedding_type='rope'"):
        absolute(torch.zeros(1, 4, dtype=torch.long), rope=RoPE(8))
    model = _rope_gpt2()
    ids = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"3-D attention_mask must be boolean \(batch\|1, seq, past \+ seq\)"):
        model(ids, attention_mask=torch.ones(1, 4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="must be boolean"):
        model(ids, attention_mask=torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="position_embedding_type must be one of"):
        _rope_gpt2(position_embedding_type="sinusoidal")
    with pytest.raises(ValueError, match="unknown rope_options"):
        _rope_gpt2(rope_options={"windw": 4})


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("position_embedding_type", ["absolute", "rope"])
def test_unpadded_equals_padded_left_padding_and_kv_cache(position_embedding_type):
    """Left-padded rows of lengths 7, 1 and 0 (all padding): logits, gradients and
    KV-cached greedy decoding equal the computation on the padded batch."""
    torch.manual_seed(0)
    model = GPT2(GPT2Config(vocab_size=101, max_position_embeddings=48, hidden_size=32,
                            num_hidden_layers=2, num_attention_heads=4,
                            position_embedding_type=position_embedding_type, hidden_dropout_prob=0.0,
                            embedding_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
                 ).double().train()  # fmt: skip
    ids = torch.randint(0, 101, (3, 7))
    am = torch.tensor([[1] * 7, [0] * 6 + [1], [0] * 7])
    real = am.bool()
    outs, grads = [], []
    for unpad in (True, False):
        model.unpad = unpad
        model.zero_grad(set_to_none=True)
        logits = model(ids, attention_mask=am).logits
        logits[real].logsumexp(-1).sum().backward()
        outs.append(logits)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(outs[0][real], outs[1][real], rtol=0, atol=1e-5)
    assert outs[0][~real].abs().max() == 0
    for name in grads[1]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=0, atol=1e-5, msg=name)
    model.eval()
    steps = []  # kexue.generate's CausalLM adapter: the prompt, then cached single tokens
    for unpad in (True, False):
        model.unpad = unpad
        with torch.no_grad():
            logits, cache = CausalLM(model)(ids[:2], None, attention_mask=am[:2])
            step = [logits]
            for token in (5, 9, 3):
                logits, cache = CausalLM(model)(torch.full((2, 1), token), cache)
                step.append(logits)
        steps.append(torch.stack(step))
    model.unpad = True
    torch.testing.assert_close(steps[0], steps[1], rtol=0, atol=1e-5)
