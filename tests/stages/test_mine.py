"""mine: every judged positive excluded, depth and skip respected, seeded sampling, counted skips."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lead_core import mine
from lead_core.data.schema import GROUPS, QRELS, RUN, read_table, write_table


def _run(rows: dict[str, list[str]]) -> pa.Table:
    """A run where each query's docs are listed best first (scores 100, 99, ...)."""
    qids, dids, ranks, scores = [], [], [], []
    for qid, docs in rows.items():
        for r, doc in enumerate(docs):
            qids.append(qid)
            dids.append(doc)
            ranks.append(r + 1)
            scores.append(100.0 - r)
    return pa.table(
        {
            "query_id": qids,
            "doc_id": dids,
            "rank": pa.array(ranks, pa.int32()),
            "score": pa.array(scores, pa.float32()),
        }
    )


def _qrels(rows: list[tuple[str, str, int]]) -> pa.Table:
    q, d, r = zip(*rows)
    return pa.table({"query_id": list(q), "doc_id": list(d), "relevance": pa.array(r, pa.int32())})


RUN_ROWS = {
    "qa": [f"a{i}" for i in range(10)],  # a0..a9
    "qb": [f"b{i}" for i in range(10)],
}
QRELS_ROWS = [
    ("qa", "a1", 1),  # retrieved positives: must never be negatives
    ("qa", "a4", 2),
    ("qa", "pos-not-retrieved", 1),
    ("qa", "a6", 0),  # judged non-relevant: a fine negative
    ("qb", "b0", 1),
    ("qc", "c0", 1),  # a query the run does not have
]


def _groups(table: pa.Table) -> dict[str, dict]:
    return {r["query_id"]: r for r in table.to_pylist()}


def test_positives_never_become_negatives_and_depth_skip_hold():
    groups, counts = mine.mine_groups(
        _run(RUN_ROWS), _qrels(QRELS_ROWS), depth=8, skip=1, num_negatives=100, seed=3
    )
    g = _groups(groups)
    assert sorted(g) == ["qa", "qb"]
    # qa: ranks 2..8 are a1..a7; a1 and a4 are judged positive -> a2 a3 a5 a6 a7, in rank order.
    assert g["qa"]["negative_ids"] == ["a2", "a3", "a5", "a6", "a7"]
    assert g["qa"]["positive_ids"] == ["a4", "a1", "pos-not-retrieved"]  # by grade, then id
    assert g["qb"]["negative_ids"] == ["b1", "b2", "b3", "b4", "b5", "b6", "b7"]
    assert g["qa"]["negative_source"] == "mined:8:1"
    assert counts == {
        "queries_without_run": 1,
        "queries_without_positives": 0,
        "queries_without_negatives": 0,
        "queries_short": 2,
        "groups": 2,
    }
    assert groups.schema.equals(GROUPS.arrow)


def test_sampling_is_seeded_per_query_and_keeps_rank_order():
    run = _run({f"q{i}": [f"q{i}-d{j}" for j in range(50)] for i in range(5)})
    qrels = _qrels([(f"q{i}", f"q{i}-d{i}", 1) for i in range(5)])
    first, counts = mine.mine_groups(run, qrels, depth=30, skip=2, num_negatives=6, seed=7)
    again, _ = mine.mine_groups(run, qrels, depth=30, skip=2, num_negatives=6, seed=7)
    other, _ = mine.mine_groups(run, qrels, depth=30, skip=2, num_negatives=6, seed=8)
    assert first.equals(again) and not first.equals(other)
    assert counts["queries_short"] == 0
    for row in first.to_pylist():
        ranks = [int(d.split("-d")[1]) for d in row["negative_ids"]]
        assert len(ranks) == 6 and ranks == sorted(ranks) and len(set(ranks)) == 6
        assert all(2 <= r < 30 for r in ranks)
        assert row["positive_ids"][0] not in row["negative_ids"]
    # A query's draw does not depend on the other queries of the run.
    alone, _ = mine.mine_groups(
        run.filter(pa.compute.equal(run.column("query_id"), "q3")),
        qrels,
        depth=30,
        skip=2,
        num_negatives=6,
        seed=7,
    )
    assert alone.to_pylist()[0] == _groups(first)["q3"]


