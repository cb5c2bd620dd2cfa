"""pipelines/lead_quality.py compiles: one ParallelFor over (method, seed) whose distill tasks ask
for a GPU, and a report task that collects every run (compile only: cheap)."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from kfp import compiler

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "pipelines" / "lead_quality.py"


def _module():
    spec = importlib.util.spec_from_file_location("lead_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lead_quality = _module()


def test_loop_items_give_every_method_the_same_seeds():
    # seed by seed: a stopped local run has whole seeds
    items = lead_quality.loop_items("cpu", ["rd", "lead", "lead-frozen"], [13, 14])
    assert [(i["row"], i["params"]["seed"]) for i in items] == [
        ("RD", 13),
        ("LEAD", 13),
        ("LEAD w/o joint training", 13),
        ("RD", 14),
        ("LEAD", 14),
        ("LEAD w/o joint training", 14),
    ]
    assert items[2]["params"]["joint"] is False and items[1]["params"]["method"] == "lead"
    # the distillation settings are the comparison's: the cpu profile with COMPARISON's overrides
    assert {items[0]["params"][k] for k in ("max_steps", "lr", "batch_size")} == {50, 5e-5, 8}
    with pytest.raises(ValueError, match="zero-shot"):
        lead_quality.loop_items("cpu", ["zero-shot"], [13])
    with pytest.raises(ValueError, match="unknown"):
        lead_quality.loop_items("cpu", ["nope"], [13])


def test_quality_pipeline_compiles_with_a_parallel_for_and_a_collecting_report(tmp_path):
    items = lead_quality.loop_items("smoke", ["rd", "lead"], [13, 14])
    out = tmp_path / "quality.yaml"
    compiler.Compiler().compile(lead_quality.build_pipeline(items), str(out))
    spec = list(yaml.safe_load_all(out.read_text()))[0]
    root = spec["root"]["dag"]["tasks"]
    loops = [t for t in root.values() if "parameterIterator" in t]
    assert len(loops) == 1
    raw = json.loads(loops[0]["parameterIterator"]["items"]["raw"])
    assert [p["method"] for p in raw] == ["rd", "lead", "rd", "lead"]
    assert [p["seed"] for p in raw] == [13, 13, 14, 14]
    loop_dag = spec["components"][loops[0]["componentRef"]["name"]]["dag"]["tasks"]
    inside = {t["componentRef"]["name"].removeprefix("comp-").split("-")[0] for t in loop_dag.values()}
    assert inside == {"distill", "encode", "index", "search"}
    report = root["report"]
    runs = report["inputs"]["artifacts"]["runs"]
    assert runs["taskOutputArtifact"]["producerTask"] == loops[0]["taskInfo"]["name"]
    assert report["inputs"]["parameters"]["names"]["runtimeValue"]["constant"] == ["RD", "LEAD", "RD", "LEAD"]
    assert report["inputs"]["parameters"]["seeds"]["runtimeValue"]["constant"] == [13, 13, 14, 14]
    logs = report["inputs"]["artifacts"]["logs"]["taskOutputArtifact"]
    assert logs["producerTask"] == loops[0]["taskInfo"]["name"]
    # the rows outside the loop: the untrained student, the warm student, the warm teacher
    fixed = {
        key: root[report["inputs"]["artifacts"][key]["taskOutputArtifact"]["producerTask"]]["taskInfo"][
            "name"
        ]
        for key in ("zero_shot", "warmup", "teacher")
    }
    assert fixed == {
        "zero_shot": "student-untrained-search",
        "warmup": "student-warm-search",
        "teacher": "teacher-rerank",
    }
    executors = spec["deploymentSpec"]["executors"]
    gpu = {name for name, e in executors.items() if "accelerator" in e["container"].get("resources", {})}
    assert any("distill" in name for name in gpu) and not any(
        "report" in name or "evaluate" in name for name in gpu
    )
