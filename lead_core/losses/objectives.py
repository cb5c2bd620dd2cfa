"""What `lead train` minimises on one micro-batch, per `--method`: the losses of this package
applied to the models' layer scores.

    none  ContrastiveObjective  Eq. 11 alone: phase-1 DE, the warm-ups, the no-teacher baseline
    lead  LeadObjective         Eq. 6–12 over K aligned layers, re-drawn as `--selection` says
    rd    ResponseObjective     KL(t_N || s_M) of the final layers (Eq. 9's forward term) + Eq. 11
    fd    FeatureObjective      KL of the final layers' attention maps + Eq. 11

An objective calls the models it needs through `Models` (the trainer's side: DDP, the cross-rank
gather of passages, no gradient for a frozen teacher) and returns a `StepLoss`:

    objective.begin_step(step)                       # once per optimizer step
    loss = objective.loss(batch, models)             # per micro-batch
    (loss.total / grad_accum).backward()

Batch layout (lead_core.train.data): Q queries with one group of G passages each, query i's
positive first in its group. A DE/CB model scores every query against every passage of the batch –
under DDP the world's batch, gathered rank after rank, so P = Q*G*world – and a cross-encoder only
against its own group (P = G). A pair of the two is compared over each query's own group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from lead_core import distributed
from lead_core.config import ConfigError
from lead_core.losses.contrastive import contrastive_loss
from lead_core.losses.feature import check_same_tokenizer, feature_distillation_loss, shared_token_prefix
from lead_core.losses.lead import lead_loss, teacher_layer_weights
from lead_core.losses.response import response_distillation_loss
from lead_core.losses.selection import select_layers

if TYPE_CHECKING:
    from lead_core.models.base import LayerScores
    from lead_core.models.encoder_model import EncoderModel
    from lead_core.train import Config

# A second, independent stream for layer selection (same on every rank, so ranks align the same
# layers); seeded from the run seed and this constant.
SELECTION_STREAM = 0x5E1EC7

Selection = tuple[list[int], list[int]]  # (teacher layers, student layers), K sorted 0-based each


# ------------------------------------------------------------------------------ batch layout
def positive_mask(num_queries: int, group_size: int, num_passages: int, rank: int, device) -> Tensor:
    """bool [Q, P]: query i's positive is passage i*G of its rank's block (or 0 of its own group).

    P = G (cross-encoder: own group), Q*G (local batch) or Q*G*world (gathered, rank-major).
    """
    mask = torch.zeros(num_queries, num_passages, dtype=torch.bool, device=device)
    offset = 0 if num_passages in (group_size, num_queries * group_size) else rank * num_queries * group_size
    step = 0 if num_passages == group_size else group_size
    rows = torch.arange(num_queries, device=device)
    mask[rows, offset + rows * step] = True
    return mask


def own_group(scores: Tensor, group_size: int, rank: int) -> Tensor:
    """Restrict [L, Q, P] in-batch scores (P = Q*G or Q*G*world) to each query's own group: [L, Q, G].

    Used when a cross-encoder (which sees only its own group) is paired with a DE/CB model.
    """
    layers, queries, passages = scores.shape
    offset = 0 if passages == queries * group_size else rank * queries * group_size
    index = offset + torch.arange(queries, device=scores.device)[:, None] * group_size
    index = index + torch.arange(group_size, device=scores.device)[None, :]
    return scores.gather(2, index.expand(layers, queries, group_size))


# ------------------------------------------------------------------------------- interface
@dataclass
class MicroBatch:
    """One micro-batch as an objective sees it: its geometry and both models' `prepare` output."""

    num_queries: int  # Q, on this rank
    group_size: int  # G = 1 positive + negatives
    rank: int
    student: dict[str, Tensor]  # the student's tokenized batch
    teacher: dict[str, Tensor] | None = None  # the teacher's (its own tokenizer), when there is one

    def positives(self, num_passages: int, device) -> Tensor:
        """bool [Q, P]: each query's positive among the P passages it is scored against."""
        return positive_mask(self.num_queries, self.group_size, num_passages, self.rank, device)


@dataclass
class Models:
    """The trainer's forward passes: `student(inputs, layers=None, output_attentions=False)` and
    the same for `teacher` (None without one) -> LayerScores ([len(layers), Q, P]; `layers=None`
    is the final layer only)."""

    student: Callable[..., LayerScores]
    teacher: Callable[..., LayerScores] | None = None


@dataclass
class StepLoss:
    """total: scalar to backpropagate; metrics: the named scalar terms to log ("loss/total" first);
    num_passages: P, the passages each query was scored against."""

    total: Tensor
    metrics: dict[str, Tensor]
    num_passages: int


def _align(teacher: Tensor, student: Tensor, group_size: int, rank: int) -> tuple[Tensor, Tensor]:
    """Score tensors [L, Q, P] over the same passages: a CE side restricts the other to own groups."""
    if teacher.shape[-1] == student.shape[-1]:
        return teacher, student
    if teacher.shape[-1] == group_size:
        return teacher, own_group(student, group_size, rank)
    return own_group(teacher, group_size, rank), student


