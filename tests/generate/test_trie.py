import random

import pytest
import torch

from kexue.generate import CausalLM, Lookahead, Trie, generate, lcs_length
from kexue.models import GPT2, GPT2Config

V, EOS = 12, 1


def random_entries(n, seed, vocab=V, max_len=5):
    rng = random.Random(seed)
    tokens = [t for t in range(vocab) if t != EOS]
    return [[rng.choice(tokens) for _ in range(rng.randint(1, max_len))] for _ in range(n)]


def dict_trie(entries):
    root = {}
    for e in entries:
        node = root
        for t in e:
            node = node.setdefault(t, {})
        node["end"] = True
    return root


def dict_allowed(root, prefix):
    node = root
    for t in prefix:
        if t not in node:
            return {EOS}
        node = node[t]
    out = {t for t in node if t != "end"}
    return out | {EOS} if "end" in node or not out else out


def test_structure_and_allowed_equal_a_dict_trie():
    entries = random_entries(200, 0) + [[2, 3], [2, 3], [2, 3, 4]]  # duplicates, a prefix entry
    trie = Trie(entries, V, EOS)
    assert len(trie) == len({tuple(e) for e in entries})
    assert bool((trie.keys[1:] > trie.keys[:-1]).all())  # one sorted key per edge
    assert trie.num_nodes == 1 + len({tuple(e[:d]) for e in entries for d in range(1, len(e) + 1)})
    root = dict_trie(entries)
    prefixes = [e[:d] for e in entries[:60] for d in range(len(e) + 1)] + [[0, 0, 0], [5, 99 % V]]
    rows = torch.full((len(prefixes), 5), -1)
    for i, p in enumerate(prefixes):
        rows[i, : len(p)] = torch.tensor(p)
    allowed = trie.allowed(trie.walk(rows))  # the whole batch in one step
    for i, p in enumerate(prefixes):
        assert set(allowed[i].nonzero().squeeze(1).tolist()) == dict_allowed(root, p), p
    full = torch.full((len(entries), 5), -1)
    for i, e in enumerate(entries):
        full[i, : len(e)] = torch.tensor(e)
    assert bool(trie.contains(full).all())
    outside = [p for p in prefixes if p not in entries]
    assert outside and not any(trie.contains(torch.tensor([p + [-1] * (5 - len(p))])) for p in outside)


def test_tensor_input_equals_lists_and_counts_are_consistent():
    entries = random_entries(80, 1)
    rows = torch.full((80, 5), -1)
    for i, e in enumerate(entries):
        rows[i, : len(e)] = torch.tensor(e)
    a, b = Trie(entries, V, EOS), Trie(rows, V, EOS)
    for name in ("keys", "indptr", "terminal", "count", "first", "leaves"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    # the entries below a node are leaves[first : first + count], and prefixes() rebuilds them
    node = a.walk(torch.tensor([[entries[0][0]]]))
    below = a.leaves[a.first[node]: a.first[node] + a.count[node]].long()
    got = {tuple(t for t in row if t >= 0) for row in a.prefixes(below).tolist()}
    assert got == {tuple(e) for e in entries if e[0] == entries[0][0]}
    assert a.nbytes > 0 and int(a.count[0]) == len(a)


def test_advance_leaves_the_tree_and_then_only_eos_is_allowed():
    trie = Trie([[2, 3], [2, 4]], V, EOS)
    nodes = trie.advance(torch.tensor([0, 0, 0]), torch.tensor([2, 5, EOS]))
    assert nodes[0] > 0 and nodes[1:].tolist() == [-1, -1]
    allowed = trie.allowed(nodes)
    assert allowed[0].nonzero().squeeze(1).tolist() == [3, 4]
    assert allowed[1].nonzero().squeeze(1).tolist() == [EOS]


def test_lcs_length_equals_dynamic_programming():
    rng = random.Random(0)

    def lcs(a, b):
        d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a)):
            for j in range(len(b)):
                d[i + 1][j + 1] = d[i][j] + 1 if a[i] == b[j] else max(d[i][j + 1], d[i + 1][j])
        return d[-1][-1]

    pairs = [([rng.randrange(4) for _ in range(rng.randint(0, 7))],
              [rng.randrange(4) for _ in range(rng.randint(0, 9))]) for _ in range(300)]
    a = torch.full((300, 7), -1)
    b = torch.full((300, 9), -2)
    for i, (x, y) in enumerate(pairs):
        a[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        b[i, : len(y)] = torch.tensor(y, dtype=torch.long)
    assert lcs_length(a, b).tolist() == [lcs(x, y) for x, y in pairs]


@pytest.fixture(scope="module")
def toy_lm():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     max_position_embeddings=16, initializer_range=0.5)
    return GPT2(cfg).eval()


def _entry(row):
    out = []
    for t in row.tolist():
        if t == EOS:
            return out
        out.append(t)
    return None  # no eos: not a finished entry


def test_every_constrained_output_is_an_entry(toy_lm, one_thread):
    entries = random_entries(60, 2)
    trie = Trie(entries, V, EOS)
    prompt = torch.randint(2, V, (6, 3), generator=torch.Generator().manual_seed(0))
    plain = generate(CausalLM(toy_lm), prompt, 6)
    assert not all(_entry(r) in entries for r in plain)  # unconstrained decoding leaves the set
    runs = [
        generate(CausalLM(toy_lm), prompt, 6, eos_token_id=EOS, constraint=trie),
        generate(CausalLM(toy_lm), prompt, 6, eos_token_id=EOS, constraint=trie, num_beams=3),
        generate(CausalLM(toy_lm), prompt, 6, eos_token_id=EOS, constraint=trie, do_sample=True,
                 generator=torch.Generator().manual_seed(0)),
    ]
    for out in runs:
        assert all(_entry(r) in entries for r in out)


