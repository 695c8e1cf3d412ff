"""Helpers shared by several experiments (not part of the public library).

``classification``: small text classifiers, data as tensors, metrics; ``lm``: the training
and evaluation harness of a RoPE language model (``kexue.models.GPT2``) for the attention
experiments; ``sts``: sentence-similarity scoring and whitening variants; ``zh_encoder``: a
small Chinese BERT pretrained here.
"""
