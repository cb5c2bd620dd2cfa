"""`lead_core.distributed.launch`, the path GPU components and `lead <stage> --nproc N` take: two
gloo processes train to the single-process weights, and a failing rank fails with its own error."""

from __future__ import annotations

import os

import pytest
import torch

from lead_core.distributed import RankFailedError, launch, share
from lead_core.models import ModelConfig, build_model
from lead_core.train import run
from tests.train.conftest import base_config, state_of, without_dropout


def test_shares_are_contiguous_and_cover_everything():
    assert [share(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [share(1, r, 2) for r in range(2)] == [(0, 1), (1, 1)]


@pytest.mark.slow
def test_two_launched_processes_train_to_the_single_process_weights(tmp_path, toy, tiny_bert, tiny_mpnet):
    """LEAD with joint training (student and teacher both learn), 2 steps: one process with 4
    queries per step, then launch() with 2 gloo ranks of 2 queries each (the same global batch,
    negatives gathered across ranks). Dropout is off, so the only difference is the order of
    floating-point sums, which Adam (lr 1e-3: ~1e-3 per weight and step) turns into differences of
    ~1e-5: weights agree to 5e-5; the two steps moved them by ~1.5e-3, 30x more. Eq. 7's
    re-weighting is off: the loss is then a plain mean over the queries, the same sum whichever
    rank holds a query."""
    student = without_dropout(tiny_bert, tmp_path / "student-backbone")
    teacher = tmp_path / "teacher"
    config = ModelConfig(
        "cb",
        str(without_dropout(tiny_mpnet, tmp_path / "teacher-backbone")),
        query_max_length=8,
        passage_max_length=16,
    )
    build_model(config).save(teacher)
    common = dict(
        model=str(student),
        architecture="de",
        pooling="mean",
        teacher=str(teacher),
        method="lead",
        k=3,
        reweight=False,
        lr=1e-3,
        warmup_ratio=0.0,
        max_steps=2,
    )
    single = base_config(
        toy, tmp_path / "single", batch_size=4, out_teacher=str(tmp_path / "single-t"), **common
    )
    launched = base_config(toy, tmp_path / "two", batch_size=2, out_teacher=str(tmp_path / "two-t"), **common)
    summary_single = launch(run, single, nproc=1)
    summary_two = launch(run, launched, nproc=2)

    assert summary_single["world_size"] == 1 and summary_two["world_size"] == 2  # rank 0's summary
    for a, b in (("single", "two"), ("single-t", "two-t")):
        one, two = state_of(tmp_path / a), state_of(tmp_path / b)
        assert one.keys() == two.keys()
        for name in one:
            torch.testing.assert_close(two[name], one[name], rtol=0, atol=5e-5, msg=f"{b}: {name}")
    # Equal because both trained alike, not because neither moved.
    untrained = build_model(ModelConfig("de", str(student), pooling="mean")).state_dict()
    trained = state_of(tmp_path / "two")
    assert max((untrained[k] - trained[k]).abs().max().item() for k in untrained) > 20 * 5e-5


def _fail_on_rank_one(message: str) -> str:
    """A stage entry point whose rank 1 raises and whose rank 0 would wait for it."""
    if os.environ.get("RANK") == "1":
        raise ValueError(message)
    import torch.distributed as dist

    dist.init_process_group("gloo")
    dist.barrier()  # never passes: rank 1 is gone; the launcher stops this rank
    return "rank 0 finished"


@pytest.mark.slow
def test_a_failing_rank_fails_the_launch_with_its_own_error():
    with pytest.raises(
        RankFailedError, match=r"rank 1 failed: ValueError: groups\.parquet line 3: bad row"
    ) as err:
        launch(_fail_on_rank_one, "groups.parquet line 3: bad row", nproc=2)
    assert err.value.rank == 1
