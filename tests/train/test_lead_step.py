"""The trainer's LEAD step is `lead_loss` on the batch with the config's settings: its losses and
layer weights at step 1 equal a direct computation from the initial models (dropout off), for
settings away from the defaults (tau_d, tau_l, reweight, joint); weighted selection is re-drawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lead_core.losses import lead_loss, select_layers, teacher_layer_weights
from lead_core.models import ModelConfig, build_model, load_model
from lead_core.train import run
from lead_core.train.data import BatchPlan, TrainingData
from tests.train.conftest import base_config, first_positives, without_dropout


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_bert, tiny_mpnet):
    """(student, teacher) lead model dirs without dropout: a 4-layer DE and a 6-layer ColBERT."""
    root = tmp_path_factory.mktemp("lead-step")
    student, teacher = root / "student", root / "teacher"
    lengths = dict(query_max_length=8, passage_max_length=16)
    build_model(
        ModelConfig("de", str(without_dropout(tiny_bert, root / "bert")), pooling="mean", **lengths)
    ).save(student)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        build_model(ModelConfig("cb", str(without_dropout(tiny_mpnet, root / "mpnet")), **lengths)).save(
            teacher
        )
    return student, teacher


def all_layer_scores(student_dir, teacher_dir, queries, passages) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, Q, P] teacher and [M, Q, P] student scores of every layer, initial weights."""
    out = []
    for path in (teacher_dir, student_dir):
        model = load_model(path)
        with torch.no_grad():
            out.append(
                model(model.prepare(queries, passages), layers=list(range(model.num_layers))).layer_scores
            )
    return out[0], out[1]


SETTINGS = [
    dict(tau_d=2.0, tau_l=0.05, reweight=True, joint=True),
    dict(tau_d=0.5, tau_l=10.0, reweight=False, joint=False),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["tau_d2-tau_l0.05-reweight", "tau_d0.5-uniform-frozen"])
def test_lead_step_is_lead_loss_with_the_config_settings(tmp_path, toy, models, settings):
    student_dir, teacher_dir = models
    infos = []
    config = base_config(
        toy,
        tmp_path / "out",
        model=str(student_dir),
        teacher=str(teacher_dir),
        method="lead",
        k=3,
        max_steps=1,
        **settings,
    )
    run(config, callbacks=[infos.append])
    (info,) = infos

    batch = BatchPlan(TrainingData(toy.groups, toy.corpus, toy.queries, 3), 4, seed=888).batch(0)
    teacher, student = all_layer_scores(student_dir, teacher_dir, batch.queries, batch.passages)
    positives = first_positives(len(batch.queries), batch.group_size)
    expected = lead_loss(teacher, student, positives, *info.selection, **settings)
    got = {name: info.metrics[f"loss/{name}"] for name in ("total", "layer", "response", "student_hard")}
    want = {name: float(getattr(expected, name)) for name in got}
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    weights = [info.metrics[f"layer_weight/k{i}"] for i in range(3)]
    assert weights == pytest.approx(expected.layer_weights.tolist(), abs=1e-6)
    if not settings["reweight"]:
        assert weights == pytest.approx([1 / 3] * 3)

    # The settings matter on this batch: the defaults give other numbers (so the test can fail).
    defaults = lead_loss(teacher, student, positives, *info.selection, tau_d=1.0, tau_l=10.0, reweight=True)
    assert abs(float(defaults.layer) - want["layer"]) > 1e-3
    assert float((defaults.layer_weights - expected.layer_weights).abs().max()) > 1e-3


def test_weighted_selection_is_drawn_from_eq7_weights_and_redrawn_every_reselect_every(tmp_path, toy, models):
    student_dir, teacher_dir = models
    infos = []
    config = base_config(
        toy,
        tmp_path / "out",
        model=str(student_dir),
        teacher=str(teacher_dir),
        method="lead",
        k=3,
        selection="weighted",
        tau_l=0.05,
        reselect_every=2,
        max_steps=6,
        lr=1e-3,
    )
    run(config, callbacks=[infos.append])
    selections = [tuple(map(tuple, i.selection)) for i in infos]
    # kept for reselect_every steps, then drawn again: three draws, not all the same
    assert selections[0::2] == selections[1::2]
    assert len(set(selections[0::2])) > 1

    # The first draw: Eq. 7 weights over all 6 teacher layers (tau_l from the config) and the
    # trainer's selection stream (seeded from the run seed).
    from lead_core.losses.objectives import SELECTION_STREAM

    batch = BatchPlan(TrainingData(toy.groups, toy.corpus, toy.queries, 3), 4, seed=888).batch(0)
    teacher, _ = all_layer_scores(student_dir, teacher_dir, batch.queries, batch.passages)
    weights = teacher_layer_weights(teacher, first_positives(len(batch.queries), batch.group_size), 0.05)
    rng = np.random.default_rng([888, SELECTION_STREAM])
    assert selections[0] == tuple(map(tuple, select_layers("weighted", 6, 4, 3, rng, weights=weights)))
