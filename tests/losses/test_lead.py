"""lead_loss (Eq. 6–12) against values computed by hand, plus its gradients, masks and checks."""

from __future__ import annotations

import math

import pytest
import torch

from lead_core.losses import lead_loss, teacher_layer_weights

# A tiny example: Q=2 queries, P=3 passages, N=3 teacher layers, M=2 student layers, K=2.
# Query 0 has two positives (passages 0 and 2), query 1 one (passage 1).
TEACHER = [
    [[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]],
    [[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
    [[3.0, 0.0, 1.0], [0.0, 1.0, 2.0]],
]
STUDENT = [
    [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]],
    [[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]],
]
POSITIVES = [[True, False, True], [False, True, False]]
TEACHER_LAYERS, STUDENT_LAYERS = [0, 2], [0, 1]
TAU_D, TAU_L = 2.0, 10.0


# ---- the same quantities in plain Python, written out from the equations ----
def softmax(row, tau=1.0):
    exps = [math.exp(x / tau) for x in row]
    return [e / sum(exps) for e in exps]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def mean(xs):
    return sum(xs) / len(xs)


def layer_kl(t_layer, s_layer, tau):  # Eq. 6 for one layer pair, averaged over queries
    return mean([kl(softmax(t, tau), softmax(s, tau)) for t, s in zip(t_layer, s_layer)])


def label_kl(t_layer):  # KL(y || softmax(t)), averaged over queries (Eq. 7's exponent)
    out = []
    for row, pos in zip(t_layer, POSITIVES):
        y = [1.0 / sum(pos) if p else 0.0 for p in pos]
        out.append(kl(y, softmax(row)))
    return mean(out)


def hard(layer):  # Eq. 10-11: −Σ_positives log softmax, averaged over queries
    return mean(
        [
            -sum(math.log(softmax(row)[i]) for i, p in enumerate(pos) if p)
            for row, pos in zip(layer, POSITIVES)
        ]
    )


def by_hand(reweight=True, joint=True):
    terms = [layer_kl(TEACHER[a], STUDENT[b], TAU_D) for a, b in zip(TEACHER_LAYERS, STUDENT_LAYERS)]
    if reweight:
        exps = [math.exp(-label_kl(TEACHER[a]) / TAU_L) for a in TEACHER_LAYERS]
        weights = [e / sum(exps) for e in exps]
    else:
        weights = [0.5, 0.5]
    layer = sum(w * x for w, x in zip(weights, terms))
    forward = layer_kl(TEACHER[-1], STUDENT[-1], TAU_D)
    reverse = layer_kl(STUDENT[-1], TEACHER[-1], TAU_D)
    t_hard, s_hard = hard(TEACHER[-1]), hard(STUDENT[-1])
    if joint:
        return dict(
            total=layer + forward + reverse + t_hard + s_hard,
            layer=layer,
            response=forward + reverse,
            teacher_hard=t_hard,
            student_hard=s_hard,
            weights=weights,
            terms=terms,
        )
    return dict(
        total=layer + forward + s_hard,
        layer=layer,
        response=forward,
        teacher_hard=t_hard,
        student_hard=s_hard,
        weights=weights,
        terms=terms,
    )


def tensors(dtype=torch.float32):
    teacher = torch.tensor(TEACHER, dtype=dtype, requires_grad=True)
    student = torch.tensor(STUDENT, dtype=dtype, requires_grad=True)
    return teacher, student, torch.tensor(POSITIVES)


def run(teacher, student, positives, **kwargs):
    return lead_loss(
        teacher, student, positives, TEACHER_LAYERS, STUDENT_LAYERS, tau_d=TAU_D, tau_l=TAU_L, **kwargs
    )


@pytest.mark.parametrize("reweight", [True, False])
@pytest.mark.parametrize("joint", [True, False])
def test_matches_hand_computed_values(reweight, joint):
    expected = by_hand(reweight=reweight, joint=joint)
    got = run(*tensors(), reweight=reweight, joint=joint)
    for name in ("total", "layer", "response", "teacher_hard", "student_hard"):
        assert getattr(got, name).item() == pytest.approx(expected[name], rel=1e-5), name
    assert got.layer_weights.tolist() == pytest.approx(expected["weights"], rel=1e-5)
    assert got.layer_terms.tolist() == pytest.approx(expected["terms"], rel=1e-5)


def test_hand_example_pinned_numbers():
    # Worked on paper (4 decimals), independent of the helpers above:
    #   student final q0 = [1, 2, 0], positives {0, 2}: z = e + e^2 + 1 = 11.1073, log z = 2.4076
    #     -> (2.4076 - 1) + (2.4076 - 0) = 3.8152;  q1 = [0, 0, 1], positive 1: log(2 + e) = 1.5514
    #     L_stu = (3.8152 + 1.5514) / 2 = 2.6833
    #   teacher final q0 = [3, 0, 1]: log(e^3 + 1 + e) = 3.1699 -> 0.1699 + 2.1699 = 2.3397;
    #     q1 = [0, 1, 2], positive 1: 2.4076 - 1 = 1.4076;  L_tch = (2.3397 + 1.4076) / 2 = 1.8737
    got = run(*tensors())
    assert got.student_hard.item() == pytest.approx(2.6833, abs=1e-4)
    assert got.teacher_hard.item() == pytest.approx(1.8737, abs=1e-4)
    # The whole Eq. 12 total of this example, pinned from the plain-Python equations.
    assert got.total.item() == pytest.approx(5.047978, abs=1e-5)
    assert got.layer_weights.tolist() == pytest.approx([0.513976, 0.486024], abs=1e-5)


def test_without_reweighting_weights_are_uniform():
    got = run(*tensors(), reweight=False)
    assert got.layer_weights.tolist() == [0.5, 0.5]
    assert got.layer.item() == pytest.approx(got.layer_terms.mean().item(), rel=1e-6)


def test_gradients_reach_teacher_only_when_joint():
    teacher, student, positives = tensors()
    run(teacher, student, positives, joint=True).total.backward()
    assert teacher.grad is not None and teacher.grad.abs().sum() > 0
    assert student.grad is not None and student.grad.abs().sum() > 0

    teacher, student, positives = tensors()
    run(teacher, student, positives, joint=False).total.backward()
    assert teacher.grad is None or teacher.grad.abs().sum() == 0
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_layer_weights_carry_no_gradient():
    teacher, student, positives = tensors()
    got = run(teacher, student, positives)
    assert not got.layer_weights.requires_grad


def test_kl_terms_vanish_when_student_equals_teacher():
    torch.manual_seed(0)
    scores = torch.randn(4, 5, 7)
    positives = torch.zeros(5, 7, dtype=torch.bool)
    positives[torch.arange(5), torch.arange(5)] = True
    positives[0, 6] = True
    got = lead_loss(scores, scores.clone(), positives, [0, 1, 3], [0, 1, 3], tau_d=1.0)
    assert got.layer.item() == pytest.approx(0.0, abs=1e-6)
    assert got.response.item() == pytest.approx(0.0, abs=1e-6)
    assert got.total.item() == pytest.approx(2 * got.student_hard.item(), rel=1e-6)


def test_weights_sum_to_one_and_favour_the_informative_layer():
    positives = torch.tensor([[True, False, False, False], [False, False, True, False]])
    informative = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]])  # mass on positives
    noisy = torch.tensor([[0.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0]])  # mass on negatives
    teacher = torch.stack([noisy, informative, noisy])
    student = torch.zeros(2, 2, 4)
    got = lead_loss(teacher, student, positives, [0, 1], [0, 1], tau_l=1.0)
    assert got.layer_weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert got.layer_weights[1] > 0.9 > got.layer_weights[0]

    # Over all N layers: a distribution, and restricted to the selected layers it renormalises to w.
    all_weights = teacher_layer_weights(teacher, positives, tau_l=1.0)
    assert all_weights.shape == (3,)
    assert all_weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert int(all_weights.argmax()) == 1
    subset = all_weights[[0, 1]] / all_weights[[0, 1]].sum()
    assert subset.tolist() == pytest.approx(got.layer_weights.tolist(), rel=1e-5)


