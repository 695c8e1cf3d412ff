
from kexue.nn.attention import MultiHeadAttention, RotaryAngles, entropy_scale
from kexue.nn.masks import causal_mask, combine_masks, padding_mask, permutation_mask, unilm_mask
from kexue.nn.position import (
    LearnedPositionEmbedding,
    RotaryEmbedding,
    SinusoidalPositionEmbedding,
    apply_rotary,
    sinusoidal_embedding,
)
from kexue.nn.transformer import FeedForward, Transformer, TransformerBlock, get_activation
