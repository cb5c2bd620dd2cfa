"""The trainer end to end on tiny random backbones: every method, both teacher modes, bad input."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from lead_core.cli import main as cli_main
from lead_core.config import ConfigError
from lead_core.losses.feature import TokenizerMismatchError
from lead_core.losses.objectives import own_group, positive_mask
from lead_core.models import load_model
from lead_core.tracking import MlflowTracker
from lead_core.train import run
from tests.train.conftest import base_config, same_weights, state_of, without_dropout


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_positive_mask_and_own_group():
    # 2 queries, groups of 3; gathered over 2 ranks on rank 1: positives at 6 + 0 and 6 + 3.
    mask = positive_mask(2, 3, 12, rank=1, device="cpu")
    assert mask.nonzero().tolist() == [[0, 6], [1, 9]]
    assert positive_mask(2, 3, 6, rank=0, device="cpu").nonzero().tolist() == [[0, 0], [1, 3]]
    assert positive_mask(2, 3, 3, rank=1, device="cpu").nonzero().tolist() == [[0, 0], [1, 0]]
    scores = torch.arange(24.0).view(1, 2, 12)
    assert own_group(scores, 3, rank=1).tolist() == [[[6, 7, 8], [21, 22, 23]]]


def test_phase1_dual_encoder_learns_toy_set(tmp_path, toy, tiny_bert):
    losses = []
    config = base_config(
        toy,
        tmp_path / "de",
        model=str(tiny_bert),
        architecture="de",
        pooling="mean",
        max_steps=30,
        lr=3e-3,
        warmup_ratio=0.0,
    )
    result = run(config, callbacks=[lambda info: losses.append(info.metrics["loss/total"])])
    assert len(losses) == 30 and result["steps"] == 30
    assert result["loss_last_mean"] == pytest.approx(np.mean(losses[-3:]))  # the last tenth of the steps
    # 16 passages per query: chance level is ln 16 = 2.77
    assert np.mean(losses[:5]) > 2.0
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    model = load_model(tmp_path / "de")
    assert model.config.architecture == "de" and model.config.pooling == "mean"
    assert result["queries_per_s"] > 0


@pytest.mark.parametrize(
    "architecture, backbone, passages", [("cb", "tiny_mpnet", 16), ("ce", "tiny_bert", 4)]
)
def test_cb_and_ce_warmups(request, tmp_path, toy, architecture, backbone, passages):
    folder = request.getfixturevalue(backbone)
    seen = []
    config = base_config(toy, tmp_path / architecture, model=str(folder), architecture=architecture, lr=1e-3)
    run(config, callbacks=[lambda info: seen.append(info.num_passages)])
    assert seen == [passages, passages]  # CB: every passage of the batch; CE: its own group
    trained = load_model(tmp_path / architecture)
    assert trained.config.architecture == architecture
    assert trained.config.query_max_length == 8


@pytest.mark.parametrize("joint", [True, False])
def test_lead_cross_tokenizer_joint_trains_both(tmp_path, toy, tiny_bert, cb_teacher, joint):
    """MPNet-tokenizer ColBERT teacher -> BERT-tokenizer DE student (the liberal setting)."""
    infos = []
    config = base_config(
        toy,
        tmp_path / "student",
        model=str(tiny_bert),
        architecture="de",
        teacher=str(cb_teacher),
        out_teacher=str(tmp_path / "teacher"),
        method="lead",
        k=3,
        joint=joint,
        lr=1e-3,
        max_steps=3,
        warmup_ratio=0.0,
    )
    result = run(config, callbacks=[infos.append])
    teacher_changed = not same_weights(state_of(cb_teacher), state_of(tmp_path / "teacher"))
    assert teacher_changed == joint
    student = load_model(tmp_path / "student")
    initial = load_model(tmp_path / "student").backbone.__class__.from_pretrained(tiny_bert).state_dict()
    assert any(not torch.equal(v, initial[k]) for k, v in student.backbone.state_dict().items())
    for info in infos:
        teacher_layers, student_layers = info.selection
        assert len(teacher_layers) == len(student_layers) == 3
        assert sum(info.metrics[f"layer_weight/k{i}"] for i in range(3)) == pytest.approx(1.0, abs=1e-5)
        assert info.num_passages == 16
    # random selection, re-drawn every step: not three identical draws (fixed seed 888)
    assert len({tuple(map(tuple, i.selection)) for i in infos}) > 1
    for term in ("layer", "response", "teacher_hard", "student_hard"):
        assert np.isfinite(result[f"final/loss/{term}"])
    if not joint:  # w/o joint training: L_lyr + KL(t||s) + L_stu
        m = infos[-1].metrics
        assert m["loss/total"] == pytest.approx(
            m["loss/layer"] + m["loss/response"] + m["loss/student_hard"], rel=1e-5
        )


def test_lead_cross_encoder_teacher_uses_own_groups(tmp_path, toy, tiny_bert, ce_teacher):
    seen = []
    config = base_config(
        toy,
        tmp_path / "student",
        model=str(tiny_bert),
        architecture="de",
        teacher=str(ce_teacher),
        method="lead",
        k=2,
        selection="last",
        max_steps=2,
    )
    run(config, callbacks=[seen.append])
    assert [i.num_passages for i in seen] == [4, 4]  # the student's scores restricted to G = 4
    assert seen[0].selection == ([4, 5], [2, 3])


def test_weighted_selection_and_reselect_interval(tmp_path, toy, tiny_bert, cb_teacher):
    seen = []
    config = base_config(
        toy,
        tmp_path / "student",
        model=str(tiny_bert),
        architecture="de",
        teacher=str(cb_teacher),
        method="lead",
        k=3,
        selection="weighted",
        reselect_every=2,
        max_steps=4,
    )
    run(config, callbacks=[seen.append])
    selections = [i.selection for i in seen]
    assert selections[0] == selections[1] and selections[2] == selections[3]


def test_rd_keeps_teacher_unchanged(tmp_path, toy, tiny_bert, cb_teacher):
    config = base_config(
        toy,
        tmp_path / "student",
        model=str(tiny_bert),
        architecture="de",
        teacher=str(cb_teacher),
        out_teacher=str(tmp_path / "teacher"),
        method="rd",
        lr=1e-3,
    )
    seen = []
    result = run(config, callbacks=[seen.append])
    assert [i.num_passages for i in seen] == [16, 16]  # P: every passage of the batch (4 queries x 4)
    assert same_weights(state_of(cb_teacher), state_of(tmp_path / "teacher"))
    assert result["final/loss/total"] == pytest.approx(
        result["final/loss/response"] + result["final/loss/student_hard"], rel=1e-5
    )


def test_fd_same_tokenizer_runs_and_different_tokenizers_fail(
    tmp_path, toy, tiny_bert, de_bert_teacher, cb_teacher
):
    result = run(
        base_config(
            toy,
            tmp_path / "fd",
            model=str(tiny_bert),
            architecture="de",
            teacher=str(de_bert_teacher),
            method="fd",
        )
    )
    assert result["final/loss/feature"] >= 0.0
    with pytest.raises(TokenizerMismatchError, match="needs the same tokenizer"):
        run(
            base_config(
                toy,
                tmp_path / "x",
                model=str(tiny_bert),
                architecture="de",
                teacher=str(cb_teacher),
                method="fd",
            )
        )
    assert not (tmp_path / "x").exists()


def test_fd_aligns_the_final_layers_attention(tmp_path, toy, tiny_bert):
    """A student identical to its teacher (dropout off) has the teacher's final-layer attention
    maps: FD's feature term is 0 at the first step (any other teacher layer would differ)."""
    from lead_core.models import ModelConfig, build_model

    model = tmp_path / "de"
    backbone = without_dropout(tiny_bert, tmp_path / "bert")
    build_model(ModelConfig("de", str(backbone), query_max_length=8, passage_max_length=16)).save(model)
    infos = []
    config = base_config(toy, tmp_path / "fd", model=str(model), teacher=str(model), method="fd", max_steps=1)
    run(config, callbacks=[infos.append])
    assert infos[0].metrics["loss/feature"] == pytest.approx(0.0, abs=1e-7)
    assert infos[0].metrics["loss/student_hard"] > 0


