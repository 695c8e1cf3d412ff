
from kexue.models.bert import Bert, BertOutput  # noqa: F401
from kexue.models.gpt2 import GPT2, GPT2Output  # noqa: F401  (T11: GPT-2 / CPM-LM)
from kexue.models.hf import (  # noqa: F401  (configs, HF key maps)
    BertConfig,
    GPT2Config,
    bert_key_map,
    gpt2_key_map,
)
from kexue.models.tta import TTA, TTAOutput, masked_pseudo_log_likelihood  # noqa: F401  (T24)
from kexue.models.unilm import unilm_loss, unilm_targets  # noqa: F401  (T10: UniLM)
