"""Components: one trainer (lead_core.train) for phase 1 and the warm-ups (`train`) and for distillation
(`distill`); `untrained`: the model they start from, as it is (zero-shot baselines)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components._image import BASE_IMAGE_CPU, BASE_IMAGE_CUDA


@dsl.component(base_image=BASE_IMAGE_CUDA, install_kfp_package=False)
def train(
    groups: Input[Dataset],
    corpus: Input[Dataset],
    data: Input[Dataset],
    init: Input[Model],
    params: dict,
    options: dict,
    model: Output[Model],
):
    """Train a model without a teacher (phase-1 DE, teacher or student warm-up).

    Args:
        groups: training groups (groups.parquet): each query's positives and its negative pool.
        corpus: the dataset's ingested corpus (corpus.parquet): the passages' texts.
        data: ingested split holding queries.parquet.
        init: initial model: a backbone folder (with params.architecture) or a saved lead model.
        params: lead_core.train.Config fields (architecture, max_steps, lr, batch_size, num_negatives, seed, ...).
        options: further lead_core.train.Config fields (e.g. passage_max_length, precision); params win.
        model: output lead model directory.
    """
    from lead_core.config import from_dict
    from lead_core.distributed import accelerator_count, launch
    from lead_core.train import Config, run

    paths = {
        "groups": groups.path + "/groups.parquet",
        "corpus": corpus.path + "/corpus.parquet",
        "queries": data.path + "/queries.parquet",
        "model": init.path,
        "out": model.path,
    }
    config = from_dict(Config, {**options, **params, **paths}, where="train params")
    launch(run, config, nproc=accelerator_count())  # one process per GPU the task sees


@dsl.component(base_image=BASE_IMAGE_CUDA, install_kfp_package=False)
def distill(
    groups: Input[Dataset],
    corpus: Input[Dataset],
    data: Input[Dataset],
    student: Input[Model],
    teacher: Input[Model],
    params: dict,
    options: dict,
    model: Output[Model],
    teacher_out: Output[Model],
    log: Output[Dataset],
):
    """Distil the teacher into the student (LEAD, RD or FD); both may train jointly.

    Args:
        groups: training groups (groups.parquet), e.g. the phase-1 DE's mined hard negatives.
        corpus: the dataset's ingested corpus (corpus.parquet): the passages' texts.
        data: ingested split holding queries.parquet.
        student: the warm student (a saved lead model directory).
        teacher: the warm teacher (a saved lead model directory).
        params: lead_core.train.Config fields (method, k, tau_d, tau_l, reweight, joint, selection, max_steps, lr, ...);
            method none trains the student without the teacher (the no-teacher baseline).
        options: further lead_core.train.Config fields (e.g. passage_max_length, precision); params win.
        model: output student model directory.
        teacher_out: output teacher model directory (changed by joint LEAD training).
        log: output JSONL file: each optimizer step's losses and layer weights (`lead report` plots it).
    """
    from lead_core.config import from_dict
    from lead_core.distributed import accelerator_count, launch
    from lead_core.train import Config, run

    paths = {
        "groups": groups.path + "/groups.parquet",
        "corpus": corpus.path + "/corpus.parquet",
        "queries": data.path + "/queries.parquet",
        "model": student.path,
        "teacher": teacher.path,
        "out": model.path,
        "out_teacher": teacher_out.path,
        "step_log": log.path,
    }
    if params.get("method") == "none":
        # The no-teacher baseline (a quality comparison's row): the student trains on alone, so
        # the trainer takes no teacher, and teacher_out is left an empty folder.
        import os

        del paths["teacher"], paths["out_teacher"]
        os.makedirs(teacher_out.path, exist_ok=True)
    config = from_dict(Config, {**options, **params, **paths}, where="distill params")
    launch(run, config, nproc=accelerator_count())  # one process per GPU the task sees


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def untrained(init: Input[Model], architecture: str, options: dict, model: Output[Model]):
    """The model a training run from the backbone `init` starts from, saved without training (a
    quality comparison's zero-shot row).

    Args:
        init: a backbone folder (the backbone component's output).
        architecture: de, cb or ce.
        options: lead_core.train.Config fields of the training runs; the model's own (pooling,
            query_max_length, passage_max_length, appended_linear) are used, the rest ignored.
        model: output lead model directory.
    """
    from dataclasses import fields

    from lead_core.config import from_dict
    from lead_core.models import ModelConfig, build_model

    own = {f.name for f in fields(ModelConfig)}
    settings = {key: value for key, value in options.items() if key in own}
    config = from_dict(
        ModelConfig,
        {**settings, "architecture": architecture, "backbone": init.path},
        where="untrained options",
    )  # converts the numbers KFP hands over as floats
    build_model(config).save(model.path)
