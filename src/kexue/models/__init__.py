"""Models: BERT (with UniLM seq2seq and T-TA) and GPT-2 / CPM-LM, loading and saving
Hugging Face checkpoints through explicit key maps."""

from kexue.models.bert import Bert, BertOutput
from kexue.models.gpt2 import GPT2, GPT2Output  # T11: GPT-2 / CPM-LM
from kexue.models.hf import (  # configs, HF key maps
    BertConfig,
    GPT2Config,
    bert_key_map,
    gpt2_key_map,
)
from kexue.models.tta import TTA, TTAOutput, masked_pseudo_log_likelihood  # T24
from kexue.models.unilm import unilm_loss, unilm_targets  # T10: UniLM

__all__ = [
    "GPT2",
    "TTA",
    "Bert",
    "BertConfig",
    "BertOutput",
    "GPT2Config",
    "GPT2Output",
    "TTAOutput",
    "bert_key_map",
    "gpt2_key_map",
    "masked_pseudo_log_likelihood",
    "unilm_loss",
    "unilm_targets",
]
