"""RD, FD and contrastive baselines: hand-checked values, frozen teachers, tokenizer checks."""

from __future__ import annotations

import math

import pytest
import torch

from lead_core.losses import (
    TokenizerMismatchError,
    check_same_tokenizer,
    contrastive_loss,
    feature_distillation_loss,
    lead_loss,
    response_distillation_loss,
)

SCORES = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
POSITIVES = torch.tensor([[True, False, True], [False, True, False]])
# Hand value of −Σ_pos log softmax for SCORES (see test_lead's worked example): 2.6833.
HARD = ((math.log(math.e + math.e**2 + 1) - 1) + math.log(math.e + math.e**2 + 1) + math.log(2 + math.e)) / 2


def test_contrastive_is_the_hard_loss():
    got = contrastive_loss(SCORES, POSITIVES)
    assert got.total.item() == pytest.approx(HARD, rel=1e-6)
    assert got.hard.item() == pytest.approx(2.6833, abs=1e-4)


def test_contrastive_rejects_queries_without_positives():
    with pytest.raises(ValueError, match="at least one positive"):
        contrastive_loss(SCORES, torch.tensor([[True, False, False], [False, False, False]]))


def test_response_distillation_refuses_bad_positives():
    # A query without a positive would add nothing to L_stu, silently.
    with pytest.raises(ValueError, match=r"at least one positive passage; queries \[1\]"):
        response_distillation_loss(
            SCORES, SCORES, torch.tensor([[True, False, False], [False, False, False]])
        )
    # Masked for both models (so the masks agree) or NaN: L_stu would be inf or NaN.
    for bad in (float("-inf"), float("nan")):
        teacher, student = SCORES.clone(), SCORES.clone()
        student[0, 0] = bad
        teacher[0, 0] = bad if bad < 0 else 1.0
        with pytest.raises(ValueError, match="student_scores_final has a non-finite score"):
            response_distillation_loss(teacher, student, POSITIVES)


def test_response_distillation_by_hand_and_teacher_frozen():
    teacher = torch.tensor([[3.0, 0.0, 1.0], [0.0, 1.0, 2.0]], requires_grad=True)
    student = SCORES.clone().requires_grad_(True)
    tau = 2.0
    got = response_distillation_loss(teacher, student, POSITIVES, tau=tau)

    def softmax(row):
        exps = [math.exp(x / tau) for x in row]
        return [e / sum(exps) for e in exps]

    kl = (
        sum(
            sum(p * math.log(p / q) for p, q in zip(softmax(t), softmax(s)))
            for t, s in zip(teacher.tolist(), SCORES.tolist())
        )
        / 2
    )
    assert got.response.item() == pytest.approx(kl, rel=1e-6)
    assert got.student_hard.item() == pytest.approx(HARD, rel=1e-6)
    assert got.total.item() == pytest.approx(kl + HARD, rel=1e-6)
    got.total.backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0


def test_response_distillation_equals_lead_without_layers_and_joint():
    # RD = LEAD(joint=False) minus the layer term: same KL(t_N || s_M) and L_stu.
    torch.manual_seed(0)
    teacher, student = torch.randn(3, 2, 3), torch.randn(2, 2, 3)
    rd = response_distillation_loss(teacher[-1], student[-1], POSITIVES)
    lead = lead_loss(teacher, student, POSITIVES, [0], [0], joint=False)
    assert rd.total.item() == pytest.approx((lead.total - lead.layer).item(), rel=1e-6)


def _attention(rows_per_head: list) -> torch.Tensor:
    """[1, H, L, L] from nested lists of rows."""
    return torch.tensor([rows_per_head])


def test_feature_distillation_by_hand():
    # Teacher has 2 heads, student 1 (head counts may differ; heads are averaged).
    teacher = _attention([[[0.5, 0.5], [1.0, 0.0]], [[0.9, 0.1], [0.6, 0.4]]])
    student = _attention([[[0.6, 0.4], [0.5, 0.5]]]).requires_grad_(True)
    # Head-averaged teacher rows: [0.7, 0.3], [0.8, 0.2].
    row0 = 0.7 * math.log(0.7 / 0.6) + 0.3 * math.log(0.3 / 0.4)
    row1 = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    got = feature_distillation_loss([{"query": teacher}], [{"query": student}], [0], SCORES, POSITIVES)
    assert got.feature.item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
    assert got.total.item() == pytest.approx((row0 + row1) / 2 + HARD, rel=1e-5)
    got.total.backward()
    assert student.grad.abs().sum() > 0

    # The second token is padding: only row 0 counts.
    masked = feature_distillation_loss(
        [{"query": teacher}],
        [{"query": student.detach()}],
        [0],
        SCORES,
        POSITIVES,
        token_masks={"query": torch.tensor([[1, 0]])},
    )
    assert masked.feature.item() == pytest.approx(row0, rel=1e-5)


