"""KFP components of the LEAD pipeline: one lightweight component per stage, no logic.

Each component imports its lead_core stage inside the function and makes one call; artifact folders
name their files (corpus.parquet, run.parquet, groups.parquet, ...). GPU requests, tolerations and
CPU/memory requests are set where the pipeline places each task (pipelines/lead_msmarco.py).
"""

from components.backbone import backbone
from components.bm25 import bm25, bm25_index, bm25_merge, bm25_shard, bm25_triples
from components.encode import encode
from components.evaluate import evaluate
from components.export import export
from components.identity import identity
from components.index import index
from components.ingest import ingest, ingest_corpus
from components.mine import mine
from components.rerank import rerank
from components.search import search
from components.train import distill, train, untrained

ALL = (
    identity,
    ingest_corpus,
    ingest,
    backbone,
    bm25,
    bm25_index,
    bm25_shard,
    bm25_merge,
    bm25_triples,
    train,
    distill,
    untrained,
    encode,
    index,
    search,
    mine,
    rerank,
    evaluate,
    export,
)

__all__ = [
    "ALL",
    "backbone",
    "bm25",
    "bm25_index",
    "bm25_merge",
    "bm25_shard",
    "bm25_triples",
    "distill",
    "encode",
    "evaluate",
    "export",
    "identity",
    "index",
    "ingest",
    "ingest_corpus",
    "mine",
    "rerank",
    "search",
    "train",
    "untrained",
]
