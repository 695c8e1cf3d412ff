"""Training: the loop (:mod:`kexue.train.loop`) and the step protocol
(:mod:`kexue.train.step`) that technique wrappers (FGM, VAT, penalties) follow."""

from kexue.train.loop import (  # noqa: F401  (the training loop)
    TrainConfig,
    TrainResult,
    fit,
    seed_everything,
)
from kexue.train.step import (  # noqa: F401  (the step protocol)
    LossFn,
    Step,
    check_scalar_loss,
    plain_step,
)
