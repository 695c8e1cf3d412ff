"""T8 ON-LSTM: a word LM on PTB whose master forget gates induce trees on the treebank sample.

Post: ON-LSTM：用有序神经元表达层次结构 (2019-05-28, https://kexue.fm/archives/6621), on
Shen et al., "Ordered Neurons" (ICLR 2019). The claim: an ON-LSTM trained only as a
language model orders its neurons so that the syntactic distance ``d_t = 1 - mean(f~_t)``
of its middle layer, split greedily top-down, recovers constituency trees (the paper's
code, full scale: unlabeled F1 47.7 on WSJ test, PTB test perplexity 56.17).

Ours: a 3-layer ON-LSTM LM (the post's master input gate; DropConnect on the recurrent
weights; an adaptive soft-max so that the 10000-word output does not dominate a CPU
budget) trained on Mikolov's PTB from which the sentences of the NLTK treebank sample
(WSJ 0001-0199, the first ~3910 lines of ``ptb.train``) are held out; trees are induced on
those 3914 gold-annotated sentences and scored with the paper's protocol
(``test_phrase_grammar.py``): words = leaves whose POS tag is a word tag (no punctuation,
no traces), lowercased, digits -> N; each sentence fed after ``<eos>`` from a zero state;
gold unary chains collapsed; brackets = spans of two or more words below the root;
sentence-level F1 averaged over sentences. Baselines on the same sentences:
right-branching, left-branching and random binary trees (uniform random distances).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Skip, Stats
from kexue.evidence.registry import register
from kexue.evidence.tables import markdown_table
from kexue.experiments._shared.threads import torch_threads
from kexue.nn import ONLSTM, distance_to_tree

# The paper's word tags (data_ptb.py): everything else (punctuation, -NONE-, $, #) is dropped.
WORD_TAGS = frozenset(
    ["CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR", "JJS", "LS", "MD", "NN", "NNS", "NNP", "NNPS", "PDT", "POS", "PRP", "PRP$", "RB", "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$", "WRB"])
BASELINES = ("right", "left", "random")
PARSE_LAYER = 1  # the paper parses with the 2nd of 3 layers
LENGTH = 70  # training / evaluation window (the paper's bptt)


# -- gold trees and bracket F1 (the paper's protocol) ----------------------------------


def lm_word(word: str, vocab: dict[str, int]) -> str:
    """A gold word as the word-level PTB spells it: numbers (``N``, ``N.N``, ``N,N``) are
    ``N``, words outside the vocabulary ``<unk>``."""
    word = "N" if re.fullmatch(r"[N.,:/-]*N[N.,:/-]*", word) else word
    return word if word in vocab else "<unk>"


def is_preterminal(node: Any) -> bool:
    """``(tag, [word])``."""
    return len(node[1]) == 1 and isinstance(node[1][0], str)


def gold_words(tree: Any) -> list[str]:
    """The tree's words under a word tag, lowercased, digit runs -> ``N`` (the paper's)."""
    if is_preterminal(tree):
        return [re.sub("[0-9]+", "N", tree[1][0].lower())] if tree[0] in WORD_TAGS else []
    return [w for c in tree[1] for w in gold_words(c)]


def gold_tree(tree: Any) -> Any:
    """The paper's ``tree2list``: the tree over its words as nested lists, non-word leaves
    dropped, empty nodes dropped and unary chains collapsed (``None`` if no word)."""
    if is_preterminal(tree):
        return tree[1][0] if tree[0] in WORD_TAGS else None
    kept = [t for t in (gold_tree(c) for c in tree[1]) if t is not None]
    return None if not kept else kept[0] if len(kept) == 1 else kept


def tree_spans(tree: Any) -> set[tuple[int, int]]:
    """The paper's ``get_brackets``: spans ``(start, end)`` of two or more leaves of a
    nested-list tree (a gold one from :func:`gold_tree`, or one from
    :func:`kexue.nn.distance_to_tree`), the whole sentence excluded."""
    spans: set[tuple[int, int]] = set()

    def walk(node: Any, start: int) -> int:
        if not isinstance(node, list):
            return start + 1
        end = start
        for child in node:
            end = walk(child, end)
        if end - start > 1:
            spans.add((start, end))
        return end

    spans.discard((0, walk(tree, 0)))
    return spans


def sentence_f1(predicted: set, gold: set) -> float:
    """The paper's sentence F1: a sentence with no gold bracket has recall 1 (and precision 1
    if nothing is predicted either)."""
    overlap = len(predicted & gold)
    precision = overlap / (len(predicted) + 1e-8)
    recall = overlap / (len(gold) + 1e-8)
    if not gold:
        recall = 1.0
        if not predicted:
            precision = 1.0
    return 2 * precision * recall / (precision + recall + 1e-8)


def mean_f1(distances: list[list[float]], golds: list[set]) -> float:
    """Mean sentence F1 (%) of the greedy trees of ``distances`` against ``golds``."""
    scores = [sentence_f1(tree_spans(distance_to_tree(d)), g) for d, g in zip(distances, golds)]
    return 100.0 * sum(scores) / len(scores)


# -- the language model ----------------------------------------------------------------


class ONLSTMLM(nn.Module):
    """Embedding -> ON-LSTM layers -> adaptive soft-max (Grave et al. 2017: frequent words
    in the head, rare ones in cheaper clusters; ids must be sorted by frequency), dropout on
    the embeddings and between layers. ``forward(ids)`` returns (hidden (batch, seq, last
    size), distances (layers, batch, seq)); :meth:`nll` the mean next-word loss."""

    def __init__(self, vocab_size: int, sizes: tuple[int, ...], chunk_size: int,
                 dropout: float, dropconnect: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, sizes[0])
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self.layers = nn.ModuleList(ONLSTM(a, b, chunk_size, dropconnect=dropconnect)
                                    for a, b in itertools.pairwise(sizes))
        self.dropout = nn.Dropout(dropout)
        cutoffs = [c for c in (2000, 6000) if c < vocab_size - 1] or [vocab_size // 2]
        self.decoder = nn.AdaptiveLogSoftmaxWithLoss(sizes[-1], vocab_size, cutoffs, div_value=2.0)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        x = self.dropout(self.embed(ids))  # (batch, seq, emb)
        distances = []
        for layer in self.layers:
            out = layer(x)
            x = self.dropout(out.output)
            distances.append(out.distance)
        return x, torch.stack(distances)

    def nll(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Mean negative log-likelihood (nats) of ``targets`` given ``inputs`` (batch, seq)."""
        return self.decoder(self(inputs)[0].flatten(0, 1), targets.flatten()).loss


