"""The cache follows the data, on a cluster as in --local: in both compiled pipelines every stage that
reads a source named by a pipeline parameter (dataset, backbones) takes that source's identity,
resolved by a task that never comes from the cache; every other task stays cacheable. Also: the
summary of a local run counts only that run's tasks (compile and folder checks only: cheap)."""

from pathlib import Path

import pytest
import yaml
from kfp import compiler

from pipelines import lead_msmarco, lead_quality
from tests.pipeline.compiled import executor_tasks

REPO = Path(__file__).resolve().parents[2]
# Pipeline parameters that name data outside the artifacts (read by the stage they feed).
SOURCE_PARAMETERS = {"dataset_uri", "phase1_model", "teacher_model", "student_model", "triples_uri"}
# The input through which each reading component takes its source's identity.
IDENTITY_INPUT = {
    "ingest-corpus": "dataset_identity",
    "ingest": "dataset_identity",
    "backbone": "source_identity",
    "bm25-triples": "triples_identity",
}
# Components whose source is a dataset file or folder (the others read backbone sources).
DATASET_READERS = {"ingest-corpus", "ingest", "bm25-triples"}
# (component, input) pairs that take a source's name as a label only and never read it.
LABELS = {("export", "teacher_source")}


def _component(task: dict) -> str:
    """comp-ingest-2 -> ingest."""
    name = task["componentRef"]["name"].removeprefix("comp-")
    base, _, suffix = name.rpartition("-")
    return base if suffix.isdigit() else name


def _compiled_tasks(tmp_path, pipeline) -> dict[str, dict]:
    path = tmp_path / "spec.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    return executor_tasks(spec)


def _pipeline_parameter(spec: dict) -> str | None:
    """The pipeline parameter an input reads (inside a condition or loop it is a pipeline channel)."""
    name = spec.get("componentInputParameter")
    return name.removeprefix("pipelinechannel--") if name else None


def _parameter_inputs(task: dict) -> dict[str, dict]:
    return task.get("inputs", {}).get("parameters", {})


PIPELINES = {
    "lead_msmarco": lambda: lead_msmarco.build_pipeline()[0],
    "lead_quality": lambda: lead_quality.build_pipeline(lead_quality.loop_items("smoke", ["rd"], [13])),
}


@pytest.mark.parametrize("name", PIPELINES)
def test_every_source_reaches_its_stage_with_an_uncached_identity(tmp_path, name):
    tasks = _compiled_tasks(tmp_path, PIPELINES[name]())
    identities = {t: task for t, task in tasks.items() if _component(task) == "identity"}
    # The identity tasks never come from the cache; every other task does (nothing forced here).
    for task_name, task in tasks.items():
        cached = bool(task.get("cachingOptions", {}).get("enableCache"))
        assert cached == (task_name not in identities), task_name

    readers = 0
    for task_name, task in tasks.items():
        params = _parameter_inputs(task)
        sources = {
            arg: _pipeline_parameter(spec)
            for arg, spec in params.items()
            if _pipeline_parameter(spec) in SOURCE_PARAMETERS and (_component(task), arg) not in LABELS
        }
        if not sources or task_name in identities:
            continue
        readers += 1
        component = _component(task)
        assert component in IDENTITY_INPUT, f"{task_name} reads {sources} without an identity input"
        (source,) = sources.values()
        wired = params[IDENTITY_INPUT[component]]["taskOutputParameter"]
        producer = tasks[wired["producerTask"]]
        assert wired["producerTask"] in identities, task_name
        # ... and that identity task resolves the same pipeline parameter, with the right kind.
        producer_inputs = _parameter_inputs(producer)
        assert _pipeline_parameter(producer_inputs["source"]) == source, task_name
        kind = producer_inputs["kind"]["runtimeValue"]["constant"]
        assert kind == ("dataset" if component in DATASET_READERS else "backbone"), task_name
    # ingests (the corpus, two splits) + backbones (+ the official triples, read when negatives=triples)
    expected = {"lead_msmarco": 3 + 3 + 1, "lead_quality": 3 + 2}[name]
    assert readers == expected


