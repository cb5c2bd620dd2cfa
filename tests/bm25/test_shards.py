"""Sharded BM25 (index once, retrieve query shards, merge) writes exactly the single task's outputs."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from lead_core import bm25 as stage
from lead_core.bm25.stage import shard_rows
from lead_core.config import ConfigError
from lead_core.data.schema import CORPUS, GROUPS, RUN, SchemaError, read_table, write_table
from tests.bm25 import helpers

# SciFact train: 809 judged queries, in 9 retrieval batches of 100, so 4 shards hold 2, 2, 2, 3 batches.
BATCH = 100


@pytest.fixture(scope="module")
def scifact_train(datasets):
    return helpers.scifact(datasets, "train")


def _config(paths, out, **overrides) -> stage.Config:
    settings = {
        "corpus": str(paths["corpus"]),
        "queries": str(paths["queries"]),
        "qrels": str(paths["qrels"]),
        "k": 100,
        "num_negatives": 20,
        "query_batch_size": BATCH,
        "out_run": str(out / "run.parquet"),
        "out_trec": str(out / "run.trec"),
        "out_groups": str(out / "groups.parquet"),
    }
    settings.update(overrides)
    return stage.Config(**{k: v for k, v in settings.items() if v is not None})


def _sharded(paths, folder, num_shards, **overrides):
    """Index once, retrieve each of `num_shards` shards against it, merge; returns the merge's folder."""
    stage.run(
        _config(paths, folder, out_run=None, out_trec=None, out_groups=None, out_index=str(folder / "index"))
    )
    shards = []
    for i in range(num_shards):
        out = folder / f"shard-{i}"
        stage.run(
            _config(
                paths, out, out_trec=None, index=str(folder / "index"), shard=f"{i}/{num_shards}", **overrides
            )
        )
        shards.append(out)
    merged = folder / "merged"
    stage.run(
        _config(
            paths,
            merged,
            merge_runs=[str(s / "run.parquet") for s in shards],
            merge_groups=[str(s / "groups.parquet") for s in shards],
            qrels=None,
        )
    )
    return merged, shards


@pytest.mark.parametrize("negatives", ["bm25", "random"])
def test_four_shards_merge_into_the_single_task_outputs(scifact_train, tmp_path, negatives):
    single = tmp_path / "single"
    summary = stage.run(_config(scifact_train, single, negatives=negatives))
    assert summary["num_queries"] == 809 and summary["num_groups"] == 809
    for num_shards in (1, 4):
        merged, shards = _sharded(scifact_train, tmp_path / f"n{num_shards}", num_shards, negatives=negatives)
        for name, schema in (("run", RUN), ("groups", GROUPS)):
            expected = read_table(single / f"{name}.parquet", schema)
            assert read_table(merged / f"{name}.parquet", schema).equals(expected), (num_shards, name)
            if num_shards == 4:  # every shard holds rows, none holds all
                sizes = [read_table(s / f"{name}.parquet", schema).num_rows for s in shards]
                assert all(0 < n < expected.num_rows for n in sizes) and sum(sizes) == expected.num_rows
        assert (merged / "run.trec").read_bytes() == (single / "run.trec").read_bytes()
    run = read_table(single / "run.parquet", RUN)
    assert pc.count_distinct(run.column("query_id")).as_py() == 809
    assert 800 * 100 < run.num_rows <= 809 * 100  # top-100, less the hits sharing no query term


def test_shard_rows_cover_the_batches_once():
    assert [shard_rows(809, 100, i, 4) for i in range(4)] == [
        range(0, 200),
        range(200, 400),
        range(400, 600),
        range(600, 809),
    ]
    # more shards than batches: some shards are empty, none splits a batch
    assert [shard_rows(250, 100, i, 4) for i in range(4)] == [
        range(0, 0),
        range(0, 100),
        range(100, 200),
        range(200, 250),
    ]
    rows = [r for i in range(5) for r in shard_rows(250, 100, i, 5)]
    assert rows == list(range(250))


def test_merge_and_index_errors(scifact_train, tmp_path):
    merged, shards = _sharded(scifact_train, tmp_path, 2)
    runs = [str(s / "run.parquet") for s in shards]

    def merge(run_paths, **overrides):
        settings = {"merge_runs": run_paths, "out_trec": None, "out_groups": None, "qrels": None}
        return stage.run(_config(scifact_train, tmp_path / "bad-merge", **{**settings, **overrides}))

    # collected outputs come in any order: the merge orders them by the shard their metadata names
    merge(runs[::-1])
    assert read_table(tmp_path / "bad-merge" / "run.parquet", RUN).equals(
        read_table(merged / "run.parquet", RUN)
    )
    (tmp_path / "bad-merge" / "run.parquet").unlink()
    with pytest.raises(
        SchemaError, match=r"shard-1/run.parquet: shard 1/2, but the 1 run artifacts given should"
    ):
        merge(runs[1:])
    with pytest.raises(
        SchemaError, match=r"shard 0/2, but the 2 run artifacts given should be shards 0/2 to 1/2"
    ):
        merge([runs[0], runs[0]])
    with pytest.raises(SchemaError, match=r"corpus.parquet: not a 'run' artifact of `lead bm25 --shard`"):
        merge([str(scifact_train["corpus"])])
    assert not (tmp_path / "bad-merge" / "run.parquet").exists()
    # shards of different retrievals
    other = tmp_path / "other-k"
    stage.run(_config(scifact_train, other, out_trec=None, index=str(tmp_path / "index"), shard="1/2", k=50))
    with pytest.raises(SchemaError, match=r"other settings than shard 0 \(\['k'\]\)"):
        merge([runs[0], str(other / "run.parquet")])
    # an index built with other settings, or over another corpus
    with pytest.raises(ConfigError, match="built with other settings.*'stemmer': \\('english', 'none'\\)"):
        stage.run(_config(scifact_train, tmp_path / "x", index=str(tmp_path / "index"), stemmer="none"))
    smaller = tmp_path / "corpus-100.parquet"
    write_table(read_table(scifact_train["corpus"], CORPUS).slice(0, 100), smaller, CORPUS)
    with pytest.raises(SchemaError, match="an index of 5183 documents, but .*corpus-100.parquet holds 100"):
        stage.run(
            _config(
                scifact_train,
                tmp_path / "x",
                index=str(tmp_path / "index"),
                corpus=str(smaller),
                qrels=None,
                out_groups=None,
            )
        )
    with pytest.raises(ConfigError, match="shard"):
        _config(scifact_train, tmp_path / "x", shard="4/4")
    with pytest.raises(ConfigError, match="give one of them"):
        _config(scifact_train, tmp_path / "x", index="a", out_index="b")
