"""Response-based distillation (RD, the paper's baseline of Table 3/6): final distributions only.

The teacher is frozen: only KL(t || s) of the final layers and the student's hard loss are trained,
the same terms as LEAD's `joint=False` variant without the layer term.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from lead_core.losses._kl import (
    check_positives,
    check_positives_visible,
    check_same_mask,
    hard_loss,
    kl_divergence,
    log_distribution,
)


@dataclass
class ResponseDistillationLoss:
    """total = response + student_hard (scalar float32 tensors)."""

    total: Tensor
    response: Tensor
    student_hard: Tensor


def response_distillation_loss(
    teacher_scores_final: Tensor, student_scores_final: Tensor, positives: Tensor, tau: float = 1.0
) -> ResponseDistillationLoss:
    """RD: mean_q KL(softmax(t/τ) || softmax(s/τ)) with the teacher detached, + L_stu (Eq. 11).

    teacher_scores_final, student_scores_final: [Q, P] final-layer scores (−inf where masked, the
    same passages for both); positives: bool [Q, P], at least one per query; tau: temperature
    (τ_d of Eq. 9). Computed in float32.
    """
    if teacher_scores_final.dim() != 2 or teacher_scores_final.shape != student_scores_final.shape:
        raise ValueError(
            "teacher and student final scores must both be [Q, P]; got shapes "
            f"{tuple(teacher_scores_final.shape)} and {tuple(student_scores_final.shape)}"
        )
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    check_positives(positives, student_scores_final.shape)
    check_positives_visible(student_scores_final, positives, "student_scores_final")
    check_same_mask(teacher_scores_final, student_scores_final, "student_scores_final")
    teacher = teacher_scores_final.detach()
    response = kl_divergence(
        log_distribution(teacher, tau), log_distribution(student_scores_final, tau)
    ).mean()
    student_hard = hard_loss(student_scores_final, positives)
    return ResponseDistillationLoss(
        total=response + student_hard, response=response, student_hard=student_hard
    )
