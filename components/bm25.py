"""Components: BM25 top-k run and BM25, random or official-triples negatives as training groups (lead_core.bm25)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def bm25(
    corpus: Input[Dataset],
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
        corpus: the dataset's ingested corpus (corpus.parquet).
        data: ingested split (queries.parquet, qrels.parquet).
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
            corpus=corpus.path + "/corpus.parquet",
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


# Sharded BM25 for large query sets: the index built once, query shards retrieved in parallel
# (dsl.ParallelFor over bm25_index's output list), the shards merged into what `bm25` writes.


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def bm25_index(corpus: Input[Dataset], data: Input[Dataset], num_shards: int, index: Output[Dataset]) -> list:
    """The BM25 index of the corpus, saved once for every query shard; returns the shards.

    Args:
        corpus: the dataset's ingested corpus (corpus.parquet).
        data: ingested split (queries.parquet).
        num_shards: query shards to retrieve in parallel (>= 1).
        index: output folder of the saved index.

    Returns:
        The shard specs "0/n" ... "n-1/n", the items of the ParallelFor over shards.
    """
    from lead_core.bm25 import Config
    from lead_core.bm25 import run as bm25_run
    from lead_core.config import ConfigError

    if num_shards < 1:
        raise ConfigError(f"bm25_shards must be >= 1, got {num_shards}")
    bm25_run(
        Config(
            corpus=corpus.path + "/corpus.parquet",
            queries=data.path + "/queries.parquet",
            out_index=index.path,
        )
    )
    return [f"{i}/{num_shards}" for i in range(num_shards)]


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def bm25_shard(
    corpus: Input[Dataset],
    data: Input[Dataset],
    index: Input[Dataset],
    shard: str,
    k: int,
    negatives: str,
    num_negatives: int,
    seed: int,
    run: Output[Dataset],
    groups: Output[Dataset],
):
    """BM25 top-k and training groups of one query shard, against the saved index.

    Args:
        corpus: the dataset's ingested corpus (corpus.parquet).
        data: ingested split (queries.parquet, qrels.parquet).
        index: the saved index (bm25_index).
        shard: "i/n": the i-th (from 0) of n contiguous slices of the queries' retrieval batches.
        k: run depth per query.
        negatives: negatives of the groups: bm25 (top hits not judged relevant) or random documents.
        num_negatives: negatives per training group.
        seed: seed of the random negatives.
        run: output folder holding the shard's run.parquet.
        groups: output folder holding the shard's groups.parquet.
    """
    from lead_core.bm25 import Config
    from lead_core.bm25 import run as bm25_run

    bm25_run(
        Config(
            corpus=corpus.path + "/corpus.parquet",
            queries=data.path + "/queries.parquet",
            qrels=data.path + "/qrels.parquet",
            index=index.path,
            shard=shard,
            out_run=run.path + "/run.parquet",
            out_groups=groups.path + "/groups.parquet",
            k=k,
            negatives=negatives,
            num_negatives=num_negatives,
            seed=seed,
            threads=-1,  # the CPUs of the task's limit
        )
    )


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def bm25_merge(
    corpus: Input[Dataset],
    data: Input[Dataset],
    shard_runs: Input[list[Dataset]],
    shard_groups: Input[list[Dataset]],
    run: Output[Dataset],
    groups: Output[Dataset],
) -> str:
    """The shards' runs and groups concatenated in shard order: what `bm25` writes in one task.

    Args:
        corpus: the dataset's ingested corpus (corpus.parquet).
        data: ingested split (queries.parquet: every merged query must be one of them).
        shard_runs: the shards' run folders (collected from the ParallelFor, any order).
        shard_groups: the shards' groups folders (any order).
        run: output folder holding run.parquet (no TREC export: it sorts the whole run in memory,
            est. 138 GiB for MS MARCO's 503M training rows; nothing downstream reads it).
        groups: output folder holding groups.parquet.

    Returns:
        The URI of `groups` (the pipeline imports the groups of whichever negatives ran).
    """
    from lead_core.bm25 import Config
    from lead_core.bm25 import run as bm25_run

    bm25_run(
        Config(
            corpus=corpus.path + "/corpus.parquet",
            queries=data.path + "/queries.parquet",
            merge_runs=[r.path + "/run.parquet" for r in shard_runs],
            merge_groups=[g.path + "/groups.parquet" for g in shard_groups],
            out_run=run.path + "/run.parquet",
            out_groups=groups.path + "/groups.parquet",
        )
    )
    return groups.uri


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def bm25_triples(
    corpus: Input[Dataset],
    data: Input[Dataset],
    triples_uri: str,
    num_negatives: int,
    triples_identity: str,
    groups: Output[Dataset],
) -> str:
    """Training groups from MS MARCO's official training triples (no BM25 retrieval).

    Args:
        corpus: the dataset's ingested corpus (corpus.parquet: the triples' passages must be in it).
        data: ingested split (queries.parquet, qrels.parquet).
        triples_uri: qidpidtriples file (qid<TAB>pos_pid<TAB>neg_pid), path or URI, .gz/.bz2.
        num_negatives: negatives per query: its first distinct unjudged ones in file order.
        triples_identity: the file's identity (identity task): the cache key follows its contents.
        groups: output folder holding groups.parquet.

    Returns:
        The URI of `groups` (the pipeline imports the groups of whichever negatives ran).
    """
    from lead_core.bm25 import Config
    from lead_core.bm25 import run as bm25_run

    groups.metadata["triples_identity"] = triples_identity
    bm25_run(
        Config(
            corpus=corpus.path + "/corpus.parquet",
            queries=data.path + "/queries.parquet",
            qrels=data.path + "/qrels.parquet",
            out_groups=groups.path + "/groups.parquet",
            negatives="triples",
            triples=triples_uri,
            num_negatives=num_negatives,
        )
    )
    return groups.uri
