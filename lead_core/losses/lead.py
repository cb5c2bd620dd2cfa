"""The LEAD loss (paper §3.3, Eq. 6–12): layer-wise distribution alignment with re-weighting.

Layer features are score distributions: for layer i of the teacher, t_i = softmax(teacher_scores[i]
/ τ_d) over the passages each query is scored against; s_j likewise for the student. Because only
these distributions are compared, teacher and student may differ in architecture and tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lead_core.losses._kl import (
    check_positives,
    check_positives_visible,
    check_same_mask,
    hard_loss,
    kl_divergence,
    label_log_distribution,
    log_distribution,
)


@dataclass
class LeadLoss:
    """The terms of Eq. 12 (scalar float32 tensors unless noted).

    total: what to backpropagate (Eq. 12, or the "w/o joint training" variant).
    layer: L_lyr = Σ_k w_k L_lyr^k (Eq. 8).
    response: the response term that enters `total` – L_rep = KL(t_N||s_M) + KL(s_M||t_N) (Eq. 9)
        when joint, KL(t_N||s_M) alone when not.
    teacher_hard: L_tch (Eq. 10); always reported, part of `total` only when joint.
    student_hard: L_stu (Eq. 11).
    layer_weights: [K] w_k (Eq. 7), detached; 1/K each without re-weighting.
    layer_terms: [K] L_lyr^k (Eq. 6) before weighting, for logging.
    """

    total: Tensor
    layer: Tensor
    response: Tensor
    teacher_hard: Tensor
    student_hard: Tensor
    layer_weights: Tensor
    layer_terms: Tensor

    def metrics(self) -> dict[str, float]:
        """Every term and layer weight as a float, for logging (one device sync)."""
        named = {
            "total": self.total,
            "layer": self.layer,
            "response": self.response,
            "teacher_hard": self.teacher_hard,
            "student_hard": self.student_hard,
        }
        values = torch.cat(
            [torch.stack([v.detach().float() for v in named.values()]), self.layer_weights.float()]
        ).tolist()
        out = dict(zip(named, values[: len(named)]))
        out.update({f"layer_weight_{k}": w for k, w in enumerate(values[len(named) :])})
        return out


def _check_layers(layers: Sequence[int], num_layers: int, what: str) -> list[int]:
    layers = [int(i) for i in layers]
    if not layers:
        raise ValueError(f"{what} is empty; select at least one layer")
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"{what} {layers} has indices {bad} outside 0..{num_layers - 1} (0-based)")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ValueError(f"{what} {layers} must be strictly increasing (the paper keeps layer order)")
    return layers


def _label_kl_per_layer(teacher_scores: Tensor, positives: Tensor) -> Tensor:
    """KL(y || softmax(teacher_scores[l])) averaged over queries, per layer (Eq. 7's exponent).

    teacher_scores: [L, Q, P]; positives: bool [Q, P] -> [L] float32, no gradient. Untempered, as
    in the released code (it uses the cross-entropy CE_l = KL_l + H(y); H(y) is the same for every
    layer, so the softmax over layers – the weights – is identical).
    """
    with torch.no_grad():
        log_y = label_log_distribution(positives)
        return kl_divergence(log_y, log_distribution(teacher_scores)).mean(dim=-1)


def teacher_layer_weights(teacher_scores: Tensor, positives: Tensor, tau_l: float = 10.0) -> Tensor:
    """Eq. 7's weights over ALL N teacher layers (used by select_layers("weighted")).

    teacher_scores: [N, Q, P]; positives: bool [Q, P] -> [N] float32 probabilities (sum 1),
    w_i = softmax_i(−KL(y || softmax(teacher_scores[i])) / τ_l), detached. Restricted to K layers
    and renormalised, these are exactly the w_k that `lead_loss` uses.
    """
    if teacher_scores.dim() != 3:
        raise ValueError(f"teacher_scores must be [N, Q, P], got shape {tuple(teacher_scores.shape)}")
    if not tau_l > 0:
        raise ValueError(f"tau_l must be > 0, got {tau_l}")
    check_positives(positives, teacher_scores.shape[1:])
    check_positives_visible(teacher_scores, positives, "teacher_scores")
    return torch.softmax(-_label_kl_per_layer(teacher_scores, positives) / tau_l, dim=0)


def lead_loss(
    teacher_scores: Tensor,
    student_scores: Tensor,
    positives: Tensor,
    teacher_layers: Sequence[int],
    student_layers: Sequence[int],
    tau_d: float = 1.0,
    tau_l: float = 10.0,
    reweight: bool = True,
    joint: bool = True,
    mean_over_ranks: Callable[[Tensor], Tensor] | None = None,
) -> LeadLoss:
    """The LEAD loss (Eq. 6–12).

    Args:
        teacher_scores: [N, Q, P] teacher layer scores; index i is layer i+1, index N-1 the final
            layer. Only the selected layers and the last one are read, so a trainer may pass a
            tensor whose other layers are placeholders – but N must be the teacher's depth.
        student_scores: [M, Q, P] student layer scores, same convention.
        positives: bool [Q, P], each query's positive passages (one or more).
        teacher_layers, student_layers: K strictly increasing 0-based indices each; teacher
            layer teacher_layers[k] is aligned with student layer student_layers[k].
        tau_d: distillation temperature τ_d (applied to teacher and student, Eq. 6 and 9).
        tau_l: re-weighting temperature τ_l (Eq. 7).
        reweight: False replaces w_k by 1/K ("w/o re-weighting", Table 6).
        joint: False detaches the teacher and drops L_tch and KL(s_M||t_N) from the total
            ("w/o joint training", Table 6).
        mean_over_ranks: under data parallelism, a function averaging a tensor over the ranks
            (`lead_core.distributed.all_reduce_mean`): Eq. 7's per-layer statistic is then the
            mean over the world batch's queries, as in one process over the union of the ranks'
            batches, and every rank uses the same weights. None: this process's queries only.

    Scores may be -inf for passages a query must not see; teacher and student must mask the same
    passages, and no positive may be masked. Computed in float32 whatever the input dtype.

    With t_i = softmax(teacher_scores[i]/τ_d), s_j = softmax(student_scores[j]/τ_d) (over P):
        L_lyr^k = mean_q KL(t_{a_k} || s_{b_k})                                     (Eq. 6)
        w = softmax_k(−mean_q KL(y || softmax(teacher_scores[a_k])) / τ_l), detached  (Eq. 7)
        L_lyr = Σ_k w_k L_lyr^k                                                    (Eq. 8)
        L_rep = mean_q [KL(t_N || s_M) + KL(s_M || t_N)]                           (Eq. 9)
        L_tch, L_stu = mean_q −Σ_{positives} log softmax(last-layer scores)       (Eq. 10–11)
        total = L_lyr + L_rep + L_tch + L_stu                                      (Eq. 12)
    """
    if teacher_scores.dim() != 3 or student_scores.dim() != 3:
        raise ValueError(
            "teacher_scores and student_scores must be [layers, Q, P]; got shapes "
            f"{tuple(teacher_scores.shape)} and {tuple(student_scores.shape)}"
        )
    if teacher_scores.shape[1:] != student_scores.shape[1:]:
        raise ValueError(
            f"teacher scores [N, Q, P] = {tuple(teacher_scores.shape)} and student scores [M, Q, P] = "
            f"{tuple(student_scores.shape)} must share Q and P (the same queries against the same passages)"
        )
    if not tau_d > 0 or not tau_l > 0:
        raise ValueError(f"temperatures must be > 0, got tau_d={tau_d}, tau_l={tau_l}")
    num_teacher, num_student = teacher_scores.shape[0], student_scores.shape[0]
    teacher_layers = _check_layers(teacher_layers, num_teacher, "teacher_layers")
    student_layers = _check_layers(student_layers, num_student, "student_layers")
    if len(teacher_layers) != len(student_layers):
        raise ValueError(
            f"teacher_layers {teacher_layers} and student_layers {student_layers} must have the same "
            "length K (they are aligned pairwise)"
        )
    check_positives(positives, teacher_scores.shape[1:])

    teacher = teacher_scores if joint else teacher_scores.detach()
    teacher_selected = teacher[teacher_layers]  # [K, Q, P]
    student_selected = student_scores[student_layers]  # [K, Q, P]
    teacher_final, student_final = teacher[-1], student_scores[-1]  # [Q, P]

    check_positives_visible(teacher_selected, positives, "teacher_scores (selected layers)")
    check_positives_visible(teacher_final, positives, "teacher_scores (final layer)")
    check_positives_visible(student_final, positives, "student_scores (final layer)")
    check_same_mask(teacher_final, teacher_selected, "teacher_scores (selected layers)")
    check_same_mask(teacher_final, student_selected, "student_scores (selected layers)")
    check_same_mask(teacher_final, student_final, "student_scores (final layer)")

    # Eq. 6: per selected pair, KL(t_{a_k} || s_{b_k}) averaged over queries -> [K].
    layer_terms = kl_divergence(
        log_distribution(teacher_selected, tau_d), log_distribution(student_selected, tau_d)
    ).mean(dim=-1)

    # Eq. 7 (detached) or the uniform 1/K of the "w/o re-weighting" ablation.
    k = len(teacher_layers)
    if reweight:
        label_kl = _label_kl_per_layer(teacher_selected, positives)  # [K]
        if mean_over_ranks is not None:
            label_kl = mean_over_ranks(label_kl)
        layer_weights = torch.softmax(-label_kl / tau_l, dim=0)
    else:
        layer_weights = torch.full((k,), 1.0 / k, dtype=torch.float32, device=teacher_scores.device)
    layer = (layer_weights * layer_terms).sum()  # Eq. 8

    # Eq. 9 on the final layers.
    log_t_final = log_distribution(teacher_final, tau_d)
    log_s_final = log_distribution(student_final, tau_d)
    forward_kl = kl_divergence(log_t_final, log_s_final).mean()

    teacher_hard = hard_loss(teacher_final, positives)  # Eq. 10
    student_hard = hard_loss(student_final, positives)  # Eq. 11

    if joint:
        response = forward_kl + kl_divergence(log_s_final, log_t_final).mean()
        total = layer + response + teacher_hard + student_hard  # Eq. 12
    else:
        # Table 6 "w/o joint training" (§4.5): the teacher is frozen (detached above) and, as in
        # the paper's ablation, L_tch and the reverse KL(s_M || t_N) leave the total.
        response = forward_kl
        total = layer + response + student_hard

    return LeadLoss(
        total=total,
        layer=layer,
        response=response,
        teacher_hard=teacher_hard,
        student_hard=student_hard,
        layer_weights=layer_weights,
        layer_terms=layer_terms,
    )