def test_model_folder_without_weights(tmp_path, toy, tiny_bert):
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_bert, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ValueError, match="no model weights"):
        run(base_config(toy, tmp_path / "out", model=str(folder), architecture="de"))
    with pytest.raises(ConfigError, match="--architecture"):
        run(base_config(toy, tmp_path / "out", model=str(tiny_bert)))
    assert not (tmp_path / "out").exists()


def test_cli_runs_from_a_config_file_and_reports_errors_in_one_line(tmp_path, toy, tiny_bert, capsys):
    config = base_config(toy, tmp_path / "out", model=str(tiny_bert), architecture="de")
    values = {k: v for k, v in vars(config).items() if v is not None}
    (tmp_path / "train.json").write_text(json.dumps(values))
    assert cli_main(["train", "--config", str(tmp_path / "train.json"), "--max-steps", "1"]) == 0
    assert (tmp_path / "out" / "lead_model.json").is_file()
    assert (
        cli_main(
            ["train", "--config", str(tmp_path / "train.json"), "--corpus", str(tmp_path / "missing.parquet")]
        )
        == 1
    )
    assert "missing.parquet: no such file" in capsys.readouterr().err


def test_tracking_failure_does_not_stop_training(tmp_path, toy, tiny_bert, monkeypatch, caplog):
    calls = []

    class DeadServer:  # the MLflow client of a tracking server that went away
        def log_batch(self, run_id, metrics=(), params=()):
            calls.append(sorted({m.step for m in metrics}))  # the steps whose metrics it sends
            raise ConnectionError("tracking server gone")

        def log_artifacts(self, run_id, local_dir, artifact_path=None):
            calls.append(artifact_path)
            raise ConnectionError("tracking server gone")

    @contextmanager
    def broken_run(stage, config=None):
        yield MlflowTracker(DeadServer(), "run-1", "http://127.0.0.1:5000", flush_interval_s=0.0)

    monkeypatch.setattr("lead_core.train.stage.stage_run", broken_run)
    config = base_config(
        toy, tmp_path / "out", model=str(tiny_bert), architecture="de", max_steps=3, log_every=1
    )
    with caplog.at_level("WARNING"):
        result = run(config)
    # one failure at step 1, then tracking is off: steps 2-3 and the final model upload send nothing
    assert result["steps"] == 3 and calls == [[1]]
    assert sum("continuing without tracking" in r.getMessage() for r in caplog.records) == 1


