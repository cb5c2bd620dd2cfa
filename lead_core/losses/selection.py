"""Layer selection for LEAD (§3.3.2) and the fixed strategies of Table 5.

All indices are 0-based (index i = layer i+1, index N-1 = the final layer), as in `lead_loss`.
Both returned lists are sorted ascending and have length K; teacher_layers[k] is aligned with
student_layers[k] ("keeping their original relative orders").

Strategies, for a teacher of N layers, a student of M layers and K pairs (N >= M >= K >= 1):
  - "random":   K teacher layers and K student layers, each drawn uniformly without replacement
                and sorted, a fresh draw per call (LEAD's default).
  - "weighted": teacher layers drawn without replacement with probabilities `weights` ([N], Eq. 7
                over all teacher layers, see `teacher_layer_weights`), sorted; student layers as
                in "random".
  - "last":     the last K of each: teacher N-K..N-1, student M-K..M-1.
                12→6, K=5: teacher [7, 8, 9, 10, 11], student [1, 2, 3, 4, 5]
                (1-based {8..12} and {2..6}, as in §4.4.2).
  - "skip":     teacher every s-th layer from the first, s = N // M (the paper's "k = 2" for
                12→6): teacher [0, s, 2s, ..., (K-1)s]; student the last K, as in "last".
                12→6, K=5: teacher [0, 2, 4, 6, 8], student [1, 2, 3, 4, 5]
                (1-based {1, 3, 5, 7, 9} and {2..6}: §4.4.2 and the released code's
                layer_selection_skip, which also gives teacher [0, 2, ..., 10] for K=6).
                6→3, K=3: teacher [0, 2, 4], student [0, 1, 2].
                (K-1)·s <= N-1 always holds since K <= M, so the choice is valid at any depth.

The random strategies take `rng`, a `numpy.random.Generator` (e.g. `np.random.default_rng(888)`);
its state can be checkpointed with the trainer. Under data parallelism every rank must use an
identically seeded generator so that all ranks align the same layers. "last" and "skip" ignore it
(None allowed).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Strategy = Literal["random", "weighted", "last", "skip"]
STRATEGIES: tuple[str, ...] = ("random", "weighted", "last", "skip")


def _draw(rng: np.random.Generator, n: int, k: int, p: np.ndarray | None = None) -> list[int]:
    return sorted(int(i) for i in rng.choice(n, size=k, replace=False, p=p))


def _check_weights(weights, num_teacher_layers: int, k: int) -> np.ndarray:
    if weights is None:
        raise ValueError('strategy "weighted" needs weights: a [N] vector from teacher_layer_weights')
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().to("cpu", torch.float64).numpy()
    p = np.asarray(weights, dtype=np.float64).reshape(-1)
    if p.shape[0] != num_teacher_layers:
        raise ValueError(
            f"weights has {p.shape[0]} entries, expected one per teacher layer ({num_teacher_layers})"
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"weights must be finite and >= 0, got {p.tolist()}")
    if abs(p.sum() - 1.0) > 1e-3:
        raise ValueError(f"weights must sum to 1 (probabilities), got sum {p.sum():.6f}")
    if np.count_nonzero(p) < k:
        raise ValueError(
            f"weights has {np.count_nonzero(p)} non-zero entries; cannot draw k={k} distinct layers"
        )
    return p / p.sum()


def select_layers(
    strategy: Strategy,
    num_teacher_layers: int,
    num_student_layers: int,
    k: int,
    rng: np.random.Generator | None,
    weights=None,
) -> tuple[list[int], list[int]]:
    """Pick K aligned (teacher, student) layers; see the module docstring for each strategy.

    Args:
        strategy: "random", "weighted", "last" or "skip".
        num_teacher_layers, num_student_layers: N and M (appended linear layers included).
        k: K, the number of aligned pairs; N >= M >= K >= 1.
        rng: numpy.random.Generator for "random"/"weighted"; ignored by "last"/"skip".
        weights: [N] probabilities (tensor, array or list) for "weighted" only.

    Returns:
        (teacher_layers, student_layers): two sorted lists of K 0-based ints.
    """
    n, m = int(num_teacher_layers), int(num_student_layers)
    if not n >= m >= k >= 1:
        raise ValueError(
            f"layer selection needs N >= M >= K >= 1, got N={num_teacher_layers} teacher layers, "
            f"M={num_student_layers} student layers, K={k}"
        )
    if strategy == "last":
        return list(range(n - k, n)), list(range(m - k, m))
    if strategy == "skip":
        stride = n // m
        return [i * stride for i in range(k)], list(range(m - k, m))
    if strategy not in ("random", "weighted"):
        raise ValueError(f"unknown layer selection strategy {strategy!r}; expected one of {STRATEGIES}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f'strategy "{strategy}" needs rng = numpy.random.Generator (np.random.default_rng(seed)), '
            f"got {type(rng).__name__}"
        )
    if strategy == "weighted":
        teacher = _draw(rng, n, k, _check_weights(weights, n, k))
    else:
        teacher = _draw(rng, n, k)
    return teacher, _draw(rng, m, k)


def layers_to_compute(selected: list[int], num_layers: int) -> tuple[list[int], list[int]]:
    """The layers to ask a model for, and where the selected ones sit in its output.

    A model computes only the layers asked for (`RetrievalModel.forward(layers=...)`), and
    `lead_loss` reads only the selected layers and the last index. So instead of an [N, Q, P]
    tensor a trainer may pass the model's compact [len(layers), Q, P] output with `positions` as
    the layer indices: the final layer N-1 is always asked for and always last.

    selected: sorted 0-based layer indices; num_layers: N.
    Returns (layers, positions): layers = sorted(selected ∪ {N-1}); layers[positions[k]] == selected[k].
    Example: selected [0, 3, 11], N=12 -> ([0, 3, 11], [0, 1, 2]); selected [2, 5], N=6 ->
    ([2, 5], [0, 1]); selected [1, 2], N=6 -> ([1, 2, 5], [0, 1]).
    """
    if any(not 0 <= i < num_layers for i in selected) or sorted(set(selected)) != list(selected):
        raise ValueError(f"selected layers {selected} must be strictly increasing within 0..{num_layers - 1}")
    layers = sorted(set(selected) | {num_layers - 1})
    return layers, [layers.index(i) for i in selected]
