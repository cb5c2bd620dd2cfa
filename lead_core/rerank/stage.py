"""`lead rerank`: re-score each query's top-k of a run with a ColBERT, cross-encoder or DE model.

How the paper evaluates CB and CE teachers: rerank the top-1000 (passages) that the 12-layer DE
teacher retrieved. The output run holds the top-k ordered by the new score (ties by doc id), then,
with `keep_tail` (the default), the input's results below rank k in their input order with scores
below every re-scored one – so recall at depths beyond k is the first stage's, not cut off at k.
Several processes (torchrun or `lead rerank --nproc N`): each rank re-scores a share of the
queries on its GPU; rank 0 gathers the scores and writes the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm

from lead_core import distributed
from lead_core.artifacts import atomic_outputs
from lead_core.config import ConfigError, to_dict
from lead_core.data.schema import CORPUS, QUERIES, RUN, SchemaError, iter_batches, read_table, write_table
from lead_core.data.text import passage_texts
from lead_core.data.trec import read_run, sort_run, write_trec_run
from lead_core.encode.runtime import inference_precision, load_for_inference, resolve_device
from lead_core.models.base import RetrievalModel
from lead_core.tracking import stage_run

log = logging.getLogger(__name__)


@dataclass
class Config:
    model: str = field(
        metadata={"help": "saved model directory: ColBERT (cb), cross-encoder (ce) or dual encoder (de)"}
    )
    run: str = field(
        metadata={"help": "RUN Parquet or TREC run file to rerank (e.g. the DE teacher's top-1000)"}
    )
    corpus: str = field(metadata={"help": "CORPUS Parquet holding every document of the run"})
    queries: str = field(metadata={"help": "QUERIES Parquet holding every query of the run"})
    out_run: str = field(metadata={"help": "RUN Parquet to write"})
    out_trec: str | None = field(default=None, metadata={"help": "also write a TREC run file here"})
    k: int = field(default=1000, metadata={"help": "re-score each query's top-k (by the input run's order)"})
    keep_tail: bool = field(
        default=True,
        metadata={
            "help": "keep the input's results below rank k after the re-scored ones (false: drop them)"
        },
    )
    batch_size: int = field(default=64, metadata={"help": "query-passage pairs per model batch"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, ..."})
    tag: str = field(default="lead-rerank", metadata={"help": "run tag of the TREC file"})


def split_at(run: pa.Table, k: int) -> tuple[pa.Table, pa.Table]:
    """(each query's first k results, the rest), by score descending with ties by doc id; ranks
    renumbered from 1 per query (the rest keeps its ranks k+1, k+2, ...)."""
    ranked = sort_run(run)
    head = pc.less_equal(ranked.column("rank"), k)
    return ranked.filter(head), ranked.filter(pc.invert(head))


def append_tail(reranked: pa.Table, tail: pa.Table, k: int) -> pa.Table:
    """`reranked` (each query's re-scored top-k), then `tail` (its input results ranked k+1, k+2, ...)
    in input order: a tail row gets its query's lowest re-scored score minus (rank − k), so it ranks
    below every re-scored row and the tail keeps its order. Sorted and ranked again."""
    if tail.num_rows == 0:
        return reranked
    floors = reranked.group_by("query_id").aggregate([("score", "min")])
    joined = tail.join(floors, "query_id", join_type="inner")
    if joined.num_rows != tail.num_rows:  # cannot happen for split_at's output; guards misuse
        raise ValueError("every query of the tail must have re-scored results")
    offsets = pc.subtract(joined.column("rank").cast(pa.float64()), float(k))
    scores = pc.subtract(joined.column("score_min").cast(pa.float64()), offsets).cast(pa.float32())
    tail_rows = pa.table(
        {
            "query_id": joined.column("query_id"),
            "doc_id": joined.column("doc_id"),
            "rank": joined.column("rank"),
            "score": scores,
        },
        schema=RUN.arrow,
    )
    return sort_run(pa.concat_tables([reranked.select(RUN.arrow.names).cast(RUN.arrow), tail_rows]))


def _texts_by_id(corpus_path: str, doc_ids: set[str]) -> dict[str, str]:
    """Passage text of the documents in `doc_ids` only (streams the corpus: it may be 8.8M rows)."""
    wanted = pa.array(sorted(doc_ids), pa.string())
    texts: dict[str, str] = {}
    for batch in iter_batches(corpus_path, CORPUS, columns=["doc_id", "title", "text"]):
        keep = batch.filter(pc.is_in(batch.column("doc_id"), value_set=wanted))
        ids = keep.column("doc_id").to_pylist()
        texts.update(
            zip(ids, passage_texts(keep.column("title").to_pylist(), keep.column("text").to_pylist()))
        )
    return texts


def _missing(where: str, kind: str, missing: list[str]) -> ValueError:
    return ValueError(f"{len(missing)} {kind} id(s) of the run are not in {where}, e.g. {missing[:5]}")


def score_run(
    model: RetrievalModel,
    run: pa.Table,
    query_text: dict[str, str],
    passage_text: dict[str, str],
    batch_size: int = 64,
    device: torch.device | None = None,
) -> pa.Table:
    """The run with `score` replaced by model.score_pairs, sorted and ranked again.

    Pairs are scored in batches grouped by passage length (sorted by characters) so that a batch
    pads little; scores are put back on their rows.
    """
    qids = run.column("query_id").to_pylist()
    dids = run.column("doc_id").to_pylist()
    queries = [query_text[q] for q in qids]
    passages = [passage_text[d] for d in dids]
    order = np.argsort([-len(p) for p in passages], kind="stable")
    scores = np.empty(len(order), dtype=np.float32)
    device = device or model.device
    with torch.inference_mode(), inference_precision(device):
        for start in tqdm(range(0, len(order), batch_size), desc="rerank", unit="batch", disable=None):
            rows = order[start : start + batch_size]
            batch_scores = model.score_pairs([queries[i] for i in rows], [passages[i] for i in rows])
            scores[rows] = batch_scores.float().cpu().numpy()
    if not np.isfinite(scores).all():
        raise ValueError("the model gave non-finite scores")
    rescored = run.set_column(run.schema.get_field_index("score"), "score", pa.array(scores, pa.float32()))
    return sort_run(rescored)


def _rerank_share(config: Config, ctx: distributed.DistContext) -> tuple[pa.Table, set[str], pa.Table]:
    """(the run's tail below rank k, the run's query ids, this rank's queries' top-k re-scored).

    A rank's share: a contiguous slice of the run's query ids in sorted order (all of them alone).
    """
    candidates, tail = split_at(read_run(config.run), config.k)
    if candidates.num_rows == 0:
        raise SchemaError(f"{config.run}: the run is empty")
    queries = read_table(config.queries, QUERIES)
    query_text = dict(zip(queries.column("query_id").to_pylist(), queries.column("text").to_pylist()))
    run_qids = set(pc.unique(candidates.column("query_id")).to_pylist())
    missing = sorted(run_qids - query_text.keys())
    if missing:
        raise _missing(config.queries, "query", missing)
    if ctx.enabled:
        first, stop = distributed.share(len(run_qids), ctx.rank, ctx.world_size)
        mine = pa.array(sorted(run_qids)[first:stop], pa.string())
        candidates = candidates.filter(pc.is_in(candidates.column("query_id"), value_set=mine))
    run_dids = set(pc.unique(candidates.column("doc_id")).to_pylist())
    passage_text = _texts_by_id(config.corpus, run_dids)
    missing = sorted(run_dids - passage_text.keys())
    if missing:
        raise _missing(config.corpus, "document", missing)
    device = resolve_device(config.device)
    model = load_for_inference(config.model, device, stage="rerank")
    return tail, run_qids, score_run(model, candidates, query_text, passage_text, config.batch_size, device)


def run(config: Config) -> dict[str, Any]:
    if config.k < 1:
        raise ConfigError(f"k must be at least 1, got {config.k}")
    ctx = distributed.setup()
    try:
        if not ctx.is_main:  # score a share; rank 0 writes every rank's scores
            distributed.gather_objects(_rerank_share(config, ctx)[2])
            return {"rank": ctx.rank}
        outputs = atomic_outputs(config.out_run, config.out_trec)
        with stage_run("rerank", to_dict(config)) as tracker, outputs as (out_run, out_trec):
            tail, run_qids, reranked = _rerank_share(config, ctx)
            if ctx.enabled:
                reranked = sort_run(pa.concat_tables(distributed.gather_objects(reranked)))
            pairs = reranked.num_rows
            if config.keep_tail:
                reranked = append_tail(reranked, tail, config.k)
            write_table(reranked, out_run, RUN, to_dict(config))
            if config.out_trec:
                write_trec_run(reranked, out_trec, tag=config.tag)
            summary = {"queries": len(run_qids), "pairs": pairs, "k": config.k, "rows": reranked.num_rows}
            tracker.log_metrics(summary)
            log.info(
                "reranked %d pairs of %d queries with %s on %d process(es) -> %s",
                pairs,
                len(run_qids),
                config.model,
                ctx.world_size,
                config.out_run,
            )
            return summary
    finally:
        ctx.close()