class Objective:
    """Base: no layer selection. `selection_rng` and `selection` are checkpointed for every method
    (the selection stream is seeded from the run seed whether or not it is drawn from)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.selection_rng = np.random.default_rng([config.seed, SELECTION_STREAM])
        self.selection: Selection | None = None

    def begin_step(self, step: int) -> None:
        """Called before the first micro-batch of optimizer step `step + 1` (`step` steps done)."""

    def loss(self, batch: MicroBatch, models: Models) -> StepLoss:
        raise NotImplementedError

    def selection_metrics(self) -> dict[str, float]:
        """The current layer selection as metrics ("layers/teacher_k0", ...); {} without one."""
        if self.selection is None:
            return {}
        metrics = {f"layers/teacher_k{i}": float(a) for i, a in enumerate(self.selection[0])}
        metrics.update({f"layers/student_k{i}": float(b) for i, b in enumerate(self.selection[1])})
        return metrics

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the objective (plain values)."""
        return {"selection_rng": self.selection_rng.bit_generator.state, "selection": self.selection}

    def load_state(self, state: dict[str, Any]) -> None:
        self.selection_rng.bit_generator.state = state["selection_rng"]
        self.selection = state["selection"]


# ------------------------------------------------------------------------------ the methods
class ContrastiveObjective(Objective):
    """Eq. 11 without a teacher: −log softmax of the positive over the student's final scores."""

    def loss(self, batch: MicroBatch, models: Models) -> StepLoss:
        scores = models.student(batch.student).scores  # [Q, P]
        positives = batch.positives(scores.shape[-1], scores.device)
        loss = contrastive_loss(scores.float(), positives)
        return StepLoss(loss.total, {"loss/total": loss.total, "loss/hard": loss.hard}, scores.shape[-1])


def _needed(selected: Sequence[int], num_layers: int) -> list[int]:
    """The layers to compute: the selected ones and the final one (lead_loss reads both)."""
    return sorted({*selected, num_layers - 1})


def _full_layers(scores: Tensor, layers: Sequence[int], num_layers: int) -> Tensor:
    """Place [len(layers), Q, P] computed layers into an [N, Q, P] tensor (zeros elsewhere).

    lead_loss reads only the selected layers and the last one; the others are placeholders.
    """
    full = scores.new_zeros((num_layers, *scores.shape[1:]))
    full[list(layers)] = scores
    return full


class LeadObjective(Objective):
    """LEAD (Eq. 6–12): K teacher layers aligned with K student layers, chosen by `selection`
    ("random" / "weighted" re-drawn every `reselect_every` optimizer steps, "last" / "skip"
    fixed; §3.3.2, Table 5). Only the selected layers and the final one are computed."""

    def __init__(self, config: Config, teacher: EncoderModel, student: EncoderModel) -> None:
        super().__init__(config)
        self.num_teacher, self.num_student = teacher.num_layers, student.num_layers
        if not self.num_teacher >= self.num_student >= config.k:
            raise ConfigError(
                f"LEAD needs teacher layers >= student layers >= k: teacher {config.teacher} has "
                f"{self.num_teacher}, student {config.model} has {self.num_student}, --k is {config.k}"
            )
        self._redraw = False

    def _reselect_due(self, step: int) -> bool:
        config = self.config
        if self.selection is None:
            return True
        if config.selection in ("last", "skip"):
            return False
        return step % config.reselect_every == 0

    def begin_step(self, step: int) -> None:
        self._redraw = self._reselect_due(step)

    def loss(self, batch: MicroBatch, models: Models) -> StepLoss:
        config = self.config
        n, m, k = self.num_teacher, self.num_student, config.k
        weighted = self._redraw and config.selection == "weighted"
        if self._redraw and not weighted:
            self.selection = select_layers(config.selection, n, m, k, self.selection_rng)
        self._redraw = False  # the other micro-batches of this step keep the selection
        # Weighted selection needs Eq. 7's weights over all teacher layers: at a re-draw the
        # teacher scores every layer once, and the new selection is used from this step on.
        teacher_layers = list(range(n)) if weighted else _needed(self.selection[0], n)
        teacher_out = models.teacher(batch.teacher, layers=teacher_layers)
        teacher_scores = _full_layers(teacher_out.layer_scores, teacher_layers, n)  # [N, Q, P_t]
        if weighted:
            positives_t = batch.positives(teacher_scores.shape[-1], teacher_scores.device)
            weights = teacher_layer_weights(teacher_scores.detach().float(), positives_t, config.tau_l)
            weights = distributed.all_reduce_mean(weights)
            self.selection = select_layers("weighted", n, m, k, self.selection_rng, weights=weights)
        student_layers = _needed(self.selection[1], m)
        student_out = models.student(batch.student, layers=student_layers)
        student_scores = _full_layers(student_out.layer_scores, student_layers, m)  # [M, Q, P_s]
        teacher_scores, student_scores = _align(teacher_scores, student_scores, batch.group_size, batch.rank)
        positives = batch.positives(student_scores.shape[-1], student_scores.device)
        loss = lead_loss(
            teacher_scores.float(),
            student_scores.float(),
            positives,
            self.selection[0],
            self.selection[1],
            tau_d=config.tau_d,
            tau_l=config.tau_l,
            reweight=config.reweight,
            joint=config.joint,
            mean_over_ranks=distributed.all_reduce_mean,  # Eq. 7 over the world batch (identity alone)
        )
        metrics = {
            "loss/total": loss.total,
            "loss/layer": loss.layer,
            "loss/response": loss.response,
            "loss/teacher_hard": loss.teacher_hard,
            "loss/student_hard": loss.student_hard,
        }
        metrics.update({f"layer_weight/k{i}": w for i, w in enumerate(loss.layer_weights)})
        return StepLoss(loss.total, metrics, student_scores.shape[-1])


