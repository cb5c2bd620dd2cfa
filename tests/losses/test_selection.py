"""select_layers: seeded random draws, Table 5's fixed strategies, weighted draws, checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lead_core.losses import layers_to_compute, select_layers


def test_random_is_reproducible_sorted_and_paired():
    first = [select_layers("random", 12, 6, 5, np.random.default_rng(888)) for _ in range(1)]
    rng_a, rng_b = np.random.default_rng(888), np.random.default_rng(888)
    draws_a = [select_layers("random", 12, 6, 5, rng_a) for _ in range(20)]
    draws_b = [select_layers("random", 12, 6, 5, rng_b) for _ in range(20)]
    assert draws_a == draws_b
    assert draws_a[0] == first[0]
    for teacher, student in draws_a:
        assert len(teacher) == len(student) == 5
        assert teacher == sorted(set(teacher)) and student == sorted(set(student))
        assert all(isinstance(i, int) for i in teacher + student)
        assert 0 <= teacher[0] and teacher[-1] <= 11 and 0 <= student[0] and student[-1] <= 5
    # A fresh draw per call: 20 draws of 5 out of 12 are not all the same.
    assert len({tuple(t) for t, _ in draws_a}) > 1


def test_random_covers_every_layer():
    rng = np.random.default_rng(0)
    seen_teacher, seen_student = set(), set()
    for _ in range(200):
        teacher, student = select_layers("random", 12, 6, 2, rng)
        seen_teacher.update(teacher)
        seen_student.update(student)
    assert seen_teacher == set(range(12)) and seen_student == set(range(6))


@pytest.mark.parametrize(
    "strategy, n, m, k, expected",
    [
        # §4.4.2: Last = teacher {8..12}, student {2..6} (1-based).
        ("last", 12, 6, 5, ([7, 8, 9, 10, 11], [1, 2, 3, 4, 5])),
        ("last", 6, 3, 3, ([3, 4, 5], [0, 1, 2])),
        # §4.4.2 / released code: Skip (k=2) = teacher {1,3,5,7,9}, student {2..6} (1-based).
        ("skip", 12, 6, 5, ([0, 2, 4, 6, 8], [1, 2, 3, 4, 5])),
        ("skip", 12, 6, 6, ([0, 2, 4, 6, 8, 10], [0, 1, 2, 3, 4, 5])),
        ("skip", 6, 3, 3, ([0, 2, 4], [0, 1, 2])),
        ("skip", 24, 12, 5, ([0, 2, 4, 6, 8], [7, 8, 9, 10, 11])),
        ("skip", 7, 3, 3, ([0, 2, 4], [0, 1, 2])),
        ("last", 4, 4, 1, ([3], [3])),
    ],
)
def test_fixed_strategies_exact(strategy, n, m, k, expected):
    assert select_layers(strategy, n, m, k, None) == expected
    # Fixed: the rng, if given, changes nothing.
    assert select_layers(strategy, n, m, k, np.random.default_rng(1)) == expected


def test_weighted_follows_the_weights():
    weights = torch.tensor([0.0] * 6 + [0.7, 0.1, 0.1, 0.1] + [0.0, 0.0])
    rng = np.random.default_rng(3)
    counts = np.zeros(12)
    for _ in range(100):
        teacher, student = select_layers("weighted", 12, 6, 2, rng, weights=weights)
        assert teacher == sorted(teacher) and student == sorted(student) and len(student) == 2
        counts[teacher] += 1
    assert counts[:6].sum() == 0 and counts[10:].sum() == 0  # zero-probability layers never drawn
    assert counts[6] > counts[7] and counts[6] > counts[8]
    again = [select_layers("weighted", 12, 6, 2, np.random.default_rng(3), weights=weights) for _ in range(2)]
    assert again[0] == again[1]


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("random", 6, 12, 5, np.random.default_rng(0)), {}, "N >= M >= K"),
        (("random", 12, 6, 7, np.random.default_rng(0)), {}, "N >= M >= K"),
        (("last", 12, 6, 0, None), {}, "N >= M >= K"),
        (("middle", 12, 6, 5, None), {}, "unknown layer selection strategy"),
        (("random", 12, 6, 5, 888), {}, "numpy.random.Generator"),
        (("weighted", 12, 6, 5, np.random.default_rng(0)), {}, "needs weights"),
        (("weighted", 12, 6, 5, np.random.default_rng(0)), {"weights": [1 / 6] * 6}, "one per teacher layer"),
        (("weighted", 4, 4, 3, np.random.default_rng(0)), {"weights": [0.5, 0.5, 0, 0]}, "non-zero"),
        (("weighted", 4, 4, 1, np.random.default_rng(0)), {"weights": [0.5, 0.6, 0, 0]}, "sum to 1"),
    ],
)
def test_invalid_selection_raises(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_layers(*args, **kwargs)


def test_layers_to_compute_gives_the_same_loss_as_full_scores():
    from lead_core.losses import lead_loss

    assert layers_to_compute([0, 3, 11], 12) == ([0, 3, 11], [0, 1, 2])
    assert layers_to_compute([1, 2], 6) == ([1, 2, 5], [0, 1])
    torch.manual_seed(0)
    teacher, student = torch.randn(12, 3, 4), torch.randn(6, 3, 4)
    positives = torch.eye(3, 4, dtype=torch.bool)
    a, b = [2, 5, 7], [0, 2, 3]
    full = lead_loss(teacher, student, positives, a, b)
    t_layers, t_pos = layers_to_compute(a, 12)
    s_layers, s_pos = layers_to_compute(b, 6)
    compact = lead_loss(teacher[t_layers], student[s_layers], positives, t_pos, s_pos)
    assert compact.total.item() == pytest.approx(full.total.item(), rel=1e-6)
    with pytest.raises(ValueError, match="strictly increasing"):
        layers_to_compute([3, 1], 6)