def lm_loss(model: ONLSTMLM, batch: tuple[Tensor]) -> Tensor:
    x = batch[0]
    return model.nll(x[:, :-1], x[:, 1:])


def windows(ids: Tensor, length: int) -> Tensor:
    """Non-overlapping rows ``ids[s : s + length + 1]`` (consecutive rows share one token)."""
    n = (len(ids) - 1) // length
    return ids[torch.arange(n)[:, None] * length + torch.arange(length + 1)]


@torch.no_grad()
def perplexity(model: ONLSTMLM, rows: Tensor, batch_size: int = 128) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        total += float(lm_loss(model, (chunk,))) * len(chunk)
    return math.exp(total / len(rows))


@torch.no_grad()
def sentence_distances(model: ONLSTMLM, sentences: list[list[int]], eos: int,
                       batch_size: int = 64) -> list[Tensor]:
    """Per sentence, the distances (layers, words) of its words, the sentence fed after an
    ``<eos>`` from a zero state (the paper's protocol). Sentences run in length-sorted
    batches, padded at the end (a causal model: padding changes nothing before it)."""
    model.eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[Tensor] = [torch.empty(0)] * len(sentences)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = len(sentences[idx[-1]])
        ids = torch.full((len(idx), width + 1), eos)
        for row, i in enumerate(idx):
            ids[row, 1:len(sentences[i]) + 1] = torch.tensor(sentences[i])
        _, distances = model(ids)  # (layers, batch, width + 1)
        for row, i in enumerate(idx):
            out[i] = distances[:, row, 1:len(sentences[i]) + 1]
    return out


def baseline_distances(n: int, kind: str, generator: torch.Generator) -> list[float]:
    """Distances whose greedy tree is right-branching (decreasing), left-branching
    (increasing) or a random binary tree (uniform)."""
    if kind == "right":
        return [float(n - t) for t in range(n)]
    if kind == "left":
        return [float(t) for t in range(n)]
    return torch.rand(n, generator=generator).tolist()


