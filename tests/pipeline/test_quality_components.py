"""The components the quality pipeline adds, run as functions on tiny models and toy data (no kfp.local):
`untrained` (the zero-shot row's model) and `distill` with method none (the no-teacher row)."""

import json
from pathlib import Path
from types import SimpleNamespace

import components as c
from lead_core.models import ModelConfig, build_model, load_model
from tests.train.conftest import same_weights, write_toy_data


def _artifact(path: Path) -> SimpleNamespace:
    return SimpleNamespace(path=str(path))


def test_untrained_saves_the_backbone_as_built_with_the_runs_model_settings(tmp_path, tiny_bert):
    out = tmp_path / "model"
    # KFP hands a dict's numbers over as floats; training-only options are not the model's
    options = {"query_max_length": 8.0, "passage_max_length": 16.0, "pooling": "mean", "lr": 1e-3}
    c.untrained.python_func(
        init=_artifact(tiny_bert), architecture="de", options=options, model=_artifact(out)
    )
    saved = json.loads((out / "lead_model.json").read_text())
    assert (saved["architecture"], saved["pooling"]) == ("de", "mean")
    assert (saved["query_max_length"], saved["passage_max_length"]) == (8, 16)
    built = build_model(ModelConfig("de", str(tiny_bert), pooling="mean"))
    assert same_weights(load_model(out).state_dict(), built.state_dict())


def test_distill_with_method_none_trains_the_student_without_the_teacher(tmp_path, tiny_bert):
    toy = write_toy_data(tmp_path / "toy")
    student = tmp_path / "student"
    build_model(ModelConfig("de", str(tiny_bert), query_max_length=8, passage_max_length=16)).save(student)
    teacher = tmp_path / "teacher"
    build_model(ModelConfig("de", str(tiny_bert), query_max_length=8, passage_max_length=16)).save(teacher)
    outs = {}
    for method in ("none", "rd"):
        out = tmp_path / method
        c.distill.python_func(
            groups=_artifact(toy.groups.parent),
            data=_artifact(toy.corpus.parent),
            corpus=_artifact(toy.corpus.parent),
            student=_artifact(student),
            teacher=_artifact(teacher),
            params={
                "method": method,
                "max_steps": 3.0,
                "batch_size": 4.0,
                "num_negatives": 2.0,
                "seed": 13.0,
            },
            options={"lr": 1e-3, "progress": False},
            model=_artifact(out / "model"),
            teacher_out=_artifact(out / "teacher"),
            log=_artifact(out / "log.jsonl"),
        )
        outs[method] = out
        assert len((out / "log.jsonl").read_text().splitlines()) == 3  # one line per optimizer step
        assert not same_weights(load_model(out / "model").state_dict(), load_model(student).state_dict())
    assert list((outs["none"] / "teacher").iterdir()) == []  # no teacher was loaded, none saved
    # RD keeps its teacher unchanged and saves it (the component is the same for both)
    assert same_weights(load_model(outs["rd"] / "teacher").state_dict(), load_model(teacher).state_dict())
