"""Component: a ColBERT, cross-encoder or dual-encoder model re-scores a run's top-k (lead_core.rerank)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components._image import BASE_IMAGE_CUDA


@dsl.component(base_image=BASE_IMAGE_CUDA, install_kfp_package=False)
def rerank(
    model: Input[Model],
    run: Input[Dataset],
    corpus: Input[Dataset],
    data: Input[Dataset],
    k: int,
    reranked: Output[Dataset],
):
    """Re-score each query's top-k of the run with the model (how CB/CE teachers are evaluated).

    Args:
        model: a saved lead model directory (cb, ce or de).
        run: run folder holding run.parquet (e.g. the phase-1 DE's top-k for the evaluation queries).
        corpus: the dataset's ingested corpus (corpus.parquet).
        data: ingested split holding queries.parquet.
        k: re-score each query's first k results; the run's results below rank k follow them in
            their first-stage order, so recall beyond k is the first stage's.
        reranked: output folder holding run.parquet and run.trec.
    """
    from lead_core.distributed import accelerator_count, launch
    from lead_core.rerank import Config
    from lead_core.rerank import run as rerank_run

    launch(
        rerank_run,
        Config(
            model=model.path,
            run=run.path + "/run.parquet",
            corpus=corpus.path + "/corpus.parquet",
            queries=data.path + "/queries.parquet",
            out_run=reranked.path + "/run.parquet",
            out_trec=reranked.path + "/run.trec",
            k=k,
        ),
        nproc=accelerator_count(),  # one process per GPU the task sees
    )
