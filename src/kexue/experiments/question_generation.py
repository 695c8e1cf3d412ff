"""T25 UniLM question-answer generation: passage -> answer -> question with one BERT.

Post: 学会提问的BERT：端到端地从篇章中构建问答对 (2020-07-25,
https://kexue.fm/archives/7630). One BERT with the UniLM mask reads
``[CLS] passage [SEP]`` and writes ``answer [SEP] question [SEP]`` — the answer first,
because "passage -> answer" and "passage + answer -> question" are easier than the
reverse. Decoding: the answer by random sampling (top-p 0.95), then the question by
deterministic search, so answers vary while questions stay on the passage. Here, on
CMRC 2018 (dev as training set, trial as test set): how often a sampled answer is a
span of the passage, and the BLEU-4 / ROUGE-L of the question written for the gold
answer (beam search and top-p sampling) against the reference, beside a baseline that
copies the sentence holding the answer.
"""

from __future__ import annotations

import re

import torch

from kexue.evidence import Check, Claim, Context, Experiment, Run, Stats, markdown_table, register
from kexue.experiments._shared import seq2seq

A_LEN, Q_LEN = 16, 32  # the longest answer and question kept
_SENTENCE = re.compile(r"[^。！？；!?;\n]*[。！？；!?;\n]?")


def sentences(text: str) -> list[str]:
    """Split after 。！？；!?; and newlines, keeping the delimiters."""
    return [s for s in _SENTENCE.findall(text) if s]


