"""Data parallelism on CPU: two gloo processes, negatives shared across them, gradients synchronised."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from lead_core.losses import contrastive_loss, lead_loss
from lead_core.losses.objectives import positive_mask
from lead_core.models import ModelConfig, build_model, load_model
from lead_core.train import Config, run
from lead_core.train.checkpoint import CheckpointMismatchError
from lead_core.train.data import BatchPlan, TrainingData
from tests.train.conftest import base_config, first_positives, without_dropout

WORLD = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _record_first_step_gradients(path: Path) -> None:
    """Make this process's trainer save every parameter's gradient at its first optimizer step,
    before the update, by name ("student.<param>", "teacher.<param>")."""
    from lead_core.train.trainer import Trainer

    train = Trainer.train

    def recording_train(self, tracker):
        names = {id(p): f"student.{n}" for n, p in self.student.named_parameters()}
        if self.teacher is not None:
            names.update({id(p): f"teacher.{n}" for n, p in self.teacher.named_parameters()})
        step = self.optimizer.step

        def recording_step(*args, **kwargs):
            if not path.exists():
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                torch.save({names[id(p)]: p.grad.clone() for p in params if p.grad is not None}, path)
            return step(*args, **kwargs)

        self.optimizer.step = recording_step
        return train(self, tracker)

    Trainer.train = recording_train


def _worker(rank: int, jobs: list[tuple[str, int, dict]], results: str) -> None:
    torch.set_num_threads(1)
    for name, port, values in jobs:
        if name == "lead":
            _record_first_step_gradients(Path(results, f"lead-grads-{rank}.pt"))
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            WORLD_SIZE=str(WORLD),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
        )
        infos = []
        run(Config(**values), callbacks=[infos.append])
        rows = [
            {"num_passages": i.num_passages, "metrics": i.metrics, "selection": i.selection} for i in infos
        ]
        Path(results, f"{name}-{rank}.json").write_text(json.dumps(rows))


def _expected_losses(model, batches, group_size: int) -> list[float]:
    """Each rank's loss when its queries are scored against both ranks' passages (one process)."""
    model.eval()
    with torch.no_grad():
        passages = model.encode(batches[0].passages + batches[1].passages, is_query=False)
        losses = []
        for rank, batch in enumerate(batches):
            scores = model.encode(batch.queries, is_query=True) @ passages.T
            mask = positive_mask(len(batch.queries), group_size, scores.shape[-1], rank, "cpu")
            losses.append(float(contrastive_loss(scores, mask).total))
    return losses


def _single_process_lead_gradients(student, teacher, batches, selection, group_size):
    """Gradients of one process's LEAD loss over the union of the ranks' batches (all queries
    against all passages), by name as `_record_first_step_gradients` saves them."""
    queries = [q for b in batches for q in b.queries]
    passages = [p for b in batches for p in b.passages]
    scores = [
        model(model.prepare(queries, passages), layers=list(range(model.num_layers))).layer_scores
        for model in (teacher, student)
    ]
    positives = first_positives(len(queries), group_size)
    lead_loss(*scores, positives, *selection).total.backward()
    return {
        f"{role}.{n}": p.grad
        for role, model in (("student", student), ("teacher", teacher))
        for n, p in model.named_parameters()
        if p.grad is not None
    }


def test_two_process_gloo_shares_negatives_and_gradients(tmp_path, toy, tiny_bert, tiny_mpnet):
    student = without_dropout(tiny_bert, tmp_path / "bert-no-dropout")
    teacher = tmp_path / "cb-no-dropout"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = str(without_dropout(tiny_mpnet, tmp_path / "mpnet-no-dropout"))
        build_model(ModelConfig("cb", backbone, query_max_length=8, passage_max_length=16)).save(teacher)
    common = dict(
        model=str(student), architecture="de", pooling="mean", batch_size=2, lr=1e-3, warmup_ratio=0.0
    )
    none_config = base_config(
        toy, tmp_path / "de", checkpoint_every=1, checkpoint_dir=str(tmp_path / "ckpt"), **common
    )
    # LEAD with joint training (both models' gradients cross ranks); no clipping: raw gradients.
    lead_config = base_config(
        toy, tmp_path / "lead", teacher=str(teacher), method="lead", k=3, max_grad_norm=0.0, **common
    )
    jobs = [("none", _free_port(), vars(none_config)), ("lead", _free_port(), vars(lead_config))]
    # fork: the children reuse the imported torch/transformers instead of importing them again
    mp.start_processes(_worker, args=(jobs, str(tmp_path)), nprocs=WORLD, join=True, start_method="fork")
    results = {
        (name, rank): json.loads((tmp_path / f"{name}-{rank}.json").read_text())
        for name in ("none", "lead")
        for rank in range(WORLD)
    }
    q, g = 2, 4
    for key, rows in results.items():
        assert [r["num_passages"] for r in rows] == [WORLD * q * g] * 2, key  # P = 2 * Q * G

    # Step 1 from the initial weights, step 2 from the weights after step 1 (rank 0's checkpoint):
    # both ranks' losses match one process scoring their queries against all 16 passages, so
    # negatives are gathered and both ranks hold the same (synchronised) weights.
    data = TrainingData(toy.groups, toy.corpus, toy.queries, num_negatives=3)
    plans = [BatchPlan(data, q, seed=888, rank=r, world_size=WORLD) for r in range(WORLD)]
    initial = build_model(
        ModelConfig("de", str(student), pooling="mean", query_max_length=8, passage_max_length=16)
    )
    after_step_1 = load_model(tmp_path / "ckpt" / "step-00000001" / "student")
    for step, model in ((0, initial), (1, after_step_1)):
        expected = _expected_losses(model, [p.batch(step) for p in plans], g)
        got = [results["none", r][step]["metrics"]["loss/total"] for r in range(WORLD)]
        assert got == pytest.approx(expected, abs=1e-4), f"step {step + 1}"
    assert (tmp_path / "de" / "lead_model.json").is_file()

    # A checkpoint of 2 processes is not resumed by 1: the data order depends on the world size.
    with pytest.raises(CheckpointMismatchError, match=r"written by 2 process\(es\), resumed with 1"):
        run(replace(none_config, resume=True))

    # LEAD: both ranks align the same layers (one selection stream), and the first step's gradients
    # (DDP-averaged, passages gathered) equal one process's over the union of both ranks' batches.
    selection = results["lead", 0][0]["selection"]
    assert [r["selection"] for r in results["lead", 0]] == [r["selection"] for r in results["lead", 1]]
    expected = _single_process_lead_gradients(
        initial, load_model(teacher), [p.batch(0) for p in plans], selection, g
    )
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"lead-grads-{rank}.pt")
        assert set(expected) <= set(got) and any(n.startswith("teacher.") for n in expected)
        for name, grad in got.items():
            want = expected.get(name, torch.zeros_like(grad))
            torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def _gather_grad_worker(rank: int, port: int, results: str) -> None:
    import torch.distributed as dist

    from lead_core.distributed import gather_with_grad

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        weight, queries, passages = _gather_grad_problem()
        weight.requires_grad_(True)
        # Rank r holds queries 2r..2r+1 and passages 4r..4r+3 (rank 1 pads one fewer passage row
        # to exercise the uneven-shape path); its loss is the mean over its own queries.
        local_q = queries[2 * rank : 2 * rank + 2] @ weight
        local_p = passages[4 * rank : 4 * rank + 4 - rank] @ weight
        all_p = gather_with_grad(local_p)
        loss = _gather_grad_loss(local_q, all_p, offset=4 * rank)
        loss.backward()
        grad = weight.grad.clone()
        dist.all_reduce(grad)
        grad /= WORLD  # what DDP does with the parameter gradients
        torch.save(grad, Path(results, f"grad-{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _gather_grad_problem():
    gen = torch.Generator().manual_seed(5)
    return (
        torch.randn(6, 3, generator=gen),
        torch.randn(4, 6, generator=gen),
        torch.randn(7, 6, generator=gen),
    )


def _gather_grad_loss(q: torch.Tensor, p: torch.Tensor, offset: int) -> torch.Tensor:
    """Contrastive loss of queries [Q, d] against passages [P, d]; query i's positive is offset + 2i."""
    target = torch.arange(q.shape[0]) * 2 + offset
    return torch.nn.functional.cross_entropy(q @ p.T, target)


def test_gather_with_grad_gives_the_single_process_gradient(tmp_path):
    """Two ranks, each scoring its queries against both ranks' passages, DDP-averaged: the same
    gradient as one process with all 4 queries and 7 passages (other ranks' passages included)."""
    mp.start_processes(
        _gather_grad_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True, start_method="fork"
    )
    weight, queries, passages = _gather_grad_problem()
    weight.requires_grad_(True)
    q, p = queries @ weight, passages @ weight
    # Rank 0's queries see positives 0, 2; rank 1's see 4, 6: the same targets in one process.
    loss = (_gather_grad_loss(q[:2], p, 0) + _gather_grad_loss(q[2:], p, 4)) / WORLD
    (expected,) = torch.autograd.grad(loss, weight)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"grad-{rank}.pt")
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
