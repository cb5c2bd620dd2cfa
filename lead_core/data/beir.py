"""Readers for the BEIR layout: ``corpus.jsonl[.gz|.bz2]``, ``queries.jsonl[.gz|.bz2]``, ``qrels/<split>.tsv[.gz|.bz2]``.

- corpus records are ``{"_id", "title", "text"}``: ``_id`` is required; ``title`` and ``text`` may
  each be empty or absent, as BEIR's own loader allows (title-only documents are common in classic
  test collections). A document with neither is kept or skipped by ingest's ``empty_documents``;
- query records are ``{"_id", "text"}`` (other keys such as ``metadata`` are ignored); the file holds
  the queries of every split;
- qrels are tab-separated with the header ``query-id<TAB>corpus-id<TAB>score``.

``beir:<name>`` names a dataset in BEIR's public archive (`archive_url`). Tables carry a ``line``
column (1-based source line) beside the schema columns; writers drop it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from lead_core.data.io import COMPRESSED_SUFFIXES, iter_line_batches, resolve
from lead_core.data.msmarco import SplitNotFoundError, check_unique
from lead_core.data.schema import SchemaError
from lead_core.data.trec import check_repeated_pairs

ARCHIVE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
QRELS_HEADER = ("query-id", "corpus-id", "score")


def archive_url(name: str) -> str:
    """The URL of BEIR dataset `name` (e.g. "scifact") in BEIR's public archive."""
    return ARCHIVE_URL.format(name=name)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, *(stem + suffix for suffix in COMPRESSED_SUFFIXES)):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem}[.gz|.bz2] (is this a BEIR dataset folder?)")


def corpus_path(folder: str | Path) -> Path:
    return _find(Path(folder), "corpus.jsonl")


def queries_path(folder: str | Path) -> Path:
    return _find(Path(folder), "queries.jsonl")


def splits(folder: str | Path) -> list[str]:
    """Split names with a qrels file in ``<folder>/qrels``."""
    qrels = Path(folder) / "qrels"
    if not qrels.is_dir():
        return []
    names = (".tsv", *(".tsv" + suffix for suffix in COMPRESSED_SUFFIXES))
    return sorted(p.name.split(".")[0] for p in qrels.iterdir() if p.name.endswith(names))


def qrels_path(folder: str | Path, split: str) -> Path:
    folder = Path(folder)
    for name in (f"{split}.tsv", *(f"{split}.tsv{suffix}" for suffix in COMPRESSED_SUFFIXES)):
        if (folder / "qrels" / name).is_file():
            return folder / "qrels" / name
    raise SplitNotFoundError(
        f"{folder / 'qrels'}: no qrels file for split {split!r} (looked for {split}.tsv[.gz|.bz2]); "
        f"splits found: {splits(folder) or 'none'}"
    )


def _json_records(
    path: Path, keys: tuple[str, ...], optional: tuple[str, ...], batch_size: int
) -> Iterator[tuple[dict[str, list[str]], np.ndarray]]:
    """Batches of JSON-lines records as columns of strings; `keys` required, `optional` default to ""."""
    for first, chunk in iter_line_batches(path, batch_size):
        columns: dict[str, list[str]] = {k: [] for k in keys + optional}
        lines: list[int] = []
        for offset, text in enumerate(chunk):
            if not text.strip():
                continue
            lineno = first + offset
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise SchemaError(f"{path}: line {lineno}: not valid JSON: {err.msg}") from None
            if not isinstance(record, dict):
                raise SchemaError(
                    f"{path}: line {lineno}: expected a JSON object, found {type(record).__name__}"
                )
            for key in keys + optional:
                value = record.get(key, None if key in keys else "")
                if value is None:
                    if key in keys:
                        raise SchemaError(
                            f"{path}: line {lineno}: missing key {key!r} (expected keys {list(keys + optional)})"
                        )
                    value = ""
                if isinstance(value, int | float) and key == "_id":
                    value = str(value)  # some BEIR exports write numeric ids as JSON numbers
                if not isinstance(value, str):
                    raise SchemaError(
                        f"{path}: line {lineno}: {key!r} must be a string, found {type(value).__name__}"
                    )
                if key in keys and not value.strip():
                    raise SchemaError(f"{path}: line {lineno}: empty {key!r}")
                columns[key].append(value)
            lines.append(lineno)
        if lines:
            yield columns, np.array(lines, dtype=np.int64)


def iter_corpus(path: str | Path, batch_size: int = 100_000) -> Iterator[pa.Table]:
    """Stream ``corpus.jsonl[.gz]`` as tables (doc_id, title, text, line) of up to `batch_size` rows.

    A missing or null ``title``/``text`` reads as "" (BEIR's GenericDataLoader reads both with
    ``dict.get`` and accepts any value); whether a document with neither is kept is ingest's call.
    """
    path = resolve(path)
    for columns, lines in _json_records(path, ("_id",), ("title", "text"), batch_size):
        yield pa.table(
            {
                "doc_id": pa.array(columns["_id"], pa.string()),
                "title": pa.array(columns["title"], pa.string()),
                "text": pa.array(columns["text"], pa.string()),
                "line": pa.array(lines),
            }
        )


def read_queries(path: str | Path) -> pa.Table:
    """``queries.jsonl[.gz]`` as a table (query_id, text, line); ids unique, texts non-empty."""
    path = resolve(path)
    ids: list[str] = []
    texts: list[str] = []
    lines: list[np.ndarray] = []
    for columns, batch_lines in _json_records(path, ("_id", "text"), (), 100_000):
        ids.extend(columns["_id"])
        texts.extend(columns["text"])
        lines.append(batch_lines)
    if not ids:
        raise SchemaError(f"{path}: no queries in file")
    table = pa.table({"query_id": ids, "text": texts, "line": np.concatenate(lines)})
    check_unique(path, table, "query_id", "query id")
    return table


def read_qrels(path: str | Path) -> pa.Table:
    """``qrels/<split>.tsv[.gz]`` (header ``query-id corpus-id score``) as (query_id, doc_id, relevance, line)."""
    path = resolve(path)
    qids: list[str] = []
    dids: list[str] = []
    rels: list[int] = []
    lines: list[int] = []
    for first, chunk in iter_line_batches(path, 100_000):
        for offset, text in enumerate(chunk):
            lineno = first + offset
            if lineno == 1:
                header = tuple(f.strip() for f in text.split("\t"))
                if header != QRELS_HEADER:
                    raise SchemaError(
                        f"{path}: line 1: expected the header {'<TAB>'.join(QRELS_HEADER)!r}, found {text[:80]!r}"
                    )
                continue
            if not text.strip():
                continue
            parts = text.split("\t")
            if len(parts) != 3:
                raise SchemaError(
                    f"{path}: line {lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                    f"found {len(parts)}: {text[:80]!r}"
                )
            qid, did, score = (p.strip() for p in parts)
            if not qid or not did:
                raise SchemaError(f"{path}: line {lineno}: empty {'query-id' if not qid else 'corpus-id'}")
            try:
                rel = int(score)
            except ValueError:
                raise SchemaError(f"{path}: line {lineno}: score {score!r} is not an integer") from None
            qids.append(qid)
            dids.append(did)
            rels.append(rel)
            lines.append(lineno)
    if not qids:
        raise SchemaError(f"{path}: no qrels in file")
    table = pa.table(
        {
            "query_id": pa.array(qids, pa.string()),
            "doc_id": pa.array(dids, pa.string()),
            "relevance": pa.array(rels, pa.int32()),
            "line": pa.array(lines, pa.int64()),
        }
    )
    check_repeated_pairs(path, table, "judged")
    return table
