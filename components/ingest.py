"""Components: a dataset's corpus, ingested once, and each query split against it (lead_core.ingest)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def ingest_corpus(source: str, layout: str, dataset_identity: str, corpus: Output[Dataset]):
    """Read the dataset's corpus into corpus.parquet, once for all its splits.

    Args:
        source: dataset folder or URI (local path, http(s)/s3/gs, .zip/.tar.gz archive, or beir:<name>).
        layout: file layout of the dataset: msmarco or beir.
        dataset_identity: the source's identity at run time (the identity component): puts its contents
            into this task's cache key; recorded in the output's metadata.
        corpus: output folder holding corpus.parquet.
    """
    from lead_core.ingest import Config, run

    corpus.metadata["dataset_identity"] = dataset_identity
    run(Config(source=source, layout=layout, out=corpus.path, what="corpus"))


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def ingest(
    source: str,
    layout: str,
    split: str,
    drop_unknown_qrels: bool,
    dataset_identity: str,
    corpus: Input[Dataset],
    data: Output[Dataset],
):
    """Read a dataset split into queries.parquet and qrels.parquet, its qrels checked against the corpus.

    Args:
        source: dataset folder or URI (local path, http(s)/s3/gs, .zip/.tar.gz archive, or beir:<name>).
        layout: file layout of the dataset: msmarco or beir.
        split: query split to read, e.g. train, dev, test, dl19.
        drop_unknown_qrels: drop qrels naming documents outside the corpus (pooled corpora) instead of failing.
        dataset_identity: the source's identity at run time (the identity component): puts its contents
            into this task's cache key; recorded in the output's metadata.
        corpus: the dataset's ingested corpus (ingest_corpus): its doc ids check the qrels.
        data: output folder holding queries.parquet and qrels.parquet.
    """
    from lead_core.ingest import Config, run

    data.metadata["dataset_identity"] = dataset_identity
    run(
        Config(
            source=source,
            layout=layout,
            split=split,
            out=data.path,
            what="split",
            corpus=corpus.path,
            drop_unknown_qrels=drop_unknown_qrels,
        )
    )
