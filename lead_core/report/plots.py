"""Training plots as PNG (matplotlib with the Agg backend; optional: without it no plots are made)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from lead_core.artifacts import atomic_path
from lead_core.report.logs import student_layer_weights

logger = logging.getLogger(__name__)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    # The temporary name keeps the .png suffix so savefig picks the format.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_training(logs: Mapping[str, list[dict[str, float]]], out_dir: str | Path) -> list[Path]:
    """Write loss_curves.png (loss/total per run) and layer_weights-<run>.png (LEAD's Eq. 7 weights
    per student layer over steps, for runs that log them). Returns the files written; none when
    matplotlib is missing (logged once)."""
    plt = _pyplot()
    if plt is None:
        logger.warning("matplotlib is not installed: no plots written")
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    curves = {name: rows for name, rows in logs.items() if any("loss/total" in r for r in rows)}
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, rows in curves.items():
            points = [(r["step"], r["loss/total"]) for r in rows if "loss/total" in r]
            ax.plot([s for s, _ in points], [v for _, v in points], label=name, linewidth=1)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (loss/total)")
        ax.set_title("Loss curves")
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "loss_curves.png"))
        plt.close(fig)
    for name, rows in logs.items():
        weights = student_layer_weights(rows)
        if not weights:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for layer in sorted(weights):
            points = weights[layer]
            ax.plot(
                [s for s, _ in points],
                [w for _, w in points],
                ".",
                markersize=3,
                label=f"student layer {layer + 1}",
            )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("layer weight (Eq. 7)")
        ax.set_title(f"Layer weights over training: {name}")
        ax.legend(fontsize=7)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        written.append(_save(fig, out_dir / f"layer_weights-{safe}.png"))
        plt.close(fig)
    return written
