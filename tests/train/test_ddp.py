"""Data parallelism on CPU: two gloo processes, negatives shared across them, gradients synchronised."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from lead_core.losses import contrastive_loss
from lead_core.models import load_model
from lead_core.train import Config, run
from lead_core.train.data import BatchPlan, TrainingData
from lead_core.train.trainer import positive_mask
from tests.train.conftest import base_config

WORLD = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, jobs: list[tuple[str, int, dict]], results: str) -> None:
    torch.set_num_threads(1)
    for name, port, values in jobs:
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


def _no_dropout(backbone: Path, folder: Path) -> Path:
    shutil.copytree(backbone, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


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


def test_two_process_gloo_shares_negatives_and_gradients(tmp_path, toy, tiny_bert, cb_teacher):
    student = _no_dropout(tiny_bert, tmp_path / "bert-no-dropout")
    common = dict(
        model=str(student), architecture="de", pooling="mean", batch_size=2, lr=1e-3, warmup_ratio=0.0
    )
    none_config = base_config(
        toy, tmp_path / "de", checkpoint_every=1, checkpoint_dir=str(tmp_path / "ckpt"), **common
    )
    lead_config = base_config(toy, tmp_path / "lead", teacher=str(cb_teacher), method="lead", k=3, **common)
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
    from lead_core.models import ModelConfig, build_model

    initial = build_model(
        ModelConfig("de", str(student), pooling="mean", query_max_length=8, passage_max_length=16)
    )
    after_step_1 = load_model(tmp_path / "ckpt" / "step-00000001" / "student")
    for step, model in ((0, initial), (1, after_step_1)):
        expected = _expected_losses(model, [p.batch(step) for p in plans], g)
        got = [results["none", r][step]["metrics"]["loss/total"] for r in range(WORLD)]
        assert got == pytest.approx(expected, abs=1e-4), f"step {step + 1}"
    assert (tmp_path / "de" / "lead_model.json").is_file()

    # LEAD: both ranks align the same layers (one selection stream) and get finite losses.
    assert [r["selection"] for r in results["lead", 0]] == [r["selection"] for r in results["lead", 1]]
    assert all(torch.isfinite(torch.tensor(r["metrics"]["loss/total"])) for r in results["lead", 1])