def _scores(model, prompt, entries, trie):
    """Brute force: the renormalised constrained log-probability of every entry (with eos)."""
    out = []
    for e in entries:
        seq = torch.tensor([[*prompt, *e, EOS]])
        with torch.no_grad():
            logp = model(seq[:, :-1]).logits[0, len(prompt) - 1:].log_softmax(-1)
        nodes = trie.walk(torch.tensor([e[:d] + [-1] * (5 - d) for d in range(len(e) + 1)]))
        masked = trie.mask(nodes, logp).log_softmax(-1)
        out.append(float(masked[torch.arange(len(e) + 1), torch.tensor([*e, EOS])].sum()))
    return out


def test_constrained_decoding_equals_brute_force_argmax(toy_lm, one_thread):
    entries = [e for e in random_entries(8, 3, max_len=4)]
    trie = Trie(entries, V, EOS)
    for seed in range(4):
        prompt = torch.randint(2, V, (3,), generator=torch.Generator().manual_seed(seed)).tolist()
        # greedy = the constrained argmax at every step, recomputed from scratch
        prefix = []
        while True:
            seq = torch.tensor([[*prompt, *prefix]])
            with torch.no_grad():
                logits = toy_lm(seq).logits[0, -1]
            allowed = dict_allowed(dict_trie(entries), prefix)
            nxt = max(allowed, key=lambda t: float(logits[t]))
            if nxt == EOS:
                break
            prefix.append(nxt)
        greedy = generate(CausalLM(toy_lm), torch.tensor([prompt]), 6, eos_token_id=EOS,
                          constraint=trie)
        assert _entry(greedy[0]) == prefix
        # a beam as wide as the set, no length penalty: the best entry overall
        scores = _scores(toy_lm, prompt, entries, trie)
        best = entries[max(range(len(entries)), key=scores.__getitem__)]
        beam = generate(CausalLM(toy_lm), torch.tensor([prompt]), 6, eos_token_id=EOS,
                        constraint=trie, num_beams=len(entries), length_penalty=0.0,
                        early_stopping="never")
        assert _entry(beam[0]) == best


def _author_lookahead(entries, prefix, question, after):
    """The post's code (KgCLUE baseline), over a dict trie: p_k <- p_k^(1/w_k)."""
    def lcs(a, b):
        return int(lcs_length(torch.tensor([a or [-1]]), torch.tensor([b])))

    root = dict_trie(entries)
    nxt = dict_allowed(root, prefix) - {EOS}
    weights = {}
    if len(nxt) > 1 and after in prefix:
        base = lcs(prefix, question)
        for c in entries:
            if c[: len(prefix)] == prefix and len(c) > len(prefix):
                w = lcs(c, question) - base
                weights[c[len(prefix)]] = max(w + 1, weights.get(c[len(prefix)], 1))
    return weights


def test_lookahead_weights_equal_the_posts_rule():
    sep = 11
    entries = [[2, 3, sep, 4, 5], [2, 3, sep, 4, 6, 7], [2, 3, sep, 8, 9], [2, 3, sep, 8, 5, 7],
               [2, 4, sep, 6], [2, 4, sep, 7]]
    trie = Trie(entries, V, EOS)
    questions = [[0, 8, 5, 7, 3], [6, 7, 4, 4, 2]]
    look = Lookahead(trie, questions, after_token_id=sep)
    prefixes = [[2, 3, sep], [2, 3, sep, 4], [2, 3, sep, 8], [2], [2, 4, sep]]
    for q in range(2):
        rows = torch.full((len(prefixes), 6), -1)
        for i, p in enumerate(prefixes):
            rows[i, : len(p)] = torch.tensor(p)
        state = torch.stack([trie.walk(rows), torch.full((len(prefixes),), q)], 1)
        w = look.weights(state)
        for i, p in enumerate(prefixes):
            want = torch.ones(V)
            for tok, value in _author_lookahead(entries, p, questions[q], sep).items():
                want[tok] = value
            assert torch.equal(w[i], want), (q, p)
    assert (look.weights(state) > 1).any()  # the rule fired somewhere
    # the masked scores: p^(1/w) on the allowed tokens, then -inf elsewhere
    logits = torch.randn(len(prefixes), V)
    out = look.mask(state, logits)
    expect = trie.mask(state[:, 0], logits.log_softmax(-1) / look.weights(state))
    assert torch.equal(out, expect)


def test_bad_input():
    with pytest.raises(ValueError, match="sequences must hold at least one sequence"):
        Trie([], V, EOS)
    with pytest.raises(ValueError, match=r"sequences must hold ids in \[0, 12\).*\[2, 12\]"):
        Trie([[2, 3], [12]], V, EOS)
    with pytest.raises(ValueError, match=r"ids in \[0, 12\).*\[-5, 3\]"):
        Trie([[3, -5]], V, EOS)
    with pytest.raises(ValueError, match="must not contain eos_token_id 1"):
        Trie([[2, 1, 3]], V, EOS)
    with pytest.raises(ValueError, match="eos_token_id must be in"):
        Trie([[2]], V, 12)
    with pytest.raises(ValueError, match="references has 2 rows, the batch 3"):
        Lookahead(Trie([[2]], V, EOS), [[2], [3]]).start(3, 1)
