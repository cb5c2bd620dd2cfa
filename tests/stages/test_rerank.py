"""rerank: a hand-made run re-ordered exactly as model.score_pairs scores it; input checks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lead_core import rerank
from lead_core.data.schema import RUN, read_table, write_table
from lead_core.data.text import passage_text
from lead_core.data.trec import read_run
from lead_core.models import load_model
from tests.stages.samples import PASSAGES, QUERY_TEXTS

TEXT = {d: passage_text(t, x) for d, t, x in PASSAGES}
QUERY = dict(QUERY_TEXTS)


def _run_file(path, rows):
    q, d, s = zip(*rows)
    table = pa.table(
        {
            "query_id": list(q),
            "doc_id": list(d),
            "rank": pa.array([1] * len(q), pa.int32()),
            "score": pa.array(s, pa.float32()),
        }
    )
    return write_table(table, path, RUN)


@pytest.mark.parametrize("keep_tail", [True, False], ids=["keep-tail", "drop-tail"])
@pytest.mark.parametrize("kind", ["cb", "ce"])
def test_rerank_orders_by_score_pairs(kind, keep_tail, request, tmp_path, corpus_file, queries_file):
    model_dir = request.getfixturevalue(f"{kind}_model")
    # q0: six documents in input order d0..d4, d6 (scores 6..1); q1: three. k=4 re-scores q0's
    # d0..d3; its d4 and d6 are the tail, kept in input order below them (or dropped).
    rows = [("q0", d, 6.0 - i) for i, d in enumerate(["d0", "d1", "d2", "d3", "d4", "d6"])] + [
        ("q1", d, s) for d, s in (("d5", 3.0), ("d6", 2.0), ("d2", 1.0))
    ]
    run_file = _run_file(tmp_path / "run.parquet", rows)
    summary = rerank.run(
        rerank.Config(
            model=str(model_dir),
            run=str(run_file),
            corpus=str(corpus_file),
            queries=str(queries_file),
            out_run=str(tmp_path / "out.parquet"),
            out_trec=str(tmp_path / "out.trec"),
            k=4,
            keep_tail=keep_tail,
            batch_size=3,
            device="cpu",
        )
    )
    assert summary == {"queries": 2, "pairs": 7, "k": 4, "rows": 9 if keep_tail else 7}
    out = read_table(tmp_path / "out.parquet", RUN)
    model = load_model(model_dir)
    for qid, docs in (("q0", ["d0", "d1", "d2", "d3"]), ("q1", ["d5", "d6", "d2"])):
        expected = model.score_pairs([QUERY[qid]] * len(docs), [TEXT[d] for d in docs]).numpy()
        got = out.filter(pa.compute.equal(out.column("query_id"), qid))
        tail = ["d4", "d6"] if keep_tail and qid == "q0" else []
        assert (
            got.column("doc_id").to_pylist() == [docs[i] for i in np.argsort(-expected, kind="stable")] + tail
        )
        assert got.column("rank").to_pylist() == list(range(1, len(docs) + len(tail) + 1))
        scores = got.column("score").to_numpy()
        np.testing.assert_allclose(scores[: len(docs)], np.sort(expected)[::-1], rtol=1e-4, atol=1e-5)
        # The tail: one below the lowest re-scored score, then one less per input rank.
        np.testing.assert_allclose(
            scores[len(docs) :], expected.min() - np.arange(1, len(tail) + 1), rtol=1e-5
        )
    assert read_run(tmp_path / "out.trec").num_rows == out.num_rows


def test_rerank_refuses_ids_missing_from_corpus_or_queries(tmp_path, ce_model, corpus_file, queries_file):
    config = dict(
        model=str(ce_model),
        corpus=str(corpus_file),
        queries=str(queries_file),
        out_run=str(tmp_path / "o.parquet"),
    )
    unknown_doc = _run_file(tmp_path / "r1.parquet", [("q0", "d0", 1.0), ("q0", "ghost", 0.5)])
    with pytest.raises(
        ValueError, match=r"1 document id\(s\) of the run are not in .*corpus.parquet, e.g. \['ghost'\]"
    ):
        rerank.run(rerank.Config(run=str(unknown_doc), **config))
    unknown_query = _run_file(tmp_path / "r2.parquet", [("q9", "d0", 1.0)])
    with pytest.raises(ValueError, match=r"query id\(s\) of the run are not in"):
        rerank.run(rerank.Config(run=str(unknown_query), **config))
    assert not (tmp_path / "o.parquet").exists()