def test_feature_distillation_maps_layers_and_vanishes_on_equal_maps():
    torch.manual_seed(0)
    maps = [torch.softmax(torch.randn(2, 4, 5, 5), dim=-1) for _ in range(3)]
    teacher = [{"query": m, "passage": m} for m in maps]
    student = [{"query": maps[2].clone(), "passage": maps[2].clone()}, {"query": maps[0], "passage": maps[0]}]
    same = feature_distillation_loss(teacher, student, [2, 0], SCORES, POSITIVES)
    assert same.feature.item() == pytest.approx(0.0, abs=1e-6)
    crossed = feature_distillation_loss(teacher, student, [0, 2], SCORES, POSITIVES)
    assert crossed.feature.item() > 1e-3


def test_feature_distillation_refuses_different_token_lengths():
    teacher = [{"query": torch.softmax(torch.randn(2, 4, 6, 6), -1)}]
    student = [{"query": torch.softmax(torch.randn(2, 2, 5, 5), -1)}]
    with pytest.raises(ValueError, match="same tokenizer.*sequence lengths 6 vs 5"):
        feature_distillation_loss(teacher, student, [0], SCORES, POSITIVES)
    with pytest.raises(ValueError, match="same kind of sequences"):
        feature_distillation_loss([{"pair": teacher[0]["query"]}], student, [0], SCORES, POSITIVES)
    with pytest.raises(ValueError, match="outside"):
        feature_distillation_loss(teacher, student, [1], SCORES, POSITIVES)


def test_check_same_tokenizer(tiny_bert, tiny_mpnet):
    from transformers import AutoTokenizer

    bert = AutoTokenizer.from_pretrained(tiny_bert)
    check_same_tokenizer(bert, AutoTokenizer.from_pretrained(tiny_bert))  # no error
    mpnet = AutoTokenizer.from_pretrained(tiny_mpnet)
    with pytest.raises(TokenizerMismatchError, match="needs the same tokenizer") as error:
        check_same_tokenizer(mpnet, bert)
    message = str(error.value)
    assert "teacher" in message and "student" in message and "special tokens differ" in message
    assert isinstance(error.value, ValueError)


def test_check_same_tokenizer_catches_normalisation(tiny_bert):
    from transformers import AutoTokenizer

    lower = AutoTokenizer.from_pretrained(tiny_bert)
    cased = AutoTokenizer.from_pretrained(tiny_bert, do_lower_case=False)
    with pytest.raises(TokenizerMismatchError, match="tokenize .* differently"):
        check_same_tokenizer(lower, cased)


def test_feature_distillation_shared_token_prefix_renormalises():
    from lead_core.losses.feature import shared_token_prefix

    # Teacher (ColBERT-like): 3 positions, the last an attended [MASK] (id 9). Student: 2 real tokens
    # padded to 2 in sequence 0; sequence 1 has only 1 real token (then padding, id 0).
    teacher_ids = torch.tensor([[5, 6, 9], [5, 9, 9]])
    student_ids = torch.tensor([[5, 6], [5, 0]])
    shared = shared_token_prefix(teacher_ids, torch.ones(2, 3), student_ids, torch.tensor([[1, 1], [1, 0]]))
    assert shared.tolist() == [[True, True], [True, False]]
    teacher = torch.tensor(
        [
            [[[0.2, 0.2, 0.6], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4]]],
            [[[0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]]],
        ]
    )  # [2, 1, 3, 3]
    student = torch.tensor([[[[0.6, 0.4], [0.5, 0.5]]], [[[1.0, 0.0], [0.5, 0.5]]]]).requires_grad_(True)
    # Sequence 0, rows 0 and 1 renormalised over keys 0-1: teacher [0.5, 0.5] and [0.25, 0.75].
    row0 = 0.5 * math.log(0.5 / 0.6) + 0.5 * math.log(0.5 / 0.4)
    row1 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    # Sequence 1: one kept row over one kept key: both renormalise to [1.0], KL 0.
    expected = ((row0 + row1) / 2 + 0.0) / 2
    got = feature_distillation_loss(
        [{"query": teacher}], [{"query": student}], [0], SCORES, POSITIVES, shared_tokens={"query": shared}
    )
    assert got.feature.item() == pytest.approx(expected, rel=1e-5)
    got.total.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    # Without the shared prefix the 3- vs 2-token maps are still refused.
    with pytest.raises(ValueError, match="same tokenizer"):
        feature_distillation_loss([{"query": teacher}], [{"query": student}], [0], SCORES, POSITIVES)
    with pytest.raises(ValueError, match="shared_tokens"):
        feature_distillation_loss(
            [{"query": teacher}],
            [{"query": student}],
            [0],
            SCORES,
            POSITIVES,
            shared_tokens={"query": torch.ones(2, 3, dtype=torch.bool)},
        )
