"""Training: the loop (:mod:`kexue.train.loop`) and the step protocol
(:mod:`kexue.train.step`) that technique wrappers (FGM, VAT, penalties) follow; model
compression by module replacing (:mod:`kexue.train.theseus`) and Ladder Side-Tuning
(:mod:`kexue.train.ladder`); :mod:`kexue.train.hf` (imported on its own: it needs
``transformers``) runs the steps inside a Hugging Face ``Trainer``."""

from kexue.train._perturbation import (  # where perturbations are added
    PerturbationSite,
    no_sync,
    normalize_perturbation,
)
from kexue.train.adversarial import (  # T7: FGM, gradient penalty
    FGM,
    GradientPenaltyStep,
    gradient_penalty,
)
from kexue.train.ladder import (  # T13: Ladder Side-Tuning
    LadderSideNetwork,
    ladder_parameter_count,
)
from kexue.train.loop import (  # the training loop
    TrainConfig,
    TrainResult,
    atomic_write,
    fit,
    length_grouped_batches,
    seed_everything,
)
from kexue.train.penalties import (  # T3, T30: parameter-gradient penalty
    parameter_gradient_penalty,
    squared_gradient_norm,
)
from kexue.train.step import (  # the step protocol
    Backward,
    LossFn,
    Step,
    check_scalar_loss,
    default_backward,
    plain_step,
    split_loss,
)
from kexue.train.theseus import (  # T19: BERT-of-Theseus
    LinearReplacement,
    ReplaceableModule,
    Theseus,
)
from kexue.train.vat import (  # T4: VAT, noise, Rademacher estimator
    VAT,
    NoiseConsistency,
    rademacher_gradient_penalty,
)
from kexue.train.weissi import weissi_penalty  # T2: WEISSI

__all__ = [
    "FGM",
    "VAT",
    "Backward",
    "GradientPenaltyStep",
    "LadderSideNetwork",
    "LinearReplacement",
    "LossFn",
    "NoiseConsistency",
    "PerturbationSite",
    "ReplaceableModule",
    "Step",
    "Theseus",
    "TrainConfig",
    "TrainResult",
    "atomic_write",
    "check_scalar_loss",
    "default_backward",
    "fit",
    "gradient_penalty",
    "ladder_parameter_count",
    "length_grouped_batches",
    "no_sync",
    "normalize_perturbation",
    "parameter_gradient_penalty",
    "plain_step",
    "rademacher_gradient_penalty",
    "seed_everything",
    "split_loss",
    "squared_gradient_norm",
    "weissi_penalty",
]
