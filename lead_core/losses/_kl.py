"""Softmax/KL math and input checks shared by every loss in this package.

Conventions: scores are [..., P] tensors over the passages a query is scored against; a passage a
query must not see (e.g. another query's restricted group) has score -inf, which gives it
probability 0. Everything is computed in float32 via log_softmax, whatever the input dtype, and
0·log 0 is taken as 0 – in the forward pass *and* in the gradient (a plain `p * (log p - log q)`
would give 0·(-inf - -inf) = NaN on masked passages and poison the backward pass).
"""

from __future__ import annotations

import torch
from torch import Tensor


def log_distribution(scores: Tensor, tau: float = 1.0) -> Tensor:
    """log softmax(scores / tau) over the last (passage) dim, in float32.

    scores: [..., P] (any float dtype, -inf for masked passages) -> [..., P] float32.
    """
    return torch.log_softmax(scores.float() / tau, dim=-1)


def kl_divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) = Σ_x p(x) (log p(x) - log q(x)) over the last dim, per row.

    log_p, log_q: [..., P] log-probabilities (may hold -inf) -> [...].
    Terms with p(x) = 0 are exactly 0 and carry no gradient. Where p(x) > 0 and q(x) = 0 the
    divergence is +inf, as it should be; `check_same_mask` rules that out for score inputs.
    """
    p = log_p.exp()
    support = p > 0
    # Zero the log-ratio *before* multiplying so that masked terms never produce NaN gradients.
    log_ratio = torch.where(support, log_p - log_q, torch.zeros_like(log_p))
    return (p * log_ratio).sum(dim=-1)


def label_log_distribution(positives: Tensor) -> Tensor:
    """log y, y = `positives` normalised to sum 1 per query (the label distribution of Eq. 7).

    positives: bool [Q, P] -> float32 [Q, P] (-inf off the positives).
    """
    counts = positives.sum(dim=-1, keepdim=True).float()
    y = positives.float() / counts
    return y.log()


def hard_loss(scores: Tensor, positives: Tensor) -> Tensor:
    """−Σ_{p ∈ positives(q)} log softmax(scores[q])_p, averaged over queries (Eq. 10–11).

    scores: [Q, P] final-layer scores, *untempered*; positives: bool [Q, P]. -> scalar float32.
    With several positives per query the log-probabilities of all of them are summed (not
    averaged), as the equation is written.
    """
    log_probs = log_distribution(scores)
    picked = torch.where(positives, log_probs, torch.zeros_like(log_probs))
    return -picked.sum(dim=-1).mean()


def check_positives(positives: Tensor, shape: torch.Size | tuple[int, ...], what: str = "positives") -> None:
    """`positives` must be a bool [Q, P] tensor of the given shape with ≥1 positive per query."""
    if not isinstance(positives, Tensor) or positives.dtype != torch.bool:
        got = positives.dtype if isinstance(positives, Tensor) else type(positives).__name__
        raise ValueError(f"{what} must be a bool tensor [Q, P], got {got}")
    if tuple(positives.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(positives.shape)}, expected [Q, P] = {tuple(shape)}")
    has_positive = positives.any(dim=-1)
    if not bool(has_positive.all()):
        missing = torch.nonzero(~has_positive).flatten().tolist()
        raise ValueError(f"every query needs at least one positive passage; queries {missing[:10]} have none")


def check_positives_visible(scores: Tensor, positives: Tensor, what: str) -> None:
    """Every positive's score must be finite in every layer (a masked positive makes CE infinite).

    scores: [L, Q, P] or [Q, P]; positives: bool [Q, P].
    """
    picked = scores[..., positives]
    if not bool(torch.isfinite(picked).all()):
        raise ValueError(f"{what} has a non-finite score (masked, inf or NaN) on a positive passage")


def check_same_mask(reference: Tensor, other: Tensor, what: str) -> None:
    """`other` must mask (-inf) exactly the passages `reference` masks, per query.

    reference: [Q, P]; other: [L, Q, P] or [Q, P]. A passage visible to the teacher but masked
    for the student would make KL(t || s) infinite; one masked only for the teacher would silently
    change what is distilled.
    """
    if not bool((torch.isneginf(other) == torch.isneginf(reference)).all()):
        raise ValueError(
            f"{what} masks (-inf) different passages than the teacher's final layer; "
            "teacher and student must be scored against the same visible passages"
        )
