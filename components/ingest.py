"""Component: read one split of an MS MARCO or BEIR dataset into Parquet (lead_core.ingest)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def ingest(
    source: str,
    layout: str,
    split: str,
    drop_unknown_qrels: bool,
    dataset_identity: str,
    data: Output[Dataset],
):
    """Read a dataset split into corpus.parquet, queries.parquet and qrels.parquet.

    Args:
        source: dataset folder or URI (local path, http(s)/s3/gs, .zip/.tar.gz archive, or beir:<name>).
        layout: file layout of the dataset: msmarco or beir.
        split: query split to read, e.g. train, dev, test, dl19.
        drop_unknown_qrels: drop qrels naming documents outside the corpus (pooled corpora) instead of failing.
        dataset_identity: the source's identity at run time (the identity component): puts its contents
            into this task's cache key; recorded in the output's metadata.
        data: output folder holding corpus.parquet, queries.parquet and qrels.parquet.
    """
    from lead_core.ingest import Config, run

    data.metadata["dataset_identity"] = dataset_identity
    run(
        Config(
            source=source, layout=layout, split=split, out=data.path, drop_unknown_qrels=drop_unknown_qrels
        )
    )
