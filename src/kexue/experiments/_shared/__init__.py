"""Helpers shared by several experiments (not part of the public library).

``classification``: small text classifiers, data as tensors, metrics; ``lm``: a RoPE
language model harness for the attention experiments; ``sts``: sentence-similarity
scoring and whitening variants; ``zh_encoder``: a small Chinese BERT pretrained here;
``threads``: run a block on a given number of torch threads and restore the setting.
"""
