"""Real-world corpora: title-only documents are documents; documents with neither title nor text are
kept (BEIR's loader keeps them) or skipped, with one warning, and so are the qrels that judge them."""

from __future__ import annotations

import logging

import pytest

from lead_core.cli import main
from lead_core.data.schema import CORPUS, IDS, QRELS, QUERIES, SchemaError, read_table
from lead_core.ingest import Config, run
from tests.data.helpers import beir_dir, msmarco_dir

# A classic test collection in the BEIR layout: some documents have only a title, three (e2, e3,
# e4; and e5 with whitespace only) have neither; with more empty documents than a warning names.
CORPUS_ROWS = [
    {"_id": "d1", "title": "Cats on mats", "text": "the cat sat on the mat"},
    {"_id": "t1", "title": "Preliminary report on dog barking", "text": ""},
    {"_id": "t2", "title": "Mouse chasing"},  # no "text" key at all
    {"_id": "e1", "title": "", "text": ""},
    {"_id": "e2"},
    {"_id": "e3", "title": None, "text": None},
    {"_id": "e4", "title": " ", "text": "\t"},
    {"_id": "e5", "title": "", "text": "  "},
    {"_id": "e6", "text": ""},
]
EMPTY_IDS = ["e1", "e2", "e3", "e4", "e5", "e6"]
QUERY_ROWS = [
    {"_id": "q1", "text": "cat mat"},
    {"_id": "q2", "text": "dog barking"},
    {"_id": "q3", "text": "empty"},
]
# q3 judges only empty documents; q1 judges one of each.
QRELS_ROWS = [("q1", "d1", 1), ("q1", "e2", 1), ("q2", "t1", 1), ("q3", "e1", 1), ("q3", "e6", 2)]


def ingest(src, out, **kw) -> dict:
    return run(Config(source=str(src), layout="beir", out=str(out), **{"split": "test", **kw}))


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_title_only_documents_are_documents(tmp_path, caplog):
    src = beir_dir(tmp_path / "src", corpus=CORPUS_ROWS[:3], qrels=[("q1", "d1", 1), ("q2", "t2", 1)])
    with caplog.at_level(logging.WARNING):
        counts = ingest(src, tmp_path / "out")
    assert warnings_of(caplog) == []
    assert counts["docs"] == 3 and counts["empty_docs"] == 0 and counts["qrels"] == 2
    assert read_table(tmp_path / "out" / "corpus.parquet", CORPUS).to_pylist()[1:] == [
        {"doc_id": "t1", "title": "Preliminary report on dog barking", "text": ""},
        {"doc_id": "t2", "title": "Mouse chasing", "text": ""},
    ]


def test_empty_documents_are_kept_by_default_with_one_warning(tmp_path, caplog):
    src = beir_dir(tmp_path / "src", corpus=CORPUS_ROWS, queries=QUERY_ROWS, qrels=QRELS_ROWS)
    with caplog.at_level(logging.WARNING):
        counts = ingest(src, tmp_path / "out")
    (warning,) = warnings_of(caplog)
    assert warning == (
        f"{src / 'corpus.jsonl'}: 6 of 9 documents have neither title nor text, kept, as BEIR's loader "
        "does (--empty-documents skip leaves them out): 'e1' (line 4), 'e2' (line 5), 'e3' (line 6), "
        "'e4' (line 7), 'e5' (line 8), ..."
    )
    assert counts["docs"] == 9 and counts["empty_docs"] == 6 and counts["empty_docs_skipped"] == 0
    assert counts["qrels"] == 5 and counts["queries"] == 3 and counts["qrels_dropped_skipped_doc"] == 0
    corpus = read_table(tmp_path / "out" / "corpus.parquet", CORPUS).to_pylist()
    assert [r["doc_id"] for r in corpus] == [r["_id"] for r in CORPUS_ROWS]
    assert corpus[6] == {"doc_id": "e4", "title": " ", "text": "\t"}  # kept as written

    # and the next stage takes them: BM25 retrieves from a corpus with empty documents
    out = tmp_path / "out"
    assert (
        main(
            ["bm25", "--corpus", str(out / "corpus.parquet"), "--queries", str(out / "queries.parquet")]
            + ["--out-run", str(tmp_path / "run.parquet"), "--k", "3"]
        )
        == 0
    )


