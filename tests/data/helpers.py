"""Tiny hand-written datasets in the MS MARCO and BEIR layouts, for the ingest tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

COLLECTION = [("0", "the cat sat on the mat"), ("1", "dogs bark at night"), ("2", "a cat chases a mouse")]
QUERIES_DEV = [("10", "where do cats sit"), ("11", "why do dogs bark"), ("12", "an unjudged query")]
QRELS_DEV = [("10", "0", 1), ("10", "2", 0), ("11", "1", 2)]


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def msmarco_dir(root: Path, collection=None, queries=None, qrels=None, gz: bool = False) -> Path:
    """collection.tsv[.gz], queries.dev.small.tsv and qrels.dev.small.tsv (MS MARCO 4-column qrels)."""
    root.mkdir(parents=True, exist_ok=True)
    collection = COLLECTION if collection is None else collection
    queries = QUERIES_DEV if queries is None else queries
    qrels = QRELS_DEV if qrels is None else qrels
    write_lines(
        root / ("collection.tsv.gz" if gz else "collection.tsv"), [f"{p}\t{t}" for p, t in collection], gz
    )
    write_lines(root / "queries.dev.small.tsv", [f"{q}\t{t}" for q, t in queries])
    write_lines(root / "qrels.dev.small.tsv", [f"{q}\t0\t{d}\t{r}" for q, d, r in qrels])
    return root


def beir_dir(root: Path, corpus=None, queries=None, qrels=None, gz: bool = False) -> Path:
    """corpus.jsonl[.gz], queries.jsonl and qrels/test.tsv."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = (
        [
            {"_id": "d1", "title": "Cats", "text": "the cat sat"},
            {"_id": "d2", "title": "", "text": "dogs bark"},
        ]
        if corpus is None
        else corpus
    )
    queries = [{"_id": "q1", "text": "cat"}, {"_id": "q2", "text": "dog"}] if queries is None else queries
    qrels = [("q1", "d1", 1)] if qrels is None else qrels
    write_lines(
        root / ("corpus.jsonl.gz" if gz else "corpus.jsonl"),
        [r if isinstance(r, str) else json.dumps(r) for r in corpus],
        gz,
    )
    write_lines(root / "queries.jsonl", [r if isinstance(r, str) else json.dumps(r) for r in queries])
    write_lines(
        root / "qrels" / "test.tsv", ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    )
    return root
