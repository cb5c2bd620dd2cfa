"""Training data: id resolution and validation, per-epoch sampling, batch layout and sharding."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lead_core.data.schema import GROUPS, write_table
from lead_core.train.data import BatchPlan, TrainingData, TrainingDataError


def _groups(path, rows):
    table = pa.table(
        {
            "query_id": [r[0] for r in rows],
            "positive_ids": [r[1] for r in rows],
            "negative_ids": [r[2] for r in rows],
            "negative_source": ["test"] * len(rows),
        },
        schema=GROUPS.arrow,
    )
    write_table(table, path, GROUPS)
    return path


def test_batch_layout_positive_first_and_texts(toy):
    data = TrainingData(toy.groups, toy.corpus, toy.queries, num_negatives=3)
    plan = BatchPlan(data, batch_size=4, seed=1)
    batch = plan.batch(0)
    assert len(batch.queries) == 4 and len(batch.passages) == 16 and batch.group_size == 4
    for i, qid in enumerate(batch.query_ids):
        group = batch.doc_ids[i * 4 : (i + 1) * 4]
        n = qid[1:]
        assert group[0] == f"d{n}"  # the positive first
        assert f"d{n}" not in group[1:] and len(set(group[1:])) == 3  # distinct negatives
        topic = batch.queries[i].split()[-1]
        assert batch.passages[i * 4].startswith(f"{topic} {topic} results")  # title + text


def test_sampling_is_seeded_per_epoch(toy):
    a = TrainingData(toy.groups, toy.corpus, toy.queries, num_negatives=3)
    b = TrainingData(toy.groups, toy.corpus, toy.queries, num_negatives=3)
    assert (a.sample_group(7, 0, 3) == b.sample_group(7, 0, 3)).all()
    draws = {tuple(a.sample_group(7, epoch, 3)) for epoch in range(8)}
    assert len(draws) > 1  # negatives are resampled every epoch
    plan = BatchPlan(a, 4, seed=7)
    assert not np.array_equal(plan.order(0), plan.order(1))
    assert sorted(plan.order(0)) == list(range(len(a)))
    # epoch, index of the run's micro-batches: 4 per epoch
    assert plan.position(5) == (1, 1)


def test_ranks_shard_each_global_batch(toy):
    data = TrainingData(toy.groups, toy.corpus, toy.queries, num_negatives=3)
    plans = [BatchPlan(data, 2, seed=3, rank=r, world_size=2) for r in range(2)]
    assert plans[0].batches_per_epoch == 4  # 16 queries / (2 x 2)
    seen = []
    for index in range(4):
        ids = [plans[r].batch(index).query_ids for r in range(2)]
        assert not set(ids[0]) & set(ids[1])
        seen += ids[0] + ids[1]
    assert sorted(seen) == sorted(data.query_ids)


def test_short_pool_with_replacement_and_false_negatives_removed(tmp_path, toy):
    groups = _groups(
        tmp_path / "g.parquet", [("q0", ["d0"], ["d1", "d0"]), ("q1", ["d1"], ["d2", "d3", "d4"])]
    )
    data = TrainingData(groups, toy.corpus, toy.queries, num_negatives=3)
    assert data.removed_false_negatives == 1 and data.short_pools == 1
    group = data.sample_group(0, 0, 0)
    assert list(data.texts(group)[0]) == ["d0", "d1", "d1", "d1"]


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [("q0", ["d0"], ["d1"]), ("q1", ["d1"], ["nope"])],
            "row 1 (query_id 'q1'): negative doc_id 'nope' is not in the corpus",
        ),
        ([("q0", ["zz"], ["d1"])], "row 0 (query_id 'q0'): positive doc_id 'zz' is not in the corpus"),
        ([("q0", ["d0"], ["d1"]), ("qx", ["d1"], ["d2"])], "row 1: query_id 'qx' is not in the queries file"),
        ([("q0", [], ["d1"])], "row 0 (query_id 'q0'): no positive"),
        ([("q0", ["d0"], ["d0"])], "row 0 (query_id 'q0'): no negative"),
        ([], "no rows (empty training split)"),
    ],
)
def test_bad_groups_name_file_row_and_id(tmp_path, toy, rows, message):
    groups = _groups(tmp_path / "g.parquet", rows)
    with pytest.raises(TrainingDataError) as err:
        TrainingData(groups, toy.corpus, toy.queries, num_negatives=2)
    assert str(groups) in str(err.value) and message in str(err.value)


def test_split_smaller_than_a_global_batch(toy):
    data = TrainingData(toy.groups, toy.corpus, toy.queries, num_negatives=1)
    with pytest.raises(TrainingDataError, match="fewer than one global batch"):
        BatchPlan(data, batch_size=9, seed=0, world_size=2)
