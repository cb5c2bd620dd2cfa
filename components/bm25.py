"""Component: BM25 top-k run and BM25 or random negatives as training groups (lead_core.bm25)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def bm25(
    data: Input[Dataset],
    k: int,
    negatives: str,
    num_negatives: int,
    seed: int,
    run: Output[Dataset],
    groups: Output[Dataset],
):
    """BM25 top-k of the split's queries, and a training group per query.

    Args:
        data: ingested split (corpus.parquet, queries.parquet, qrels.parquet).
        k: run depth per query.
        negatives: negatives of the groups: bm25 (top hits not judged relevant) or random documents.
        num_negatives: negatives per training group.
        seed: seed of the random negatives.
        run: output folder holding run.parquet and run.trec.
        groups: output folder holding groups.parquet.
    """
    from lead_core.bm25 import Config
    from lead_core.bm25 import run as bm25_run

    bm25_run(
        Config(
            corpus=data.path + "/corpus.parquet",
            queries=data.path + "/queries.parquet",
            qrels=data.path + "/qrels.parquet",
            out_run=run.path + "/run.parquet",
            out_trec=run.path + "/run.trec",
            out_groups=groups.path + "/groups.parquet",
            k=k,
            negatives=negatives,
            num_negatives=num_negatives,
            seed=seed,
        )
    )
