"""Issue 4 end to end, on CPU with tiny random models and a SciFact subset.

ingest -> BM25 groups -> train phase-1 DE -> encode/index/search -> mine -> train CB teacher and
DE student -> distill with LEAD -> encode/index/search with the student -> evaluate; plus the
teacher's own evaluation by reranking the phase-1 DE's run (how the paper evaluates CB/CE).
Each stage is called through its `run(Config(...))`, as the CLI and the pipeline components do.
"""

from __future__ import annotations

import math
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lead_core import bm25, encode, index, ingest, mine, rerank, search, train
from lead_core.data.schema import CORPUS, GROUPS, QRELS, QUERIES, RUN, read_metadata, read_table, write_table
from lead_core.evaluate import evaluate_run
from lead_core.models import read_model_config

NUM_TRAIN, NUM_TEST, NUM_DOCS = 40, 20, 400


def _subset(full, split_dir, out_dir, num_queries, extra_doc_ids=()):
    """The first `num_queries` queries of a split, their qrels, and the corpus rows named."""
    queries = read_table(split_dir / "queries.parquet", QUERIES).slice(0, num_queries)
    qrels = read_table(split_dir / "qrels.parquet", QRELS)
    qrels = qrels.filter(pc.is_in(qrels.column("query_id"), value_set=queries.column("query_id")))
    out_dir.mkdir()
    write_table(queries, out_dir / "queries.parquet", QUERIES)
    write_table(qrels, out_dir / "qrels.parquet", QRELS)
    return set(qrels.column("doc_id").to_pylist())


def _check(path, schema, rows=None):
    meta = read_metadata(path)
    assert meta["schema"] == schema.name, path
    table = read_table(path, schema)
    if rows is not None:
        assert table.num_rows == rows, (path, table.num_rows, rows)
    return table


