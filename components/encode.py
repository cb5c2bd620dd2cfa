"""Component: embeddings of a corpus with a dual encoder (lead_core.encode)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components._image import BASE_IMAGE_CUDA


@dsl.component(base_image=BASE_IMAGE_CUDA, install_kfp_package=False)
def encode(model: Input[Model], corpus: Input[Dataset], embeddings: Output[Dataset]):
    """Encode every passage of the corpus.

    Args:
        model: a saved dual-encoder (de) lead model directory.
        corpus: the dataset's ingested corpus (corpus.parquet).
        embeddings: output embeddings directory (Parquet shards and meta.json).
    """
    from lead_core.distributed import accelerator_count, launch
    from lead_core.encode import Config, run

    config = Config(
        model=model.path, input=corpus.path + "/corpus.parquet", out=embeddings.path, is_query=False
    )
    launch(run, config, nproc=accelerator_count())  # one process per GPU the task sees
