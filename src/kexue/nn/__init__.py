
from kexue.nn.attention import (  # noqa: F401  (T6, T32: attention)
    MultiHeadAttention,
    RotaryAngles,
    entropy_scale,
)
from kexue.nn.extrapolation import (  # noqa: F401  (T14: length extrapolation)
    RoPE,
    log_n_scale,
    ntk_kappa,
    rerope_positions,
    window_mask,
    yarn_attention_factor,
    yarn_ramp,
)
from kexue.nn.masks import (  # noqa: F401  (T10: masks)
    causal_mask,
    combine_masks,
    padding_mask,
    permutation_mask,
    unilm_mask,
)
from kexue.nn.onlstm import (  # noqa: F401  (T8: ON-LSTM)
    ONLSTM,
    ONLSTMOutput,
    cumax,
    distance_to_tree,
)
from kexue.nn.position import (  # noqa: F401  (positions, RoPE)
    LearnedPositionEmbedding,
    RotaryEmbedding,
    SinusoidalPositionEmbedding,
    apply_rotary,
    sinusoidal_embedding,
)
from kexue.nn.recurrent import (  # noqa: F401  (T1: recurrent cells of post 7888)
    RNN_CELLS,
    GRUCell,
    LSTMCell,
    ProposedCell,
    RecurrentCell,
    SimpleRNNCell,
    make_cell,
)
from kexue.nn.transformer import (  # noqa: F401  (T5: blocks, recompute)
    FeedForward,
    Transformer,
    TransformerBlock,
    get_activation,
    saved_activation_bytes,
)
