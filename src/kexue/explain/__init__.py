"""Explanation and diagnostics: integrated gradients (T18), HSIC (T9), the gradient-penalty
inequality (T30), gradient flow through recurrent cells (T1)."""

from kexue.explain.hsic import HSICTest, hsic, hsic_test
from kexue.explain.inequality import (  # (T30: gradient-penalty inequality)
    InequalitySides,
    gradient_penalty_inequality,
)
from kexue.explain.integrated_gradients import (
    Attribution,
    integrated_gradients,
    layer_integrated_gradients,
    quadrature,
)
from kexue.explain.rnn import (
    SATURATION_BOUND,
    GradientFlow,
    LSTMGradientTerms,
    lstm_gradient_terms,
    rnn_gradient_flow,
    step_jacobians,
)

__all__ = [
    "SATURATION_BOUND",
    "Attribution",
    "GradientFlow",
    "HSICTest",
    "InequalitySides",
    "LSTMGradientTerms",
    "gradient_penalty_inequality",
    "hsic",
    "hsic_test",
    "integrated_gradients",
    "layer_integrated_gradients",
    "lstm_gradient_terms",
    "quadrature",
    "rnn_gradient_flow",
    "step_jacobians",
]
