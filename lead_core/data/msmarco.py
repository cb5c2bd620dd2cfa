"""Readers for the MS MARCO passage layout (and the TREC Deep Learning files that share it).

A dataset folder holds

- ``collection.tsv[.gz|.bz2]``: ``pid<TAB>passage``, one passage a line (8.8M lines in the real one);
  an empty passage is read as an empty document (ingest's ``empty_documents`` keeps or skips it);
- ``queries.<split>.tsv[.gz]``: ``qid<TAB>query`` (e.g. ``queries.train.tsv``, ``queries.dev.small.tsv``,
  ``queries.dl19.tsv``);
- ``qrels.<split>.(tsv|txt)[.gz]``: ``qid <iter> pid grade`` (MS MARCO's ``qid 0 pid 1`` and TREC's
  ``qid Q0 pid grade`` are the same four columns);
- optionally the official training/reranking files: ``qidpidtriples.<split>...tsv[.gz]``
  (``qid<TAB>pos_pid<TAB>neg_pid``) and ``top1000.<split>[.tsv][.gz]`` (``qid<TAB>pid<TAB>query<TAB>passage``).

A split name matches the file of that exact name first, then its ``.small`` variant, so split
``dev`` finds ``queries.dev.small.tsv`` when there is no ``queries.dev.tsv``. Every reader names the
file and line of a malformed line. Tables carry a ``line`` column (1-based source line) beside the
schema columns so that later checks (unknown ids) can name the line too; writers drop it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lead_core.data.io import COMPRESSED_SUFFIXES, iter_line_batches, resolve
from lead_core.data.schema import SchemaError
from lead_core.data.trec import check_repeated_pairs, read_qrels_text

COLLECTION_NAMES = ("collection.tsv", *("collection.tsv" + suffix for suffix in COMPRESSED_SUFFIXES))
_SPLIT_FILE = re.compile(
    r"^(?P<kind>queries|qrels|top1000|qidpidtriples|triples)\.(?P<split>.+?)(?:\.tsv|\.txt)?(?:\.gz|\.bz2)?$"
)
_KINDS = ("queries", "qrels", "top1000", "qidpidtriples", "triples")


class SplitNotFoundError(FileNotFoundError):
    """A split's file is missing; the message lists the splits that the folder does have."""


def _split_files(folder: Path) -> dict[tuple[str, str], list[Path]]:
    """(kind, split name as written in the file name) -> files, e.g. ("queries", "dev.small")."""
    found: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(folder.iterdir()):
        match = _SPLIT_FILE.match(path.name)
        if match and path.is_file():
            found.setdefault((match["kind"], match["split"]), []).append(path)
    return found


def splits(folder: str | Path, kind: str = "queries") -> list[str]:
    """The split names that `folder` has a `kind` file for (``dev.small`` also answers to ``dev``)."""
    names = set()
    for k, split in _split_files(Path(folder)):
        if k == kind:
            names.add(split)
            if split.endswith(".small"):
                names.add(split.removesuffix(".small"))
    return sorted(names)


