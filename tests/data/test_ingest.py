"""`lead ingest`: real SciFact and TREC DL pools, and one test per kind of bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lead_core.cli import main
from lead_core.config import ConfigError
from lead_core.data.schema import CORPUS, QRELS, QUERIES, SchemaError, read_metadata, read_table
from lead_core.ingest import Config, run
from tests.data.helpers import beir_dir, msmarco_dir, write_lines


def ingest(source: Path | str, out: Path, layout: str = "msmarco", split: str = "dev", **kw) -> dict:
    return run(Config(source=str(source), layout=layout, split=split, out=str(out), **kw))


def assert_fails(source: Path, out: Path, file: Path, line: int | None, problem: str, **kw) -> None:
    """The ingest fails naming `file`, `line` and `problem`, and writes nothing at or beside `out`."""
    with pytest.raises((SchemaError, FileNotFoundError, ValueError)) as err:
        ingest(source, out, **kw)
    message = str(err.value)
    assert str(file) in message, message
    if line is not None:
        assert re.search(rf"\bline {line}\b", message), message
    assert problem in message, message
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


# --- real data ------------------------------------------------------------------------------


@pytest.mark.parametrize("split, queries, qrels", [("test", 300, 339), ("train", 809, 919)])
def test_scifact(scifact_dir, tmp_path, split, queries, qrels):
    counts = ingest(scifact_dir, tmp_path / "out", layout="beir", split=split)
    assert counts["docs"] == 5183
    assert (counts["queries"], counts["qrels"]) == (queries, qrels)
    assert counts["queries_in_file"] == 1109 and counts["queries_dropped_without_qrels"] == 1109 - queries
    corpus = read_table(tmp_path / "out" / "corpus.parquet", CORPUS)
    assert corpus.num_rows == 5183
    first = corpus.slice(0, 1).to_pylist()[0]
    assert first["doc_id"] == "4983" and first["title"].startswith(
        "Microstructural development of human newborn"
    )
    q = read_table(tmp_path / "out" / "queries.parquet", QUERIES)
    judged = set(read_table(tmp_path / "out" / "qrels.parquet", QRELS).column("query_id").to_pylist())
    assert set(q.column("query_id").to_pylist()) == judged
    meta = read_metadata(tmp_path / "out" / "qrels.parquet")
    assert meta["config"]["split"] == split and meta["config"]["layout"] == "beir"


def test_dl19_pools(dl_pools_dir, tmp_path):
    # 3,562 grade-0 DL19 judgements are outside the pool; every grade >= 1 one is inside.
    counts = ingest(dl_pools_dir, tmp_path / "out", split="dl19", drop_unknown_qrels=True, batch_size=10_000)
    assert counts["docs"] == 31362
    corpus_file = pq.ParquetFile(tmp_path / "out" / "corpus.parquet")
    assert corpus_file.num_row_groups == 4  # streamed in batches of 10,000 lines
    assert corpus_file.metadata.num_rows == 31362
    assert counts["queries"] == 43
    assert counts["qrels_dropped_unknown_doc"] == 3562
    assert counts["qrels"] == 9260 - 3562
    qrels = read_table(tmp_path / "out" / "qrels.parquet", QRELS)
    assert pc.min(qrels.column("relevance")).as_py() == 0 and pc.max(qrels.column("relevance")).as_py() == 3


def test_dl20_pools_needs_the_drop_option(dl_pools_dir, tmp_path, caplog):
    qrels = dl_pools_dir / "qrels.dl20.txt"
    # qrels.dl20.txt line 1 judges passage 1020327, which no pooled run retrieved.
    assert_fails(
        dl_pools_dir, tmp_path / "out", qrels, 1, "document '1020327' is not in the corpus", split="dl20"
    )
    counts = ingest(dl_pools_dir, tmp_path / "out", split="dl20", drop_unknown_qrels=True)
    assert counts["qrels_dropped_unknown_doc"] == 6237
    assert (counts["queries"], counts["qrels"]) == (54, 11386 - 6237)
    assert "dropped 6237 of 11386 qrels" in caplog.text


def test_scifact_corpus_once_and_both_splits_against_it(scifact_dir, tmp_path):
    """The corpus ingested once (what=corpus) and each split against it (what=split): the split
    folders hold only queries and qrels, the same tables the one-shot ingest writes."""
    corpus = ingest(scifact_dir, tmp_path / "corpus", layout="beir", split="", what="corpus")
    assert corpus == {"docs": 5183, "empty_docs": 0, "empty_docs_skipped": 0}
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == ["corpus.parquet"]
    for split, queries, qrels in (("test", 300, 339), ("train", 809, 919)):
        out = tmp_path / split
        counts = ingest(
            scifact_dir, out, layout="beir", split=split, what="split", corpus=str(tmp_path / "corpus")
        )
        assert (counts["queries"], counts["qrels"], counts["qrels_dropped_unknown_doc"]) == (
            queries,
            qrels,
            0,
        )
        assert "docs" not in counts
        assert sorted(p.name for p in out.iterdir()) == ["qrels.parquet", "queries.parquet"]
        ingest(scifact_dir, tmp_path / f"{split}-all", layout="beir", split=split)
        for name, schema in (("queries", QUERIES), ("qrels", QRELS)):
            once = read_table(out / f"{name}.parquet", schema)
            assert once.equals(read_table(tmp_path / f"{split}-all" / f"{name}.parquet", schema)), name
    # the one-shot folder serves as the corpus of another split too
    counts = ingest(
        scifact_dir,
        tmp_path / "test2",
        layout="beir",
        split="test",
        what="split",
        corpus=str(tmp_path / "train-all"),
    )
    assert counts["qrels"] == 339


def test_split_against_an_ingested_corpus_checks_its_qrels(tmp_path):
    """what=split: a qrel naming a document outside the ingested corpus fails as in the one-shot
    ingest, naming the corpus artifact; drop_unknown_qrels drops it."""
    src = msmarco_dir(tmp_path / "src")
    ingest(src, tmp_path / "corpus", split="", what="corpus")
    msmarco_dir(tmp_path / "other", qrels=[("10", "0", 1), ("11", "77", 1), ("11", "1", 1)])
    corpus = str(tmp_path / "corpus")
    assert_fails(
        tmp_path / "other",
        tmp_path / "out",
        tmp_path / "other" / "qrels.dev.small.tsv",
        2,
        f"document '77' is not in the corpus {tmp_path / 'corpus' / 'corpus.parquet'}",
        what="split",
        corpus=corpus,
    )
    counts = ingest(
        tmp_path / "other", tmp_path / "out", what="split", corpus=corpus, drop_unknown_qrels=True
    )
    assert counts["qrels_dropped_unknown_doc"] == 1 and counts["qrels"] == 2


@pytest.mark.parametrize(
    "fields, problem",
    [
        (
            {"what": "corpus", "split": "dev"},
            "what=corpus writes only the corpus; ['split'] belong to a split",
        ),
        ({"what": "split", "split": "dev"}, "what=split needs corpus (--corpus)"),
        ({"what": "split", "split": "", "corpus": "c"}, "what=split needs a split (--split)"),
        ({"what": "all", "split": ""}, "what=all needs a split (--split)"),
        ({"what": "all", "split": "dev", "corpus": "c"}, "corpus (--corpus) goes with what=split"),
    ],
)
def test_what_and_its_fields_contradicting(tmp_path, fields, problem):
    src = msmarco_dir(tmp_path / "src")
    with pytest.raises(ConfigError) as err:
        run(Config(source=str(src), layout="msmarco", out=str(tmp_path / "out"), **fields))
    assert problem in str(err.value)
    assert not (tmp_path / "out").exists()


def test_cli_corpus_once_then_a_split(tmp_path, capsys):
    src = msmarco_dir(tmp_path / "src")
    base = ["ingest", "--source", str(src), "--layout", "msmarco"]
    assert main([*base, "--what", "corpus", "--out", str(tmp_path / "c")]) == 0
    assert (
        main(
            [
                *base,
                "--what",
                "split",
                "--corpus",
                str(tmp_path / "c"),
                "--split",
                "dev",
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 0
    )
    assert read_table(tmp_path / "d" / "qrels.parquet", QRELS).num_rows == 3
    assert main([*base, "--out", str(tmp_path / "e")]) == 1  # one-shot without a split
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "lead ingest: error: what=all needs a split (--split)"
    )


# --- small hand-made datasets -----------------------------------------------------------------


def test_msmarco_gzip_and_queries_without_qrels(tmp_path):
    src = msmarco_dir(tmp_path / "src", gz=True)
    counts = ingest(src, tmp_path / "out")  # split "dev" finds the ".small" files
    assert counts == {
        "docs": 3,
        "empty_docs": 0,
        "empty_docs_skipped": 0,
        "qrels_dropped_skipped_doc": 0,
        "qrels_dropped_unknown_doc": 0,
        "queries_in_file": 3,
        "queries": 2,
        "queries_dropped_without_qrels": 1,
        "qrels": 3,
    }
    corpus = read_table(tmp_path / "out" / "corpus.parquet", CORPUS).to_pylist()
    assert corpus[2] == {"doc_id": "2", "title": "", "text": "a cat chases a mouse"}
    kept = ingest(src, tmp_path / "out2", keep_queries_without_qrels=True)
    assert kept["queries"] == 3


def test_beir_gzip_empty_title_and_missing_title(tmp_path):
    corpus = [{"_id": "d1", "title": "", "text": "x"}, {"_id": 2, "text": "y"}]
    src = beir_dir(tmp_path / "src", corpus=corpus, qrels=[("q1", "d1", 1), ("q2", "2", 1)], gz=True)
    counts = ingest(src, tmp_path / "out", layout="beir", split="test")
    assert counts["docs"] == 2 and counts["queries"] == 2
    rows = read_table(tmp_path / "out" / "corpus.parquet", CORPUS).to_pylist()
    assert rows[1] == {"doc_id": "2", "title": "", "text": "y"}


def test_cli_writes_and_fails_with_one_line(tmp_path, capsys):
    src = msmarco_dir(tmp_path / "src")
    assert (
        main(
            [
                "ingest",
                "--source",
                str(src),
                "--layout",
                "msmarco",
                "--split",
                "dev",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert (tmp_path / "o" / "qrels.parquet").exists()
    assert (
        main(
            [
                "ingest",
                "--source",
                str(src),
                "--layout",
                "msmarco",
                "--split",
                "nope",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("lead ingest: error:") and "splits with a queries file: ['dev', 'dev.small']" in err


def test_output_folder_is_replaced_atomically(tmp_path):
    src = msmarco_dir(tmp_path / "src")
    out = tmp_path / "out"
    ingest(src, out)
    (out / "stale.txt").write_text("old")
    ingest(src, out)
    assert sorted(p.name for p in out.iterdir()) == ["corpus.parquet", "qrels.parquet", "queries.parquet"]
    # A failing re-run leaves the previous output untouched.
    (src / "qrels.dev.small.tsv").write_text("10\t0\t99\t1\n")
    with pytest.raises(SchemaError):
        ingest(src, out)
    assert read_table(out / "qrels.parquet", QRELS).num_rows == 3


# --- bad input: each names the file and the line, and nothing is written --------------------------


def test_malformed_collection_line(tmp_path):
    src = msmarco_dir(tmp_path / "src", collection=[("0", "fine"), ("1", "fine")])
    (src / "collection.tsv").write_text("0\tfine\n1 no tab here\n")
    assert_fails(src, tmp_path / "out", src / "collection.tsv", 2, "expected 2 tab-separated fields")


def test_malformed_qrels_line(tmp_path):
    src = msmarco_dir(tmp_path / "src")
    write_lines(src / "qrels.dev.small.tsv", ["10\t0\t0\t1", "11\t0\t1"])
    assert_fails(src, tmp_path / "out", src / "qrels.dev.small.tsv", 2, "expected 4 fields")


def test_non_integer_grade(tmp_path):
    src = msmarco_dir(tmp_path / "src")
    write_lines(src / "qrels.dev.small.tsv", ["10\t0\t0\t1", "11\t0\t1\thigh"])
    assert_fails(src, tmp_path / "out", src / "qrels.dev.small.tsv", 2, "grade 'high' is not an integer")


def test_malformed_json(tmp_path):
    src = beir_dir(tmp_path / "src", corpus=[{"_id": "d1", "text": "a"}, '{"_id": "d2", "text": '])
    assert_fails(
        src, tmp_path / "out", src / "corpus.jsonl", 2, "not valid JSON", layout="beir", split="test"
    )


def test_missing_key(tmp_path):
    # title and text may be absent (BEIR's loader reads them with dict.get); the id may not
    src = beir_dir(tmp_path / "src", corpus=[{"_id": "d1", "text": "a"}, {"title": "t", "text": "b"}])
    assert_fails(
        src, tmp_path / "out", src / "corpus.jsonl", 2, "missing key '_id'", layout="beir", split="test"
    )


def test_missing_qrels_column(tmp_path):
    src = beir_dir(tmp_path / "src")
    write_lines(src / "qrels" / "test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1"])
    assert_fails(
        src,
        tmp_path / "out",
        src / "qrels" / "test.tsv",
        2,
        "expected 3 tab-separated fields",
        layout="beir",
        split="test",
    )


def test_wrong_qrels_header(tmp_path):
    src = beir_dir(tmp_path / "src")
    write_lines(src / "qrels" / "test.tsv", ["q1\td1\t1"])
    assert_fails(
        src,
        tmp_path / "out",
        src / "qrels" / "test.tsv",
        1,
        "expected the header",
        layout="beir",
        split="test",
    )


@pytest.mark.parametrize("batch_size", [2, 100])  # across batches, within one batch
def test_duplicate_doc_id(tmp_path, batch_size):
    collection = [("0", "a"), ("1", "b"), ("2", "c"), ("3", "d"), ("1", "again")]
    src = msmarco_dir(tmp_path / "src", collection=collection, qrels=[("10", "0", 1)])
    assert_fails(
        src,
        tmp_path / "out",
        src / "collection.tsv",
        5,
        "duplicate doc id '1' (first at line 2)",
        batch_size=batch_size,
    )


def test_duplicate_query_id(tmp_path):
    src = msmarco_dir(tmp_path / "src", queries=[("10", "a"), ("11", "b"), ("10", "c")])
    assert_fails(
        src, tmp_path / "out", src / "queries.dev.small.tsv", 3, "duplicate query id '10' (first at line 1)"
    )


def test_duplicate_qrels_pair(tmp_path):
    src = msmarco_dir(tmp_path / "src", qrels=[("10", "0", 1), ("11", "1", 1), ("10", "0", 2)])
    assert_fails(src, tmp_path / "out", src / "qrels.dev.small.tsv", 3, "judged twice (first at line 1)")


def test_empty_query_text(tmp_path):
    src = msmarco_dir(tmp_path / "src", queries=[("10", "a"), ("11", "")])
    assert_fails(src, tmp_path / "out", src / "queries.dev.small.tsv", 2, "empty query text")


def test_qrels_name_unknown_query(tmp_path):
    src = msmarco_dir(tmp_path / "src", qrels=[("10", "0", 1), ("99", "1", 1)])
    assert_fails(src, tmp_path / "out", src / "qrels.dev.small.tsv", 2, "query '99' is not in")


def test_qrels_name_unknown_document(tmp_path):
    src = msmarco_dir(tmp_path / "src", qrels=[("10", "0", 1), ("11", "77", 1), ("11", "1", 1)])
    assert_fails(src, tmp_path / "out", src / "qrels.dev.small.tsv", 2, "document '77' is not in the corpus")
    counts = ingest(src, tmp_path / "out", drop_unknown_qrels=True)
    assert counts["qrels_dropped_unknown_doc"] == 1 and counts["qrels"] == 2


def test_split_that_does_not_exist(tmp_path):
    src = msmarco_dir(tmp_path / "src")
    assert_fails(src, tmp_path / "out", src, None, "no queries file for split 'test'", split="test")
    beir_src = beir_dir(tmp_path / "beir")
    assert_fails(
        beir_src,
        tmp_path / "out",
        beir_src / "qrels",
        None,
        "splits found: ['test']",
        layout="beir",
        split="dev",
    )


def test_invalid_utf8(tmp_path):
    src = msmarco_dir(tmp_path / "src")
    (src / "collection.tsv").write_bytes(b"0\tfine\n1\tbad \xff byte\n")
    assert_fails(src, tmp_path / "out", src / "collection.tsv", 2, "not valid UTF-8")