def test_skipped_documents_and_their_qrels(tmp_path, caplog):
    src = beir_dir(tmp_path / "src", corpus=CORPUS_ROWS, queries=QUERY_ROWS, qrels=QRELS_ROWS)
    with caplog.at_level(logging.WARNING):
        counts = ingest(src, tmp_path / "out", empty_documents="skip")
    docs_warning, qrels_warning = warnings_of(caplog)
    assert docs_warning.startswith(
        f"{src / 'corpus.jsonl'}: 6 of 9 documents have neither title nor text, left out "
        "(empty_documents=skip): 'e1' (line 4),"
    )
    assert qrels_warning == (
        f"{src / 'qrels' / 'test.tsv'}: dropped 3 of 5 qrels whose document has neither title nor text "
        "and was skipped (empty_documents=skip): 'e2' (line 3), 'e1' (line 5), 'e6' (line 6)"
    )
    assert counts == {
        "docs": 3,
        "empty_docs": 6,
        "empty_docs_skipped": 6,
        "qrels_dropped_skipped_doc": 3,
        "qrels_dropped_unknown_doc": 0,
        "queries_in_file": 3,
        "queries": 2,  # q3 judged only skipped documents
        "queries_dropped_without_qrels": 1,
        "qrels": 2,
    }
    out = tmp_path / "out"
    assert read_table(out / "corpus.parquet", CORPUS).column("doc_id").to_pylist() == ["d1", "t1", "t2"]
    assert read_table(out / "qrels.parquet", QRELS).to_pylist() == [
        {"query_id": "q1", "doc_id": "d1", "relevance": 1},
        {"query_id": "q2", "doc_id": "t1", "relevance": 1},
    ]
    assert read_table(out / "queries.parquet", QUERIES).column("query_id").to_pylist() == ["q1", "q2"]


def test_a_split_against_a_corpus_ingested_once_drops_the_qrels_at_its_skipped_documents(tmp_path):
    """The corpus ingested once with skip keeps the skipped ids beside it; a split ingested later
    against it drops and counts the qrels at them as the one-shot ingest does, and still fails on a
    document missing from the corpus."""
    src = beir_dir(tmp_path / "src", corpus=CORPUS_ROWS, queries=QUERY_ROWS, qrels=QRELS_ROWS)
    corpus = tmp_path / "corpus"
    ingest(src, corpus, split="", what="corpus", empty_documents="skip")
    assert sorted(p.name for p in corpus.iterdir()) == ["corpus.parquet", "skipped_documents.parquet"]
    assert read_table(corpus / "skipped_documents.parquet", IDS).column("id").to_pylist() == EMPTY_IDS
    counts = ingest(src, tmp_path / "split", what="split", corpus=str(corpus))
    one_shot = ingest(src, tmp_path / "all", empty_documents="skip")
    assert counts == {k: v for k, v in one_shot.items() if not k.startswith(("docs", "empty_docs"))}
    assert counts["qrels_dropped_skipped_doc"] == 3 and counts["qrels"] == 2
    assert read_table(tmp_path / "split" / "qrels.parquet", QRELS).equals(
        read_table(tmp_path / "all" / "qrels.parquet", QRELS)
    )
    beir_dir(
        tmp_path / "other", corpus=CORPUS_ROWS, queries=QUERY_ROWS, qrels=[("q1", "e1", 1), ("q2", "x", 1)]
    )
    with pytest.raises(SchemaError, match=r"line 3: document 'x' is not in the corpus \S*corpus\.parquet"):
        ingest(tmp_path / "other", tmp_path / "split2", what="split", corpus=str(corpus))


