"""The data-set registry: what each set is, where it came from, and where its files are.

Every file is named by a path *relative to a data root*. A file is looked up, in order,
under

1. each folder in ``$KEXUE_DATA`` (``os.pathsep``-separated), if the variable is set;
2. the data bundled inside the installed package (``kexue/data/bundled``: gzip copies of
   the redistributable sets, which also travel inside the wheel);
3. the user data cache (:func:`user_data_dir`), where ``kexue data get NAME`` downloads
   the research-use sets from their public sources.

Under each root both ``rel`` and ``rel + ".gz"`` are tried (and, when ``rel`` ends in
``.gz``, also ``rel`` without it), so a reader never cares whether a copy is compressed:
:func:`open_text` decompresses transparently.

Research-use sets (``redistributable=False``) are never copied into the repository; an
experiment that needs one should check :func:`available` and report itself skipped.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import platformdirs

__all__ = [
    "BUNDLED_ROOT",
    "DATASETS",
    "DataSet",
    "available",
    "data_roots",
    "describe",
    "find",
    "open_text",
    "path",
    "user_cache_root",
    "user_data_dir",
]

BUNDLED_ROOT = Path(__file__).resolve().parent / "bundled"


@dataclass(frozen=True)
class DataSet:
    """One data set: provenance, licence and its files (split/file key -> relative path).

    ``optional`` names keys that :func:`available` does not require (e.g. the Tang-poem
    files beyond the subset shipped with the repository).
    """

    name: str
    description: str
    source: str
    licence: str
    redistributable: bool
    files: dict[str, str]
    optional: frozenset[str] = field(default_factory=frozenset)


def _senteval_cn_files() -> dict[str, str]:
    return {
        f"{task}/{split}": f"senteval_cn/{task}/{task}.{split}.data"
        for task in ("ATEC", "BQ", "LCQMC", "PAWSX")
        for split in ("valid", "test")
    }


def _fewclue_files(task: str, extra: tuple[str, ...]) -> dict[str, str]:
    splits = [f"{kind}_{k}" for kind in ("train", "dev") for k in range(5)]
    splits += ["train_few_all", "dev_few_all", "test_public", "test", *extra]
    return {s: f"fewclue-{task}/{s}.json" for s in splits}


# The first 45 Tang-poem files of the upstream collection; the first 10 are bundled, the
# rest come with `kexue data get chinese-poetry-tang`.
_TANG_SHIPPED = 10
_TANG_FILES = {f"poet.tang.{i * 1000}": f"chinese-poetry-tang/poet.tang.{i * 1000}.json"
               for i in range(45)}

_SETS = [
    DataSet(
        "sentiment",
        "Chinese binary sentiment (reviews), text\\tlabel; train 16883 / valid 2111 / test 2111",
        "bojone/bert4keras examples/datasets/sentiment.zip @ c1ae0dc",
        "Apache-2.0",
        True,
        {s: f"sentiment/sentiment.{s}.data" for s in ("train", "valid", "test")},
    ),
    DataSet(
        "stsb-en",
        "STS-benchmark (English), 0-5 similarity; train 5749 / dev 1500 / test 1379",
        "shibing624/text2vec examples/data/English-STS-B @ 8e90a0f (Cer et al. 2017)",
        "Apache-2.0 repository (text2vec); STS-benchmark (SemEval) data, terms of its sources",
        True,
        {"all": "stsb-en/stsbenchmark.tsv.gz"},
    ),
    DataSet(
        "stsb-zh",
        "Chinese STS-B (CNSD machine translation), integer 0-5; train 5231 / valid 1458 / test 1361",
        "shibing624/text2vec examples/data/STS-B @ 8e90a0f",
        "research use",
        False,
        {s: f"stsb-zh/STS-B.{s}.data" for s in ("train", "valid", "test")},
    ),
    DataSet(
        "senteval_cn",
        "ATEC, BQ, LCQMC, PAWSX sentence pairs with 0/1 labels (valid + test only)",
        "shawroad/CoSENT_Pytorch data/ @ ddb0847",
        "research use (BQ/LCQMC by application to HIT; PAWS-X as is; ATEC unspecified)",
        False,
        _senteval_cn_files(),
    ),
    DataSet(
        "sst2",
        "SST-2 binary sentiment (GLUE split, labelled test); train 67349 / dev 872 / test 1821",
        "awake020/pytorch_Bert_sst2 SST-2/ @ ce2ab17 (Socher et al. 2013)",
        "no licence file upstream; Stanford Sentiment Treebank data",
        True,
        {s: f"sst2/{s}.tsv" for s in ("train", "dev", "test")},
    ),
    DataSet(
        "tinyshakespeare",
        "tiny-shakespeare, 1,115,394 characters",
        "karpathy/char-rnn data/tinyshakespeare/input.txt @ 6f9487a",
        "MIT (repository); text public domain",
        True,
        {"all": "tinyshakespeare/input.txt"},
    ),
    DataSet(
        "chinese-poetry-tang",
        "Tang poems (traditional Chinese), JSON arrays of {author, paragraphs, title, id}; "
        f"files 0..{(_TANG_SHIPPED - 1) * 1000} are bundled; `kexue data get` fetches all 45",
        "chinese-poetry/chinese-poetry 全唐诗/ @ 99ebbef",
        "MIT",
        True,
        _TANG_FILES,
        frozenset(list(_TANG_FILES)[_TANG_SHIPPED:]),
    ),
    DataSet(
        "fewclue-tnews",
        "TNEWS news-title classification, FewCLUE splits (15 classes, label ids 100-116)",
        "CLUEbenchmark/FewCLUE datasets/tnews @ 62a02c6",
        "not specified upstream (research use)",
        False,
        {**_fewclue_files("tnews", ("unlabeled",)),
         "label_index": "fewclue-tnews/label_index2en2zh.json"},
    ),
    DataSet(
        "fewclue-iflytek",
        "IFLYTEK app-description classification, FewCLUE splits (119 label ids)",
        "CLUEbenchmark/FewCLUE datasets/iflytek @ 62a02c6",
        "not specified upstream (research use)",
        False,
        _fewclue_files("iflytek", ()),
    ),
    DataSet(
        "ptb-lm",
        "Mikolov's word-level Penn Treebank LM; train 42068 / valid 3370 / test 3761 lines",
        "Lasagne/Recipes examples/penntree @ d616658",
        "LDC Penn Treebank derivative (research use)",
        False,
        {s: f"ptb-lm/ptb.{s}.txt.gz" for s in ("train", "valid", "test")},
    ),
    DataSet(
        "ptb-treebank-sample",
        "NLTK Penn Treebank sample (WSJ 0001-0199), 3914 gold trees, kept as the zip",
        "nltk/nltk_data packages/corpora/treebank.zip @ 5db857e",
        "(C) LDC 1995, fair use, non-commercial only",
        False,
        {"zip": "ptb-treebank-sample/treebank.zip"},
    ),
    DataSet(
        "cmrc2018",
        "CMRC 2018 span-extraction reading comprehension (SQuAD JSON); dev 3219 Q / trial 1002 Q",
        "ymcui/cmrc2018 squad-style-data @ c0eb1b6",
        "CC BY-SA 4.0",
        True,
        {s: f"cmrc2018/cmrc2018_{s}.json" for s in ("dev", "trial")},
    ),
    DataSet(
        "graphs",
        "football (115 nodes, 12 conferences) and polbooks (105 nodes, 3 leanings) GML",
        "happylixue/small-scale-graph-node-influence data/ @ 41fce3d (Newman's collection)",
        "no licence file upstream; data from M. E. J. Newman's network collection",
        True,
        {g: f"graphs/{g}.gml" for g in ("football", "polbooks")},
    ),
    DataSet(
        "kgclue",
        "KgCLUE knowledge-base QA (JSON lines) + a mini KB derived from the gold answers",
        "CLUEbenchmark/KgCLUE datasets/ @ c129972",
        "no licence file upstream (research use)",
        False,
        {**{s: f"kgclue/{s}.json" for s in ("train", "dev", "test_public", "test")},
         "kb": "kgclue/knowledge_from_answers.txt"},
    ),
    DataSet(
        "csl-title",
        "CSL abstract -> title: CLGE val/test (title\\tabstract) and CSL-benchmark ts dev/test",
        "CLUEbenchmark/CLGE @ 2fb38e1; ydli-ai/CSL benchmark/ts @ 0f1ac06",
        "CLGE: no licence file; CSL benchmark: Apache-2.0 (research use)",
        False,
        {"clge/val": "csl-title/clge/val.tsv", "clge/test": "csl-title/clge/test.tsv",
         "ts/dev": "csl-title/csl-benchmark-ts/dev.tsv",
         "ts/test": "csl-title/csl-benchmark-ts/test.tsv"},
    ),
    DataSet(
        "lcsts-clge",
        "LCSTS subset (summary\\ttext); train 8666 / val 1000 / test 1000",
        "CLUEbenchmark/CLGE LGECdataset/lcsts @ 2fb38e1",
        "research use only (LCSTS by application to HIT)",
        False,
        {s: f"lcsts-clge/{s}.tsv" for s in ("train", "val", "test")},
    ),
]

DATASETS: dict[str, DataSet] = {ds.name: ds for ds in _SETS}


def user_cache_root() -> Path:
    """kexue's cache folder: ``$KEXUE_CACHE`` if set, else the platform's user cache
    (``~/.cache/kexue`` on Linux). Downloaded data, results and trained weights live here."""
    root = os.environ.get("KEXUE_CACHE")
    return Path(root).expanduser() if root else platformdirs.user_cache_path("kexue")


def user_data_dir() -> Path:
    """Where ``kexue data get`` puts downloaded sets: ``<user cache>/data``."""
    return user_cache_root() / "data"


def data_roots() -> list[Path]:
    """The roots searched, in order: ``$KEXUE_DATA`` entries, bundled data, user data cache."""
    roots = [Path(p).expanduser() for p in os.environ.get("KEXUE_DATA", "").split(os.pathsep) if p]
    return roots + [BUNDLED_ROOT, user_data_dir()]


def _candidates(rel: str) -> list[str]:
    if rel.endswith(".gz"):
        return [rel, rel[: -len(".gz")]]
    return [rel, rel + ".gz"]


def _get(name: str) -> DataSet:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def _find(rel: str) -> tuple[Path, Path] | None:
    """Return (file, root) for the first existing candidate of ``rel``, or None."""
    for root in data_roots():
        for cand in _candidates(rel):
            p = root / cand
            if p.is_file():
                return p, root
    return None


def path(name: str, key: str) -> Path:
    """The path of file ``key`` of data set ``name`` (possibly a ``.gz`` copy).

    Raises ``ValueError`` for an unknown set or key and ``FileNotFoundError`` naming the
    relative path and the roots searched when no copy exists.
    """
    ds = _get(name)
    if key not in ds.files:
        raise ValueError(f"data set {name!r} has no file {key!r}; expected one of {list(ds.files)}")
    rel = ds.files[key]
    found = _find(rel)
    if found is None:
        roots = ", ".join(str(r) for r in data_roots())
        raise FileNotFoundError(
            f"data file {rel!r} (or {_candidates(rel)[1]!r}) of data set {name!r} not found; "
            f"searched roots: {roots}. Run `kexue data get {name}` to download it, or set "
            f"KEXUE_DATA to a folder that holds {rel!r}."
        )
    return found[0]


def find(name: str, key: str) -> Path | None:
    """Like :func:`path`, but return None instead of raising when the file is missing."""
    ds = _get(name)
    if key not in ds.files:
        raise ValueError(f"data set {name!r} has no file {key!r}; expected one of {list(ds.files)}")
    found = _find(ds.files[key])
    return None if found is None else found[0]


def available(name: str) -> bool:
    """True if every required file of data set ``name`` is found under some root."""
    ds = _get(name)
    return all(_find(rel) is not None for key, rel in ds.files.items() if key not in ds.optional)


def describe() -> list[dict]:
    """One dict per registered set: name, description, files, size (bytes on disk of the
    files found), source, licence, redistributable, present (all required files found),
    and root (the root(s) the found files came from, comma-separated; None if none)."""
    rows = []
    for ds in DATASETS.values():
        size, roots, missing = 0, [], []
        for key, rel in ds.files.items():
            found = _find(rel)
            if found is None:
                if key not in ds.optional:
                    missing.append(key)
                continue
            size += found[0].stat().st_size
            if str(found[1]) not in roots:
                roots.append(str(found[1]))
        rows.append({
            "name": ds.name,
            "description": ds.description,
            "files": dict(ds.files),
            "size": size,
            "source": ds.source,
            "licence": ds.licence,
            "redistributable": ds.redistributable,
            "present": not missing,
            "root": ", ".join(roots) if roots else None,
        })
    return rows


class _NamedFile(io.TextIOBase):
    """A text file whose read errors (a damaged gzip stream, bytes that are not UTF-8)
    become ``ValueError`` naming the file, instead of a bare ``BadGzipFile`` / ``EOFError``."""

    def __init__(self, raw: IO[str], path: Path) -> None:
        self._raw, self.path = raw, path

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as e:
            raise ValueError(f"cannot read {self.path}: {type(e).__name__}: {e} (a damaged "
                             f"or truncated copy? delete it and fetch it again)") from e

    def read(self, size: int | None = -1) -> str:
        return self._guard(self._raw.read, size)

    def readline(self, size: int = -1) -> str:  # type: ignore[override]
        return self._guard(self._raw.readline, size)

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __iter__(self):
        return self

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_text(name: str, key: str) -> IO[str]:
    """Open file ``key`` of data set ``name`` as UTF-8 text, decompressing ``.gz`` copies.

    Lines end only at ``"\\n"`` (a stray ``"\\r"`` is kept for the reader to strip), so a
    record is never split at a carriage return. A damaged file raises ``ValueError``
    naming it.
    """
    p = path(name, key)
    if p.suffix == ".gz":
        raw = io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="\n")  # noqa: SIM115
    else:
        raw = open(p, encoding="utf-8", newline="\n")  # noqa: SIM115  (closed by the wrapper)
    return _NamedFile(raw, p)  # type: ignore[return-value]
