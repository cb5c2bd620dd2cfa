"""Losses: LEAD (Eq. 6–12) with its layer selection, and the RD, FD and contrastive baselines.

One method per module; the softmax/KL math they share lives in `_kl`.
"""

from lead_core.losses.contrastive import ContrastiveLoss, contrastive_loss
from lead_core.losses.lead import LeadLoss, lead_loss, teacher_layer_weights
from lead_core.losses.response import ResponseDistillationLoss, response_distillation_loss
from lead_core.losses.selection import STRATEGIES, select_layers

__all__ = [
    "STRATEGIES",
    "ContrastiveLoss",
    "LeadLoss",
    "ResponseDistillationLoss",
    "contrastive_loss",
    "lead_loss",
    "response_distillation_loss",
    "select_layers",
    "teacher_layer_weights",
]