def parse_scores(model: ONLSTMLM, ids: list[list[int]], golds: list[set], eos: int,
                 seed: int) -> dict[str, float]:
    """Unlabeled F1 (%) of the trees of every layer and of the baselines; ``onlstm/f1`` is
    the paper's layer (2 of 3). ``*_wsj10``: sentences of at most 10 words;
    ``onlstm/f1_against_right``: the induced trees scored against right-branching ones."""
    distances = sentence_distances(model, ids, eos)  # (layers, words) per sentence
    g = torch.Generator().manual_seed(seed)
    baselines = {kind: [baseline_distances(len(s), kind, g) for s in ids] for kind in BASELINES}
    short = [k for k, s in enumerate(ids) if len(s) <= 10]
    metrics = {
        "onlstm/f1": mean_f1([d[PARSE_LAYER].tolist() for d in distances], golds),
        "right/f1": mean_f1(baselines["right"], golds),
        "random/f1": mean_f1(baselines["random"], golds),
        "left/f1": mean_f1(baselines["left"], golds),
    }
    for layer in range(len(model.layers)):
        metrics[f"onlstm/f1_layer{layer + 1}"] = mean_f1([d[layer].tolist() for d in distances], golds)
    metrics["onlstm/f1_wsj10"] = mean_f1([distances[k][PARSE_LAYER].tolist() for k in short],
                                         [golds[k] for k in short])
    metrics["right/f1_wsj10"] = mean_f1([baselines["right"][k] for k in short],
                                        [golds[k] for k in short])
    right_trees = [tree_spans(distance_to_tree(d)) for d in baselines["right"]]
    metrics["onlstm/f1_against_right"] = mean_f1([d[PARSE_LAYER].tolist() for d in distances],
                                                 right_trees)  # 100: the trees are right-branching
    return metrics


