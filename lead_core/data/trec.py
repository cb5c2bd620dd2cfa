"""TREC text formats: qrels (`qid 0 docid grade`) and runs (`qid Q0 docid rank score tag`).

Readers accept either the TREC text file or the project's Parquet artifact, so every stage takes
both. The exporter breaks score ties by doc id (as pyserini does) and renumbers ranks from 1.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lead_core.artifacts import atomic_path
from lead_core.data.io import open_text
from lead_core.data.schema import QRELS, RUN, SchemaError, read_table, validate_table


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def read_qrels(path: str | Path) -> pa.Table:
    """Qrels from Parquet or a TREC/MS MARCO qrels file (`qid <iter> docid grade`, whitespace-separated)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such qrels file")
    if _is_parquet(path):
        return read_table(path, QRELS)
    table = read_qrels_text(path)
    check_repeated_pairs(path, table, "judged")
    return validate_table(table, QRELS, where=str(path))


def check_repeated_pairs(path: Path, table: pa.Table, what: str) -> None:
    """SchemaError naming both lines of the first (query_id, doc_id) pair that `table` holds twice.

    `table` has a `line` column (1-based source lines); `what` completes "query q and document d
    <what> twice" ("judged", "listed"). Vectorised: a run file has millions of lines.
    """
    frame = pd.DataFrame({"q": table.column("query_id").to_numpy(), "d": table.column("doc_id").to_numpy()})
    repeated = frame.duplicated(keep="first").to_numpy()
    if repeated.any():
        i = int(np.flatnonzero(repeated)[0])
        q, d = frame.q.iloc[i], frame.d.iloc[i]
        first = int(np.flatnonzero((frame.q == q).to_numpy() & (frame.d == d).to_numpy())[0])
        lines = table.column("line")
        raise SchemaError(
            f"{path}: line {lines[i].as_py()}: query {q!r} and document {d!r} {what} twice "
            f"(first at line {lines[first].as_py()})"
        )


def read_qrels_text(path: str | Path) -> pa.Table:
    """A TREC/MS MARCO qrels text file as a table with the QRELS columns plus `line` (1-based).

    The `line` column lets callers name the line of a qrel that fails a later check (an unknown
    query or document). Raises SchemaError naming the file and line of a malformed line.
    """
    path = Path(path)
    qids, dids, rels, lines = [], [], [], []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4:
                raise SchemaError(
                    f"{path}: line {lineno}: expected 4 fields 'qid iter docid grade', found {len(parts)}: {line.strip()[:80]!r}"
                )
            try:
                rel = int(parts[3])
            except ValueError:
                raise SchemaError(f"{path}: line {lineno}: grade {parts[3]!r} is not an integer") from None
            qids.append(parts[0])
            dids.append(parts[2])
            rels.append(rel)
            lines.append(lineno)
    if not qids:
        raise SchemaError(f"{path}: no qrels in file")
    return pa.table(
        {
            "query_id": qids,
            "doc_id": dids,
            "relevance": pa.array(rels, pa.int32()),
            "line": pa.array(lines, pa.int64()),
        }
    )


def read_run(path: str | Path) -> pa.Table:
    """A run from Parquet or a TREC run file (`qid Q0 docid rank score tag`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run file")
    if _is_parquet(path):
        return read_table(path, RUN)
    qids, dids, ranks, scores, lines = [], [], [], [], []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise SchemaError(
                    f"{path}: line {lineno}: expected 6 fields 'qid Q0 docid rank score tag', found {len(parts)}"
                )
            try:
                ranks.append(int(parts[3]))
                scores.append(float(parts[4]))
            except ValueError:
                raise SchemaError(
                    f"{path}: line {lineno}: rank {parts[3]!r} or score {parts[4]!r} is not a number"
                ) from None
            qids.append(parts[0])
            dids.append(parts[2])
            lines.append(lineno)
    if not qids:
        raise SchemaError(f"{path}: no results in run file")
    finite = np.isfinite(np.asarray(scores, dtype=np.float64))
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise SchemaError(f"{path}: line {lines[i]}: score {scores[i]} is not a finite number")
    table = pa.table(
        {
            "query_id": qids,
            "doc_id": dids,
            "rank": pa.array(ranks, pa.int32()),
            "score": pa.array(scores, pa.float32()),
            "line": pa.array(lines, pa.int64()),
        }
    )
    check_repeated_pairs(path, table, "listed")
    return validate_table(table, RUN, where=str(path))


def sort_run(run: pa.Table) -> pa.Table:
    """Sort by query id, score descending, doc id ascending, and renumber ranks from 1 per query."""
    run = run.sort_by([("query_id", "ascending"), ("score", "descending"), ("doc_id", "ascending")])
    qids = run.column("query_id").combine_chunks()
    # rank = position - position of the query's first row + 1
    starts = pc.not_equal(qids[1:], qids[:-1]) if len(qids) > 1 else pa.array([], pa.bool_())
    first = [0] + [i + 1 for i in pc.indices_nonzero(starts).to_pylist()]
    ranks = []
    bounds = first + [len(qids)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        ranks.extend(range(1, b - a + 1))
    return run.set_column(run.schema.get_field_index("rank"), "rank", pa.array(ranks, pa.int32()))


def write_trec_run(run: pa.Table, path: str | Path, tag: str = "lead") -> Path:
    """Write `run` as a TREC run file, ties broken by doc id, atomically."""
    path = Path(path)
    run = sort_run(validate_table(run, RUN, where=str(path)))
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for q, d, r, s in zip(
            run.column("query_id").to_pylist(),
            run.column("doc_id").to_pylist(),
            run.column("rank").to_pylist(),
            run.column("score").to_pylist(),
        ):
            fh.write(f"{q} Q0 {d} {r} {_score_text(s)} {tag}\n")
    return path


def _score_text(score: float) -> str:
    """Six decimals, or nine significant digits where six would not read back as the same float32
    (two scores one float32 step apart would otherwise become a tie that trec_eval reorders)."""
    text = f"{score:.6f}"
    if struct.unpack("f", struct.pack("f", float(text)))[0] != score:
        text = f"{score:.9g}"
    return text
