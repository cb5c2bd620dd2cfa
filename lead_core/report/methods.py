"""The rows of the paper's comparisons (Tables 3–7 and 10) as data: the quality pipeline
(pipelines/lead_quality.py, which benchmarks/quality.py runs) builds its rows from `methods_for`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Method:
    """One row. kind: zero-shot | warmup (the student warm-up alone) | distill (a training run
    from the warm student; `train` holds its lead_core.train.Config fields) | teacher (the teacher
    reranking a first-stage run: the warm one, or the one trained jointly by `teacher_of`)."""

    name: str
    kind: str
    train: dict[str, Any] = field(default_factory=dict)
    teacher_of: str | None = None
    linear: bool = False  # the student has appended linear layers (§3.5.1; needs its own warm-up)


SLOW_TEACHER_LR = 1e-5


def methods_for(student_layers: int, k: int) -> dict[str, Method]:
    """Method id -> Method in table order; `k` is LEAD's default K, K runs 1..student_layers."""
    lead = {"method": "lead", "k": k}
    out = {
        "zero-shot": Method("Zero-shot student", "zero-shot"),
        "warmup": Method("Student warm-up only (no teacher)", "warmup"),
        "no-teacher": Method("Student, + distill steps without teacher", "distill", {"method": "none"}),
        "rd": Method("RD", "distill", {"method": "rd"}),
        "fd": Method("FD", "distill", {"method": "fd"}),
        "lead": Method("LEAD", "distill", lead),
        "lead-frozen": Method("LEAD w/o joint training", "distill", {**lead, "joint": False}),
        "lead-noreweight": Method("LEAD w/o re-weighting", "distill", {**lead, "reweight": False}),
        "sel-weighted": Method("LEAD, selection Weighted", "distill", {**lead, "selection": "weighted"}),
        "sel-last": Method("LEAD, selection Last", "distill", {**lead, "selection": "last"}),
        "sel-skip": Method("LEAD, selection Skip", "distill", {**lead, "selection": "skip"}),
    }
    for kk in range(1, student_layers + 1):
        out[f"k{kk}"] = Method(f"LEAD, K={kk}", "distill", {**lead, "k": kk})
    out["lead-linear"] = Method("LEAD + linear", "distill", lead, linear=True)
    out["rd-linear"] = Method("RD + linear", "distill", {"method": "rd"}, linear=True)
    # Diagnostic (not in the paper): joint training with a slower teacher, and that teacher after it.
    out["lead-slow-teacher"] = Method(
        f"LEAD, teacher lr {SLOW_TEACHER_LR:g}", "distill", {**lead, "teacher_lr": SLOW_TEACHER_LR}
    )
    out["teacher-before"] = Method("Teacher before LEAD", "teacher")
    out["teacher-after"] = Method("Teacher after LEAD", "teacher", teacher_of="lead")
    out["teacher-after-slow"] = Method(
        f"Teacher after LEAD, teacher lr {SLOW_TEACHER_LR:g}", "teacher", teacher_of="lead-slow-teacher"
    )
    return out


# The comparison to run first when time is short: the paper's main claim and its joint-training ablation.
CORE = ("zero-shot", "warmup", "rd", "lead", "lead-frozen")
