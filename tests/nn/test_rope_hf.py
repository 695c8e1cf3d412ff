"""kexue.nn.apply_rope on a Hugging Face Llama model, against transformers' rope_type values."""

import math

import pytest
import torch

from kexue.nn import RoPE, apply_rope, log_n_attention

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

pytestmark = pytest.mark.usefixtures("one_thread")
transformers.logging.set_verbosity_error()

D, L = 16, 16  # head_dim; max_position_embeddings = the training length


def llama_config(rope_parameters=None, layers=2):
    params = {"rope_type": "default", "rope_theta": 10000.0, **(rope_parameters or {})}
    return transformers.LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, head_dim=D, max_position_embeddings=L,
        rope_parameters=params, initializer_range=0.2,
    )  # fmt: skip


def llama(rope_parameters=None, layers=2):
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(llama_config(rope_parameters, layers)).eval()


@pytest.mark.parametrize("train_length, s, d, base", [(16, 4.0, 16, 10000.0), (64, 4.0, 16, 10000.0),
                                                      (4096, 8.0, 128, 500000.0), (2048, 2.5, 64, 10000.0)])
def test_frequencies_equal_transformers_where_the_formulas_agree(train_length, s, d, base):
    cfg = transformers.LlamaConfig(hidden_size=2 * d, num_attention_heads=2, head_dim=d,
                                   max_position_embeddings=train_length)
    def hf(rope_type, seq_len=None, **params):
        cfg.rope_parameters = {"rope_type": rope_type, "rope_theta": base, **params}
        inv_freq, factor = ROPE_INIT_FUNCTIONS[rope_type](cfg, seq_len=seq_len)
        return inv_freq.double(), factor

    def ours(variant, seq_len, **kw):
        return RoPE(d, base, variant, **kw).frequencies(seq_len)

    n = int(s * train_length)
    for (a, fa), (b, fb) in [
        (ours("pi", n, scale=s), hf("linear", factor=s)),
        (ours("ntk", n, train_length=train_length), hf("dynamic", seq_len=n, factor=1.0)),
        (ours("yarn", n, train_length=train_length, scale=s, ramp="index"),
         hf("yarn", factor=s, original_max_position_embeddings=train_length)),
    ]:
        torch.testing.assert_close(a, b, rtol=2e-6, atol=0)
        assert fa == pytest.approx(fb)
    # the post's ramp (over turns) is not transformers' (over the index)
    turns = ours("yarn", n, train_length=train_length, scale=s)[0]
    assert (turns - hf("yarn", factor=s, original_max_position_embeddings=train_length)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("options, rope_parameters", [
    ({"variant": "pi", "scale": 4.0}, {"rope_type": "linear", "factor": 4.0}),
    ({"variant": "ntk", "train_length": L}, {"rope_type": "dynamic", "factor": 1.0}),
    ({"variant": "yarn", "scale": 4.0, "train_length": L, "ramp": "index"},
     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": L}),
])
def test_apply_rope_on_llama_equals_transformers_rope_type(options, rope_parameters):
    ref = llama(rope_parameters)
    plain = llama()
    plain.load_state_dict(ref.state_dict())
    ids = torch.randint(0, 50, (2, 4 * L), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = plain(ids).logits
        ours = apply_rope(plain, **options)(ids).logits
        torch.testing.assert_close(ours, ref(ids).logits, rtol=1e-4, atol=1e-4)
    assert (ours - before).abs().max() > 1e-2  # the variant did change the model
    assert type(plain.model.rotary_emb).__name__ == "HFRotaryEmbedding"


def test_log_n_on_llama_scales_the_queries_beyond_the_training_length():
    """One layer: log n leaves positions < L_train alone, and the last position equals the
    plain model with its query projection multiplied by log(n)/log(L_train)."""
    plain = llama(layers=1)
    model = llama(layers=1)
    ids = torch.randint(0, 50, (1, 3 * L), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = plain(ids).logits
        apply_rope(model, "plain", log_n=True, train_length=L)
        after = model(ids).logits
        torch.testing.assert_close(after[:, :L], before[:, :L], rtol=1e-5, atol=1e-5)
        n = ids.shape[1]
        plain.model.layers[0].self_attn.q_proj.weight.mul_(math.log(n) / math.log(L))
        torch.testing.assert_close(after[:, -1], plain(ids).logits[:, -1], rtol=1e-4, atol=1e-4)
        assert (after[:, -1] - before[:, -1]).abs().max() > 1e-2
        # switching back without log n restores sdpa and the plain logits
        apply_rope(model, "plain")
        assert model.config._attn_implementation == "sdpa"
        torch.testing.assert_close(model(ids).logits, before, rtol=1e-5, atol=1e-5)


def test_log_n_attention_needs_positions():
    q = k = v = torch.zeros(1, 1, 3, 4)
    with pytest.raises(ValueError, match="position_ids"):
        log_n_attention(8)(torch.nn.Module(), q, k, v, None)


def test_apply_rope_errors():
    with pytest.raises(ValueError, match="needs two logit passes"):
        apply_rope(llama(layers=1), "rerope", window=4)
    with pytest.raises(ValueError, match="has no RoPE module"):
        apply_rope(torch.nn.Linear(2, 2), "pi", scale=2.0)
    with pytest.raises(ValueError, match=r"frequencies are not base\^\(-2i/d\)"):
        apply_rope(llama({"rope_type": "linear", "factor": 2.0}, layers=1), "ntk", scale=2.0)
    with pytest.raises(ValueError, match="log_n needs train_length"):
        apply_rope(llama(layers=1), "plain", log_n=True)
    with pytest.raises(ValueError, match=r"unknown apply_rope options \['interleaved', 'windw'\]"):
        apply_rope(llama(layers=1), "rerope", windw=4, interleaved=True)
