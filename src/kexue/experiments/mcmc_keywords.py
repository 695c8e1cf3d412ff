"""T20 Constrained generation by MCMC: sentences around given keywords (CGMH).

Posts: 【搜出来的文本】⋅（一）从文本生成到搜索采样 (2021-01-07, https://kexue.fm/archives/8062),
（二）从MCMC到模拟退火 (2021-01-14, https://kexue.fm/archives/8084), （三）基于BERT的文本
采样 (2021-01-22, https://kexue.fm/archives/8119), （四）通过增、删、改来用词造句
(2021-02-25, https://kexue.fm/archives/8194). The target ``ρ(x) = p_LM(x)^γ · χ(x ⊇
keywords)`` (γ = 0.8, the author's code) is sampled with Metropolis–Hastings whose
replace / insert / delete proposals come from a masked LM, starting from the keywords
written in order, 128 steps (the post's demo); and, for the search view of post 8084,
the same chain under simulated annealing. Both a small character LM and a small MLM
are trained here on clauses of the shipped sentiment corpus. The sentences must
contain every keyword and read better (lower LM loss per token) than the keywords with
random characters inserted to the same length.
"""

from __future__ import annotations

import random

import torch

from kexue.evidence import Check, Claim, Context, Experiment, Run, Stats, markdown_table, register
from kexue.experiments._shared import sentences

GAMMA, STEPS, WIDTH = 0.8, 128, 22  # the author's γ, the post's steps, the longest sentence
VARIANTS = ("mh", "random_mh", "annealed", "random_annealed", "keywords")


def pick_keywords(texts: list[str], count: int, rng: random.Random) -> list[list[str]]:
    """Per text, two non-overlapping character bigrams in their order of appearance."""
    out = []
    for text in texts[:count]:
        i = rng.randrange(0, len(text) - 3)
        j = rng.randrange(i + 2, len(text) - 1)
        out.append([text[i : i + 2], text[j : j + 2]])
    return out


def random_insertion(keywords: list[list[str]], lengths: list[int], unigram: torch.Tensor,
                     tok, generator: torch.Generator) -> list[list[int]]:
    """The keywords in order with characters drawn from ``unigram`` inserted at random gaps
    between (and around, never inside) them, up to ``lengths``."""
    out = []
    for words, n in zip(keywords, lengths):
        pieces = [tok.encode(w) for w in words]
        extra = n - sum(map(len, pieces))
        fill = torch.multinomial(unigram, max(extra, 0), replacement=True, generator=generator).tolist() if extra > 0 else []
        gaps = torch.randint(0, len(pieces) + 1, (len(fill),), generator=generator).tolist()
        seq = []
        for g in range(len(pieces) + 1):
            seq += [t for t, at in zip(fill, gaps) if at == g]
            if g < len(pieces):
                seq += pieces[g]
        out.append(seq)
    return out


def contains_in_order(text: str, words: list[str]) -> bool:
    at = 0
    for w in words:
        at = text.find(w, at)
        if at < 0:
            return False
        at += len(w)
    return True


def train_models(tok, texts: list[str], hidden: int, steps: int, batch_size: int, cache_dir):
    """A character GPT-2 (the LM of ρ) and BERT (the proposals) trained on ``texts``, once:
    seed 0, weights cached under ``cache_dir`` so every seed of a run shares them."""
    from kexue.models import GPT2, Bert, BertConfig, GPT2Config

    torch.manual_seed(0)
    lm = GPT2(GPT2Config(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=WIDTH + 2, bos_token_id=None,
                         eos_token_id=tok.sep_token_id))
    mlm = Bert(BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=4 * hidden, max_position_embeddings=WIDTH,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), mlm=True, pooler=False)
    key = {"clauses": len(texts), "vocab": tok.vocab_size, "hidden": hidden, "steps": steps, "batch": batch_size}
    lm_data = torch.utils.data.TensorDataset(*sentences.batch(tok, texts, special=True))
    mlm_data = torch.utils.data.TensorDataset(*sentences.batch(tok, texts, special=False))
    mask_rng = torch.Generator().manual_seed(0)
    losses = {
        "lm_train_loss": sentences.train(lm, sentences.lm_loss, lm_data, steps=steps, seed=0,
                                         batch_size=batch_size,
                                         cache=sentences.cache_file(cache_dir, "mcmc-lm", **key)),
        "mlm_train_loss": sentences.train(mlm, lambda m, b: sentences.mlm_loss(m, b, tok, mask_rng), mlm_data,
                                          steps=steps, seed=0, batch_size=batch_size,
                                          cache=sentences.cache_file(cache_dir, "mcmc-mlm", **key)),
    }
    return lm.eval(), mlm.eval(), losses


