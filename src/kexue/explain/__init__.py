"""Explanation and diagnostics: integrated gradients (T18), HSIC (T9), the gradient-penalty
inequality (T30)."""

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

__all__ = [
    "Attribution",
    "HSICTest",
    "InequalitySides",
    "gradient_penalty_inequality",
    "hsic",
    "hsic_test",
    "integrated_gradients",
    "layer_integrated_gradients",
    "quadrature",
]
