"""The KFP pipeline: components compile, GPUs go exactly to the GPU stages, and a local smoke run
caches so that changing one distillation parameter re-runs distillation and its descendants only
(the smoke runs are shared with the MLflow UI test: tests/pipeline/conftest.py)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import compiler

import components
from lead_core.profiles import MSMARCO, PARAMETERS, PROFILES, profile
from pipelines import lead_msmarco
from pipelines.local_console import task_console
from tests.pipeline.compiled import executor_tasks
from tests.pipeline.smoke import run_smoke

REPO = Path(__file__).resolve().parents[2]
GPU_COMPONENTS = {"train", "distill", "encode", "search", "rerank"}


def _compile(tmp_path, pipeline_or_component, name="spec.yaml", **kwargs):
    path = tmp_path / name
    compiler.Compiler().compile(pipeline_or_component, str(path), **kwargs)
    return list(yaml.safe_load_all(path.read_text()))


@pytest.mark.parametrize("component", components.ALL, ids=lambda c: c.name)
def test_every_component_compiles_with_a_pinned_image_and_documented_inputs(tmp_path, component):
    from components._image import BASE_IMAGE_CPU, BASE_IMAGE_CUDA
    from lead_core import __version__

    (spec,) = _compile(tmp_path, component)
    (executor,) = spec["deploymentSpec"]["executors"].values()
    image = executor["container"]["image"]
    expected = BASE_IMAGE_CUDA if component.name in GPU_COMPONENTS else BASE_IMAGE_CPU
    assert image == expected and image.rsplit(":", 1)[1].startswith(__version__)
    # Nothing is pip-installed at run time: the image (or the local venv) holds lead_core and kfp.
    assert "pip install" not in " ".join(executor["container"]["command"])
    interface = component.component_spec
    undocumented = [name for name, input_ in interface.inputs.items() if not input_.description]
    assert not undocumented, f"{component.name}: inputs without a docstring entry: {undocumented}"


def _tasks_by_component(spec):
    """task name -> (component name without its -N suffix, executor label), in sub-DAGs too."""
    components_ = spec["components"]
    out = {}
    for task_name, task in executor_tasks(spec).items():
        comp_name = task["componentRef"]["name"]
        executor = components_[comp_name]["executorLabel"]
        base = comp_name.removeprefix("comp-").rsplit("-", 1)
        kind = base[0] if len(base) == 2 and base[1].isdigit() else "-".join(base)
        out[task_name] = (kind, executor)
    return out


def test_compiled_pipeline_requests_gpus_exactly_for_the_gpu_stages(tmp_path):
    pipeline, stages = lead_msmarco.build_pipeline()
    spec, platform = _compile(tmp_path, pipeline, pipeline_parameters=profile("gpu"))
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = _tasks_by_component(spec)
    assert set(tasks) == set(stages.values())
    kinds = {kind for kind, _ in tasks.values()}
    assert GPU_COMPONENTS <= kinds and {"ingest", "bm25", "mine", "index", "evaluate", "backbone"} <= kinds
    for task_name, (kind, executor) in tasks.items():
        resources = executors[executor]["container"]["resources"]
        assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"], task_name
        tolerations = k8s.get(executor, {}).get("tolerations", [])
        if kind in GPU_COMPONENTS:
            accelerator = resources["accelerator"]
            assert "accelerator_type" in accelerator["resourceType"], task_name
            assert "gpu_count" in accelerator["resourceCount"], task_name
            assert tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert "accelerator" not in resources, task_name
            assert not tolerations, task_name
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["accelerator_type"]["defaultValue"] == "nvidia.com/gpu"
    assert params["teacher_model"]["defaultValue"] == "/models/all-mpnet-base-v2"


def test_profiles_cover_exactly_the_pipeline_parameters_and_import_without_kfp():
    import inspect

    pipeline, _ = lead_msmarco.build_pipeline()
    names = list(inspect.signature(pipeline.pipeline_func).parameters)
    assert names == list(PARAMETERS)
    for name in PROFILES:
        values = profile(name)
        assert set(values) == set(MSMARCO)
        assert all(isinstance(values[key], type(MSMARCO[key])) for key in MSMARCO), name
    assert profile("msmarco")["k"] == 5 and profile("msmarco")["tau_l"] == 10.0
    assert profile("gpu", model_dir="/m/")["teacher_model"] == "/m/all-mpnet-base-v2"
    with pytest.raises(KeyError, match="known profiles"):
        profile("nope")
    with pytest.raises(KeyError, match="tau_x"):
        profile("cpu", tau_x=1.0)
    code = "import sys; sys.modules['kfp'] = None; import lead_core.profiles as p; print(len(p.PROFILES))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == str(len(PROFILES)), done.stderr


def test_set_parses_values_as_the_parameter_type():
    values = lead_msmarco.parse_sets(
        ["tau_l=5", "k=3", "joint=false", "metrics=[nDCG@10]", "train_options={a: 1}"]
    )
    assert values == {"tau_l": 5.0, "k": 3, "joint": False, "metrics": ["nDCG@10"], "train_options": {"a": 1}}
    with pytest.raises(SystemExit, match="tau_x"):
        lead_msmarco.parse_sets(["tau_x=1"])
    with pytest.raises(SystemExit):
        lead_msmarco.parse_sets(["k=three"])


def test_force_disables_the_cache_of_that_stage_only(tmp_path):
    pipeline, stages = lead_msmarco.build_pipeline(force={"mine"})
    (spec, _) = _compile(tmp_path, pipeline)
    tasks = executor_tasks(spec)
    uncached = {name for name, task in tasks.items() if not task.get("cachingOptions", {}).get("enableCache")}
    # ... besides the source identities, which run every time (tests/pipeline/test_cache_follows_data.py).
    assert uncached == {stages["mine"]} | {t for s, t in stages.items() if s.startswith("identity-")}


def _descendants(spec, root_task):
    """Tasks that depend on `root_task`, directly or not (from the compiled DAG)."""
    children: dict[str, set[str]] = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        for parent in task.get("dependentTasks", []):
            children.setdefault(parent, set()).add(name)
    seen, todo = set(), [root_task]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


@pytest.mark.slow
def test_smoke_profile_runs_locally_a_changed_tau_l_reruns_only_distill_and_after_force_reruns_one(
    tmp_path, smoke_runs
):
    workdir, dataset, first = smoke_runs.workdir, smoke_runs.dataset, smoke_runs.first
    assert set(first["metrics"]) == set(lead_msmarco.SYSTEMS.values())
    for system, values in first["metrics"].items():
        assert set(values) == {"nDCG@10", "RR@10", "R@100"}, system
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values.values()), (system, values)
    # BM25 on real SciFact text finds judged documents; random tiny models are far worse.
    assert first["metrics"]["BM25"]["nDCG@10"] > 0.3
    assert not first["cached"], first["cached"]  # a fresh workdir: everything executed
    # ... but the branch of the negatives not taken (BM25 retrieval, not the official triples)
    assert first["skipped"] == ["bm25-train-triples", "identity-triples"], first["skipped"]
    assert first["parent_run_id"]  # tracked (on the fixture's mlflow server)

    second = smoke_runs.second  # the same with --set tau_l=5
    pipeline, stages = lead_msmarco.build_pipeline()
    (spec, _) = _compile(tmp_path, pipeline)
    by_task = {task: stage for stage, task in stages.items()}
    expected = {"distill"} | {by_task[t] for t in _descendants(spec, stages["distill"])}
    assert expected == {
        "distill",
        "student-encode",
        "student-index",
        "student-search",
        "evaluate-student",
        "export-student",
        "teacher-distilled-rerank",
        "evaluate-teacher-distilled",
    }
    # The source identities run every time (cheap, never cached); unchanged, they keep ingest cached.
    identities = {"identity-dataset", "identity-phase1", "identity-teacher", "identity-student"}
    assert set(second["executed"]) == expected | identities
    # Upstream results come from the cache: identical values.
    for system in ("BM25", "phase-1 DE", "teacher (warm, rerank)", "student (warm-up only)"):
        assert second["metrics"][system] == first["metrics"][system]

    # --force re-runs one unchanged stage (here a leaf, so nothing else).
    third = run_smoke(workdir, dataset, smoke_runs.server.uri, "--set", "tau_l=5", "--force", "evaluate-bm25")
    assert set(third["executed"]) == {"evaluate-bm25"} | identities
    assert third["metrics"] == second["metrics"]
    # The cache following edited data: tests/pipeline/test_cache_follows_data.py (a small pipeline of the
    # same components; a fourth full run here cost ~9 min of the suite).


def test_a_failed_task_is_never_served_from_the_local_cache(tmp_path):
    """What `--local` relies on: kfp.local caches successful tasks only, so a stage that failed (or
    was killed) executes again on the next run, with the same inputs."""
    from kfp import dsl, local
    from kfp.dsl import Dataset, Output

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def flaky(marker: str, out: Output[Dataset]):
        import os  # the component runs from its own source: its imports are inside it

        if not os.path.exists(marker):
            raise RuntimeError("simulated failure")
        with open(out.path, "w") as f:
            f.write("done")

    @dsl.pipeline(name="flaky")
    def once(marker: str):
        flaky(marker=marker)

    marker, root = tmp_path / "marker", tmp_path / "root"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=True,
        cache_root=str(tmp_path / "cache"),
    )
    with pytest.raises(RuntimeError):
        once(marker=str(marker))
    marker.touch()
    once(marker=str(marker))  # executes: the failure was not cached
    runs = sorted(root.iterdir())
    assert len(runs) == 2 and (runs[1] / "flaky" / "out").read_text() == "done"
    with task_console(tmp_path / "logs") as third:
        once(marker=str(marker))  # now a cache hit
    assert third.outcomes == {"flaky": "cached"}


def test_metric_table_columns_follow_the_metrics_parameter_whatever_order_kfp_returns():
    from types import SimpleNamespace

    shuffled = {"RR@10": 0.5, "R@100": 0.9, "nDCG@10": 0.6, "AP@1000": 0.3}
    outputs = {name: SimpleNamespace(metadata=dict(shuffled)) for name in lead_msmarco.SYSTEMS}
    rows = lead_msmarco.metric_rows(outputs, ["nDCG@10", "RR@10", "R@100"])
    assert list(rows) == list(lead_msmarco.SYSTEMS.values())
    for values in rows.values():
        assert list(values) == ["nDCG@10", "RR@10", "R@100", "AP@1000"]  # unlisted ones last
        assert values == shuffled