def test_the_run_folder_is_this_runs_only(tmp_path):
    """A fully cached rerun may create no run folder: an older run's folder is not this run's."""
    root = tmp_path / "pipeline_root"
    older = root / f"{lead_msmarco.PIPELINE_NAME}-2026-01-01-00-00-00-000000"
    (older / "ingest").mkdir(parents=True)
    before = {p.name for p in root.iterdir()}
    assert lead_msmarco.new_run_dir(root, before) is None
    # A stray folder of something else appearing meanwhile is not a run either.
    (root / "notes").mkdir()
    assert lead_msmarco.new_run_dir(root, before) is None
    this_run = root / f"{lead_msmarco.PIPELINE_NAME}-2026-01-02-00-00-00-000000"
    (this_run / "identity").mkdir(parents=True)
    assert lead_msmarco.new_run_dir(root, before) == this_run


def test_kfp_local_reruns_ingest_and_after_when_the_data_changes_in_place(tmp_path, scifact_dir, monkeypatch):
    """The real identity, ingest, bm25 and evaluate components wired as in the pipelines, through
    kfp.local with caching on: an unchanged dataset is served from the cache (the identity task runs
    every time); the qrels edited in place (same path) re-run ingest and everything after it, and the
    metric is computed over the new qrels. A small pipeline instead of a third full smoke run: the
    compiled-spec test above shows the full pipelines use the same wiring."""
    from kfp import dsl, local
    from kfp.dsl import Metrics

    import components as c
    from components.placement import TaskPlacer
    from tests.pipeline.smoke import scifact_subset

    dataset = scifact_subset(scifact_dir, tmp_path / "scifact-subset", train_queries=5, test_queries=30)
    stages: dict[str, str] = {}

    @dsl.pipeline(name="data-follows")
    def small(dataset_uri: str) -> Metrics:
        place = TaskPlacer("nvidia.com/gpu", 0, fingerprint="test-data-follows", stages=stages)
        identity = place.identity("identity-dataset", dataset_uri, "dataset")
        corpus = place(
            "ingest-corpus", c.ingest_corpus(source=dataset_uri, layout="beir", dataset_identity=identity)
        ).outputs["corpus"]
        data = place(
            "ingest-eval",
            c.ingest(
                source=dataset_uri,
                layout="beir",
                split="test",
                drop_unknown_qrels=False,
                dataset_identity=identity,
                corpus=corpus,
            ),
        ).outputs["data"]
        run = place(
            "bm25", c.bm25(corpus=corpus, data=data, k=100, negatives="bm25", num_negatives=2, seed=1)
        ).outputs["run"]
        scored = place(
            "evaluate-bm25",
            c.evaluate(run=run, data=data, name="BM25", measures=["nDCG@10"], relevance_level=1),
        )
        return scored.outputs["metrics"]

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    root = tmp_path / "root"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=True,
        cache_root=str(tmp_path / "cache"),
        raise_on_error=True,
    )

    def run_once() -> tuple[set[str], float]:
        before = set(root.iterdir()) if root.exists() else set()
        task = small(dataset_uri=str(dataset))
        new = sorted(set(root.iterdir()) - before)
        executed = {p.name for p in new[0].iterdir() if p.is_dir()} if new else set()
        return executed, task.output.metadata["nDCG@10"]

    first, ndcg = run_once()
    assert {"ingest-corpus", "ingest", "bm25", "evaluate", "identity"} <= first
    again, ndcg_again = run_once()
    assert again == {"identity"} and ndcg_again == ndcg  # unchanged data: all but the identity cached
    qrels = dataset / "qrels" / "test.tsv"
    lines = qrels.read_text().splitlines(keepends=True)
    qrels.write_text("".join(lines[: len(lines) // 2]))
    edited, ndcg_edited = run_once()
    assert {"identity", "ingest", "bm25", "evaluate"} <= edited
    # only the qrels changed, but the identity covers the whole dataset: the corpus is ingested again
    assert "ingest-corpus" in edited
    assert ndcg_edited != ndcg  # computed over the new qrels, not served from the cache
