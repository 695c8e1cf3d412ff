"""Training: the loop (:mod:`kexue.train.loop`) and the step protocol
(:mod:`kexue.train.step`) that technique wrappers (FGM, VAT, penalties) follow."""

from kexue.train.adversarial import (  # noqa: F401  (T7: FGM, gradient penalty)
    FGM,
    GradientPenaltyStep,
    PerturbationSite,
    gradient_penalty,
)
from kexue.train.loop import (  # noqa: F401  (the training loop)
    TrainConfig,
    TrainResult,
    fit,
    seed_everything,
)
from kexue.train.penalties import (  # noqa: F401  (T3, T30: parameter-gradient penalty)
    parameter_gradient_penalty,
    squared_gradient_norm,
)
from kexue.train.step import (  # noqa: F401  (the step protocol)
    LossFn,
    Step,
    check_scalar_loss,
    plain_step,
)
from kexue.train.vat import (  # noqa: F401  (T4: VAT, noise, Rademacher estimator)
    VAT,
    NoiseConsistency,
    rademacher_gradient_penalty,
)
from kexue.train.weissi import weissi_penalty  # noqa: F401  (T2: WEISSI)
