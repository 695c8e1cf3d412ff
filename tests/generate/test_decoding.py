import pytest
import torch
import transformers

from kexue.generate import CausalLM, UniLM, filter_logits, generate
from kexue.models import GPT2, Bert, BertConfig
from kexue.nn import unilm_mask

transformers.logging.set_verbosity_error()
VOCAB = 101


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A random transformers GPT-2 and the kexue model loaded from its saved folder."""
    folder = tmp_path_factory.mktemp("gpt2")
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=48, n_embd=32, n_layer=2, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  initializer_range=0.3)  # peaked: beams finish at an eos
    torch.manual_seed(0)
    ref = transformers.GPT2LMHeadModel(cfg).eval()
    ref.save_pretrained(folder)
    return ref, GPT2.from_pretrained(folder).eval()


def _hf(ref, prompt, n, **kw):
    out = ref.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                       do_sample=False, **kw)
    return out[:, prompt.shape[1]:]


def test_greedy_equals_transformers_with_and_without_cache(pair, one_thread):
    ref, ours = pair
    prompt = torch.randint(0, VOCAB, (3, 4), generator=torch.Generator().manual_seed(1))
    cached = generate(CausalLM(ours), prompt, 10)
    uncached = generate(CausalLM(ours, use_cache=False), prompt, 10)
    assert cached.shape == (3, 10) and torch.equal(cached, uncached)
    assert torch.equal(cached, _hf(ref, prompt, 10, pad_token_id=0))


@pytest.mark.parametrize(("length_penalty", "early_stopping"),
                         [(1.0, False), (1.0, True), (0.5, "never"), (2.0, False), (-1.0, "never")])
def test_beam_search_equals_transformers(pair, one_thread, length_penalty, early_stopping):
    ref, ours = pair
    ended = 0
    for seed in range(3):
        prompt = torch.randint(0, VOCAB, (3, 3), generator=torch.Generator().manual_seed(seed))
        greedy = generate(CausalLM(ours), prompt, 12)
        for eos in (int(greedy.flatten().mode().values), int(greedy[1, 2])):
            kw = {"num_beams": 4, "eos_token_id": eos, "pad_token_id": 99,
                  "length_penalty": length_penalty, "early_stopping": early_stopping}
            ours_out = generate(CausalLM(ours), prompt, 12, **kw)
            assert torch.equal(ours_out, _hf(ref, prompt, 12, **kw))
            ended += int((ours_out == eos).any(1).sum())
    assert ended > 0  # the finished-hypothesis logic was exercised
    uncached = generate(CausalLM(ours, use_cache=False), prompt, 12, **kw)
    assert torch.equal(ours_out, uncached)


def test_beam_width_one_equals_greedy(pair, one_thread):
    _, ours = pair
    prompt = torch.randint(0, VOCAB, (4, 3), generator=torch.Generator().manual_seed(3))
    plain = generate(CausalLM(ours), prompt, 10)
    eos = int(plain[1, 4])
    greedy = generate(CausalLM(ours), prompt, 10, eos_token_id=eos, pad_token_id=0)
    beam = generate(CausalLM(ours), prompt, 10, num_beams=1, eos_token_id=eos, pad_token_id=0)
    from kexue.generate.decoding import _beam_search  # the beam path itself, at width 1

    beam1 = _beam_search(CausalLM(ours), prompt, 10, 1, 1.0, True, eos, 0, [], None, {})
    assert torch.equal(beam, greedy) and torch.equal(beam1, greedy)
    assert (greedy == 0).any()  # a row ended early and was padded


def test_sampling_cache_equals_no_cache_and_follows_the_generator(pair, one_thread):
    _, ours = pair
    prompt = torch.randint(0, VOCAB, (3, 3), generator=torch.Generator().manual_seed(4))
    kw = {"do_sample": True, "temperature": 0.8, "top_k": 20, "top_p": 0.9}
    a = generate(CausalLM(ours), prompt, 12, generator=torch.Generator().manual_seed(5), **kw)
    b = generate(CausalLM(ours, use_cache=False), prompt, 12,
                 generator=torch.Generator().manual_seed(5), **kw)
    c = generate(CausalLM(ours), prompt, 12, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_left_padded_prompt_matches_unpadded_rows(pair, one_thread):
    _, ours = pair
    short = torch.tensor([[5, 6]])
    long = torch.tensor([[7, 8, 9, 10]])
    batch = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    both = generate(CausalLM(ours), batch, 6, attention_mask=mask)
    assert torch.equal(both[0], generate(CausalLM(ours), short, 6)[0])
    assert torch.equal(both[1], generate(CausalLM(ours), long, 6)[0])


def test_logits_processor_hook(pair, one_thread):
    _, ours = pair
    prompt = torch.randint(0, VOCAB, (2, 3), generator=torch.Generator().manual_seed(7))
    plain = generate(CausalLM(ours), prompt, 8)
    banned = int(plain[0, 0])
    seen = []

    def ban(generated, scores):
        seen.append(tuple(generated.shape))
        return scores.index_fill(1, torch.tensor([banned]), float("-inf"))

    out = generate(CausalLM(ours), prompt, 8, logits_processor=ban)
    assert not (out == banned).any() and not torch.equal(out, plain)
    assert seen == [(2, t) for t in range(8)]  # called every step with the tokens so far

    def force(generated, scores):  # a processor can also decide alone
        return torch.full_like(scores, float("-inf")).index_fill(1, torch.tensor([3]), 0.0)

    assert (generate(CausalLM(ours), prompt, 5, logits_processor=[ban, force]) == 3).all()
    assert (generate(CausalLM(ours), prompt, 5, num_beams=2, logits_processor=force) == 3).all()


def test_eos_stops_and_pads(pair, one_thread):
    _, ours = pair
    prompt = torch.randint(0, VOCAB, (2, 3), generator=torch.Generator().manual_seed(8))
    greedy = generate(CausalLM(ours), prompt, 6)
    eos = int(greedy[0, 2])
    out = generate(CausalLM(ours), prompt, 6, eos_token_id=eos, pad_token_id=99)
    for row, full in zip(out, greedy):
        hits = (full == eos).nonzero()
        end = int(hits[0]) if len(hits) else len(full) - 1
        assert torch.equal(row[: end + 1], full[: end + 1])
        assert (row[end + 1:] == 99).all()


def _unilm(scale="sqrt"):
    cfg = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    torch.manual_seed(3)
    return Bert(cfg, mlm=True, attention={"scale": scale}).eval()


def _greedy_without_cache(model, source, eos, steps):
    """Reference: re-encode [source, target so far] under the UniLM mask at every step."""
    ids, seg, out = source.clone(), torch.zeros_like(source), []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(ids, unilm_mask(seg), seg).logits
        nxt = logits[:, -1].argmax(-1)
        out.append(int(nxt))
        if int(nxt) == eos:
            break
        ids = torch.cat([ids, nxt[:, None]], 1)
        seg = torch.cat([seg, torch.ones(1, 1, dtype=torch.long)], 1)
    return out


@pytest.mark.parametrize("scale", ["sqrt", "entropy"])
def test_unilm_greedy_equals_full_recompute(scale, one_thread):
    model = _unilm(scale)
    src = torch.tensor([[1, 7, 8, 9, 2], [1, 5, 6, 2, 0]])
    am = torch.tensor([[1] * 5, [1, 1, 1, 1, 0]])
    eos = 2
    got = generate(UniLM(model), src, 8, eos_token_id=eos, pad_token_id=0, attention_mask=am)
    for b in range(2):
        ref = _greedy_without_cache(model, src[b: b + 1, : int(am[b].sum())], eos, 8)
        assert got[b, : len(ref)].tolist() == ref
        assert (got[b, len(ref):] == 0).all()


def test_unilm_cached_equals_uncached_with_a_target_prefix(one_thread):
    """A prompt may end with target tokens (segment 1): question generation decodes the
    question after a given answer."""
    model = _unilm()
    src = torch.tensor([[1, 7, 8, 9, 2, 11, 12, 2], [1, 5, 6, 2, 13, 2, 0, 0]])
    am = (src != 0).long()
    seg = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0, 0]])
    for kw in ({}, {"num_beams": 3, "eos_token_id": 2}, {"eos_token_id": 2}):
        a = generate(UniLM(model), src, 7, attention_mask=am, token_type_ids=seg, **kw)
        b = generate(UniLM(model, use_cache=False), src, 7, attention_mask=am,
                     token_type_ids=seg, **kw)
        assert torch.equal(a, b)
    # a row decoded alone (no padding) gives the same tokens
    alone = generate(UniLM(model), src[1:, :6], 7, token_type_ids=seg[1:, :6])
    batched = generate(UniLM(model), src, 7, attention_mask=am, token_type_ids=seg)
    assert torch.equal(alone[0], batched[1])


def test_generate_restores_training_mode(pair):
    _, ours = pair
    ours.train()
    generate(CausalLM(ours), torch.tensor([[1, 2]]), 2)
    assert ours.training
    ours.eval()


def test_filter_logits():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.8)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.81)).tolist() == [[False, False, False, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True]]
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isinf(filter_logits(shuffled, top_p=0.8)).tolist() == [[True, False, True, False]]


def test_bad_input(pair):
    _, ours = pair
    lm = CausalLM(ours)
    ids = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="num_beams must be an int > 0, got 0"):
        generate(lm, ids, 2, num_beams=0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got 1.5"):
        generate(lm, ids, 2, do_sample=True, top_p=1.5)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got 0"):
        generate(lm, ids, 2, do_sample=True, top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens must be an int > 0, got 0"):
        generate(lm, ids, 0)
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 101\).*\[3, 101\]"):
        generate(lm, torch.tensor([[3, 101]]), 2)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        generate(lm, ids, 2, do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="sampling with beams"):
        generate(lm, ids, 2, do_sample=True, num_beams=2)
    with pytest.raises(ValueError, match="early_stopping must be"):
        generate(lm, ids, 2, num_beams=2, early_stopping="soon")
    with pytest.raises(ValueError, match="integer"):
        generate(lm, ids.float(), 2)
    with pytest.raises(ValueError, match="MLM head"):
        UniLM(Bert(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=32)))
