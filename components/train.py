"""Components: one trainer (lead_core.train) for phase 1 and the warm-ups (`train`) and for distillation (`distill`)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components._image import BASE_IMAGE_CUDA


@dsl.component(base_image=BASE_IMAGE_CUDA, install_kfp_package=False)
def train(
    groups: Input[Dataset],
    data: Input[Dataset],
    init: Input[Model],
    params: dict,
    options: dict,
    model: Output[Model],
):
    """Train a model without a teacher (phase-1 DE, teacher or student warm-up).

    Args:
        groups: training groups (groups.parquet): each query's positives and its negative pool.
        data: ingested split holding corpus.parquet and queries.parquet.
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
        "corpus": data.path + "/corpus.parquet",
        "queries": data.path + "/queries.parquet",
        "model": init.path,
        "out": model.path,
    }
    config = from_dict(Config, {**options, **params, **paths}, where="train params")
    launch(run, config, nproc=accelerator_count())  # one process per GPU the task sees


@dsl.component(base_image=BASE_IMAGE_CUDA, install_kfp_package=False)
def distill(
    groups: Input[Dataset],
    data: Input[Dataset],
    student: Input[Model],
    teacher: Input[Model],
    params: dict,
    options: dict,
    model: Output[Model],
    teacher_out: Output[Model],
):
    """Distil the teacher into the student (LEAD, RD or FD); both may train jointly.

    Args:
        groups: training groups (groups.parquet), e.g. the phase-1 DE's mined hard negatives.
        data: ingested split holding corpus.parquet and queries.parquet.
        student: the warm student (a saved lead model directory).
        teacher: the warm teacher (a saved lead model directory).
        params: lead_core.train.Config fields (method, k, tau_d, tau_l, reweight, joint, selection, max_steps, lr, ...).
        options: further lead_core.train.Config fields (e.g. passage_max_length, precision); params win.
        model: output student model directory.
        teacher_out: output teacher model directory (changed by joint LEAD training).
    """
    from lead_core.config import from_dict
    from lead_core.distributed import accelerator_count, launch
    from lead_core.train import Config, run

    paths = {
        "groups": groups.path + "/groups.parquet",
        "corpus": data.path + "/corpus.parquet",
        "queries": data.path + "/queries.parquet",
        "model": student.path,
        "teacher": teacher.path,
        "out": model.path,
        "out_teacher": teacher_out.path,
    }
    config = from_dict(Config, {**options, **params, **paths}, where="distill params")
    launch(run, config, nproc=accelerator_count())  # one process per GPU the task sees
