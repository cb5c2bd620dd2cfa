"""The MLflow UI as a user sees it, in a real browser: a real `mlflow server`, two smoke pipeline runs
that differ in one parameter, and headless Chromium on the experiment page, the compare view of the
two parent runs and the registered student's page (the smoke runs are the session's, shared with the
pipeline test: tests/pipeline/conftest.py). Screenshots go to <workdir>/screenshots.

Needs Debian's `chromium` and `chromium-driver`; installed here with apt-get when missing (as root,
which CI is), else the test is skipped with the command to run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.mlflow]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
APT_PACKAGES = ("chromium", "chromium-driver")


def _ensure_chromium() -> None:
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    install = f"apt-get update && apt-get install -y {' '.join(APT_PACKAGES)}"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"headless Chromium is missing: {install} (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *APT_PACKAGES],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{install} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def browser():
    _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _page_text(
    driver, url: str, expected: list[str], screenshot: Path, timeout: float = 60, diff_only: bool = False
) -> str:
    """Open `url`, wait until every string in `expected` is in the page's text (the UI renders
    asynchronously), save a screenshot; return the text. Fails naming what never appeared.

    `diff_only` (compare view): switch the parameter and metric tables to "Show diff only" first
    (the metric table renders only the rows scrolled into its box: ~7 of them)."""
    from selenium.webdriver.common.by import By

    def switches():
        return driver.find_elements(
            By.CSS_SELECTOR, "[role='switch']"
        )  # "Show diff only": params, metrics, tags

    driver.get(url)
    deadline = time.monotonic() + timeout
    text, clicked = "", not diff_only
    while time.monotonic() < deadline:
        if not clicked and len(switches()) > 1:
            for switch in switches()[:2]:
                driver.execute_script("arguments[0].click();", switch)
            clicked = True
        text = driver.find_element(By.TAG_NAME, "body").text
        if clicked and all(item in text for item in expected):
            break
        time.sleep(0.5)
    for close in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):  # the assistant panel
        driver.execute_script("arguments[0].click();", close)
    time.sleep(1)  # let the last charts settle before the screenshot
    driver.save_screenshot(str(screenshot))
    missing = [item for item in expected if item not in text]
    assert not missing, f"{url}: never showed {missing}; screenshot {screenshot}; page text:\n{text[:3000]}"
    return text


def _metric_table(text: str, runs: int) -> dict[str, list[str]]:
    """metric name -> the values the compare view shows for it, one per run in column order (the
    table's text is its names, then each row's values)."""
    lines = text.splitlines()
    start = lines.index("Metrics", lines.index("Run details")) + 1
    cells = [line for line in lines[start : lines.index("Artifacts", start)] if line != "Show diff only"]

    def is_number(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    names = [cell for cell in cells if not is_number(cell)]
    values = [cell for cell in cells if is_number(cell)]
    assert len(values) == runs * len(names), cells
    return {name: values[i * runs : (i + 1) * runs] for i, name in enumerate(names)}


def test_compare_two_pipeline_runs_and_the_registered_student_in_a_browser(tmp_path, smoke_runs, browser):
    """The session's two smoke runs (tests/pipeline/conftest.py: tau_l 10, then 5) on its mlflow server."""
    from mlflow.tracking import MlflowClient

    server, first, second = smoke_runs.server, smoke_runs.first, smoke_runs.second
    client = MlflowClient(server.uri)
    runs = [client.get_run(s["parent_run_id"]) for s in (first, second)]
    names = [run.info.run_name for run in runs]
    assert names == ["smoke dataset_uri=scifact-subset", "smoke dataset_uri=scifact-subset tau_l=5.0"]
    experiment = client.get_experiment(runs[0].info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    shots = smoke_runs.workdir / "screenshots"
    shots.mkdir()

    # The runs table of the experiment (MLflow 3.17 opens an experiment in the view of the UI's
    # GenAI / Model training switch; the pipeline prints this link), both parents listed.
    runs_page = f"{server.uri}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    assert first["experiment_id"] == experiment.experiment_id
    _page_text(browser, runs_page, names, shots / "experiment.png")

    # The compare view of the two parent runs: the changed parameter and the student's nDCG@10.
    ids = [run.info.run_id for run in runs]
    query = urllib.parse.urlencode(
        {
            "runs": json.dumps(ids),
            "experiments": json.dumps([experiment.experiment_id]),
            "workflowType": "machine_learning",
        }
    )
    ndcg = [run.data.metrics["student/nDCG_10"] for run in runs]
    assert ndcg[0] == first["metrics"]["student (distilled)"]["nDCG@10"]
    assert round(ndcg[0], 3) != round(ndcg[1], 3), f"tau_l=5 left the student's nDCG@10 at {ndcg}"
    text = _page_text(
        browser,
        f"{server.uri}/#/compare-runs?{query}",
        [*names, "tau_l", "student/nDCG_10"],
        shots / "compare.png",
        diff_only=True,
    )
    assert "tau_l 5.0 10.0" in text or "tau_l 10.0 5.0" in text, text[:3000]
    # The student's nDCG@10 of each run in its column, as the table rounds it (3 decimals).
    assert _metric_table(text, 2)["student/nDCG_10"] == [f"{round(v, 3):g}" for v in ndcg], text[:3000]

    # The registered student: two versions, the newest one with the alias `candidate`.
    model = "lead-msmarco-student"
    candidate = client.get_model_version_by_alias(model, "candidate")
    assert str(candidate.version) == "2"
    assert candidate.tags["teacher.architecture"] == "cb"
    assert candidate.tags["teacher.source"] == "tiny:mpnet:3:48"
    assert candidate.tags["dataset"]  # the dataset's identity
    _page_text(
        browser, f"{server.uri}/#/models/{model}", [model, "Version 2", "candidate"], shots / "model.png"
    )
    # And the exported folder in the pipeline's outputs is a sentence-transformers model.
    assert (Path(second["student_model"]) / "modules.json").is_file()
