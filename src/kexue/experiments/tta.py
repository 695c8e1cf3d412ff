"""T24 T-TA: the pseudo-log-likelihood of all n tokens in one pass instead of n.

Post: 修改Transformer结构，设计一个更快更好的MLM模型 (2020-08-07,
https://kexue.fm/archives/7661), after Shin et al. (ACL 2020), who report T-TA >6x faster
than a BERT-based reranker and 12x faster for unsupervised semantic similarity on CPU,
with competitive accuracy (3-layer models). Here a T-TA (``kexue.models.TTA``) and a
BERT of the same size (``kexue.models.Bert``, MLM head) get the same training steps on
the same clauses of the shipped sentiment corpus; then (1) the wall time of scoring
sentences of n = 16 ... 128 characters — one T-TA pass vs n masked BERT passes — and
(2) how alike the two rank held-out sentences by pseudo-log-likelihood per token
(Spearman), and how often each prefers a real sentence to its characters shuffled.
"""

from __future__ import annotations

import random
import time

import torch

from kexue.evidence import (
    Check,
    Claim,
    Context,
    Experiment,
    Run,
    Stats,
    markdown_table,
    plots,
    register,
)
from kexue.experiments._shared import sentences

LENGTHS = (16, 32, 64, 128)


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def train_pair(tok, texts: list[str], hidden: int, steps: int, batch_size: int, seed: int):
    """A T-TA and a BERT (MLM) of the same size, the same steps on the same batches."""
    from kexue.models import TTA, Bert, BertConfig

    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=4 * hidden,
                        max_position_embeddings=max(LENGTHS), hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    tta = TTA(config)
    torch.manual_seed(seed)
    bert = Bert(config, mlm=True, pooler=False)
    data = torch.utils.data.TensorDataset(*sentences.batch(tok, texts, special=False))
    g = torch.Generator().manual_seed(seed)
    metrics = {
        "tta/train_loss": sentences.train(tta, sentences.tta_loss, data, steps=steps, seed=seed,
                                          batch_size=batch_size),
        "bert/train_loss": sentences.train(bert, lambda m, b: sentences.mlm_loss(m, b, tok, g), data,
                                           steps=steps, seed=seed, batch_size=batch_size),
        "params_ratio": sum(p.numel() for p in tta.parameters()) / sum(p.numel() for p in bert.parameters()),
    }
    return tta.eval(), bert.eval(), metrics


