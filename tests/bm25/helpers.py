"""Corpus / queries / qrels artifacts from the real datasets, built once per test session.

Uses `lead ingest` when it is there; until then a small local reader of the two layouts.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import tempfile
from pathlib import Path

import pyarrow as pa

from lead_core.data.schema import CORPUS, QRELS, QUERIES, write_table
from lead_core.data.trec import read_qrels

_WORKDIR = Path(tempfile.mkdtemp(prefix="lead-bm25-tests-"))


def _have_ingest() -> bool:
    return importlib.util.find_spec("lead_core.data.ingest") is not None


def _write(out: Path, corpus: dict, queries: dict, qrels: pa.Table) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.parquet" for name in ("corpus", "queries", "qrels")}
    write_table(pa.table(corpus), paths["corpus"], CORPUS)
    write_table(pa.table(queries), paths["queries"], QUERIES)
    write_table(qrels, paths["qrels"], QRELS)
    return paths


@functools.cache
def scifact(datasets: Path, split: str = "test") -> dict[str, Path]:
    """SciFact corpus, the split's judged queries and its qrels as artifacts."""
    src = Path(datasets) / "scifact"
    out = _WORKDIR / f"scifact-{split}"
    qrels_rows = [line.rstrip("\n").split("\t") for line in (src / "qrels" / f"{split}.tsv").open()][1:]
    qrels = pa.table(
        {
            "query_id": [r[0] for r in qrels_rows],
            "doc_id": [r[1] for r in qrels_rows],
            "relevance": pa.array([int(r[2]) for r in qrels_rows], pa.int32()),
        }
    )
    judged = set(qrels.column("query_id").to_pylist())
    corpus: dict[str, list] = {"doc_id": [], "title": [], "text": []}
    with gzip.open(src / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            corpus["doc_id"].append(rec["_id"])
            corpus["title"].append(rec.get("title", ""))
            corpus["text"].append(rec["text"])
    queries: dict[str, list] = {"query_id": [], "text": []}
    for line in (src / "queries.jsonl").open(encoding="utf-8"):
        rec = json.loads(line)
        if rec["_id"] in judged:
            queries["query_id"].append(rec["_id"])
            queries["text"].append(rec["text"])
    return _write(out, corpus, queries, qrels)


@functools.cache
def dl_pools(datasets: Path, year: str = "dl19") -> dict[str, Path]:
    """The pooled MS MARCO passages, one TREC DL year's queries and its qrels (outside-pool qrels dropped)."""
    src = Path(datasets) / "msmarco-dl19-dl20-pools"
    out = _WORKDIR / f"dl-{year}"
    corpus: dict[str, list] = {"doc_id": [], "title": [], "text": []}
    with gzip.open(src / "collection.tsv.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            pid, text = line.rstrip("\n").split("\t", 1)
            corpus["doc_id"].append(pid)
            corpus["title"].append("")
            corpus["text"].append(text)
    queries: dict[str, list] = {"query_id": [], "text": []}
    for line in (src / f"queries.{year}.tsv").open(encoding="utf-8"):
        qid, text = line.rstrip("\n").split("\t", 1)
        queries["query_id"].append(qid)
        queries["text"].append(text)
    qrels = read_qrels(src / f"qrels.{year}.txt")
    in_corpus = pa.compute.is_in(qrels.column("doc_id"), value_set=pa.array(corpus["doc_id"]))
    return _write(out, corpus, queries, qrels.filter(in_corpus))
