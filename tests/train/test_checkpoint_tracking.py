"""Models and checkpoints reach the tracking run's artifacts: the final model by default, each
checkpoint when asked (at the checkpoint interval)."""

from __future__ import annotations

import pytest

from lead_core.config import ConfigError
from lead_core.tracking import local_default_uri
from lead_core.train import run
from tests.train.conftest import base_config


def _artifacts(uri: str, run_id: str, path: str | None = None) -> list[str]:
    from mlflow.tracking import MlflowClient

    return sorted(a.path for a in MlflowClient(uri).list_artifacts(run_id, path))


def _tracked_run(tmp_path, monkeypatch, config) -> tuple[str, str]:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = local_default_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "checkpoints")
    monkeypatch.delenv("LEAD_PARENT_RUN_ID", raising=False)
    run(config)
    (only,) = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("checkpoints").experiment_id]
    )
    return uri, only.info.run_id


def test_the_final_model_is_logged_by_default(tmp_path, toy, tiny_bert, monkeypatch):
    config = base_config(toy, tmp_path / "out", model=str(tiny_bert), architecture="de", max_steps=2)
    uri, run_id = _tracked_run(tmp_path, monkeypatch, config)
    assert _artifacts(uri, run_id) == ["model"]
    assert "model/lead_model.json" in _artifacts(uri, run_id, "model")


def test_checkpoints_are_logged_at_the_checkpoint_interval(tmp_path, toy, tiny_bert, monkeypatch):
    config = base_config(
        toy, tmp_path / "out", model=str(tiny_bert), architecture="de", max_steps=4,
        checkpoint_every=2, log_checkpoints=True,
    )  # fmt: skip
    uri, run_id = _tracked_run(tmp_path, monkeypatch, config)
    assert _artifacts(uri, run_id) == ["checkpoints", "model"]
    steps = _artifacts(uri, run_id, "checkpoints")
    assert steps == ["checkpoints/step-00000002", "checkpoints/step-00000004"]


def test_logging_checkpoints_needs_an_interval(tmp_path, toy, tiny_bert):
    config = base_config(toy, tmp_path / "out", model=str(tiny_bert), architecture="de", log_checkpoints=True)
    with pytest.raises(ConfigError, match="--checkpoint-every"):
        config.validate()
