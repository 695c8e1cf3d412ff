import itertools

import pytest
import torch

from kexue.generate.mcmc import CGMH, annealing_schedule, sentence_log_prob

PAD, MASK, TOKENS, MAX_LEN = 0, 1, (2, 3, 4), 3


def toy_mlm():
    """A context-dependent 'masked LM' over 5 ids: logits from a bag of the context."""
    g = torch.Generator().manual_seed(0)
    emb, out, pos = torch.randn(5, 4, generator=g), torch.randn(4, 5, generator=g), torch.randn(8, 5, generator=g)

    def mlm(ids, attention_mask):
        bag = (emb[ids] * attention_mask[..., None]).sum(dim=1, keepdim=True)  # (n, 1, 4)
        return bag @ out + pos[: ids.shape[1]]  # (n, L, 5)

    return mlm


def states(max_len):
    return [s for n in range(1, max_len + 1) for s in itertools.product(TOKENS, repeat=n)]


STATES = states(MAX_LEN)


def codes(ids, lengths):
    """Index of each sequence in ``states()`` order (by length, then base-3 digits)."""
    width = ids.shape[1]
    offset = torch.tensor([0] + [sum(3**k for k in range(1, n)) for n in range(1, width + 1)])
    digits = (ids - 2).clamp(min=0)
    place = 3 ** (lengths[:, None] - 1 - torch.arange(width)).clamp(min=0)
    return (digits * place * (torch.arange(width) < lengths[:, None])).sum(1) + offset[lengths]


def toy_score(seed=1, max_len=MAX_LEN):
    """A random log ρ over all sequences up to ``max_len``."""
    n = len(states(max_len))
    table = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (lambda ids, lengths: table[codes(ids, lengths)]), table


def sampler(score, max_len=MAX_LEN, **kw):
    return CGMH(toy_mlm(), score, mask_token_id=MASK, pad_token_id=PAD, min_length=1,
                max_length=max_len, **kw)


def one_step_kernel(cgmh, starts, protected, reps, key, glued=None):
    """Empirical one-step transition matrix: ``reps`` chains from every start state."""
    seqs = [list(s) for s in starts for _ in range(reps)]
    prot = [list(p) for p in protected for _ in range(reps)]
    join = None if glued is None else [list(g) for g in glued for _ in range(reps)]
    before = torch.arange(len(starts)).repeat_interleave(reps)
    chains, _, _ = cgmh.step(cgmh.init(seqs, prot, join), generator=torch.Generator().manual_seed(0))
    after = key(chains)
    kernel = torch.zeros(len(starts), len(starts), dtype=torch.float64)
    kernel.index_put_((before, after), torch.full((len(seqs),), 1.0 / reps, dtype=torch.float64),
                      accumulate=True)
    return kernel


def test_kernel_keeps_rho_stationary_with_detailed_balance(one_thread):
    """Exact enumeration: all 39 sentences over 3 tokens up to length 3, π = ρ / Σ ρ. One
    sampled step from every state (500 chains each) estimates the kernel K; πK = π and
    π(x)K(x, y) = π(y)K(y, x) must hold up to sampling noise."""
    score, table = toy_score()
    pi = table.softmax(0)
    starts = STATES
    kernel = one_step_kernel(sampler(score), starts, [[False] * len(s) for s in starts], 500,
                             lambda c: codes(c.ids, c.lengths))
    flow = pi[:, None] * kernel
    assert (flow - flow.T).abs().max() < 0.005
    assert 0.5 * (pi @ kernel - pi).abs().sum() < 0.02
    # the same check has power: a chain aimed at another target (uniform) fails it
    other = one_step_kernel(sampler(lambda ids, n: torch.zeros(len(ids), dtype=torch.float64)),
                            starts, [[False] * len(s) for s in starts], 500,
                            lambda c: codes(c.ids, c.lengths))
    assert 0.5 * (pi @ other - pi).abs().sum() > 0.1


def test_keywords_stay_and_rho_stays_stationary_over_free_tokens(one_thread):
    """Token 2 at a protected position is a keyword: never replaced or deleted. States are
    (sentence, keyword position); the stationary law is ρ(sentence) normalised."""
    score, table = toy_score(seed=2)
    states = [(s, k) for s in STATES for k in range(len(s)) if s[k] == 2]
    index = {st: i for i, st in enumerate(states)}
    pi = table[[STATES.index(s) for s, _ in states]].softmax(0)

    def key(c):
        kw = c.protected.long().argmax(dim=1)
        assert bool((c.protected.sum(1) == 1).all()) and bool((c.ids.gather(1, kw[:, None]) == 2).all())
        return torch.tensor([index[(tuple(t), int(k))] for t, k in zip(c.texts(), kw)])

    protected = [[i == k for i in range(len(s))] for s, k in states]
    kernel = one_step_kernel(sampler(score), [s for s, _ in states], protected, 500, key)
    flow = pi[:, None] * kernel
    assert (flow - flow.T).abs().max() < 0.006
    assert 0.5 * (pi @ kernel - pi).abs().sum() < 0.02