def test_skip_does_not_excuse_documents_missing_from_the_corpus(tmp_path):
    qrels = [("q1", "d1", 1), ("q1", "e1", 1), ("q2", "nowhere", 1)]
    src = beir_dir(tmp_path / "src", corpus=CORPUS_ROWS, queries=QUERY_ROWS, qrels=qrels)
    with pytest.raises(SchemaError, match=r"test\.tsv: line 4: document 'nowhere' is not in the corpus"):
        ingest(src, tmp_path / "out", empty_documents="skip")
    assert not (tmp_path / "out").exists()
    counts = ingest(src, tmp_path / "out", empty_documents="skip", drop_unknown_qrels=True)
    assert counts["qrels_dropped_skipped_doc"] == 1 and counts["qrels_dropped_unknown_doc"] == 1


def test_msmarco_empty_passages(tmp_path, caplog):
    collection = [("0", "the cat sat on the mat"), ("1", ""), ("2", "a cat chases a mouse"), ("3", "   ")]
    qrels = [("10", "0", 1), ("10", "1", 1), ("11", "2", 1)]
    src = msmarco_dir(tmp_path / "src", collection=collection, qrels=qrels, gz=True)
    with caplog.at_level(logging.WARNING):
        kept = run(Config(source=str(src), layout="msmarco", split="dev", out=str(tmp_path / "kept")))
    (warning,) = warnings_of(caplog)
    assert "collection.tsv.gz: 2 of 4 documents have neither title nor text, kept" in warning
    assert warning.endswith("'1' (line 2), '3' (line 4)")
    assert kept["docs"] == 4 and kept["qrels"] == 3
    caplog.clear()
    argv = ["ingest", "--source", str(src), "--layout", "msmarco", "--split", "dev"]
    with caplog.at_level(logging.WARNING):
        assert main(argv + ["--out", str(tmp_path / "skipped"), "--empty-documents", "skip"]) == 0
    assert len(warnings_of(caplog)) == 2
    corpus = read_table(tmp_path / "skipped" / "corpus.parquet", CORPUS)
    assert corpus.column("doc_id").to_pylist() == ["0", "2"]
    assert read_table(tmp_path / "skipped" / "qrels.parquet", QRELS).column("doc_id").to_pylist() == [
        "0",
        "2",
    ]


def test_all_documents_empty_is_an_error(tmp_path):
    corpus = [{"_id": "a", "contents": "pyserini's key, not BEIR's"}, {"_id": "b", "contents": "x"}]
    src = beir_dir(tmp_path / "src", corpus=corpus, qrels=[("q1", "a", 1)])
    for mode in ("keep", "skip"):
        with pytest.raises(SchemaError, match=r"corpus\.jsonl: all 2 documents have neither title nor text"):
            ingest(src, tmp_path / "out", empty_documents=mode)
    assert not (tmp_path / "out").exists()


def test_every_qrel_at_a_skipped_document_is_an_error(tmp_path):
    src = beir_dir(tmp_path / "src", corpus=CORPUS_ROWS, queries=QUERY_ROWS, qrels=[("q3", "e1", 1)])
    with pytest.raises(SchemaError, match=r"test\.tsv: every qrel judges a skipped empty document"):
        ingest(src, tmp_path / "out", empty_documents="skip")


@pytest.mark.parametrize("batch_size", [1, 100])  # the duplicate in another batch, in the same batch
def test_a_skipped_document_may_not_repeat_an_id(tmp_path, batch_size):
    corpus = [{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}, {"_id": "d1", "text": ""}]
    src = beir_dir(tmp_path / "src", corpus=corpus)
    with pytest.raises(
        SchemaError, match=r"corpus\.jsonl: line 3: duplicate doc id 'd1' \(first at line 1\)"
    ):
        ingest(src, tmp_path / "out", empty_documents="skip", batch_size=batch_size)
