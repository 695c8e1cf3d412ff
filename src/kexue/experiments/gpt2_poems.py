"""T11 GPT-2: the decoder CPM-LM is built on, trained small on Tang poems, measured.

Post: 跟风玩玩目前最大的中文GPT2模型（bert4keras） (2020-11-20,
https://kexue.fm/archives/7912). The post adapts the 2.6B-parameter CPM-LM to
bert4keras: its architecture is exactly OpenAI's GPT-2 (pre-LN blocks, a final
LayerNorm, learned positions, tied embeddings), not GPT2_ML, and its tokenizer wraps
sentencepiece with space/newline substitutions; then it shows few-shot samples. The
post states no number that a measurement could refute: its claim is the architecture,
which ``tests/models/test_gpt2.py`` checks against ``transformers.GPT2LMHeadModel``.

Here, without CPM-LM's weights: ``kexue.models.GPT2`` trained from scratch on the Tang
poems (characters); we report its held-out cross-entropy beside a unigram model's and
samples, with no verdict (``numerical_claim = False``; the outcome is "measured").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register

PROMPTS = ("春", "月", "山")


def poem_blocks(poems: list[str], tokenizer, block: int) -> torch.Tensor:
    """Concatenate poems, each ended by ``[SEP]``, and cut into ``(n, block + 1)`` rows."""
    ids: list[int] = []
    for poem in poems:
        ids += tokenizer.encode(poem) + [tokenizer.sep_token_id]
    n = (len(ids) - 1) // block
    t = torch.tensor(ids[: n * block + 1])
    return torch.stack([t[i * block : i * block + block + 1] for i in range(n)])


def unigram_cross_entropy(train: torch.Tensor, held_out: torch.Tensor, vocab_size: int) -> float:
    """Held-out nats per token of an add-one-smoothed unigram model of ``train``."""
    counts = torch.bincount(train.flatten(), minlength=vocab_size).double() + 1.0
    logp = counts.log() - counts.sum().log()
    return float(-logp[held_out.flatten()].mean())


@register
class GPT2Poems(Experiment):
    name = "gpt2-poems"
    techniques = ("T11",)
    datasets = ("chinese-poetry-tang",)
    minutes = {"quick": 1.2, "full": 30}
    numerical_claim = False
    claim = Claim(
        post="跟风玩玩目前最大的中文GPT2模型（bert4keras）",
        date="2020-11-20",
        url="https://kexue.fm/archives/7912",
        statement="CPM-LM is a plain OpenAI GPT-2 (pre-LN, final LayerNorm, learned positions, "
        "tied embeddings), and as such a 2.6B Chinese LM it continues text and does few-shot "
        "tasks.",
        condition="None: the post gives no number to reproduce. The architecture is checked "
        "by the test suite (logits equal to transformers' GPT-2); here a small kexue GPT-2 "
        "trained on Tang poems is measured (held-out loss beside a unigram model's, samples).",
        reported="Qualitative few-shot samples from the 2.6B CPM-LM (e.g. 美国的首都是华盛顿 ... "
        "中国的首都是 -> 北京); no metric.",
        fidelity="substituted",
        post_setting="CPM-LM, 2.6B parameters pre-trained on 100 GB of Chinese text, loaded in "
        "bert4keras; few-shot prompts decoded by sampling.",
        our_setting="kexue GPT-2, 2 layers, hidden 128 (~0.4M parameters plus 0.56M in the character "
        "embeddings), trained from scratch for 250 steps of 16 x 64 characters on 5,000 Tang "
        "poems; 3 seeds; top-p 0.95 samples.",
        substitution="CPM-LM's weights (about 10 GB) are not available offline and a 2.6B model "
        "does not run on 2 CPU cores; a small GPT-2 of the same architecture trained on Tang "
        "poems stands in, and since the post makes no numerical claim nothing is decided.",
    )

    def run(self, ctx: Context) -> Run:
        from kexue.data import CharTokenizer, load_tang_poems
        from kexue.generate import CausalLM, generate
        from kexue.models import GPT2, GPT2Config
        from kexue.train import TrainConfig, fit

        poems = [p for p in load_tang_poems(limit=ctx.pick(5000, None, smoke=300)) if p.strip()]
        n_val = max(20, len(poems) // 20)
        train_poems, val_poems = poems[n_val:], poems[:n_val]  # fixed split, seed-independent
        tok = CharTokenizer.fit(train_poems, min_count=2)
        block = ctx.pick(64, 128, smoke=32)
        train, val = poem_blocks(train_poems, tok, block), poem_blocks(val_poems, tok, block)
        unigram = unigram_cross_entropy(train[:, 1:], val[:, 1:], tok.vocab_size)

        torch.manual_seed(ctx.seed)
        config = GPT2Config(vocab_size=tok.vocab_size, hidden_size=ctx.pick(128, 256, smoke=32),
                            num_hidden_layers=ctx.pick(2, 6, smoke=1), num_attention_heads=4,
                            max_position_embeddings=block, bos_token_id=None,
                            eos_token_id=tok.sep_token_id)
        model = GPT2(config)

        def lm_loss(m, batch):
            x = batch[0]
            return F.cross_entropy(m(x[:, :-1]).logits.flatten(0, 1), x[:, 1:].flatten())

        steps = ctx.pick(250, 5000, smoke=20)
        batch_size = ctx.pick(16, 32)
        fit(model, lm_loss, TensorDataset(train), TrainConfig(
            steps=steps, batch_size=batch_size, lr=2e-3, warmup=0.05, seed=ctx.seed, progress=False,
            log_every=max(1, steps // 10)))
        model.eval()
        with torch.no_grad():
            val_loss = sum(float(lm_loss(model, (val[i:i + 64],))) * len(val[i:i + 64])
                           for i in range(0, len(val), 64)) / len(val)
        g = torch.Generator().manual_seed(ctx.seed)
        samples = []
        for prompt in PROMPTS:
            ids = torch.tensor([tok.encode(prompt)])
            new = generate(CausalLM(model), ids, block - 1, do_sample=True, top_p=0.95,
                           generator=g, eos_token_id=tok.sep_token_id)
            out = torch.cat([ids, new], dim=1)
            samples.append(f"seed {ctx.seed}, prompt {prompt}: "
                           + tok.decode(out[0].tolist()).replace("\n", " / "))
        return Run(
            {"gpt2_val_nats": val_loss, "unigram_val_nats": unigram,
             "improvement": 1 - val_loss / unigram, "gpt2_val_perplexity": math.exp(val_loss)},
            samples=samples,
            notes=[(f"{len(train_poems)} training poems, {len(val_poems)} held out; vocabulary "
                   f"{tok.vocab_size} characters (min count 2); blocks of {block}; {steps} "
                   f"steps of batch {batch_size}; {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
                   "parameters; samples with top-p 0.95.")],
        )

    def checks(self, stats: Stats) -> list[Check]:
        return []  # no numerical claim in the post: the outcome is "measured"
