"""`lead bm25 --negatives triples`: phase-1 groups from MS MARCO's official qidpidtriples, hand-checked."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pytest

from lead_core import bm25 as stage
from lead_core.bm25.negatives import Judgements, triples_groups
from lead_core.cli import main as cli_main
from lead_core.config import ConfigError
from lead_core.data.ids import IdHashes, hash_ids
from lead_core.data.schema import CORPUS, GROUPS, QRELS, QUERIES, SchemaError, read_table, write_table

# q1: positives d1, d2 (grade 2). q2: positive d3 (grade 2); d4 is judged relevant at grade 1, so
# it is neither a positive (positive_relevance=2) nor a negative. q3: positive d5, but no triples.
QRELS_ROWS = [("q1", "d1", 2), ("q1", "d2", 2), ("q2", "d3", 2), ("q2", "d4", 1), ("q3", "d5", 2)]
TRIPLES = [
    "q1\td1\td5",  # line 1: q1 gets d5
    "q2\td3\td4",  # line 2: d4 is judged relevant to q2: not a negative
    "q1\td1\td6",  # line 3: q1 gets d6
    "qX\td1\td2",  # line 4: not a query of the split: skipped, counted
    "q1\td2\td5",  # line 5: d5 again for q1: skipped
    "q2\td3\td1",  # line 6: q2 gets d1 (relevant to q1, not to q2)
    "",  # line 7: blank lines are skipped
    "q1\td1\td7",  # line 8: q1 gets d7, its third
    "q1\td1\td8",  # line 9: q1 is full (n=3)
    "q2\td8\td6",  # line 10: q2 gets d6; its positive d8 is not judged relevant: counted
]
# by hand: q1 -> d5, d6, d7 (first 3 distinct in file order); q2 -> d1, d6 (short of 3); q3 none
EXPECTED = [
    {"query_id": "q1", "positive_ids": ["d1", "d2"], "negative_ids": ["d5", "d6", "d7"]},
    {"query_id": "q2", "positive_ids": ["d3"], "negative_ids": ["d1", "d6"]},
]


def _write_lines(path, lines):
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture()
def inputs(tmp_path):
    ids = [f"d{i}" for i in range(1, 9)]
    corpus = pa.table({"doc_id": ids, "title": [""] * 8, "text": [f"passage {i}" for i in ids]})
    write_table(corpus, tmp_path / "corpus.parquet", CORPUS)
    write_table(
        pa.table({"query_id": ["q1", "q2", "q3"], "text": ["one", "two", "three"]}),
        tmp_path / "queries.parquet",
        QUERIES,
    )
    q, d, r = zip(*QRELS_ROWS)
    qrels = pa.table({"query_id": list(q), "doc_id": list(d), "relevance": pa.array(r, pa.int32())})
    write_table(qrels, tmp_path / "qrels.parquet", QRELS)
    _write_lines(tmp_path / "qidpidtriples.train.full.2.tsv.gz", TRIPLES)
    return tmp_path


def _config(folder, **overrides) -> stage.Config:
    settings = {
        "corpus": str(folder / "corpus.parquet"),
        "queries": str(folder / "queries.parquet"),
        "qrels": str(folder / "qrels.parquet"),
        "out_groups": str(folder / "groups.parquet"),
        "negatives": "triples",
        "triples": str(folder / "qidpidtriples.train.full.2.tsv.gz"),
        "num_negatives": 3,
        "positive_relevance": 2,
    }
    return stage.Config(**{**settings, **overrides})


def test_triples_groups_hand_checked(inputs, monkeypatch):
    def no_indexing(*args, **kwargs):
        raise AssertionError("triples groups need no BM25 index")

    monkeypatch.setattr(stage.BM25Index, "build", no_indexing)
    summary = stage.run(_config(inputs))
    groups = read_table(inputs / "groups.parquet", GROUPS)
    assert groups.select(["query_id", "positive_ids", "negative_ids"]).to_pylist() == EXPECTED
    assert set(groups.column("negative_source").to_pylist()) == {"official-triples"}
    assert summary["num_groups"] == 2
    assert summary["triples_lines"] == 9  # the blank line is not a triple
    assert summary["triples_unknown_query_lines"] == 1  # qX
    assert summary["triples_unjudged_positive_lines"] == 1  # q2's d8
    assert summary["judged_queries_without_triples"] == 1  # q3
    assert not (inputs / "run.parquet").exists()


def _triples_groups(folder, n: int, batch_size: int) -> pa.Table:
    made = triples_groups(
        str(folder / "qidpidtriples.train.full.2.tsv.gz"),
        pa.array(["q1", "q2", "q3"]),
        IdHashes(hash_ids(read_table(folder / "corpus.parquet", CORPUS).column("doc_id"))),
        Judgements(read_table(folder / "qrels.parquet", QRELS), positive_relevance=2),
        n=n,
        batch_size=batch_size,
    )
    return made.groups


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 100])
def test_triples_groups_do_not_depend_on_batching(inputs, batch_size):
    groups = _triples_groups(inputs, 3, batch_size)
    assert groups.select(["query_id", "positive_ids", "negative_ids"]).to_pylist() == EXPECTED
    # with one negative per query, q1's is its first line's and q2's its first non-relevant one
    assert _triples_groups(inputs, 1, batch_size).column("negative_ids").to_pylist() == [["d5"], ["d1"]]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("q1\td1", r"line 3: expected 3 tab-separated fields \(qid, pos_pid, neg_pid\), found 2"),
        ("q1\t\td5", r"line 3: empty pos_pid"),
        ("q1\td1\td99", r"line 3: passage 'd99' is not in the corpus"),
        ("q1\td99\td5", r"line 3: passage 'd99' is not in the corpus"),
    ],
)
def test_bad_triples_name_file_and_line(inputs, line, message):
    path = _write_lines(inputs / "bad.tsv", ["q1\td1\td5", "q2\td3\td1", line, "q1\td1\td6"])
    with pytest.raises(SchemaError, match=rf"bad\.tsv: {message}"):
        stage.run(_config(inputs, triples=str(path)))
    assert not (inputs / "groups.parquet").exists()


def test_triples_of_another_split_and_empty_file(inputs):
    path = _write_lines(inputs / "other.tsv", ["x1\td1\td5", "x2\td3\td1"])
    with pytest.raises(SchemaError, match="none of its 2 triples is for a query of the split"):
        stage.run(_config(inputs, triples=str(path)))
    path = _write_lines(inputs / "empty.tsv", [""])
    with pytest.raises(SchemaError, match="no triples in file"):
        stage.run(_config(inputs, triples=str(path)))


def test_triples_config_errors(inputs, capsys):
    with pytest.raises(ConfigError, match="--negatives triples needs --triples"):
        _config(inputs, triples=None)
    with pytest.raises(ConfigError, match="--triples needs --negatives triples"):
        _config(inputs, negatives="bm25", out_run=str(inputs / "run.parquet"))
    with pytest.raises(ConfigError, match="not per --shard"):
        _config(inputs, shard="1/2", out_run=str(inputs / "run.parquet"))
    # the CLI: one error line, exit status 1
    args = ["bm25", "--corpus", str(inputs / "corpus.parquet"), "--queries", str(inputs / "queries.parquet")]
    args += ["--qrels", str(inputs / "qrels.parquet"), "--out-groups", str(inputs / "g.parquet")]
    assert cli_main([*args, "--negatives", "triples"]) == 1
    assert "--negatives triples needs --triples" in capsys.readouterr().err
    ok = ["--negatives", "triples", "--triples", str(inputs / "qidpidtriples.train.full.2.tsv.gz")]
    assert cli_main([*args, *ok, "--num-negatives", "3", "--positive-relevance", "2"]) == 0
    groups = read_table(inputs / "g.parquet", GROUPS)
    assert groups.select(["query_id", "positive_ids", "negative_ids"]).to_pylist() == EXPECTED


def test_pipeline_profiles_need_the_triples_file_for_triples_negatives():
    from lead_core.profiles import profile

    with pytest.raises(ConfigError, match="negatives=triples needs triples_uri"):
        profile("smoke", negatives="triples")
    assert profile("smoke", negatives="triples", triples_uri="t.tsv.gz")["triples_uri"] == "t.tsv.gz"
    with pytest.raises(ConfigError, match="bm25_shards must be >= 1, got 0"):
        profile("smoke", bm25_shards=0)
