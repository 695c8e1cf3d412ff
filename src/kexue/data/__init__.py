"""Data sets, readers and tokenizers.

Code reads data only through this package: :data:`DATASETS` says what each set is and
where it comes from, :func:`path` finds a file under ``$KEXUE_DATA``, the shipped
``data/`` folder or ``../shared/data``, and the ``load_*`` readers return plain lists.
"""

from kexue.data.pretrained import minilm_path
from kexue.data.readers import (
    load_cmrc2018,
    load_csl_title,
    load_fewclue,
    load_graph,
    load_kgclue,
    load_kgclue_kb,
    load_lcsts,
    load_ptb,
    load_ptb_trees,
    load_senteval_cn,
    load_sentiment,
    load_sst2,
    load_stsb,
    load_tang_poems,
    load_tinyshakespeare,
    parse_brackets,
)
from kexue.data.registry import (
    DATASETS,
    DataSet,
    available,
    data_roots,
    describe,
    find,
    open_text,
    path,
)
from kexue.data.tokenizers import CharTokenizer, WordPieceTokenizer

__all__ = [
    "DATASETS",
    "CharTokenizer",
    "DataSet",
    "WordPieceTokenizer",
    "available",
    "data_roots",
    "describe",
    "find",
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
    "minilm_path",
    "open_text",
    "parse_brackets",
    "path",
]
