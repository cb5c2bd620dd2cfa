"""TREC run and qrels files: round trip, ties broken by doc id, errors naming the line."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lead_core.data.schema import SchemaError
from lead_core.data.trec import read_qrels, read_run, write_trec_run


def test_run_round_trip_breaks_ties_by_doc_id(tmp_path):
    run = pa.table(
        {
            "query_id": ["q2", "q1", "q1", "q1", "q2"],
            "doc_id": ["d9", "b", "a", "c", "d1"],
            "rank": [7, 3, 2, 1, 5],  # stale ranks: the writer renumbers them
            "score": pa.array([0.5, 2.0, 2.0, 3.0, 0.5], pa.float32()),
        }
    )
    path = write_trec_run(run, tmp_path / "run.trec", tag="bm25")
    assert path.read_text().splitlines() == [
        "q1 Q0 c 1 3.000000 bm25",
        "q1 Q0 a 2 2.000000 bm25",
        "q1 Q0 b 3 2.000000 bm25",
        "q2 Q0 d1 1 0.500000 bm25",
        "q2 Q0 d9 2 0.500000 bm25",
    ]
    back = read_run(path)
    assert back.column("doc_id").to_pylist() == ["c", "a", "b", "d1", "d9"]
    assert back.column("rank").to_pylist() == [1, 2, 3, 1, 2]
    assert back.column("score").to_pylist() == [3.0, 2.0, 2.0, 0.5, 0.5]


def test_bad_run_line(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 a 1 2.0 t\nq1 Q0 b two 1.0 t\n")
    with pytest.raises(SchemaError, match=r"run\.trec: line 2: rank 'two'"):
        read_run(path)


def test_qrels_msmarco_and_trec_columns(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("1\t0\t7\t1\n2 Q0 8 3\n")
    qrels = read_qrels(path)
    assert qrels.column_names == ["query_id", "doc_id", "relevance"]
    assert qrels.to_pylist() == [
        {"query_id": "1", "doc_id": "7", "relevance": 1},
        {"query_id": "2", "doc_id": "8", "relevance": 3},
    ]
