"""Contrastive training without a teacher: the hard loss of Eq. 11 on its own.

Used for the warm-up phases and as the "no distillation" baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from lead_core.losses._kl import check_positives, check_positives_visible, hard_loss


@dataclass
class ContrastiveLoss:
    """total = hard (scalar float32 tensors)."""

    total: Tensor
    hard: Tensor


def contrastive_loss(scores: Tensor, positives: Tensor) -> ContrastiveLoss:
    """−Σ_{positives} log softmax(scores), averaged over queries (Eq. 11, no teacher).

    scores: [Q, P] final-layer scores (−inf for passages a query must not see);
    positives: bool [Q, P], at least one per query.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [Q, P], got shape {tuple(scores.shape)}")
    check_positives(positives, scores.shape)
    check_positives_visible(scores, positives, "scores")
    hard = hard_loss(scores, positives)
    return ContrastiveLoss(total=hard, hard=hard)
