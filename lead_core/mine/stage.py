"""`lead mine`: hard negatives from a retrieval run, as training groups (paper §4.2.2, phase 1).

For each query of the run: the candidates are its results at ranks skip+1 .. depth (ranks by score
descending, ties by doc id, as the TREC export orders them), minus EVERY document judged at
`exclude_relevance` or above for that query (the public code lets positives through: its id types
do not match). `num_negatives` of the candidates are drawn without replacement, seeded per query
(the draw for a query does not depend on which other queries are in the run); queries with fewer
candidates keep them all and are counted as short. Positives are the query's qrels at
`min_relevance` or above.

Queries left out, each counted and logged, none silently:
  - in the qrels with positives but not in the run: skipped (`queries_without_run`) – a run over a
    subset of the queries is normal; a run sharing no query with the qrels is an error;
  - in the run without positives in the qrels: skipped (`queries_without_positives`);
  - with no candidate left after the exclusion: skipped (`queries_without_negatives`).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from lead_core.artifacts import check_writable
from lead_core.config import ConfigError, to_dict
from lead_core.data.schema import GROUPS, SchemaError, write_table
from lead_core.data.trec import read_qrels, read_run
from lead_core.resources import check_memory, run_rows
from lead_core.tracking import stage_run

log = logging.getLogger(__name__)


@dataclass
class Config:
    run: str = field(
        metadata={"help": "RUN Parquet or TREC run file to mine (e.g. the phase-1 DE's top-1000)"}
    )
    qrels: str = field(metadata={"help": "QRELS Parquet or TREC qrels of the same queries"})
    out_groups: str = field(metadata={"help": "GROUPS Parquet to write"})
    depth: int = field(default=200, metadata={"help": "mine from the top `depth` ranks of each query"})
    skip: int = field(
        default=0, metadata={"help": "leave out the first `skip` ranks (likely unjudged positives)"}
    )
    num_negatives: int = field(default=100, metadata={"help": "negatives sampled per query"})
    seed: int = field(default=42, metadata={"help": "seed of the per-query sampling"})
    min_relevance: int = field(default=1, metadata={"help": "qrels at this grade or above are positives"})
    exclude_relevance: int = field(
        default=1, metadata={"help": "documents judged at this grade or above are never negatives"}
    )


def _query_rng(seed: int, query_id: str) -> np.random.Generator:
    """A generator that depends on the seed and the query only (stable across runs and processes)."""
    return np.random.default_rng([seed, zlib.crc32(query_id.encode("utf-8"))])


def _group_bounds(sorted_ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Start and end row of each run of equal values in `sorted_ids` (sorted, so one run per id)."""
    n = len(sorted_ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    new_group = np.ones(n, dtype=bool)
    if n > 1:
        new_group[1:] = pc.not_equal(sorted_ids[1:], sorted_ids[:-1]).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(new_group)
    return starts, np.append(starts[1:], n)


def _judged(qrels: pa.Table, threshold: int) -> pa.Table:
    return qrels.filter(pc.greater_equal(qrels.column("relevance"), threshold)).select(["query_id", "doc_id"])


def mine_groups(
    run: pa.Table,
    qrels: pa.Table,
    depth: int = 200,
    skip: int = 0,
    num_negatives: int = 100,
    seed: int = 42,
    min_relevance: int = 1,
    exclude_relevance: int = 1,
    source: str | None = None,
) -> tuple[pa.Table, dict[str, int]]:
    """GROUPS table (sorted by query id) and the counts of left-out and short queries (see module doc)."""
    if not 0 <= skip < depth:
        raise ConfigError(f"need 0 <= skip < depth, got skip={skip}, depth={depth}")
    if num_negatives < 1:
        raise ConfigError(f"num_negatives must be at least 1, got {num_negatives}")
    if run.num_rows == 0:
        raise SchemaError("the run is empty")
    source = source or f"mined:{depth}:{skip}"

    # Positions per query: score descending, ties by doc id; keep positions skip .. depth-1.
    run = run.select(["query_id", "doc_id", "score"]).sort_by(
        [("query_id", "ascending"), ("score", "descending"), ("doc_id", "ascending")]
    )
    qids = run.column("query_id").combine_chunks()
    starts, ends = _group_bounds(qids)
    position = np.arange(len(qids)) - np.repeat(starts, ends - starts)
    run_queries = set(qids.take(pa.array(starts)).to_pylist())
    window = run.filter(pa.array((position >= skip) & (position < depth))).append_column(
        "position", pa.array(position[(position >= skip) & (position < depth)])
    )

    # Exclude every judged positive of the query (anti-join on (query_id, doc_id)).
    excluded = _judged(qrels, exclude_relevance)
    candidates = window.join(excluded, keys=["query_id", "doc_id"], join_type="left anti")
    candidates = candidates.sort_by([("query_id", "ascending"), ("position", "ascending")])

    positives: dict[str, list[str]] = {}
    pos_table = qrels.filter(pc.greater_equal(qrels.column("relevance"), min_relevance)).sort_by(
        [("query_id", "ascending"), ("relevance", "descending"), ("doc_id", "ascending")]
    )
    for qid, did in zip(pos_table.column("query_id").to_pylist(), pos_table.column("doc_id").to_pylist()):
        positives.setdefault(qid, []).append(did)
    if not run_queries & positives.keys():
        raise SchemaError(
            f"the run and the qrels share no query with positives (run: {len(run_queries)} queries, "
            f"e.g. {sorted(run_queries)[:3]}; qrels: {len(positives)} queries with positives, "
            f"e.g. {sorted(positives)[:3]})"
        )

    cand_qids = candidates.column("query_id").combine_chunks()
    cand_dids = candidates.column("doc_id").combine_chunks()
    cand_starts, cand_ends = _group_bounds(cand_qids)
    bounds = dict(
        zip(cand_qids.take(pa.array(cand_starts)).to_pylist(), zip(cand_starts.tolist(), cand_ends.tolist()))
    )

    counts = {
        "queries_without_run": len(positives.keys() - run_queries),
        "queries_without_positives": 0,
        "queries_without_negatives": 0,
        "queries_short": 0,
    }
    rows: dict[str, list] = {"query_id": [], "positive_ids": [], "negative_ids": [], "negative_source": []}
    for qid in tqdm(sorted(run_queries), desc="mine", unit="query", disable=len(run_queries) < 10000):
        if qid not in positives:
            counts["queries_without_positives"] += 1
            continue
        if qid not in bounds:
            counts["queries_without_negatives"] += 1
            continue
        a, b = bounds[qid]
        pool = cand_dids.slice(a, b - a).to_pylist()
        if len(pool) < num_negatives:
            counts["queries_short"] += 1
            chosen = pool
        else:
            picks = np.sort(_query_rng(seed, qid).choice(len(pool), size=num_negatives, replace=False))
            chosen = [pool[i] for i in picks]  # kept in rank order
        rows["query_id"].append(qid)
        rows["positive_ids"].append(positives[qid])
        rows["negative_ids"].append(chosen)
        rows["negative_source"].append(source)
    if not rows["query_id"]:
        raise SchemaError(f"no query kept: {counts}")
    groups = pa.table(rows, schema=GROUPS.arrow)
    counts["groups"] = groups.num_rows
    return groups, counts


def run(config: Config) -> dict[str, Any]:
    check_writable(config.out_groups)
    check_memory("mine", run_rows=run_rows(config.run))
    with stage_run("mine", to_dict(config)) as tracker:
        run_table = read_run(config.run)
        qrels = read_qrels(config.qrels)
        groups, counts = mine_groups(
            run_table,
            qrels,
            depth=config.depth,
            skip=config.skip,
            num_negatives=config.num_negatives,
            seed=config.seed,
            min_relevance=config.min_relevance,
            exclude_relevance=config.exclude_relevance,
        )
        write_table(groups, config.out_groups, GROUPS, to_dict(config))
        negatives = pc.list_value_length(groups.column("negative_ids"))
        counts["mean_negatives"] = float(pc.mean(negatives).as_py())
        tracker.log_metrics(counts)
        for name in ("queries_without_run", "queries_without_positives", "queries_without_negatives"):
            if counts[name]:
                log.warning("mine: skipped %d %s", counts[name], name.replace("_", " "))
        if counts["queries_short"]:
            log.warning(
                "mine: %d of %d queries have fewer than %d candidate negatives in ranks %d..%d; kept all they have",
                counts["queries_short"],
                counts["groups"],
                config.num_negatives,
                config.skip + 1,
                config.depth,
            )
        print(
            f"mine: {counts['groups']} groups, {counts['mean_negatives']:.1f} negatives per query on average; "
            f"{counts['queries_short']} short of {config.num_negatives}; skipped: "
            f"{counts['queries_without_run']} without run, {counts['queries_without_positives']} without positives, "
            f"{counts['queries_without_negatives']} without negatives"
        )
        return counts
