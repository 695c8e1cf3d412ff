"""Building blocks: attention (with its options), masks, positions and RoPE, recurrent
cells and ON-LSTM, transformer blocks, initialisation and entropy normalisation."""

from kexue.nn.attention import (  # T6, T32: attention
    MultiHeadAttention,
    entropy_scale,
)
from kexue.nn.functional import (  # T34: entropy normalisation
    entropy,
    entropy_normalize,
)
from kexue.nn.init import (  # T27: non-square initialisation
    average_dimension,
    fan_average_normal_,
    fan_average_uniform_,
    normal_init_,
)
from kexue.nn.masks import (  # T10: masks
    causal_mask,
    combine_masks,
    padding_mask,
    permutation_mask,
    unilm_mask,
    window_mask,
)
from kexue.nn.onlstm import (  # T8: ON-LSTM
    ONLSTM,
    ONLSTMOutput,
    cumax,
    distance_to_tree,
)
from kexue.nn.packing import (  # unpadded execution
    Packing,
    real_tokens,
)
from kexue.nn.position import (  # absolute positions
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    check_position_ids,
    sinusoidal_embedding,
)
from kexue.nn.recurrent import (  # T1: recurrent cells of post 7888
    RNN_CELLS,
    GRUCell,
    LSTMCell,
    ProposedCell,
    RecurrentCell,
    SimpleRNNCell,
    make_cell,
)
from kexue.nn.rope import (  # RoPE; T14: length extrapolation
    HFRotaryEmbedding,
    RoPE,
    Rotary,
    apply_rope,
    log_n_attention,
    log_n_scale,
    ntk_kappa,
    rerope_positions,
    yarn_attention_factor,
    yarn_ramp,
    yarn_ramp_by_index,
)
from kexue.nn.transformer import (  # T5: blocks, recompute
    FeedForward,
    Transformer,
    TransformerBlock,
    get_activation,
    saved_activation_bytes,
)

__all__ = [
    "ONLSTM",
    "RNN_CELLS",
    "FeedForward",
    "GRUCell",
    "HFRotaryEmbedding",
    "LSTMCell",
    "LearnedPositionEmbedding",
    "MultiHeadAttention",
    "ONLSTMOutput",
    "Packing",
    "ProposedCell",
    "RecurrentCell",
    "RoPE",
    "Rotary",
    "SimpleRNNCell",
    "SinusoidalPositionEmbedding",
    "Transformer",
    "TransformerBlock",
    "apply_rope",
    "average_dimension",
    "causal_mask",
    "check_position_ids",
    "combine_masks",
    "cumax",
    "distance_to_tree",
    "entropy",
    "entropy_normalize",
    "entropy_scale",
    "fan_average_normal_",
    "fan_average_uniform_",
    "get_activation",
    "log_n_attention",
    "log_n_scale",
    "make_cell",
    "normal_init_",
    "ntk_kappa",
    "padding_mask",
    "permutation_mask",
    "real_tokens",
    "rerope_positions",
    "saved_activation_bytes",
    "sinusoidal_embedding",
    "unilm_mask",
    "window_mask",
    "yarn_attention_factor",
    "yarn_ramp",
    "yarn_ramp_by_index",
]