@torch.no_grad()
def pll_per_token(tta, bert, tok, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-log-likelihood per token of each text: T-TA's one pass, BERT's n masked passes."""
    from kexue.models import masked_pseudo_log_likelihood

    ids, mask = sentences.batch(tok, texts, special=False)
    n = mask.sum(1).double()
    return (tta.pseudo_log_likelihood(ids, mask).double() / n,
            masked_pseudo_log_likelihood(bert, ids, tok.mask_token_id, mask).double() / n)


@torch.no_grad()
def scoring_times(tta, bert, ids: torch.Tensor, mask_token_id: int, tta_repeats: int,
                  bert_repeats: int) -> tuple[float, float]:
    """Seconds to score ``ids`` ``(batch, n)``: T-TA's pass, BERT's ``n`` masked copies (one batch)."""
    from kexue.models import masked_pseudo_log_likelihood

    return (timed(lambda: tta.pseudo_log_likelihood(ids), tta_repeats),
            timed(lambda: masked_pseudo_log_likelihood(bert, ids, mask_token_id, batch_size=ids.numel()),
                  bert_repeats))


@register
class TTAScoring(Experiment):
    name = "tta"
    techniques = ("T24",)
    datasets = ("sentiment",)
    minutes = {"quick": 2, "full": 20}
    claim = Claim(
        post="修改Transformer结构，设计一个更快更好的MLM模型",
        date="2020-08-07",
        url="https://kexue.fm/archives/7661",
        statement="T-TA predicts every token from all the others in one pass, so it scores a "
        "sentence's pseudo-log-likelihood far faster than n masked passes of a BERT of the "
        "same size, with comparable quality.",
        condition="At n = 128 one T-TA pass is >= 5x faster than the n masked passes of an "
        "equal-size BERT; after equal training the two rank held-out sentences alike "
        "(Spearman > 0.5), and T-TA tells real from shuffled sentences no worse than BERT "
        "(within 5 points).",
        reported="Paper (3-layer models, CPU): >6x faster than a BERT-based model for N-best ASR "
        "reranking, 12x for unsupervised semantic similarity, competitive or better accuracy; "
        "the post reports the design, no numbers of its own.",
        fidelity="scaled-down",
        post_setting="3-layer T-TA, MLM and LM pretrained on large English corpora (paper).",
        our_setting="2-layer, hidden 128 T-TA and BERT over 1500 characters, 200 steps of batch "
        "64 each on 40k sentiment clauses (8-32 characters); 300 held-out clauses; scoring 4 "
        "sentences of n characters, 2 threads.",
    )

    def run(self, ctx: Context) -> Run:
        from scipy.stats import spearmanr

        from kexue.data import CharTokenizer

        train = sentences.clauses("train", 8, 32, limit=ctx.pick(40_000, None, smoke=400))
        tok = CharTokenizer.fit(train, min_count=3, max_size=ctx.pick(1500, None, smoke=None))
        held = [t for t in sentences.clauses("valid", 8, 32) if tok.unk_token_id not in tok.encode(t)]
        held = random.Random(ctx.seed).sample(held, ctx.pick(300, 1000, smoke=20))
        hidden, steps = ctx.pick(128, 256, smoke=32), ctx.pick(200, 4000, smoke=10)
        tta, bert, metrics = train_pair(tok, train, hidden, steps, ctx.pick(64, 64, smoke=8), ctx.seed)
        rng = random.Random(ctx.seed)
        shuffled = ["".join(rng.sample(t, len(t))) for t in held]
        (real_tta, real_bert), (fake_tta, fake_bert) = (pll_per_token(tta, bert, tok, texts)
                                                        for texts in (held, shuffled))
        metrics.update({
            "spearman": float(spearmanr(real_tta.numpy(), real_bert.numpy()).statistic),
            "tta/discrimination": 100.0 * float((real_tta > fake_tta).double().mean()),
            "bert/discrimination": 100.0 * float((real_bert > fake_bert).double().mean()),
            "tta/pll_per_token": float(real_tta.mean()), "bert/pll_per_token": float(real_bert.mean()),
        })
        batch = ctx.pick(4, 8, smoke=1)
        g = torch.Generator().manual_seed(ctx.seed)
        for n in ctx.pick(LENGTHS, LENGTHS, smoke=(16, 128)):
            ids = torch.randint(len(tok.SPECIAL_TOKENS), tok.vocab_size, (batch, n), generator=g)
            t_tta, t_bert = scoring_times(tta, bert, ids, tok.mask_token_id, ctx.pick(5, 9, smoke=1),
                                          ctx.pick(2, 5, smoke=1))
            metrics[f"speedup/n{n}"] = t_bert / t_tta
            metrics[f"tta/ms_n{n}"], metrics[f"bert/ms_n{n}"] = 1e3 * t_tta, 1e3 * t_bert
        size = sum(p.numel() for p in tta.parameters()) / 1e6
        note = (f"{len(train)} training clauses (8-32 characters), vocabulary {tok.vocab_size}; both models "
                f"hidden {hidden}, 2 layers ({size:.2f}M parameters each, ratio {metrics['params_ratio']:.3f}), "
                f"{steps} steps of batch 64; BERT masks 15% (80/10/10), T-TA predicts every token; "
                f"{len(held)} held-out clauses; timing: {batch} sentences of n random characters, BERT's n "
                "masked copies in one batch (the MLM head at the masked position only), median of repeated calls.")
        return Run(metrics, notes=[note])

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run | None:
        lengths = [n for n in LENGTHS if f"speedup/n{n}" in stats]
        path = ctx.figure("speedup.png")
        plots.lines({"BERT n passes / T-TA 1 pass": (lengths, [stats[f"speedup/n{n}"].mean for n in lengths])},
                    path, xlabel="sentence length n", ylabel="speed-up (x)", title="PLL scoring time ratio")
        rows = [[str(n), str(stats[f"tta/ms_n{n}"]), str(stats[f"bert/ms_n{n}"]), str(stats[f"speedup/n{n}"])]
                for n in lengths]
        return Run({}, figures=[path.name], tables=[markdown_table(
            ["n", "T-TA ms (1 pass)", "BERT ms (n passes)", "speed-up"], rows)])

    def checks(self, stats: Stats) -> list[Check]:
        return [
            stats.above("speedup/n128", 5.0, description="T-TA >= 5x faster than n BERT passes at n = 128"),
            stats.above("spearman", 0.5, description="the two rank sentences alike (Spearman > 0.5)"),
            stats.not_worse("tta/discrimination", "bert/discrimination", 5.0),
        ]
