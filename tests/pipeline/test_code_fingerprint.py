"""The code fingerprint reaches every task of a local run (it is what makes a lead_core edit
invalidate the local cache), and it changes with the sources."""

from __future__ import annotations

import kfp.local
import pytest
import yaml
from kfp import compiler

from tests.pipeline.test_pipeline import lead_msmarco


def _task_environments(tmp_path, pipeline) -> dict[str, dict[str, str]]:
    """task name -> {env name: value} of the compiled pipeline."""
    path = tmp_path / "spec.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    executors = spec["deploymentSpec"]["executors"]
    out = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        out[name] = {e["name"]: e.get("value") for e in executors[label]["container"].get("env", [])}
    return out


def test_every_task_gets_the_fingerprint(tmp_path):
    pipeline, stages = lead_msmarco.build_pipeline(fingerprint="f1ngerpr1nt")
    environments = _task_environments(tmp_path, pipeline)
    assert set(environments) == set(stages.values())
    missing = [
        name for name, env in environments.items() if env.get("LEAD_CODE_FINGERPRINT") != "f1ngerpr1nt"
    ]
    assert not missing, f"tasks without the fingerprint: {missing}"


def _fake_sources(root):
    """A tree with one lead_core and one components source (code_fingerprint reads only those)."""
    (root / "lead_core" / "train").mkdir(parents=True)
    (root / "components").mkdir()
    (root / "lead_core" / "train" / "trainer.py").write_text("TAU_L = 10.0\n")
    (root / "components" / "train.py").write_text("NAME = 'train'\n")
    return root / "lead_core" / "train" / "trainer.py"


def test_a_local_run_builds_the_pipeline_with_the_code_fingerprint(tmp_path, monkeypatch):
    from lead_core.tracking import TRACKING_URI_ENV

    monkeypatch.delenv("LEAD_CODE_FINGERPRINT", raising=False)
    # Fixed sources (the checkout may be edited while the test runs); run_local's environment
    # changes are undone after the test.
    monkeypatch.setattr(lead_msmarco, "REPO", tmp_path / "repo")
    _fake_sources(tmp_path / "repo")
    monkeypatch.setenv("PYTHONPATH", "")
    monkeypatch.setenv(TRACKING_URI_ENV, "")
    built = []
    real_build = lead_msmarco.build_pipeline

    def build_pipeline(**kwargs):
        built.append(kwargs)
        return real_build(**kwargs)

    class Stop(Exception):
        pass

    def init(**kwargs):
        raise Stop  # the pipeline is built; no task needs to run

    monkeypatch.setattr(lead_msmarco, "build_pipeline", build_pipeline)
    monkeypatch.setattr(kfp.local, "init", init)
    with pytest.raises(Stop):
        lead_msmarco.main(["--local", "--profile", "smoke", "--workdir", str(tmp_path / "work")])
    assert built[-1]["fingerprint"] == lead_msmarco.code_fingerprint() != ""


def test_the_fingerprint_follows_the_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("LEAD_CODE_FINGERPRINT", raising=False)
    monkeypatch.setattr(lead_msmarco, "REPO", tmp_path)
    source = _fake_sources(tmp_path)
    first = lead_msmarco.code_fingerprint()
    assert lead_msmarco.code_fingerprint() == first  # a pure function of the sources
    source.write_text("TAU_L = 1.0\n")
    assert lead_msmarco.code_fingerprint() != first
    (tmp_path / "notes.py").write_text("x = 1\n")  # outside lead_core/ and components/: ignored
    source.write_text("TAU_L = 10.0\n")
    assert lead_msmarco.code_fingerprint() == first
    monkeypatch.setenv("LEAD_CODE_FINGERPRINT", "pinned")  # the documented override
    assert lead_msmarco.code_fingerprint() == "pinned"
