"""Checkpoints: a killed run resumed from its latest checkpoint ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import pytest
import torch

from lead_core.train import run
from lead_core.train.checkpoint import CheckpointMismatchError, list_checkpoints
from tests.train.conftest import base_config, same_weights, state_of


class Killed(RuntimeError):
    pass


def _kill_after(step: int):
    def callback(info):
        if info.step == step:
            raise Killed(f"killed after step {step}")

    return callback


def _lead_config(toy, tmp_path, tiny_bert, cb_teacher, name: str, **overrides):
    # LEAD with joint training exercises every piece of state: two models, dropout RNG, the
    # layer-selection generator, grad accumulation and epoch boundaries (2 steps per epoch).
    values = dict(
        model=str(tiny_bert),
        architecture="de",
        teacher=str(cb_teacher),
        out_teacher=str(tmp_path / f"{name}-teacher"),
        method="lead",
        k=3,
        grad_accum=2,
        max_steps=5,
        lr=1e-3,
        checkpoint_every=2,
        checkpoint_dir=str(tmp_path / f"{name}-ckpt"),
    )
    values.update(overrides)
    return base_config(toy, tmp_path / name, **values)


def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path, toy, tiny_bert, cb_teacher):
    torch.set_num_threads(1)
    full_losses, resumed_losses = [], []
    full = _lead_config(toy, tmp_path, tiny_bert, cb_teacher, "full")
    run(full, callbacks=[lambda i: full_losses.append(i.metrics["loss/total"])])

    killed = _lead_config(toy, tmp_path, tiny_bert, cb_teacher, "killed")
    with pytest.raises(Killed):
        run(killed, callbacks=[_kill_after(3), lambda i: resumed_losses.append(i.metrics["loss/total"])])
    assert not (tmp_path / "killed").exists()  # no output from a killed run
    assert [s for s, _ in list_checkpoints(killed.checkpoint_path)] == [2]

    resumed_losses = resumed_losses[:2]  # what the checkpoint at step 2 holds
    killed.resume = True
    result = run(killed, callbacks=[lambda i: resumed_losses.append(i.metrics["loss/total"])])
    assert result["steps"] == 5 and result["steps_run"] == 3
    assert resumed_losses == full_losses  # the same batches, layer draws and dropout masks
    assert same_weights(state_of(tmp_path / "full"), state_of(tmp_path / "killed"))  # bitwise on CPU
    assert same_weights(state_of(tmp_path / "full-teacher"), state_of(tmp_path / "killed-teacher"))
    # only the latest two checkpoints are kept
    assert [s for s, _ in list_checkpoints(killed.checkpoint_path)] == [2, 4]


def test_resume_with_another_config_names_the_fields(tmp_path, toy, tiny_bert, cb_teacher):
    first = _lead_config(toy, tmp_path, tiny_bert, cb_teacher, "a", max_steps=2)
    run(first)
    other = _lead_config(toy, tmp_path, tiny_bert, cb_teacher, "a", max_steps=2, lr=5e-4, k=2, resume=True)
    with pytest.raises(CheckpointMismatchError) as err:
        run(other)
    message = str(err.value)
    assert "k: 3 in the checkpoint, 2 now" in message and "lr: 0.001 in the checkpoint, 0.0005 now" in message
    assert "step-00000002" in message
    # without --resume, existing checkpoints are never silently mixed with a new run
    with pytest.raises(FileExistsError, match="pass --resume"):
        run(_lead_config(toy, tmp_path, tiny_bert, cb_teacher, "a", max_steps=2))
