"""Sentence embeddings: pooling, a sentence encoder (encode, fine-tune, save), BERT-whitening,
STS evaluation, and the word-vector dimension rule (kexue.fm/archives/8069, 8321, 8847, 7695)."""

from kexue.embed.dimension import LAPLACE_CONSTANT, POST_COEFFICIENT, h_n, min_embedding_dim
from kexue.embed.encoder import ENCODER_POOLINGS, SentenceEncoder
from kexue.embed.finetune import PAIR_LOSSES, PairModel, fit_pairs, pair_rows
from kexue.embed.pooling import POOLING_STRATEGIES, masked_mean, pool
from kexue.embed.sts import rowwise_cosine, sts_spearman
from kexue.embed.whitening import Whitening

__all__ = [
    "ENCODER_POOLINGS",
    "LAPLACE_CONSTANT",
    "PAIR_LOSSES",
    "POOLING_STRATEGIES",
    "POST_COEFFICIENT",
    "PairModel",
    "SentenceEncoder",
    "Whitening",
    "fit_pairs",
    "h_n",
    "masked_mean",
    "min_embedding_dim",
    "pair_rows",
    "pool",
    "rowwise_cosine",
    "sts_spearman",
]
