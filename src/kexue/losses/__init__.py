
from kexue.losses.cosent import (  # T33: CoSENT and its baselines
    CoSENTLoss,
    SBERTSoftmaxLoss,
    cosent_loss,
    cosent_loss_from_embeddings,
    cosent_loss_pairwise,
    cosine_mse_loss,
    pair_cosine,
)
from kexue.losses.flooding import AlternatingFlooding, flooding  # T3: flooding
from kexue.losses.imbalance import (  # T22: class imbalance
    class_weighted_cross_entropy,
    f1_weighted_cross_entropy,
    focal_loss,
    hard_truncation_loss,
    smooth_f1_loss,
)
from kexue.losses.logit_adjust import (  # T26: logit adjustment
    LogitAdjustedLoss,
    class_priors,
    posthoc_logit_adjust,
)
from kexue.losses.multilabel import (  # T22: multilabel categorical CE
    multilabel_categorical_crossentropy,
    sparse_multilabel_categorical_crossentropy,
)
from kexue.losses.multitask import MultiTaskLoss  # T21: multi-task weighting

__all__ = [
    "AlternatingFlooding",
    "CoSENTLoss",
    "LogitAdjustedLoss",
    "MultiTaskLoss",
    "SBERTSoftmaxLoss",
    "class_priors",
    "class_weighted_cross_entropy",
    "cosent_loss",
    "cosent_loss_from_embeddings",
    "cosent_loss_pairwise",
    "cosine_mse_loss",
    "f1_weighted_cross_entropy",
    "flooding",
    "focal_loss",
    "hard_truncation_loss",
    "multilabel_categorical_crossentropy",
    "pair_cosine",
    "posthoc_logit_adjust",
    "smooth_f1_loss",
    "sparse_multilabel_categorical_crossentropy",
]
