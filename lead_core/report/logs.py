"""Per-step training logs as JSON Lines: a trainer callback writes them, the report reads them.

One line per optimizer step: {"step": int, "<metric>": float, ...} with the trainer's metric names
(loss/total, loss/layer, layer_weight/k<i>, layers/student_k<i>, lr, ...).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lead_core.data.schema import SchemaError


class StepLogWriter:
    """A `lead_core.train.run` callback appending each step's metrics to a JSONL file (rank 0 only).

    `lead train --step-log` writes it through a temporary committed with the model (a failed run
    leaves no log) and keeps a copy in every checkpoint, which `--resume` continues from. As a
    callback (`train.run(config, callbacks=[StepLogWriter(path)])`) it writes `path` directly,
    flushed every line. Call `close()` when training returns.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w")

    def __call__(self, info: Any) -> None:
        if getattr(info, "rank", 0) != 0:
            return
        row = {"step": int(info.step)}
        row.update({k: float(v) for k, v in info.metrics.items() if math.isfinite(float(v))})
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def restore(self, saved: str | Path) -> None:
        """Replace what was written so far with the rows of `saved` (the copy in a checkpoint)."""
        self._file.seek(0)
        self._file.truncate()
        self._file.write(Path(saved).read_text())
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_step_log(path: str | Path) -> list[dict[str, float]]:
    """The rows of a JSONL step log, in file order. Raises ValueError naming the file and line."""
    path = Path(path)
    rows = []
    with path.open() as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SchemaError(f"{path}: line {number}: not a JSON object ({err.msg})") from err
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise SchemaError(f"{path}: line {number}: expected an object with an integer 'step'")
            rows.append(row)
    return rows


def student_layer_weights(rows: list[dict[str, float]]) -> dict[int, list[tuple[int, float]]]:
    """LEAD's layer weights (Eq. 7) per student layer: layer -> [(step, weight), ...].

    The trainer logs the weight of the i-th selected pair as `layer_weight/k<i>` and that pair's
    student layer as `layers/student_k<i>`; steps where a layer was not selected have no point.
    """
    out: dict[int, list[tuple[int, float]]] = {}
    for row in rows:
        i = 0
        while f"layer_weight/k{i}" in row and f"layers/student_k{i}" in row:
            layer = int(row[f"layers/student_k{i}"])
            out.setdefault(layer, []).append((int(row["step"]), float(row[f"layer_weight/k{i}"])))
            i += 1
    return out
