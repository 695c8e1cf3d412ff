
from kexue.models.bert import Bert, BertOutput
from kexue.models.hf import BertConfig, GPT2Config, bert_key_map, gpt2_key_map
from kexue.models.unilm import unilm_generate, unilm_loss
