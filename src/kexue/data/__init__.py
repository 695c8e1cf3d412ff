"""Data sets, readers and tokenizers.

Code reads data only through this package: :data:`DATASETS` says what each set is and
where it comes from, :func:`path` finds a file under ``$KEXUE_DATA``, the data bundled in
the package or the user data cache (where :func:`get` downloads the research-use sets),
and the ``load_*`` readers return plain lists.
"""

from kexue.data.cpm import CPMTokenizer
from kexue.data.download import DownloadError, get
from kexue.data.masking import mask_tokens
from kexue.data.pretrained import PretrainedModelMissing, minilm_path
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
    BUNDLED_ROOT,
    DATASETS,
    DataSet,
    available,
    data_roots,
    describe,
    find,
    open_text,
    path,
    user_cache_root,
    user_data_dir,
)
from kexue.data.tokenizers import CharTokenizer, WordPieceTokenizer

__all__ = [
    "BUNDLED_ROOT",
    "DATASETS",
    "CPMTokenizer",
    "CharTokenizer",
    "DataSet",
    "DownloadError",
    "PretrainedModelMissing",
    "WordPieceTokenizer",
    "available",
    "data_roots",
    "describe",
    "find",
    "get",
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
    "mask_tokens",
    "minilm_path",
    "open_text",
    "parse_brackets",
    "path",
    "user_cache_root",
    "user_data_dir",
]
