"""Losses: LEAD (Eq. 6–12) with its layer selection, and the RD, FD and contrastive baselines.

One method per module; the softmax/KL math they share lives in `_kl`. `objectives` applies them
to the models' layer scores, one objective per `lead train --method` (what the trainer calls).
"""

from lead_core.losses.contrastive import ContrastiveLoss, contrastive_loss
from lead_core.losses.feature import (
    FeatureDistillationLoss,
    TokenizerMismatchError,
    check_same_tokenizer,
    feature_distillation_loss,
)
from lead_core.losses.lead import LeadLoss, lead_loss, teacher_layer_weights
from lead_core.losses.response import ResponseDistillationLoss, response_distillation_loss
from lead_core.losses.selection import STRATEGIES, layers_to_compute, select_layers

__all__ = [
    "STRATEGIES",
    "ContrastiveLoss",
    "FeatureDistillationLoss",
    "LeadLoss",
    "ResponseDistillationLoss",
    "TokenizerMismatchError",
    "check_same_tokenizer",
    "contrastive_loss",
    "feature_distillation_loss",
    "layers_to_compute",
    "lead_loss",
    "response_distillation_loss",
    "select_layers",
    "teacher_layer_weights",
]
