"""Generation: decoding for any model that gives next-token logits (greedy, sampling,
beam search, KV cache, logits processors)."""

from kexue.generate.adapters import CausalLM, UniLM
from kexue.generate.decoding import (
    Constraint,
    LogitsProcessor,
    NextTokenModel,
    filter_logits,
    generate,
)

__all__ = [
    "CausalLM",
    "Constraint",
    "LogitsProcessor",
    "NextTokenModel",
    "UniLM",
    "filter_logits",
    "generate",
]
