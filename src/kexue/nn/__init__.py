
from kexue.nn.attention import (  # noqa: F401  (T6, T32: attention)
    MultiHeadAttention,
    entropy_scale,
)
from kexue.nn.functional import (  # noqa: F401  (T34: entropy normalisation)
    entropy,
    entropy_normalize,
)
from kexue.nn.init import (  # noqa: F401  (T27: non-square initialisation)
    average_dimension,
    fan_average_normal_,
    fan_average_uniform_,
)
from kexue.nn.masks import (  # noqa: F401  (T10: masks)
    causal_mask,
    combine_masks,
    padding_mask,
    permutation_mask,
    unilm_mask,
    window_mask,
)
from kexue.nn.onlstm import (  # noqa: F401  (T8: ON-LSTM)
    ONLSTM,
    ONLSTMOutput,
    cumax,
    distance_to_tree,
)
from kexue.nn.packing import (  # noqa: F401  (unpadded execution)
    Packing,
    real_tokens,
)
from kexue.nn.position import (  # noqa: F401  (absolute positions)
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    check_position_ids,
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
from kexue.nn.rope import (  # noqa: F401  (RoPE; T14: length extrapolation)
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
from kexue.nn.transformer import (  # noqa: F401  (T5: blocks, recompute)
    FeedForward,
    Transformer,
    TransformerBlock,
    get_activation,
    saved_activation_bytes,
)