def test_ties_are_ranked_by_doc_id_and_judged_grades_are_thresholds():
    run = pa.table(
        {
            "query_id": ["q"] * 4,
            "doc_id": ["z", "y", "x", "w"],
            "rank": pa.array([1, 2, 3, 4], pa.int32()),
            "score": pa.array([1.0, 1.0, 1.0, 0.5], pa.float32()),
        }
    )
    qrels = _qrels([("q", "w", 2), ("q", "x", 1)])
    # skip=1 drops "x" (first by doc id among the tied); grade-1 "x" counts as positive only at min 1.
    groups, _ = mine.mine_groups(run, qrels, depth=4, skip=1, min_relevance=2, exclude_relevance=1)
    row = groups.to_pylist()[0]
    assert row["positive_ids"] == ["w"] and row["negative_ids"] == ["y", "z"]
    groups, _ = mine.mine_groups(run, qrels, depth=4, skip=0, min_relevance=2, exclude_relevance=2)
    assert groups.to_pylist()[0]["negative_ids"] == ["x", "y", "z"]


def test_exclusion_and_positives_use_their_own_thresholds():
    # Grades 2 (w), 1 (x), 0 (y); z unjudged. Positives at >= 2, but every judged-relevant (>= 1)
    # document is kept out of the negatives: x is neither positive nor negative.
    run = _run({"q": ["w", "x", "y", "z"]})
    qrels = _qrels([("q", "w", 2), ("q", "x", 1), ("q", "y", 0)])
    groups, _ = mine.mine_groups(run, qrels, depth=4, min_relevance=2, exclude_relevance=1)
    assert groups.to_pylist()[0]["positive_ids"] == ["w"]
    assert groups.to_pylist()[0]["negative_ids"] == ["y", "z"]
    # Positives at >= 1, exclusion only at >= 2: x is a positive and may still be drawn as a negative
    # (the caller asked for it); w never.
    groups, _ = mine.mine_groups(run, qrels, depth=4, min_relevance=1, exclude_relevance=2)
    assert groups.to_pylist()[0]["positive_ids"] == ["w", "x"]
    assert groups.to_pylist()[0]["negative_ids"] == ["x", "y", "z"]


def test_queries_without_positives_or_negatives_are_counted():
    run = _run({"qa": ["a0", "a1"], "qb": ["b0"], "qz": ["z0"]})
    qrels = _qrels([("qa", "a0", 1), ("qb", "b0", 1)])
    groups, counts = mine.mine_groups(run, qrels, depth=10, num_negatives=5)
    assert groups.column("query_id").to_pylist() == ["qa"]
    assert counts["queries_without_positives"] == 1  # qz
    assert counts["queries_without_negatives"] == 1  # qb: its only result is its positive
    assert counts["queries_short"] == 1


def test_mine_refuses_bad_parameters_and_disjoint_inputs():
    run, qrels = _run(RUN_ROWS), _qrels(QRELS_ROWS)
    with pytest.raises(ValueError, match="skip < depth"):
        mine.mine_groups(run, qrels, depth=5, skip=5)
    with pytest.raises(ValueError, match="share no query"):
        mine.mine_groups(_run({"other": ["x"]}), qrels)
    with pytest.raises(ValueError, match="empty"):
        mine.mine_groups(run.slice(0, 0), qrels)


def test_mine_stage_writes_groups(tmp_path, capsys):
    write_table(_run(RUN_ROWS), tmp_path / "run.parquet", RUN)
    write_table(_qrels(QRELS_ROWS), tmp_path / "qrels.parquet", QRELS)
    summary = mine.run(
        mine.Config(
            run=str(tmp_path / "run.parquet"),
            qrels=str(tmp_path / "qrels.parquet"),
            out_groups=str(tmp_path / "groups.parquet"),
            depth=10,
            num_negatives=3,
            seed=1,
        )
    )
    assert summary["groups"] == 2 and summary["mean_negatives"] == 3.0 and summary["queries_without_run"] == 1
    table = read_table(tmp_path / "groups.parquet", GROUPS)
    assert table.num_rows == 2
    assert "1 without run" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError):
        mine.run(
            mine.Config(
                run=str(tmp_path / "nope"),
                qrels=str(tmp_path / "qrels.parquet"),
                out_groups=str(tmp_path / "g2"),
            )
        )