def window(context: str, answer: str, start: int, size: int) -> tuple[str, str] | None:
    """The sentences around the answer, at most ``size`` characters, and the sentence that
    holds the answer (the copy baseline); None if the answer is not found in the context."""
    if start < 0 or context[start : start + len(answer)] != answer:
        start = context.find(answer)
    if not answer or start < 0:
        return None
    parts = sentences(context)
    ends = [0]
    for s in parts:
        ends.append(ends[-1] + len(s))
    k = max(i for i in range(len(parts)) if ends[i] <= start)
    holder = parts[k]
    if ends[k] + len(holder) < start + len(answer) or len(holder) > size:  # spans sentences / too long
        lo = max(0, min(start - (size - len(answer)) // 2, len(context) - size))
        return context[lo : lo + size], holder
    lo, hi = k, k + 1
    while True:  # grow by whole sentences, alternating right and left
        grown = False
        if hi < len(parts) and ends[hi + 1] - ends[lo] <= size:
            hi, grown = hi + 1, True
        if lo > 0 and ends[hi] - ends[lo - 1] <= size:
            lo, grown = lo - 1, True
        if not grown:
            return context[ends[lo] : ends[hi]], holder


def build(records: list[dict], size: int, max_answer: int, max_question: int) -> list[dict]:
    out = []
    for r in records:
        answer, start = r["answers"][0], r["answer_starts"][0]
        got = window(r["context"], answer, start, size)
        if got is None or len(answer) > max_answer:
            continue
        passage, holder = got
        if answer not in passage:
            continue
        out.append({"passage": passage, "answer": answer, "question": r["question"][:max_question],
                    "sentence": holder})
    return out


def is_span(part: list[int], whole: list[int]) -> bool:
    """Whether ``part`` is a non-empty contiguous piece of ``whole`` (token ids)."""
    n = len(part)
    return n > 0 and any(whole[i : i + n] == part for i in range(len(whole) - n + 1))


def sample_answers(lm, tok, passages: list[list[int]], generator: torch.Generator) -> list[list[int]]:
    """One top-p 0.95 answer per passage, decoded after ``[CLS] passage [SEP]`` (ids)."""
    from kexue.generate import generate

    batch = seq2seq.prompts(passages, cls=tok.cls_token_id, sep=tok.sep_token_id, pad=tok.pad_token_id)
    out = generate(lm, batch.pop("input_ids"), A_LEN + 1, do_sample=True, top_p=0.95, generator=generator,
                   eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id, **batch)
    return [seq2seq.until(row.tolist(), tok.sep_token_id) for row in out]


def write_questions(lm, tok, passages: list[list[int]], answers: list[list[int]], **decoding) -> list[str]:
    """The question decoded after ``[CLS] passage [SEP] answer [SEP]`` for each pair."""
    from kexue.generate import generate

    sep = tok.sep_token_id
    batch = seq2seq.prompts(passages, [a + [sep] for a in answers], cls=tok.cls_token_id, sep=sep,
                            pad=tok.pad_token_id)
    out = generate(lm, batch.pop("input_ids"), Q_LEN + 1, eos_token_id=sep, pad_token_id=tok.pad_token_id,
                   **decoding, **batch)
    return [tok.decode(seq2seq.until(row.tolist(), sep)) for row in out]


def text_scores(hypotheses: list[str], references: list[str]) -> tuple[float, float]:
    """Character-level corpus BLEU-4 and mean ROUGE-L F, in percent."""
    from kexue.generate import corpus_bleu, rouge_l

    hyps, refs = [list(h) for h in hypotheses], [list(r) for r in references]
    return corpus_bleu(hyps, refs), sum(rouge_l(hyps, refs)) / len(refs)


@register
class QuestionGeneration(Experiment):
    name = "question-generation"
    techniques = ("T25",)
    datasets = ("cmrc2018",)
    minutes = {"quick": 12, "full": 30}
    claim = Claim(
        post="学会提问的BERT：端到端地从篇章中构建问答对",
        date="2020-07-25",
        url="https://kexue.fm/archives/7630",
        statement="A BERT with the UniLM mask generates question-answer pairs end to end from a "
        "passage: a sampled answer, then a deterministic question.",
        condition="On CMRC 2018 trial passages, >= 90% of sampled answers are spans of the passage, "
        "and questions beam-decoded for the gold answer beat copying the answer's sentence on "
        "BLEU-4, beyond seed noise.",
        reported="Qualitative examples only (e.g. 世界第二高山峰叫什么名字? / 乔戈里峰); no metric.",
        fidelity="substituted",
        post_setting="Chinese BERT-base (reduced vocabulary) + UniLM, WebQA + SogouQA passages cut "
        "to <= 126 characters, 100 epochs x 1000 steps of batch 32, Adam 1e-5; answer by top-p "
        "0.95 sampling, question by beam search.",
        our_setting="2-layer char UniLM (hidden 128, 2000 characters) from scratch, trained 1500 "
        "steps of batch 32 on CMRC 2018 dev (passages cut to <= 64 characters around the "
        "answer); 150 trial examples; answer by top-p 0.95, question by 3 beams and by top-p 0.95.",
        substitution="No pretrained Chinese BERT is available here (MiniLM is an English "
        "sentence encoder without an MLM head) and WebQA/SogouQA are not shipped, so a small "
        "UniLM is trained from scratch on the 3k CMRC 2018 dev questions.",
    )

    def run(self, ctx: Context) -> Run:
        from kexue.data import CharTokenizer, load_cmrc2018
        from kexue.generate import UniLM

        size = ctx.pick(64, 126, smoke=48)
        train = build(load_cmrc2018("dev"), size, A_LEN, Q_LEN)[: ctx.pick(None, None, smoke=200)]
        test = build(load_cmrc2018("trial"), size, A_LEN, Q_LEN)[: ctx.pick(150, None, smoke=16)]
        tok = CharTokenizer.fit([r[k] for r in train for k in ("passage", "answer", "question")],
                                min_count=2, max_size=ctx.pick(2000, None, smoke=None))
        sep = tok.sep_token_id
        data = seq2seq.examples([tok.encode(r["passage"]) for r in train],
                                [tok.encode(r["answer"]) + [sep] + tok.encode(r["question"]) for r in train],
                                cls=tok.cls_token_id, sep=sep, pad=tok.pad_token_id)
        torch.manual_seed(ctx.seed)
        model = seq2seq.small_unilm(tok.vocab_size, size + A_LEN + Q_LEN + 4, hidden=ctx.pick(128, 256, smoke=32))
        steps, batch = ctx.pick(1500, 5000, smoke=10), ctx.pick(32, 32, smoke=8)
        metrics = {"train_loss": seq2seq.train(model, data, steps=steps, batch_size=batch, lr=2e-3, seed=ctx.seed)}
        lm, g = UniLM(model), torch.Generator().manual_seed(ctx.seed)
        passages = [tok.encode(r["passage"]) for r in test]
        # 1. answers: top-p 0.95 samples after [CLS] passage [SEP]
        answers = sample_answers(lm, tok, passages, g)
        metrics["answer_in_passage"] = 100.0 * sum(map(is_span, answers, passages)) / len(test)
        metrics["answer_empty"] = 100.0 * sum(not a for a in answers) / len(test)
        # 2. questions for the gold answer, by beam search and by top-p sampling, and the copy baseline
        gold = [tok.encode(r["answer"]) for r in test]
        written = {"beam": write_questions(lm, tok, passages, gold, num_beams=3),
                   "top_p": write_questions(lm, tok, passages, gold, do_sample=True, top_p=0.95, generator=g),
                   "copy": [r["sentence"] for r in test]}
        for name, hyps in written.items():
            metrics[f"{name}/bleu4"], metrics[f"{name}/rouge_l"] = text_scores(hyps, [r["question"] for r in test])
        # 3. the post's pipeline on a few passages: sampled answer -> beam / top-p question
        few = slice(0, 4)
        beam = write_questions(lm, tok, passages[few], answers[few], num_beams=3)
        top_p = write_questions(lm, tok, passages[few], answers[few], do_sample=True, top_p=0.95, generator=g)
        samples = [f"seed {ctx.seed}: {r['passage']} || sampled answer: {tok.decode(a)} -> beam: {qb} / "
                   f"top-p: {qp} || gold: {r['answer']} -> {r['question']} (beam for the gold answer: {b})"
                   for r, a, qb, qp, b in zip(test[few], answers[few], beam, top_p, written["beam"][few])]
        note = (f"{len(train)} training and {len(test)} test examples (passages <= {size} characters), "
                f"vocabulary {tok.vocab_size}; {steps} steps of batch {batch}; character-level BLEU-4 "
                "(sacrebleu's corpus BLEU) and ROUGE-L F.")
        return Run(metrics, samples=samples, notes=[note])

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run | None:
        rows = [[name, str(stats[f"{key}/bleu4"]), str(stats[f"{key}/rouge_l"])]
                for name, key in (("beam (3), gold answer", "beam"), ("top-p 0.95, gold answer", "top_p"),
                                  ("copy the answer's sentence", "copy"))]
        return Run({}, tables=[markdown_table(["question", "BLEU-4", "ROUGE-L"], rows)])

    def checks(self, stats: Stats) -> list[Check]:
        return [
            stats.above("answer_in_passage", 90.0,
                        description=">= 90% of sampled answers are spans of the passage"),
            stats.greater("beam/bleu4", "copy/bleu4"),
        ]
