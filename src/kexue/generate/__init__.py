"""Generation: decoding for any model that gives next-token logits (greedy, sampling,
beam search, KV cache, logits processors), prefix-tree constrained decoding
(kexue.fm/archives/8802) and MCMC constrained generation (8062, 8084, 8119, 8194)."""

from kexue.generate import mcmc
from kexue.generate.adapters import CausalLM, UniLM
from kexue.generate.decoding import (
    Constraint,
    LogitsProcessor,
    NextTokenModel,
    filter_logits,
    generate,
)
from kexue.generate.mcmc import CGMH
from kexue.generate.metrics import corpus_bleu, rouge_l
from kexue.generate.trie import Lookahead, Trie, lcs_length

__all__ = [
    "CGMH",
    "CausalLM",
    "Constraint",
    "LogitsProcessor",
    "Lookahead",
    "NextTokenModel",
    "Trie",
    "UniLM",
    "corpus_bleu",
    "filter_logits",
    "generate",
    "lcs_length",
    "mcmc",
    "rouge_l",
]