def find_split_file(folder: str | Path, kind: str, split: str) -> Path:
    """The `kind` file ("queries", "qrels", "top1000", "qidpidtriples") of `split` in `folder`.

    Tries ``<kind>.<split>``, then ``<kind>.<split>.small``, then (for triples, whose official
    names carry more parts, e.g. ``qidpidtriples.train.full.2.tsv.gz``) ``<kind>.<split>.*``.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown MS MARCO file kind {kind!r}; expected one of {list(_KINDS)}")
    folder = Path(folder)
    files = _split_files(folder)
    candidates = files.get((kind, split)) or files.get((kind, f"{split}.small"))
    if not candidates and kind in ("qidpidtriples", "triples"):
        prefixed = sorted(
            (s, p) for (k, s), ps in files.items() if k == kind and s.startswith(f"{split}.") for p in ps
        )
        candidates = [p for _, p in prefixed]
    if not candidates:
        raise SplitNotFoundError(
            f"{folder}: no {kind} file for split {split!r} (looked for {kind}.{split}[.small].tsv|.txt[.gz]); "
            f"splits with a {kind} file: {splits(folder, kind) or 'none'}"
        )
    if len(candidates) > 1:
        raise SchemaError(
            f"{folder}: several {kind} files for split {split!r}: {[p.name for p in candidates]}; keep one"
        )
    return candidates[0]


def collection_path(folder: str | Path) -> Path:
    """``collection.tsv`` or ``collection.tsv.gz`` in `folder`."""
    folder = Path(folder)
    for name in COLLECTION_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no MS MARCO collection (expected one of {list(COLLECTION_NAMES)})")


def _tsv_batches(
    path: Path, fields: tuple[str, ...], batch_size: int
) -> Iterator[tuple[list[tuple[str, ...]], np.ndarray]]:
    """Rows of a tab-separated file with exactly len(fields) fields, in batches, with their line numbers.

    Blank lines are skipped; a line with another number of fields is a SchemaError naming it.
    """
    expected = len(fields)
    for first, chunk in iter_line_batches(path, batch_size):
        rows = [line.split("\t") for line in chunk]
        lines = np.arange(first, first + len(rows), dtype=np.int64)
        bad = [i for i, row in enumerate(rows) if len(row) != expected]
        if bad:
            blank = [i for i in bad if not chunk[i].strip()]
            if len(blank) < len(bad):
                i = next(i for i in bad if chunk[i].strip())
                raise SchemaError(
                    f"{path}: line {first + i}: expected {expected} tab-separated fields "
                    f"({', '.join(fields)}), found {len(rows[i])}: {chunk[i][:80]!r}"
                )
            keep = np.ones(len(rows), dtype=bool)
            keep[blank] = False
            rows = [row for row, k in zip(rows, keep) if k]
            lines = lines[keep]
        if rows:
            yield rows, lines


def is_blank(column: pa.Array | pa.ChunkedArray) -> pa.BooleanArray | pa.ChunkedArray:
    """Which string values are empty or whitespace only (`utf8_is_space` is false for "")."""
    return pc.or_(pc.equal(pc.utf8_length(column), 0), pc.utf8_is_space(column))


def _first_empty(column: pa.Array) -> int | None:
    """Index of the first value that is empty or whitespace only, or None."""
    empty = is_blank(column)
    return pc.index(empty, True).as_py() if pc.any(empty).as_py() else None


def _check_nonempty(path: Path, table: pa.Table, column: str, what: str) -> None:
    i = _first_empty(table.column(column).combine_chunks())
    if i is not None:
        raise SchemaError(f"{path}: line {table.column('line')[i].as_py()}: empty {what}")


def _iter_tsv_tables(
    path: Path, fields: tuple[str, ...], columns: tuple[str, ...], batch_size: int
) -> Iterator[pa.Table]:
    """Stream a tab-separated file as tables of `columns` (one per field) and ``line``, by Arrow kernels.

    Every non-blank line must have exactly len(fields) fields (a passage may not hold a tab);
    blank lines are skipped; another number of fields is a SchemaError naming the file and line.
    No Python object is made per field, only per line (MS MARCO's files have 8.8M to 400M lines).
    """
    expected = len(fields)
    for first, chunk in iter_line_batches(path, batch_size):
        lines = pa.array(chunk, pa.string())
        del chunk
        numbers = np.arange(first, first + len(lines), dtype=np.int64)
        malformed = pc.not_equal(pc.count_substring(lines, "\t"), expected - 1)
        if pc.any(malformed).as_py():
            blank = is_blank(lines)
            wrong = pc.and_not(malformed, blank)
            if pc.any(wrong).as_py():
                i = pc.index(wrong, True).as_py()
                raise SchemaError(
                    f"{path}: line {first + i}: expected {expected} tab-separated fields "
                    f"({', '.join(fields)}), found {lines[i].as_py().count(chr(9)) + 1}: {lines[i].as_py()[:80]!r}"
                )
            keep = pc.invert(blank)
            lines, numbers = lines.filter(keep), numbers[keep.to_numpy(zero_copy_only=False)]
            if not len(lines):
                continue
        split = pc.split_pattern(lines, "\t")
        table = pa.table(
            {
                **{name: pc.list_element(split, i) for i, name in enumerate(columns)},
                "line": pa.array(numbers),
            }
        )
        yield table


def iter_collection(path: str | Path, batch_size: int = 100_000) -> Iterator[pa.Table]:
    """Stream ``collection.tsv[.gz]`` as tables (doc_id, title="", text, line) of up to `batch_size` rows.

    A passage may be empty (``pid<TAB>``): ingest decides whether such a document is kept.

    Memory holds one batch; uniqueness of ids across batches is the caller's check (see ingest).
    """
    path = resolve(path)
    for table in _iter_tsv_tables(path, ("pid", "passage"), ("doc_id", "text"), batch_size):
        _check_nonempty(path, table, "doc_id", "pid")
        yield table.add_column(1, "title", pa.array([""] * table.num_rows, pa.string()))


def check_unique(path: Path, table: pa.Table, column: str, what: str) -> None:
    """SchemaError naming both lines of the first duplicate value of `column` (a small table)."""
    values = table.column(column).to_pylist()
    seen: dict[str, int] = {}
    for value, line in zip(values, table.column("line").to_pylist()):
        if value in seen:
            raise SchemaError(
                f"{path}: line {line}: duplicate {what} {value!r} (first at line {seen[value]})"
            )
        seen[value] = line


def read_queries(path: str | Path) -> pa.Table:
    """``queries.<split>.tsv[.gz]`` as a table (query_id, text, line); ids unique, texts non-empty."""
    path = resolve(path)
    ids: list[str] = []
    texts: list[str] = []
    lines: list[np.ndarray] = []
    for rows, batch_lines in _tsv_batches(path, ("qid", "query"), 100_000):
        batch_ids, batch_texts = zip(*rows)
        ids.extend(batch_ids)
        texts.extend(batch_texts)
        lines.append(batch_lines)
    if not ids:
        raise SchemaError(f"{path}: no queries in file")
    table = pa.table(
        {
            "query_id": pa.array(ids, pa.string()),
            "text": pa.array(texts, pa.string()),
            "line": np.concatenate(lines),
        }
    )
    _check_nonempty(path, table, "query_id", "query id")
    _check_nonempty(path, table, "text", "query text")
    check_unique(path, table, "query_id", "query id")
    return table


def read_qrels(path: str | Path) -> pa.Table:
    """``qrels.<split>.(tsv|txt)[.gz]`` (``qid <iter> pid grade``) as (query_id, doc_id, relevance, line)."""
    table = read_qrels_text(resolve(path))
    check_repeated_pairs(Path(path), table, "judged")
    return table


def read_top1000(path: str | Path) -> pa.Table:
    """``top1000.<split>`` (``qid<TAB>pid<TAB>query<TAB>passage``) as a run: (query_id, doc_id, rank, score, line).

    The file has no scores: rank is the position of the line among its query's lines (file
    order, from 1) and score = -rank, so that sorting by score keeps the file's order.
    """
    path = resolve(path)
    qids: list[str] = []
    pids: list[str] = []
    ranks: list[int] = []
    lines: list[np.ndarray] = []
    next_rank: dict[str, int] = {}
    for rows, batch_lines in _tsv_batches(path, ("qid", "pid", "query", "passage"), 100_000):
        for qid, pid, _, _ in rows:
            rank = next_rank.get(qid, 1)
            next_rank[qid] = rank + 1
            qids.append(qid)
            pids.append(pid)
            ranks.append(rank)
        lines.append(batch_lines)
    if not qids:
        raise SchemaError(f"{path}: no results in file")
    rank_array = pa.array(ranks, pa.int32())
    table = pa.table(
        {
            "query_id": pa.array(qids, pa.string()),
            "doc_id": pa.array(pids, pa.string()),
            "rank": rank_array,
            "score": pc.cast(pc.negate(rank_array), pa.float32()),
            "line": np.concatenate(lines),
        }
    )
    _check_nonempty(path, table, "query_id", "qid")
    _check_nonempty(path, table, "doc_id", "pid")
    return table


TRIPLES_FIELDS = ("qid", "pos_pid", "neg_pid")


def iter_qidpidtriples(path: str | Path, batch_size: int = 1_000_000) -> Iterator[pa.Table]:
    """Stream ``qidpidtriples.<split>...tsv[.gz]`` (``qid<TAB>pos_pid<TAB>neg_pid``) in file order.

    Yields tables (query_id, positive_id, negative_id, line) of up to `batch_size` rows; memory
    holds one batch (the official ``qidpidtriples.train.full.2.tsv`` has ~400M lines). A line
    without exactly 3 fields, or with an empty one, is a SchemaError naming the file and line.
    """
    path = resolve(path)
    columns = ("query_id", "positive_id", "negative_id")
    for table in _iter_tsv_tables(path, TRIPLES_FIELDS, columns, batch_size):
        for column, field_name in zip(columns, TRIPLES_FIELDS):
            _check_nonempty(path, table, column, field_name)
        yield table


def read_qidpidtriples(path: str | Path) -> pa.Table:
    """``qidpidtriples.<split>...tsv[.gz]`` as training groups, every id of the file kept.

    One row per query: (query_id, positive_ids, negative_ids, negative_source="official-triples",
    line = the query's first line). Each id list holds distinct ids. Memory is proportional to the
    file (the full 400M-line file needs tens of GB): `lead bm25 --negatives triples` streams it
    instead and keeps n negatives per query.
    """
    path = resolve(path)
    batches = list(iter_qidpidtriples(path))
    if not batches:
        raise SchemaError(f"{path}: no triples in file")
    table = pa.concat_tables(batches)
    groups = table.group_by("query_id", use_threads=False).aggregate(
        [("positive_id", "distinct"), ("negative_id", "distinct"), ("line", "min")]
    )
    return pa.table(
        {
            "query_id": groups.column("query_id"),
            "positive_ids": groups.column("positive_id_distinct"),
            "negative_ids": groups.column("negative_id_distinct"),
            "negative_source": pa.array(["official-triples"] * groups.num_rows, pa.string()),
            "line": groups.column("line_min"),
        }
    )
