"""The code fingerprint reaches every task of a local run (it is what makes a lead_core edit
invalidate the local cache), and it changes with the sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import kfp.local
import pytest
import yaml
from kfp import compiler

from tests.pipeline.compiled import executor_tasks
from tests.pipeline.test_pipeline import REPO, lead_msmarco


def _task_environments(tmp_path, pipeline) -> dict[str, dict[str, str]]:
    """task name -> {env name: value} of the compiled pipeline."""
    path = tmp_path / "spec.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    executors = spec["deploymentSpec"]["executors"]
    out = {}
    for name, task in executor_tasks(spec).items():
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


def test_a_local_run_builds_the_pipeline_with_the_code_fingerprint(tmp_path, monkeypatch):
    from lead_core.tracking import TRACKING_URI_ENV

    built = []
    real_build = lead_msmarco.build_pipeline

    def build_pipeline(**kwargs):
        built.append(kwargs)
        return real_build(**kwargs)

    class Stop(Exception):
        pass

    def init(**kwargs):
        raise Stop  # the pipeline is built; no task needs to run

    # A fixed fingerprint (the checkout may be edited while the test runs); run_local's
    # environment changes are undone after the test.
    monkeypatch.setattr(lead_msmarco, "code_fingerprint", lambda: "c0dec0de")
    monkeypatch.setattr(lead_msmarco, "build_pipeline", build_pipeline)
    monkeypatch.setattr(kfp.local, "init", init)
    monkeypatch.setenv("PYTHONPATH", "")
    monkeypatch.setenv(TRACKING_URI_ENV, "")
    with pytest.raises(Stop):
        lead_msmarco.main(["--local", "--profile", "smoke", "--workdir", str(tmp_path / "work")])
    assert built[-1]["fingerprint"] == "c0dec0de"


# In a copy of the sources: a lead_core edit changes the fingerprint, undoing it restores it.
_EDIT_AND_HASH = """
import json, sys
from pathlib import Path
from pipelines.lead_msmarco import code_fingerprint
source = Path("lead_core/losses/objectives.py")
original = source.read_text()
first = code_fingerprint()
again = code_fingerprint()
source.write_text(original.replace("tau_l=config.tau_l", "tau_l=10.0"))
edited = code_fingerprint()
source.write_text(original)
print(json.dumps([first, again, edited, code_fingerprint()]))
"""


def test_the_fingerprint_follows_the_sources(tmp_path):
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("lead_core", "components", "pipelines", "images"):
        shutil.copytree(REPO / name, copy / name, ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", copy / "pyproject.toml")
    env = {k: v for k, v in os.environ.items() if k != "LEAD_CODE_FINGERPRINT"}
    done = subprocess.run(
        [sys.executable, "-c", _EDIT_AND_HASH], cwd=copy, env=env, capture_output=True, text=True, check=True
    )
    first, again, edited, restored = json.loads(done.stdout.strip().splitlines()[-1])
    assert first == again == restored and edited != first
