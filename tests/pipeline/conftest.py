"""One pair of smoke pipeline runs for the whole session, tracked on a real `mlflow server`: the
pipeline test (caching) and the MLflow UI test (a browser on the same runs) both read it, so the
suite runs the smoke pipeline twice, not four times."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.pipeline.smoke import run_smoke, scifact_subset
from tests.test_tracking import MlflowServer


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory, scifact_dir):
    """SimpleNamespace(server, dataset, workdir, first, second): `first` a fresh smoke run, `second`
    the same with `--set tau_l=5` (summaries as `run_smoke` returns them)."""
    root = tmp_path_factory.mktemp("smoke-runs")
    server = MlflowServer(root / "mlflow")
    try:
        dataset = scifact_subset(scifact_dir, root / "scifact-subset")
        workdir = root / "work"
        first = run_smoke(workdir, dataset, server.uri)
        second = run_smoke(workdir, dataset, server.uri, "--set", "tau_l=5")
        yield SimpleNamespace(server=server, dataset=dataset, workdir=workdir, first=first, second=second)
    finally:
        server.kill()