def test_a_glued_keyword_stays_whole(one_thread):
    """The keyword "2 3" (two glued, protected tokens): nothing is inserted between them.
    States are (sentence, keyword position), lengths 2..4; ρ stays stationary."""
    score, table = toy_score(seed=4, max_len=4)
    all_states = states(4)
    kw_states = [(s, k) for s in all_states for k in range(len(s) - 1) if s[k: k + 2] == (2, 3)]
    index = {st: i for i, st in enumerate(kw_states)}
    pi = table[[all_states.index(s) for s, _ in kw_states]].softmax(0)

    def key(c):
        k = c.protected.long().argmax(dim=1)
        assert bool((c.protected.sum(1) == 2).all()) and bool((c.glued.sum(1) == 1).all())
        assert bool((c.glued.long().argmax(dim=1) == k + 1).all())  # still side by side
        return torch.tensor([index[(tuple(t), int(j))] for t, j in zip(c.texts(), k)])

    protected = [[k <= i <= k + 1 for i in range(len(s))] for s, k in kw_states]
    glued = [[i == k + 1 for i in range(len(s))] for s, k in kw_states]
    kernel = one_step_kernel(sampler(score, max_len=4), [s for s, _ in kw_states], protected, 300,
                             key, glued)
    flow = pi[:, None] * kernel
    assert (flow - flow.T).abs().max() < 0.006
    assert 0.5 * (pi @ kernel - pi).abs().sum() < 0.03


def test_keywords_from_text():
    class Chars:
        unk_token_id = 1

        def encode(self, text):
            return [ord(c) - 95 if "a" <= c <= "c" else 1 for c in text]  # a, b, c -> 2, 3, 4

    score, _ = toy_score(max_len=4)
    cgmh = sampler(score, max_len=4)
    chains = cgmh.init_keywords([["ab", "c"], ["b"]], Chars())
    assert chains.texts() == [[2, 3, 4], [3]]
    assert chains.glued[0, :3].tolist() == [False, True, False] and bool(chains.protected[0, :3].all())
    with pytest.raises(ValueError, match=r"keywords\[0\] holds 'ax', which the tokenizer cannot represent"):
        cgmh.init_keywords([["ax"]], Chars())
    with pytest.raises(ValueError, match=r"keywords\[1\] holds ''"):
        cgmh.init_keywords([["a"], [""]], Chars())
    with pytest.raises(ValueError, match=r"keywords\[0\] is empty"):
        cgmh.init_keywords([[]], Chars())


def test_annealing_concentrates_on_the_maximum(one_thread):
    score, table = toy_score(seed=3)
    best = STATES[int(table.argmax())]
    cgmh = sampler(score)
    start = cgmh.init([[3]] * 200, protected=[[False]] * 200)
    runs = {}
    for name, taus in (("annealed", annealing_schedule(150, 2.0, 0.02)), ("sampled", 1.0)):
        runs[name] = cgmh.run(start, 150, temperatures=taus, generator=torch.Generator().manual_seed(2))
    at_best = {k: [tuple(t) for t in last.texts()].count(best) / 200 for k, (last, _, _) in runs.items()}
    assert at_best["annealed"] > 2 * at_best["sampled"] and at_best["annealed"] > 0.3
    last, top, stats = runs["annealed"]
    assert float(last.log_score.mean()) > float(runs["sampled"][0].log_score.mean())
    assert bool((top.log_score >= last.log_score).all()) and bool((top.log_score <= table.max()).all())
    assert 0 < stats["acceptance"] < 1 and set(stats) >= {"replace_acceptance", "insert_acceptance"}


def test_annealing_schedule():
    taus = annealing_schedule(5, 1.0, 0.01)
    assert taus[0] == 1.0 and abs(float(taus[-1]) - 0.01) < 1e-12
    torch.testing.assert_close(taus[1:] / taus[:-1], torch.full((4,), 0.01**0.25, dtype=torch.float64))


def test_sentence_log_prob_equals_a_direct_sum():
    torch.manual_seed(0)
    table = torch.randn(7, 7)

    def lm(ids):  # a bigram "LM": logits depend on the previous token only
        return table[ids]

    ids = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0]])
    lengths = torch.tensor([3, 1])
    got = sentence_log_prob(lm, ids, lengths, bos_token_id=1, eos_token_id=2)
    logp = table.log_softmax(-1)
    want = [logp[1, 3] + logp[3, 4] + logp[4, 5] + logp[5, 2], logp[1, 6] + logp[6, 2]]
    torch.testing.assert_close(got, torch.stack(want).double())


def test_bad_input():
    score, _ = toy_score()
    with pytest.raises(ValueError, match="op_probs must be 3"):
        sampler(score, op_probs=(1.0, 0.0))
    with pytest.raises(ValueError, match="min_length <= max_length"):
        CGMH(toy_mlm(), score, mask_token_id=MASK, pad_token_id=PAD, min_length=4, max_length=3)
    cgmh = sampler(score)
    with pytest.raises(ValueError, match=r"sequences\[0\] has length 4, expected 1..3"):
        cgmh.init([[2, 2, 2, 2]])
    with pytest.raises(ValueError, match="all protected at max_length 3"):
        cgmh.init([[2, 3, 4]])
    with pytest.raises(ValueError, match=r"ids in \[0, 5\)"):
        cgmh.init([[2, 9]], vocab_size=5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        cgmh.step(cgmh.init([[2]]), temperature=0.0)
    with pytest.raises(ValueError, match="temperatures must hold 3 values"):
        cgmh.run(cgmh.init([[2]]), 3, temperatures=[1.0, 1.0])
