"""T11 GPT-2: a small pre-LN decoder trained on Tang poems beats a unigram model.

Post: 跟风玩玩目前最大的中文GPT2模型（bert4keras） (2020-11-20,
https://kexue.fm/archives/7912). The post runs the 2.6B-parameter CPM-LM, which is a
plain OpenAI GPT-2 (pre-LN blocks, final LayerNorm, learned positions, tied
embeddings). Without those weights here, the claim we can test is that this
architecture, as ``kexue.models.GPT2``, learns a Chinese language model: a small one
trained from scratch on the Tang poems (character level) must beat a unigram model's
held-out cross-entropy by more than 30%, and its samples go in the report.
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
    minutes = {"quick": 6, "full": 30}
    claim = Claim(
        post="跟风玩玩目前最大的中文GPT2模型（bert4keras）",
        date="2020-11-20",
        url="https://kexue.fm/archives/7912",
        statement="CPM-LM is a plain GPT-2 (pre-LN, learned positions, tied head); that decoder "
        "learns Chinese text.",
        condition="A small kexue GPT-2 trained on Tang poems (characters) has held-out "
        "cross-entropy more than 30% below a unigram model's.",
        reported="Qualitative few-shot samples from the 2.6B CPM-LM (no metric given).",
    )

    def run(self, ctx: Context) -> Run:
        from kexue.data import CharTokenizer, load_tang_poems
        from kexue.generate import CausalLM, generate
        from kexue.models import GPT2, GPT2Config
        from kexue.train import TrainConfig, fit

        poems = [p for p in load_tang_poems(limit=ctx.pick(10000, None, smoke=300)) if p.strip()]
        n_val = max(20, len(poems) // 20)
        train_poems, val_poems = poems[n_val:], poems[:n_val]  # fixed split, seed-independent
        tok = CharTokenizer.fit(train_poems, min_count=2)
        block = ctx.pick(64, 128, smoke=32)
        train, val = poem_blocks(train_poems, tok, block), poem_blocks(val_poems, tok, block)
        unigram = unigram_cross_entropy(train[:, 1:], val[:, 1:], tok.vocab_size)

        torch.manual_seed(ctx.seed)
        config = GPT2Config(vocab_size=tok.vocab_size, hidden_size=ctx.pick(128, 256, smoke=32),
                            num_hidden_layers=ctx.pick(3, 6, smoke=1), num_attention_heads=4,
                            max_position_embeddings=block, bos_token_id=None,
                            eos_token_id=tok.sep_token_id)
        model = GPT2(config)

        def lm_loss(m, batch):
            x = batch[0]
            return F.cross_entropy(m(x[:, :-1]).logits.flatten(0, 1), x[:, 1:].flatten())

        steps = ctx.pick(800, 5000, smoke=20)
        fit(model, lm_loss, TensorDataset(train), TrainConfig(
            steps=steps, batch_size=32, lr=2e-3, warmup=0.05, seed=ctx.seed, progress=False,
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
                   f"steps of batch 32; {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
                   "parameters; samples with top-p 0.95.")],
        )

    def checks(self, stats: Stats) -> list[Check]:
        return [stats.above("improvement", 0.30,
                            description="held-out loss more than 30% below the unigram model's")]