def test_epochs_set_the_number_of_steps(tmp_path, toy, tiny_bert):
    seen = []
    config = base_config(
        toy,
        tmp_path / "out",
        model=str(tiny_bert),
        architecture="de",
        max_steps=0,
        epochs=2,
        batch_size=4,
        grad_accum=2,
    )
    result = run(config, callbacks=[seen.append])
    # 16 queries / 4 per micro-batch = 4 micro-batches = 2 optimizer steps per epoch
    assert result["steps"] == 4
    assert [(i.epoch, i.batch_index) for i in seen] == [(0, 1), (0, 3), (1, 1), (1, 3)]


def test_fd_colbert_teacher_with_query_augmentation_same_tokenizer(tmp_path, toy, tiny_bert):
    """[MASK]-augmented ColBERT queries (length 12) vs a DE student's batch-padded queries."""
    from lead_core.models import ModelConfig, build_model

    teacher = tmp_path / "cb-bert"
    build_model(
        ModelConfig("cb", str(tiny_bert), query_max_length=12, passage_max_length=16, query_augmentation=True)
    ).save(teacher)
    infos = []
    result = run(
        base_config(
            toy,
            tmp_path / "fd",
            model=str(tiny_bert),
            architecture="de",
            teacher=str(teacher),
            method="fd",
        ),
        callbacks=[infos.append],
    )
    assert len(infos) == 2
    assert 0.0 < result["final/loss/feature"] < float("inf")
    assert result["final/loss/total"] == pytest.approx(
        result["final/loss/feature"] + result["final/loss/student_hard"], rel=1e-5
    )


def test_step_log_writes_one_row_per_step(tmp_path, toy, tiny_bert):
    from lead_core.report import read_step_log

    log = tmp_path / "logs" / "steps.jsonl"
    run(base_config(toy, tmp_path / "de", model=str(tiny_bert), architecture="de", step_log=str(log)))
    rows = read_step_log(log)
    assert [row["step"] for row in rows] == [1, 2]
    assert all(np.isfinite(row["loss/total"]) and row["loss/total"] > 0 for row in rows)