class ResponseObjective(Objective):
    """RD: KL(softmax(t_N/τ_d) || softmax(s_M/τ_d)) of the final layers (teacher detached) + Eq. 11."""

    def loss(self, batch: MicroBatch, models: Models) -> StepLoss:
        teacher = models.teacher(batch.teacher).layer_scores  # [1, Q, P_t]
        student = models.student(batch.student).layer_scores  # [1, Q, P_s]
        teacher, student = _align(teacher, student, batch.group_size, batch.rank)
        positives = batch.positives(student.shape[-1], student.device)
        loss = response_distillation_loss(
            teacher[-1].float(), student[-1].float(), positives, tau=self.config.tau_d
        )
        metrics = {
            "loss/total": loss.total,
            "loss/response": loss.response,
            "loss/student_hard": loss.student_hard,
        }
        return StepLoss(loss.total, metrics, student.shape[-1])


class FeatureObjective(Objective):
    """FD: the final layers' attention maps (as the released code distils) + Eq. 11.

    Same tokenizer only (checked here). Maps are compared per sequence kind ("query", "passage";
    "pair" for CE→CE) over real tokens; when both models pad differently (a ColBERT teacher's
    [MASK]-augmented queries) over the token prefix both see (`shared_token_prefix`).
    """

    def __init__(self, config: Config, teacher: EncoderModel, student: EncoderModel) -> None:
        super().__init__(config)
        check_same_tokenizer(teacher.tokenizer, student.tokenizer)
        if teacher.config.architecture == "ce" and student.config.architecture != "ce":
            raise ConfigError("fd: a cross-encoder teacher's pair attention has no dual-encoder counterpart")
        self.num_teacher, self.num_student = teacher.num_layers, student.num_layers

    @staticmethod
    def _token_masks(batch: MicroBatch, device) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """({kind: [B, L] student token mask}, {kind: [B, L'] prefix both models see})."""
        masks = {
            kind: batch.student[f"{kind}_attention_mask"].to(device)
            for kind in ("query", "passage", "pair")
            if f"{kind}_attention_mask" in batch.student
        }
        # Same tokenizer, different padding (a ColBERT teacher's [MASK]-augmented queries vs the
        # student's batch padding): compare the maps over the token prefix both models see.
        shared = {}
        for kind in masks:
            ids, mask = f"{kind}_input_ids", f"{kind}_attention_mask"
            if all(key in batch.teacher for key in (ids, mask)) and ids in batch.student:
                shared[kind] = shared_token_prefix(
                    batch.teacher[ids], batch.teacher[mask], batch.student[ids], batch.student[mask]
                ).to(device)
        return masks, shared

    def loss(self, batch: MicroBatch, models: Models) -> StepLoss:
        teacher = models.teacher(batch.teacher, layers=[self.num_teacher - 1], output_attentions=True)
        student = models.student(batch.student, layers=[self.num_student - 1], output_attentions=True)
        scores = student.scores  # [Q, P]
        positives = batch.positives(scores.shape[-1], scores.device)
        masks, shared = self._token_masks(batch, scores.device)
        loss = feature_distillation_loss(
            teacher.attentions,
            student.attentions,
            [0],
            scores.float(),
            positives,
            token_masks=masks,
            shared_tokens=shared,
        )
        metrics = {
            "loss/total": loss.total,
            "loss/feature": loss.feature,
            "loss/student_hard": loss.student_hard,
        }
        return StepLoss(loss.total, metrics, scores.shape[-1])


def build_objective(config: Config, teacher: EncoderModel | None, student: EncoderModel) -> Objective:
    """The objective of `config.method` for this teacher/student pair (checked: a cross-encoder
    student needs a cross-encoder teacher; LEAD needs N >= M >= K layers; FD one tokenizer).

    Reads config.method, seed, k, selection, reselect_every, tau_d, tau_l, reweight, joint (and
    teacher / model, to name them in errors)."""
    if teacher is not None:
        arch_t, arch_s = teacher.config.architecture, student.config.architecture
        if arch_s == "ce" and arch_t != "ce":
            raise ConfigError(
                f"a cross-encoder student scores only its own group; a {arch_t!r} teacher is not supported with it"
            )
    if config.method == "none":
        return ContrastiveObjective(config)
    if config.method == "lead":
        return LeadObjective(config, teacher, student)
    if config.method == "rd":
        return ResponseObjective(config)
    return FeatureObjective(config, teacher, student)