@register
class ONLSTMParsing(Experiment):
    name = "on-lstm-parsing"
    techniques = ("T8",)
    datasets = ("ptb-lm", "ptb-treebank-sample")
    minutes: ClassVar[dict[str, float]] = {"quick": 3.5, "full": 60}
    seeds = 3
    claim = Claim(
        post="ON-LSTM：用有序神经元表达层次结构",
        date="2019-05-28",
        url="https://kexue.fm/archives/6621",
        statement="An ON-LSTM trained only as a language model learns syntactic distances "
        "(1 - mean of its master forget gate) whose greedy top-down split recovers "
        "constituency trees better than trivial baselines.",
        condition="Unlabeled sentence-level F1 of the trees induced from the 2nd of 3 ON-LSTM "
        "layers on the PTB treebank sample (the paper's evaluation protocol) exceeds the "
        "right-branching baseline's and the random-tree baseline's, beyond seed noise.",
        reported="Paper (its code's README), full scale: WSJ test unlabeled F1 47.7 (2nd layer), "
        "PTB test perplexity 56.17; the post shows two Chinese parses and no metric.",
        fidelity="scaled-down",
        post_setting="3-layer ON-LSTM LM, 1150 hidden units, 400-d embeddings, chunk 10, "
        "AWD-LSTM regularisation, 1000 epochs of PTB on a GPU; parsed WSJ section 23.",
        our_setting="3-layer ON-LSTM LM 32 -> 128 -> 128 -> 32 (chunk 4: 32 / 8 levels), "
        "dropout 0.1, DropConnect 0.2, adaptive soft-max, AdamW lr 3e-3 (2% warm-up, linear "
        "decay), clip 0.25, 110 steps of 64 windows of 70 tokens from a zero state (~0.5M "
        "tokens, about half an epoch); 3 seeds. Parsed: the 3914 sentences of the NLTK "
        "treebank sample (WSJ 0001-0199), held out of the LM's training text. Full scale: "
        "64 -> 256 -> 256 -> 64, chunk 8, 3000 steps.",
    )

    def run(self, ctx: Context) -> Run:
        with torch_threads(1):  # many small recurrent steps: one thread is fastest here
            return self._run(ctx)

    def _run(self, ctx: Context) -> Run:
        from kexue.data import load_ptb, load_ptb_trees

        train = load_ptb("train")
        vocab = {w: i for i, (w, _) in enumerate(Counter(w for s in train for w in s).most_common())}
        trees = load_ptb_trees()
        sentences = [gold_words(t) for t in trees]
        held_out = held_out_lines(train, sentences, vocab)
        stream = torch.tensor([vocab[w] for s in train[held_out:] for w in s])
        keep = [i for i, s in enumerate(sentences) if s]
        if ctx.scale == "smoke":
            stream, keep = stream[:5000], keep[:40]
        model, steps = self._train_lm(ctx, stream, len(vocab))
        golds = [tree_spans(gold_tree(trees[i])) for i in keep]
        ids = [[vocab[lm_word(w, vocab)] for w in sentences[i]] for i in keep]
        metrics = parse_scores(model, ids, golds, vocab["<eos>"], seed=ctx.seed)
        for split in ("valid", "test"):
            rows = windows(torch.tensor([vocab[w] for s in load_ptb(split) for w in s]), LENGTH)
            metrics[f"onlstm/{split}_ppl"] = perplexity(model, rows[: ctx.pick(None, None, smoke=20)])
        ctx.log(f"      F1 {metrics['onlstm/f1']:.1f} (right {metrics['right/f1']:.1f}, random "
                f"{metrics['random/f1']:.1f}), test ppl {metrics['onlstm/test_ppl']:.0f}")
        parses = [_bracketed(distance_to_tree(
            sentence_distances(model, [ids[k]], vocab["<eos>"])[0][PARSE_LAYER].tolist(),
            sentences[keep[k]])) for k in (0, 1)]
        note = (f"LM trained on ptb.train lines {held_out}..{len(train) - 1} ({len(stream)} "
                f"tokens; lines 1..{held_out - 1} are the treebank sample's sentences), {steps} "
                f"steps of 64 windows of {LENGTH}; {len(keep)} sentences parsed.")
        return Run(metrics, samples=["\n".join(parses)], notes=[note])

    def _train_lm(self, ctx: Context, stream: Tensor, vocab_size: int) -> tuple[ONLSTMLM, int]:
        from kexue.train import TrainConfig, fit

        steps = ctx.pick(110, 3000, smoke=3)
        sizes = ctx.pick((32, 128, 128, 32), (64, 256, 256, 64), smoke=(8, 8, 8, 8))
        torch.manual_seed(ctx.seed)
        model = ONLSTMLM(vocab_size, sizes, chunk_size=ctx.pick(4, 8, smoke=4),
                         dropout=ctx.pick(0.1, 0.3, smoke=0.0), dropconnect=ctx.pick(0.2, 0.4, smoke=0.0))
        fit(model, lm_loss, TensorDataset(windows(stream, LENGTH)), TrainConfig(
            steps=steps, batch_size=64, lr=3e-3, warmup=0.02, weight_decay=1e-6, clip_norm=0.25,
            seed=ctx.seed, progress=False, log_every=max(1, steps // 5)))
        return model, steps

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        rows = [["ON-LSTM (layer 2 of 3)", str(stats["onlstm/f1"]), str(stats["onlstm/f1_wsj10"]),
                 "47.7"],
                ["ON-LSTM layer 2 scored against right-branching trees",
                 str(stats["onlstm/f1_against_right"]), "", ""]]
        for layer in (1, 3):
            key = f"onlstm/f1_layer{layer}"
            if key in stats:
                rows.append([f"ON-LSTM layer {layer}", str(stats[key]), "", ""])
        rows += [["right-branching", str(stats["right/f1"]), str(stats["right/f1_wsj10"]), ""],
                 ["left-branching", str(stats["left/f1"]), "", ""],
                 ["random trees", str(stats["random/f1"]), "", ""]]
        table = markdown_table(["trees", "UF1, PTB sample", "UF1, <= 10 words",
                                "paper, WSJ test"], rows)
        ppl = markdown_table(["", "valid", "test", "paper test"],
                             [["perplexity", str(stats["onlstm/valid_ppl"]),
                               str(stats["onlstm/test_ppl"]), "56.17"]])
        return Run({}, tables=[table, ppl])

    def checks(self, stats: Stats) -> list[Check]:
        return [
            stats.greater("onlstm/f1", "right/f1",
                          description="ON-LSTM trees beat right-branching (unlabeled F1)"),
            stats.greater("onlstm/f1", "random/f1",
                          description="ON-LSTM trees beat random trees (unlabeled F1)"),
        ]


def held_out_lines(train: list[list[str]], sentences: list[list[str]], vocab: dict[str, int]) -> int:
    """The number of leading ``ptb.train`` lines that hold the treebank sample (WSJ
    0001-0199 open the file): the sample's sentences are aligned in order to the lines
    they equal (numbers -> N, unknown words -> <unk>), each within 50 lines of the previous
    match (a few differ in tokenisation and stay unmatched); one past the last match."""
    where: dict[str, list[int]] = {}
    for i, line in enumerate(train[: 2 * len(sentences)]):
        where.setdefault(" ".join(line[:-1]), []).append(i)
    position, matched = 0, 0
    for s in sentences:
        after = [i for i in where.get(" ".join(lm_word(w, vocab) for w in s), []) if i >= position]
        if after and after[0] < position + 50:
            position, matched = after[0] + 1, matched + 1
    if matched < len(sentences) // 2:
        raise Skip(f"only {matched} of {len(sentences)} treebank-sample sentences found at the "
                   "start of ptb.train; cannot hold them out")
    return position


def _bracketed(tree: Any) -> str:
    return "(" + " ".join(_bracketed(c) for c in tree) + ")" if isinstance(tree, list) else str(tree)
