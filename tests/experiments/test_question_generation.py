import math

from kexue.evidence import Context, Run, verdict
from kexue.evidence.suite import _aggregate
from kexue.experiments.question_generation import (
    QuestionGeneration,
    build,
    is_span,
    sentences,
    window,
)


def test_window_keeps_the_answer_and_whole_sentences():
    context = "甲乙丙。丁戊己庚辛。壬癸子丑。寅卯辰巳午未。"
    passage, holder = window(context, "庚辛", context.index("庚辛"), 14)
    assert "庚辛" in passage and holder == "丁戊己庚辛。" and len(passage) <= 14
    assert passage in ("甲乙丙。丁戊己庚辛。", "丁戊己庚辛。壬癸子丑。")
    assert sentences("一。二！三") == ["一。", "二！", "三"]
    # a wrong offset is repaired by search; a missing answer gives None
    assert window(context, "壬癸", 0, 14)[1] == "壬癸子丑。"
    assert window(context, "不在", -1, 14) is None
    # a sentence longer than the window: a cut centred on the answer
    long = "一二三四五六七八九十" * 3 + "。"
    passage, _ = window(long, "五六", 14, 8)
    assert "五六" in passage and len(passage) == 8


def test_is_span():
    assert is_span([2, 3], [1, 2, 3, 4]) and not is_span([2, 4], [1, 2, 3, 4])
    assert not is_span([], [1, 2]) and not is_span([1, 2, 3], [1, 2])


def test_build_drops_long_and_missing_answers():
    records = [{"context": "甲乙丙。", "answers": ["乙"], "answer_starts": [1], "question": "问"},
               {"context": "甲乙丙。", "answers": ["丁"], "answer_starts": [-1], "question": "问"},
               {"context": "甲乙丙丁。", "answers": ["乙丙丁"], "answer_starts": [1], "question": "问"}]
    got = build(records, 10, 2, 5)
    assert [r["answer"] for r in got] == ["乙"]


def test_smoke_run(tmp_path, one_thread):
    exp = QuestionGeneration()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert 0 <= run.metrics["answer_in_passage"] <= 100 and run.samples
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 2 and all(c.holds is None for c in checks)
    assert exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path)).tables


def _stats(span, beam_bleu):
    return _aggregate([Run({"answer_in_passage": span + d, "beam/bleu4": beam_bleu + d,
                            "copy/bleu4": 8.0 + d}) for d in (-0.5, 0.0, 0.5)], False)


def test_verdict_follows_the_measurements():
    exp = QuestionGeneration()
    assert verdict(exp.checks(_stats(97.0, 15.0))) == "reproduced"
    assert verdict(exp.checks(_stats(60.0, 15.0))) == "not reproduced"
    assert verdict(exp.checks(_stats(97.0, 3.0))) == "not reproduced"
