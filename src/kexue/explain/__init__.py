
from kexue.explain.inequality import (  # noqa: F401  (T30: gradient-penalty inequality)
    InequalitySides,
    gradient_penalty_inequality,
)