def test_masked_passages_stay_finite_and_equal_dropping_them():
    torch.manual_seed(1)
    teacher = torch.randn(3, 2, 5)
    student = torch.randn(2, 2, 5)
    positives = torch.tensor([[True, False, False, True, False], [False, True, False, False, False]])
    keep = [0, 1, 3, 4]  # passage 2 is hidden from every query
    masked_t, masked_s = teacher.clone(), student.clone()
    masked_t[..., 2] = float("-inf")
    masked_s[..., 2] = float("-inf")
    masked_t.requires_grad_(True)
    masked_s.requires_grad_(True)
    got = lead_loss(masked_t, masked_s, positives, [0, 2], [0, 1])
    got.total.backward()
    assert torch.isfinite(got.total)
    assert torch.isfinite(masked_t.grad).all() and torch.isfinite(masked_s.grad).all()
    assert masked_t.grad[..., 2].abs().sum() == 0

    reduced = lead_loss(teacher[..., keep], student[..., keep], positives[:, keep], [0, 2], [0, 1])
    assert got.total.item() == pytest.approx(reduced.total.item(), rel=1e-6)


def test_per_query_masks_stay_finite():
    # Each query hides a different passage (e.g. its restricted group).
    teacher = torch.randn(3, 2, 4)
    student = torch.randn(2, 2, 4)
    for scores in (teacher, student):
        scores[:, 0, 3] = float("-inf")
        scores[:, 1, 0] = float("-inf")
    teacher.requires_grad_(True)
    student.requires_grad_(True)
    positives = torch.tensor([[True, False, False, False], [False, True, True, False]])
    got = lead_loss(teacher, student, positives, [1, 2], [0, 1])
    got.total.backward()
    assert all(torch.isfinite(v) for v in (got.total, got.layer, got.response, got.teacher_hard))
    assert torch.isfinite(teacher.grad).all() and torch.isfinite(student.grad).all()


