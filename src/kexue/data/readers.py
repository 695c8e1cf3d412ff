"""Readers for the registered data sets: plain Python lists, in file order.

Every reader goes through :mod:`kexue.data.registry`, so it works the same on the shipped
gzip copies, on downloaded copies and on a ``$KEXUE_DATA`` folder. Carriage returns are
stripped, a ``split`` outside the documented ones raises ``ValueError`` listing the valid
ones, and a line that does not have the expected fields raises ``ValueError`` naming the
file and line number (no record is ever silently dropped or padded).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from typing import Any, Union

from kexue.data.registry import DATASETS, find, open_text, path

__all__ = [
    "load_cmrc2018",
    "load_csl_title",
    "load_fewclue",
    "load_graph",
    "load_kgclue",
    "load_kgclue_kb",
    "load_lcsts",
    "load_ptb",
    "load_ptb_trees",
    "load_senteval_cn",
    "load_sentiment",
    "load_sst2",
    "load_stsb",
    "load_tang_poems",
    "load_tinyshakespeare",
    "parse_brackets",
]


def _check(what: str, value: str, valid: list[str] | tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{what} must be one of {list(valid)}, got {value!r}")


def _lines(name: str, key: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, line without its "\\n"/"\\r\\n") of one registered file."""
    with open_text(name, key) as f:
        for i, line in enumerate(f, start=1):
            yield i, line.rstrip("\n").rstrip("\r")


def _fields(name: str, key: str, n: int, skip_header: bool = False) -> Iterator[list[str]]:
    """Yield the ``n`` tab-separated fields of every line of one registered file."""
    for i, line in _lines(name, key):
        if skip_header and i == 1:
            continue
        parts = line.split("\t")
        if len(parts) != n:
            raise ValueError(
                f"{DATASETS[name].files[key]}, line {i}: expected {n} tab-separated fields, "
                f"got {len(parts)}"
            )
        yield parts


def load_sentiment(split: str) -> list[tuple[str, int]]:
    """Chinese binary sentiment (bert4keras): ``(text, label)`` with label 0/1.

    Splits: train (16883), valid (2111), test (2111).
    """
    _check("split", split, ("train", "valid", "test"))
    return [(text, int(label)) for text, label in _fields("sentiment", split, 2)]


def load_stsb(split: str, lang: str = "en") -> list[tuple[str, str, float]]:
    """STS-B sentence pairs ``(sentence1, sentence2, score)``, score in [0, 5].

    ``lang="en"``: STS-benchmark, splits train (5749) / dev (1500) / test (1379).
    ``lang="zh"``: Chinese STS-B, splits train (5231) / valid (1458) / test (1361),
    integer scores returned as floats. "dev" and "valid" are accepted for either language.
    """
    _check("lang", lang, ("en", "zh"))
    _check("split", split, ("train", "dev", "valid", "test"))
    if lang == "zh":
        split = "valid" if split == "dev" else split
        return [(a, b, float(s)) for a, b, s in _fields("stsb-zh", split, 3)]
    split = "dev" if split == "valid" else split
    # header: split genre dataset year sid score sentence1 sentence2
    return [
        (row[6], row[7], float(row[5]))
        for row in _fields("stsb-en", "all", 8, skip_header=True)
        if row[0] == split
    ]


def load_senteval_cn(task: str, split: str) -> list[tuple[str, str, int]]:
    """ATEC / BQ / LCQMC / PAWSX sentence pairs ``(s1, s2, label)`` with label 0/1.

    Only the valid and test splits exist here (research-use data, read from
    ``$KEXUE_DATA`` or ``kexue data get``).
    """
    _check("task", task, ("ATEC", "BQ", "LCQMC", "PAWSX"))
    _check("split", split, ("valid", "test"))
    return [(a, b, int(y)) for a, b, y in _fields("senteval_cn", f"{task}/{split}", 3)]


def load_sst2(split: str) -> list[tuple[str, int]]:
    """SST-2 ``(sentence, label)`` with label 0/1: train (67349) / dev (872) / test (1821).

    The files store ``label\\tsentence`` under a header line; train uses CRLF endings.
    """
    _check("split", split, ("train", "dev", "test"))
    return [(text, int(label)) for label, text in _fields("sst2", split, 2, skip_header=True)]


def load_tinyshakespeare() -> str:
    """The tiny-shakespeare corpus as one string (1,115,394 characters)."""
    with open_text("tinyshakespeare", "all") as f:
        return f.read().replace("\r\n", "\n")


