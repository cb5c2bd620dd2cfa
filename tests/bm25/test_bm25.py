"""`lead bm25` on real SciFact and TREC DL19: retrieval quality pins, groups, seeding, errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lead_core import bm25 as stage
from lead_core.bm25.negatives import Judgements, random_negatives
from lead_core.cli import main as cli_main
from lead_core.data.schema import CORPUS, GROUPS, QRELS, QUERIES, RUN, SchemaError, read_table, write_table
from lead_core.data.trec import read_qrels, read_run, sort_run
from lead_core.evaluate import evaluate_run
from tests.bm25 import helpers


@pytest.fixture(scope="module")
def scifact(datasets):
    return helpers.scifact(datasets)


@pytest.fixture(scope="module")
def dl19(datasets):
    return helpers.dl_pools(datasets, "dl19")


def _ndcg10(run_path, qrels_path) -> float:
    return evaluate_run(read_run(run_path), read_qrels(qrels_path), ["nDCG@10"]).aggregate["nDCG@10"]


def test_scifact_ndcg_regression(scifact):
    # bm25s with English stopwords and no stemming: 0.662 (../shared/datasets/README.md; BEIR 0.665).
    plain = helpers.bm25(scifact, stemmer="none")
    assert _ndcg10(plain["run"], scifact["qrels"]) == pytest.approx(0.662, abs=0.005)
    # The stage's default adds the Snowball English stemmer, which helps on SciFact (measured 0.6863).
    stemmed = helpers.bm25(scifact)
    assert _ndcg10(stemmed["run"], scifact["qrels"]) == pytest.approx(0.686, abs=0.005)


def test_run_artifact_and_trec_file(scifact):
    out = helpers.bm25(scifact)
    run = read_table(out["run"], RUN)
    queries = read_table(scifact["queries"], QUERIES)
    assert set(run.column("query_id").to_pylist()) == set(queries.column("query_id").to_pylist())
    counts = pc.value_counts(run.column("query_id")).field("counts")
    assert pc.max(counts).as_py() == 1000
    assert pc.min(run.column("score")).as_py() > 0  # documents without a query term are left out
    # sorted by query, score descending, doc id ascending, ranks from 1: what sort_run produces
    assert run.equals(sort_run(run))
    trec = read_run(out["trec"])
    assert trec.column("doc_id").equals(run.column("doc_id"))
    assert trec.column("rank").equals(run.column("rank"))
    np.testing.assert_allclose(trec.column("score").to_numpy(), run.column("score").to_numpy(), atol=1e-6)


def test_bm25_groups_are_first_unjudged_hits(dl19):
    # DL19 qrels are graded 0-3: positives at grade >= 2, and grade-1 documents are neither.
    out = helpers.bm25(dl19, **helpers.DL_SETTINGS)
    groups = read_table(out["groups"], GROUPS)
    run = read_table(out["run"], RUN)
    qrels = read_qrels(dl19["qrels"])
    judged: dict[str, dict[str, int]] = {}
    for q, d, r in zip(*(qrels.column(c).to_pylist() for c in ("query_id", "doc_id", "relevance"))):
        judged.setdefault(q, {})[d] = r
    ranked: dict[str, list[str]] = {}
    for q, d in zip(run.column("query_id").to_pylist(), run.column("doc_id").to_pylist()):
        ranked.setdefault(q, []).append(d)
    assert groups.num_rows == 43
    grade_one_skipped = 0
    for g in groups.to_pylist():
        grades = judged[g["query_id"]]
        assert g["negative_source"] == "bm25"
        assert sorted(g["positive_ids"]) == sorted(d for d, r in grades.items() if r >= 2)
        assert not set(g["negative_ids"]) & {d for d, r in grades.items() if r > 0}
        expected = [d for d in ranked[g["query_id"]] if grades.get(d, 0) == 0][:100]
        assert g["negative_ids"] == expected
        assert len(g["negative_ids"]) == 100
        grade_one_skipped += sum(grades.get(d, 0) == 1 for d in ranked[g["query_id"]][:100])
    assert grade_one_skipped > 0  # the check above would not notice if grade 1 were never in the top 100


def test_bm25_groups_deterministic(scifact, tmp_path):
    first = read_table(helpers.bm25(scifact)["groups"], GROUPS)
    config = stage.Config(
        corpus=str(scifact["corpus"]),
        queries=str(scifact["queries"]),
        qrels=str(scifact["qrels"]),
        out_run=str(tmp_path / "run.parquet"),
        out_groups=str(tmp_path / "groups.parquet"),
        query_batch_size=17,
    )
    stage.run(config)
    assert read_table(tmp_path / "groups.parquet", GROUPS).equals(first)
    # 299 of the 300 test claims have 100 BM25 hits besides their positives
    assert sorted(len(n) for n in first.column("negative_ids").to_pylist())[1:] == [100] * 299


def test_random_negatives_seeded(scifact):
    a = read_table(helpers.bm25(scifact, negatives="random", num_negatives=50, k=10)["groups"], GROUPS)
    again = read_table(
        helpers.bm25(scifact, negatives="random", num_negatives=50, k=10, query_batch_size=7)["groups"],
        GROUPS,
    )
    other = read_table(
        helpers.bm25(scifact, negatives="random", num_negatives=50, k=10, seed=14)["groups"], GROUPS
    )
    assert a.equals(again)  # same seed: identical, whatever the batching
    assert a.column("query_id").equals(other.column("query_id"))
    assert a.column("positive_ids").equals(other.column("positive_ids"))
    same = sum(
        x == y for x, y in zip(a.column("negative_ids").to_pylist(), other.column("negative_ids").to_pylist())
    )
    assert same == 0
    corpus_ids = set(read_table(scifact["corpus"], CORPUS).column("doc_id").to_pylist())
    positives = Judgements(read_qrels(scifact["qrels"])).relevant
    for g in a.to_pylist():
        assert g["negative_source"] == "random"
        assert len(g["negative_ids"]) == len(set(g["negative_ids"])) == 50
        assert set(g["negative_ids"]) <= corpus_ids
        assert not set(g["negative_ids"]) & positives[g["query_id"]]


def test_random_negatives_never_draw_relevant():
    doc_ids = pa.array([f"d{i}" for i in range(12)])
    relevant = {f"d{i}" for i in range(10)}  # only d10 and d11 may be drawn
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert sorted(random_negatives(doc_ids, relevant, 2, rng)) == ["d10", "d11"]
    with pytest.raises(ValueError, match="only 2 documents"):
        random_negatives(doc_ids, relevant, 3, rng)


def test_cli_and_bad_inputs(scifact, tmp_path, capsys):
    base = ["bm25", "--corpus", str(scifact["corpus"]), "--queries", str(scifact["queries"])]
    # groups need qrels
    assert (
        cli_main([*base, "--out-run", str(tmp_path / "r.parquet"), "--out-groups", str(tmp_path / "g")]) == 1
    )
    assert "--out-groups needs --qrels" in capsys.readouterr().err
    # a positive that is not in the corpus
    qrels = read_qrels(scifact["qrels"])
    bad = pa.concat_tables(
        [
            qrels,
            pa.table({"query_id": ["1"], "doc_id": ["no-such-doc"], "relevance": pa.array([1], pa.int32())}),
        ]
    )
    write_table(bad, tmp_path / "bad-qrels.parquet", QRELS)
    config = stage.Config(
        corpus=str(scifact["corpus"]),
        queries=str(scifact["queries"]),
        qrels=str(tmp_path / "bad-qrels.parquet"),
        out_run=str(tmp_path / "r.parquet"),
        out_groups=str(tmp_path / "g.parquet"),
    )
    with pytest.raises(SchemaError, match="1 judged-relevant doc id.*'no-such-doc'"):
        stage.run(config)
    assert not (tmp_path / "g.parquet").exists()
    # an unknown stemmer
    assert cli_main([*base, "--out-run", str(tmp_path / "r.parquet"), "--stemmer", "klingon"]) == 1
    assert "unknown stemmer 'klingon'" in capsys.readouterr().err
    # the CLI end to end, small k
    assert (
        cli_main(
            [
                *base,
                "--out-run",
                str(tmp_path / "r.parquet"),
                "--k",
                "5",
                "--out-trec",
                str(tmp_path / "r.trec"),
            ]
        )
        == 0
    )
    assert read_table(tmp_path / "r.parquet", RUN).num_rows == 5 * 300
    assert read_run(tmp_path / "r.trec").num_rows == 5 * 300


def test_tiny_corpus_stopword_query_and_stemming(tmp_path):
    corpus = {
        "doc_id": ["a", "b", "c", "d"],
        "title": ["Cats", "", "Dogs", ""],
        "text": ["A cat sat on the mat.", "Dogs chase cats.", "A dog barked.", "Nothing here."],
    }
    write_table(pa.table(corpus), tmp_path / "corpus.parquet", CORPUS)
    queries = {"query_id": ["q-cat", "q-stop"], "text": ["cat", "the of and"]}
    write_table(pa.table(queries), tmp_path / "queries.parquet", QUERIES)
    summary = stage.run(
        stage.Config(
            corpus=str(tmp_path / "corpus.parquet"),
            queries=str(tmp_path / "queries.parquet"),
            out_run=str(tmp_path / "run.parquet"),
            k=10,
        )
    )
    run = read_table(tmp_path / "run.parquet", RUN)
    # "cat" matches cats/cat through the stemmer, in a and b only; the stopword query matches nothing
    assert run.column("query_id").to_pylist() == ["q-cat", "q-cat"]
    assert run.column("doc_id").to_pylist() == ["a", "b"]  # a: title and text both say cat
    assert run.column("rank").to_pylist() == [1, 2]
    assert summary["queries_without_hits"] == 1 and summary["num_docs"] == 4


def _tiny_inputs(folder):
    corpus = {"doc_id": ["a", "b"], "title": ["Cats", ""], "text": ["A cat sat.", "Dogs chase cats."]}
    write_table(pa.table(corpus), folder / "corpus.parquet", CORPUS)
    write_table(pa.table({"query_id": ["q"], "text": ["cat"]}), folder / "queries.parquet", QUERIES)
    return ["bm25", "--corpus", str(folder / "corpus.parquet"), "--queries", str(folder / "queries.parquet")]


def test_an_unwritable_output_fails_before_indexing_and_writes_nothing(tmp_path, capsys, monkeypatch):
    base = _tiny_inputs(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    before = sorted(tmp_path.rglob("*"))

    def no_indexing(*args, **kwargs):
        raise AssertionError("indexed although an output location is unwritable")

    with monkeypatch.context() as patch:
        patch.setattr(stage.BM25Index, "build", no_indexing)
        args = [
            "--out-run",
            str(tmp_path / "ok" / "r.parquet"),
            "--out-trec",
            str(tmp_path / "file" / "r.trec"),
        ]
        assert cli_main([*base, *args]) == 1
    assert f"{tmp_path / 'file' / 'r.trec'}: cannot write here" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before  # no r.parquet, not even the folder `ok`


def test_a_stage_that_fails_after_its_first_output_leaves_none(tmp_path, monkeypatch):
    base = _tiny_inputs(tmp_path)
    (tmp_path / "r.parquet").write_text("the previous run")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lead_core.bm25.stage.write_trec_run", full_disk)
    with pytest.raises(OSError, match="No space left"):
        cli_main([*base, "--out-run", str(tmp_path / "r.parquet"), "--out-trec", str(tmp_path / "r.trec")])
    assert (tmp_path / "r.parquet").read_text() == "the previous run"  # the run was written, then rolled back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.parquet", "queries.parquet", "r.parquet"]
