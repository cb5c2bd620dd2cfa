"""`lead bm25`: a BM25 top-k run for a query split, and phase-1 training groups.

Reads corpus / queries (/ qrels) artifacts, indexes title + " " + text with bm25s, writes the run
(RUN Parquet, optionally a TREC run file) and, with qrels, one training group per query that has
positives: its positives and either its first n BM25 hits not judged relevant, n random
documents, or the first n negatives of MS MARCO's official training triples (paper §4.1: phase-1
dual encoders train on BM25 or random negatives; the paper's are the official triples').

Fanned out over a cluster, the same stage runs in three roles: `--out-index DIR` builds and saves
the index once; `--index DIR --shard i/n` retrieves query shard i of n against it (shard i is the
i-th of n contiguous runs of query batches, so a shard's rows are exactly the single task's rows
for those batches); `--merge-runs ... --merge-groups ...` concatenates the shards' outputs (given in
any order: each artifact's metadata names its shard) in shard order into the run and groups that one task (`--shard 0/1`, the default) writes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from lead_core.artifacts import atomic_outputs
from lead_core.bm25.index import BM25Index, available_cpus
from lead_core.bm25.negatives import (
    Judgements,
    TriplesGroups,
    bm25_negatives,
    groups_table,
    query_rng,
    random_negatives,
    triples_groups,
)
from lead_core.config import ConfigError, to_dict
from lead_core.data.ids import IdHashes, hash_ids
from lead_core.data.schema import (
    CORPUS,
    GROUPS,
    QUERIES,
    RUN,
    SchemaError,
    iter_batches,
    open_writer,
    read_metadata,
    read_table,
    write_table,
)
from lead_core.data.trec import read_qrels, sort_run, write_trec_run
from lead_core.resources import check_memory
from lead_core.tracking import stage_run

logger = logging.getLogger(__name__)


@dataclass
class Config:
    corpus: str = field(metadata={"help": "corpus artifact (Parquet, from `lead ingest`)"})
    queries: str = field(metadata={"help": "queries artifact of the split to retrieve for"})
    out_run: str | None = field(
        default=None,
        metadata={
            "help": "where to write the top-k run (RUN Parquet); needed unless only --out-index or "
            "triples groups are asked for"
        },
    )
    qrels: str | None = field(
        default=None, metadata={"help": "qrels (Parquet or TREC text); needed for --out-groups"}
    )
    out_trec: str | None = field(default=None, metadata={"help": "also write the run as a TREC run file"})
    out_groups: str | None = field(
        default=None, metadata={"help": "where to write training groups (GROUPS Parquet)"}
    )
    k: int = field(default=1000, metadata={"help": "depth of the run per query"})
    negatives: Literal["bm25", "random", "triples"] = field(
        default="bm25",
        metadata={
            "help": "negatives of the training groups: top BM25 hits, random documents, or the first "
            "num_negatives of MS MARCO's official training triples (--triples)"
        },
    )
    triples: str | None = field(
        default=None,
        metadata={
            "help": "negatives=triples: qidpidtriples file (qid<TAB>pos_pid<TAB>neg_pid; path or URI, "
            ".gz/.bz2), streamed"
        },
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
    threads: int = field(
        default=0,
        metadata={
            "help": "bm25s retrieval threads (0: in the calling thread; -1: the CPUs this process may use)"
        },
    )
    backend: Literal["auto", "numpy", "numba"] = field(
        default="auto",
        metadata={"help": "bm25s retrieval backend (exact both; auto: numba when installed)"},
    )
    tag: str = field(default="bm25", metadata={"help": "run tag of the TREC run file"})
    out_index: str | None = field(
        default=None, metadata={"help": "also save the index to this folder (for --index of query shards)"}
    )
    index: str | None = field(
        default=None,
        metadata={"help": "a saved index folder (--out-index) to retrieve from instead of indexing"},
    )
    shard: str = field(
        default="0/1",
        metadata={"help": "i/n: retrieve the i-th (from 0) of n contiguous slices of the query batches"},
    )
    merge_runs: list[str] = field(
        default_factory=list,
        metadata={"help": "merge: every shard's run (any order), concatenated in shard order into --out-run"},
    )
    merge_groups: list[str] = field(
        default_factory=list,
        metadata={
            "help": "merge: every shard's groups (any order), concatenated in shard order into --out-groups"
        },
    )

    def __post_init__(self) -> None:
        for name in ("k", "num_negatives", "corpus_batch_size", "query_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.shard_index, self.num_shards = parse_shard(self.shard)
        if self.merge_runs or self.merge_groups:
            if self.index or self.out_index or self.num_shards != 1:
                raise ConfigError(
                    "a merge (--merge-runs/--merge-groups) takes no --index, --out-index or --shard"
                )
            if bool(self.merge_runs) != bool(self.out_run) or bool(self.merge_groups) != bool(
                self.out_groups
            ):
                raise ConfigError(
                    "--merge-runs needs --out-run and --merge-groups needs --out-groups (and back)"
                )
        if self.out_groups and not self.qrels and not self.merge_groups:
            raise ConfigError("--out-groups needs --qrels: groups are built from each query's positives")
        triples_groups_only = self.negatives == "triples" and self.out_groups
        if not self.out_run and not (self.out_index or triples_groups_only):
            raise ConfigError(
                "--out-run is needed (unless only --out-index or --negatives triples groups are asked for)"
            )
        if self.out_trec and not self.out_run:
            raise ConfigError("--out-trec needs --out-run")
        if self.out_groups and not self.out_run and self.negatives != "triples":
            raise ConfigError(f"--negatives {self.negatives} groups come from the retrieval: give --out-run")
        if self.index and self.out_index:
            raise ConfigError("--index loads a saved index and --out-index saves one: give one of them")
        if self.negatives == "triples" and self.out_groups and self.num_shards > 1:
            raise ConfigError(
                "triples groups are read from the whole file: make them in one task, not per --shard"
            )
        if (self.negatives == "triples") != bool(self.triples):
            raise ConfigError(
                "--negatives triples needs --triples (the qidpidtriples file), and --triples needs "
                f"--negatives triples (got negatives={self.negatives!r}, triples={self.triples!r})"
            )


def parse_shard(text: str) -> tuple[int, int]:
    """ "i/n" -> (i, n), 0 <= i < n."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return i, n


