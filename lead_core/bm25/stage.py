"""`lead bm25`: a BM25 top-k run for a query split, and phase-1 training groups.

Reads corpus / queries (/ qrels) artifacts, indexes title + " " + text with bm25s, writes the run
(RUN Parquet, optionally a TREC run file) and, with qrels, one training group per query that has
positives: its positives and either its first n BM25 hits not judged relevant or n random
documents (paper §4.1: phase-1 dual encoders train on BM25 or random negatives).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from lead_core.artifacts import atomic_outputs
from lead_core.bm25.index import BM25Index
from lead_core.bm25.negatives import (
    Judgements,
    bm25_negatives,
    groups_table,
    query_rng,
    random_negatives,
)
from lead_core.config import ConfigError, to_dict
from lead_core.data.schema import (
    CORPUS,
    GROUPS,
    QUERIES,
    RUN,
    SchemaError,
    iter_batches,
    open_writer,
    read_table,
    write_table,
)
from lead_core.data.trec import read_qrels, sort_run, write_trec_run
from lead_core.tracking import stage_run

logger = logging.getLogger(__name__)


@dataclass
class Config:
    corpus: str = field(metadata={"help": "corpus artifact (Parquet, from `lead ingest`)"})
    queries: str = field(metadata={"help": "queries artifact of the split to retrieve for"})
    out_run: str = field(metadata={"help": "where to write the top-k run (RUN Parquet)"})
    qrels: str | None = field(
        default=None, metadata={"help": "qrels (Parquet or TREC text); needed for --out-groups"}
    )
    out_trec: str | None = field(default=None, metadata={"help": "also write the run as a TREC run file"})
    out_groups: str | None = field(
        default=None, metadata={"help": "where to write training groups (GROUPS Parquet)"}
    )
    k: int = field(default=1000, metadata={"help": "depth of the run per query"})
    negatives: Literal["bm25", "random"] = field(
        default="bm25",
        metadata={"help": "negatives of the training groups: top BM25 hits or random documents"},
    )
    num_negatives: int = field(default=100, metadata={"help": "negatives per training group"})
    seed: int = field(default=13, metadata={"help": "seed of the random negatives"})
    positive_relevance: int = field(
        default=1,
        metadata={
            "help": "lowest qrels grade that makes a positive (every grade > 0 is kept out of negatives)"
        },
    )
    stopwords: str = field(default="en", metadata={"help": "bm25s stopword list ('en', 'de', ...) or 'none'"})
    stemmer: str = field(default="english", metadata={"help": "PyStemmer algorithm or 'none'"})
    k1: float = field(default=1.5, metadata={"help": "BM25 k1"})
    b: float = field(default=0.75, metadata={"help": "BM25 b"})
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = field(
        default="lucene", metadata={"help": "bm25s scoring variant"}
    )
    corpus_batch_size: int = field(default=10_000, metadata={"help": "corpus rows tokenized per batch"})
    query_batch_size: int = field(default=1_000, metadata={"help": "queries retrieved and written per batch"})
    threads: int = field(default=0, metadata={"help": "bm25s retrieval threads (0: in the calling thread)"})
    tag: str = field(default="bm25", metadata={"help": "run tag of the TREC run file"})

    def __post_init__(self) -> None:
        for name in ("k", "num_negatives", "corpus_batch_size", "query_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.out_groups and not self.qrels:
            raise ConfigError("--out-groups needs --qrels: groups are built from each query's positives")


def _batch_run(
    query_ids: list[str], positions: np.ndarray, scores: np.ndarray, doc_ids: pa.Array
) -> pa.Table:
    """RUN rows of one query batch, hits with score 0 (no shared term) left out, ties by doc id."""
    qidx = np.repeat(np.arange(len(query_ids)), positions.shape[1])
    flat_scores = scores.reshape(-1)
    keep = flat_scores > 0
    table = pa.table(
        {
            "query_id": pa.array(query_ids, pa.string()).take(pa.array(qidx[keep])),
            "doc_id": doc_ids.take(pa.array(positions.reshape(-1)[keep])),
            "rank": pa.array(np.zeros(int(keep.sum()), np.int32)),
            "score": pa.array(flat_scores[keep], pa.float32()),
        }
    )
    return sort_run(table)


def run(config: Config) -> dict:
    """Index, retrieve, write the run (and TREC file, and groups); returns counts and timings."""
    started = time.perf_counter()
    queries = read_table(config.queries, QUERIES)
    if queries.num_rows == 0:
        raise SchemaError(f"{config.queries}: no queries")
    judgements = None
    if config.out_groups:
        qrels = read_qrels(config.qrels)
        judgements = Judgements(qrels, config.positive_relevance)
        # Fail before the (long) indexing if a positive is not a corpus document.
        corpus_ids = pa.chunked_array(
            [b.column("doc_id") for b in iter_batches(config.corpus, CORPUS, columns=["doc_id"])], pa.string()
        )
        judgements.check_in_corpus(corpus_ids.combine_chunks(), where=str(config.qrels))

    outputs = atomic_outputs(config.out_run, config.out_trec, config.out_groups)
    with stage_run("bm25", to_dict(config)) as tracker, outputs as (out_run, out_trec, out_groups):
        index = BM25Index.build(
            config.corpus,
            stopwords=config.stopwords,
            stemmer=config.stemmer,
            k1=config.k1,
            b=config.b,
            method=config.method,
            batch_size=config.corpus_batch_size,
        )
        if config.k > index.num_docs:
            logger.warning(
                "k=%d exceeds the corpus size; retrieving all %d documents", config.k, index.num_docs
            )
        indexed = time.perf_counter()

        qids = queries.column("query_id").to_pylist()
        texts = queries.column("text").to_pylist()
        grouped_qids: list[str] = []
        negatives: dict[str, list[str]] = {}
        num_rows = no_hits = 0
        with open_writer(out_run, RUN, config=to_dict(config)) as writer:
            for start in tqdm(
                range(0, len(qids), config.query_batch_size), desc="bm25 retrieve", unit="batch"
            ):
                batch_qids = qids[start : start + config.query_batch_size]
                positions, scores = index.search(
                    texts[start : start + config.query_batch_size], config.k, config.threads
                )
                batch = _batch_run(batch_qids, positions, scores, index.doc_ids)
                writer.write(batch)
                num_rows += batch.num_rows
                no_hits += len(batch_qids) - pc.count_distinct(batch.column("query_id")).as_py()
                if judgements is not None:
                    _add_negatives(config, judgements, index, batch_qids, batch, grouped_qids, negatives)
        retrieved = time.perf_counter()

        summary: dict = {
            "num_docs": index.num_docs,
            "num_queries": len(qids),
            "run_rows": num_rows,
            "queries_without_hits": no_hits,
            "index_seconds": round(indexed - started, 3),
            "retrieve_seconds": round(retrieved - indexed, 3),
        }
        if no_hits:
            logger.warning("%d queries share no term with any document and have no results", no_hits)
        if config.out_trec:
            write_trec_run(read_table(out_run, RUN), out_trec, tag=config.tag)
        if judgements is not None:
            groups = groups_table(grouped_qids, judgements.positives, negatives, config.negatives)
            write_table(groups, out_groups, GROUPS, config=to_dict(config))
            short = sum(1 for q in grouped_qids if len(negatives[q]) < config.num_negatives)
            unjudged = len(qids) - len(grouped_qids)
            if short:
                logger.warning(
                    "%d of %d groups have fewer than %d negatives (too few BM25 hits within k=%d)",
                    short,
                    len(grouped_qids),
                    config.num_negatives,
                    config.k,
                )
            if unjudged:
                logger.info("%d queries have no positive in the qrels and get no training group", unjudged)
            summary.update(num_groups=len(grouped_qids), groups_short_of_negatives=short)
        tracker.log_metrics({k: float(v) for k, v in summary.items()})
    logger.info("bm25: %s", summary)
    return summary


def _add_negatives(
    config: Config,
    judgements: Judgements,
    index: BM25Index,
    batch_qids: list[str],
    batch: pa.Table,
    grouped_qids: list[str],
    negatives: dict[str, list[str]],
) -> None:
    """Negatives for the queries of one batch that have positives (in the queries' order)."""
    ranked: dict[str, list[str]] = {}
    if config.negatives == "bm25":
        # the batch run is sorted by query id then rank: slice each query's doc ids
        run_qids = batch.column("query_id").to_pylist()
        run_docs = batch.column("doc_id").to_pylist()
        for q, d in zip(run_qids, run_docs):
            ranked.setdefault(q, []).append(d)
    for q in batch_qids:
        if q not in judgements.positives:
            continue
        relevant = judgements.relevant[q]
        if config.negatives == "bm25":
            negatives[q] = bm25_negatives(ranked.get(q, ()), relevant, config.num_negatives)
        else:
            rng = query_rng(config.seed, q)
            negatives[q] = random_negatives(index.doc_ids, relevant, config.num_negatives, rng)
        grouped_qids.append(q)
