"""Component: exact top-k search of a split's queries against an index (lead_core.search)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components._image import BASE_IMAGE_CUDA


@dsl.component(base_image=BASE_IMAGE_CUDA, install_kfp_package=False)
def search(index: Input[Dataset], model: Input[Model], data: Input[Dataset], k: int, run: Output[Dataset]):
    """Encode the split's queries with the model and retrieve their top-k from the index.

    Args:
        index: index directory built from the corpus embeddings of the same model.
        model: the dual-encoder (de) lead model directory that encoded the corpus.
        data: ingested split holding queries.parquet.
        k: results per query.
        run: output folder holding run.parquet and run.trec.
    """
    from lead_core.distributed import accelerator_count, launch
    from lead_core.search import Config
    from lead_core.search import run as search_run

    launch(
        search_run,
        Config(
            index=index.path,
            model=model.path,
            queries=data.path + "/queries.parquet",
            out_run=run.path + "/run.parquet",
            out_trec=run.path + "/run.trec",
            k=k,
        ),
        nproc=accelerator_count(),  # one process per GPU the task sees
    )