def test_bfloat16_inputs_are_computed_in_float32():
    teacher, student, positives = tensors(torch.bfloat16)
    got = run(teacher, student, positives)
    assert got.total.dtype == torch.float32
    # The example's scores are exact in bfloat16, so the result matches the hand values.
    assert got.total.item() == pytest.approx(by_hand()["total"], rel=1e-5)
    got.total.backward()
    assert teacher.grad.dtype == torch.bfloat16


def test_metrics_names_every_term():
    metrics = run(*tensors()).metrics()
    assert set(metrics) == {
        "total",
        "layer",
        "response",
        "teacher_hard",
        "student_hard",
        "layer_weight_0",
        "layer_weight_1",
    }
    assert metrics["total"] == pytest.approx(by_hand()["total"], rel=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(teacher_layers=[0, 1, 2]), "same length"),
        (dict(teacher_layers=[0, 3]), "outside 0..2"),
        (dict(student_layers=[-1, 1]), "outside 0..1"),
        (dict(teacher_layers=[2, 0]), "strictly increasing"),
        (dict(teacher_layers=[1, 1]), "strictly increasing"),
        (dict(teacher_layers=[], student_layers=[]), "empty"),
        (dict(positives=torch.tensor([[True, False, True], [False, False, False]])), "queries \\[1\\]"),
        (dict(positives=torch.tensor([[1, 0, 1], [0, 1, 0]])), "bool"),
        (dict(positives=torch.ones(2, 4, dtype=torch.bool)), "shape"),
        (dict(student=torch.zeros(2, 2, 4)), "share Q and P"),
        (dict(student=torch.zeros(2, 3)), "\\[layers, Q, P\\]"),
        (dict(tau_d=0.0), "temperatures"),
    ],
)
def test_invalid_inputs_raise(change, message):
    teacher, student, positives = tensors()
    args = dict(
        teacher=teacher,
        student=student,
        positives=positives,
        teacher_layers=TEACHER_LAYERS,
        student_layers=STUDENT_LAYERS,
        tau_d=1.0,
    )
    args.update(change)
    with pytest.raises(ValueError, match=message):
        lead_loss(
            args["teacher"],
            args["student"],
            args["positives"],
            args["teacher_layers"],
            args["student_layers"],
            tau_d=args["tau_d"],
        )


def test_masked_positive_or_mismatched_masks_raise():
    teacher, student, positives = tensors()
    with torch.no_grad():
        hidden_positive = teacher.clone()
        hidden_positive[2, 1, 1] = float("-inf")
    with pytest.raises(ValueError, match="positive"):
        lead_loss(hidden_positive, student, positives, [0, 2], [0, 1])
    with torch.no_grad():
        t_masked = teacher.clone()
        t_masked[..., 0, 1] = float("-inf")  # hidden from query 0 for the teacher only
    with pytest.raises(ValueError, match="masks"):
        lead_loss(t_masked, student, positives, [0, 2], [0, 1])
    # A NaN on a positive of the student's final layer masks nothing, so only the finiteness check
    # can catch it (L_stu would silently be NaN).
    q, p = positives.nonzero()[0].tolist()
    with torch.no_grad():
        nan_student = student.clone()
        nan_student[-1, q, p] = float("nan")
    with pytest.raises(ValueError, match=r"student_scores \(final layer\) has a non-finite score"):
        lead_loss(teacher, nan_student, positives, [0, 2], [0, 1])