def shard_rows(num_queries: int, batch_size: int, shard_index: int, num_shards: int) -> range:
    """The query rows of one shard: the shard's contiguous share of the retrieval batches.

    Batches (not queries) are split so that a shard's run batches are the single task's batches
    (each batch's rows are sorted by query id), and the shards' runs concatenate to its run.
    """
    num_batches = -(-num_queries // batch_size)
    first = shard_index * num_batches // num_shards
    last = (shard_index + 1) * num_batches // num_shards
    return range(first * batch_size, min(last * batch_size, num_queries))


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


def _corpus_ids(corpus: str) -> pa.Array:
    """The corpus artifact's doc ids, read as one column."""
    return pa.chunked_array(
        [b.column("doc_id") for b in iter_batches(corpus, CORPUS, columns=["doc_id"])], pa.string()
    ).combine_chunks()


def _index(config: Config, num_docs: int) -> BM25Index:
    """The saved index of `config.index`, checked against the corpus and the scoring settings, or a new one."""
    settings = {k: getattr(config, k) for k in ("stopwords", "stemmer", "k1", "b", "method")}
    if not config.index:
        return BM25Index.build(
            config.corpus, batch_size=config.corpus_batch_size, backend=config.backend, **settings
        )
    index = BM25Index.load(config.index, backend=config.backend)
    differ = {k: (index.params[k], v) for k, v in settings.items() if index.params[k] != v}
    if differ:
        raise ConfigError(f"{config.index}: the index was built with other settings (saved, asked): {differ}")
    if index.num_docs != num_docs:
        raise SchemaError(
            f"{config.index}: an index of {index.num_docs} documents, but {config.corpus} holds {num_docs}"
        )
    return index


def run(config: Config) -> dict:
    """Index (or load an index), retrieve a query shard, write its run (and TREC file, and groups);
    or merge shards' outputs. Returns counts and timings."""
    if config.merge_runs or config.merge_groups:
        return _merge(config)
    started = time.perf_counter()
    queries = read_table(config.queries, QUERIES)
    if queries.num_rows == 0:
        raise SchemaError(f"{config.queries}: no queries")
    judgements = corpus_ids = None
    if config.out_groups:
        qrels = read_qrels(config.qrels)
        judgements = Judgements(qrels, config.positive_relevance)
        # Fail before the (long) indexing if a positive is not a corpus document.
        corpus_ids = _corpus_ids(config.corpus)
        judgements.check_in_corpus(corpus_ids, where=str(config.qrels))
    rows = shard_rows(queries.num_rows, config.query_batch_size, config.shard_index, config.num_shards)
    if config.out_run or config.out_index:  # the index (built or loaded) and the shard's queries
        check_memory(
            "bm25-shard" if config.index else "bm25",
            passages=read_metadata(config.corpus)["num_rows"],
            queries=len(rows) if config.out_run else 0,
            run_rows=len(rows) * config.k if config.out_run and config.out_trec else 0,
        )
    if not rows:
        logger.warning(
            "shard %s holds no queries: %d queries make only %d batches of %d",
            config.shard,
            queries.num_rows,
            -(-queries.num_rows // config.query_batch_size),
            config.query_batch_size,
        )

    outputs = atomic_outputs(config.out_run, config.out_trec, config.out_groups, config.out_index)
    with stage_run("bm25", to_dict(config)) as tracker, outputs as (out_run, out_trec, out_groups, out_index):
        summary: dict = {"num_queries": len(rows)}
        index = None
        if config.out_run or config.out_index:
            index = _index(config, read_metadata(config.corpus)["num_rows"])
            if out_index:
                index.save(out_index)
            summary.update(num_docs=index.num_docs, index_seconds=round(time.perf_counter() - started, 3))
        if config.out_run:
            grouped_qids, negatives = _retrieve(
                config, index, queries.slice(rows.start, len(rows)), judgements, out_run, summary
            )
            if config.out_trec:
                write_trec_run(read_table(out_run, RUN), out_trec, tag=config.tag)
        if config.out_groups and config.negatives == "triples":
            made = triples_groups(
                config.triples,
                queries.column("query_id").combine_chunks(),
                IdHashes(hash_ids(corpus_ids)),
                judgements,
                config.num_negatives,
            )
            write_table(made.groups, out_groups, GROUPS, config=to_dict(config))
            summary.update(
                num_groups=made.groups.num_rows,
                triples_lines=made.lines,
                triples_unknown_query_lines=made.unknown_query_lines,
                triples_unjudged_positive_lines=made.unjudged_positive_lines,
                judged_queries_without_triples=made.judged_queries_without_triples,
            )
            _warn_triples(config, made)
        elif config.out_groups:
            groups = groups_table(grouped_qids, judgements.positives, negatives, config.negatives)
            write_table(groups, out_groups, GROUPS, config=to_dict(config))
            short = sum(1 for q in grouped_qids if len(negatives[q]) < config.num_negatives)
            unjudged = len(rows) - len(grouped_qids)
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


def _retrieve(
    config: Config,
    index: BM25Index,
    queries: pa.Table,
    judgements: Judgements | None,
    out_run: Path,
    summary: dict,
) -> tuple[list[str], dict[str, list[str]]]:
    """Retrieve `queries` batch by batch into `out_run`; bm25/random negatives of the judged ones.

    Returns the grouped query ids (in the queries' order) and their negatives; adds counts and
    timings to `summary`.
    """
    if config.k > index.num_docs:
        logger.warning("k=%d exceeds the corpus size; retrieving all %d documents", config.k, index.num_docs)
    threads = available_cpus() if config.threads < 0 else config.threads
    logger.info(
        "retrieving %d queries with bm25s's %s backend, %d threads",
        queries.num_rows,
        index.retriever.backend,
        threads,
    )
    started = time.perf_counter()
    qids = queries.column("query_id").to_pylist()
    texts = queries.column("text").to_pylist()
    grouped_qids: list[str] = []
    negatives: dict[str, list[str]] = {}
    num_rows = no_hits = 0
    with open_writer(out_run, RUN, config=to_dict(config)) as writer:
        for start in tqdm(range(0, len(qids), config.query_batch_size), desc="bm25 retrieve", unit="batch"):
            batch_qids = qids[start : start + config.query_batch_size]
            positions, scores = index.search(
                texts[start : start + config.query_batch_size], config.k, threads
            )
            batch = _batch_run(batch_qids, positions, scores, index.doc_ids)
            writer.write(batch)
            num_rows += batch.num_rows
            no_hits += len(batch_qids) - pc.count_distinct(batch.column("query_id")).as_py()
            if judgements is not None and config.negatives != "triples":
                _add_negatives(config, judgements, index, batch_qids, batch, grouped_qids, negatives)
    seconds = time.perf_counter() - started
    if no_hits:
        logger.warning("%d queries share no term with any document and have no results", no_hits)
    summary.update(
        run_rows=num_rows,
        queries_without_hits=no_hits,
        retrieve_seconds=round(seconds, 3),
        queries_per_second=round(len(qids) / seconds, 1) if seconds > 0 else 0.0,
    )
    return grouped_qids, negatives


def _warn_triples(config: Config, made: TriplesGroups) -> None:
    if made.unknown_query_lines:
        logger.warning(
            "%s: %d of %d triples are for queries outside the split and were skipped",
            config.triples,
            made.unknown_query_lines,
            made.lines,
        )
    if made.unjudged_positive_lines:
        logger.warning(
            "%s: %d triples name a positive that the qrels do not judge relevant (positives come from the qrels)",
            config.triples,
            made.unjudged_positive_lines,
        )
    if made.judged_queries_without_triples:
        logger.warning(
            "%d queries with positives have no negative in %s and get no training group",
            made.judged_queries_without_triples,
            config.triples,
        )
    short = pc.sum(pc.less(pc.list_value_length(made.groups.column("negative_ids")), config.num_negatives))
    if short.as_py():
        logger.warning("%d groups have fewer than %d triples negatives", short.as_py(), config.num_negatives)


def _merge(config: Config) -> dict:
    """Concatenate shard runs / groups (in shard order) into the outputs one task would write."""
    started = time.perf_counter()
    run_paths, shard_configs = _check_shards(config.merge_runs, RUN) if config.merge_runs else ([], [])
    group_paths: list[str] = []
    if config.merge_groups:
        group_paths, group_configs = _check_shards(config.merge_groups, GROUPS)
        if shard_configs and len(group_configs) != len(shard_configs):
            raise ConfigError(f"{len(run_paths)} shard runs but {len(group_paths)} shard groups")
        shard_configs = shard_configs or group_configs
    # the metadata a single task would have written: the shards' settings, shard 0/1, these outputs
    single = {
        **shard_configs[0],
        "shard": "0/1",
        "index": None,
        "out_index": None,
        **{k: getattr(config, k) for k in ("out_run", "out_trec", "out_groups")},
    }
    queries = read_table(config.queries, QUERIES, columns=["query_id"]).column("query_id")
    summary: dict = {"num_shards": len(shard_configs)}
    if config.out_trec and run_paths:  # the TREC export holds the whole merged run
        check_memory("bm25-merge", run_rows=sum(read_metadata(p)["num_rows"] for p in run_paths))
    outputs = atomic_outputs(config.out_run, config.out_trec, config.out_groups)
    with stage_run("bm25", to_dict(config)) as tracker, outputs as (out_run, out_trec, out_groups):
        if config.merge_runs:
            # streamed: a full MS MARCO train run has 500M rows; only its distinct query ids are held
            run_qids: set[str] = set()
            with open_writer(out_run, RUN, config=single) as writer:
                for path in run_paths:
                    for batch in iter_batches(path, RUN):
                        writer.write(batch)
                        run_qids.update(pc.unique(batch.column("query_id")).to_pylist())
            _check_known_queries(
                pa.chunked_array([pa.array(sorted(run_qids), pa.string())]), queries, "the merged run"
            )
            if config.out_trec:
                write_trec_run(read_table(out_run, RUN), out_trec, tag=config.tag)
            summary.update(run_rows=writer.num_rows, num_queries=len(run_qids))
        if config.merge_groups:
            groups = pa.concat_tables([read_table(path, GROUPS) for path in group_paths])
            _check_known_queries(groups.column("query_id"), queries, "the merged groups")
            write_table(groups, out_groups, GROUPS, config=single)  # also checks query ids unique over shards
            summary.update(num_groups=groups.num_rows)
        summary["merge_seconds"] = round(time.perf_counter() - started, 3)
        tracker.log_metrics({k: float(v) for k, v in summary.items()})
    logger.info("bm25 merge: %s", summary)
    return summary


# Config fields that differ between the shards of one retrieval (everything else must be equal).
_PER_SHARD = ("shard", "out_run", "out_trec", "out_groups", "out_index", "index", "threads")


def _check_shards(paths: list[str], schema) -> tuple[list[str], list[dict]]:
    """The shard artifacts in shard order and their configs; fails unless they are shards 0..n-1
    of n of one retrieval (KFP's collected outputs come in no guaranteed order)."""
    found = []
    for path in paths:
        made = read_metadata(path)["config"]
        try:
            index, count = parse_shard(str(made.get("shard")))
        except ConfigError:
            raise SchemaError(f"{path}: not a {schema.name!r} artifact of `lead bm25 --shard`") from None
        found.append((index, count, path, made))
    found.sort(key=lambda item: item[0])
    for expected, (index, count, path, made) in enumerate(found):
        if (index, count) != (expected, len(paths)):
            raise SchemaError(
                f"{path}: shard {index}/{count}, but the {len(paths)} {schema.name} artifacts given "
                f"should be shards 0/{len(paths)} to {len(paths) - 1}/{len(paths)}, each once"
            )
        first = found[0][3]
        differ = sorted(
            k for k in set(made) | set(first) if k not in _PER_SHARD and made.get(k) != first.get(k)
        )
        if differ:
            raise SchemaError(f"{path}: made with other settings than shard 0 ({differ}): not one retrieval")
    return [item[2] for item in found], [item[3] for item in found]


def _check_known_queries(found: pa.ChunkedArray, queries: pa.ChunkedArray, what: str) -> None:
    unknown = pc.invert(pc.is_in(found, value_set=queries.combine_chunks()))
    if pc.any(unknown).as_py():
        example = found.filter(unknown)[0].as_py()
        raise SchemaError(f"{what} holds query {example!r}, which is not in the queries artifact")


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