@pytest.mark.slow
def test_end_to_end_on_a_scifact_subset(tmp_path, scifact_dir, tiny_bert, tiny_mpnet):
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name):
        timings[name] = time.perf_counter() - started

    # ingest (BEIR layout), then a subset: 40 train and 20 test queries, 400 documents holding
    # every positive of those queries plus the first documents of the corpus.
    for split in ("train", "test"):
        ingest.run(
            ingest.Config(
                source=str(scifact_dir), layout="beir", split=split, out=str(tmp_path / f"full-{split}")
            )
        )
    full_corpus = read_table(tmp_path / "full-train" / "corpus.parquet", CORPUS)
    assert full_corpus.num_rows == 5183
    positives = _subset(full_corpus, tmp_path / "full-train", tmp_path / "train", NUM_TRAIN)
    positives |= _subset(full_corpus, tmp_path / "full-test", tmp_path / "test", NUM_TEST)
    filler = [d for d in full_corpus.column("doc_id").to_pylist() if d not in positives][
        : NUM_DOCS - len(positives)
    ]
    corpus = full_corpus.filter(
        pc.is_in(full_corpus.column("doc_id"), value_set=pa.array(sorted(positives) + filler))
    )
    corpus_path = write_table(corpus, tmp_path / "corpus.parquet", CORPUS)
    assert corpus.num_rows == NUM_DOCS
    train_q, train_qrels = tmp_path / "train" / "queries.parquet", tmp_path / "train" / "qrels.parquet"
    test_q, test_qrels = tmp_path / "test" / "queries.parquet", tmp_path / "test" / "qrels.parquet"
    step("ingest")

    # BM25 groups for phase 1.
    bm25.run(
        bm25.Config(
            corpus=str(corpus_path),
            queries=str(train_q),
            qrels=str(train_qrels),
            out_run=str(tmp_path / "bm25.parquet"),
            out_groups=str(tmp_path / "bm25-groups.parquet"),
            k=50,
            num_negatives=10,
        )
    )
    bm25_groups = _check(tmp_path / "bm25-groups.parquet", GROUPS, NUM_TRAIN)
    assert set(pc.unique(pc.list_flatten(bm25_groups.column("negative_ids"))).to_pylist()) <= set(
        corpus.column("doc_id").to_pylist()
    )
    step("bm25")

    common = dict(
        corpus=str(corpus_path),
        queries=str(train_q),
        batch_size=4,
        num_negatives=3,
        max_steps=4,
        passage_max_length=64,
        query_max_length=24,
        progress=False,
        num_workers=0,
    )

    # Phase 1: a dual encoder on BM25 negatives.
    train.run(
        train.Config(
            groups=str(tmp_path / "bm25-groups.parquet"),
            out=str(tmp_path / "de1"),
            model=str(tiny_bert),
            architecture="de",
            method="none",
            lr=1e-4,
            **common,
        )
    )
    assert read_model_config(tmp_path / "de1").architecture == "de"
    step("train phase-1 DE")

    def retrieve(model, queries, name, k):
        encode.run(
            encode.Config(
                model=str(model), input=str(corpus_path), out=str(tmp_path / f"{name}-emb"), device="cpu"
            )
        )
        index.run(index.Config(embeddings=str(tmp_path / f"{name}-emb"), out=str(tmp_path / f"{name}-index")))
        search.run(
            search.Config(
                index=str(tmp_path / f"{name}-index"),
                model=str(model),
                queries=str(queries),
                out_run=str(tmp_path / f"{name}-run.parquet"),
                out_trec=str(tmp_path / f"{name}.trec"),
                k=k,
                device="cpu",
            )
        )
        ids, vectors = encode.read_embeddings(tmp_path / f"{name}-emb")
        assert len(ids) == NUM_DOCS and vectors.shape == (NUM_DOCS, 32)
        num_queries = read_table(queries, QUERIES).num_rows
        return _check(tmp_path / f"{name}-run.parquet", RUN, num_queries * k)

    # Encode/index/search the training queries with the phase-1 DE, then mine hard negatives.
    retrieve(tmp_path / "de1", train_q, "de1", k=100)
    step("encode/index/search (phase 1)")
    counts = mine.run(
        mine.Config(
            run=str(tmp_path / "de1-run.parquet"),
            qrels=str(train_qrels),
            out_groups=str(tmp_path / "mined.parquet"),
            depth=100,
            skip=0,
            num_negatives=20,
            seed=1,
        )
    )
    mined = _check(tmp_path / "mined.parquet", GROUPS, NUM_TRAIN)
    assert counts["groups"] == NUM_TRAIN and counts["queries_without_run"] == 0
    judged = set(
        zip(
            read_table(train_qrels, QRELS).column("query_id").to_pylist(),
            read_table(train_qrels, QRELS).column("doc_id").to_pylist(),
        )
    )
    for row in mined.to_pylist():
        assert len(row["negative_ids"]) == 20 and row["negative_source"] == "mined:100:0"
        assert not any((row["query_id"], d) in judged for d in row["negative_ids"])
    step("mine")

    # Warm-ups on the mined negatives: a ColBERT teacher (MPNet-style tokenizer) and a DE student.
    mined_groups = str(tmp_path / "mined.parquet")
    train.run(
        train.Config(
            groups=mined_groups,
            out=str(tmp_path / "teacher"),
            model=str(tiny_mpnet),
            architecture="cb",
            method="none",
            **common,
        )
    )
    train.run(
        train.Config(
            groups=mined_groups,
            out=str(tmp_path / "student"),
            model=str(tiny_bert),
            architecture="de",
            method="none",
            **common,
        )
    )
    step("warm-ups")

    # LEAD distillation (joint: the teacher is saved too).
    summary = train.run(
        train.Config(
            groups=mined_groups,
            out=str(tmp_path / "lead-student"),
            model=str(tmp_path / "student"),
            teacher=str(tmp_path / "teacher"),
            out_teacher=str(tmp_path / "lead-teacher"),
            method="lead",
            k=2,
            **common,
        )
    )
    assert read_model_config(tmp_path / "lead-student").architecture == "de"
    assert read_model_config(tmp_path / "lead-teacher").architecture == "cb"
    assert summary
    step("LEAD")

    # The student retrieves for the test queries; the teacher reranks the phase-1 DE's test run.
    student_run = retrieve(tmp_path / "lead-student", test_q, "student", k=100)
    retrieve(tmp_path / "de1", test_q, "de1-test", k=100)
    rerank.run(
        rerank.Config(
            model=str(tmp_path / "lead-teacher"),
            run=str(tmp_path / "de1-test-run.parquet"),
            corpus=str(corpus_path),
            queries=str(test_q),
            out_run=str(tmp_path / "teacher-run.parquet"),
            k=20,
            batch_size=64,
            device="cpu",
        )
    )
    # The top 20 re-scored, the phase-1 run's ranks 21-100 kept below them.
    teacher_run = _check(tmp_path / "teacher-run.parquet", RUN, NUM_TEST * 100)
    step("search + rerank (test)")

    test_qrels_table = read_table(test_qrels, QRELS)
    for name, run_table in (("student", student_run), ("teacher (rerank)", teacher_run)):
        result = evaluate_run(run_table, test_qrels_table)
        assert result.num_queries == NUM_TEST
        assert set(result.aggregate) >= {"nDCG@10", "RR@10"}, result.aggregate
        for measure, value in result.aggregate.items():
            assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0, (
                name,
                measure,
                value,
            )
        print(f"{name}: " + ", ".join(f"{m} {v:.4f}" for m, v in result.aggregate.items()))
    step("evaluate")
    print("end-to-end seconds at the end of each step:", {k: round(v, 1) for k, v in timings.items()})
