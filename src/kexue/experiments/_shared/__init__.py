"""Helpers shared by several experiments (not part of the public library).

``classification``: small text classifiers, data as tensors, metrics; ``lm``: the training
and evaluation harness of a RoPE language model (``kexue.models.GPT2``) for the attention
experiments; ``sentences``: sentiment clauses
and small character LM / MLM / T-TA training; ``seq2seq``: UniLM rows, prompts and
training; ``sts``: sentence-similarity scoring and whitening variants; ``zh_encoder``: a
small Chinese BERT pretrained here; ``threads``: run a block on a given number of torch
threads (tiny models run faster on one).
"""
