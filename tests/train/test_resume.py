"""Checkpoints: a run killed with SIGKILL and resumed from its latest checkpoint ends exactly where
an uninterrupted run ends, and the killed run leaves no output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import pytest
import torch

from lead_core.train import run
from lead_core.train.checkpoint import CheckpointMismatchError, list_checkpoints
from tests.train.conftest import base_config, same_weights, state_of

# Runs the trainer in a child process that stalls inside step 3's callback (after the checkpoint
# at step 2) and tells the test so; the test then SIGKILLs it: no cleanup code gets to run.
_STALLING_TRAINER = """
import json, os, sys, time, torch
from lead_core.train import Config, run
torch.set_num_threads(1)
config, marker = Config(**json.loads(sys.argv[1])), sys.argv[2]
def stall(info):
    if info.step == 3:
        with open(marker + ".tmp", "w") as fh:
            fh.write(json.dumps(losses + [info.metrics["loss/total"]]))
        os.replace(marker + ".tmp", marker)  # the test never reads a half-written marker
        time.sleep(600)
    losses.append(info.metrics["loss/total"])
losses = []
run(config, callbacks=[stall])
"""


def _run_until_step_3_and_sigkill(config, marker) -> list[float]:
    """The losses of steps 1-3 of the killed child."""
    child = subprocess.Popen(
        [sys.executable, "-c", _STALLING_TRAINER, json.dumps(asdict(config)), str(marker)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), f"the child never reached step 3 (exit code {child.poll()})"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    return json.loads(marker.read_text())


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
    resumed_losses = _run_until_step_3_and_sigkill(killed, tmp_path / "at-step-3.json")
    assert resumed_losses[:3] == full_losses[:3]  # the child is the same run so far
    assert not (tmp_path / "killed").exists() and not (tmp_path / "killed-teacher").exists()
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
