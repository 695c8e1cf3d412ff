
from kexue.losses.cosent import (  # noqa: F401  (T33: CoSENT and its baselines)
    CoSENTLoss,
    SBERTSoftmaxLoss,
    cosent_loss,
    cosent_loss_from_embeddings,
    cosent_loss_pairwise,
    cosine_mse_loss,
    pair_cosine,
)
from kexue.losses.flooding import AlternatingFlooding, flooding  # noqa: F401  (T3: flooding)
from kexue.losses.imbalance import (  # noqa: F401  (T22: class imbalance)
    class_weighted_cross_entropy,
    f1_weighted_cross_entropy,
    focal_loss,
    hard_truncation_loss,
    smooth_f1_loss,
)
from kexue.losses.logit_adjust import (  # noqa: F401  (T26: logit adjustment)
    LogitAdjustedLoss,
    class_priors,
    posthoc_logit_adjust,
)
from kexue.losses.multilabel import (  # noqa: F401  (T22: multilabel categorical CE)
    multilabel_categorical_crossentropy,
    sparse_multilabel_categorical_crossentropy,
)
from kexue.losses.multitask import MultiTaskLoss  # noqa: F401  (T21: multi-task weighting)
