"""`lead train` outputs are all-or-nothing: locations checked before training, the model, the
teacher and the step log committed together, nothing left by a failure, and a resumed run keeps
the step log of the steps its checkpoint covers."""

from __future__ import annotations

import pytest
import torch

from lead_core.artifacts import OutputNotWritableError
from lead_core.report import read_step_log
from lead_core.train import checkpoint as ckpt
from lead_core.train import run
from tests.train.conftest import base_config


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


class _Stop(Exception):
    pass


def _stop_at(step: int):
    def callback(info):
        if info.step == step:
            raise _Stop(f"stopped at step {step}")

    return callback


def _config(toy, tmp_path, tiny_bert, **overrides):
    values = dict(model=str(tiny_bert), architecture="de", step_log=str(tmp_path / "logs" / "steps.jsonl"))
    values.update(overrides)
    return base_config(toy, tmp_path / "model", **values)


@pytest.mark.parametrize("unwritable", ["out", "step_log", "checkpoint_dir"])
def test_an_unwritable_output_fails_before_the_first_step(tmp_path, toy, tiny_bert, unwritable):
    (tmp_path / "file").write_text("a file, not a folder")
    config = _config(toy, tmp_path, tiny_bert, checkpoint_every=1, max_steps=1)
    setattr(config, unwritable, str(tmp_path / "file" / "sub"))
    steps = []
    with pytest.raises(OutputNotWritableError, match=f"{tmp_path / 'file' / 'sub'}"):
        run(config, callbacks=[lambda info: steps.append(info.step)])
    assert steps == []  # not one step trained
    assert _listing(tmp_path) == ["file"]


def test_a_run_that_fails_before_step_1_leaves_no_step_log(tmp_path, toy, tiny_bert):
    config = _config(toy, tmp_path, tiny_bert, model=str(tmp_path / "no-such-model"), architecture=None)
    with pytest.raises(Exception, match="no-such-model"):
        run(config)
    assert _listing(tmp_path) == []


def test_a_failed_run_leaves_neither_model_nor_teacher_nor_step_log(
    tmp_path, toy, tiny_bert, de_bert_teacher
):
    config = _config(
        toy,
        tmp_path,
        tiny_bert,
        method="rd",
        teacher=str(de_bert_teacher),
        out_teacher=str(tmp_path / "teacher"),
    )
    with pytest.raises(_Stop):
        run(config, callbacks=[_stop_at(2)])
    assert _listing(tmp_path) == []

    run(config)  # the same config succeeds: all three appear together
    assert [row["step"] for row in read_step_log(config.step_log)] == [1, 2]
    assert (tmp_path / "model").is_dir() and (tmp_path / "teacher").is_dir()
    assert not [p for p in _listing(tmp_path) if ".tmp-" in p]


def _comparable(rows):
    return [{k: v for k, v in row.items() if k != "queries_per_s"} for row in rows]  # timing varies


def test_resume_keeps_the_step_log_of_the_steps_the_checkpoint_covers(tmp_path, toy, tiny_bert):
    torch.set_num_threads(1)
    full = _config(toy, tmp_path / "full", tiny_bert, max_steps=5)
    run(full)
    full_rows = read_step_log(full.step_log)
    assert [row["step"] for row in full_rows] == [1, 2, 3, 4, 5]

    killed = _config(toy, tmp_path / "killed", tiny_bert, max_steps=5, checkpoint_every=2)
    with pytest.raises(_Stop):
        run(killed, callbacks=[_stop_at(5)])  # after the checkpoint at step 4; steps 1-5 logged
    assert not (tmp_path / "killed" / "logs").exists()
    saved = read_step_log(ckpt.latest_checkpoint(killed.checkpoint_path) / ckpt.STEP_LOG_FILE)
    assert [row["step"] for row in saved] == [1, 2, 3, 4]

    killed.resume = True
    result = run(killed)
    assert result["steps_run"] == 1
    rows = read_step_log(killed.step_log)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5]  # 1-4 kept from before, 5 redone once
    assert _comparable(rows) == _comparable(full_rows)


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path, toy, tiny_bert):
    config = _config(toy, tmp_path, tiny_bert, max_steps=2, checkpoint_every=2, step_log=None)
    run(config)
    latest = ckpt.latest_checkpoint(config.checkpoint_path)
    assert ckpt.load_state(latest)["step"] == 2  # our own state loads under weights_only=True

    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    state = torch.load(latest / ckpt.STATE_FILE, weights_only=True)
    state["selection"] = RunsCode()
    torch.save(state, latest / ckpt.STATE_FILE)
    with pytest.raises(ckpt.UnsafeCheckpointError, match=f"{latest / ckpt.STATE_FILE}: refused to load"):
        run(_config(toy, tmp_path, tiny_bert, max_steps=2, checkpoint_every=2, step_log=None, resume=True))
    assert not marker.exists()
    # the file really runs code when unpickled without the restriction
    with open(latest / ckpt.STATE_FILE, "rb") as fh:
        torch.load(fh, weights_only=False)
    assert marker.exists()


def test_resume_may_write_the_step_log_elsewhere(tmp_path, toy, tiny_bert):
    first = _config(toy, tmp_path, tiny_bert, max_steps=3, checkpoint_every=2)
    with pytest.raises(_Stop):
        run(first, callbacks=[_stop_at(3)])
    moved = _config(
        toy,
        tmp_path,
        tiny_bert,
        max_steps=3,
        checkpoint_every=2,
        resume=True,
        step_log=str(tmp_path / "b.jsonl"),
    )
    assert run(moved)["steps_run"] == 1
    assert [row["step"] for row in read_step_log(tmp_path / "b.jsonl")] == [1, 2, 3]
