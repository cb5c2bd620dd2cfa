"""MS MARCO readers: split file discovery and the official top1000 and qidpidtriples files."""

from __future__ import annotations

import pytest

from lead_core.data import msmarco
from lead_core.data.schema import GROUPS, RUN, SchemaError, read_table
from lead_core.ingest import Config, run
from tests.data.helpers import msmarco_dir, write_lines


def test_split_files(tmp_path):
    for name in (
        "queries.train.tsv",
        "queries.dev.tsv",
        "queries.dev.small.tsv",
        "qrels.dl19.txt",
        "queries.dl19.tsv",
    ):
        (tmp_path / name).write_text("")
    assert msmarco.splits(tmp_path) == ["dev", "dev.small", "dl19", "train"]
    assert msmarco.find_split_file(tmp_path, "queries", "dev").name == "queries.dev.tsv"  # exact name first
    assert msmarco.find_split_file(tmp_path, "queries", "dev.small").name == "queries.dev.small.tsv"
    assert msmarco.find_split_file(tmp_path, "qrels", "dl19").name == "qrels.dl19.txt"
    with pytest.raises(msmarco.SplitNotFoundError, match=r"no qrels file for split 'train'.*\['dl19'\]"):
        msmarco.find_split_file(tmp_path, "qrels", "train")


def test_top1000_ranks_follow_file_order(tmp_path):
    path = write_lines(
        tmp_path / "top1000.dev",
        ["10\t2\tq ten\tp two", "11\t1\tq eleven\tp one", "10\t0\tq ten\tp zero", "11\t0\tq eleven\tp zero"],
    )
    table = msmarco.read_top1000(path)
    assert table.select(["query_id", "doc_id", "rank", "score"]).to_pylist() == [
        {"query_id": "10", "doc_id": "2", "rank": 1, "score": -1.0},
        {"query_id": "11", "doc_id": "1", "rank": 1, "score": -1.0},
        {"query_id": "10", "doc_id": "0", "rank": 2, "score": -2.0},
        {"query_id": "11", "doc_id": "0", "rank": 2, "score": -2.0},
    ]


def test_qidpidtriples_become_groups(tmp_path):
    path = write_lines(
        tmp_path / "qidpidtriples.train.full.2.tsv", ["10\t0\t1", "11\t1\t2", "10\t0\t2", "10\t0\t1"]
    )
    groups = {g["query_id"]: g for g in msmarco.read_qidpidtriples(path).to_pylist()}
    assert sorted(groups["10"]["negative_ids"]) == ["1", "2"] and groups["10"]["positive_ids"] == ["0"]
    assert groups["11"]["line"] == 2 and groups["10"]["negative_source"] == "official-triples"
    write_lines(path, ["10\t0\t1", "11\t1"])
    with pytest.raises(
        SchemaError, match=r"qidpidtriples\.train\.full\.2\.tsv: line 2: expected 3 tab-separated"
    ):
        msmarco.read_qidpidtriples(path)


def test_ingest_official_files(tmp_path):
    src = msmarco_dir(tmp_path / "src")
    write_lines(src / "top1000.dev.small.tsv", ["10\t2\tq\tp", "10\t0\tq\tp", "11\t1\tq\tp"])
    write_lines(src / "qidpidtriples.dev.tsv.gz", ["10\t0\t1", "10\t0\t2", "11\t1\t0"], gz=True)
    counts = run(
        Config(
            source=str(src),
            layout="msmarco",
            split="dev",
            out=str(tmp_path / "out"),
            official_run=True,
            official_groups=True,
        )
    )
    assert counts["run_rows"] == 3 and counts["groups"] == 2
    assert read_table(tmp_path / "out" / "run.parquet", RUN).column("rank").to_pylist() == [1, 2, 1]
    assert read_table(tmp_path / "out" / "groups.parquet", GROUPS).num_rows == 2
    write_lines(src / "qidpidtriples.dev.tsv.gz", ["10\t0\t1", "11\t1\t55"], gz=True)
    with pytest.raises(
        SchemaError, match=r"line 2 \(the first line of query '11'\): passage '55' is not in the collection"
    ):
        run(
            Config(
                source=str(src), layout="msmarco", split="dev", out=str(tmp_path / "o2"), official_groups=True
            )
        )
    assert not (tmp_path / "o2").exists()