def load_tang_poems(limit: int | None = None) -> list[str]:
    """Tang poems, each its ``paragraphs`` joined by ``"\\n"`` (traditional characters).

    Reads every ``poet.tang.<n>.json`` present under the data roots, in numeric order:
    the package bundles the first 10 files (10,008 poems), ``kexue data get`` fetches 45
    (45,023 poems). ``limit`` keeps only the first ``limit`` poems.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    ds = DATASETS["chinese-poetry-tang"]
    poems: list[str] = []
    found_any = False
    for key in ds.files:  # registry order is numeric order
        if limit is not None and len(poems) >= limit:
            break
        if find(ds.name, key) is None:
            continue
        found_any = True
        with open_text(ds.name, key) as f:
            for record in json.load(f):
                poems.append("\n".join(record["paragraphs"]))
    if not found_any:
        path(ds.name, next(iter(ds.files)))  # raises FileNotFoundError with the roots
    return poems if limit is None else poems[:limit]


_FEWCLUE_SPLITS = {
    "tnews": [f"{k}_{i}" for k in ("train", "dev") for i in range(5)]
    + ["train_few_all", "dev_few_all", "test_public", "test", "unlabeled"],
    "iflytek": [f"{k}_{i}" for k in ("train", "dev") for i in range(5)]
    + ["train_few_all", "dev_few_all", "test_public", "test"],
}


def load_fewclue(task: str, split: str) -> list[dict[str, Any]]:
    """FewCLUE TNEWS / IFLYTEK records (JSON lines) as dicts.

    Every dict has ``sentence`` (str) and ``label`` (int, or None for the unlabelled
    ``test`` and ``unlabeled`` splits), plus the file's other fields (``id``,
    ``label_desc``/``label_des``, ``keywords``). Splits: ``train_0..4``, ``dev_0..4``,
    ``train_few_all``, ``dev_few_all``, ``test_public``, ``test`` (and ``unlabeled`` for
    tnews). Counts, e.g. tnews test_public 2010, iflytek train_few_all 3024.
    """
    _check("task", task, tuple(_FEWCLUE_SPLITS))
    _check("split", split, _FEWCLUE_SPLITS[task])
    records = []
    for _, line in _lines(f"fewclue-{task}", split):
        if not line.strip():
            continue
        record = json.loads(line)
        label = record.get("label")
        record["label"] = None if label is None else int(label)
        records.append(record)
    return records


def load_ptb(split: str) -> list[list[str]]:
    """Mikolov's word-level PTB: one list of word tokens per line, ending in ``"<eos>"``.

    Splits: train (42068 lines), valid (3370), test (3761); vocabulary of 10000 incl. <eos>.
    """
    _check("split", split, ("train", "valid", "test"))
    return [line.split() + ["<eos>"] for _, line in _lines("ptb-lm", split)]


# A bracketed tree: (label, children), each child a tree or a word.
Tree = tuple[str, list[Union["Tree", str]]]

_BRACKET_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_brackets(text: str, source: str = "text") -> list[Tree]:
    """Parse Penn-Treebank-style bracketed trees: ``(S (NP (DT the) (NN cat)) ...)``.

    Returns one ``(label, children)`` tuple per top-level bracket, a child being a tree or
    a word (``str``). The treebank's unlabelled outer bracket, ``( (S ...) )``, is unwrapped
    to its single child. A label-less inner node gets label ``""``. Unbalanced brackets
    raise ``ValueError`` naming ``source``.
    """
    trees: list[Tree] = []
    stack: list[tuple[list[str], list]] = []  # open nodes: ([label], children)
    after_open = False
    for k, tok in enumerate(_BRACKET_TOKEN.findall(text)):
        if tok == "(":
            stack.append(([""], []))
        elif tok == ")":
            if not stack:
                raise ValueError(f"{source}: unbalanced ')' (token {k})")
            (label,), children = stack.pop()
            if stack:
                stack[-1][1].append((label, children))
            elif label == "" and len(children) == 1 and not isinstance(children[0], str):
                trees.append(children[0])  # the treebank's unlabelled outer bracket
            else:
                trees.append((label, children))
        elif not stack:
            raise ValueError(f"{source}: word {tok!r} outside any bracket (token {k})")
        elif after_open:
            stack[-1][0][0] = tok  # the first token after "(" is the label
        else:
            stack[-1][1].append(tok)
        after_open = tok == "("
    if stack:
        raise ValueError(f"{source}: {len(stack)} unclosed '(' at the end")
    return trees


def load_ptb_trees() -> list[Tree]:
    """The NLTK Penn Treebank sample (WSJ 0001-0199): 3914 gold trees in file order.

    Each tree is ``(label, children)`` (see :func:`parse_brackets`), with function tags
    and indices kept in the labels (``NP-SBJ-1``), traces as ``-NONE-`` leaves and POS
    tags as preterminal labels: ``("NNP", ["Pierre"])``. Research-use data (read from the
    zip under ``$KEXUE_DATA``).
    """
    with zipfile.ZipFile(path("ptb-treebank-sample", "zip")) as archive:
        names = sorted(n for n in archive.namelist()
                       if n.startswith("treebank/combined/") and n.endswith(".mrg"))
        return [tree for name in names
                for tree in parse_brackets(archive.read(name).decode("utf-8"), name)]


def load_cmrc2018(split: str) -> list[dict[str, Any]]:
    """CMRC 2018 questions, flattened: dicts with ``id``, ``context``, ``question``,
    ``answers`` (list of str) and ``answer_starts`` (list of int).

    Splits: dev (3219 questions) and trial (1002). Records are as published: some dev
    answers are free text with ``answer_start == -1``, and about 10 offsets upstream are
    off by a character or so.
    """
    _check("split", split, ("dev", "trial"))
    with open_text("cmrc2018", split) as f:
        doc = json.load(f)
    out = []
    for article in doc["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                out.append({
                    "id": qa["id"],
                    "context": para["context"],
                    "question": qa["question"],
                    "answers": [a["text"] for a in qa["answers"]],
                    "answer_starts": [int(a["answer_start"]) for a in qa["answers"]],
                })
    return out


_GML_TOKEN = re.compile(r'\[|\]|"[^"]*"|[^\s\[\]"]+')


def _parse_gml(text: str) -> list[tuple[str, Any]]:
    """Parse GML into nested lists of (key, value) pairs; values are str/int/float/list."""
    tokens = _GML_TOKEN.findall(text)
    pos = 0

    def parse_list() -> list[tuple[str, Any]]:
        nonlocal pos
        items = []
        while pos < len(tokens) and tokens[pos] != "]":
            key = tokens[pos]
            if pos + 1 >= len(tokens):
                raise ValueError(f"GML: key {key!r} has no value")
            tok = tokens[pos + 1]
            pos += 2
            if tok == "[":
                value: Any = parse_list()
                if pos >= len(tokens):
                    raise ValueError(f"GML: unclosed '[' after key {key!r}")
                pos += 1  # the closing "]"
            elif tok.startswith('"'):
                value = tok[1:-1]
            else:
                try:
                    value = int(tok)
                except ValueError:
                    value = float(tok)
            items.append((key, value))
        return items

    return parse_list()


def load_graph(name: str) -> dict[str, Any]:
    """A community-detection benchmark graph with its ground truth.

    ``name`` is "football" (115 nodes, 613 edges, 12 conferences) or "polbooks" (105 nodes,
    441 edges, leanings l/c/n). Returns a dict with ``labels`` (node names, node order of
    the file), ``groups`` (ground-truth community per node), and ``edges`` (list of
    ``(i, j)`` node *indices*, file order).
    """
    _check("graph", name, ("football", "polbooks"))
    with open_text("graphs", name) as f:
        top = _parse_gml(f.read())
    graph = dict(top)["graph"]
    nodes = [dict(v) for k, v in graph if k == "node"]
    index = {node["id"]: i for i, node in enumerate(nodes)}
    edges = [(index[e["source"]], index[e["target"]])
             for e in (dict(v) for k, v in graph if k == "edge")]
    return {
        "labels": [node.get("label", str(node["id"])) for node in nodes],
        "groups": [node["value"] for node in nodes],
        "edges": edges,
    }


def load_kgclue(split: str) -> list[dict[str, Any]]:
    """KgCLUE questions: dicts with ``id``, ``question`` and ``answer`` — the gold triple
    ``(head, relation, tail)``, or None for the unlabelled ``test`` split.

    Splits: train (18000), dev (2000), test_public (2000), test (3000).
    """
    _check("split", split, ("train", "dev", "test_public", "test"))
    out = []
    for i, line in _lines("kgclue", split):
        if not line.strip():
            continue
        record = json.loads(line)
        answer = record.get("answer")
        if answer is not None:
            triple = tuple(answer.split(" ||| "))  # kept verbatim, as in the derived KB
            if len(triple) != 3:
                raise ValueError(
                    f"kgclue/{split}.json, line {i}: expected 'head ||| relation ||| tail', "
                    f"got {len(triple)} parts"
                )
            answer = triple
        out.append({"id": record["id"], "question": record["question"], "answer": answer})
    return out


def load_kgclue_kb() -> list[tuple[str, str, str]]:
    """The mini knowledge base derived from KgCLUE's gold answers: 22000 triples
    ``(head, relation, tail)`` (no distractors; see :func:`kexue.data.download.derive_kgclue_kb`)."""
    return [tuple(row) for row in _fields("kgclue", "kb", 3)]


def load_csl_title(split: str) -> list[tuple[str, str]]:
    """CSL paper titles: ``(abstract, title)`` pairs.

    Splits: "clge/val", "clge/test" (CLGE), "ts/dev", "ts/test" (CSL benchmark), 1000 each.
    """
    _check("split", split, ("clge/val", "clge/test", "ts/dev", "ts/test"))
    if split.startswith("clge/"):
        return [(abstract, title) for title, abstract in _fields("csl-title", split, 2)]
    return [(abstract, title) for _, abstract, title in _fields("csl-title", split, 3)]


def load_lcsts(split: str) -> list[tuple[str, str]]:
    """LCSTS subset (CLGE): ``(text, summary)`` pairs; train 8666 / val 1000 / test 1000."""
    _check("split", split, ("train", "val", "test"))
    return [(text, summary) for summary, text in _fields("lcsts-clge", split, 2)]
