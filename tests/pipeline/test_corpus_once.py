"""The corpus once: in both compiled pipelines one task writes corpus.parquet, the splits' ingests
write only queries and qrels, and every stage that reads passages takes that one corpus artifact,
for the train split's stages and the evaluation split's alike (compile only: cheap)."""

from __future__ import annotations

import pytest
import yaml
from kfp import compiler

from pipelines import lead_msmarco
from tests.pipeline.compiled import executor_tasks
from tests.pipeline.test_cache_follows_data import PIPELINES


def _spec(tmp_path, pipeline) -> dict:
    path = tmp_path / "spec.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return next(yaml.safe_load_all(path.read_text()))


def _code(spec: dict, task: dict) -> str:
    """The command and arguments a task's container runs (a lightweight component's source)."""
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    container = spec["deploymentSpec"]["executors"][label]["container"]
    return "\n".join(container.get("command", []) + container.get("args", []))


def _producer(task: dict, name: str) -> tuple[str, str] | None:
    """(producer task, output key) of the input artifact `name`; inside a condition or loop the
    input is a channel `pipelinechannel--<task>-<key>`, returned as (channel, "")."""
    wired = task.get("inputs", {}).get("artifacts", {}).get(name)
    if wired is None:
        return None
    if "taskOutputArtifact" in wired:
        return wired["taskOutputArtifact"]["producerTask"], wired["taskOutputArtifact"]["outputArtifactKey"]
    return wired["componentInputArtifact"], ""


@pytest.mark.parametrize("name", PIPELINES)
def test_one_task_writes_the_corpus_and_both_splits_stages_read_it(tmp_path, name):
    spec = _spec(tmp_path, PIPELINES[name]())
    tasks = executor_tasks(spec)
    code = {task_name: _code(spec, task) for task_name, task in tasks.items()}
    ingests = {t for t, text in code.items() if "from lead_core.ingest import" in text}
    # exactly one ingest writes the corpus; the others (one per split) only queries and qrels
    writers = [t for t in ingests if 'what="corpus"' in code[t]]
    assert len(writers) == 1, writers
    (writer,) = writers
    splits = ingests - {writer}
    assert len(splits) == 2 and all('what="split"' in code[t] for t in splits), splits
    assert all(_producer(tasks[t], "corpus") == (writer, "corpus") for t in splits)
    assert all(what not in text for text in code.values() for what in ('what="all"', "what='all'"))

    # every stage reading corpus.parquet takes the writer's corpus, directly or through a channel
    channel = f"pipelinechannel--{writer}-corpus"
    readers = {t for t, text in code.items() if '"/corpus.parquet"' in text and t not in ingests}
    assert readers, "no stage reads the corpus"
    for task_name in readers:
        assert _producer(tasks[task_name], "corpus") in ((writer, "corpus"), (channel, "")), task_name
    # ... among them stages of the train split and of the evaluation split
    split_of = {}
    for task_name in readers:
        data = _producer(tasks[task_name], "data")
        if data is not None:
            split = data[0].removeprefix("pipelinechannel--").removesuffix("-data")
            split_of.setdefault(split, set()).add(task_name)
    assert set(split_of) == splits, split_of


def test_msmarco_readers_of_the_corpus_by_stage(tmp_path):
    """By stage name: the corpus is written by ingest-corpus alone and read by every BM25 task of
    both splits, every training run, every encode and both reranks."""
    spec = _spec(tmp_path, lead_msmarco.build_pipeline()[0])
    tasks = executor_tasks(spec)
    stages = lead_msmarco.STAGES
    corpus_producers = {
        stage
        for stage, task_name in stages.items()
        if task_name in tasks
        and "corpus"
        in spec["components"][tasks[task_name]["componentRef"]["name"]]
        .get("outputDefinitions", {})
        .get("artifacts", {})
    }
    assert corpus_producers == {"ingest-corpus"}
    takes_corpus = {
        stage
        for stage, task_name in stages.items()
        if task_name in tasks and _producer(tasks[task_name], "corpus")
    }
    assert takes_corpus == {
        "ingest-train",
        "ingest-eval",
        "bm25-train-triples",
        "bm25-train-index",
        "bm25-train-shard",
        "bm25-train-merge",
        "bm25-eval",
        "phase1",
        "teacher-warmup",
        "student-warmup",
        "distill",
        "phase1-encode",
        "student-warm-encode",
        "student-encode",
        "teacher-rerank",
        "teacher-distilled-rerank",
    }
