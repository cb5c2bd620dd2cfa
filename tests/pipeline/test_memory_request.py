"""Every task tells its stage the memory it requested (LEAD_MEMORY_REQUEST, read by lead_core.resources)."""

from __future__ import annotations

from components.placement import RESOURCES
from tests.pipeline.test_code_fingerprint import _task_environments
from tests.pipeline.test_pipeline import lead_msmarco


def test_every_task_gets_its_memory_request(tmp_path):
    pipeline, stages = lead_msmarco.build_pipeline(fingerprint="f")
    environments = _task_environments(tmp_path, pipeline)
    requests = {env.get("LEAD_MEMORY_REQUEST") for env in environments.values()}
    assert None not in requests
    assert requests <= {memory for _, memory in RESOURCES.values()}
    by_stage = {env["LEAD_STAGE_NAME"]: env["LEAD_MEMORY_REQUEST"] for env in environments.values()}
    assert by_stage["bm25-eval"] == RESOURCES["bm25"][1]  # a task of the bm25 component
    assert by_stage["mine"] == RESOURCES["mine"][1]