def lm_scorer(lm, tok):
    """``log p(x)`` ``(n,)`` of padded rows ``(n, L)`` with ``lengths``, ``[CLS] x [SEP]``."""
    from kexue.generate.mcmc import sentence_log_prob

    def log_p(ids, lengths):
        return sentence_log_prob(lambda x: lm(x).logits, ids, lengths, bos_token_id=tok.cls_token_id,
                                 eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    return log_p


def unigram(tok, texts: list[str]) -> torch.Tensor:
    """Character frequencies of ``texts`` over the vocabulary, special tokens at 0."""
    counts = torch.bincount(sentences.batch(tok, texts, special=False)[0].flatten(),
                            minlength=tok.vocab_size).double()
    counts[: len(tok.SPECIAL_TOKENS)] = 0
    return counts


@register
class MCMCKeywords(Experiment):
    name = "mcmc-keywords"
    techniques = ("T20",)
    datasets = ("sentiment",)
    minutes = {"quick": 2, "full": 20}
    claim = Claim(
        post="【搜出来的文本】⋅（四）通过增、删、改来用词造句",
        date="2021-02-25",
        url="https://kexue.fm/archives/8194",
        statement="Metropolis-Hastings with insert / delete / replace proposals (CGMH) turns a "
        "left-to-right LM into a generator of sentences that contain given keywords.",
        condition="Every MH (and annealed) sentence contains all its keywords, and both read "
        "better under the LM (lower loss per token) than the keywords padded with random "
        "characters to the same length, beyond seed noise.",
        reported="Qualitative chains only: 广州/美食/开幕 -> 广州的美食节又开幕了。, 科学/空间 -> "
        "科学调控的空间将更加大。, 好吃/零食 -> 而我好吃零食。 (128 steps each; no metric).",
        fidelity="substituted",
        post_setting="Chinese NEZHA-GPT base as LM (proposal candidates from the LM's top 64, "
        "full-sentence renormalised), γ = 0.8, 128 steps, word keywords.",
        our_setting="2-layer char GPT-2 (LM) and 2-layer char BERT (MLM, the proposals, as in "
        "post 8119), 1500 characters, trained 400 steps each on 40k sentiment clauses (once, "
        "shared by the seeds); 48 keyword pairs (2 character bigrams from held-out clauses); "
        "128 MH steps at τ = 1, and annealed 1 -> 0.05.",
        substitution="No pretrained Chinese GPT is available here, so both LMs are small "
        "character models trained in seconds; proposals come from an MLM (posts 8119/8194's "
        "suggestion) rather than the LM's top-64 candidates.",
    )

    def run(self, ctx: Context) -> Run:
        from kexue.data import CharTokenizer
        from kexue.generate import CGMH
        from kexue.generate.mcmc import annealing_schedule

        train = sentences.clauses("train", 8, 20, limit=ctx.pick(40_000, None, smoke=500))
        tok = CharTokenizer.fit(train, min_count=3, max_size=ctx.pick(1500, None, smoke=None))
        held = [t for t in sentences.clauses("valid", 8, 20) if tok.unk_token_id not in tok.encode(t)]
        hidden, steps, size = ctx.pick(128, 256, smoke=32), ctx.pick(400, 3000, smoke=10), ctx.pick(64, 64, smoke=8)
        lm, mlm, losses = train_models(tok, train, hidden, steps, size, ctx.cache_dir)
        log_p = lm_scorer(lm, tok)
        cgmh = CGMH(lambda ids, mask: mlm(ids, mask).logits, lambda ids, n: GAMMA * log_p(ids, n),
                    mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id,
                    banned_token_ids=(tok.unk_token_id, tok.cls_token_id, tok.sep_token_id),
                    min_length=1, max_length=WIDTH)
        rng = random.Random(1000 + ctx.seed)
        rng.shuffle(held)
        keywords = pick_keywords(held, ctx.pick(48, 200, smoke=6), rng)
        start = cgmh.init_keywords(keywords, tok)
        g, chars = torch.Generator().manual_seed(ctx.seed), unigram(tok, train)
        metrics, results = dict(losses), {"keywords": (start.ids, start.lengths)}
        for name, taus in (("mh", 1.0), ("annealed", annealing_schedule(STEPS, 1.0, 0.05))):
            last, _, acceptance = cgmh.run(start, STEPS, temperatures=taus, generator=g)
            results[name] = (last.ids, last.lengths)
            metrics.update({f"{name}/{k}": 100.0 * v for k, v in acceptance.items()})
            rand = random_insertion(keywords, last.lengths.tolist(), chars, tok, g)
            ids, mask = sentences.batch(tok, [tok.decode(r) for r in rand], special=False)
            results[f"random_{name}"] = (ids, mask.sum(1))  # the baseline at the chains' lengths
        texts = {}
        for name, (ids, n) in results.items():
            texts[name] = [tok.decode(row[: int(k)].tolist()) for row, k in zip(ids, n)]
            metrics[f"{name}/nll_per_token"] = float((-log_p(ids, n) / (n + 1)).mean())  # end included
            metrics[f"{name}/length"] = float(n.double().mean())
            metrics[f"{name}/keyword_inclusion"] = 100.0 * sum(
                map(contains_in_order, texts[name], keywords)) / len(keywords)
        real_ids, real_mask = sentences.batch(tok, held[-200:], special=False)
        real_n = real_mask.sum(1)
        metrics["real/nll_per_token"] = float((-log_p(real_ids, real_n) / (real_n + 1)).mean())
        samples = [f"seed {ctx.seed}: {'/'.join(w)} -> MH: {texts['mh'][i]} | annealed: "
                   f"{texts['annealed'][i]} | random insertion: {texts['random_mh'][i]}"
                   for i, w in enumerate(keywords[:6])]
        note = (f"{len(train)} training clauses (8-20 characters), vocabulary {tok.vocab_size}; LM and "
                f"MLM hidden {hidden}, 2 layers, {steps} steps of batch {size} each, trained once and "
                f"shared by the seeds (the seeds vary keywords and chains); {len(keywords)} keyword "
                f"pairs; {STEPS} MH steps, γ = {GAMMA}; loss per token includes the end token.")
        return Run(metrics, samples=samples, notes=[note])

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run | None:
        rows = [[v, str(stats[f"{v}/nll_per_token"]), str(stats[f"{v}/length"]),
                 str(stats[f"{v}/keyword_inclusion"])] for v in VARIANTS]
        rows.append(["held-out real clauses", str(stats["real/nll_per_token"]), "", ""])
        return Run({}, tables=[markdown_table(["sentences", "LM loss / token", "length", "keywords kept %"], rows)])

    def checks(self, stats: Stats) -> list[Check]:
        return [
            stats.above("mh/keyword_inclusion", 99.99, description="every MH sentence keeps its keywords"),
            stats.above("annealed/keyword_inclusion", 99.99,
                        description="every annealed sentence keeps its keywords"),
            stats.greater("random_mh/nll_per_token", "mh/nll_per_token",
                          description="MH sentences read better than random insertion to their length"),
            stats.greater("random_annealed/nll_per_token", "annealed/nll_per_token",
                          description="annealed sentences read better than random insertion to their length"),
        ]
