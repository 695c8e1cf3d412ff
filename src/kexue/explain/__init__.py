
from kexue.explain.inequality import (  # noqa: F401  (T30: gradient-penalty inequality)
    InequalitySides,
    gradient_penalty_inequality,
)
from kexue.explain.rnn import (  # noqa: F401  (T1: RNN gradient flow)
    SATURATION_BOUND,
    GradientFlow,
    LSTMGradientTerms,
    lstm_gradient_terms,
    rnn_gradient_flow,
    step_jacobians,
)
