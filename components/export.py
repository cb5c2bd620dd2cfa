"""Component: the distilled student as a sentence-transformers folder, logged and registered in MLflow (lead_core.export)."""

from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def export(
    model: Input[Model],
    teacher: Input[Model],
    metrics: Input[Metrics],
    teacher_source: str,
    dataset: str,
    registered_model_name: str,
    exported: Output[Model],
):
    """Export the student (`SentenceTransformer(path)` loads it); with tracking on, log it as an
    MLflow model with its metrics, teacher and dataset, registered with the alias `candidate`.

    Args:
        model: the student (a saved lead model directory).
        teacher: the teacher it was distilled from (its type and backbone are recorded).
        metrics: the student's evaluation (its file holds the evaluation JSON).
        teacher_source: the teacher's backbone source (the pipeline's teacher_model).
        dataset: identity of the training data (recorded with the model).
        registered_model_name: MLflow Model Registry name.
        exported: output sentence-transformers folder.
    """
    from lead_core.export import Config, run

    run(
        Config(
            model=model.path,
            out=exported.path,
            metrics=metrics.path,
            teacher=teacher.path,
            teacher_source=teacher_source,
            dataset=dataset,
            registered_model_name=registered_model_name,
        )
    )
